// harness.js: what the browser tests stand on — a private redis-server and giftd on free ports,
// HS256 tokens, the HTTP API, a WebSocket viewer, Debian's chromium through playwright-core,
// screenshots, and waiting for conditions (never fixed sleeps).
'use strict';

const {spawn} = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const REPO = path.resolve(__dirname, '..', '..');
const ARTIFACTS = path.join(REPO, 'artifacts', 'browser');
const SECRET = 'browser-test-secret-' + crypto.randomBytes(8).toString('hex');
const GIFTD_BIN = path.resolve(REPO, process.env.GIFTD_BIN || path.join('build', 'giftd'));
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
// Under ASan everything is slower; every wait scales with this.
const SLOW = Number(process.env.BROWSER_TEST_SLOWDOWN || 1);

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

// Polls fn (sync or async) until it returns a truthy value; throws with `what` on timeout.
async function waitFor(what, fn, timeoutMs = 10000, everyMs = 25) {
    const deadline = Date.now() + timeoutMs * SLOW;
    let last;
    for (;;) {
        try {
            const v = await fn();
            if (v) {
                return v;
            }
        } catch (e) {
            last = e;
        }
        if (Date.now() > deadline) {
            throw new Error(`timed out waiting for ${what}` + (last ? ` (last error: ${last.message})` : ''));
        }
        await sleep(everyMs);
    }
}

function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.unref();
        srv.on('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const {port} = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

function exited(child) {
    return child.exitCode !== null || child.signalCode !== null;
}

function waitExit(child, timeoutMs) {
    if (exited(child)) {
        return Promise.resolve(true);
    }
    return new Promise((resolve) => {
        const t = setTimeout(() => resolve(false), timeoutMs);
        child.once('exit', () => {
            clearTimeout(t);
            resolve(true);
        });
    });
}

// Every process started here is stopped on the way out, even when a test throws or the runner
// is interrupted (Ctrl-C, a ctest timeout).
const children = new Set();
function killChildren() {
    for (const c of children) {
        if (!exited(c)) {
            try {
                c.kill('SIGKILL');
            } catch (e) {
                // gone already
            }
        }
    }
}
process.on('exit', killChildren);
for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
        killChildren();
        process.exit(1);
    });
}

function track(child) {
    children.add(child);
    child.once('exit', () => children.delete(child));
    return child;
}

/* ---- redis ---------------------------------------------------------------------------------- */

function redisPing(port) {
    return new Promise((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        let buf = '';
        s.setTimeout(1000, () => {
            s.destroy();
            resolve(false);
        });
        s.on('connect', () => s.write('PING\r\n'));
        s.on('data', (d) => {
            buf += d;
            if (buf.includes('\r\n')) {
                s.end();
                resolve(buf.startsWith('+PONG'));
            }
        });
        s.on('error', () => resolve(false));
    });
}

class Redis {
    async start() {
        this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'giftd-browser-redis-'));
        for (let attempt = 0; attempt < 5; attempt++) {
            this.port = await freePort();
            this.proc = track(
                spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '',
                    '--appendonly', 'no', '--dir', this.dir, '--daemonize', 'no', '--logfile', ''],
                {stdio: ['ignore', 'ignore', 'inherit']}));
            try {
                await waitFor('redis-server to answer PING', async () => {
                    if (exited(this.proc)) {
                        throw new Error('redis-server exited');
                    }
                    return redisPing(this.port);
                }, 10000);
                return this;
            } catch (e) {
                if (!exited(this.proc)) {
                    throw e;
                }
                // the port was taken between freePort() and the bind: try another
            }
        }
        throw new Error('redis-server did not start');
    }

    url() {
        return `redis://127.0.0.1:${this.port}`;
    }

    // One command (RESP array of bulk strings); resolves with the first line of the reply.
    command(...args) {
        return new Promise((resolve, reject) => {
            const s = net.connect(this.port, '127.0.0.1');
            let buf = '';
            s.setTimeout(5000, () => {
                s.destroy();
                reject(new Error(`redis ${args[0]}: no reply`));
            });
            s.on('connect', () => s.write(`*${args.length}\r\n` +
                args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('')));
            s.on('data', (d) => {
                buf += d;
                if (buf.includes('\r\n')) {
                    s.end();
                    resolve(buf.slice(0, buf.indexOf('\r\n')));
                }
            });
            s.on('error', reject);
        });
    }

    async stop() {
        if (this.proc && !exited(this.proc)) {
            this.proc.kill('SIGTERM');
            if (!(await waitExit(this.proc, 5000))) {
                this.proc.kill('SIGKILL');
                await waitExit(this.proc, 5000);
            }
        }
        if (this.dir) {
            fs.rmSync(this.dir, {recursive: true, force: true});
        }
    }
}

