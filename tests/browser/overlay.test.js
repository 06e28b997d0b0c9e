// overlay.test.js: the streamer overlay (/overlay/) and the demo viewer page (/demo/) in Debian's
// chromium, against a real giftd and redis-server. Run: node --test overlay.test.js
// (GIFTD_BIN=path/to/giftd; default build/giftd). Screenshots go to artifacts/browser/.
'use strict';

const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./harness');

const COMBO_WINDOW_MS = 700;
const T = 20000; // the longest any single condition may take (times BROWSER_TEST_SLOWDOWN)

let redis;
let giftd;
let browser;
let uniq = 0;

// A fresh room for each test, so tests never see each other's events.
async function freshRoom(tag) {
    const room = `${tag}_${process.pid}_${++uniq}`;
    await h.openRoom(giftd, room);
    return room;
}

async function openOverlay(room, query = '', node = giftd) {
    const page = await h.newPage(browser);
    const tok = h.token(`${room}_creator`, 'overlay', {room});
    await page.goto(`${node.base()}/overlay/?room=${room}&token=${tok}&mute=1${query}`);
    await page.addStyleTag({content: h.BACKDROP});
    await waitState(page, 'live');
    return page;
}

function waitState(page, state) {
    return page.waitForFunction((s) => window.giftOverlay && window.giftOverlay.state() === s, state,
        {timeout: T * h.SLOW});
}

// The alerts the overlay has shown so far (gift, from, name, tier, count, streak, closed).
function alerts(page) {
    return page.evaluate(() => window.giftOverlay.history.slice());
}

function assertNoPageErrors(page) {
    assert.deepEqual(page.pageErrors, [], 'the page logged errors');
}

before(async () => {
    redis = await new h.Redis().start();
    giftd = await new h.Giftd(redis.url(), [
        `--gifts.combo_window_ms=${COMBO_WINDOW_MS}`,
        '--rooms.presence_interval_ms=200',
    ]).start();
    browser = await h.launchBrowser();
});

after(async () => {
    if (browser) {
        await browser.close();
    }
    const code = await h.stopServers(giftd, redis);
    assert.equal(code, 0, 'giftd exits 0 on SIGTERM (under ASan: no leak reports either)');
});

test('a gift sent over WebSocket appears in the overlay with the sender and gift names', {timeout: 90000}, async () => {
    const room = await freshRoom('alert');
    await h.recharge(giftd, 'maya', 50000);
    await h.api(giftd, 'PUT', `/v1/rooms/${room}/goal`, {title: 'Road to 5k', target: 5000});
    const page = await openOverlay(room);
    const maya = await h.Viewer.connect(giftd, 'maya', 'Maya Lind', room);
    try {
        const ack = await maya.gift('galaxy');
        assert.equal(ack.balance, 49000);
        const alert = page.locator('.alert[data-gift="galaxy"]');
        await alert.waitFor({state: 'visible', timeout: T * h.SLOW});
        await assert.doesNotReject(page.waitForSelector('.alert[data-gift="galaxy"][data-phase="show"]',
            {timeout: T * h.SLOW}));
        assert.equal(await alert.locator('.alert-from').textContent(), 'Maya Lind');
        assert.equal(await alert.locator('.alert-gift').textContent(), 'Galaxy');
        assert.equal(await alert.getAttribute('data-tier'), 'large');
        assert.ok(await alert.locator('svg.gift-svg').count(), 'the gift has its artwork');
        // For the README picture: the leaderboard with Maya on it and the goal bar at 1000 / 5000,
        // while the alert still shows.
        await page.waitForSelector('#leaderboard li[data-id="maya"]', {timeout: 3000 * h.SLOW}).catch(() => {});
        await page.waitForSelector('#goal[data-current="1000"]', {timeout: 3000 * h.SLOW}).catch(() => {});
        const file = await h.screenshot(page, 'overlay-alert');
        fs.mkdirSync(path.join(h.REPO, 'docs'), {recursive: true});
        fs.copyFileSync(file, path.join(h.REPO, 'docs', 'overlay.png'));
        assertNoPageErrors(page);
    } finally {
        maya.close();
        await page.context().close();
    }
});

test('three quick Roses show one alert counting x3 that closes on combo_end', {timeout: 90000}, async () => {
    const room = await freshRoom('combo');
    await h.recharge(giftd, 'leo', 1000);
    const page = await openOverlay(room);
    const leo = await h.Viewer.connect(giftd, 'leo', 'Leo', room);
    try {
        // Sent back to back, well inside the combo window.
        await Promise.all([leo.gift('rose'), leo.gift('rose'), leo.gift('rose')]);
        const gifts = [];
        for (let i = 0; i < 3; i++) {
            gifts.push(await leo.next((e) => e.type === 'gift' && e.gift.id === 'rose', T));
        }
        assert.deepEqual(gifts.map((g) => g.combo && g.combo.count), [1, 2, 3],
            'the server numbers the streak (combo.count 1, 2, 3)');
        // Both states are waited for from now on, so a slow screenshot cannot make us miss them.
        const counted = page.waitForSelector('.alert[data-gift="rose"][data-count="3"]',
            {state: 'attached', timeout: T * h.SLOW});
        const closed = page.waitForSelector('.alert[data-gift="rose"][data-closed="true"][data-count="3"]',
            {state: 'attached', timeout: T * h.SLOW});
        closed.catch(() => {}); // awaited below; no unhandled rejection meanwhile
        await counted;
        await h.screenshot(page, 'overlay-combo-open');
        const end = await leo.next((e) => e.type === 'combo_end' && e.gift.id === 'rose', T);
        assert.equal(end.total_count, 3);
        await closed;
        const shown = (await alerts(page)).filter((a) => a.gift === 'rose');
        assert.equal(shown.length, 1, `one alert for the streak, not ${shown.length}`);
        assert.equal(shown[0].count, 3);
        assert.equal(shown[0].streak, true);
        assert.equal(shown[0].closed, true);
        assert.equal(shown[0].closedBy, 'combo_end', 'the streak closed on combo_end, not on a timeout');
        assertNoPageErrors(page);
    } finally {
        leo.close();
        await page.context().close();
    }
});

