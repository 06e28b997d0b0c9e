/* gifts.js: the gift artwork (inline SVG, no external assets) shared by the overlay and the demo
 * page. GiftArt.svg(animation, tier) returns the markup of one icon; unknown animation ids get a
 * gift box coloured by tier, so a catalog entry added later still has a picture. */
(function (root) {
    'use strict';

    var uid = 0;

    /* Each drawing uses "$" where an element id is needed; svg() replaces it with a suffix
     * unique to the call, so several copies of one icon in a page never share gradients. */
    var ART = {
        rose:
            '<defs><radialGradient id="p$" cx="45%" cy="35%" r="70%"><stop offset="0" stop-color="#ff8fa3"/>' +
            '<stop offset=".55" stop-color="#e5173f"/><stop offset="1" stop-color="#8b0a26"/></radialGradient></defs>' +
            '<path d="M50 58 C47 70 53 82 49 97" stroke="#2f8f3a" stroke-width="4" fill="none" stroke-linecap="round"/>' +
            '<path d="M50 76 C60 66 72 68 76 72 C68 80 58 80 50 76Z" fill="#3fb24f"/>' +
            '<path d="M49 84 C40 74 28 76 24 80 C32 88 42 88 49 84Z" fill="#35a045"/>' +
            '<path d="M50 62 C28 62 22 44 26 30 C34 36 40 34 44 26 C48 34 56 34 60 26 C64 34 70 36 76 30 C80 46 72 62 50 62Z" fill="url(#p$)"/>' +
            '<path d="M50 18 C62 18 70 28 66 38 C62 46 50 46 46 40 C42 34 48 28 54 30" stroke="#9e0c2c" stroke-width="3" fill="#d91a42" stroke-linecap="round"/>' +
            '<path d="M40 40 C40 50 48 54 56 52" stroke="#a30f30" stroke-width="2.5" fill="none" stroke-linecap="round"/>',
        heart_me:
            '<defs><linearGradient id="h$" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="#ff7eb6"/>' +
            '<stop offset="1" stop-color="#e0005e"/></linearGradient></defs>' +
            '<path d="M50 90 C20 68 6 50 13 31 C20 13 42 12 50 29 C58 12 80 13 87 31 C94 50 80 68 50 90Z" fill="url(#h$)" stroke="#fff" stroke-width="3"/>' +
            '<path d="M24 32 C27 24 34 21 40 23" stroke="#fff" stroke-opacity=".75" stroke-width="4" fill="none" stroke-linecap="round"/>' +
            '<text x="50" y="60" text-anchor="middle" font-family="sans-serif" font-weight="900" font-size="24" fill="#fff">me</text>',
        finger_heart:
            '<defs><linearGradient id="f$" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="#ffd7b5"/>' +
            '<stop offset="1" stop-color="#f1a774"/></linearGradient></defs>' +
            '<path d="M60 9 C52 2 42 8 48 17 L58 27 L68 17 C74 8 64 2 60 9Z" fill="#ff3d7f"/>' +
            '<path d="M30 96 L30 66 C24 58 24 48 32 46 L36 46 L36 40 C36 34 44 34 45 40 L46 30 C46 24 55 24 55 30 L55 44 C60 40 66 43 64 50 L58 66 L58 96Z" fill="url(#f$)" stroke="#c9784a" stroke-width="2.5" stroke-linejoin="round"/>' +
            '<path d="M46 31 C52 33 58 38 56 44" stroke="#c9784a" stroke-width="2.5" fill="none"/>' +
            '<path d="M36 47 L36 60 M45 41 L45 58" stroke="#c9784a" stroke-width="2" stroke-linecap="round"/>',
        ice_cream:
            '<path d="M32 50 L50 96 L68 50Z" fill="#e0a458" stroke="#b27232" stroke-width="2" stroke-linejoin="round"/>' +
            '<path d="M38 54 L58 78 M48 52 L64 68 M36 62 L52 82 M62 54 L42 78 M52 52 L36 68 M64 62 L48 84" stroke="#b27232" stroke-width="1.8"/>' +
            '<circle cx="38" cy="46" r="13" fill="#ffb3c7"/><circle cx="62" cy="46" r="13" fill="#a8eecb"/>' +
            '<circle cx="50" cy="31" r="15" fill="#fff4d6"/>' +
            '<path d="M26 50 C30 56 36 52 40 57 C44 52 50 58 54 53 C58 58 66 52 74 50" stroke="#fff" stroke-opacity=".55" stroke-width="3" fill="none"/>' +
            '<circle cx="53" cy="13" r="6" fill="#e5173f"/><path d="M54 8 C56 3 60 2 62 2" stroke="#2f8f3a" stroke-width="2" fill="none"/>',
        perfume:
            '<defs><linearGradient id="b$" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="#e9b8ff"/>' +
            '<stop offset="1" stop-color="#7b2ff7"/></linearGradient><linearGradient id="g$" x1="0" y1="0" x2="1" y2="0">' +
            '<stop offset="0" stop-color="#ffe08a"/><stop offset="1" stop-color="#c98f12"/></linearGradient></defs>' +
            '<rect x="42" y="14" width="16" height="14" rx="3" fill="url(#g$)"/>' +
            '<rect x="46" y="27" width="8" height="8" fill="#d9b24c"/>' +
            '<path d="M28 44 C28 36 36 34 50 34 C64 34 72 36 72 44 L74 84 C74 92 68 95 50 95 C32 95 26 92 26 84Z" fill="url(#b$)" stroke="#fff" stroke-width="2.5"/>' +
            '<path d="M35 46 L35 80" stroke="#fff" stroke-opacity=".6" stroke-width="5" stroke-linecap="round"/>' +
            '<circle cx="22" cy="18" r="2.5" fill="#e9b8ff"/><circle cx="15" cy="12" r="2" fill="#e9b8ff"/><circle cx="24" cy="8" r="1.8" fill="#e9b8ff"/>',
        doughnut:
            '<defs><radialGradient id="d$" cx="50%" cy="45%" r="55%"><stop offset=".2" stop-color="#f5c27a"/>' +
            '<stop offset="1" stop-color="#c47b32"/></radialGradient></defs>' +
            '<circle cx="50" cy="52" r="42" fill="url(#d$)"/>' +
            '<path d="M50 14 C66 14 86 24 88 44 C86 52 80 48 78 56 C74 62 68 56 62 62 C56 66 52 60 46 64 C40 66 36 60 30 62 C24 62 22 54 16 54 C12 50 12 44 14 40 C20 24 34 14 50 14Z" fill="#ff6fa5"/>' +
            '<circle cx="50" cy="47" r="12" fill="#3a1f10"/><circle cx="50" cy="47" r="12" fill="none" stroke="#e85a92" stroke-width="3"/>' +
            '<g stroke-width="3.5" stroke-linecap="round"><path d="M30 30 l5 -3" stroke="#fff"/><path d="M66 26 l4 4" stroke="#ffe14d"/>' +
            '<path d="M74 42 l-1 5" stroke="#5ad1ff"/><path d="M24 44 l4 3" stroke="#8cf56b"/><path d="M44 24 l5 1" stroke="#5ad1ff"/>' +
            '<path d="M60 58 l4 -3" stroke="#fff"/><path d="M36 56 l-3 -4" stroke="#ffe14d"/></g>',
        hat_and_mustache:
            '<ellipse cx="50" cy="56" rx="40" ry="8" fill="#1b1b24"/>' +
            '<path d="M26 56 L30 12 C30 8 70 8 70 12 L74 56Z" fill="#272733"/>' +
            '<path d="M28 40 L72 40 L73 50 L27 50Z" fill="#d81f4a"/>' +
            '<path d="M35 14 L33 38" stroke="#fff" stroke-opacity=".18" stroke-width="5" stroke-linecap="round"/>' +
            '<path d="M50 74 C44 66 30 66 24 74 C20 80 12 80 8 74 C10 86 26 90 38 82 C44 78 48 78 50 80 C52 78 56 78 62 82 C74 90 90 86 92 74 C88 80 80 80 76 74 C70 66 56 66 50 74Z" fill="#4a2a16"/>',
        confetti:
            '<defs><linearGradient id="c$" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="#ffd54a"/>' +
            '<stop offset="1" stop-color="#ff7a1a"/></linearGradient></defs>' +
            '<path d="M14 92 L38 40 L62 64Z" fill="url(#c$)" stroke="#c24e00" stroke-width="2" stroke-linejoin="round"/>' +
            '<path d="M22 75 L47 50 M30 58 L54 57" stroke="#fff" stroke-width="3" stroke-opacity=".7"/>' +
            '<rect x="60" y="14" width="7" height="12" rx="2" fill="#ff3d7f" transform="rotate(25 63 20)"/>' +
            '<rect x="78" y="36" width="7" height="12" rx="2" fill="#3dd6ff" transform="rotate(-30 81 42)"/>' +
            '<rect x="44" y="10" width="6" height="10" rx="2" fill="#8cf56b" transform="rotate(-15 47 15)"/>' +
            '<circle cx="78" cy="20" r="4" fill="#ffe14d"/><circle cx="86" cy="58" r="3.5" fill="#b36bff"/>' +
            '<circle cx="58" cy="34" r="3" fill="#fff"/>' +
            '<path d="M66 48 C72 44 72 36 80 34" stroke="#ff3d7f" stroke-width="3" fill="none" stroke-linecap="round"/>',
        pumpkin:
            '<path d="M50 22 C50 14 54 8 60 6" stroke="#3d7a2a" stroke-width="6" fill="none" stroke-linecap="round"/>' +
            '<ellipse cx="30" cy="58" rx="22" ry="32" fill="#e8740f"/><ellipse cx="70" cy="58" rx="22" ry="32" fill="#e8740f"/>' +
            '<ellipse cx="50" cy="58" rx="20" ry="34" fill="#ff8c1a"/>' +
            '<path d="M32 50 L40 44 L44 54Z M68 50 L60 44 L56 54Z" fill="#3a1600"/>' +
            '<path d="M30 68 L36 74 L42 68 L50 76 L58 68 L64 74 L70 68 C66 82 34 82 30 68Z" fill="#3a1600"/>',
        snowflake:
            '<g stroke="#cfefff" stroke-width="5" stroke-linecap="round" fill="none">' +
            '<g id="a$"><path d="M50 50 L50 8"/><path d="M50 22 L41 13 M50 22 L59 13 M50 35 L42 28 M50 35 L58 28"/></g>' +
            '<use href="#a$" transform="rotate(60 50 50)"/><use href="#a$" transform="rotate(120 50 50)"/>' +
            '<use href="#a$" transform="rotate(180 50 50)"/><use href="#a$" transform="rotate(240 50 50)"/>' +
            '<use href="#a$" transform="rotate(300 50 50)"/></g><circle cx="50" cy="50" r="7" fill="#fff"/>',
        galaxy:
            '<defs><radialGradient id="x$" cx="50%" cy="50%" r="50%"><stop offset="0" stop-color="#fff"/>' +
            '<stop offset=".18" stop-color="#ffd6ff"/><stop offset=".5" stop-color="#7b3cff" stop-opacity=".85"/>' +
            '<stop offset="1" stop-color="#1a0b5e" stop-opacity="0"/></radialGradient></defs>' +
            '<circle cx="50" cy="50" r="48" fill="url(#x$)"/>' +
            '<path d="M50 50 C62 40 80 44 84 58 M50 50 C38 60 20 56 16 42 M50 50 C40 38 44 20 58 16 M50 50 C60 62 56 80 42 84" stroke="#e7c8ff" stroke-width="4" fill="none" stroke-linecap="round" opacity=".9"/>' +
            '<g fill="#fff"><circle cx="20" cy="20" r="1.6"/><circle cx="82" cy="24" r="2"/><circle cx="76" cy="80" r="1.4"/>' +
            '<circle cx="26" cy="78" r="1.8"/><circle cx="90" cy="48" r="1.2"/><circle cx="10" cy="56" r="1.2"/></g>',
        fireworks:
            '<g stroke-width="4" stroke-linecap="round">' +
            '<g stroke="#ffd54a"><path d="M50 50 L50 12 M50 50 L50 88 M50 50 L12 50 M50 50 L88 50"/></g>' +
            '<g stroke="#ff4f8b"><path d="M50 50 L77 23 M50 50 L23 77 M50 50 L23 23 M50 50 L77 77"/></g>' +
            '<g stroke="#4fd6ff" stroke-width="3"><path d="M50 50 L64 16 M50 50 L36 84 M50 50 L16 36 M50 50 L84 64 M50 50 L84 36 M50 50 L16 64 M50 50 L36 16 M50 50 L64 84"/></g></g>' +
            '<g fill="#fff"><circle cx="50" cy="8" r="3"/><circle cx="92" cy="50" r="3"/><circle cx="50" cy="92" r="3"/>' +
            '<circle cx="8" cy="50" r="3"/><circle cx="80" cy="20" r="2.5"/><circle cx="20" cy="80" r="2.5"/></g>' +
            '<circle cx="50" cy="50" r="7" fill="#fff"/>',
        sports_car:
            '<defs><linearGradient id="s$" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="#ff5a4f"/>' +
            '<stop offset="1" stop-color="#b3120a"/></linearGradient></defs>' +
            '<path d="M6 66 C6 58 12 54 22 52 L36 40 C42 36 60 36 68 40 L80 50 C90 52 96 56 96 64 L96 70 L6 70Z" fill="url(#s$)" stroke="#6e0a05" stroke-width="2"/>' +
            '<path d="M40 42 C44 40 56 40 62 42 L72 51 L34 51Z" fill="#bfe8ff" stroke="#6e0a05" stroke-width="2"/>' +
            '<path d="M52 41 L52 51" stroke="#6e0a05" stroke-width="2"/>' +
            '<path d="M10 60 L30 58" stroke="#fff" stroke-opacity=".6" stroke-width="3" stroke-linecap="round"/>' +
            '<rect x="86" y="56" width="8" height="4" rx="2" fill="#fff3b0"/>' +
            '<circle cx="26" cy="70" r="11" fill="#1c1c22"/><circle cx="26" cy="70" r="5" fill="#c9ccd6"/>' +
            '<circle cx="76" cy="70" r="11" fill="#1c1c22"/><circle cx="76" cy="70" r="5" fill="#c9ccd6"/>',
        interstellar:
            '<defs><linearGradient id="r$" x1="0" y1="0" x2="1" y2="0"><stop offset="0" stop-color="#d9dde8"/>' +
            '<stop offset=".5" stop-color="#fff"/><stop offset="1" stop-color="#aab0c2"/></linearGradient>' +
            '<linearGradient id="t$" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="#fff36b"/>' +
            '<stop offset=".5" stop-color="#ff8a1a"/><stop offset="1" stop-color="#ff2d55" stop-opacity="0"/></linearGradient></defs>' +
            '<path d="M42 74 L50 99 L58 74Z" fill="url(#t$)"/>' +
            '<path d="M50 4 C64 16 66 40 62 74 L38 74 C34 40 36 16 50 4Z" fill="url(#r$)" stroke="#6b7390" stroke-width="2"/>' +
            '<path d="M38 56 L24 76 L38 72Z M62 56 L76 76 L62 72Z" fill="#ff3b5c" stroke="#a3122d" stroke-width="1.5"/>' +
            '<circle cx="50" cy="36" r="8" fill="#4fc3ff" stroke="#6b7390" stroke-width="3"/>' +
            '<path d="M44 14 C47 10 53 10 56 14" stroke="#ff3b5c" stroke-width="4" fill="none"/>',
        lion:
            '<defs><radialGradient id="m$" cx="50%" cy="50%" r="50%"><stop offset=".5" stop-color="#d9771a"/>' +
            '<stop offset="1" stop-color="#8a3d07"/></radialGradient></defs>' +
            '<path d="M50 2 L58 14 L72 8 L74 22 L88 22 L84 36 L97 44 L86 54 L94 66 L80 70 L80 84 L66 82 L58 95 L50 86 L42 95 L34 82 L20 84 L20 70 L6 66 L14 54 L3 44 L16 36 L12 22 L26 22 L28 8 L42 14Z" fill="url(#m$)"/>' +
            '<circle cx="28" cy="30" r="7" fill="#f2b34a"/><circle cx="72" cy="30" r="7" fill="#f2b34a"/>' +
            '<ellipse cx="50" cy="54" rx="27" ry="29" fill="#f6c15a"/>' +
            '<ellipse cx="40" cy="47" rx="4" ry="5" fill="#2b1606"/><ellipse cx="60" cy="47" rx="4" ry="5" fill="#2b1606"/>' +
            '<circle cx="41" cy="45.5" r="1.4" fill="#fff"/><circle cx="61" cy="45.5" r="1.4" fill="#fff"/>' +
            '<ellipse cx="50" cy="66" rx="13" ry="10" fill="#fde3a7"/>' +
            '<path d="M44 59 L56 59 L50 66Z" fill="#5a2d0c"/>' +
            '<path d="M50 66 L50 71 M50 71 C46 75 42 74 40 71 M50 71 C54 75 58 74 60 71" stroke="#5a2d0c" stroke-width="2" fill="none" stroke-linecap="round"/>',
        universe:
            '<defs><radialGradient id="u$" cx="38%" cy="35%" r="70%"><stop offset="0" stop-color="#9ff0ff"/>' +
            '<stop offset=".5" stop-color="#3f6bff"/><stop offset="1" stop-color="#1b0f5e"/></radialGradient>' +
            '<linearGradient id="v$" x1="0" y1="0" x2="1" y2="0"><stop offset="0" stop-color="#ffd36b" stop-opacity=".2"/>' +
            '<stop offset=".5" stop-color="#ffe9a8"/><stop offset="1" stop-color="#ffd36b" stop-opacity=".2"/></linearGradient></defs>' +
            '<path d="M8 62 C8 50 92 32 92 44" stroke="url(#v$)" stroke-width="6" fill="none"/>' +
            '<circle cx="50" cy="50" r="26" fill="url(#u$)"/>' +
            '<path d="M92 44 C92 56 8 74 8 62" stroke="url(#v$)" stroke-width="6" fill="none"/>' +
            '<circle cx="84" cy="16" r="6" fill="#e8e3ff"/>' +
            '<g fill="#fff"><circle cx="14" cy="18" r="1.8"/><circle cx="30" cy="86" r="1.5"/><circle cx="88" cy="84" r="2"/>' +
            '<circle cx="62" cy="10" r="1.2"/><circle cx="8" cy="40" r="1.2"/></g>' +
            '<path d="M22 30 l2 -6 l2 6 l6 2 l-6 2 l-2 6 l-2 -6 l-6 -2z" fill="#fff"/>'
    };

    var TIER_COLORS = {
        small: ['#ff8fb1', '#e0005e'],
        medium: ['#ffd166', '#f0871a'],
        large: ['#7fdcff', '#3b5bff'],
        legendary: ['#fff2a8', '#d4a000']
    };

    function giftBox(tier) {
        var c = TIER_COLORS[tier] || TIER_COLORS.small;
        return (
            '<defs><linearGradient id="k$" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="' + c[0] +
            '"/><stop offset="1" stop-color="' + c[1] + '"/></linearGradient></defs>' +
            '<rect x="14" y="42" width="72" height="52" rx="6" fill="url(#k$)"/>' +
            '<rect x="8" y="30" width="84" height="16" rx="5" fill="url(#k$)" stroke="#fff" stroke-opacity=".5" stroke-width="2"/>' +
            '<rect x="44" y="30" width="12" height="64" fill="#fff" fill-opacity=".85"/>' +
            '<path d="M50 30 C40 12 22 14 28 26 C32 32 44 30 50 30 C56 30 68 32 72 26 C78 14 60 12 50 30Z" fill="#fff" fill-opacity=".9"/>'
        );
    }

    /* Returns the <svg> markup for an animation id (unknown ids: a gift box of the tier). */
    function svg(animation, tier) {
        var body = Object.prototype.hasOwnProperty.call(ART, animation) ? ART[animation] : giftBox(tier);
        var suffix = '-ga' + ++uid;
        return (
            '<svg class="gift-svg" viewBox="0 0 100 100" xmlns="http://www.w3.org/2000/svg" aria-hidden="true">' +
            body.replace(/\$/g, suffix) + '</svg>'
        );
    }

    function known(animation) {
        return Object.prototype.hasOwnProperty.call(ART, animation);
    }

    root.GiftArt = {svg: svg, known: known, tierColors: TIER_COLORS};
})(typeof window !== 'undefined' ? window : this);
