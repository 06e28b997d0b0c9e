#!/usr/bin/env node
// bench/script_cost.js: the client side of bench/script_cost.sh. Sends gift.lua the batches a
// giftd node sends it at 4,000 gifts/s in the debits scenario of bench/run.sh (200 senders, one
// per room, the round-robin order of giftload, a streakable 1-coin gift, so combos go on), and
// nothing else, to a redis-server given by port.
//   script_cost.js PORT SCRIPT_FILE BATCHES SENDS_PER_BATCH PHASE SETTLE_FILE
// PHASE "setup": load the script, give the senders coins, run BATCHES batches (the lists,
// combos and leaderboards fill up as in a run that has been going for a while) and settle;
// PHASE "run": BATCHES more batches, every send new, then one settle_begin.lua per partition
// the senders are in (SETTLE_FILE; what the flusher does once a second: it folds the log of
// pending earnings the batches appended to). Prints the sends charged.
// The ARGV layout is gift.lua's (its header comment; ledger_client/send.c builds the same).
'use strict';
const net = require('net');
const crypto = require('crypto');
const fs = require('fs');

const [port, file, nbatches, per, phase, settleFile] = process.argv.slice(2);
const SENDERS = 200;
const PARTITIONS = 1024;
const PREFIX = 'sc';

function resp(args) {
  const parts = [`*${args.length}\r\n`];
  for (const a of args) {
    const s = String(a);
    parts.push(`$${Buffer.byteLength(s)}\r\n${s}\r\n`);
  }
  return parts.join('');
}

// A reader of RESP replies: resolves one promise per reply, in order.
function client(portNum) {
  const sock = net.createConnection({ port: portNum, host: '127.0.0.1' });
  let buf = Buffer.alloc(0);
  const waiting = [];
  function parse(pos) {
    const nl = buf.indexOf('\r\n', pos);
    if (nl < 0) return null;
    const t = String.fromCharCode(buf[pos]);
    const line = buf.toString('utf8', pos + 1, nl);
    if (t === '+' || t === ':') return { v: t === ':' ? Number(line) : line, end: nl + 2 };
    if (t === '-') return { v: new Error(line), end: nl + 2 };
    if (t === '$') {
      const n = Number(line);
      if (n < 0) return { v: null, end: nl + 2 };
      if (buf.length < nl + 2 + n + 2) return null;
      return { v: buf.toString('utf8', nl + 2, nl + 2 + n), end: nl + 2 + n + 2 };
    }
    if (t === '*') {
      const n = Number(line);
      const out = [];
      let p = nl + 2;
      for (let i = 0; i < n; i++) {
        const r = parse(p);
        if (!r) return null;
        out.push(r.v);
        p = r.end;
      }
      return { v: out, end: p };
    }
    throw new Error('bad reply');
  }
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      const r = parse(0);
      if (!r) break;
      buf = buf.subarray(r.end);
      waiting.shift()(r.v);
    }
  });
  return {
    call: (...args) =>
      new Promise((resolve, reject) => {
        waiting.push((v) => (v instanceof Error ? reject(v) : resolve(v)));
        sock.write(resp(args));
      }),
    end: () => sock.end(),
  };
}

// A partition per sender, spread like giftd's hash would (which one does not matter here).
const partNo = (i) => (i * 389) % PARTITIONS;
const part = (i) => `giftd:{p${partNo(i)}}:`;
const sub = (i) => `${PREFIX}-s${i}`;

async function main() {
  const c = client(Number(port));
  const sha = await c.call('SCRIPT', 'LOAD', fs.readFileSync(file, 'utf8'));
  const stateKey = `${PREFIX}:bench-cursor`;
  let cursor = 0;
  let serial = 0;
  if (phase === 'setup') {
    for (let i = 0; i < SENDERS; i++) await c.call('SET', `${part(i)}bal:${sub(i)}`, 1e12);
  } else {
    [cursor, serial] = JSON.parse(await c.call('GET', stateKey));
  }
  const day = new Date().toISOString().slice(0, 10).replace(/-/g, '');
  let charged = 0;
  for (let b = 0; b < Number(nbatches); b++) {
    const now = String(Date.now());
    const args = ['EVALSHA', sha, 0, now, 86400, 3000, 1000, day, 1000, 7776000000, 86400000];
    for (let k = 0; k < Number(per); k++) {
      const i = cursor++ % SENDERS;
      const id = `s${i}-${serial++}-${crypto.randomBytes(3).toString('hex')}`;
      const name = `sender ${i}`;
      args.push(part(i), sub(i), id, 'rose:1', 1, `${PREFIX}-c${i}`, `${PREFIX}-r${i}`, 1, 1,
        JSON.stringify(name),
        `"from":{"id":"${sub(i)}","name":${JSON.stringify(name)}},"anonymous":false,` +
          '"gift":{"id":"rose","name":"Rose","coins":1,"diamonds":1,"tier":"small",' +
          '"animation":"rose"}',
        'rose|1|0');
    }
    const out = await c.call(...args);
    for (let k = 0; k < out.length; k += 3) if (out[k] === 1) charged++;
  }
  await c.call('SET', stateKey, JSON.stringify([cursor, serial]));
  {
    // Both phases end with a settlement pass, so that the run's starts from nothing pending
    // (setup's batch is then dropped, as if it had been settled).
    // settle_begin's keys: pending, settling, settling_batch, batchseq, flushlease, and (since
    // the log) pendlog.
    const text = fs.readFileSync(settleFile, 'utf8');
    const suffixes = ['pending', 'settling', 'settling_batch', 'batchseq', 'flushlease'];
    if (/KEYS\[6\]/.test(text)) suffixes.push('pendlog');
    const settle = await c.call('SCRIPT', 'LOAD', text);
    for (let i = 0; i < SENDERS; i++) {
      const keys = suffixes.map((x) => part(i) + x);
      await c.call('EVALSHA', settle, keys.length, ...keys, 'bench-node', 3500, partNo(i),
        Date.now());
      if (phase === 'setup') await c.call('DEL', keys[1], keys[2]);
    }
  }
  c.end();
  console.log(charged);
}

main().catch((e) => {
  console.error(`script_cost: ${e.message}`);
  process.exit(1);
});