/* ---- giftd ---------------------------------------------------------------------------------- */

class Giftd {
    // name: the log kept in artifacts/browser/ is NAME.log (tests with several nodes name them).
    constructor(redisUrl, extra = [], name = 'giftd') {
        this.redisUrl = redisUrl;
        this.name = name;
        this.extra = extra;
        this.port = 0;
        this.proc = null;
        this.starts = 0;
        // A log of this run's giftd (all its starts); kept as artifacts/browser/NAME.log by
        // stop(), so concurrent runs do not write into one file.
        this.logPath = path.join(os.tmpdir(), `giftd-browser-${process.pid}-${crypto.randomBytes(4).toString('hex')}.log`);
        fs.writeFileSync(this.logPath, '');
    }

    saveLog() {
        try {
            fs.mkdirSync(ARTIFACTS, {recursive: true});
            fs.copyFileSync(this.logPath, path.join(ARTIFACTS, `${this.name}.log`));
        } catch (e) {
            // best effort
        }
    }

    args() {
        return [
            `--listen=127.0.0.1:${this.port}`,
            `--redis.url=${this.redisUrl}`,
            `--auth.secret=${SECRET}`,
            `--overlay.dir=${path.join(REPO, 'overlay')}`,
            `--gifts.catalog=${path.join(REPO, 'config', 'catalog.json')}`,
            ...this.extra,
        ];
    }

    // Starts giftd; on a free port the first time, on the same port after that (a restart).
    async start() {
        if (!fs.existsSync(GIFTD_BIN)) {
            throw new Error(`giftd binary not found at ${GIFTD_BIN} (set GIFTD_BIN)`);
        }
        const samePort = this.port !== 0;
        for (let attempt = 0; attempt < (samePort ? 1 : 5); attempt++) {
            if (!samePort) {
                this.port = await freePort();
            }
            const log = fs.openSync(this.logPath, 'a');
            fs.writeSync(log, `---- start ${++this.starts} on port ${this.port}\n`);
            // giftd reads GIFTD_* variables as settings: do not hand it ours.
            const env = {...process.env};
            delete env.GIFTD_BIN;
            this.proc = track(spawn(GIFTD_BIN, this.args(), {cwd: REPO, env, stdio: ['ignore', log, log]}));
            fs.closeSync(log);
            try {
                await this.waitReady(samePort ? 30000 : 15000);
                return this;
            } catch (e) {
                if (!exited(this.proc) || samePort) {
                    this.saveLog();
                    throw new Error(`${e.message}; see artifacts/browser/${this.name}.log`);
                }
            }
        }
        this.saveLog();
        throw new Error(`giftd did not start; see artifacts/browser/${this.name}.log`);
    }

    waitReady(timeoutMs) {
        return waitFor('giftd /readyz', async () => {
            if (exited(this.proc)) {
                throw new Error(`giftd exited (${this.proc.exitCode ?? this.proc.signalCode})`);
            }
            try {
                const r = await fetch(`${this.base()}/readyz`, {signal: AbortSignal.timeout(1000)});
                return r.status === 200;
            } catch (e) {
                return false; // not listening yet
            }
        }, timeoutMs, 50);
    }

    // SIGTERM and wait for a clean exit; returns the exit code.
    async stop() {
        try {
            if (!this.proc || exited(this.proc)) {
                return this.proc ? this.proc.exitCode : 0;
            }
            this.proc.kill('SIGTERM');
            if (!(await waitExit(this.proc, 20000 * SLOW))) {
                this.proc.kill('SIGKILL');
                await waitExit(this.proc, 5000);
                throw new Error('giftd did not exit within 20 s of SIGTERM');
            }
            return this.proc.exitCode;
        } finally {
            this.saveLog();
        }
    }