test('the leaderboard updates', {timeout: 90000}, async () => {
    const room = await freshRoom('board');
    await h.recharge(giftd, 'ana', 20000);
    await h.recharge(giftd, 'sam', 20000);
    const page = await openOverlay(room, '&speed=4');
    const ana = await h.Viewer.connect(giftd, 'ana', 'Ana', room);
    const sam = await h.Viewer.connect(giftd, 'sam', 'Sam', room);
    try {
        const rows = () => page.$$eval('#leaderboard li', (lis) =>
            lis.map((li) => `${li.dataset.id}:${li.dataset.coins}`).join(' '));
        await ana.gift('doughnut', 2); // 60
        await sam.gift('galaxy'); // 1000
        await h.waitFor('"sam:1000 ana:60" on the leaderboard (a leaderboard event)', async () =>
            (await rows()) === 'sam:1000 ana:60', T);
        assert.equal(await page.locator('#leaderboard li').first().locator('.name').textContent(), 'Sam');
        assert.ok(await page.locator('#leaderboard').isVisible());
        await ana.gift('fireworks'); // 60 + 1088 = 1148: Ana overtakes Sam
        await h.waitFor('"ana:1148 sam:1000" on the leaderboard', async () =>
            (await rows()) === 'ana:1148 sam:1000', T);
        await page.waitForSelector('.alert[data-gift="fireworks"][data-phase="show"]', {timeout: T * h.SLOW});
        await h.screenshot(page, 'overlay-leaderboard');
        assertNoPageErrors(page);
    } finally {
        ana.close();
        sam.close();
        await page.context().close();
    }
});

test('the viewer count updates', {timeout: 90000}, async () => {
    const room = await freshRoom('viewers');
    const page = await openOverlay(room);
    const count = () => page.evaluate(() => Number(document.querySelector('#viewers').dataset.count));
    const first = await count();
    const a = await h.Viewer.connect(giftd, 'vic', 'Vic', room);
    const b = await h.Viewer.connect(giftd, 'val', 'Val', room);
    try {
        await h.waitFor(`the viewer count to grow by 2 from ${first} (a viewers event)`, async () =>
            (await count()) === first + 2, T);
        assert.ok(await page.locator('#viewers').isVisible());
        a.close();
        await h.waitFor(`the viewer count to fall to ${first + 1}`, async () => (await count()) === first + 1, T);
        await h.screenshot(page, 'overlay-viewers');
        assertNoPageErrors(page);
    } finally {
        a.close();
        b.close();
        await page.context().close();
    }
});

test('the overlay counts a streak in place and orders the leaderboard (events fed directly)', {timeout: 90000}, async () => {
    const room = await freshRoom('client');
    const page = await openOverlay(room, '&speed=4');
    try {
        await page.evaluate((room) => {
            const o = window.giftOverlay;
            const gift = {id: 'finger_heart', name: 'Finger Heart', coins: 5, diamonds: 2, tier: 'small',
                animation: 'finger_heart'};
            const from = {id: 'zoe', name: 'Zoe'};
            for (let i = 1; i <= 4; i++) {
                o.handle({type: 'gift', room, seq: i, id: `s${i}`, from, gift, count: i === 4 ? 2 : 1,
                    combo: {count: i}, ts_ms: i});
            }
            o.handle({type: 'batch', events: [
                {type: 'combo_end', room, seq: 5, from, gift, combo: {count: 4}, total_count: 5, ts_ms: 5},
                {type: 'leaderboard', room, top: [{id: 'zoe', name: 'Zoe', coins: 25},
                    {id: 'max', name: 'Max', coins: 7}]},
            ]});
        }, room);
        await page.waitForSelector('.alert[data-gift="finger_heart"][data-closed="true"][data-count="5"]',
            {timeout: T * h.SLOW});
        const shown = await alerts(page);
        assert.equal(shown.length, 1, 'one alert for the whole streak');
        assert.equal(await page.$$eval('#leaderboard li', (l) => l.map((li) => li.dataset.id).join(' ')), 'zoe max');
        assert.equal(await page.evaluate(() => window.giftOverlay.stats.errors), 0);
        await h.screenshot(page, 'overlay-streak-fed');
        assertNoPageErrors(page);
    } finally {
        await page.context().close();
    }
});

test('after giftd restarts the overlay reconnects by itself and shows the next gift', {timeout: 120000}, async () => {
    const room = await freshRoom('restart');
    await h.recharge(giftd, 'kim', 5000);
    const page = await openOverlay(room);
    const connects = await page.evaluate(() => window.giftOverlay.stats.connects);
    const code = await giftd.stop();
    assert.equal(code, 0, 'giftd exits 0 on SIGTERM');
    await page.waitForFunction(() => window.giftOverlay.state() !== 'live', null, {timeout: T * h.SLOW});
    await giftd.start(); // the same port
    await waitState(page, 'live');
    assert.ok(await page.evaluate((c) => window.giftOverlay.stats.connects > c, connects));
    const kim = await h.Viewer.connect(giftd, 'kim', 'Kim', room);
    try {
        await kim.gift('hat_and_mustache');
        await page.waitForSelector('.alert[data-gift="hat_and_mustache"][data-from="kim"][data-phase="show"]',
            {state: 'visible', timeout: T * h.SLOW});
        assert.equal(await page.locator('.alert[data-gift="hat_and_mustache"] .alert-from').textContent(), 'Kim');
        await h.screenshot(page, 'overlay-after-restart');
        assertNoPageErrors(page);
    } finally {
        kim.close();
        await page.context().close();
    }
});

