#!/usr/bin/env bash
# bench/soak.sh: a long steady run of giftd — RSS and p99 sampled every 10 s.
# Usage: bench/soak.sh [BUILD_DIR]   (make soak = ./bench/soak.sh build)
#
# Starts its own in-memory redis-server and one giftd (--workers=1, so that one process holds
# every connection and its RSS is the whole story) on free ports, then giftload: SOAK_VIEWERS
# viewers (default 15000) over SOAK_ROOMS rooms (default 10), SOAK_SENDERS senders (default
# 50) sending SOAK_RATE gifts/s (default 50) for SOAK_SECONDS (default 600). Every 10 s it
# records giftd's RSS next to giftload's window line (sent, acked, deliveries/s, p50/p99/max
# send->deliver of that window, connections closed early so far). Writes
# BUILD_DIR/bench/soak-<date>/{samples.csv,windows.jsonl,giftload.json,giftd.log} and prints
# a summary: RSS after the warm-up (SOAK_WARMUP_S, default 60) and at the end, p99 per window,
# connections lost. Stops everything it started, by PID.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=$(cd "${1:-build}" 2>/dev/null && pwd) || { echo "soak: no build directory ${1:-build}" >&2; exit 2; }
VIEWERS=${SOAK_VIEWERS:-15000}
ROOMS=${SOAK_ROOMS:-10}
SENDERS=${SOAK_SENDERS:-50}
RATE=${SOAK_RATE:-50}
SECONDS_=${SOAK_SECONDS:-600}
WARMUP=${SOAK_WARMUP_S:-60}
SECRET=bench-secret-0123456789abcdef
OUT=$BUILD/bench/soak-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
for c in redis-server curl awk; do
    command -v "$c" >/dev/null 2>&1 || { echo "soak: $c not found" >&2; exit 2; }
done

free_port() { # a TCP port nobody listens on
    local p
    while :; do
        p=$((20000 + RANDOM % 20000))
        ss -Htln "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return; }
    done
}
RPORT=$(free_port)
GPORT=$(free_port)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
}
trap cleanup EXIT

redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
    --logfile "$OUT/redis.log" >/dev/null 2>&1 &
PIDS+=($!)
"$BUILD/giftd" --redis.url="redis://127.0.0.1:$RPORT/0" --auth.secret=$SECRET \
    --listen=127.0.0.1:"$GPORT" --gifts.catalog="$ROOT/config/catalog.json" --workers=1 \
    --overlay.dir="$ROOT/overlay" >"$OUT/giftd.log" 2>&1 &
GPID=$!
PIDS+=($GPID)
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$GPORT/healthz" >/dev/null && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$GPORT/healthz" >/dev/null || { echo "soak: giftd did not start" >&2; exit 1; }

echo "soak: $VIEWERS viewers, $ROOMS rooms, $SENDERS senders, $RATE gifts/s, $SECONDS_ s -> $OUT" >&2
"$BUILD/giftload" --url "ws://127.0.0.1:$GPORT" --setup --secret $SECRET \
    --viewers "$VIEWERS" --rooms "$ROOMS" --senders "$SENDERS" --rate "$RATE" \
    --duration "$SECONDS_" --drain 5 --connect-rate 3000 --source-addrs 127.0.0.1-127.0.0.20 \
    --windows "$OUT/windows.jsonl" --window 10 --json "$OUT/giftload.json" --quiet \
    >"$OUT/giftload.out" 2>&1 &
LPID=$!
PIDS+=($LPID)
echo "t_s,rss_kib" >"$OUT/samples.csv"
t0=$(date +%s)
while kill -0 "$LPID" 2>/dev/null; do
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$GPID/status" 2>/dev/null)
    echo "$(( $(date +%s) - t0 )),${rss:-0}" >>"$OUT/samples.csv"
    sleep 10
done
wait "$LPID"
rc=$?

# Summary: RSS after the warm-up and at the end; the windows' p99; connections lost.
awk -F, -v w="$WARMUP" 'NR > 1 && $2 > 0 {
        if ($1 >= w && !a) { a = $2; at = $1 }
        last = $2; lt = $1; if ($2 > max) max = $2 }
    END { if (!a) { a = last; at = lt }
          printf "RSS: %.1f MiB at %d s (after warm-up), %.1f MiB at %d s (end), max %.1f MiB; " \
                 "growth after warm-up %+.1f MiB\n", a / 1024, at, last / 1024, lt, max / 1024, (last - a) / 1024 }' \
    "$OUT/samples.csv"
awk -F'[:,}]' '{
        for (i = 1; i <= NF; i++) { if ($i ~ /"p99_ms"/) p = $(i + 1); if ($i ~ /"closed_early"/) c = $(i + 1);
                                    if ($i ~ /"deliveries_per_sec"/) d = $(i + 1) }
        n++; s += p; if (p > mx) mx = p; if (n == 1 || p < mn) mn = p; if (n <= 3) f += p; last3[n % 3] = p
        dl += d }
    END { if (!n) { print "no windows (giftload failed?)"; exit }
          printf "p99 per 10 s window: min %.1f ms, mean %.1f ms, max %.1f ms; first three %.1f ms, last three %.1f ms; " \
                 "%.0f deliveries/s; connections closed early: %d\n", mn, s / n, mx, f / (n < 3 ? n : 3),
                 (last3[0] + last3[1] + last3[2]) / (n < 3 ? n : 3), dl / n, c }' "$OUT/windows.jsonl"
tail -n 4 "$OUT/giftload.out"
exit $rc
