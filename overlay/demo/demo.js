/* demo.js: the demo viewer page. Connects to giftd as a viewer (SPEC 3), shows the balance, the
 * catalog as buttons (greyed when unaffordable or unavailable), sends gifts with fresh ids, and
 * lists acks, errors and the room's events. window.giftDemo exposes send() for tests. */
(function () {
    'use strict';

    var params = new URLSearchParams(location.search);
    var opts = {
        room: params.get('room') || '',
        token: params.get('token') || '',
        ws: params.get('ws') || ''
    };
    var claims = decodeClaims(opts.token);

    var $ = function (id) {
        return document.getElementById(id);
    };

    var state = {
        balance: null,
        catalog: [],
        unavailable: {}, /* gift id → true after a gift_unavailable answer */
        clockSkew: 0, /* server_time_ms - Date.now() */
        joined: false,
        pending: new Map(), /* id → {gift, count, el} */
        last: null /* the last send, for "resend with the same id" */
    };
    var conn = {ws: null, attempt: 0, timer: null, lastRx: 0};
    var MAX_ENTRIES = 150;

    function decodeClaims(token) {
        try {
            var part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
            return JSON.parse(atob(part + '==='.slice((part.length + 3) % 4)));
        } catch (e) {
            return {};
        }
    }

    function isObj(v) {
        return v !== null && typeof v === 'object' && !Array.isArray(v);
    }

    function fmt(n) {
        return typeof n === 'number' && isFinite(n) ? n.toLocaleString('en') : '–';
    }

    function clock() {
        return new Date().toTimeString().slice(0, 8);
    }

    /* A fresh idempotency key: "demo-" and a UUID (identifier-safe: letters, digits, dashes). */
    function freshId() {
        if (window.crypto && typeof window.crypto.randomUUID === 'function') {
            return 'demo-' + window.crypto.randomUUID();
        }
        /* randomUUID needs a secure context; getRandomValues does not. */
        var b = new Uint8Array(16);
        window.crypto.getRandomValues(b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        var h = Array.prototype.map.call(b, function (x) {
            return (x + 0x100).toString(16).slice(1);
        }).join('');
        return 'demo-' + h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20);
    }

    function giftArt(g) {
        return window.GiftArt ? window.GiftArt.svg(g.animation || g.id, g.tier) : '';
    }

    function catalogEntry(id) {
        for (var i = 0; i < state.catalog.length; i++) {
            if (state.catalog[i].id === id) {
                return state.catalog[i];
            }
        }
        return null;
    }

    /* ---- log lists ---------------------------------------------------------------------------- */

    function entry(list, cls, type, gift, parts) {
        var li = document.createElement('li');
        li.className = 'entry ' + cls;
        if (type) {
            li.dataset.type = type;
        }
        var t = document.createElement('span');
        t.className = 'time';
        t.textContent = clock();
        li.appendChild(t);
        if (gift) {
            var art = document.createElement('span');
            art.innerHTML = giftArt(gift);
            li.appendChild(art.firstChild || art);
        }
        var text = document.createElement('span');
        text.className = 'text';
        setParts(text, parts);
        li.appendChild(text);
        list.insertBefore(li, list.firstChild);
        while (list.children.length > MAX_ENTRIES) {
            list.removeChild(list.lastChild);
        }
        return li;
    }

    /* parts: strings, and [text] for bold; built with text nodes only (names come from users). */
    function setParts(el, parts) {
        el.textContent = '';
        parts.forEach(function (p) {
            if (Array.isArray(p)) {
                var b = document.createElement('b');
                b.textContent = String(p[0]);
                el.appendChild(b);
            } else {
                el.appendChild(document.createTextNode(String(p)));
            }
        });
    }

    function event(type, gift, parts) {
        return entry($('events'), 'event', type, gift, parts);
    }

    /* ---- balance and catalog ------------------------------------------------------------------ */

    function setBalance(n) {
        if (typeof n !== 'number' || !isFinite(n)) {
            return;
        }
        var el = $('balance');
        var changed = state.balance !== n;
        state.balance = n;
        el.textContent = fmt(n);
        el.dataset.value = String(n);
        if (changed) {
            el.classList.remove('changed');
            void el.offsetWidth;
            el.classList.add('changed');
        }
        updateButtons();
    }

    function count() {
        var n = Math.floor(Number($('count').value));
        return isFinite(n) && n >= 1 ? Math.min(99, n) : 1;
    }

    function inWindow(g) {
        var t = Date.now() + state.clockSkew;
        if (g.available_from && Date.parse(g.available_from) > t) {
            return false;
        }
        if (g.available_until && Date.parse(g.available_until) <= t) {
            return false;
        }
        return true;
    }

    function updateButtons() {
        var n = count();
        Array.prototype.forEach.call(document.querySelectorAll('button.gift'), function (b) {
            var g = catalogEntry(b.dataset.gift);
            if (!g) {
                return;
            }
            var why = '';
            if (!state.joined) {
                why = 'not connected to a live room';
            } else if (state.unavailable[g.id] || !inWindow(g)) {
                why = 'not available now';
            } else if (state.balance === null || g.coins * n > state.balance) {
                why = 'costs ' + fmt(g.coins * n) + ' coins';
            }
            b.disabled = why !== '';
            b.title = why ? g.name + ': ' + why : 'Send ' + n + ' × ' + g.name + ' (' + fmt(g.coins * n) + ' coins)';
        });
        $('resend').disabled = !state.last || !state.joined;
    }

    function renderCatalog() {
        var box = $('catalog');
        box.textContent = '';
        state.catalog.forEach(function (g) {
            var b = document.createElement('button');
            b.type = 'button';
            b.className = 'gift tier-' + String(g.tier).replace(/[^a-z]/g, '');
            b.dataset.gift = g.id;
            b.innerHTML = giftArt(g) + '<span class="tier"></span><span class="name"></span><span class="price"></span>';
            b.querySelector('.name').textContent = g.name;
            b.querySelector('.price').textContent = fmt(g.coins);
            b.addEventListener('click', function () {
                send(g.id, count());
                b.classList.remove('sent');
                void b.offsetWidth;
                b.classList.add('sent');
            });
            box.appendChild(b);
        });
        updateButtons();
    }

    function apiBase() {
        return opts.ws ? opts.ws.replace(/^ws(s?):/, 'http$1:').replace(/\/+$/, '') : '';
    }

    function loadCatalog() {
        fetch(apiBase() + '/v1/gifts', {cache: 'no-store'})
            .then(function (r) {
                return r.json();
            })
            .then(function (j) {
                state.catalog = (j && Array.isArray(j.gifts) ? j.gifts : []).filter(function (g) {
                    return isObj(g) && typeof g.id === 'string' && typeof g.coins === 'number';
                });
                renderCatalog();
            })
            .catch(function (e) {
                $('catalog').textContent = 'Could not load the catalog: ' + e.message;
                setTimeout(loadCatalog, 3000);
            });
    }

    function refreshBalance() {
        if (!claims.sub) {
            return;
        }
        fetch(apiBase() + '/v1/users/' + encodeURIComponent(claims.sub) + '/balance', {
            headers: {authorization: 'Bearer ' + opts.token},
            cache: 'no-store'
        })
            .then(function (r) {
                return r.ok ? r.json() : null;
            })
            .then(function (j) {
                if (j) {
                    setBalance(j.coins);
                }
            })
            .catch(function () {});
    }

    /* ---- sending ------------------------------------------------------------------------------ */

    function send(giftId, n, sameId) {
        var id = sameId || freshId();
        var g = catalogEntry(giftId) || {id: giftId, name: giftId, tier: 'small'};
        var frame = {type: 'gift', id: id, gift: giftId, count: n};
        var el = entry($('sends'), 'pending', 'send', g, [['' + g.name], ' ×' + n + ' … ', id]);
        el.dataset.id = id;
        state.pending.set(id, {gift: g, count: n, el: el, frame: frame});
        state.last = {gift: giftId, count: n, id: id};
        updateButtons();
        if (!wsSend(frame)) {
            setParts(el.querySelector('.text'), [[g.name], ' ×' + n + ' — waiting for the connection (will be sent with the same id)']);
        }
        return id;
    }

    function wsSend(obj) {
        if (conn.ws && conn.ws.readyState === 1) {
            conn.ws.send(JSON.stringify(obj));
            return true;
        }
        return false;
    }

    function onAck(m) {
        var p = state.pending.get(m.id);
        setBalance(m.balance);
        var g = p ? p.gift : {id: '?', name: 'gift', tier: 'small'};
        var parts = [[g.name], ' ×' + (p ? p.count : '?') + ' — ', ['✓ acked'], ', seq ' + m.seq +
            ', balance ' + fmt(m.balance) + (m.duplicate ? ' (duplicate: charged once)' : '')];
        if (p) {
            state.pending.delete(m.id);
            p.el.className = 'entry ack';
            setParts(p.el.querySelector('.text'), parts);
            p.el.dataset.seq = String(m.seq);
            p.el.dataset.duplicate = String(!!m.duplicate);
        } else {
            var li = entry($('sends'), 'ack', 'send', g, parts);
            li.dataset.id = String(m.id);
        }
    }

    function onSendError(m) {
        var p = state.pending.get(m.id);
        var g = p ? p.gift : {id: '?', name: 'gift', tier: 'small'};
        var parts = [[g.name], ' ×' + (p ? p.count : '?') + ' — ', ['✗ ' + m.code], ': ' + (m.message || '')];
        var li;
        if (p) {
            state.pending.delete(m.id);
            li = p.el;
            li.className = 'entry error';
            setParts(li.querySelector('.text'), parts);
        } else {
            li = entry($('sends'), 'error', 'send', g, parts);
        }
        li.dataset.code = String(m.code);
        if (m.code === 'insufficient_funds') {
            refreshBalance();
        } else if (m.code === 'gift_unavailable' && p) {
            state.unavailable[p.gift.id] = true;
            updateButtons();
        }
    }

    /* ---- room events -------------------------------------------------------------------------- */

    function who(x) {
        return isObj(x) ? String(x.name || x.id || '?') : '?';
    }

    function handle(m) {
        if (!isObj(m)) {
            return;
        }
        switch (m.type) {
        case 'batch':
            if (Array.isArray(m.events)) {
                m.events.forEach(handle);
            }
            break;
        case 'welcome':
            if (typeof m.server_time_ms === 'number') {
                state.clockSkew = m.server_time_ms - Date.now();
            }
            $('user-name').textContent = who(m.user);
            $('user-id').textContent = isObj(m.user) ? '@' + m.user.id + ' · ' + m.role : String(m.role);
            setBalance(m.balance);
            event('welcome', null, ['welcome: ', [who(m.user)], ' (' + m.role + '), balance ' + fmt(m.balance)]);
            break;
        case 'joined':
            state.joined = true;
            conn.attempt = 0;
            setConn('live', 'live');
            $('creator').textContent = who(m.creator);
            $('viewer-count').textContent = fmt(m.viewers);
            event('joined', null, ['joined ', [m.room], ' (seq ' + m.seq + ', ' + fmt(m.viewers) + ' watching)']);
            /* Sends that were waiting, or unanswered when the last connection dropped, go again
             * with the same id: giftd charges each id once. */
            state.pending.forEach(function (p) {
                wsSend(p.frame);
            });
            updateButtons();
            break;
        case 'gift':
            var g = isObj(m.gift) ? m.gift : {};
            event('gift', g, [[who(m.from)], ' sent ', [g.name || g.id], ' ×' + m.count +
                (isObj(m.combo) ? ' (streak ' + m.combo.count + ')' : '') + ' · seq ' + m.seq]);
            break;
        case 'combo_end':
            var cg = isObj(m.gift) ? m.gift : {};
            event('combo_end', cg, [[who(m.from)], '’s ', [cg.name || cg.id], ' streak ended: ×' +
                m.total_count + ' in ' + (isObj(m.combo) ? m.combo.count : '?') + ' sends']);
            break;
        case 'viewers':
            $('viewer-count').textContent = fmt(m.count);
            event('viewers', null, ['viewers: ' + fmt(m.count)]);
            break;
        case 'leaderboard':
            var top = Array.isArray(m.top) ? m.top.slice(0, 3) : [];
            var parts = ['leaderboard: '];
            top.forEach(function (r, i) {
                parts.push((i ? ', ' : '') + (i + 1) + '. ');
                parts.push([who(r)]);
                parts.push(' ' + fmt(r.coins));
            });
            event('leaderboard', null, parts);
            break;
        case 'room_closed':
            state.joined = false;
            setConn('waiting', 'room closed');
            event('room_closed', null, ['the room was closed']);
            updateButtons();
            break;
        case 'ack':
            onAck(m);
            break;
        case 'error':
            if (m.id !== undefined && m.id !== null) {
                onSendError(m);
            } else {
                event('error', null, [['error ' + m.code], ': ' + (m.message || '')]);
                if (m.code === 'room_not_live') {
                    setConn('waiting', 'room not live');
                    setTimeout(function () {
                        wsSend({type: 'join', room: opts.room});
                    }, 3000);
                } else if (m.code === 'unauthorized') {
                    setConn('unauthorized', 'token refused');
                }
            }
            break;
        case 'left':
        case 'pong':
            break;
        default:
            event(String(m.type), null, ['(unknown event ' + String(m.type) + ')']);
        }
    }

    /* ---- connection --------------------------------------------------------------------------- */

    function setConn(s, text) {
        var el = $('conn');
        el.dataset.state = s;
        el.textContent = text;
    }

    function connect() {
        setConn('connecting', 'connecting…');
        var base = opts.ws ? opts.ws.replace(/\/+$/, '') : (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host;
        var ws;
        try {
            ws = new WebSocket(base + '/ws?token=' + encodeURIComponent(opts.token) + '&room=' + encodeURIComponent(opts.room), 'giftd.v1');
        } catch (e) {
            reconnectLater();
            return;
        }
        conn.ws = ws;
        ws.onopen = function () {
            conn.lastRx = Date.now();
        };
        ws.onmessage = function (e) {
            conn.lastRx = Date.now();
            var m;
            try {
                m = JSON.parse(e.data);
            } catch (err) {
                return;
            }
            try {
                handle(m);
            } catch (err) {
                if (window.console) {
                    console.warn('demo: could not show', m, err);
                }
            }
        };
        ws.onclose = function (e) {
            if (conn.ws !== ws) {
                return;
            }
            conn.ws = null;
            state.joined = false;
            setConn('offline', 'offline (' + e.code + ')');
            updateButtons();
            reconnectLater();
        };
    }

    function reconnectLater() {
        var cap = Math.min(10000, 500 * Math.pow(2, conn.attempt));
        conn.attempt = Math.min(conn.attempt + 1, 10);
        clearTimeout(conn.timer);
        conn.timer = setTimeout(connect, cap / 2 + (Math.random() * cap) / 2);
    }

    setInterval(function () {
        if (conn.ws && conn.ws.readyState === 1) {
            if (Date.now() - conn.lastRx > 30000) {
                conn.ws.close();
                return;
            }
            wsSend({type: 'ping'});
        }
    }, 10000);

    /* ---- start -------------------------------------------------------------------------------- */

    $('room-name').textContent = opts.room || '–';
    $('count').addEventListener('input', updateButtons);
    Array.prototype.forEach.call(document.querySelectorAll('button.qty'), function (b) {
        b.addEventListener('click', function () {
            $('count').value = b.dataset.n;
            updateButtons();
        });
    });
    $('refresh').addEventListener('click', refreshBalance);
    $('resend').addEventListener('click', function () {
        if (state.last) {
            send(state.last.gift, state.last.count, state.last.id);
        }
    });

    window.giftDemo = {send: send, state: state};

    loadCatalog();
    if (!opts.token || !opts.room) {
        var setup = $('setup');
        setup.querySelector('.why').textContent = !opts.token ? 'No token in the URL.' : 'No room in the URL.';
        setup.classList.remove('hidden');
        setConn('offline', 'not configured');
    } else {
        refreshBalance();
        connect();
    }
})();
