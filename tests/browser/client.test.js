// client.test.js: the client library (overlay/giftd-client.js) in Node against a real giftd and
// redis-server: sends retried across reconnects and Redis stalls are charged once and seen once,
// batches are handed on in order, the client reconnects with backoff after the server closes or
// stops answering, and resumes a room after a reconnect or a lost event.
// Run: node --test client.test.js (GIFTD_BIN=path/to/giftd; default build/giftd).
'use strict';

const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const h = require('./harness');
const GiftdClient = require('../../overlay/giftd-client.js');

const T = 20000; // the longest any single condition may take (times BROWSER_TEST_SLOWDOWN)
const LEDGER_TIMEOUT_MS = 1000 * h.SLOW; // giftd's deadline for a Redis step (ledger.timeout_ms)
const HISTORY = 20; // events a room keeps for resumes (rooms.history_size)

let redis;
let giftd;
let uniq = 0;
const clients = [];

before(async () => {
    redis = await new h.Redis().start();
    // One process (no supervisor and workers), so that a signal reaches the server itself.
    // Rooms keep 20 events, so that a client can miss more than a resume can replay.
    giftd = await new h.Giftd(redis.url(), ['--workers=1', `--ledger.timeout_ms=${LEDGER_TIMEOUT_MS}`,
        '--limits.gifts_per_sec=1000', '--limits.frames_per_sec=1000', '--gifts.combo_window_ms=300',
        `--rooms.history_size=${HISTORY}`],
    'giftd-client').start();
});

after(async () => {
    for (const c of clients) {
        c.close();
    }
    const code = await h.stopServers(giftd, redis);
    assert.equal(code, 0, 'giftd exits 0 on SIGTERM');
});

async function freshRoom(tag) {
    const room = `${tag}_${process.pid}_${++uniq}`;
    await h.openRoom(giftd, room);
    return room;
}

// A WebSocket class for the client that records every frame it receives, may hide some from the
// client (hide(text, socket) true: the frame is lost on its way), and keeps its sockets, so a
// test can cut one (terminate(): the connection is lost without a close frame) or keep the client
// from reconnecting (blocked).
function tapped(hide = () => false) {
    const tap = {frames: [], sockets: [], hide, blocked: false, urls: []};
    tap.WebSocket = class extends WebSocket {
        // While tap.blocked, every connection fails (the network is down).
        constructor(url, protocols) {
            super(tap.blocked ? 'ws://127.0.0.1:1/ws' : url, protocols);
            tap.urls.push(url);
            tap.sockets.push(this);
        }

        set onmessage(fn) {
            super.onmessage = fn && ((e) => {
                const text = String(e.data);
                tap.frames.push(text);
                if (!tap.hide(text, this)) {
                    fn(e);
                }
            });
        }

        get onmessage() {
            return super.onmessage;
        }
    };
    tap.last = () => tap.sockets[tap.sockets.length - 1];
    return tap;
}

// A client with the test's defaults; it records what it hands on in c.seen (every message) and
// its client-level events in c.log.
function client(opts) {
    const c = new GiftdClient({url: giftd.wsBase(), WebSocket, backoffBaseMs: 50, backoffCapMs: 400,
        retryBaseMs: 100, ...opts});
    c.seen = [];
    c.log = [];
    c.on('message', (m) => c.seen.push(m));
    for (const t of ['open', 'close', 'reconnecting', 'resumed', 'reload', 'gap', 'retry']) {
        c.on(t, (x) => c.log.push({type: t, ...x}));
    }
    clients.push(c);
    return c;
}

// p, or a rejection naming what did not happen within T.
function within(p, what, ms = T) {
    let t;
    return Promise.race([p, new Promise((_, reject) => {
        t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms * h.SLOW);
    })]).finally(() => clearTimeout(t));
}

function viewerToken(user) {
    return h.token(user, 'viewer', {name: user});
}

// The numbered room events a client handed on, as "type:seq".
function numbered(c, room) {
    return c.seen.filter((m) => m.room === room && typeof m.seq === 'number' &&
        ['gift', 'combo_end', 'goal_reached'].includes(m.type)).map((m) => m.seq);
}

