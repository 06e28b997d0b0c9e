/* overlay.js: the streamer overlay. Watches one room over giftd's WebSocket (SPEC 3) through
 * giftd-client.js and shows gift alerts one at a time, streaks as a live ×N counter, the top
 * senders, the viewer count and the room's goal as a progress bar.
 * It never throws on what the server sends. It reconnects by itself and resumes the room: the
 * alerts it missed still show if they are recent (recent_ms, default 30 s), older ones only update
 * the streaks. It follows the overlay controls (skip, pause, resume, replay) and can hold room
 * events back by delay_ms. window.giftOverlay exposes its state (and handle() for tests). */
(function () {
    'use strict';

    /* ---- options ------------------------------------------------------------------------------ */

    var params = new URLSearchParams(location.search);

    function flag(name, def) {
        var v = params.get(name);
        if (v === null) {
            return def;
        }
        v = v.toLowerCase();
        return !(v === '0' || v === 'false' || v === 'no' || v === 'off');
    }

    function num(name, def, lo, hi) {
        var v = Number(params.get(name));
        if (params.get(name) === null || params.get(name) === '' || !isFinite(v)) {
            return def;
        }
        return Math.min(hi, Math.max(lo, v));
    }

    /* The room an overlay token is bound to (its "room" claim); '' when unreadable. */
    function tokenRoom(token) {
        try {
            var part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
            var claims = JSON.parse(atob(part + '==='.slice((part.length + 3) % 4)));
            return typeof claims.room === 'string' ? claims.room : '';
        } catch (e) {
            return '';
        }
    }

    var opts = {
        room: params.get('room') || '',
        token: params.get('token') || '',
        min: num('min', 0, 0, 1e12),
        steps: flag('steps', false),
        mute: flag('mute', false),
        volume: num('volume', 0.6, 0, 1),
        speed: num('speed', 1, 0.1, 20),
        top: Math.round(num('top', 5, 0, 20)),
        viewers: flag('viewers', true),
        goal: flag('goal', true),
        preview: flag('preview', false),
        debug: flag('debug', false),
        /* Hold every room event back this long (ms), to match the stream's broadcast delay. */
        delayMs: Math.round(num('delay_ms', 0, 0, 600000)),
        /* A missed event replayed after a reconnect alerts only if at most this old (ms). */
        recentMs: Math.round(num('recent_ms', 30000, 0, 86400000)),
        ws: params.get('ws') || ''
    };
    if (!opts.room && opts.token) {
        opts.room = tokenRoom(opts.token);
    }

    var TIERS = {small: 0, medium: 1, large: 2, legendary: 3};
    var SHOW_MS = {small: 3200, medium: 4500, large: 6500, legendary: 9500};
    var LINGER_MS = {small: 1600, medium: 1900, large: 2600, legendary: 3200};
    var ENTER_MS = {small: 450, medium: 550, large: 750, legendary: 1000};
    var EXIT_MS = 450;
    var STREAK_IDLE_MS = 9000; /* an open streak with no news for this long closes by itself */
    var MAX_QUEUE = 60;

    var $ = function (id) {
        return document.getElementById(id);
    };
    var root = document.documentElement;

    var stats = {frames: 0, gifts: 0, alerts: 0, unknown: 0, errors: 0, connects: 0, dropped: 0, resumes: 0,
        reloads: 0, replayed: 0, quiet: 0, held: 0, controls: 0};
    var history = []; /* the last alerts shown, newest last (for tests and the debug panel) */

    /* ---- small helpers ------------------------------------------------------------------------ */

    function now() {
        return Date.now();
    }

    function isObj(v) {
        return v !== null && typeof v === 'object' && !Array.isArray(v);
    }

    function str(v, def) {
        return typeof v === 'string' && v.length > 0 ? v : def;
    }

    function posInt(v, def) {
        return typeof v === 'number' && isFinite(v) && v >= 1 ? Math.floor(v) : def;
    }

    function fmt(n) {
        if (typeof n !== 'number' || !isFinite(n)) {
            return '0';
        }
        if (n >= 100000) {
            try {
                return new Intl.NumberFormat('en', {notation: 'compact', maximumFractionDigits: 1}).format(n);
            } catch (e) {
                /* fall through */
            }
        }
        return Math.round(n).toLocaleString('en');
    }

    var debugLines = [];

    function log(line) {
        if (!opts.debug) {
            return;
        }
        debugLines.push(new Date().toISOString().slice(11, 23) + ' ' + line);
        if (debugLines.length > 16) {
            debugLines.shift();
        }
        renderDebug();
    }

    function renderDebug() {
        if (!opts.debug) {
            return;
        }
        var el = $('debug');
        el.classList.remove('hidden');
        el.textContent =
            'state ' + root.dataset.state + '  room ' + (opts.room || '-') + '  queue ' + queue.length +
            '  alerts ' + stats.alerts + '  gifts ' + stats.gifts + '\n' + debugLines.join('\n');
    }

    function setState(s) {
        root.dataset.state = s;
        renderDebug();
    }

    function showSetup(why) {
        var el = $('setup');
        el.querySelector('.why').textContent = why;
        el.classList.remove('hidden');
    }

    /* ---- sound: short synthesized chimes, longer and louder with the tier ---------------------- */

    var audio = null;
    var CHIMES = {
        small: {notes: [1318.5, 1760], step: 0.07, len: 0.35, gain: 0.05},
        medium: {notes: [880, 1108.7, 1318.5], step: 0.08, len: 0.5, gain: 0.08},
        large: {notes: [523.3, 659.3, 784, 1046.5, 1318.5], step: 0.09, len: 0.8, gain: 0.11},
        legendary: {notes: [392, 523.3, 659.3, 784, 1046.5, 1318.5, 1568], step: 0.1, len: 1.4, gain: 0.15}
    };

    function chime(tier, quiet) {
        if (opts.mute || opts.volume <= 0) {
            return;
        }
        try {
            if (!audio) {
                var AC = window.AudioContext || window.webkitAudioContext;
                if (!AC) {
                    return;
                }
                audio = new AC();
            }
            if (audio.state === 'suspended') {
                audio.resume().catch(function () {});
            }
            var c = CHIMES[tier] || CHIMES.small;
            var notes = quiet ? [c.notes[c.notes.length - 1]] : c.notes;
            var peak = c.gain * (opts.volume / 0.6) * (quiet ? 0.5 : 1);
            var t0 = audio.currentTime + 0.02;
            notes.forEach(function (f, i) {
                var o = audio.createOscillator();
                var g = audio.createGain();
                o.type = i % 2 ? 'sine' : 'triangle';
                o.frequency.value = f;
                var t = t0 + i * c.step;
                g.gain.setValueAtTime(0.0001, t);
                g.gain.exponentialRampToValueAtTime(peak, t + 0.012);
                g.gain.exponentialRampToValueAtTime(0.0001, t + c.len);
                o.connect(g).connect(audio.destination);
                o.start(t);
                o.stop(t + c.len + 0.05);
            });
        } catch (e) {
            /* no sound is better than a stalled overlay */
        }
    }

    /* ---- particles on a canvas ---------------------------------------------------------------- */

    var fx = {canvas: $('fx'), ctx: null, parts: [], running: false, last: 0, w: 0, h: 0, dpr: 1};
    var MAX_PARTS = 700;

    function fxResize() {
        fx.dpr = Math.min(window.devicePixelRatio || 1, 2);
        fx.w = window.innerWidth;
        fx.h = window.innerHeight;
        fx.canvas.width = Math.round(fx.w * fx.dpr);
        fx.canvas.height = Math.round(fx.h * fx.dpr);
        fx.ctx = fx.canvas.getContext('2d');
    }

    function rnd(a, b) {
        return a + Math.random() * (b - a);
    }

    function pick(list) {
        return list[Math.floor(Math.random() * list.length)];
    }

    function fxAdd(p) {
        if (fx.parts.length >= MAX_PARTS) {
            return;
        }
        p.age = 0;
        p.rot = p.rot || 0;
        p.vr = p.vr || 0;
        p.g = p.g || 0;
        p.drag = p.drag === undefined ? 0.6 : p.drag;
        fx.parts.push(p);
        if (!fx.running) {
            fx.running = true;
            fx.last = performance.now();
            requestAnimationFrame(fxFrame);
        }
    }

    function drawHeart(ctx, s) {
        ctx.beginPath();
        ctx.moveTo(0, s * 0.35);
        ctx.bezierCurveTo(-s * 1.1, -s * 0.35, -s * 0.45, -s * 1.05, 0, -s * 0.45);
        ctx.bezierCurveTo(s * 0.45, -s * 1.05, s * 1.1, -s * 0.35, 0, s * 0.35);
        ctx.fill();
    }

    function drawStar(ctx, s) {
        ctx.beginPath();
        for (var i = 0; i < 8; i++) {
            var r = i % 2 ? s * 0.28 : s;
            var a = (i * Math.PI) / 4;
            ctx.lineTo(Math.cos(a) * r, Math.sin(a) * r);
        }
        ctx.closePath();
        ctx.fill();
    }

    function fxFrame(t) {
        /* rAF's timestamp is the frame's start, which may precede the performance.now() taken
         * when the first particle was added: never step backwards. */
        var dt = Math.max(0, Math.min(0.05, (t - fx.last) / 1000));
        fx.last = Math.max(fx.last, t);
        var ctx = fx.ctx;
        ctx.setTransform(fx.dpr, 0, 0, fx.dpr, 0, 0);
        ctx.clearRect(0, 0, fx.w, fx.h);
        var keep = [];
        var born = [];
        for (var i = 0; i < fx.parts.length; i++) {
            var p = fx.parts[i];
            p.age += dt;
            if (p.age >= p.life) {
                if (p.onDeath) {
                    p.onDeath(p, born);
                }
                continue;
            }
            var k = 1 - Math.min(0.95, p.drag * dt);
            p.vx *= k;
            p.vy = p.vy * k + p.g * dt;
            p.x += p.vx * dt;
            p.y += p.vy * dt;
            p.rot += p.vr * dt;
            var fade = Math.min(1, (p.life - p.age) / Math.min(0.6, p.life * 0.5));
            var grow = p.grow ? Math.min(1, p.age / 0.15) : 1;
            ctx.save();
            ctx.globalAlpha = Math.max(0, fade) * (p.alpha || 1);
            ctx.translate(p.x, p.y);
            ctx.rotate(p.rot);
            ctx.fillStyle = p.color;
            ctx.strokeStyle = p.color;
            var s = Math.max(0, p.size * grow);
            switch (p.kind) {
            case 'heart':
                drawHeart(ctx, s);
                break;
            case 'star':
                drawStar(ctx, s * (0.75 + 0.25 * Math.sin(p.age * 12 + p.size)));
                break;
            case 'confetti':
                ctx.scale(1, Math.cos(p.age * p.flip));
                ctx.fillRect(-s / 2, -s / 4, s, s / 2);
                break;
            case 'petal':
                ctx.beginPath();
                ctx.ellipse(0, 0, s, s * 0.55, 0, 0, Math.PI * 2);
                ctx.fill();
                break;
            case 'streak':
                ctx.lineWidth = p.width || 2;
                ctx.lineCap = 'round';
                ctx.beginPath();
                ctx.moveTo(0, 0);
                ctx.lineTo(-p.vx * 0.06, -p.vy * 0.06);
                ctx.stroke();
                break;
            default: /* glowing dot */
                ctx.shadowColor = p.color;
                ctx.shadowBlur = s * 3;
                ctx.beginPath();
                ctx.arc(0, 0, s, 0, Math.PI * 2);
                ctx.fill();
            }
            ctx.restore();
            keep.push(p);
        }
        fx.parts = keep.concat(born).slice(0, MAX_PARTS);
        if (fx.parts.length > 0) {
            requestAnimationFrame(fxFrame);
        } else {
            fx.running = false;
            ctx.clearRect(0, 0, fx.w, fx.h);
        }
    }

    var PALETTES = {
        love: ['#ff4f8b', '#ff86b3', '#ff2d55', '#ffc2d9'],
        party: ['#ff3d7f', '#ffd54a', '#3dd6ff', '#8cf56b', '#b36bff', '#ffffff'],
        gold: ['#fff3b0', '#ffd36b', '#ffb700', '#ffffff'],
        cosmic: ['#ffffff', '#c9b6ff', '#8fe3ff', '#ffd6ff'],
        warm: ['#ff8c1a', '#ffd36b', '#ff5a1a', '#fff3b0'],
        ice: ['#ffffff', '#dff5ff', '#a9e4ff']
    };

    function burst(x, y, n, o) {
        for (var i = 0; i < n; i++) {
            var a = o.angle !== undefined ? o.angle + rnd(-o.spread, o.spread) : rnd(0, Math.PI * 2);
            var v = rnd(o.speed[0], o.speed[1]);
            fxAdd({
                kind: o.kind,
                x: x + rnd(-o.jitter || 0, o.jitter || 0),
                y: y + rnd(-o.jitter || 0, o.jitter || 0),
                vx: Math.cos(a) * v,
                vy: Math.sin(a) * v,
                g: o.g || 0,
                drag: o.drag,
                size: rnd(o.size[0], o.size[1]),
                color: pick(o.colors),
                life: rnd(o.life[0], o.life[1]),
                vr: rnd(-6, 6),
                rot: rnd(0, Math.PI * 2),
                flip: rnd(4, 12),
                alpha: o.alpha,
                grow: true
            });
        }
    }

    function rain(n, o) {
        for (var i = 0; i < n; i++) {
            fxAdd({
                kind: o.kind,
                x: rnd(0, fx.w),
                y: rnd(-fx.h * 0.3, -10),
                vx: rnd(-30, 30),
                vy: rnd(o.speed[0], o.speed[1]),
                g: o.g || 0,
                drag: 0,
                size: rnd(o.size[0], o.size[1]),
                color: pick(o.colors),
                life: rnd(o.life[0], o.life[1]),
                vr: rnd(-3, 3),
                rot: rnd(0, Math.PI * 2),
                flip: rnd(3, 8)
            });
        }
    }

    function fireworks(shells) {
        for (var i = 0; i < shells; i++) {
            (function (delay) {
                setTimeout(function () {
                    var colors = [pick(PALETTES.party), pick(PALETTES.party)];
                    fxAdd({
                        kind: 'streak',
                        x: rnd(fx.w * 0.15, fx.w * 0.85),
                        y: fx.h + 10,
                        vx: rnd(-60, 60),
                        vy: -rnd(fx.h * 0.9, fx.h * 1.25),
                        g: fx.h * 0.55,
                        drag: 0.2,
                        size: 2,
                        width: 3,
                        color: '#fff3b0',
                        life: rnd(0.8, 1.1),
                        onDeath: function (p) {
                            burst(p.x, p.y, 46, {
                                kind: 'dot',
                                speed: [80, 320],
                                size: [1.5, 3],
                                colors: colors,
                                life: [0.9, 1.6],
                                g: 90,
                                drag: 1.4
                            });
                        }
                    });
                }, delay);
            })(i * 380);
        }
    }

    function warp(cx, cy, n) {
        for (var i = 0; i < n; i++) {
            var a = rnd(0, Math.PI * 2);
            var v = rnd(300, 1200);
            fxAdd({
                kind: 'streak',
                x: cx + Math.cos(a) * rnd(10, 80),
                y: cy + Math.sin(a) * rnd(10, 80),
                vx: Math.cos(a) * v,
                vy: Math.sin(a) * v,
                drag: -0.8,
                size: 1,
                width: rnd(1, 2.5),
                color: pick(PALETTES.cosmic),
                life: rnd(0.6, 1.3)
            });
        }
    }

    /* Particle effect for an alert: once on entrance (big = true) and small puffs on streak steps. */
    function effect(a, big) {
        if (!fx.ctx) {
            return;
        }
        var r = a.el.querySelector('.alert-art').getBoundingClientRect();
        var x = r.left + r.width / 2;
        var y = r.top + r.height / 2;
        var t = TIERS[a.tier];
        var n = big ? [18, 34, 70, 110][t] : 10;
        switch (a.gift.animation) {
        case 'rose':
            burst(x, y, n, {kind: 'petal', speed: [60, 220], size: [4, 7], colors: ['#e5173f', '#ff5c7a', '#b30f2e'], life: [1.2, 2], g: 160, drag: 1.2});
            break;
        case 'heart_me':
        case 'finger_heart':
            burst(x, y, n, {kind: 'heart', angle: -Math.PI / 2, spread: 1.1, speed: [80, 260], size: [6, 12], colors: PALETTES.love, life: [1.2, 2.2], g: -30, drag: 1});
            break;
        case 'confetti':
        case 'doughnut':
            burst(x, y, big ? n * 2 : n, {kind: 'confetti', angle: -Math.PI / 2, spread: 1.3, speed: [200, 620], size: [8, 13], colors: PALETTES.party, life: [1.6, 2.6], g: 520, drag: 1.1});
            break;
        case 'snowflake':
            if (big) {
                rain(90, {kind: 'dot', speed: [60, 160], size: [1.5, 3.5], colors: PALETTES.ice, life: [3, 5]});
            }
            burst(x, y, n, {kind: 'star', speed: [40, 200], size: [4, 8], colors: PALETTES.ice, life: [0.8, 1.4], drag: 1.5});
            break;
        case 'fireworks':
            fireworks(big ? 6 : 1);
            break;
        case 'galaxy':
        case 'universe':
            burst(x, y, n, {kind: 'star', speed: [40, 380], size: [3, 8], colors: PALETTES.cosmic, life: [1.2, 2.4], drag: 1.1});
            if (big) {
                warp(x, y, a.gift.animation === 'universe' ? 140 : 70);
            }
            if (big && a.gift.animation === 'universe') {
                fireworks(4);
            }
            break;
        case 'interstellar':
            if (big) {
                warp(x, y, 160);
            }
            burst(x, y + r.height * 0.45, n, {kind: 'dot', angle: Math.PI / 2, spread: 0.5, speed: [120, 420], size: [2, 5], colors: PALETTES.warm, life: [0.5, 1.1], drag: 1.5});
            break;
        case 'sports_car':
            for (var i = 0; i < (big ? 50 : 10); i++) {
                fxAdd({kind: 'streak', x: rnd(0, fx.w), y: y + rnd(-r.height, r.height), vx: -rnd(900, 1600), vy: 0, drag: 0, size: 1, width: rnd(1, 3), color: 'rgba(255,255,255,0.8)', life: rnd(0.4, 0.9)});
            }
            break;
        case 'lion':
            burst(x, y, n, {kind: 'confetti', angle: -Math.PI / 2, spread: 1.4, speed: [200, 650], size: [8, 13], colors: PALETTES.gold, life: [1.8, 2.8], g: 480, drag: 1.1});
            burst(x, y, Math.round(n / 2), {kind: 'star', speed: [60, 300], size: [4, 9], colors: PALETTES.gold, life: [1, 2], drag: 1.2});
            break;
        case 'pumpkin':
            burst(x, y, n, {kind: 'dot', speed: [60, 260], size: [2, 4], colors: PALETTES.warm, life: [0.8, 1.6], g: 60, drag: 1.2});
            break;
        default: /* ice_cream, perfume, hat_and_mustache, unknown gifts */
            burst(x, y, n, {kind: t >= 2 ? 'star' : 'dot', speed: [60, 280], size: [2, 6], colors: t >= 3 ? PALETTES.gold : PALETTES.party, life: [0.8, 1.6], drag: 1.2});
        }
    }

    /* ---- alerts: one at a time; a streak is one alert whose counter is updated in place ------- */

    var queue = [];
    var current = null;
    var timer = null;
    var streaks = new Map(); /* "room|from|gift" → streak */

    function normGift(ev) {
        var g = isObj(ev.gift) ? ev.gift : {};
        var f = isObj(ev.from) ? ev.from : {};
        var tier = Object.prototype.hasOwnProperty.call(TIERS, g.tier) ? g.tier : 'small';
        /* An anonymous gift has from: null; nothing of a sender is shown even if one came along. */
        var anon = ev.anonymous === true || ev.from === null;
        return {
            from: anon ? {id: '', name: 'Anonymous', anonymous: true} : {id: str(f.id, ''), name: str(f.name, str(f.id, 'Someone'))},
            gift: {
                id: str(g.id, 'gift'),
                name: str(g.name, str(g.id, 'a gift')),
                coins: typeof g.coins === 'number' && isFinite(g.coins) ? g.coins : 0,
                tier: tier,
                animation: str(g.animation, str(g.id, ''))
            },
            tier: tier
        };
    }

    /* ev: the room event that made the alert (its seq, id and arrival are kept for tests). */
    function makeAlert(n, count, streak, ev, at) {
        ev = ev || {};
        return {
            seq: typeof ev.seq === 'number' ? ev.seq : null,
            id: typeof ev.id === 'string' ? ev.id : null,
            receivedAt: at || now(),
            replay: ev.replay === true, /* a missed event replayed after a reconnect */
            replayed: false, /* shown again by an overlay control */
            key: streak ? streak.key : null,
            streak: streak || null,
            from: n.from,
            gift: n.gift,
            tier: n.tier,
            count: count,
            open: !!(streak && streak.open),
            shownAt: 0,
            lastUpdate: now(),
            el: null,
            fxTimer: null,
            phase: 'queued',
            record: null
        };
    }

    function enqueue(a) {
        queue.push(a);
        if (queue.length > MAX_QUEUE) {
            /* Far behind: drop the least valuable waiting alert, never a legendary one. */
            var worst = -1;
            for (var i = 0; i < queue.length; i++) {
                var q = queue[i];
                if (q.tier !== 'legendary' && (worst < 0 || value(q) < value(queue[worst]))) {
                    worst = i;
                }
            }
            var dropped = queue.splice(worst < 0 ? 0 : worst, 1)[0];
            if (dropped.streak) {
                dropped.streak.alert = null;
            }
            stats.dropped++;
        }
        pump();
        reschedule();
    }

    function value(a) {
        return a.gift.coins * a.count;
    }

    function pump() {
        if (current || queue.length === 0 || paused) {
            return;
        }
        current = queue.shift();
        show(current);
    }

    /* How long a plain alert stays: longer for higher tiers, shorter when others are waiting. */
    function showMs(a) {
        var base = SHOW_MS[a.tier] / opts.speed;
        var waiting = queue.length;
        var factor = waiting === 0 ? 1 : Math.max(0.35, 1 - 0.12 * waiting);
        return Math.max(ENTER_MS[a.tier] + 700, base * factor);
    }

    function deadline(a) {
        if (a.streak && a.open) {
            return a.lastUpdate + STREAK_IDLE_MS;
        }
        if (a.streak && a.closedAt && a.closedAt > a.shownAt) {
            /* Closed on screen: linger on the final count (less when others are waiting). */
            var f = queue.length ? Math.max(0.4, 1 - 0.12 * queue.length) : 1;
            return Math.max(a.closedAt + (LINGER_MS[a.tier] / opts.speed) * f, a.shownAt + ENTER_MS[a.tier] + 600);
        }
        return a.shownAt + showMs(a);
    }

    function reschedule() {
        clearTimeout(timer);
        timer = null;
        if (!current || current.phase === 'exit') {
            return;
        }
        timer = setTimeout(expire, Math.max(0, deadline(current) - now()));
    }

    function expire() {
        var a = current;
        if (!a || a.phase === 'exit') {
            return;
        }
        if (a.streak && a.open) {
            if (now() - a.lastUpdate < STREAK_IDLE_MS) {
                reschedule();
                return;
            }
            closeAlert(a, 'idle'); /* no combo_end came: close it ourselves so the queue never stalls */
            reschedule();
            return;
        }
        if (now() < deadline(a) - 5) {
            reschedule();
            return;
        }
        leave(a, 'time');
    }

    /* Takes the alert on screen away (its exit animation), then shows the next one. */
    function leave(a, why) {
        a.phase = 'exit';
        a.el.dataset.phase = 'exit';
        a.record.endedAt = now();
        a.record.endedBy = why;
        clearTimeout(timer);
        timer = null;
        clearInterval(a.fxTimer);
        root.classList.remove('legendary-on');
        setTimeout(function () {
            if (a.el.parentNode) {
                a.el.parentNode.removeChild(a.el);
            }
            if (a.streak && a.streak.alert === a) {
                a.streak.alert = null;
            }
            if (current === a) {
                current = null;
            }
            pump();
            reschedule();
        }, EXIT_MS);
    }

    function renderCount(a, pop) {
        var n = a.el.querySelector('.alert-n');
        n.textContent = fmt(a.count);
        a.el.dataset.count = String(a.count);
        a.el.classList.toggle('no-count', !a.streak && a.count <= 1);
        if (pop) {
            var c = a.el.querySelector('.alert-count');
            c.classList.remove('pop');
            void c.offsetWidth; /* restart the animation */
            c.classList.add('pop');
        }
        if (a.record) {
            a.record.count = a.count;
        }
    }

    function show(a) {
        var el = document.createElement('div');
        el.className = 'alert tier-' + a.tier + ' anim-' + a.gift.animation.replace(/[^A-Za-z0-9_-]/g, '_');
        if (a.streak) {
            el.classList.add('streak');
        }
        el.dataset.phase = 'enter';
        el.dataset.gift = a.gift.id;
        el.dataset.from = a.from.id;
        el.dataset.tier = a.tier;
        if (a.from.anonymous) {
            el.classList.add('anonymous');
            el.dataset.anonymous = 'true';
        }
        el.dataset.closed = String(!a.open);

        var art = document.createElement('div');
        art.className = 'alert-art';
        var glow = document.createElement('div');
        glow.className = 'art-glow';
        var motion = document.createElement('div');
        motion.className = 'art-motion';
        motion.innerHTML = window.GiftArt ? window.GiftArt.svg(a.gift.animation, a.tier) : '';
        art.appendChild(glow);
        art.appendChild(motion);

        var card = document.createElement('div');
        card.className = 'alert-card';
        var from = document.createElement('div');
        from.className = 'alert-from';
        from.textContent = a.from.name;
        var what = document.createElement('div');
        what.className = 'alert-what';
        what.appendChild(document.createTextNode('sent '));
        var gname = document.createElement('span');
        gname.className = 'alert-gift';
        gname.textContent = a.gift.name;
        what.appendChild(gname);
        card.appendChild(from);
        card.appendChild(what);

        var count = document.createElement('div');
        count.className = 'alert-count';
        count.innerHTML = '<span class="x">\u00d7</span><span class="alert-n"></span>';

        card.appendChild(count); /* the counter hangs on the card's corner */
        el.appendChild(art);
        el.appendChild(card);
        a.el = el;
        $('stage').appendChild(el);

        a.shownAt = now();
        a.phase = 'enter';
        stats.alerts++;
        a.record = {gift: a.gift.id, from: a.from.id, name: a.from.name, anonymous: !!a.from.anonymous, tier: a.tier,
            count: a.count, streak: !!a.streak, closed: !a.open, closedBy: a.closedBy || null, at: a.shownAt,
            seq: a.seq, id: a.id, receivedAt: a.receivedAt, replay: a.replay, replayed: a.replayed,
            endedAt: null, endedBy: null};
        history.push(a.record);
        if (history.length > 50) {
            history.shift();
        }
        renderCount(a, false);
        log('alert ' + a.from.name + ' ' + a.gift.id + ' x' + a.count);

        setTimeout(function () {
            if (a.phase === 'enter') {
                a.phase = 'show';
                el.dataset.phase = 'show';
            }
        }, ENTER_MS[a.tier]);

        var t = TIERS[a.tier];
        chime(a.tier, false);
        /* Particles start where the artwork lands, once its entrance is over. */
        setTimeout(function () {
            if (a.phase === 'exit' || !a.el.parentNode) {
                return;
            }
            try {
                effect(a, true);
            } catch (e) {
                stats.errors++;
            }
            if (t >= 2) {
                a.fxTimer = setInterval(function () {
                    effect(a, true);
                }, t === 3 ? 2200 : 2600);
            }
        }, Math.round(ENTER_MS[a.tier] * 0.7));
        if (t === 3) {
            root.classList.add('legendary-on');
            var stage = $('stage');
            stage.classList.remove('shake-screen');
            void stage.offsetWidth;
            stage.classList.add('shake-screen');
        }
        reschedule();
    }

    /* A streak step arrived for an alert already queued or on screen. */
    function bumpAlert(a, count) {
        a.count = count;
        a.lastUpdate = now();
        if (a.el) {
            renderCount(a, true);
            try {
                if (a.phase === 'show') {
                    effect(a, false);
                }
            } catch (e) {
                stats.errors++;
            }
            chime(a.tier, true);
        }
        if (a === current) {
            reschedule();
        }
    }

    function closeAlert(a, why) {
        if (!a.open) {
            return;
        }
        a.open = false;
        a.closedAt = now();
        a.closedBy = why;
        if (a.record) {
            a.record.closed = true;
            a.record.closedBy = why;
        }
        if (a.el) {
            a.el.dataset.closed = 'true';
            renderCount(a, false);
        }
    }

    function streakKey(ev, n) {
        return str(ev.room, opts.room) + '|' + n.from.id + '|' + n.gift.id;
    }

    /* Whether an event arrived at `at` gets its alert: every live one; a replayed one (missed while
     * disconnected) only while it is recent (opts.recentMs by the server's clock). */
    function isRecent(ev, at) {
        return ev.replay !== true || typeof ev.ts_ms !== 'number' || serverTime(at) - ev.ts_ms <= opts.recentMs;
    }

    /* A gift event (at: when it arrived). An old replayed one updates the streaks but shows nothing. */
    function onGift(ev, at) {
        stats.gifts++;
        var quiet = !isRecent(ev, at);
        if (ev.replay === true) {
            stats[quiet ? 'quiet' : 'replayed']++;
        }
        var n = normGift(ev);
        var count = posInt(ev.count, 1);
        var combo = isObj(ev.combo) ? posInt(ev.combo.count, 0) : 0;
        if (!combo) {
            var a = makeAlert(n, count, null, ev, at);
            if (!quiet && value(a) >= opts.min) {
                enqueue(a);
            }
            return;
        }
        var key = streakKey(ev, n);
        var s = streaks.get(key);
        if (s && combo <= s.sends) {
            /* A new streak began (we missed the combo_end of the last one). */
            endStreak(s, null, 'new_streak');
            s = null;
        }
        if (!s) {
            s = {key: key, n: n, sends: 0, total: 0, open: true, alert: null};
            streaks.set(key, s);
        }
        s.sends = combo;
        s.total += count;
        var shown = Math.max(s.total, combo);
        if (opts.steps) {
            /* Every step its own alert, showing the streak so far. */
            if (!quiet && n.gift.coins * shown >= opts.min) {
                enqueue(makeAlert(n, shown, null, ev, at));
            }
            return;
        }
        if (s.alert) {
            bumpAlert(s.alert, shown);
        } else if (!quiet && !s.skipped && n.gift.coins * shown >= opts.min) {
            s.alert = makeAlert(n, shown, s, ev, at);
            enqueue(s.alert);
        }
    }

    function endStreak(s, total, why) {
        streaks.delete(s.key);
        s.open = false;
        if (s.alert) {
            if (typeof total === 'number' && total > s.alert.count) {
                s.alert.count = total;
                if (s.alert.el) {
                    renderCount(s.alert, true);
                }
            }
            closeAlert(s.alert, why);
            if (s.alert === current) {
                reschedule();
            }
        }
    }

    function onComboEnd(ev, at) {
        var n = normGift(ev);
        var key = streakKey(ev, n);
        var s = streaks.get(key);
        var total = posInt(ev.total_count, isObj(ev.combo) ? posInt(ev.combo.count, 1) : 1);
        if (s) {
            endStreak(s, Math.max(total, s.total), 'combo_end');
            return;
        }
        if (!opts.steps && isRecent(ev, at) && n.gift.coins * total >= opts.min && joinedFor === str(ev.room, opts.room) &&
            recentlyJoined()) {
            /* The streak began before we joined: show its result once. */
            var a = makeAlert(n, total, {key: key, open: false, alert: null}, ev, at);
            a.streak.alert = a;
            a.closedBy = 'combo_end';
            enqueue(a);
        }
    }

    function closeAllStreaks(why) {
        streaks.forEach(function (s) {
            endStreak(s, null, why);
        });
    }

    /* ---- controls: the creator or the platform skips, pauses, resumes or replays (overlay event) */

    var paused = false;

    function onControl(msg) {
        var action = str(msg.action, '');
        stats.controls++;
        log('control ' + action);
        switch (action) {
        case 'skip':
            skip();
            break;
        case 'pause':
            paused = true;
            root.dataset.paused = 'true';
            break;
        case 'resume':
            paused = false;
            root.dataset.paused = 'false';
            pump();
            reschedule();
            break;
        case 'replay':
            replay(msg.event);
            break;
        default:
            break;
        }
    }

    /* Ends the alert on screen now; the rest of a skipped streak shows no new alert. */
    function skip() {
        var a = current;
        if (!a || a.phase === 'exit') {
            return;
        }
        if (a.streak) {
            a.streak.skipped = true;
        }
        closeAlert(a, 'skip');
        leave(a, 'skip');
    }

    /* Shows a room event's alert again, next in line, however old it is and whatever min= says. */
    function replay(ev) {
        if (!isObj(ev)) {
            return;
        }
        if (ev.type === 'goal_reached') {
            onGoalReached(ev, false, true);
            return;
        }
        if (ev.type !== 'gift' && ev.type !== 'combo_end') {
            return;
        }
        var count = ev.type === 'gift' ? posInt(ev.count, 1) : posInt(ev.total_count, 1);
        var a = makeAlert(normGift(ev), count, null, ev, now());
        a.replayed = true;
        queue.unshift(a);
        pump();
        reschedule();
    }

    /* ---- leaderboard and viewers -------------------------------------------------------------- */

    var lbVersion = 0;
    var COIN =
        '<svg class="coin" viewBox="0 0 16 16" aria-hidden="true"><circle cx="8" cy="8" r="7" fill="#ffc93c" stroke="#c98f12" stroke-width="1.5"/>' +
        '<path d="M8 4.5v7M6 6.2h3.2a1.3 1.3 0 0 1 0 2.6H6.8a1.3 1.3 0 0 0 0 2.6H10" stroke="#8a5d00" stroke-width="1.3" fill="none"/></svg>';

    function setLeaderboard(top) {
        if (!Array.isArray(top)) {
            return;
        }
        lbVersion++;
        var panel = $('leaderboard');
        var list = panel.querySelector('.rows');
        var rows = top.filter(function (r) {
            return isObj(r) && typeof r.id === 'string';
        }).slice(0, opts.top);
        var old = new Map();
        Array.prototype.forEach.call(list.children, function (li) {
            old.set(li.dataset.id, {li: li, top: li.getBoundingClientRect().top, coins: li.dataset.coins});
        });
        var oldTop = {};
        old.forEach(function (o, id) {
            oldTop[id] = o.top;
        });
        var frag = document.createDocumentFragment();
        rows.forEach(function (r, i) {
            var prev = old.get(r.id);
            var li = prev ? prev.li : document.createElement('li');
            var coins = typeof r.coins === 'number' && isFinite(r.coins) ? r.coins : 0;
            if (!prev) {
                li.innerHTML = '<span class="rank"></span><span class="name"></span><span class="coins">' + COIN + '<span class="n"></span></span>';
            }
            li.dataset.id = r.id;
            li.dataset.coins = String(coins);
            li.querySelector('.rank').textContent = String(i + 1);
            li.querySelector('.name').textContent = str(r.name, r.id);
            li.querySelector('.coins .n').textContent = fmt(coins);
            if (!prev || prev.coins !== String(coins)) {
                li.classList.remove('bump');
                void li.offsetWidth;
                li.classList.add('bump');
            }
            old.delete(r.id);
            frag.appendChild(li);
        });
        old.forEach(function (o) {
            o.li.remove();
        });
        list.appendChild(frag);
        panel.classList.toggle('hidden', rows.length === 0 || opts.top === 0);
        panel.dataset.version = String(lbVersion);
        /* FLIP: rows that changed place glide to their new one. */
        Array.prototype.forEach.call(list.children, function (li) {
            var from = oldTop[li.dataset.id];
            var to = li.getBoundingClientRect().top;
            if (typeof from === 'number' && Math.abs(from - to) > 1) {
                li.style.transition = 'none';
                li.style.transform = 'translateY(' + (from - to) + 'px)';
                void li.offsetWidth;
                li.style.transition = 'transform 0.5s cubic-bezier(0.2, 0.8, 0.3, 1)';
                li.style.transform = '';
            }
        });
    }

    function setViewers(count) {
        if (typeof count !== 'number' || !isFinite(count) || count < 0) {
            return;
        }
        var el = $('viewers');
        var changed = el.dataset.count !== String(count);
        el.dataset.count = String(count);
        el.querySelector('.count').textContent = fmt(count);
        el.classList.toggle('hidden', !opts.viewers);
        if (changed) {
            el.classList.remove('bump');
            void el.offsetWidth;
            el.classList.add('bump');
        }
    }

    function httpBase() {
        if (!opts.ws) {
            return '';
        }
        return opts.ws.replace(/^ws(s?):/, 'http$1:').replace(/\/+$/, '');
    }

    /* Seeds the leaderboard and viewer count from GET /v1/rooms/{room} after a join; any room event
     * that arrives first wins. */
    function seedRoom(room) {
        if (!window.fetch) {
            return;
        }
        var v = lbVersion;
        fetch(httpBase() + '/v1/rooms/' + encodeURIComponent(room), {cache: 'no-store'})
            .then(function (r) {
                return r.ok ? r.json() : null;
            })
            .then(function (j) {
                if (j && lbVersion === v && joinedFor === room && Array.isArray(j.top)) {
                    setLeaderboard(j.top);
                }
            })
            .catch(function () {});
    }

    /* ---- the room's goal: a progress bar, and a short banner when it is reached ---------------- */

    /* The goal on screen: id null when there is none. alerted is the id whose goal_reached banner
     * was shown (goal_reached comes once per goal; a rejoin must not show it again). */
    var goal = {id: null, gift: '', current: 0, target: 0, reached: false, alerted: null, doneTimer: null};
    var goalAlerts = []; /* the goal_reached banners shown, oldest first (for tests) */
    var catalog = null; /* gift id → catalog entry, fetched once when a gift goal needs its artwork */
    var catalogLoading = false;

    function normGoal(g) {
        if (!isObj(g) || typeof g.id !== 'string' || g.id === '') {
            return null;
        }
        var n = function (v) {
            return typeof v === 'number' && isFinite(v) && v > 0 ? Math.floor(v) : 0;
        };
        return {id: g.id, title: str(g.title, 'Goal'), gift: str(g.gift, ''), target: n(g.target),
            current: n(g.current), reached: g.reached === true};
    }

    function loadCatalog() {
        if (catalog || catalogLoading || !window.fetch) {
            return;
        }
        catalogLoading = true;
        fetch(httpBase() + '/v1/gifts', {cache: 'no-store'})
            .then(function (r) {
                return r.ok ? r.json() : null;
            })
            .then(function (j) {
                catalogLoading = false;
                if (!j || !Array.isArray(j.gifts)) {
                    return;
                }
                catalog = {};
                j.gifts.forEach(function (g) {
                    if (isObj(g) && typeof g.id === 'string') {
                        catalog[g.id] = g;
                    }
                });
                renderGoalUnit();
            })
            .catch(function () {
                catalogLoading = false;
            });
    }

    /* The unit next to the numbers: a coin for a coin goal, the gift's artwork for a gift goal. */
    function renderGoalUnit() {
        var unit = $('goal').querySelector('.goal-unit');
        if (!goal.id) {
            return;
        }
        if (!goal.gift) {
            unit.innerHTML = COIN;
            unit.title = 'coins';
            return;
        }
        var g = catalog && catalog[goal.gift];
        var anim = g ? str(g.animation, goal.gift) : goal.gift;
        var tier = g && Object.prototype.hasOwnProperty.call(TIERS, g.tier) ? g.tier : 'small';
        unit.innerHTML = window.GiftArt ? window.GiftArt.svg(anim, tier) : '';
        unit.title = g ? str(g.name, goal.gift) : goal.gift;
        if (!g) {
            loadCatalog();
        }
    }

    function hideGoalDone() {
        clearTimeout(goal.doneTimer);
        goal.doneTimer = null;
        var el = $('goal');
        el.classList.remove('celebrate');
        el.dataset.celebrating = 'false';
    }

    /* Shows the goal g (as in joined, goal and goal_reached), or hides the bar when g is null. */
    function setGoal(raw) {
        var el = $('goal');
        var g = normGoal(raw);
        if (!g) {
            goal.id = null;
            hideGoalDone();
            el.classList.add('hidden');
            el.dataset.id = '';
            el.dataset.reached = 'false';
            return;
        }
        var same = g.id === goal.id;
        if (same) {
            /* Within one goal progress only moves on: a late update never undoes a newer one. */
            g.current = Math.max(g.current, goal.current);
            g.reached = g.reached || goal.reached;
        } else {
            hideGoalDone();
        }
        var moved = same && g.current !== goal.current;
        goal.id = g.id;
        goal.gift = g.gift;
        goal.current = g.current;
        goal.target = g.target;
        goal.reached = g.reached;
        el.querySelector('.goal-title').textContent = g.title;
        el.querySelector('.goal-current').textContent = fmt(g.current);
        el.querySelector('.goal-target').textContent = fmt(g.target);
        var pct = g.target > 0 ? Math.min(100, (g.current / g.target) * 100) : 0;
        el.querySelector('.goal-fill').style.width = pct.toFixed(2) + '%';
        el.querySelector('.goal-track').setAttribute('aria-valuenow', String(Math.round(pct)));
        el.dataset.id = g.id;
        el.dataset.gift = g.gift;
        el.dataset.current = String(g.current);
        el.dataset.target = String(g.target);
        el.dataset.reached = String(g.reached);
        el.classList.toggle('reached', g.reached);
        if (!same) {
            renderGoalUnit();
        }
        if (moved) {
            el.classList.remove('bump');
            void el.offsetWidth;
            el.classList.add('bump');
        }
        el.classList.toggle('hidden', !opts.goal);
    }

    /* goal_reached: the bar fills and a banner shows once per goal. quiet: an old replayed event
     * (the bar only); again: a replay control (the banner again, if that goal is still the one shown). */
    function onGoalReached(ev, quiet, again) {
        var g = normGoal(ev.goal);
        if (!g || (again && g.id !== goal.id)) {
            return;
        }
        setGoal(ev.goal);
        if (quiet) {
            goal.alerted = goal.id;
        }
        if ((goal.alerted === goal.id && !again) || !opts.goal) {
            return;
        }
        goal.alerted = goal.id;
        var el = $('goal');
        goalAlerts.push({id: goal.id, title: el.querySelector('.goal-title').textContent,
            current: goal.current, target: goal.target, at: now()});
        log('goal reached ' + goal.id);
        hideGoalDone();
        void el.offsetWidth; /* restart the banner's entrance */
        el.classList.add('celebrate');
        el.dataset.celebrating = 'true';
        goal.doneTimer = setTimeout(hideGoalDone, Math.max(1500, 5000 / opts.speed));
        chime('large', false);
        try {
            if (fx.ctx) {
                var r = el.getBoundingClientRect();
                [0.2, 0.5, 0.8].forEach(function (k) {
                    burst(r.left + r.width * k, r.top, 22, {kind: 'confetti', angle: -Math.PI / 2, spread: 0.9,
                        speed: [200, 520], size: [7, 12], colors: PALETTES.gold.concat(PALETTES.party),
                        life: [1.4, 2.4], g: 520, drag: 1.1});
                });
            }
        } catch (e) {
            stats.errors++;
        }
    }

    /* ---- the connection: giftd-client.js (reconnects, resumes, unpacks batches, drops dupes) -- */

    var client = null;
    var joinedFor = null; /* the room we are in, or null */
    var joinedAt = 0;
    var everJoined = false;
    var rejoin = {timer: null, attempt: 0};

    function recentlyJoined() {
        return now() - joinedAt < 15000;
    }

    function wsBase() {
        return opts.ws ? opts.ws.replace(/\/+$/, '') : (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host;
    }

    /* The server's clock at local time t (welcome's server_time_ms), to tell a replayed event's age. */
    function serverTime(t) {
        return t + (client ? client.clockOffsetMs : 0);
    }

    function connect() {
        client = new window.GiftdClient({url: wsBase() + '/ws', httpUrl: httpBase() || location.origin,
            token: opts.token, room: opts.room});
        client.on('open', function () {
            stats.connects++;
            log('open');
        });
        client.on('close', function (e) {
            log('closed ' + e.code + (e.reason ? ' ' + e.reason : ''));
            joinedFor = null;
            clearTimeout(rejoin.timer);
            setState('offline');
        });
        client.on('reconnecting', function (e) {
            log('reconnect in ' + e.delayMs + ' ms');
            setState(everJoined ? 'reconnecting' : 'connecting');
        });
        client.on('resumed', function (e) {
            stats.resumes++;
            log('resumed ' + e.room + ' after seq ' + e.sinceSeq);
        });
        client.on('reload', onReload);
        client.on('gap', function (e) {
            log('gap: expected seq ' + e.expected + ', got ' + e.got);
        });
        client.on('message', receive);
        setState('connecting');
        client.connect();
    }

    /* Resuming failed (the room's history moved on, or the server cannot resume): streaks we were
     * following are over, and what we missed comes from the HTTP API; recent events still alert. */
    function onReload(e) {
        stats.reloads++;
        log('reload ' + e.room);
        closeAllStreaks('reload');
        client.loadRoom(e.room).then(function (r) {
            r.events.forEach(function (ev) {
                ev.replay = true;
                receive(ev);
            });
        }).catch(function () {});
    }

    /* The room is not live (yet, or any more): ask again now and then. */
    function scheduleRejoin() {
        clearTimeout(rejoin.timer);
        var delay = Math.min(15000, 1000 * Math.pow(2, rejoin.attempt));
        rejoin.attempt = Math.min(rejoin.attempt + 1, 6);
        rejoin.timer = setTimeout(function () {
            client.join(opts.room);
        }, delay);
    }

    function onError(msg) {
        var code = str(msg.code, 'unknown');
        log('error ' + code + ': ' + str(msg.message, ''));
        switch (code) {
        case 'room_not_live':
            setState('waiting');
            scheduleRejoin();
            break;
        case 'unauthorized':
            setState('unauthorized');
            if (!everJoined) {
                showSetup('The token was refused (expired, or signed with another secret).');
            }
            break;
        case 'forbidden':
            if (!everJoined) {
                showSetup('This token may not watch room "' + opts.room + '".');
            }
            break;
        default:
            break;
        }
    }

    /* ---- delay_ms: room events wait that long before they are shown ---------------------------- */

    /* What the stream shows of the room: held back together, so the leaderboard, the goal bar and the
     * viewer count never run ahead of the alerts. Controls, joins and errors are never held. */
    var HELD_TYPES = {gift: true, combo_end: true, goal: true, goal_reached: true, leaderboard: true,
        viewers: true, room_closed: true};
    var held = []; /* {msg, at, due}, oldest first */
    var heldTimer = null;

    /* Every message the client hands on. at: when it arrived (a replay's age is judged then). */
    function receive(msg) {
        var at = now();
        if (opts.delayMs > 0 && isObj(msg) && HELD_TYPES[msg.type]) {
            held.push({msg: msg, at: at, due: at + opts.delayMs});
            stats.held++;
            if (held.length === 1) {
                armHeld();
            }
            return;
        }
        processEvent(msg, at);
    }

    function armHeld() {
        clearTimeout(heldTimer);
        if (held.length > 0) {
            heldTimer = setTimeout(releaseHeld, Math.max(0, held[0].due - now()));
        }
    }

    function releaseHeld() {
        while (held.length > 0 && held[0].due <= now()) {
            var h = held.shift();
            processEvent(h.msg, h.at);
        }
        armHeld();
    }

    /* Handles one server message (tests feed them here too, undelayed). */
    function handle(msg) {
        processEvent(msg, now());
    }

    function processEvent(msg, at) {
        if (!isObj(msg)) {
            return;
        }
        stats.frames++;
        if (typeof msg.room === 'string' && joinedFor !== null && msg.room !== joinedFor && msg.type !== 'joined') {
            return; /* a straggler from a room we no longer watch */
        }
        try {
            switch (msg.type) {
            case 'batch':
                if (Array.isArray(msg.events)) {
                    msg.events.forEach(function (e) {
                        processEvent(e, at);
                    });
                }
                break;
            case 'welcome':
                break;
            case 'joined':
                joinedFor = str(msg.room, opts.room);
                joinedAt = now();
                everJoined = true;
                rejoin.attempt = 0;
                clearTimeout(rejoin.timer);
                $('setup').classList.add('hidden');
                setState('live');
                setViewers(msg.viewers);
                setGoal(msg.goal);
                if (goal.reached) {
                    goal.alerted = goal.id; /* reached before we joined: no banner now */
                }
                seedRoom(joinedFor);
                break;
            case 'gift':
                onGift(msg, at);
                break;
            case 'combo_end':
                onComboEnd(msg, at);
                break;
            case 'viewers':
                setViewers(msg.count);
                break;
            case 'leaderboard':
                setLeaderboard(msg.top);
                break;
            case 'goal':
                setGoal(msg.goal);
                break;
            case 'goal_reached':
                onGoalReached(msg, !isRecent(msg, at), false);
                break;
            case 'overlay':
                onControl(msg);
                break;
            case 'room_closed':
                joinedFor = null;
                closeAllStreaks('room_closed');
                setGoal(null); /* a new session starts without a goal */
                setState('waiting');
                scheduleRejoin();
                break;
            case 'error':
                onError(msg);
                break;
            case 'left':
            case 'pong':
            case 'ack':
                break;
            default:
                stats.unknown++;
            }
        } catch (e) {
            stats.errors++;
            if (window.console) {
                console.error('overlay: event ' + String(msg.type) + ' failed', e);
            }
        }
    }

    /* ---- preview: sample alerts without a server, for placing the source in the scene ---------- */

    function preview() {
        setState('preview');
        setViewers(1234);
        setLeaderboard([
            {id: 'maya', name: 'Maya', coins: 35120},
            {id: 'leo', name: 'Leo', coins: 12040},
            {id: 'sam', name: 'Sam', coins: 2210}
        ]);
        var cat = [
            ['rose', 'Rose', 1, 'small'], ['doughnut', 'Doughnut', 30, 'medium'],
            ['galaxy', 'Galaxy', 1000, 'large'], ['lion', 'Lion', 29999, 'legendary'],
            ['finger_heart', 'Finger Heart', 5, 'small'], ['fireworks', 'Fireworks', 1088, 'large']
        ];
        var names = ['Maya', 'Leo', 'Sam', 'Ana'];
        var seq = 0;
        var i = 0;
        var sample = {id: 'preview', title: 'Road to 50k', gift: null, target: 50000, current: 31200, reached: false};
        setGoal(sample);
        function next() {
            var g = cat[i++ % cat.length];
            if (!sample.reached) {
                sample.current += g[2];
                sample.reached = sample.current >= sample.target;
                if (sample.reached) {
                    handle({type: 'goal_reached', room: 'preview', seq: ++seq, goal: sample});
                } else {
                    handle({type: 'goal', room: 'preview', goal: sample});
                }
            }
            var from = {id: 'u' + (i % names.length), name: names[i % names.length]};
            var gift = {id: g[0], name: g[1], coins: g[2], tier: g[3], animation: g[0]};
            if (g[3] === 'small') {
                for (var k = 1; k <= 5; k++) {
                    (function (k) {
                        setTimeout(function () {
                            handle({type: 'gift', room: 'preview', seq: ++seq, from: from, gift: gift, count: 1, combo: {count: k}});
                        }, k * 350);
                    })(k);
                }
                setTimeout(function () {
                    handle({type: 'combo_end', room: 'preview', seq: ++seq, from: from, gift: gift, combo: {count: 5}, total_count: 5});
                }, 2600);
            } else {
                handle({type: 'gift', room: 'preview', seq: ++seq, from: from, gift: gift, count: 1, combo: null});
            }
        }
        next();
        setInterval(function () {
            if (queue.length < 2) {
                next();
            }
        }, 4000);
    }

    /* ---- start -------------------------------------------------------------------------------- */

    window.addEventListener('resize', fxResize);
    fxResize();

    window.giftOverlay = {
        opts: opts,
        stats: stats,
        history: history,
        goalAlerts: goalAlerts,
        handle: handle,
        goal: function () {
            return goal.id ? {id: goal.id, gift: goal.gift || null, current: goal.current, target: goal.target,
                reached: goal.reached} : null;
        },
        state: function () {
            return root.dataset.state;
        },
        paused: function () {
            return paused;
        },
        held: function () {
            return held.map(function (x) {
                return x.msg.type;
            });
        },
        client: function () {
            return client;
        },
        queueLength: function () {
            return queue.length + (current ? 1 : 0);
        }
    };

    if (opts.preview) {
        preview();
    } else if (!opts.token || !opts.room) {
        setState('config');
        showSetup(!opts.token ? 'No token in the URL.' : 'No room in the URL.');
    } else {
        connect();
    }
})();
