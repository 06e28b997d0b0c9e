/* giftd-client.js: a small client for giftd's WebSocket protocol (docs/client.md). It connects,
 * authenticates, joins a room and resumes it after a reconnect (SPEC 3.4), unpacks batches, drops
 * duplicates, resumes on a seq gap, pings, reconnects with capped exponential backoff and full
 * jitter, and sends gifts whose id is kept across retries and reconnects until an outcome arrives.
 * A classic script, no build step: it defines globalThis.GiftdClient (and module.exports under
 * Node's require); giftd-client.mjs re-exports it as an ES module. */
(function (root) {
    'use strict';

    /* The room events that take a seq (SPEC 3.2): they are checked for gaps and duplicates. */
    var NUMBERED = {gift: true, combo_end: true, goal_reached: true};
    /* The events that belong to one room: those of another room (stragglers) are not handed on. */
    var ROOM_EVENTS = {gift: true, combo_end: true, goal_reached: true, goal: true, viewers: true,
        leaderboard: true, overlay: true, room_closed: true};
    /* Join refusals after which the connection is not in the room (protocol.md, join). */
    var JOIN_ERRORS = {room_not_live: true, forbidden: true, ledger_unavailable: true};

    function isObj(v) {
        return v !== null && typeof v === 'object' && !Array.isArray(v);
    }

    /* Full jitter: a random delay in [0, min(cap, base * 2^attempt)). */
    function backoff(attempt, baseMs, capMs) {
        return Math.floor(Math.random() * Math.min(capMs, baseMs * Math.pow(2, Math.min(attempt, 30))));
    }

    function randomHex(bytes) {
        var b = new Uint8Array(bytes);
        var c = root.crypto;
        if (c && typeof c.getRandomValues === 'function') {
            c.getRandomValues(b);
        } else {
            for (var i = 0; i < bytes; i++) {
                b[i] = Math.floor(Math.random() * 256);
            }
        }
        return Array.prototype.map.call(b, function (x) {
            return (x + 0x100).toString(16).slice(1);
        }).join('');
    }

    /* The epoch as the exact JSON text the server sent (an integer may be wider than a double can
     * hold exactly), or null when the frame has none. Inside a JSON string a quote is escaped, so
     * the pattern only matches a real "epoch" member. */
    function epochText(frameText, msg) {
        if (msg.epoch === undefined || msg.epoch === null) {
            return null;
        }
        var m = typeof msg.epoch === 'number' ? /"epoch"\s*:\s*(-?\d+)\s*[,}]/.exec(frameText) : null;
        return m ? m[1] : JSON.stringify(msg.epoch);
    }

    /**
     * A giftd client. Create it, register listeners with on(), then connect().
     *
     * @param {object} options
     * @param {string} options.url WebSocket endpoint, e.g. "ws://127.0.0.1:8080/ws" ("/ws" is
     *   added when the URL has no path).
     * @param {string} [options.token] the JWT; sent with `hello` (or in the URL query when
     *   tokenInQuery is true). Without one the connection is a guest, if the server allows.
     * @param {string} [options.room] the room to join (in the connection URL, with since_seq and
     *   epoch when resuming).
     * @param {boolean} [options.tokenInQuery=false] put the token in the URL instead of `hello`.
     * @param {Function} [options.WebSocket] WebSocket constructor (default globalThis.WebSocket;
     *   in Node pass require('ws')).
     * @param {Function} [options.fetch] fetch for loadRoom() (default globalThis.fetch).
     * @param {string} [options.httpUrl] HTTP base for loadRoom() (default: derived from url).
     * @param {number} [options.pingIntervalMs=10000] how often to ping.
     * @param {number} [options.pongTimeoutMs=10000] a ping unanswered this long: the connection
     *   is dead; it is dropped and reopened.
     * @param {number} [options.connectTimeoutMs=10000] an opening that takes longer is dropped.
     * @param {number} [options.backoffBaseMs=500] first reconnect delay cap; doubles per attempt.
     * @param {number} [options.backoffCapMs=10000] largest reconnect delay.
     * @param {number} [options.retryBaseMs=500] first delay before a send answered
     *   ledger_unavailable or rate_limited is retried (with the same id); doubles, capped at
     *   backoffCapMs.
     * @param {string} [options.idPrefix="g"] prefix of the gift ids this client makes.
     */
    function GiftdClient(options) {
        var o = options || {};
        if (typeof o.url !== 'string' || !/^wss?:\/\//.test(o.url)) {
            throw new TypeError('GiftdClient: options.url must be a ws:// or wss:// URL');
        }
        this.url = /^wss?:\/\/[^/]+\/?$/.test(o.url) ? o.url.replace(/\/?$/, '/ws') : o.url;
        this.httpUrl = (o.httpUrl || this.url.replace(/^ws/, 'http').replace(/\/ws\/?(\?.*)?$/, ''))
            .replace(/\/+$/, '');
        this.token = o.token || '';
        this.tokenInQuery = !!o.tokenInQuery;
        this._WS = o.WebSocket || root.WebSocket;
        this._fetch = o.fetch || (typeof root.fetch === 'function' ? root.fetch.bind(root) : null);
        if (typeof this._WS !== 'function') {
            throw new TypeError('GiftdClient: no WebSocket; pass options.WebSocket (in Node: require("ws"))');
        }
        this.opts = {
            pingIntervalMs: o.pingIntervalMs || 10000,
            pongTimeoutMs: o.pongTimeoutMs || 10000,
            connectTimeoutMs: o.connectTimeoutMs || 10000,
            backoffBaseMs: o.backoffBaseMs || 500,
            backoffCapMs: o.backoffCapMs || 10000,
            retryBaseMs: o.retryBaseMs || 500
        };
        this._idPrefix = (o.idPrefix || 'g') + '-' + randomHex(6) + '-';
        this._idCount = 0;
        this._listeners = {};
        this._want = o.room || null; /* the room the app wants to watch */
        this._rooms = new Map(); /* room → {seq, epoch (JSON text or null), joinSeq, prevSeq} */
        this._pending = new Map(); /* gift id → pending send */
        this._conn = null; /* the current connection: {ws, id, timers…} */
        this._connCount = 0;
        this._attempt = 0; /* reconnect attempts since the last successful join */
        this._reconnectTimer = null;
        this._stopped = true;
        this._resetSession();
        /** The last welcome's user ({id, name}) or null; role; balance (coins, from welcome and acks). */
        this.user = null;
        this.role = null;
        this.balance = null;
        /** server_time_ms - Date.now() at the last welcome: add it to Date.now() to compare with ts_ms. */
        this.clockOffsetMs = 0;
        /** Counters, for apps and tests. */
        this.stats = {connects: 0, frames: 0, batches: 0, events: 0, duplicates: 0, gaps: 0, resumes: 0,
            reloads: 0, resends: 0, retries: 0};
    }

    var P = GiftdClient.prototype;

    /* Per-connection state, cleared whenever a connection ends. */
    P._resetSession = function () {
        this._authed = false;
        this._room = null; /* the room joined on this connection */
        this._joining = null; /* a join waiting for its answer: {room} */
        this._resuming = false; /* a rejoin after a gap: numbered events wait for the replay */
        this._joinFailed = false; /* the last join was refused: sends go out anyway (see _joinRefused) */
    };

    /* ---- events --------------------------------------------------------------------------------- */

    /**
     * Registers fn for an event: any server message type ("welcome", "joined", "gift",
     * "combo_end", "goal", "goal_reached", "viewers", "leaderboard", "overlay", "room_closed",
     * "ack", "error", "left", "pong", …; batches arrive unpacked, duplicates dropped), "message"
     * (every server message handed on, after its own type's listeners), and the client's own:
     * "open", "close" ({code, reason}), "reconnecting" ({attempt, delayMs}), "resumed" ({room,
     * sinceSeq, seq}), "reload" ({room, seq, prevSeq}: resuming failed, reload the room's state,
     * see loadRoom()), "gap" ({room, expected, got}), "retry" ({id, code, attempt, delayMs}).
     * @returns {Function} a function that removes the listener.
     */
    P.on = function (type, fn) {
        (this._listeners[type] = this._listeners[type] || []).push(fn);
        var self = this;
        return function () {
            self.off(type, fn);
        };
    };

    /** Removes a listener registered with on(). */
    P.off = function (type, fn) {
        var l = this._listeners[type];
        if (l) {
            this._listeners[type] = l.filter(function (f) {
                return f !== fn;
            });
        }
    };

    /* A listener that throws must not break the client: its error is rethrown outside. */
    P._emit = function (type, arg) {
        var l = this._listeners[type];
        if (!l) {
            return;
        }
        l.slice().forEach(function (fn) {
            try {
                fn(arg);
            } catch (e) {
                setTimeout(function () {
                    throw e;
                }, 0);
            }
        });
    };

    /* ---- connection ----------------------------------------------------------------------------- */

    /** Opens the connection (and keeps reopening it after losses until close()). */
    P.connect = function () {
        this._stopped = false;
        if (!this._conn && !this._reconnectTimer) {
            this._open();
        }
        return this;
    };

    /** Closes the connection for good (until connect() again). Sends still pending stay pending. */
    P.close = function () {
        this._stopped = true;
        clearTimeout(this._reconnectTimer);
        this._reconnectTimer = null;
        if (this._conn) {
            this._drop(this._conn, 1000, 'client closed', true);
        }
    };

    /** True while the connection is authenticated and in the wanted room (if any). */
    P.isReady = function () {
        return !!this._conn && this._authed && (this._want === null || this._room === this._want);
    };

    /* Whether a gift frame may go out now: ready, or the join was refused (the server then answers
     * each send with its outcome: the ack of an id already charged, or a refusal). */
    P._sendable = function () {
        return this.isReady() || (!!this._conn && this._authed && this._joinFailed);
    };

    P._wsUrl = function () {
        var q = [];
        if (this.tokenInQuery && this.token) {
            q.push('token=' + encodeURIComponent(this.token));
        }
        if (this._want) {
            q.push('room=' + encodeURIComponent(this._want));
            var st = this._rooms.get(this._want);
            if (st && st.epoch !== null) {
                var e = st.epoch.charAt(0) === '"' ? JSON.parse(st.epoch) : st.epoch;
                q.push('since_seq=' + st.seq, 'epoch=' + encodeURIComponent(e));
            }
        }
        return this.url + (q.length ? (this.url.indexOf('?') < 0 ? '?' : '&') + q.join('&') : '');
    };

    P._open = function () {
        var self = this;
        this._reconnectTimer = null;
        var conn = {id: ++this._connCount, ws: null, pingTimer: null, pongTimer: null, openTimer: null};
        this._conn = conn;
        this._resetSession();
        this._joining = this._want ? {room: this._want} : null;
        try {
            conn.ws = new this._WS(this._wsUrl(), 'giftd.v1');
        } catch (e) {
            this._lost(conn, {code: 1006, reason: String(e && e.message)});
            return;
        }
        conn.openTimer = setTimeout(function () {
            self._drop(conn, 1006, 'connect timeout', false);
        }, this.opts.connectTimeoutMs);
        conn.ws.onopen = function () {
            if (self._conn !== conn) {
                return;
            }
            clearTimeout(conn.openTimer);
            self.stats.connects++;
            self._emit('open', {url: self.url});
            if (!self.tokenInQuery && self.token) {
                self._send({type: 'hello', token: self.token});
            }
            conn.pingTimer = setInterval(function () {
                self._ping(conn);
            }, self.opts.pingIntervalMs);
        };
        conn.ws.onmessage = function (e) {
            if (self._conn === conn) {
                self._onFrame(String(e.data));
            }
        };
        conn.ws.onclose = function (e) {
            if (self._conn === conn) {
                self._lost(conn, {code: e.code, reason: e.reason || ''});
            }
        };
        conn.ws.onerror = function () {
            /* onclose follows */
        };
    };

    P._ping = function (conn) {
        var self = this;
        if (conn.pongTimer || !this._send({type: 'ping'})) {
            return;
        }
        conn.pongTimer = setTimeout(function () {
            self._drop(conn, 1006, 'no pong', false);
        }, this.opts.pongTimeoutMs);
    };

    /* Ends conn at once (a dead peer may never complete a close handshake) and carries on. */
    P._drop = function (conn, code, reason, clean) {
        if (this._conn !== conn) {
            return;
        }
        var ws = conn.ws;
        if (ws) {
            ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
            try {
                if (clean) {
                    ws.close(1000);
                } else if (typeof ws.terminate === 'function') {
                    ws.terminate();
                } else {
                    ws.close();
                }
            } catch (e) {
                /* closed already */
            }
        }
        this._lost(conn, {code: code, reason: reason});
    };

    /* The connection ended: clear its state, tell the app, and schedule the next one. */
    P._lost = function (conn, info) {
        clearInterval(conn.pingTimer);
        clearTimeout(conn.pongTimer);
        clearTimeout(conn.openTimer);
        this._conn = null;
        this._resetSession();
        this._emit('close', info);
        if (this._stopped) {
            return;
        }
        var delay = backoff(this._attempt, this.opts.backoffBaseMs, this.opts.backoffCapMs);
        this._attempt++;
        this._emit('reconnecting', {attempt: this._attempt, delayMs: delay});
        this._reconnectTimer = setTimeout(this._open.bind(this), delay);
    };

    P._send = function (obj) {
        var ws = this._conn && this._conn.ws;
        if (!ws || ws.readyState !== 1) {
            return false;
        }
        try {
            ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
            return true;
        } catch (e) {
            return false;
        }
    };

    /* ---- rooms ---------------------------------------------------------------------------------- */

    /**
     * Watches room (leaving the one watched before). A room this client watched before is
     * resumed: the join carries since_seq and epoch, and missed events arrive with replay: true.
     */
    P.join = function (room) {
        this._want = room;
        if (this._authed) {
            this._sendJoin(room);
        }
        return this;
    };

    /** Stops watching (the room's seq is kept, so a later join resumes it). */
    P.leave = function () {
        this._want = null;
        this._joining = null;
        this._resuming = false;
        this._room = null;
        this._send({type: 'leave'});
        this._flushSends();
        return this;
    };

    /** The seq of the last event of room handed on (or joined at), or null. */
    P.lastSeq = function (room) {
        var st = this._rooms.get(room || this._want);
        return st ? st.seq : null;
    };

    /** The room joined on the current connection, or null. */
    P.currentRoom = function () {
        return this._room;
    };

    P._sendJoin = function (room) {
        var st = this._rooms.get(room);
        var frame = '{"type":"join","room":' + JSON.stringify(room);
        if (st && st.epoch !== null) {
            frame += ',"since_seq":' + st.seq + ',"epoch":' + st.epoch;
        }
        this._joining = {room: room};
        this._joinFailed = false;
        this._send(frame + '}');
    };

    /* A numbered event of the joined room: true to hand it on, false to drop it. */
    P._admit = function (ev) {
        var st = this._rooms.get(ev.room);
        if (!st || typeof ev.seq !== 'number') {
            return true;
        }
        if (this._resuming) {
            return false; /* the rejoin's replay will bring it */
        }
        if (ev.seq <= st.seq) {
            this.stats.duplicates++;
            return false;
        }
        if (ev.seq > st.seq + 1) {
            this.stats.gaps++;
            this._emit('gap', {room: ev.room, expected: st.seq + 1, got: ev.seq});
            if (st.epoch !== null) {
                /* Rejoin from the last handled seq: the server replays what was missed. */
                this._resuming = true;
                this._sendJoin(ev.room);
                return false;
            }
            /* A server without resume: hand it on; the gap is reported. */
        }
        st.seq = ev.seq;
        return true;
    };

    P._onJoined = function (msg, epoch) {
        var room = msg.room;
        var asked = this._joining && this._joining.room === room;
        var st = this._rooms.get(room);
        var rejoin = !!st && asked;
        var sameEpoch = rejoin && st.epoch !== null && st.epoch === epoch;
        var resumed = sameEpoch && msg.resumed === true;
        var prevSeq = st ? st.seq : null;
        if (!resumed) {
            st = {seq: typeof msg.seq === 'number' ? msg.seq : 0, epoch: epoch};
            this._rooms.set(room, st);
        }
        st.joinSeq = msg.seq;
        /* The last seq handled before, while it still means something (same epoch). */
        st.prevSeq = sameEpoch ? prevSeq : null;
        this._joining = null;
        this._resuming = false;
        this._room = room;
        this._attempt = 0;
        return {room: room, rejoin: rejoin, resumed: resumed, sinceSeq: prevSeq, seq: msg.seq};
    };

    /**
     * Reloads a room's state over HTTP after a "reload": GET /v1/rooms/{room} and the kept events
     * the client missed (GET /v1/rooms/{room}/events), up to the seq it joined at (later events
     * come over the WebSocket). Resolves {room, events, complete}; events is [] when the server
     * has no events endpoint.
     * @param {string} [room] default: the wanted room.
     * @param {{sinceSeq?: number, limit?: number}} [o] default: from the last seq handled before
     *   the reload (same epoch), or the last `limit` (100) events.
     */
    P.loadRoom = function (room, o) {
        var self = this;
        room = room || this._want;
        o = o || {};
        if (!this._fetch) {
            return Promise.reject(new Error('GiftdClient: no fetch; pass options.fetch'));
        }
        var st = this._rooms.get(room) || {};
        var limit = o.limit || 100;
        var upTo = typeof st.joinSeq === 'number' ? st.joinSeq : null;
        var since = o.sinceSeq;
        if (typeof since !== 'number') {
            since = Math.max(typeof st.prevSeq === 'number' ? st.prevSeq : 0, upTo === null ? 0 : upTo - limit);
        }
        var base = this.httpUrl + '/v1/rooms/' + encodeURIComponent(room);
        var get = function (url) {
            return self._fetch(url, {cache: 'no-store'}).then(function (r) {
                return r.ok ? r.json() : null;
            });
        };
        return Promise.all([get(base), get(base + '/events?since_seq=' + since + '&limit=' + limit)])
            .then(function (res) {
                var ev = isObj(res[1]) && Array.isArray(res[1].events) ? res[1].events : [];
                return {
                    room: res[0],
                    events: ev.filter(function (e) {
                        return isObj(e) && (upTo === null || e.seq <= upTo);
                    }),
                    complete: isObj(res[1]) ? res[1].complete !== false : false
                };
            });
    };

    /* ---- gifts ---------------------------------------------------------------------------------- */

    /** A fresh gift id: this client's random prefix and a counter. */
    P.newId = function () {
        return this._idPrefix + (++this._idCount);
    };

    /**
     * Sends count × gift to the joined room's creator. The id (made here unless given) is kept
     * for every retry: the send is resent with it after a reconnect, and after ledger_unavailable
     * or rate_limited (with backoff); after unauthorized it waits for setToken(). Resolves with
     * the ack (duplicate: true when an earlier attempt had been charged); rejects with an Error
     * carrying code, id and the server's message on a definitive refusal (nothing was charged).
     * @param {string} gift catalog id
     * @param {number} [count=1]
     * @param {{id?: string, anonymous?: boolean}} [o]
     * @returns {Promise<object>} the ack
     */
    P.sendGift = function (gift, count, o) {
        o = o || {};
        var id = o.id || this.newId();
        var p = this._pending.get(id);
        if (p) {
            return p.promise;
        }
        var frame = {type: 'gift', id: id, gift: gift, count: count || 1};
        if (o.anonymous) {
            frame.anonymous = true;
        }
        p = {id: id, frame: frame, conn: 0, timer: null, held: false, attempt: 0};
        p.promise = new Promise(function (resolve, reject) {
            p.resolve = resolve;
            p.reject = reject;
        });
        this._pending.set(id, p);
        this._trySend(p);
        return p.promise;
    };

    /** The sends still waiting for an outcome: [{id, gift, count, anonymous}]. */
    P.pendingSends = function () {
        var out = [];
        this._pending.forEach(function (p) {
            out.push({id: p.id, gift: p.frame.gift, count: p.frame.count, anonymous: !!p.frame.anonymous});
        });
        return out;
    };

    /** Replaces the token (renewal); on a live connection it is sent with hello at once. */
    P.setToken = function (token) {
        this.token = token;
        if (this._conn) {
            this._send({type: 'hello', token: token});
        }
    };

    /* Sends p on the current connection if it is ready and p was not sent on it yet. */
    P._trySend = function (p) {
        p.timer = null;
        if (p.held || !this._sendable() || p.conn === this._conn.id) {
            return;
        }
        if (this._send(p.frame)) {
            if (p.conn !== 0) {
                this.stats.resends++;
            }
            p.conn = this._conn.id;
        }
    };

    P._flushSends = function () {
        var self = this;
        this._pending.forEach(function (p) {
            if (!p.timer) {
                self._trySend(p);
            }
        });
    };

    P._onSendError = function (p, msg) {
        var self = this;
        if (msg.code === 'ledger_unavailable' || msg.code === 'rate_limited') {
            var delay = backoff(p.attempt, this.opts.retryBaseMs, this.opts.backoffCapMs) + (msg.code === 'rate_limited' ? 1000 : 0);
            p.attempt++;
            p.conn = -1; /* send again, on whatever connection is ready then */
            this.stats.retries++;
            this._emit('retry', {id: p.id, code: msg.code, attempt: p.attempt, delayMs: delay});
            p.timer = setTimeout(function () {
                self._trySend(p);
            }, delay);
            return;
        }
        if (msg.code === 'unauthorized') {
            p.held = true; /* an expired token: nothing charged now, but an earlier attempt may be */
            p.conn = -1;
            return;
        }
        this._pending.delete(p.id);
        var err = new Error(msg.code + ': ' + (msg.message || ''));
        err.code = msg.code;
        err.id = p.id;
        err.response = msg;
        p.reject(err);
    };

    /* ---- frames --------------------------------------------------------------------------------- */

    P._onFrame = function (text) {
        var msg;
        try {
            msg = JSON.parse(text);
        } catch (e) {
            return;
        }
        if (!isObj(msg)) {
            return;
        }
        this.stats.frames++;
        if (msg.type === 'batch') {
            this.stats.batches++;
            var evs = Array.isArray(msg.events) ? msg.events : [];
            for (var i = 0; i < evs.length; i++) {
                if (isObj(evs[i])) {
                    this._handle(evs[i], null);
                }
            }
            return;
        }
        this._handle(msg, text);
    };

    P._handle = function (msg, text) {
        var type = msg.type;
        var after = null;
        if (ROOM_EVENTS[type] && msg.room !== this._room) {
            return; /* of a room this connection left, or not joined yet */
        }
        if (NUMBERED[type] && !this._admit(msg)) {
            return;
        }
        switch (type) {
        case 'welcome':
            this._authed = true;
            this.user = isObj(msg.user) ? msg.user : null;
            this.role = msg.role || null;
            if (typeof msg.balance === 'number') {
                this.balance = msg.balance;
            }
            if (typeof msg.server_time_ms === 'number') {
                this.clockOffsetMs = msg.server_time_ms - Date.now();
            }
            this._pending.forEach(function (p) {
                p.held = false;
            });
            if (this._want && !this._joining && this._room !== this._want) {
                this._sendJoin(this._want);
            }
            if (!this._want) {
                this._attempt = 0;
            }
            this._flushSends();
            break;
        case 'joined':
            after = this._onJoined(msg, epochText(text || '', msg));
            break;
        case 'pong':
            if (this._conn) {
                clearTimeout(this._conn.pongTimer);
                this._conn.pongTimer = null;
            }
            break;
        case 'ack':
            var p = this._pending.get(msg.id);
            if (typeof msg.balance === 'number' && !msg.duplicate) {
                this.balance = msg.balance;
            }
            if (p) {
                clearTimeout(p.timer);
                this._pending.delete(msg.id);
                p.resolve(msg);
            }
            break;
        case 'error':
            if (msg.id !== undefined && this._pending.has(msg.id)) {
                this._onSendError(this._pending.get(msg.id), msg);
            } else if (this._joining && JOIN_ERRORS[msg.code]) {
                this._joinRefused(msg);
            }
            break;
        case 'left':
            this._room = null;
            break;
        default:
            break;
        }
        if (ROOM_EVENTS[type] || type === 'joined') {
            this.stats.events++;
        }
        this._emit(type, msg);
        this._emit('message', msg);
        if (after) {
            if (after.rejoin && after.resumed) {
                this.stats.resumes++;
                this._emit('resumed', {room: after.room, sinceSeq: after.sinceSeq, seq: after.seq});
            } else if (after.rejoin) {
                this.stats.reloads++;
                this._emit('reload', {room: after.room, seq: after.seq, prevSeq: this._rooms.get(after.room).prevSeq});
            }
            if (this._want && this._want !== after.room) {
                this._sendJoin(this._want); /* join() was called while this join was on its way */
            }
            this._flushSends();
        }
    };

    /* A join was refused: the connection is in no room (or still in the one before). A transient
     * refusal is retried; after any refusal, waiting sends go out to learn their outcome (a send
     * already charged is answered with its ack even outside the room). */
    P._joinRefused = function (msg) {
        var self = this;
        var room = this._joining.room;
        this._joining = null;
        this._resuming = false;
        if (msg.code === 'ledger_unavailable' && this._conn) {
            var conn = this._conn;
            setTimeout(function () {
                if (self._conn === conn && self._want === room && self._room !== room) {
                    self._sendJoin(room);
                }
            }, backoff(1, this.opts.retryBaseMs, this.opts.backoffCapMs));
            return;
        }
        this._joinFailed = true;
        this._flushSends();
    };

    root.GiftdClient = GiftdClient;
    if (typeof module === 'object' && module && module.exports) {
        module.exports = GiftdClient;
    }
})(typeof globalThis !== 'undefined' ? globalThis : this);