test('the overlay waits for a room that is not live, and rejoins when it opens again', {timeout: 120000}, async () => {
    const room = `later_${process.pid}_${++uniq}`;
    const page = await h.newPage(browser);
    const tok = h.token(`${room}_creator`, 'overlay', {room});
    await page.goto(`${giftd.base()}/overlay/?room=${room}&token=${tok}&mute=1`);
    try {
        await waitState(page, 'waiting'); // room_not_live: the streamer is not live yet
        await h.openRoom(giftd, room);
        await waitState(page, 'live');
        await h.api(giftd, 'DELETE', `/v1/rooms/${room}`);
        await waitState(page, 'waiting'); // room_closed
        await h.openRoom(giftd, room);
        await waitState(page, 'live');
        await h.recharge(giftd, 'ian', 100);
        const ian = await h.Viewer.connect(giftd, 'ian', 'Ian', room);
        try {
            await ian.gift('ice_cream');
            await page.waitForSelector('.alert[data-gift="ice_cream"][data-from="ian"]', {timeout: T * h.SLOW});
            await h.screenshot(page, 'overlay-rejoined');
        } finally {
            ian.close();
        }
        assertNoPageErrors(page);
    } finally {
        await page.context().close();
    }
});

test('the overlay honours min=, survives unknown events and unpacks batches', {timeout: 90000}, async () => {
    const room = await freshRoom('options');
    await h.recharge(giftd, 'eve', 5000);
    const page = await openOverlay(room, '&min=100&speed=3');
    const eve = await h.Viewer.connect(giftd, 'eve', 'Eve', room);
    try {
        await eve.gift('perfume'); // 20 coins: below min, no alert
        await eve.gift('confetti'); // 100 coins: alerts
        await page.waitForSelector('.alert[data-gift="confetti"]', {timeout: T * h.SLOW});
        assert.deepEqual((await alerts(page)).map((a) => a.gift), ['confetti']);
        // Frames the server may send one day, garbage, and a batch: none of them throws.
        await page.evaluate((room) => {
            const o = window.giftOverlay;
            o.handle({type: 'something_new', x: 1});
            o.handle({type: 'gift'});
            o.handle({type: 'leaderboard', top: 'nope'});
            o.handle(null);
            o.handle({type: 'batch', events: [
                {type: 'mystery'},
                {type: 'gift', room, seq: 1000, id: 'b1', from: {id: 'zed', name: 'Zed'},
                    gift: {id: 'lion', name: 'Lion', coins: 29999, diamonds: 1, tier: 'legendary',
                        animation: 'lion'}, count: 1, combo: null, ts_ms: 1},
                {type: 'gift', room: 'another_room', seq: 1, id: 'b2', from: {id: 'zed', name: 'Zed'},
                    gift: {id: 'universe', name: 'Universe', coins: 34999, tier: 'legendary',
                        animation: 'universe'}, count: 1, combo: null, ts_ms: 1},
            ]});
        }, room);
        await page.waitForSelector('.alert[data-gift="lion"][data-phase="show"]', {timeout: T * h.SLOW});
        assert.equal(await page.evaluate(() => window.giftOverlay.stats.errors), 0);
        assert.deepEqual((await alerts(page)).map((a) => a.gift), ['confetti', 'lion'],
            'events of another room are ignored');
        await h.screenshot(page, 'overlay-legendary');
        assertNoPageErrors(page);
    } finally {
        eve.close();
        await page.context().close();
    }
});

test('alerts grow with the tier: a legendary gift stays longer and shows larger than a small one', {timeout: 90000}, async () => {
    const room = await freshRoom('tiers');
    // Real speed: sped up, the small alert's floor (its entrance + 0.7 s) hides the difference.
    const page = await openOverlay(room);
    try {
        const ev = (seq, id, gift) => ({type: 'gift', room, seq, id, from: {id: 'tia', name: 'Tia'},
            gift, count: 1, combo: null, ts_ms: 1});
        const small = {id: 'perfume', name: 'Perfume', coins: 20, diamonds: 10, tier: 'small',
            animation: 'perfume'};
        const legendary = {id: 'lion', name: 'Lion', coins: 29999, diamonds: 14999,
            tier: 'legendary', animation: 'lion'};
        // Three alerts queued at once: small, legendary, small.
        await page.evaluate((evs) => evs.forEach((e) => window.giftOverlay.handle(e)),
            [ev(1, 't1', small), ev(2, 't2', legendary), ev(3, 't3', small)]);
        const area = (gift) => page.evaluate((g) => {
            const e = document.querySelector(`.alert[data-gift="${g}"][data-phase="show"]`);
            return e.offsetWidth * e.offsetHeight;
        }, gift);
        await page.waitForSelector('.alert[data-gift="perfume"][data-phase="show"]', {timeout: T * h.SLOW});
        const smallArea = await area('perfume');
        await page.waitForSelector('.alert[data-gift="lion"][data-phase="show"]', {timeout: T * h.SLOW});
        const bigArea = await area('lion');
        await h.screenshot(page, 'overlay-tiers-legendary');
        await page.waitForFunction(() => window.giftOverlay.history.length >= 3, null, {timeout: T * h.SLOW});
        const hist = await alerts(page);
        assert.deepEqual(hist.map((a) => a.tier), ['small', 'legendary', 'small']);
        const smallMs = hist[1].at - hist[0].at;
        const bigMs = hist[2].at - hist[1].at;
        assert.ok(bigMs > 2 * smallMs, `legendary on screen ${bigMs} ms, small ${smallMs} ms`);
        assert.ok(bigArea > 1.2 * smallArea, `legendary ${bigArea} px², small ${smallArea} px²`);
        assert.equal(await page.evaluate(() => window.giftOverlay.stats.errors), 0);
        assertNoPageErrors(page);
    } finally {
        await page.context().close();
    }
});

