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

let redis;
let giftd;
let uniq = 0;
const clients = [];

before(async () => {
    redis = await new h.Redis().start();
    // One process (no supervisor and workers), so that a signal reaches the server itself.
    giftd = await new h.Giftd(redis.url(), ['--workers=1', `--ledger.timeout_ms=${LEDGER_TIMEOUT_MS}`,
        '--limits.gifts_per_sec=1000', '--limits.frames_per_sec=1000', '--gifts.combo_window_ms=300'],
    'giftd-client').start();
});

after(async () => {
    for (const c of clients) {
        c.close();
    }
    let code = 0;
    if (giftd) {
        code = await giftd.stop();
        giftd.cleanup();
    }
    if (redis) {
        await redis.stop();
    }
    assert.equal(code, 0, 'giftd exits 0 on SIGTERM');
});

async function freshRoom(tag) {
    const room = `${tag}_${process.pid}_${++uniq}`;
    await h.openRoom(giftd, room);
    return room;
}

// A WebSocket class for the client that records every frame it receives, may hide some from the
// client (hide(text, socket) true: the frame is lost on its way), and keeps its sockets, so a
// test can cut one (terminate(): the connection is lost without a close frame).
function tapped(hide = () => false) {
    const tap = {frames: [], sockets: [], hide};
    tap.WebSocket = class extends WebSocket {
        constructor(url, protocols) {
            super(url, protocols);
            this.url0 = url;
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