    // SIGKILL: the process dies at once, its sockets reset (no close frames). start() restarts
    // it on the same port.
    async kill() {
        if (this.proc && !exited(this.proc)) {
            this.proc.kill('SIGKILL');
            await waitExit(this.proc, 5000);
        }
    }

    // SIGSTOP / SIGCONT: a process that stops answering while its sockets stay open.
    freeze() {
        this.proc.kill('SIGSTOP');
    }

    thaw() {
        this.proc.kill('SIGCONT');
    }

    // Removes the temporary log (a copy stays in artifacts/browser/).
    cleanup() {
        this.saveLog();
        fs.rmSync(this.logPath, {force: true});
    }

    base() {
        return `http://127.0.0.1:${this.port}`;
    }

    wsBase() {
        return `ws://127.0.0.1:${this.port}`;
    }
}

/* ---- tokens and HTTP ------------------------------------------------------------------------ */

function b64url(buf) {
    return Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

// An HS256 JWT: sub, role, exp, and name / room when given.
function token(sub, role, {name, room, ttlS = 3600} = {}) {
    const claims = {sub, role};
    if (name) {
        claims.name = name;
    }
    if (room) {
        claims.room = room;
    }
    claims.exp = Math.floor(Date.now() / 1000) + ttlS;
    const head = b64url(JSON.stringify({alg: 'HS256', typ: 'JWT'}));
    const body = b64url(JSON.stringify(claims));
    const mac = crypto.createHmac('sha256', SECRET).update(`${head}.${body}`).digest();
    return `${head}.${body}.${b64url(mac)}`;
}

const SERVICE = () => token('platform', 'service');

async function api(giftd, method, p, body, bearer = SERVICE()) {
    const r = await fetch(giftd.base() + p, {
        method,
        headers: {'content-type': 'application/json', authorization: `Bearer ${bearer}`},
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    let json = null;
    try {
        json = JSON.parse(text);
    } catch (e) {
        // not JSON
    }
    if (r.status !== 200) {
        throw new Error(`${method} ${p}: ${r.status} ${text}`);
    }
    return json;
}

function openRoom(giftd, room, creator = `${room}_creator`) {
    return api(giftd, 'PUT', `/v1/rooms/${room}`, {creator: {id: creator, name: `Creator of ${room}`}});
}

async function recharge(giftd, user, coins) {
    const j = await api(giftd, 'POST', '/v1/recharge',
        {payment_id: `pay-${crypto.randomUUID()}`, user, coins});
    return j.balance;
}

async function balance(giftd, user) {
    return (await api(giftd, 'GET', `/v1/users/${user}/balance`)).coins;
}

/* ---- a WebSocket viewer --------------------------------------------------------------------- */

// A viewer connection; events (batches unpacked) are kept, and next() waits for one that matches.
class Viewer {
    static async connect(giftd, user, name, room) {
        const WebSocket = require('ws');
        const v = new Viewer();
        v.user = user;
        v.events = [];
        v.waiters = [];
        const url = `${giftd.wsBase()}/ws?token=${encodeURIComponent(token(user, 'viewer', {name}))}` +
            `&room=${encodeURIComponent(room)}`;
        v.ws = new WebSocket(url, 'giftd.v1');
        v.ws.on('message', (data) => {
            let m;
            try {
                m = JSON.parse(String(data));
            } catch (e) {
                return;
            }
            const push = (e) => {
                if (e && e.type === 'batch' && Array.isArray(e.events)) {
                    e.events.forEach(push);
                    return;
                }
                v.events.push(e);
                v.waiters = v.waiters.filter((w) => !w(e));
            };
            push(m);
        });
        await new Promise((resolve, reject) => {
            v.ws.once('open', resolve);
            v.ws.once('error', reject);
        });
        const joined = await v.next((e) => e.type === 'joined' || e.type === 'error', 10000);
        if (joined.type !== 'joined') {
            throw new Error(`join of ${room} answered ${JSON.stringify(joined)}`);
        }
        return v;
    }

    // The first event (already received or still to come) that matches pred.
    next(pred, timeoutMs = 10000) {
        const seen = this.events.find(pred);
        if (seen) {
            this.events.splice(this.events.indexOf(seen), 1);
            return Promise.resolve(seen);
        }
        return new Promise((resolve, reject) => {
            const t = setTimeout(() => {
                this.waiters = this.waiters.filter((w) => w !== waiter);
                reject(new Error(`${this.user}: no matching event within ${timeoutMs * SLOW} ms`));
            }, timeoutMs * SLOW);
            const waiter = (e) => {
                if (!pred(e)) {
                    return false;
                }
                clearTimeout(t);
                this.events.splice(this.events.indexOf(e), 1);
                resolve(e);
                return true;
            };
            this.waiters.push(waiter);
        });
    }

    // Sends a gift ({anonymous: true} for an anonymous one); the returned promise resolves with
    // its ack (or rejects with its error).
    gift(gift, count = 1, id = `t-${crypto.randomUUID()}`, {anonymous = false} = {}) {
        const frame = {type: 'gift', id, gift, count};
        if (anonymous) {
            frame.anonymous = true;
        }
        this.ws.send(JSON.stringify(frame));
        return this.next((e) => (e.type === 'ack' || e.type === 'error') && e.id === id).then((e) => {
            if (e.type !== 'ack') {
                throw new Error(`gift ${gift} refused: ${JSON.stringify(e)}`);
            }
            return e;
        });
    }

    close() {
        try {
            this.ws.close();
        } catch (e) {
            // closed already
        }
    }
}

/* ---- the browser ---------------------------------------------------------------------------- */

async function launchBrowser() {
    const {chromium} = require('playwright-core');
    if (!fs.existsSync(CHROMIUM)) {
        throw new Error(`${CHROMIUM} not found: apt-get install chromium (scripts/setup.sh does)`);
    }
    // launch() gives chromium a new, empty user-data-dir of its own and removes it on close.
    return chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
            '--disable-background-networking', '--disable-component-update', '--disable-sync',
            '--autoplay-policy=no-user-gesture-required'],
    });
}