test('steps=1 alerts every streak step; mute=1 never starts audio, mute=0 does', {timeout: 90000}, async () => {
    const room = await freshRoom('steps');
    const feed = (page) => page.evaluate((room) => {
        const gift = {id: 'finger_heart', name: 'Finger Heart', coins: 5, diamonds: 2, tier: 'small',
            animation: 'finger_heart'};
        const from = {id: 'ivy', name: 'Ivy'};
        for (let i = 1; i <= 3; i++) {
            window.giftOverlay.handle({type: 'gift', room, seq: i, id: `st${i}`, from, gift, count: 1,
                combo: {count: i}, ts_ms: i});
        }
    }, room);
    // Counts the AudioContexts the page creates (the overlay's chimes need one).
    const countAudio = () => {
        window.__audioContexts = 0;
        const AC = window.AudioContext;
        window.AudioContext = function (...args) {
            window.__audioContexts++;
            return new AC(...args);
        };
    };
    const tok = h.token(`${room}_creator`, 'overlay', {room});
    const open = async (query) => {
        const page = await h.newPage(browser);
        await page.addInitScript(countAudio);
        await page.goto(`${giftd.base()}/overlay/?room=${room}&token=${tok}&speed=4${query}`);
        await waitState(page, 'live');
        return page;
    };
    const stepsPage = await open('&mute=1&steps=1');
    const loudPage = await open('&mute=0');
    try {
        await feed(stepsPage);
        await stepsPage.waitForFunction(() => window.giftOverlay.history.length >= 3, null,
            {timeout: T * h.SLOW});
        assert.deepEqual((await alerts(stepsPage)).map((a) => a.count), [1, 2, 3],
            'one alert per streak step, each with the streak so far');
        assert.equal(await stepsPage.evaluate(() => window.__audioContexts), 0, 'muted, no audio');
        await feed(loudPage);
        await loudPage.waitForSelector('.alert[data-gift="finger_heart"]', {timeout: T * h.SLOW});
        await loudPage.waitForFunction(() => window.__audioContexts > 0, null, {timeout: T * h.SLOW});
        assert.equal((await alerts(loudPage)).length, 1, 'without steps=1 the streak is one alert');
        assertNoPageErrors(stepsPage);
        assertNoPageErrors(loudPage);
    } finally {
        await stepsPage.context().close();
        await loudPage.context().close();
    }
});

