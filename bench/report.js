#!/usr/bin/env node
// bench/report.js: the JSON side of bench/run.sh (node is there anyway: the peer needs it).
//   report.js step FILE PLANNED_GIFTS P99_LIMIT_MS  -> shell assignments J_* for one giftload report
//   report.js debits FILE                           -> J_ACKED, J_REFUSED, J_A99 … for one debits run
//   report.js table RESULTS_TSV                     -> the markdown table
//   report.js field FILE KEY                        -> one top-level number of a report, rounded
'use strict';
const fs = require('fs');

const sh = (s) => "'" + String(s).replace(/'/g, "'\\''") + "'";
const sum = (o) => Object.values(o || {}).reduce((a, b) => a + b, 0);
const codes = (o) =>
  Object.entries(o || {})
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
const out = (vars) =>
  console.log(
    Object.entries(vars)
      .map(([k, v]) => `${k}=${sh(v)}`)
      .join(' '),
  );

function step(file, planned, limit) {
  const j = JSON.parse(fs.readFileSync(file, 'utf8'));
  const p99 = j.latency_ms && j.latency_ms.p99 != null ? j.latency_ms.p99 : null;
  const pct = j.expected_deliveries > 0 ? (100 * j.deliveries) / j.expected_deliveries : 0;
  const why = [];
  if (j.connect_failures > 0) why.push(`${j.connect_failures} joins failed (${codes(j.connect_errors)})`);
  if (j.gifts_sent < 0.99 * planned) why.push(`sent ${j.gifts_sent} of ${planned}`);
  if (j.gifts_rejected_total > 0) why.push(`${j.gifts_rejected_total} refused (${codes(j.gifts_rejected)})`);
  if (j.gifts_unanswered > 0) why.push(`${j.gifts_unanswered} unanswered`);
  if (sum(j.closed_early) > 0) why.push(`${sum(j.closed_early)} closed (${codes(j.closed_early)})`);
  if (j.expected_deliveries === 0) why.push('nothing delivered');
  else if (pct < 99) why.push(`${pct.toFixed(1)}% delivered`);
  if (p99 == null) why.push('no latency samples');
  else if (p99 > limit) why.push(`p99 ${p99.toFixed(0)} ms`);
  if (j.interrupted) why.push('interrupted');
  const secs = j.deliveries_per_sec > 0 ? j.deliveries / j.deliveries_per_sec : 0;
  out({
    J_OK: why.length ? 0 : 1,
    J_WHY: why.length ? why.join(', ') : 'ok',
    J_DPS: Math.round(j.deliveries_per_sec || 0),
    J_P99: p99 == null ? '' : p99.toFixed(1),
    J_PCT: pct.toFixed(2),
    J_FPS: secs > 0 ? Math.round(j.frames_received / secs) : 0,
    J_SENT: j.gifts_sent,
    J_ACKED: j.gifts_acked,
  });
}

// One run of the debits scenario (gift cost or overload): counts, answer latency (send -> the
// sender's ack or error, every send), delivery latency, accepted gifts/s up to the last answer.
function debits(file) {
  const j = JSON.parse(fs.readFileSync(file, 'utf8'));
  const ms = (o, k) => (o && o[k] != null ? Number(o[k]).toFixed(1) : '');
  out({
    J_SENT: j.gifts_sent || 0,
    J_ACKED: j.gifts_acked || 0,
    J_REFUSED: j.gifts_rejected_total || 0,
    J_CODES: codes(j.gifts_rejected),
    J_UNANSWERED: j.gifts_unanswered || 0,
    J_APS_LAST: Math.round(j.acked_per_sec_to_last_answer || 0),
    J_A50: ms(j.answer_latency_ms, 'p50'),
    J_A99: ms(j.answer_latency_ms, 'p99'),
    J_AMAX: ms(j.answer_latency_ms, 'max'),
    J_D99: ms(j.latency_ms, 'p99'),
  });
}

// ---- table ----
function table(file) {
  const R = {};
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const t = line.indexOf('\t');
    if (t > 0) R[line.slice(0, t)] = line.slice(t + 1);
  }
  const cols = [
    ['w1', 'giftd workers=1'],
    ['w2', 'giftd workers=2'],
    ['peer', 'node-ws peer (2 workers)'],
  ];
  const num = (v) => v !== undefined && v !== '' && !isNaN(Number(v));
  const fmt = (v, d = 0) =>
    Number(v).toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
  const get = (s, k) => R[`${s}.${k}`];
  // A cell: the server did not run -> n/a; the figure is missing -> failed.
  const cell = (s, k, render) => {
    if (R[`${s}.na`] !== undefined) return 'n/a';
    const v = get(s, k);
    if (v === undefined || v === '') return 'failed';
    if (!num(v)) return v;
    return render ? render(Number(v), s) : fmt(v);
  };
  const ratio = (s, k, d = 1) => {
    const a = get(s, k),
      b = get('peer', k);
    if (!num(a) || !num(b) || Number(b) === 0 || R[`${s}.na`] !== undefined) return '—';
    return `${fmt(Number(a) / Number(b), d)}×`;
  };
  const rows = [];
  const row = (scen, fig, k, render, withRatio = true, peerCell) =>
    rows.push([
      scen,
      fig,
      cell('w1', k, render),
      cell('w2', k, render),
      peerCell !== undefined ? peerCell : cell('peer', k, render),
      withRatio ? ratio('w1', k) : '—',
      withRatio ? ratio('w2', k) : '—',
    ]);
  const ms = (v) => `${fmt(v, v < 10 ? 1 : 0)} ms`;

  row('fan-out, 1 room × 2,000 viewers', 'highest sustained deliveries/s (≥ 99 % delivered, p99 ≤ 50 ms)',
    'fan2k.best_dps', (v, s) => `**${fmt(v)}** (${get(s, 'fan2k.best_rate')} gifts/s, p99 ${ms(Number(get(s, 'fan2k.best_p99')))})`);
  row('', 'highest deliveries/s with ≥ 99 % delivered and p99 ≤ 250 ms (rate doubling)', 'fan2k.cap_dps',
    (v, s) => `**${fmt(v)}** (${get(s, 'fan2k.cap_rate')} gifts/s, p99 ${ms(Number(get(s, 'fan2k.cap_p99')))})`);
  row('', 'overloaded: deliveries/s at the first step past that', 'fan2k.over_dps',
    (v, s) => `${fmt(v)} (${get(s, 'fan2k.over_rate')} gifts/s, p99 ${ms(Number(get(s, 'fan2k.over_p99')))}, ${fmt(Number(get(s, 'fan2k.over_pct')), 1)} % delivered)`);
  row('', 'frames/s sent at the sustained step', 'fan2k.best_fps');
  row('', 'syscalls per delivered event (perf, sustained step again)', 'fan2k.sys_per_del', (v) => fmt(v, 3));
  row('', 'server CPU µs per delivered event (same run)', 'fan2k.cpu_us_per_del', (v) => fmt(v, 2));
  row('', 'settlement lag under that load: first gift of a row → row in the stream (max, mean)',
    'settle.lag_max_ms', (v, s) => `${ms(v)}, ${ms(Number(get(s, 'settle.lag_mean_ms')))} (${fmt(Number(get(s, 'settle.rows')))} rows)`, false, '—');
  row('fan-out, 1 room × 10,000 viewers', 'p99 send→deliver at 1 gift/s', 'fan10k.lo_p99',
    (v, s) => `${ms(v)} (${fmt(Number(get(s, 'fan10k.lo_pct')), 1)} %)`);
  row('', 'storm, 120 gifts/s for 3 s: deliveries/s', 'fan10k.storm_dps');
  row('', 'storm: p99, delivered', 'fan10k.storm_p99',
    (v, s) => `${ms(v)}, ${fmt(Number(get(s, 'fan10k.storm_pct')), 1)} %`);
  row('many rooms: 1,000 × 10 viewers, 1 gift/s each', 'deliveries/s', 'rooms.dps',
    (v, s) => `${fmt(v)} (${fmt(Number(get(s, 'rooms.pct')), 1)} %)`);
  row('', 'p99 send→deliver', 'rooms.p99', (v) => ms(v));
  const msOf = (s, k) => (num(get(s, k)) ? ms(Number(get(s, k))) : '?');
  const counts = (s, p) => {
    const n = (k) => fmt(Number(get(s, `debits.${p}_${k}`) || 0));
    const c = get(s, `debits.${p}_refused_codes`);
    return `${n('acked')} acked of ${n('sent')}, ${n('refused')} refused${c ? ` (${c})` : ''}, ${n('unanswered')} unanswered`;
  };
  row('gift cost: 200 rooms × 1 viewer, 200 senders, 4,000 gifts/s', 'Redis CPU µs per accepted gift', 'debits.cost_redis_us',
    (v) => `**${fmt(v, 1)}**`);
  row('', 'EVAL + EVALSHA calls per accepted gift', 'debits.cost_evals', (v) => fmt(v, 2));
  row('', 'server CPU µs per accepted gift (process and its workers, /proc utime + stime)', 'debits.cost_server_us',
    (v) => fmt(v, 1));
  row('', 'answer p99 (send → ack or error)', 'debits.cost_ans_p99', (v) => ms(v));
  row('', 'delivery p99 (send → deliver)', 'debits.cost_del_p99', (v) => ms(v));
  row('', 'gifts acked, refused (by code), unanswered', 'debits.cost_acked', (v, s) => counts(s, 'cost'), false);
  row('overload: same shape, 24,000 gifts/s offered, drain ≤ 10 s', 'accepted gifts/s up to the last answer',
    'debits.over_aps', (v) => `**${fmt(v)}**`);
  row('', 'answer p99 (p50, max)', 'debits.over_ans_p99',
    (v, s) => `${ms(v)} (${msOf(s, 'debits.over_ans_p50')}, ${msOf(s, 'debits.over_ans_max')})`);
  row('', 'gifts acked, refused (by code), unanswered', 'debits.over_refused', (v, s) => counts(s, 'over'), false);
  row('', 'Redis CPU µs per accepted gift', 'debits.over_redis_us', (v) => fmt(v, 1));
  row('connections: 15,000 idle viewers, 1 room', 'server RSS per viewer', 'conns.kib_per_conn',
    (v, s) => `**${fmt(v, 2)} KiB** (${fmt(Number(get(s, 'conns.before_kib')) / 1024, 1)} → ${fmt(Number(get(s, 'conns.after_kib')) / 1024, 1)} MiB)`);

  const o = [];
  o.push(`giftd vs the node-ws peer — ${R['meta.date'] || '?'}, commit ${R['meta.commit'] || '?'}; ` +
    `${R['meta.cores'] || '?'} cores (${R['meta.cpu'] || '?'}), ${R['meta.mem'] || '?'}, ` +
    `load average at start ${R['meta.load'] || '?'}; ${R['meta.elapsed_s'] || '?'} s.`);
  o.push('');
  o.push('| scenario | figure | giftd workers=1 | giftd workers=2 | node-ws peer (2 workers) | w=1 / peer | w=2 / peer |');
  o.push('|---|---|---|---|---|---|---|');
  for (const r of rows) o.push(`| ${r.join(' | ')} |`);
  o.push('');
  o.push('Ratios are giftd / peer (for p99, latencies, RSS, µs per gift and calls per gift lower is better). "failed": the scenario did not produce the figure (see the raw reports).');
  const notes = [];
  for (const [s, name] of cols) {
    if (R[`${s}.na`] !== undefined) notes.push(`${name}: not run (${R[`${s}.na`]}).`);
    if (R[`${s}.restarted`]) notes.push(`${name}: was restarted during the run (it stopped answering).`);
    if (R[`${s}.fan2k.steps`]) notes.push(`${name}, 2,000-viewer steps (gifts/s:outcome): ${R[`${s}.fan2k.steps`]}.`);
    if (R[`${s}.fan10k.storm_why`] && R[`${s}.fan10k.storm_why`] !== 'ok')
      notes.push(`${name}, storm: ${R[`${s}.fan10k.storm_why`]}.`);
    if (R[`${s}.rooms.why`] && R[`${s}.rooms.why`] !== 'ok') notes.push(`${name}, many rooms: ${R[`${s}.rooms.why`]}.`);
  }
  if (notes.length) {
    o.push('');
    for (const n of notes) o.push(`- ${n}`);
  }
  console.log(o.join('\n'));
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'step') step(args[0], Number(args[1]), Number(args[2]));
else if (mode === 'debits') debits(args[0]);
else if (mode === 'table') table(args[0]);
else if (mode === 'field') {
  try {
    const v = JSON.parse(fs.readFileSync(args[0], 'utf8'))[args[1]];
    console.log(typeof v === 'number' ? Math.round(v) : v === undefined ? '' : String(v));
  } catch {
    console.log('');
  }
}
else {
  console.error('usage: report.js step FILE PLANNED P99_LIMIT | debits FILE | table RESULTS | field FILE KEY');
  process.exit(2);
}
