#!/usr/bin/env bash
# bench/script_cost.sh: what gift.lua costs Redis per charged gift, in instructions (valgrind's
# callgrind counts them), on batches shaped like those of bench/run.sh's debits scenario at
# 4,000 gifts/s (bench/script_cost.js), with the flusher's settle_begin.lua of each partition
# once at the end (it folds the pending earnings the batches logged). Instructions do not depend on what else the machine is
# doing, so two versions of the script can be compared on a noisy machine where Redis CPU time
# (INFO cpu, bench/run.sh) moves by a third from one run to the next. It counts the script and
# the EVALSHA around it only: no networking of a real node, no settlement, presence or combo
# sweeps (bench/run.sh measures all of that, in CPU time).
# Usage: bench/script_cost.sh [SCRIPTS_DIR]   (make bench-script; default ledger_client/scripts)
# Environment: SCRIPT_BATCHES (default 150), SCRIPT_SENDS (sends per batch, default 18: what a
# node sends per call at 4,000 gifts/s), SCRIPT_COST_KEEP (a directory: callgrind's output is
# copied there, for callgrind_annotate).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SCRIPTS=${1:-$ROOT/ledger_client/scripts}
BATCHES=${SCRIPT_BATCHES:-150}
SENDS=${SCRIPT_SENDS:-18}
if ! command -v valgrind >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    # Only this benchmark uses it: make setup does not install it.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi
for c in valgrind callgrind_control redis-server redis-cli node awk; do
    command -v "$c" >/dev/null 2>&1 || { echo "script_cost: $c not found (apt-get install valgrind)" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/giftd-script-cost.XXXXXX)
RPID=
cleanup() {
    if [ -n "$RPID" ]; then
        kill "$RPID" 2>/dev/null || true
        wait "$RPID" 2>/dev/null || true
    fi
    [ -n "${SCRIPT_COST_KEEP:-}" ] && cp "$WORK"/cg.out* "$SCRIPT_COST_KEEP"/ 2>/dev/null; rm -rf "$WORK"
}
trap cleanup EXIT

# The scripts with their --#include lines replaced, as ledger_client/embed_scripts.cmake does.
for s in gift settle_begin; do
    awk -v lib="$SCRIPTS/lib" '/^--#include / { f = lib "/" $2 ".lua"; while ((getline l < f) > 0) print l; close(f); next } { print }' \
        "$SCRIPTS/$s.lua" >"$WORK/$s.lua"
done

PORT=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
    redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
RPID=$!
for _ in $(seq 150); do
    redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
    sleep 0.2
done
redis-cli -p "$PORT" ping >/dev/null

node "$HERE/script_cost.js" "$PORT" "$WORK/gift.lua" "$BATCHES" "$SENDS" setup "$WORK/settle_begin.lua" >/dev/null
callgrind_control -z "$RPID" >/dev/null 2>&1
charged=$(node "$HERE/script_cost.js" "$PORT" "$WORK/gift.lua" "$BATCHES" "$SENDS" run "$WORK/settle_begin.lua")
callgrind_control -d "$RPID" >/dev/null 2>&1
sleep 0.5
ir=$(cat "$WORK"/cg.out* | awk '/^summary:/ { s = $2 } END { print s }')
if [ -z "$ir" ] || [ "$charged" -le 0 ]; then
    echo "script_cost: no measurement (instructions '$ir', charged '$charged')" >&2
    exit 1
fi
echo "gift.lua + settle_begin.lua ($SCRIPTS): $((ir / charged)) Redis instructions per charged gift" \
    "($charged gifts in batches of $SENDS)"