test('a goal set over HTTP shows as a bar that follows the gifts, celebrates once and hides when cleared', {timeout: 120000}, async () => {
    const room = await freshRoom('goal');
    await h.recharge(giftd, 'gus', 20000);
    const page = await openOverlay(room);
    const gus = await h.Viewer.connect(giftd, 'gus', 'Gus', room);
    let late = null;
    try {
        const bar = page.locator('#goal');
        assert.equal(await bar.isVisible(), false, 'no goal: no bar');
        const set = await h.api(giftd, 'PUT', `/v1/rooms/${room}/goal`, {title: 'Road to 100', target: 100});
        const id = set.goal.id;
        // The goal event of the PUT shows the bar.
        await page.waitForSelector(`#goal[data-id="${id}"][data-current="0"][data-target="100"]`,
            {state: 'visible', timeout: T * h.SLOW});
        assert.equal(await bar.locator('.goal-title').textContent(), 'Road to 100');
        assert.equal(await bar.locator('.goal-target').textContent(), '100');
        assert.equal(await bar.locator('.goal-unit svg.coin').count(), 1, 'a coin goal shows a coin');
        // The filled part of the bar, in percent of its width.
        const fill = () => page.$eval('#goal .goal-fill', (e) => parseFloat(e.style.width));
        assert.equal(await fill(), 0);
        // Progress follows the gifts (goal events).
        await gus.gift('doughnut'); // 30 coins
        await page.waitForSelector('#goal[data-current="30"]', {timeout: T * h.SLOW});
        assert.equal(await bar.locator('.goal-current').textContent(), '30');
        assert.equal(await fill(), 30);
        await gus.gift('doughnut', 2); // 90
        await page.waitForSelector('#goal[data-current="90"][data-reached="false"]', {timeout: T * h.SLOW});
        assert.equal(await fill(), 90);
        assert.equal(await page.evaluate(() => window.giftOverlay.goalAlerts.length), 0);
        // 110 of 100: goal_reached, the banner shows.
        await gus.gift('perfume'); // 20
        await page.waitForSelector('#goal[data-reached="true"][data-current="110"]', {timeout: T * h.SLOW});
        await page.waitForFunction(() => window.giftOverlay.goalAlerts.length > 0, null, {timeout: T * h.SLOW});
        assert.equal(await fill(), 100, 'the bar stops at full');
        await h.screenshot(page, 'overlay-goal-reached');
        let shown = await page.evaluate(() => window.giftOverlay.goalAlerts.slice());
        assert.equal(shown.length, 1);
        assert.equal(shown[0].id, id);
        assert.equal(shown[0].title, 'Road to 100');
        // A gift after the goal was met brings no second banner (goal_reached would come with it).
        const before = await page.evaluate(() => window.giftOverlay.stats.gifts);
        await gus.gift('galaxy');
        await page.waitForFunction((n) => window.giftOverlay.stats.gifts > n, before, {timeout: T * h.SLOW});
        await page.waitForSelector('.alert[data-gift="galaxy"]', {state: 'attached', timeout: T * h.SLOW});
        shown = await page.evaluate(() => window.giftOverlay.goalAlerts.slice());
        assert.equal(shown.length, 1, 'the goal-reached banner shows once');
        // The banner goes after a few seconds; the bar stays, reached.
        await page.waitForSelector('#goal[data-celebrating="false"]', {timeout: T * h.SLOW});
        assert.equal(await bar.locator('.goal-done').isVisible(), false);
        assert.ok(await bar.isVisible());
        // An overlay opened now gets the goal from joined: reached, without a banner.
        late = await openOverlay(room);
        await late.waitForSelector(`#goal[data-id="${id}"][data-reached="true"]`, {state: 'visible', timeout: T * h.SLOW});
        assert.equal(await late.evaluate(() => window.giftOverlay.goalAlerts.length), 0);
        // Cleared: both bars go.
        await h.api(giftd, 'DELETE', `/v1/rooms/${room}/goal`);
        await page.waitForSelector('#goal', {state: 'hidden', timeout: T * h.SLOW});
        await late.waitForSelector('#goal', {state: 'hidden', timeout: T * h.SLOW});
        assert.equal(await page.evaluate(() => window.giftOverlay.goal()), null);
        // A goal counted in one gift: its artwork stands for the unit.
        const roses = await h.api(giftd, 'PUT', `/v1/rooms/${room}/goal`, {title: 'Ten roses', gift: 'rose', target: 10});
        await page.waitForSelector(`#goal[data-id="${roses.goal.id}"][data-gift="rose"][data-current="0"]`,
            {state: 'visible', timeout: T * h.SLOW});
        await gus.gift('rose', 3);
        await page.waitForSelector('#goal[data-current="3"][data-target="10"]', {timeout: T * h.SLOW});
        assert.equal(await bar.locator('.goal-unit svg.gift-svg').count(), 1, 'a gift goal shows the gift');
        assert.equal(await fill(), 30);
        assert.equal(await page.evaluate(() => window.giftOverlay.goalAlerts.length), 1);
        await h.screenshot(page, 'overlay-goal-gift');
        assert.equal(await page.evaluate(() => window.giftOverlay.stats.errors), 0);
        assertNoPageErrors(page);
        assertNoPageErrors(late);
    } finally {
        gus.close();
        await page.context().close();
        if (late) {
            await late.context().close();
        }
    }
});

test('an anonymous gift shows as "Anonymous", with nothing of its sender on the overlay', {timeout: 90000}, async () => {
    const room = await freshRoom('anon');
    await h.recharge(giftd, 'shadow_quill', 5000);
    await h.recharge(giftd, 'lea', 100);
    const page = await openOverlay(room);
    const shadow = await h.Viewer.connect(giftd, 'shadow_quill', 'Shadow Quill', room);
    const lea = await h.Viewer.connect(giftd, 'lea', 'Lea', room);
    try {
        const ack = await shadow.gift('galaxy', 1, `anon-${process.pid}`, {anonymous: true});
        const ev = await shadow.next((e) => e.type === 'gift' && e.id === ack.id, T);
        assert.equal(ev.from, null, 'the server sends no sender');
        assert.equal(ev.anonymous, true);
        const alert = page.locator('.alert[data-gift="galaxy"]');
        await page.waitForSelector('.alert[data-gift="galaxy"][data-phase="show"]', {timeout: T * h.SLOW});
        assert.equal(await alert.locator('.alert-from').textContent(), 'Anonymous');
        assert.equal(await alert.getAttribute('data-anonymous'), 'true');
        const html = await alert.evaluate((e) => e.outerHTML);
        for (const leak of ['shadow_quill', 'Shadow', 'Quill']) {
            assert.ok(!html.includes(leak), `the alert does not contain "${leak}"`);
        }
        const rec = (await alerts(page)).find((a) => a.gift === 'galaxy');
        assert.deepEqual([rec.from, rec.name, rec.anonymous], ['', 'Anonymous', true]);
        // A named gift after it: once Lea is on the leaderboard, the room's updates have come in,
        // and the sender is still nowhere on the page.
        await lea.gift('rose');
        await page.waitForSelector('#leaderboard li[data-id="lea"]', {timeout: T * h.SLOW});
        const body = await page.evaluate(() => document.body.innerHTML);
        for (const leak of ['shadow_quill', 'Shadow Quill']) {
            assert.ok(!body.includes(leak), `the overlay does not contain "${leak}"`);
        }
        await h.screenshot(page, 'overlay-anonymous');
        assertNoPageErrors(page);
    } finally {
        shadow.close();
        lea.close();
        await page.context().close();
    }
});

