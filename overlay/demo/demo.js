/* demo.js: the demo viewer page. Connects to giftd as a viewer (SPEC 3) through giftd-client.js
 * (which reconnects, resumes the room and retries sends with their id), shows the balance, the
 * catalog as buttons (greyed when unaffordable, over budget or unavailable), sends gifts with fresh
 * ids (anonymously if asked), lists acks, errors and the room's events, and shows the viewer's
 * budget (with a form to set or clear each cap) and transaction history over the HTTP API, with
 * the viewer's own token. window.giftDemo exposes send() for tests. */
(function () {
    'use strict';

    var params = new URLSearchParams(location.search);
    var opts = {
        room: params.get('room') || '',
        token: params.get('token') || '',
        ws: params.get('ws') || '',
        txLimit: Math.max(1, Math.min(1000, Math.floor(Number(params.get('txlimit'))) || 10))
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
        pending: new Map(), /* id → {gift, count, anonymous, el} */
        mine: new Set(), /* ids of this page's sends, to tell our own anonymous gifts in the room */
        last: null, /* the last send, for "resend with the same id" */
        budget: null, /* GET /v1/users/{user}/budget */
        tx: {keys: new Set(), next: null, gen: 0, more: false} /* the transactions listed */
    };
    var client = null; /* the GiftdClient, once connected */
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
            } else if (overBudget(g.coins * n)) {
                why = 'over your ' + overBudget(g.coins * n) + ' budget';
            }
            b.disabled = why !== '';
            b.title = why ? g.name + ': ' + why : 'Send ' + n + ' × ' + g.name + ' (' + fmt(g.coins * n) + ' coins)';
        });
        $('resend').disabled = !state.last || !state.joined;
    }

    /* 'daily' or 'monthly' when spending `cost` now would pass that cap, else ''. */
    function overBudget(cost) {
        var b = state.budget;
        if (!b) {
            return '';
        }
        if (typeof b.daily_coins === 'number' && b.spent_today + cost > b.daily_coins) {
            return 'daily';
        }
        if (typeof b.monthly_coins === 'number' && b.spent_this_month + cost > b.monthly_coins) {
            return 'monthly';
        }
        return '';
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
                Array.prototype.forEach.call($('tx-list').querySelectorAll('tr.tx-gift'), function (tr) {
                    tr.parentNode.replaceChild(txRow(tr.txData), tr);
                });
            })
            .catch(function (e) {
                $('catalog').textContent = 'Could not load the catalog: ' + e.message;
                setTimeout(loadCatalog, 3000);
            });
    }

    /* An HTTP API call as this viewer (Authorization: Bearer with the page's token); resolves with
     * the answer's JSON, rejects with an Error carrying giftd's error message. */
    function api(method, path, body) {
        var init = {method: method, headers: {authorization: 'Bearer ' + opts.token}, cache: 'no-store'};
        if (body !== undefined) {
            init.headers['content-type'] = 'application/json';
            init.body = JSON.stringify(body);
        }
        return fetch(apiBase() + path, init).then(function (r) {
            return r.text().then(function (text) {
                var j = null;
                try {
                    j = JSON.parse(text);
                } catch (e) {
                    /* not JSON */
                }
                if (!r.ok) {
                    var err = j && isObj(j.error) ? j.error : {};
                    throw new Error((err.code || 'HTTP ' + r.status) + (err.message ? ': ' + err.message : ''));
                }
                return j;
            });
        });
    }

    function userPath(tail) {
        return '/v1/users/' + encodeURIComponent(claims.sub) + tail;
    }

    function refreshBalance() {
        if (!claims.sub) {
            return;
        }
        api('GET', userPath('/balance'))
            .then(function (j) {
                if (j) {
                    setBalance(j.coins);
                }
            })
            .catch(function () {});
    }

    /* ---- budget ------------------------------------------------------------------------------- */

    function status(id, text, bad) {
        var el = $(id);
        el.textContent = text;
        el.classList.toggle('bad', !!bad);
    }

    function renderCap(spentId, capId, spent, cap) {
        var s = $(spentId);
        var c = $(capId);
        s.textContent = fmt(spent);
        s.dataset.value = String(spent);
        var capped = typeof cap === 'number';
        c.textContent = capped ? fmt(cap) : 'no cap';
        c.dataset.value = capped ? String(cap) : 'none';
        var box = s.closest('.cap');
        var fill = box.querySelector('.meter-fill');
        var pct = !capped ? 0 : cap === 0 ? 100 : Math.min(100, (spent / cap) * 100);
        fill.style.width = pct.toFixed(1) + '%';
        box.classList.toggle('uncapped', !capped);
        box.classList.toggle('full', capped && spent >= cap);
    }

    function renderBudget(b) {
        if (!isObj(b) || typeof b.spent_today !== 'number') {
            return;
        }
        state.budget = b;
        renderCap('spent-today', 'daily-cap', b.spent_today, b.daily_coins);
        renderCap('spent-month', 'monthly-cap', b.spent_this_month, b.monthly_coins);
        updateButtons();
    }

    function refreshBudget() {
        if (!claims.sub) {
            return;
        }
        api('GET', userPath('/budget'))
            .then(renderBudget)
            .catch(function (e) {
                status('budget-status', 'Could not read the budget: ' + e.message, true);
            });
    }

    /* Sets (a number) or clears (null) one cap; the other keeps its value. */
    function setCap(field, value) {
        var body = {};
        body[field] = value;
        var what = field === 'daily_coins' ? 'Daily' : 'Monthly';
        status('budget-status', 'Saving…');
        return api('PUT', userPath('/budget'), body)
            .then(function (b) {
                renderBudget(b);
                status('budget-status', what + ' cap ' + (value === null ? 'removed' : 'set to ' + fmt(value) + ' coins') + '.');
            })
            .catch(function (e) {
                status('budget-status', e.message, true);
            });
    }

    function wireCapForm(form, input, clear) {
        var field = form.dataset.field;
        form.addEventListener('submit', function (ev) {
            ev.preventDefault();
            var raw = input.value.trim();
            var n = Number(raw);
            if (raw === '' || !isFinite(n) || n < 0 || Math.floor(n) !== n) {
                status('budget-status', 'A cap is a whole number of coins, 0 or more (0 blocks all gifts).', true);
                return;
            }
            setCap(field, n).then(function () {
                input.value = '';
            });
        });
        clear.addEventListener('click', function () {
            setCap(field, null);
        });
    }

    /* ---- transactions ------------------------------------------------------------------------- */

    function txKey(t) {
        return t.type + ':' + (t.id || t.payment_id || '') + ':' + t.ts_ms;
    }

    function txTime(ms) {
        var d = new Date(ms);
        var today = new Date();
        var hms = d.toTimeString().slice(0, 8);
        if (d.toDateString() === today.toDateString()) {
            return hms;
        }
        return d.toISOString().slice(0, 10) + ' ' + hms.slice(0, 5);
    }

    function txRow(t) {
        var tr = document.createElement('tr');
        var type = String(t.type);
        tr.className = 'tx tx-' + type.replace(/[^a-z]/g, '');
        tr.dataset.type = type;
        tr.dataset.key = txKey(t);
        tr.dataset.coins = String(t.coins);
        tr.dataset.balance = String(t.balance);
        tr.txData = t; /* to draw it again once the catalog (gift names) is in */
        var cell = function (cls, text) {
            var td = document.createElement('td');
            td.className = cls;
            if (text !== undefined) {
                td.textContent = text;
            }
            tr.appendChild(td);
            return td;
        };
        var when = cell('time', typeof t.ts_ms === 'number' ? txTime(t.ts_ms) : '–');
        if (typeof t.ts_ms === 'number') {
            when.title = new Date(t.ts_ms).toISOString();
        }
        var badge = document.createElement('span');
        badge.className = 'badge';
        badge.textContent = type;
        cell('type').appendChild(badge);
        var what = cell('what');
        if (type === 'gift') {
            var g = catalogEntry(t.gift) || {id: String(t.gift), name: String(t.gift), tier: 'small'};
            var art = document.createElement('span');
            art.innerHTML = giftArt(g);
            if (art.firstChild) {
                what.appendChild(art.firstChild);
            }
            setParts(what.appendChild(document.createElement('span')), [[g.name], ' ×' + t.count + ' in ' + t.room +
                (t.anonymous ? ' · anonymous' : '')]);
            tr.dataset.id = String(t.id);
        } else {
            var parts = ['payment ', [String(t.payment_id)]];
            if (t.package) {
                parts.push(' · package ' + t.package);
            }
            if (type === 'reversal' && t.reason) {
                parts.push(' · ' + t.reason);
            }
            setParts(what.appendChild(document.createElement('span')), parts);
        }
        var c = typeof t.coins === 'number' ? t.coins : 0;
        cell('num coins ' + (c < 0 ? 'neg' : 'pos'), (c > 0 ? '+' : c < 0 ? '\u2212' : '') + fmt(Math.abs(c)));
        cell('num bal', fmt(t.balance));
        return tr;
    }

    function txDone() {
        $('tx-empty').classList.toggle('hidden', state.tx.keys.size > 0);
        $('tx-more').classList.toggle('hidden', state.tx.next === null);
        $('tx-more').disabled = state.tx.more;
    }

    function validTxs(j) {
        return (j && Array.isArray(j.transactions) ? j.transactions : []).filter(function (t) {
            return isObj(t) && typeof t.type === 'string';
        });
    }

    /* The newest page: entries not listed yet go on top. When none of the page was listed (more
     * than a page happened since), the list starts over from this page. */
    function loadTx() {
        if (!claims.sub) {
            return;
        }
        api('GET', userPath('/transactions?limit=' + opts.txLimit))
            .then(function (j) {
                var list = $('tx-list');
                var txs = validTxs(j);
                var fresh = txs.filter(function (t) {
                    return !state.tx.keys.has(txKey(t));
                });
                if (state.tx.keys.size === 0 || (fresh.length === txs.length && txs.length > 0)) {
                    state.tx.gen++;
                    state.tx.keys.clear();
                    list.textContent = '';
                    state.tx.next = typeof j.next_before === 'number' ? j.next_before : null;
                }
                var first = list.firstChild;
                fresh.forEach(function (t) {
                    state.tx.keys.add(txKey(t));
                    list.insertBefore(txRow(t), first);
                });
                status('tx-status', '');
                txDone();
            })
            .catch(function (e) {
                status('tx-status', 'Could not read the transactions: ' + e.message, true);
            });
    }

    /* The next older page (next_before). */
    function moreTx() {
        if (state.tx.next === null || state.tx.more) {
            return;
        }
        var gen = state.tx.gen;
        state.tx.more = true;
        txDone();
        api('GET', userPath('/transactions?limit=' + opts.txLimit + '&before=' + state.tx.next))
            .then(function (j) {
                state.tx.more = false;
                if (gen !== state.tx.gen) {
                    txDone();
                    return;
                }
                var list = $('tx-list');
                validTxs(j).forEach(function (t) {
                    if (!state.tx.keys.has(txKey(t))) {
                        state.tx.keys.add(txKey(t));
                        list.appendChild(txRow(t));
                    }
                });
                state.tx.next = typeof j.next_before === 'number' ? j.next_before : null;
                status('tx-status', '');
                txDone();
            })
            .catch(function (e) {
                state.tx.more = false;
                txDone();
                status('tx-status', 'Could not read more transactions: ' + e.message, true);
            });
    }

    /* After a send: the budget's spending and the history changed (a burst of acks: one reload). */
    var accountTimer = null;

    function refreshAccountSoon() {
        clearTimeout(accountTimer);
        accountTimer = setTimeout(function () {
            refreshBudget();
            loadTx();
        }, 250);
    }

    /* ---- sending ------------------------------------------------------------------------------ */

    /* Sends n × giftId; anonymous defaults to the page's toggle. A resend passes the first send's
     * id and anonymous flag, so giftd sees the very same send. */
    function send(giftId, n, sameId, anonymous) {
        var id = sameId || freshId();
        var anon = anonymous === undefined ? $('anonymous').checked : !!anonymous;
        var g = catalogEntry(giftId) || {id: giftId, name: giftId, tier: 'small'};
        var how = ' ×' + n + (anon ? ' (anonymous)' : '');
        var el = entry($('sends'), 'pending', 'send', g, [['' + g.name], how + ' … ', id]);
        el.dataset.id = id;
        el.dataset.anonymous = String(anon);
        state.pending.set(id, {gift: g, count: n, anonymous: anon, el: el});
        state.mine.add(id);
        if (state.mine.size > 500) {
            state.mine.delete(state.mine.values().next().value);
        }
        state.last = {gift: giftId, count: n, id: id, anonymous: anon};
        updateButtons();
        if (!client || !client.isReady()) {
            setParts(el.querySelector('.text'), [[g.name], how + ' — waiting for the connection (will be sent with the same id)']);
        }
        if (!client) {
            return id;
        }
        /* The client sends it now or once connected, again after a reconnect or a retryable error,
         * always with this id, until an ack or a definitive refusal. */
        client.sendGift(giftId, n, {id: id, anonymous: anon}).then(onAck, function (err) {
            onSendError(err.response || {id: id, code: err.code || 'internal', message: err.message});
        });
        return id;
    }

    /* A send answered ledger_unavailable or rate_limited: the client tries again with its id. */
    function onRetry(r) {
        var p = state.pending.get(r.id);
        if (p) {
            setParts(p.el.querySelector('.text'), [[p.gift.name], ' ×' + p.count + ' — ' + r.code + ', retrying in ' +
                Math.round(r.delayMs) + ' ms with the same id (try ' + (r.attempt + 1) + ')']);
        }
    }

    function onAck(m) {
        var p = state.pending.get(m.id);
        setBalance(m.balance);
        var g = p ? p.gift : {id: '?', name: 'gift', tier: 'small'};
        var parts = [[g.name], ' ×' + (p ? p.count : '?') + (p && p.anonymous ? ' (anonymous)' : '') + ' — ', ['✓ acked'], ', seq ' + m.seq +
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
        refreshAccountSoon();
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
        } else if (m.code === 'budget_exceeded') {
            refreshBudget();
        } else if (m.code === 'gift_unavailable' && p) {
            state.unavailable[p.gift.id] = true;
            updateButtons();
        }
    }

    /* ---- room events -------------------------------------------------------------------------- */

    function who(x) {
        return isObj(x) ? String(x.name || x.id || '?') : '?';
    }

    /* The sender of a gift or combo_end: "Anonymous" when from is null (our own: "You, anonymously"). */
    function sender(m) {
        if (m.anonymous === true || m.from === null) {
            return state.mine.has(m.id) ? 'You, anonymously' : 'Anonymous';
        }
        return who(m.from);
    }

    function goalText(g) {
        if (!isObj(g)) {
            return ['no goal'];
        }
        var unit = g.gift ? ' × ' + ((catalogEntry(g.gift) || {}).name || g.gift) : ' coins';
        return ['goal ', [String(g.title)], ': ' + fmt(g.current) + ' / ' + fmt(g.target) + unit +
            (g.reached ? ' (reached)' : '')];
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
            setConn('live', 'live');
            $('creator').textContent = who(m.creator);
            $('viewer-count').textContent = fmt(m.viewers);
            event('joined', null, ['joined ', [m.room], ' (seq ' + m.seq + ', ' + fmt(m.viewers) + ' watching)']);
            if (isObj(m.goal)) {
                event('goal', null, goalText(m.goal));
            }
            updateButtons();
            break;
        case 'gift':
            var g = isObj(m.gift) ? m.gift : {};
            event('gift', g, [[sender(m)], ' sent ', [g.name || g.id], ' ×' + m.count +
                (isObj(m.combo) ? ' (streak ' + m.combo.count + ')' : '') + ' · seq ' + m.seq +
                (m.replay === true ? ' · replayed' : '')]);
            break;
        case 'combo_end':
            var cg = isObj(m.gift) ? m.gift : {};
            event('combo_end', cg, [[sender(m)], '’s ', [cg.name || cg.id], ' streak ended: ×' +
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
        case 'goal':
            event('goal', null, goalText(m.goal));
            break;
        case 'goal_reached':
            event('goal_reached', null, ['🎉 '].concat(goalText(m.goal)));
            break;
        case 'room_closed':
            state.joined = false;
            setConn('waiting', 'room closed');
            event('room_closed', null, ['the room was closed']);
            updateButtons();
            break;
        case 'ack':
            break; /* the send's promise has it */
        case 'error':
            if (m.id !== undefined && m.id !== null) {
                if (m.code !== 'ledger_unavailable' && m.code !== 'rate_limited' && !state.pending.has(m.id)) {
                    onSendError(m); /* not one of ours in flight */
                }
            } else {
                event('error', null, [['error ' + m.code], ': ' + (m.message || '')]);
                if (m.code === 'room_not_live') {
                    setConn('waiting', 'room not live');
                    setTimeout(function () {
                        client.join(opts.room);
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
        var base = opts.ws ? opts.ws.replace(/\/+$/, '') : (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host;
        client = new window.GiftdClient({url: base + '/ws', httpUrl: apiBase() || location.origin, token: opts.token,
            room: opts.room, idPrefix: 'demo'});
        client.on('message', function (m) {
            try {
                handle(m);
            } catch (err) {
                if (window.console) {
                    console.warn('demo: could not show', m, err);
                }
            }
        });
        client.on('retry', onRetry);
        client.on('close', function (e) {
            state.joined = false;
            setConn('offline', 'offline (' + e.code + ')');
            updateButtons();
        });
        client.on('reconnecting', function (e) {
            setConn('connecting', 'reconnecting in ' + (e.delayMs / 1000).toFixed(1) + ' s…');
        });
        client.on('resumed', function (e) {
            event('resumed', null, ['resumed ', [e.room], ' after seq ' + e.sinceSeq + ' (missed events follow, marked replay)']);
        });
        client.on('reload', function (e) {
            event('reload', null, ['could not resume ', [e.room], ': events were missed; balance reloaded']);
            refreshBalance();
        });
        client.on('gap', function (e) {
            event('gap', null, ['missed seq ' + e.expected + '–' + (e.got - 1) + ': resuming']);
        });
        setConn('connecting', 'connecting…');
        client.connect();
    }

    /* ---- start -------------------------------------------------------------------------------- */

    $('room-name').textContent = opts.room || '–';
    $('count').addEventListener('input', updateButtons);
    Array.prototype.forEach.call(document.querySelectorAll('button.qty'), function (b) {
        b.addEventListener('click', function () {
            $('count').value = b.dataset.n;
            updateButtons();
        });
    });
    $('refresh').addEventListener('click', function () {
        refreshBalance();
        refreshBudget();
        loadTx();
    });
    $('resend').addEventListener('click', function () {
        if (state.last) {
            send(state.last.gift, state.last.count, state.last.id, state.last.anonymous);
        }
    });
    wireCapForm(document.querySelector('form[data-field="daily_coins"]'), $('daily-input'), $('daily-clear'));
    wireCapForm(document.querySelector('form[data-field="monthly_coins"]'), $('monthly-input'), $('monthly-clear'));
    $('tx-refresh').addEventListener('click', loadTx);
    $('tx-more').addEventListener('click', moreTx);

    window.giftDemo = {send: send, state: state};

    loadCatalog();
    if (!opts.token || !opts.room) {
        var setup = $('setup');
        setup.querySelector('.why').textContent = !opts.token ? 'No token in the URL.' : 'No room in the URL.';
        setup.classList.remove('hidden');
        setConn('offline', 'not configured');
    } else {
        refreshBalance();
        refreshBudget();
        loadTx();
        connect();
    }
})();