// A new page that records its console errors and uncaught exceptions (pageErrors).
async function newPage(browser, viewport = {width: 1280, height: 720}) {
    const context = await browser.newContext({viewport});
    const page = await context.newPage();
    page.pageErrors = [];
    page.on('pageerror', (e) => page.pageErrors.push(String(e)));
    page.on('console', (m) => {
        // Chromium itself reports each refused WebSocket connection; while giftd restarts those
        // are expected (the page retries), so only the page's own errors count.
        if (m.type() === 'error' && !/^WebSocket connection to .* failed/.test(m.text())) {
            page.pageErrors.push(`console: ${m.text()}`);
        }
    });
    return page;
}

// A backdrop standing in for the stream's video, so screenshots show the overlay as viewers do.
const BACKDROP = `html { background:
    radial-gradient(circle at 78% 28%, rgba(255,255,255,.55), transparent 22%),
    radial-gradient(ellipse at 20% 80%, #1f7a5a, transparent 55%),
    linear-gradient(160deg, #9ec9ff 0%, #f6d6b8 45%, #6f8f5a 46%, #3b5a34 100%) !important; }`;

async function screenshot(page, name) {
    fs.mkdirSync(ARTIFACTS, {recursive: true});
    const file = path.join(ARTIFACTS, `${name}.png`);
    await page.screenshot({path: file});
    return file;
}

// A suite's end: stops giftd (SIGTERM) and then Redis, either of which may be missing;
// returns giftd's exit code (0 when there was none to stop).
async function stopServers(giftd, redis) {
    let code = 0;
    if (giftd) {
        code = await giftd.stop();
        giftd.cleanup();
    }
    if (redis) {
        await redis.stop();
    }
    return code;
}

module.exports = {
    REPO, ARTIFACTS, SECRET, SLOW, sleep, waitFor, freePort, Redis, Giftd, token, api, openRoom,
    recharge, balance, Viewer, launchBrowser, newPage, screenshot, BACKDROP, stopServers,
};