test('the demo page sends anonymously, lists its transactions and shows and sets the budget', {timeout: 120000}, async () => {
    const room = await freshRoom('demotx');
    await h.recharge(giftd, 'otto', 5000);
    const page = await h.newPage(browser, {width: 1280, height: 1100});
    const tok = h.token('otto', 'viewer', {name: 'Otto'});
    // Pages of two transactions, so "More" has something to do.
    await page.goto(`${giftd.base()}/demo/?room=${room}&token=${tok}&txlimit=2`);
    try {
        await page.waitForSelector('#balance[data-value="5000"]', {timeout: T * h.SLOW});
        await page.waitForSelector('#tx-list tr.tx[data-type="recharge"][data-coins="5000"][data-balance="5000"]',
            {timeout: T * h.SLOW});
        await page.waitForSelector('#spent-today[data-value="0"]', {timeout: T * h.SLOW});
        assert.equal(await page.locator('#daily-cap').getAttribute('data-value'), 'none');
        assert.equal(await page.locator('#monthly-cap').getAttribute('data-value'), 'none');
        // Set a daily cap with the form.
        await page.fill('#daily-input', '1000');
        await page.click('#daily-set');
        await page.waitForSelector('#daily-cap[data-value="1000"]', {timeout: T * h.SLOW});
        assert.equal((await h.api(giftd, 'GET', '/v1/users/otto/budget')).daily_coins, 1000);
        // An anonymous Doughnut.
        await page.check('#anonymous');
        await page.waitForSelector('button.gift[data-gift="doughnut"]:not([disabled])', {timeout: T * h.SLOW});
        await page.click('button.gift[data-gift="doughnut"]');
        await page.waitForSelector('#sends .entry.ack[data-anonymous="true"]', {timeout: T * h.SLOW});
        const row = page.locator('#tx-list tr.tx[data-type="gift"][data-coins="-30"][data-balance="4970"]');
        await row.waitFor({timeout: T * h.SLOW});
        const text = await row.textContent();
        assert.match(text, /Doughnut/);
        assert.match(text, /anonymous/);
        assert.match(text, /4,970/);
        await page.waitForSelector('#spent-today[data-value="30"]', {timeout: T * h.SLOW});
        await page.waitForSelector('#spent-month[data-value="30"]', {timeout: T * h.SLOW});
        assert.match(await page.locator('#spent-today').textContent(), /^30$/);
        // The room saw it without a sender; the page knows it was its own.
        await page.waitForSelector('#events .entry[data-type="gift"]', {timeout: T * h.SLOW});
        assert.match(await page.locator('#events .entry[data-type="gift"]').first().textContent(), /You, anonymously/);
        // 30 spent of 1000: a Galaxy (1000) is over the daily budget; without a cap it is not.
        await page.waitForSelector('button.gift[data-gift="galaxy"][disabled]', {timeout: T * h.SLOW});
        assert.match(await page.locator('button.gift[data-gift="galaxy"]').getAttribute('title'), /daily budget/);
        await page.click('#daily-clear');
        await page.waitForSelector('#daily-cap[data-value="none"]', {timeout: T * h.SLOW});
        await page.waitForSelector('button.gift[data-gift="galaxy"]:not([disabled])', {timeout: T * h.SLOW});
        assert.equal((await h.api(giftd, 'GET', '/v1/users/otto/budget')).daily_coins, null);
        // Two named Roses; then, on a fresh load, the newest page and "More" for the older ones.
        await page.uncheck('#anonymous');
        await page.click('button.gift[data-gift="rose"]');
        await page.waitForSelector('#sends .entry.ack[data-anonymous="false"]', {timeout: T * h.SLOW});
        await page.click('button.gift[data-gift="rose"]');
        await page.waitForFunction(() => document.querySelectorAll('#sends .entry.ack').length === 3, null,
            {timeout: T * h.SLOW});
        const types = () => page.$$eval('#tx-list tr.tx', (rows) => rows.map((r) => `${r.dataset.type}:${r.dataset.coins}`).join(' '));
        // Listed as they are acked (two new ones fill a page: the list then starts over from it).
        await h.waitFor('the two Roses on top of the transactions', async () =>
            (await types()).startsWith('gift:-1 gift:-1'), T);
        const all = 'gift:-1 gift:-1 gift:-30 recharge:5000';
        await page.reload();
        await page.waitForSelector('#tx-more:not(.hidden)', {timeout: T * h.SLOW});
        assert.equal(await types(), 'gift:-1 gift:-1', 'the first page holds two');
        for (let i = 0; i < 3 && (await types()) !== all; i++) {
            await page.click('#tx-more');
            await page.waitForFunction(() => !document.querySelector('#tx-more').disabled, null, {timeout: T * h.SLOW});
        }
        assert.equal(await types(), all);
        await page.waitForSelector('#spent-today[data-value="32"]', {timeout: T * h.SLOW});
        await h.screenshot(page, 'demo-account');
        assertNoPageErrors(page);
    } finally {
        await page.context().close();
    }
});