test('the ES module wrapper exports the same class as the classic script', async () => {
    const mod = await import('../../overlay/giftd-client.mjs');
    assert.equal(mod.default, GiftdClient);
    assert.equal(mod.GiftdClient, GiftdClient);
    assert.equal(globalThis.GiftdClient, GiftdClient, 'the classic script defines globalThis.GiftdClient');
    assert.throws(() => new GiftdClient({url: 'http://x', WebSocket}), /ws:\/\//);
});

test('batches are unpacked and their events handed on in order, each once', {timeout: 90000}, async () => {
    const room = await freshRoom('batch');
    const tap = tapped();
    const watcher = client({token: viewerToken('bw'), room, WebSocket: tap.WebSocket});
    watcher.connect();
    await h.waitFor('the watcher to join', () => watcher.isReady(), T);
    const senders = [];
    for (let i = 0; i < 4; i++) {
        await h.recharge(giftd, `bs${i}_${uniq}`, 1000);
        senders.push(await h.Viewer.connect(giftd, `bs${i}_${uniq}`, `S${i}`, room));
    }
    try {
        // 100 sends at once: the room's events reach the watcher faster than one per frame.
        const acks = await Promise.all(senders.flatMap((s) => Array.from({length: 25}, () => s.gift('rose'))));
        const last = Math.max(...acks.map((a) => a.seq));
        await h.waitFor('every gift at the watcher', () => watcher.lastSeq(room) >= last, T);
        const batches = tap.frames.map((f) => JSON.parse(f)).filter((m) => m.type === 'batch');
        assert.ok(batches.some((b) => b.events.length > 1), 'the server packed events into batches');
        // What came over the wire, in wire order, against what the client handed on.
        const wire = tap.frames.map((f) => JSON.parse(f)).flatMap((m) => (m.type === 'batch' ? m.events : [m]))
            .filter((m) => m.type === 'gift' || m.type === 'combo_end').map((m) => m.seq);
        const handed = numbered(watcher, room);
        assert.deepEqual(handed, wire, 'events are handed on in wire order');
        assert.deepEqual(handed, Array.from({length: handed.length}, (_, i) => i + 1),
            'every seq from 1, once, in order');
        assert.ok(handed.length >= last);
        const gifts = watcher.seen.filter((m) => m.type === 'gift' && m.room === room);
        assert.deepEqual(new Set(gifts.map((g) => g.id)), new Set(acks.map((a) => a.id)), 'one gift event per send');
        assert.equal(gifts.length, 100);
        assert.equal(watcher.stats.batches, batches.length);
        assert.ok(!watcher.seen.some((m) => m.type === 'batch'), 'no batch is handed on as such');
    } finally {
        senders.forEach((s) => s.close());
        watcher.close();
    }
});

test('a send whose ack was lost with its connection is resent with the same id after the reconnect: charged once, seen once', {timeout: 90000}, async () => {
    const room = await freshRoom('retry');
    const user = `payer_${uniq}`;
    await h.recharge(giftd, user, 5000);
    // The first connection never hands on an ack: it is lost, as when the network fails between
    // the debit and the answer.
    const tap = tapped((text, ws) => ws === tap.sockets[0] && JSON.parse(text).type === 'ack');
    const payer = client({token: viewerToken(user), room, WebSocket: tap.WebSocket});
    const watcher = await h.Viewer.connect(giftd, `w_${uniq}`, 'Watcher', room);
    try {
        payer.connect();
        await h.waitFor('the payer to join', () => payer.isReady(), T);
        const sent = payer.sendGift('doughnut', 2);
        const [pending] = payer.pendingSends();
        assert.deepEqual(pending, {id: pending.id, gift: 'doughnut', count: 2, anonymous: false});
        // The debit committed: the room saw the gift. Now the connection is cut.
        const ev = await watcher.next((e) => e.type === 'gift' && e.id === pending.id, T);
        assert.equal(ev.count, 2);
        assert.equal(payer.pendingSends().length, 1, 'no ack reached the client: the send is pending');
        tap.sockets[0].terminate();
        const ack = await within(sent, 'the resent gift\'s ack');
        assert.equal(ack.id, pending.id, 'the retry carried the same id');
        assert.equal(ack.duplicate, true, 'the retry was answered as a duplicate of the first send');
        assert.equal(ack.balance, 4940);
        assert.ok(tap.sockets.length >= 2 && payer.stats.resends === 1, 'resent once, on the new connection');
        assert.equal(await h.balance(giftd, user), 4940, 'charged once');
        // A send made while the client is cut off waits for the next connection.
        tap.last().terminate();
        const later = payer.sendGift('rose');
        const ack2 = await within(later, 'the ack of the send made while cut off');
        assert.equal(ack2.duplicate, false);
        assert.equal(ack2.balance, 4939);
        // Both gifts were broadcast once: a marker sent after them arrives after any copy would.
        const marker = await h.Viewer.connect(giftd, `m_${uniq}`, 'Marker', room);
        await h.recharge(giftd, `m_${uniq}`, 10);
        const mack = await marker.gift('rose');
        await watcher.next((e) => e.type === 'gift' && e.id === mack.id, T);
        marker.close();
        assert.equal(watcher.events.filter((e) => e.type === 'gift' && e.id === pending.id).length, 0,
            'the retried send was not broadcast again');
        assert.equal(watcher.events.filter((e) => e.type === 'gift' && e.id === ack2.id).length, 1);
        assert.equal(await h.balance(giftd, user), 4939);
        assert.equal(payer.pendingSends().length, 0);
    } finally {
        watcher.close();
        payer.close();
    }
});

test('a send answered ledger_unavailable while Redis stalls is retried with the same id and charged once', {timeout: 90000}, async () => {
    const room = await freshRoom('stall');
    const user = `staller_${uniq}`;
    await h.recharge(giftd, user, 1000);
    const payer = client({token: viewerToken(user), room});
    payer.connect();
    await h.waitFor('the payer to join', () => payer.isReady(), T);
    // Redis holds every write for 2.5 times as long as giftd waits for the debit.
    assert.equal(await redis.command('CLIENT', 'PAUSE', String(2.5 * LEDGER_TIMEOUT_MS), 'WRITE'), '+OK');
    const ack = await within(payer.sendGift('perfume'), 'the stalled send\'s ack');
    const retries = payer.log.filter((e) => e.type === 'retry');
    assert.ok(retries.length >= 1, 'the send was answered ledger_unavailable and retried');
    assert.ok(retries.every((r) => r.id === ack.id && r.code === 'ledger_unavailable'));
    assert.equal(await h.balance(giftd, user), 980, 'charged once (20 coins)');
    assert.equal(ack.balance, 980);
    const errors = payer.seen.filter((m) => m.type === 'error');
    assert.ok(errors.length >= 1 && errors.every((e) => e.id === ack.id && e.code === 'ledger_unavailable'));
    payer.close();
});

test('after the server closes, the client reconnects with capped, jittered, growing backoff and rejoins', {timeout: 120000}, async () => {
    const room = await freshRoom('backoff');
    const c = client({token: viewerToken('bo'), room});
    c.connect();
    await h.waitFor('the client to join', () => c.isReady(), T);
    const seq0 = c.stats.connects;
    await giftd.stop();
    const closed = c.log.find((e) => e.type === 'close');
    assert.equal(closed.code, 1001, 'giftd says it is shutting down');
    // While the server is away, every attempt fails; let a few go by.
    await h.waitFor('eight reconnect attempts', () => c.log.filter((e) => e.type === 'reconnecting').length >= 8, T);
    await giftd.start();
    await h.waitFor('the client to rejoin', () => c.isReady(), T);
    assert.equal(c.stats.connects, seq0 + 1);
    const tries = c.log.filter((e) => e.type === 'reconnecting');
    tries.forEach((t, i) => {
        assert.equal(t.attempt, i + 1, 'attempts are counted');
        assert.ok(t.delayMs >= 0 && t.delayMs < Math.min(400, 50 * 2 ** i), `attempt ${t.attempt}: ${t.delayMs} ms is within its cap`);
    });
    assert.ok(tries.some((t) => t.delayMs > 50), 'the delays grow past the first cap');
    // After a successful join the backoff starts over.
    const before = tries.length;
    await giftd.stop();
    await h.waitFor('a new reconnect attempt', () => c.log.filter((e) => e.type === 'reconnecting').length > before, T);
    assert.equal(c.log.filter((e) => e.type === 'reconnecting')[before].attempt, 1);
    await giftd.start();
    await h.waitFor('the client to rejoin', () => c.isReady(), T);
    c.close();
});

test('a server that stops answering is detected by the missing pong and reconnected to', {timeout: 120000}, async () => {
    const room = await freshRoom('pong');
    const c = client({token: viewerToken('pp'), room, pingIntervalMs: 200, pongTimeoutMs: 500, connectTimeoutMs: 500});
    c.connect();
    await h.waitFor('the client to join', () => c.isReady(), T);
    const pongs = () => c.seen.filter((m) => m.type === 'pong').length;
    await h.waitFor('pongs to the pings', () => pongs() >= 2, T);
    giftd.freeze();
    try {
        await h.waitFor('the client to give up on the connection', () => c.log.some((e) => e.type === 'close'), T);
    } finally {
        giftd.thaw();
    }
    assert.deepEqual(c.log.find((e) => e.type === 'close'), {type: 'close', code: 1006, reason: 'no pong'});
    await h.waitFor('the client to rejoin', () => c.stats.connects >= 2 && c.isReady(), T);
    c.close();
});

// Sends n galaxies (not streakable: one numbered event each, no combo_end) one after the other;
// resolves with the acks.
async function galaxies(viewer, n) {
    const acks = [];
    for (let i = 0; i < n; i++) {
        acks.push(await viewer.gift('galaxy'));
    }
    return acks;
}

test('after a reconnect the client resumes the room: the missed events come with replay:true, in order, none twice', {timeout: 90000}, async () => {
    const room = await freshRoom('resume');
    const user = `rs_${uniq}`;
    await h.recharge(giftd, user, 100000);
    const sender = await h.Viewer.connect(giftd, user, 'Sender', room);
    const tap = tapped();
    const c = client({token: viewerToken(`rw_${uniq}`), room, WebSocket: tap.WebSocket});
    try {
        c.connect();
        await h.waitFor('the client to join', () => c.isReady(), T);
        const joined = c.seen.find((m) => m.type === 'joined');
        assert.equal(typeof joined.epoch, 'number', 'joined carries the epoch');
        assert.equal(joined.resumed, undefined, 'a first join is no resume');
        await galaxies(sender, 2);
        await h.waitFor('two gifts at the client', () => c.lastSeq(room) === 2, T);
        // The network goes down: the client cannot reconnect while three more gifts are sent.
        tap.blocked = true;
        tap.last().terminate();
        const missed = await galaxies(sender, 3);
        await h.waitFor('a failed reconnect attempt', () => c.log.filter((e) => e.type === 'reconnecting').length >= 2, T);
        assert.equal(c.lastSeq(room), 2, 'nothing arrived while cut off');
        tap.blocked = false;
        await h.waitFor('the client to resume', () => c.log.some((e) => e.type === 'resumed') && c.lastSeq(room) === 5, T);
        // It asked for what followed seq 2 of this epoch, and got exactly that.
        const url = new URL(tap.urls[tap.urls.length - 1]);
        assert.equal(url.searchParams.get('since_seq'), '2');
        assert.equal(url.searchParams.get('epoch'), String(joined.epoch));
        assert.deepEqual(c.log.find((e) => e.type === 'resumed'), {type: 'resumed', room, sinceSeq: 2, seq: 5});
        const rejoined = c.seen.filter((m) => m.type === 'joined')[1];
        assert.equal(rejoined.resumed, true);
        assert.equal(rejoined.epoch, joined.epoch);
        const gifts = c.seen.filter((m) => m.type === 'gift' && m.room === room);
        assert.deepEqual(gifts.map((g) => g.seq), [1, 2, 3, 4, 5], 'every event once, in order');
        assert.deepEqual(gifts.slice(2).map((g) => g.id), missed.map((a) => a.id));
        assert.deepEqual(gifts.map((g) => g.replay === true), [false, false, true, true, true],
            'the missed ones are marked replay');
        assert.ok(c.seen.indexOf(rejoined) < c.seen.indexOf(gifts[2]), 'the replay follows joined');
        // Then the live stream goes on.
        const [live] = await galaxies(sender, 1);
        await h.waitFor('the next live gift', () => c.lastSeq(room) === 6, T);
        const last = c.seen.filter((m) => m.type === 'gift').pop();
        assert.equal(last.id, live.id);
        assert.notEqual(last.replay, true);
        assert.equal(c.log.filter((e) => e.type === 'reload').length, 0);
    } finally {
        sender.close();
        c.close();
    }
});

test('a lost event (a seq gap) is noticed and the room resumed from the last seq handled', {timeout: 90000}, async () => {
    const room = await freshRoom('gap');
    const user = `gs_${uniq}`;
    await h.recharge(giftd, user, 100000);
    const sender = await h.Viewer.connect(giftd, user, 'Sender', room);
    let lose = null; // the id of the gift whose frame is lost on its way to the client
    const tap = tapped((text) => {
        const m = JSON.parse(text);
        return (m.type === 'batch' ? m.events : [m]).some((e) => e.id === lose && e.replay !== true);
    });
    const c = client({token: viewerToken(`gw_${uniq}`), room, WebSocket: tap.WebSocket});
    try {
        c.connect();
        await h.waitFor('the client to join', () => c.isReady(), T);
        await galaxies(sender, 1);
        await h.waitFor('seq 1 at the client', () => c.lastSeq(room) === 1, T);
        lose = 'lost-' + uniq;
        await sender.gift('galaxy', 1, lose);
        await h.waitFor('the lost frame to go by', () => tap.frames.some((f) => f.includes(lose)), T);
        assert.equal(c.lastSeq(room), 1);
        await galaxies(sender, 1); // seq 3: the client sees 2 is missing
        await h.waitFor('the gap to be filled', () => c.lastSeq(room) === 3, T);
        assert.deepEqual(c.log.filter((e) => e.type === 'gap'), [{type: 'gap', room, expected: 2, got: 3}]);
        assert.deepEqual(c.log.find((e) => e.type === 'resumed'), {type: 'resumed', room, sinceSeq: 1, seq: 3});
        assert.equal(tap.sockets.length, 1, 'resumed on the same connection');
        const gifts = c.seen.filter((m) => m.type === 'gift');
        assert.deepEqual(gifts.map((g) => [g.seq, g.replay === true]), [[1, false], [2, true], [3, true]]);
        assert.equal(gifts[1].id, lose);
    } finally {
        sender.close();
        c.close();
    }
});

test('when the missed events are no longer kept the client reports a reload, and loadRoom() reads what is left', {timeout: 90000}, async () => {
    const room = await freshRoom('reload');
    const user = `ls_${uniq}`;
    await h.recharge(giftd, user, 100000);
    const sender = await h.Viewer.connect(giftd, user, 'Sender', room);
    const tap = tapped();
    const c = client({token: viewerToken(`lw_${uniq}`), room, WebSocket: tap.WebSocket});
    try {
        c.connect();
        await h.waitFor('the client to join', () => c.isReady(), T);
        await galaxies(sender, 1);
        await h.waitFor('seq 1 at the client', () => c.lastSeq(room) === 1, T);
        tap.blocked = true;
        tap.last().terminate();
        await galaxies(sender, HISTORY + 5); // seqs 2..26; the room keeps 7..26
        tap.blocked = false;
        await h.waitFor('the reload', () => c.log.some((e) => e.type === 'reload'), T);
        const last = 1 + HISTORY + 5;
        assert.deepEqual(c.log.find((e) => e.type === 'reload'), {type: 'reload', room, seq: last, prevSeq: 1});
        assert.equal(c.seen.filter((m) => m.type === 'joined')[1].resumed, false);
        assert.equal(c.lastSeq(room), last, 'the client goes on from the seq it joined at');
        assert.equal(c.seen.filter((m) => m.type === 'gift').length, 1, 'nothing was replayed');
        const state = await c.loadRoom();
        assert.equal(state.room.seq, last);
        assert.equal(state.complete, false, 'events after seq 1 were dropped');
        assert.deepEqual(state.events.map((e) => e.seq), Array.from({length: HISTORY}, (_, i) => last - HISTORY + 1 + i),
            'the kept events, oldest first, up to the seq joined at');
        assert.ok(state.events.every((e) => e.type === 'gift' && e.room === room));
        // Live events continue after it.
        await galaxies(sender, 1);
        await h.waitFor('the next live gift', () => c.lastSeq(room) === last + 1, T);
        assert.equal(c.seen.filter((m) => m.type === 'gift').length, 2);
    } finally {
        sender.close();
        c.close();
    }
});

test('after the room\'s history is lost (a new epoch) the client reloads and takes the restarted seqs as new', {timeout: 90000}, async () => {
    const room = await freshRoom('epoch');
    const user = `es_${uniq}`;
    await h.recharge(giftd, user, 100000);
    const sender = await h.Viewer.connect(giftd, user, 'Sender', room);
    const tap = tapped();
    const c = client({token: viewerToken(`ew_${uniq}`), room, WebSocket: tap.WebSocket});
    try {
        c.connect();
        await h.waitFor('the client to join', () => c.isReady(), T);
        const epoch = c.seen.find((m) => m.type === 'joined').epoch;
        await galaxies(sender, 3);
        await h.waitFor('seq 3 at the client', () => c.lastSeq(room) === 3, T);
        tap.blocked = true;
        tap.last().terminate();
        // Redis loses the room's counter and history: its seq starts over, with a new epoch.
        for (const k of ['seq', 'hist']) {
            await redis.command('DEL', `giftd:{r:${room}}:${k}`);
        }
        const [first] = await galaxies(sender, 1);
        assert.equal(first.seq, 1, 'the room counts from 1 again');
        tap.blocked = false;
        await h.waitFor('the reload', () => c.log.some((e) => e.type === 'reload'), T);
        const rejoined = c.seen.filter((m) => m.type === 'joined')[1];
        assert.equal(new URL(tap.urls[tap.urls.length - 1]).searchParams.get('since_seq'), '3');
        assert.equal(rejoined.resumed, false);
        assert.notEqual(rejoined.epoch, epoch, 'a new epoch');
        assert.deepEqual(c.log.find((e) => e.type === 'reload'), {type: 'reload', room, seq: 1, prevSeq: null},
            'the old seq means nothing in the new epoch');
        // seq 2 of the new epoch is below the 3 handled before, and still new.
        const [second] = await galaxies(sender, 1);
        await h.waitFor('the next live gift', () => c.seen.some((m) => m.type === 'gift' && m.id === second.id), T);
        assert.equal(c.lastSeq(room), 2);
        assert.equal(c.stats.duplicates, 0);
    } finally {
        sender.close();
        c.close();
    }
});

test('a send refused because the token expired waits for setToken() and then goes with the same id', {timeout: 90000}, async () => {
    const room = await freshRoom('expiry');
    const user = `ex_${uniq}`;
    await h.recharge(giftd, user, 1000);
    const token = h.token(user, 'viewer', {name: user, ttlS: 2});
    const exp = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).exp;
    const c = client({token, room});
    try {
        c.connect();
        await h.waitFor('the client to join', () => c.isReady(), T);
        await h.waitFor('the token to expire', () => Date.now() > exp * 1000 + 100, 5000, 50);
        let settled = false;
        const sent = c.sendGift('doughnut').finally(() => {
            settled = true;
        });
        const [pending] = c.pendingSends();
        await h.waitFor('the refusal', () => c.seen.some((m) => m.type === 'error' && m.id === pending.id), T);
        assert.equal(c.seen.find((m) => m.type === 'error' && m.id === pending.id).code, 'unauthorized');
        assert.equal(settled, false, 'the send is still pending');
        assert.equal(await h.balance(giftd, user), 1000);
        c.setToken(viewerToken(user));
        const ack = await within(sent, 'the ack after the renewal');
        assert.deepEqual([ack.id, ack.duplicate, ack.balance], [pending.id, false, 970]);
        assert.equal(await h.balance(giftd, user), 970);
    } finally {
        c.close();
    }
});