test('the demo page sends a gift and shows the new balance', {timeout: 90000}, async () => {
    const room = await freshRoom('demo');
    await h.recharge(giftd, 'nora', 5000);
    const page = await h.newPage(browser, {width: 1280, height: 900});
    const tok = h.token('nora', 'viewer', {name: 'Nora'});
    await page.goto(`${giftd.base()}/demo/?room=${room}&token=${tok}`);
    const bal = page.locator('#balance');
    await page.waitForSelector('#balance[data-value="5000"]', {timeout: T * h.SLOW});
    const doughnut = page.locator('button.gift[data-gift="doughnut"]');
    await page.waitForSelector('button.gift[data-gift="doughnut"]:not([disabled])', {timeout: T * h.SLOW});
    assert.equal(await page.locator('button.gift[data-gift="interstellar"]').isDisabled(), true,
        'a 10000-coin gift is greyed with 5000 coins');
    await doughnut.click();
    await page.waitForSelector('#balance[data-value="4970"]', {timeout: T * h.SLOW});
    assert.match((await bal.textContent()).replace(/\D/g, ''), /^4970$/);
    await page.waitForSelector('#sends .entry.ack', {timeout: T * h.SLOW});
    await page.waitForSelector('#events .entry[data-type="gift"]', {timeout: T * h.SLOW});
    assert.equal(await h.balance(giftd, 'nora'), 4970);
    // The same id again is answered duplicate and charged once.
    await page.click('#resend');
    await page.waitForSelector('#sends .entry.ack[data-duplicate="true"]', {timeout: T * h.SLOW});
    assert.equal(await h.balance(giftd, 'nora'), 4970);
    assert.equal(await bal.getAttribute('data-value'), '4970');
    // The buttons follow the count: 99 Roses (99) are affordable, 99 Galaxies are not.
    await page.fill('#count', '99');
    await page.waitForSelector('button.gift[data-gift="galaxy"][disabled]', {timeout: T * h.SLOW});
    assert.equal(await page.locator('button.gift[data-gift="rose"]').isDisabled(), false);
    // A refusal is shown with its code.
    await page.evaluate(() => window.giftDemo.send('no_such_gift', 1));
    await page.waitForSelector('#sends .entry.error[data-code="unknown_gift"]', {timeout: T * h.SLOW});
    await page.fill('#count', '1');
    await h.screenshot(page, 'demo');
    assertNoPageErrors(page);
    await page.context().close();
});

test('the overlay, its giftd node killed and restarted, resumes and shows the gift sent meanwhile through another node', {timeout: 180000}, async () => {
    // Two more nodes on the same Redis, one process each, so that SIGKILL stops the server itself.
    const a = await new h.Giftd(redis.url(), ['--workers=1', '--rooms.presence_interval_ms=200'], 'giftd-a').start();
    const b = await new h.Giftd(redis.url(), ['--workers=1', '--rooms.presence_interval_ms=200'], 'giftd-b').start();
    const room = await freshRoom('killed');
    await h.recharge(giftd, 'rafa', 5000);
    const page = await openOverlay(room, '', a);
    // The same overlay with a 1 ms threshold: every replayed alert is too old to show.
    const strict = await openOverlay(room, '&recent_ms=1', a);
    let rafa = null;
    try {
        await a.kill();
        await page.waitForFunction(() => window.giftOverlay.state() !== 'live', null, {timeout: T * h.SLOW});
        await strict.waitForFunction(() => window.giftOverlay.state() !== 'live', null, {timeout: T * h.SLOW});
        rafa = await h.Viewer.connect(b, 'rafa', 'Rafa', room);
        const ack = await rafa.gift('galaxy');
        await a.start(); // the same port
        await waitState(page, 'live');
        await page.waitForSelector('.alert[data-gift="galaxy"][data-from="rafa"]', {state: 'attached', timeout: T * h.SLOW});
        const shown = (await alerts(page)).filter((x) => x.gift === 'galaxy');
        assert.equal(shown.length, 1);
        assert.deepEqual([shown[0].id, shown[0].seq, shown[0].replay], [ack.id, ack.seq, true],
            'the alert is the missed event, replayed after the resume');
        assert.equal(await page.evaluate(() => window.giftOverlay.stats.resumes), 1);
        assert.equal(await page.evaluate(() => window.giftOverlay.stats.reloads), 0);
        // The strict overlay got it too (it resumed) but, older than 1 ms, it only counted it.
        await waitState(strict, 'live');
        await strict.waitForFunction(() => window.giftOverlay.stats.quiet === 1, null, {timeout: T * h.SLOW});
        assert.deepEqual(await alerts(strict), [], 'no alert for an old replayed gift');
        assert.equal(await strict.evaluate(() => window.giftOverlay.queueLength()), 0);
        await h.screenshot(page, 'overlay-resumed');
        assertNoPageErrors(page);
        assertNoPageErrors(strict);
    } finally {
        if (rafa) {
            rafa.close();
        }
        await page.context().close();
        await strict.context().close();
        const codes = [await a.stop(), await b.stop()];
        a.cleanup();
        b.cleanup();
        assert.deepEqual(codes, [0, 0], 'both nodes exit 0 on SIGTERM');
    }
});

test('overlay controls over HTTP: skip ends the alert on screen, pause holds the queue, replay shows an old alert again', {timeout: 120000}, async () => {
    const room = await freshRoom('controls');
    await h.recharge(giftd, 'cleo', 100000);
    const page = await openOverlay(room);
    const cleo = await h.Viewer.connect(giftd, 'cleo', 'Cleo', room);
    const creator = h.token(`${room}_creator`, 'viewer', {name: 'Creator'});
    const control = (body, bearer) => h.api(giftd, 'POST', `/v1/rooms/${room}/overlay`, body, bearer);
    try {
        // A legendary alert stays about 10 s; skip ends it at once.
        const lion = await cleo.gift('lion');
        await page.waitForSelector('.alert[data-gift="lion"][data-phase="show"]', {timeout: T * h.SLOW});
        await control({action: 'skip'}, creator); // the room's creator may
        await page.waitForSelector('.alert[data-gift="lion"]', {state: 'detached', timeout: T * h.SLOW});
        let rec = (await alerts(page)).find((x) => x.gift === 'lion');
        assert.equal(rec.endedBy, 'skip');
        assert.ok(rec.endedAt - rec.at < 9500, `ended ${rec.endedAt - rec.at} ms after it showed, before its time`);
        // Paused, a new gift waits in the queue; resumed, it shows.
        await control({action: 'pause'}); // and so may the service
        await page.waitForFunction(() => window.giftOverlay.paused(), null, {timeout: T * h.SLOW});
        const gifts = await page.evaluate(() => window.giftOverlay.stats.gifts);
        await cleo.gift('fireworks');
        await page.waitForFunction((n) => window.giftOverlay.stats.gifts > n, gifts, {timeout: T * h.SLOW});
        assert.equal(await page.evaluate(() => window.giftOverlay.queueLength()), 1, 'the alert is queued');
        assert.equal(await page.locator('.alert[data-gift="fireworks"]').count(), 0, 'and not shown while paused');
        await control({action: 'resume'});
        await page.waitForSelector('.alert[data-gift="fireworks"][data-phase="show"]', {timeout: T * h.SLOW});
        await control({action: 'skip'});
        await page.waitForSelector('.alert[data-gift="fireworks"]', {state: 'detached', timeout: T * h.SLOW});
        // Replay the skipped lion by its seq: it shows again, marked as replayed.
        await control({action: 'replay', seq: lion.seq}, creator);
        await page.waitForSelector('.alert[data-gift="lion"][data-phase="show"]', {timeout: T * h.SLOW});
        const lions = (await alerts(page)).filter((x) => x.gift === 'lion');
        assert.equal(lions.length, 2);
        assert.deepEqual([lions[1].seq, lions[1].id, lions[1].replayed, lions[1].name], [lion.seq, lion.id, true, 'Cleo']);
        await h.screenshot(page, 'overlay-replayed');
        // A seq the room does not keep is 404; a viewer who is not the creator may not.
        await assert.rejects(control({action: 'replay', seq: lion.seq + 1000}), /: 404 /);
        await assert.rejects(control({action: 'skip'}, h.token('cleo', 'viewer', {name: 'Cleo'})), /: 403 /);
        assert.equal(await page.evaluate(() => window.giftOverlay.stats.controls), 5);
        // Controls go to overlay connections only: Cleo, a viewer of the room, got none of them
        // before a gift sent after the last one.
        const marker = await cleo.gift('rose');
        await cleo.next((e) => e.type === 'gift' && e.id === marker.id, T);
        assert.deepEqual(cleo.events.filter((e) => e.type === 'overlay'), []);
        assertNoPageErrors(page);
    } finally {
        cleo.close();
        await page.context().close();
    }
});

test('delay_ms holds alerts back: not shown before the delay, shown after it', {timeout: 90000}, async () => {
    const room = await freshRoom('delay');
    await h.recharge(giftd, 'dina', 5000);
    const DELAY = 2000;
    const page = await openOverlay(room, `&delay_ms=${DELAY}`);
    const dina = await h.Viewer.connect(giftd, 'dina', 'Dina', room);
    try {
        await dina.gift('confetti');
        // The gift has reached the page, which holds it.
        await page.waitForFunction(() => window.giftOverlay.held().includes('gift'), null, {timeout: T * h.SLOW});
        assert.equal(await page.locator('.alert').count(), 0, 'no alert while held');
        assert.equal(await page.evaluate(() => window.giftOverlay.stats.gifts), 0, 'nor handled');
        // The leaderboard update the gift brought (200 ms later) is held as well: no row for Dina yet.
        await page.waitForFunction(() => window.giftOverlay.held().includes('leaderboard'), null, {timeout: T * h.SLOW});
        const now = await page.evaluate(() => ({held: window.giftOverlay.held(),
            row: document.querySelectorAll('#leaderboard li[data-id="dina"]').length,
            alerts: document.querySelectorAll('.alert').length}));
        assert.ok(now.held.includes('gift') && now.held.includes('leaderboard'), JSON.stringify(now.held));
        assert.deepEqual([now.row, now.alerts], [0, 0], 'nothing of the gift shows yet');
        await page.waitForSelector('.alert[data-gift="confetti"][data-from="dina"]', {timeout: T * h.SLOW});
        const [rec] = await alerts(page);
        assert.ok(rec.at - rec.receivedAt >= DELAY, `shown ${rec.at - rec.receivedAt} ms after it arrived`);
        await page.waitForSelector('#leaderboard li[data-id="dina"]', {state: 'attached', timeout: T * h.SLOW});
        assertNoPageErrors(page);
    } finally {
        dina.close();
        await page.context().close();
    }
});

test('giftd serves the client as an ES module: <script type="module"> imports giftd-client.mjs', {timeout: 60000}, async () => {
    const page = await h.newPage(browser);
    try {
        const r = await fetch(`${giftd.base()}/overlay/giftd-client.mjs`);
        assert.equal(r.status, 200);
        assert.match(r.headers.get('content-type'), /^text\/javascript/);
        await page.goto(`${giftd.base()}/overlay/?preview=1&mute=1`);
        await page.addScriptTag({type: 'module', content:
            "import GiftdClient, {GiftdClient as Named} from '/overlay/giftd-client.mjs';\n" +
            'window.moduleClient = {same: GiftdClient === Named && GiftdClient === window.GiftdClient,\n' +
            "    url: new GiftdClient({url: 'ws://example.invalid'}).url};"});
        await page.waitForFunction(() => window.moduleClient, null, {timeout: T * h.SLOW});
        assert.deepEqual(await page.evaluate(() => window.moduleClient),
            {same: true, url: 'ws://example.invalid/ws'});
        assertNoPageErrors(page);
    } finally {
        await page.context().close();
    }
});
