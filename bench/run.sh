#!/usr/bin/env bash
# bench/run.sh: giftd next to the node-ws baseline peer, same load (giftload), same machine, one
# run. Usage: bench/run.sh [BUILD_DIR]   (make bench = ./bench/run.sh build)
#
# Starts its own redis-server per server under test (in memory: no RDB, no AOF), giftd with
# --workers=1 and --workers=2 (when giftd has workers), then the peer (WORKERS=2), each on free
# ports, one at a time; runs the scenarios of issues 4 and 5 against each; stops everything it
# started (by PID); prints a markdown table with giftd/peer ratios, and after the debits the
# instruction count of bench/script_cost.sh. Raw giftload reports, logs and
# perf output go to BUILD_DIR/bench/<date>/ (BUILD_DIR/bench/latest links to the newest run).
#
# Environment: PEER_DIR (default ../shared/peers/node-ws next to the repository),
# BENCH_SERVERS (default "w1 w2 peer"), BENCH_SCENARIOS (default "conns fanout2k fanout10k
# rooms debits"), BENCH_STEP_S (default 5).
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=${1:-build}
if ! BUILD=$(cd "$BUILD" 2>/dev/null && pwd); then
    echo "bench: no build directory ${1:-build} (run make build first)" >&2
    exit 2
fi
GIFTD=$BUILD/giftd
GIFTLOAD=$BUILD/giftload
PEER_SRC=${PEER_DIR:-$ROOT/../shared/peers/node-ws}
SERVERS=${BENCH_SERVERS:-w1 w2 peer}
SCENARIOS=${BENCH_SCENARIOS:-conns fanout2k fanout10k rooms debits}
STEP_S=${BENCH_STEP_S:-5}
SECRET=bench-secret-0123456789abcdef
SRC_ADDRS=127.0.0.1-127.0.0.20
CATALOG=$ROOT/config/catalog.json

for f in "$GIFTD" "$GIFTLOAD"; do
    [ -x "$f" ] || { echo "bench: $f missing (run make build first)" >&2; exit 2; }
done
for c in redis-server redis-cli node getconf npm curl ss awk; do
    command -v "$c" >/dev/null 2>&1 || { echo "bench: $c not found" >&2; exit 2; }
done

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$BUILD/bench/$STAMP
mkdir -p "$OUT"
ln -sfn "$STAMP" "$BUILD/bench/latest"
RES=$OUT/results.tsv
CLK_TCK=$(getconf CLK_TCK)
: >"$RES"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# put KEY VALUE: one figure for the table (KEY is <server>.<figure>).
put() { printf '%s\t%s\n' "$1" "$2" >>"$RES"; }

# ---- file descriptors ---------------------------------------------------------------------------
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
ulimit -n "$hard" 2>/dev/null || true
NOFILE=$(ulimit -n)
[ "$NOFILE" -lt 16500 ] && log "warning: ulimit -n is $NOFILE; the 15,000-viewer scenario needs ~16,000"

# ---- processes we started: stopped by PID on exit -----------------------------------------------
STARTED=""
children() { ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' '; }
stop_pid() { # PID: TERM it (and its children), KILL what is left after 5 s
    local p=$1 kids k
    [ -n "$p" ] || return 0
    kill -0 "$p" 2>/dev/null || return 0
    kids=$(children "$p")
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 1 50); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    for k in $kids; do
        kill -0 "$k" 2>/dev/null && kill -KILL "$k" 2>/dev/null
    done
    wait "$p" 2>/dev/null
    STARTED=$(printf '%s\n' $STARTED | grep -vx "$p" | tr '\n' ' ')
    return 0
}
cleanup() {
    local p
    for p in $STARTED; do stop_pid "$p"; done
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM

USED_PORTS=" "
free_port() {
    local p
    for _ in $(seq 1 500); do
        p=$((20000 + RANDOM % 12000))
        case "$USED_PORTS" in *" $p "*) continue ;; esac
        if [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ]; then
            USED_PORTS="$USED_PORTS$p "
            echo "$p"
            return 0
        fi
    done
    return 1
}

tree_pids() { echo "$1"; children "$1"; }
rss_kib() { # sum of VmRSS over PID and its children
    local s=0 p v
    for p in $(tree_pids "$1"); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null)
        s=$((s + ${v:-0}))
    done
    echo "$s"
}

# ---- servers ------------------------------------------------------------------------------------
RPORT="" RPID="" SPORT="" SPID="" SKIND="" SWORKERS=""

start_redis() { # TAG
    RPORT=$(free_port) || return 1
    redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$OUT" \
        --dbfilename "dump-$1.rdb" --logfile "$OUT/redis-$1.log" --daemonize no \
        --maxclients 10000 </dev/null >/dev/null 2>&1 &
    RPID=$!
    STARTED="$STARTED $RPID"
    for _ in $(seq 1 50); do
        redis-cli -p "$RPORT" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.1
    done
    log "redis-server on $RPORT did not start (see $OUT/redis-$1.log)"
    return 1
}

wait_healthy() { # PORT PID
    for _ in $(seq 1 100); do
        kill -0 "$2" 2>/dev/null || return 1
        curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$1/healthz" && return 0
        sleep 0.1
    done
    return 1
}

HAVE_WORKERS=0
"$GIFTD" --help 2>&1 | grep -q 'workers' && HAVE_WORKERS=1

start_giftd() { # TAG WORKERS
    SKIND=giftd SWORKERS=$2
    SPORT=$(free_port) || return 1
    local wflag=()
    [ "$HAVE_WORKERS" = 1 ] && wflag=(--workers="$2")
    "$GIFTD" --redis.url="redis://127.0.0.1:$RPORT/0" --auth.secret="$SECRET" \
        --listen="127.0.0.1:$SPORT" --gifts.catalog="$CATALOG" \
        --limits.gifts_per_sec=1000000 --limits.frames_per_sec=1000000 "${wflag[@]}" \
        </dev/null >>"$OUT/giftd-$1.log" 2>&1 &
    SPID=$!
    STARTED="$STARTED $SPID"
    wait_healthy "$SPORT" "$SPID" || { log "giftd ($1) did not come up (see $OUT/giftd-$1.log)"; return 1; }
    if [ "$2" -gt 1 ]; then # every worker up and answering
        local n
        for _ in $(seq 1 50); do
            n=$(children "$SPID" | wc -l)
            [ "$n" -ge "$2" ] && break
            sleep 0.1
        done
        [ "$n" -ge "$2" ] || { log "giftd ($1): $n of $2 workers"; return 1; }
    fi
    sleep 0.5
    return 0
}

PEER_WORK=$BUILD/bench/peer
prepare_peer() {
    mkdir -p "$PEER_WORK"
    local f
    for f in server.js package.json catalog.json; do
        [ -f "$PEER_SRC/$f" ] || { log "peer: $PEER_SRC/$f missing (set PEER_DIR)"; return 1; }
        cmp -s "$PEER_SRC/$f" "$PEER_WORK/$f" || cp "$PEER_SRC/$f" "$PEER_WORK/$f"
    done
    if [ ! -d "$PEER_WORK/node_modules/ws" ] || [ ! -d "$PEER_WORK/node_modules/ioredis" ] ||
        [ "$PEER_WORK/package.json" -nt "$PEER_WORK/node_modules" ]; then
        log "peer: npm install in $PEER_WORK"
        (cd "$PEER_WORK" && npm install --no-audit --no-fund >"$OUT/peer-npm.log" 2>&1) ||
            { log "peer: npm install failed (see $OUT/peer-npm.log)"; return 1; }
        touch "$PEER_WORK/node_modules"
    fi
}

start_peer() { # TAG
    SKIND=peer SWORKERS=2
    SPORT=$(free_port) || return 1
    (cd "$PEER_WORK" && PORT=$SPORT REDIS_URL=redis://127.0.0.1:$RPORT SECRET=$SECRET WORKERS=2 \
        CATALOG=$PEER_WORK/catalog.json exec node server.js) </dev/null >>"$OUT/peer.log" 2>&1 &
    SPID=$!
    STARTED="$STARTED $SPID"
    wait_healthy "$SPORT" "$SPID" || { log "peer did not come up (see $OUT/peer.log)"; return 1; }
    sleep 1 # both cluster workers listening
    return 0
}

start_server() { # TAG: w1 | w2 | peer (with its own Redis)
    start_redis "$1" || return 1
    case $1 in
    w1) start_giftd w1 1 ;;
    w2) start_giftd w2 2 ;;
    peer) start_peer peer ;;
    esac
}
stop_server() {
    stop_pid "$SPID"
    stop_pid "$RPID"
    SPID="" RPID=""
}
# settle: until the server holds no client connections from the last scenario (at most 20 s),
# so that one scenario's teardown does not run into the next.
settle() {
    local n
    for _ in $(seq 1 100); do
        n=$(ss -Htn state established "( sport = :$SPORT )" 2>/dev/null | wc -l)
        [ "$n" -le 2 ] && break
        sleep 0.2
    done
    sleep 1
}
ensure_server() { # TAG: restarts a server that died in the previous scenario
    if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null &&
        curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$SPORT/healthz"; then
        return 0
    fi
    log "$1: server not answering; restarting it"
    put "$1.restarted" "yes"
    stop_server
    start_server "$1"
}

# ---- giftload -----------------------------------------------------------------------------------
# gl NAME TIMEOUT_S ARGS...: one giftload run in the foreground; 0 when its JSON report exists.
gl() {
    local name=$1 t=$2
    shift 2
    rm -f "$OUT/$name.json"
    timeout -k 5 "$t" "$GIFTLOAD" --url "ws://127.0.0.1:$SPORT" --secret "$SECRET" --setup \
        --source-addrs "$SRC_ADDRS" --connect-timeout 30 --json "$OUT/$name.json" --quiet "$@" \
        </dev/null >"$OUT/$name.out" 2>"$OUT/$name.err"
    [ -s "$OUT/$name.json" ]
}
# gl_bg NAME ARGS...: giftload in the background with its progress lines in NAME.progress.
GL_PID=""
gl_bg() {
    local name=$1
    shift
    rm -f "$OUT/$name.json"
    "$GIFTLOAD" --url "ws://127.0.0.1:$SPORT" --secret "$SECRET" --setup \
        --source-addrs "$SRC_ADDRS" --connect-timeout 30 --json "$OUT/$name.json" "$@" \
        </dev/null >"$OUT/$name.out" 2>"$OUT/$name.progress" &
    GL_PID=$!
    STARTED="$STARTED $GL_PID"
}
# wait_sending NAME TIMEOUT_S [any]: until the background giftload left its connect phase with
# every connection joined (its progress line reads "send ... conn N/N"); with "any", however many
# joined.
wait_sending() {
    local name=$1 all=1 line
    [ "${3:-}" = any ] && all=0
    for _ in $(seq 1 $(($2 * 5))); do
        kill -0 "$GL_PID" 2>/dev/null || return 1
        line=$(tail -n 1 "$OUT/$name.progress" 2>/dev/null)
        if printf '%s' "$line" | awk -v all=$all '{ split($4, a, "/"); ok = ($2 != "connect" && a[2] > 0 && (!all || a[1] == a[2])) } END { exit !ok }'; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}
gl_finish() { # stop the background giftload (SIGINT: it reports) and wait for it
    kill -INT "$GL_PID" 2>/dev/null
    for _ in $(seq 1 100); do
        kill -0 "$GL_PID" 2>/dev/null || break
        sleep 0.1
    done
    stop_pid "$GL_PID"
    GL_PID=""
}

# eval_step FILE PLANNED_GIFTS P99_LIMIT_MS: sets J_* from a report (see report.js step).
eval_step() {
    J_OK=0 J_DPS="" J_P99="" J_PCT="" J_WHY="no report"
    [ -s "$1" ] || return 1
    eval "$(node "$HERE/report.js" step "$1" "$2" "$3")"
}

# perf_syscalls NAME SECONDS: system calls and CPU time of the server's processes while the
# background giftload NAME sends; sets P_SYS (syscalls/s) and P_CPU (CPU ms per s), or "".
P_SYS="" P_CPU=""
perf_syscalls() {
    P_SYS="" P_CPU=""
    command -v perf >/dev/null 2>&1 || return 1
    local pids
    pids=$(tree_pids "$SPID" | paste -sd, -)
    timeout 30 perf stat -x, -o "$OUT/$1.perf" -p "$pids" \
        -e task-clock,raw_syscalls:sys_enter,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_ctl \
        -- sleep "$2" >/dev/null 2>&1 || return 1
    P_SYS=$(awk -F, -v s="$2" '$3 == "raw_syscalls:sys_enter" && $1 ~ /^[0-9]+$/ { printf "%.0f", $1 / s }' "$OUT/$1.perf")
    P_CPU=$(awk -F, -v s="$2" '$3 ~ /^task-clock/ && $1 ~ /^[0-9.]+$/ { printf "%.0f", $1 / s }' "$OUT/$1.perf")
    [ -n "$P_SYS" ]
}

# ---- scenarios ----------------------------------------------------------------------------------
# 5. connections: 15,000 idle viewers (1 room) joining at 2,000/s; server RSS before and after,
# per joined viewer.
sc_conns() {
    local tag=$1 name="$1-conns" n=15000 before after joined line
    before=$(rss_kib "$SPID")
    gl_bg "$name" --viewers $n --rooms 1 --senders 0 --rate 0 --duration 120 --drain 1 \
        --connect-rate 2000
    if ! wait_sending "$name" 60 any; then
        gl_finish
        log "$tag conns: giftload did not get past connecting"
        put "$tag.conns.kib_per_conn" failed
        return 1
    fi
    sleep 2 # settled: joined, presence sent, nothing in flight
    after=$(rss_kib "$SPID")
    line=$(tail -n 1 "$OUT/$name.progress")
    joined=$(printf '%s' "$line" | awk '{ split($4, a, "/"); print a[1] + 0 }')
    gl_finish
    put "$tag.conns.before_kib" "$before"
    put "$tag.conns.after_kib" "$after"
    put "$tag.conns.joined" "$joined"
    put "$tag.conns.join_rate" "$(node "$HERE/report.js" field "$OUT/$name.json" connect_rate)"
    if [ "$joined" -gt 0 ]; then
        put "$tag.conns.kib_per_conn" "$(awk -v a="$after" -v b="$before" -v n="$joined" 'BEGIN { printf "%.2f", (a - b) / n }')"
    else
        put "$tag.conns.kib_per_conn" failed
    fi
    log "$tag conns: RSS $before KiB -> $after KiB for $joined of $n idle viewers"
}

# 1. fan-out, 1 room x 2,000 viewers: the gift rate doubles from 5/s until a step fails (twice) (p99 >
# 50 ms, < 99% delivered, unanswered or refused gifts, viewers closed), then two bisection steps
# between the last good and the first failed rate; then the best step again with perf attached.
# fan2k_load RATE: the giftload arguments of one 2,000-viewer step, in FAN2K_ARGS.
fan2k_load() {
    FAN2K_ARGS=(--viewers 2000 --rooms 1 --senders $(($1 / 20 + 1)) --rate "$1"
        --duration "$STEP_S" --drain 3 --connect-rate 2000)
}
fan2k_step() { # TAG RATE [P99_LIMIT_MS] -> J_*
    local tag=$1 r=$2 lim=${3:-50} name="$1-fanout2k-r$2"
    fan2k_load "$r"
    [ -s "$OUT/$name.json" ] || gl "$name" $((STEP_S + 40)) "${FAN2K_ARGS[@]}"
    eval_step "$OUT/$name.json" $((r * STEP_S)) "$lim"
    if [ "$J_OK" != 1 ] && [ "$lim" = 50 ] && [ ! -e "$OUT/$name-again.json" ]; then
        # One failed step is run again before it counts: p99 near the bound is noisy here.
        log "$tag fanout2k ${r}/s: ${J_WHY}; once more"
        name="$name-again"
        gl "$name" $((STEP_S + 40)) "${FAN2K_ARGS[@]}"
        eval_step "$OUT/$name.json" $((r * STEP_S)) "$lim"
    fi
    log "$tag fanout2k ${r}/s: ${J_DPS:-?} deliveries/s, p99 ${J_P99:-?} ms, ${J_PCT:-?}% -> $([ "$J_OK" = 1 ] && echo ok || echo "$J_WHY")"
    STEPS="$STEPS ${r}:$([ "$J_OK" = 1 ] && echo ok || echo "${J_WHY// /_}")"
}
sc_fanout2k() {
    local tag=$1 r good=0 bad=0 m
    STEPS=""
    local g_dps="" g_p99="" g_pct="" g_fps="" b_dps="" b_p99="" b_pct=""
    for r in 5 10 20 40 80 160 320 640 1280 2560; do
        fan2k_step "$tag" "$r"
        if [ "$J_OK" = 1 ]; then
            good=$r g_dps=$J_DPS g_p99=$J_P99 g_pct=$J_PCT g_fps=$J_FPS
        else
            bad=$r b_dps=$J_DPS b_p99=$J_P99 b_pct=$J_PCT
            break
        fi
    done
    if [ "$good" -gt 0 ] && [ "$bad" -gt 0 ]; then
        local lo=$good hi=$bad k
        for k in 1 2; do
            m=$(awk -v a="$lo" -v b="$hi" 'BEGIN { printf "%d", sqrt(a * b) + 0.5 }')
            [ "$m" -le "$lo" ] || [ "$m" -ge "$hi" ] && break
            fan2k_step "$tag" "$m"
            if [ "$J_OK" = 1 ]; then
                lo=$m good=$m g_dps=$J_DPS g_p99=$J_P99 g_pct=$J_PCT g_fps=$J_FPS
            else
                hi=$m
            fi
        done
    fi
    # Capacity: past the 50 ms bound, the rate keeps doubling while every event is delivered
    # (>= 99 %) with p99 <= 250 ms; the last such step is the most this server moves with
    # bounded latency, the first one past it is "overloaded".
    local c_dps="" c_rate="" c_p99=""
    r=$((good > 0 ? good : 10)) bad=0 b_dps=""
    while [ "$r" -le 5120 ]; do
        fan2k_step "$tag" "$r" 250
        if [ "$J_OK" = 1 ]; then
            c_dps=$J_DPS c_rate=$r c_p99=$J_P99
        else
            bad=$r b_dps=$J_DPS b_p99=$J_P99 b_pct=$J_PCT
            break
        fi
        r=$((r * 2))
    done
    if [ -n "$c_dps" ]; then
        put "$tag.fan2k.cap_dps" "$c_dps"
        put "$tag.fan2k.cap_rate" "$c_rate"
        put "$tag.fan2k.cap_p99" "$c_p99"
    else
        put "$tag.fan2k.cap_dps" "none"
    fi
    put "$tag.fan2k.steps" "${STEPS# }"
    if [ "$good" -gt 0 ]; then
        put "$tag.fan2k.best_dps" "$g_dps"
        put "$tag.fan2k.best_rate" "$good"
        put "$tag.fan2k.best_p99" "$g_p99"
        put "$tag.fan2k.best_pct" "$g_pct"
        put "$tag.fan2k.best_fps" "$g_fps"
    else
        put "$tag.fan2k.best_dps" "none"
    fi
    if [ "$bad" -gt 0 ]; then
        put "$tag.fan2k.over_dps" "${b_dps:-failed}"
        put "$tag.fan2k.over_rate" "$bad"
        put "$tag.fan2k.over_p99" "$b_p99"
        put "$tag.fan2k.over_pct" "$b_pct"
    else
        put "$tag.fan2k.over_dps" "not reached"
    fi
    # The best step again, with perf counting the server's system calls while it sends.
    if [ "$good" -gt 0 ]; then
        local name="$tag-fanout2k-perf-r$good"
        fan2k_load "$good"
        gl_bg "$name" "${FAN2K_ARGS[@]}"
        if wait_sending "$name" 40 && perf_syscalls "$name" $((STEP_S > 3 ? STEP_S - 2 : 1)); then
            wait "$GL_PID" 2>/dev/null
            eval_step "$OUT/$name.json" $((good * STEP_S)) 50
            if [ -n "$J_DPS" ] && [ "${J_DPS%.*}" -gt 0 ]; then
                put "$tag.fan2k.sys_per_del" "$(awk -v s="$P_SYS" -v d="$J_DPS" 'BEGIN { printf "%.3f", s / d }')"
                put "$tag.fan2k.cpu_us_per_del" "$(awk -v c="$P_CPU" -v d="$J_DPS" 'BEGIN { printf "%.3f", c * 1000 / d }')"
                put "$tag.fan2k.perf_dps" "$J_DPS"
            fi
        else
            put "$tag.fan2k.sys_per_del" "n/a"
        fi
        gl_finish
    fi
}

# settle_lag TAG: settlement lag of the rows in the default sink (the giftd:settlements stream)
# so far: for each row, the time from its first gift (first_ts_ms) to the row's entry id (the
# time Redis appended it); the highest and the mean, in ms.
settle_lag() {
    [ "$SKIND" = giftd ] || return 0
    local r
    r=$(redis-cli -p "$RPORT" --raw XRANGE giftd:settlements - + | awk '
        NR % 19 == 1 { split($0, id, "-"); t = id[1] }
        NR % 19 != 1 && (NR % 19) % 2 == 0 { f = $0 }
        NR % 19 != 1 && (NR % 19) % 2 == 1 && f == "first_ts_ms" { d = t - $0; n++; s += d; if (d > m) m = d }
        END { if (n) printf "%d %.0f %d", m, s / n, n }')
    [ -n "$r" ] || { put "$1.settle.lag_max_ms" "no rows"; return 0; }
    set -- "$1" $r
    put "$1.settle.lag_max_ms" "$2"
    put "$1.settle.lag_mean_ms" "$3"
    put "$1.settle.rows" "$4"
    log "$1 settlement lag over $4 rows: max $2 ms, mean $3 ms"
}

# 2. fan-out, 1 room x 10,000 viewers: 1 gift/s for 10 s; then a storm of 120 gifts/s for 3 s
# (1.2 M deliveries/s offered).
sc_fanout10k() {
    local tag=$1 name="$1-fanout10k-r1"
    if gl "$name" 90 --viewers 10000 --rooms 1 --senders 1 --rate 1 --duration 10 --drain 3 \
        --connect-rate 2000; then
        eval_step "$OUT/$name.json" 10 100
        put "$tag.fan10k.lo_p99" "${J_P99:-failed}"
        put "$tag.fan10k.lo_pct" "$J_PCT"
        log "$tag fanout10k 1/s: p99 $J_P99 ms, $J_PCT% delivered ($J_WHY)"
    else
        put "$tag.fan10k.lo_p99" failed
        log "$tag fanout10k 1/s: failed (see $OUT/$name.err)"
    fi
    name="$1-fanout10k-storm"
    if gl "$name" 90 --viewers 10000 --rooms 1 --senders 7 --rate 120 --duration 3 --drain 10 \
        --connect-rate 2000; then
        eval_step "$OUT/$name.json" 360 250
        put "$tag.fan10k.storm_dps" "${J_DPS:-failed}"
        put "$tag.fan10k.storm_p99" "$J_P99"
        put "$tag.fan10k.storm_pct" "$J_PCT"
        put "$tag.fan10k.storm_why" "$J_WHY"
        log "$tag fanout10k storm 120/s: $J_DPS deliveries/s, p99 $J_P99 ms, $J_PCT% ($J_WHY)"
    else
        put "$tag.fan10k.storm_dps" failed
        log "$tag fanout10k storm: failed (see $OUT/$name.err)"
    fi
}

# 3. many rooms: 1,000 rooms x 10 viewers, one sender per room, 1 gift/s per room.
sc_rooms() {
    local tag=$1 name="$1-rooms"
    if gl "$name" 120 --viewers 10000 --rooms 1000 --senders 1000 --rate 1000 --duration 8 \
        --drain 3 --connect-rate 1000; then
        eval_step "$OUT/$name.json" 8000 100
        put "$tag.rooms.dps" "${J_DPS:-failed}"
        put "$tag.rooms.p99" "$J_P99"
        put "$tag.rooms.pct" "$J_PCT"
        put "$tag.rooms.why" "$J_WHY"
        log "$tag rooms: $J_DPS deliveries/s, p99 $J_P99 ms, $J_PCT% ($J_WHY)"
    else
        put "$tag.rooms.dps" failed
        log "$tag rooms: failed (see $OUT/$name.err)"
    fi
}

redis_cpu_us() { # Redis's own CPU time so far, in microseconds
    redis-cli -p "$RPORT" info cpu | tr -d '\r' |
        awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { printf "%.0f", s * 1e6 }'
}
redis_evals() { # EVAL + EVALSHA calls so far
    redis-cli -p "$RPORT" info commandstats | tr -d '\r' |
        awk -F'[:=,]' '/^cmdstat_eval(sha)?:/ { s += $3 } END { print s + 0 }'
}

# server_cpu_ticks: utime + stime (clock ticks, see CLK_TCK) of the server process and its children
# (giftd's workers, the peer's cluster workers) so far.
server_cpu_ticks() {
    local s=0 p v
    for p in $(tree_pids "$SPID"); do
        # Fields after "pid (comm) ": state is the 1st, utime the 12th, stime the 13th.
        v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null)
        s=$((s + ${v:-0}))
    done
    echo "$s"
}

# debit_run TAG WHAT RATE DRAIN_S: one giftload run of the debits shape (200 rooms x 1 viewer, 200
# senders, RATE gifts/s for STEP_S s), with Redis CPU, EVAL/EVALSHA calls and the server's CPU
# counted over it; sets J_* (report.js debits), D_REDIS_US, D_EVALS, D_SERVER_US (per accepted
# gift, "" when nothing was accepted). 1 when giftload gave no report.
debit_run() {
    local tag=$1 what=$2 r=$3 drain=$4 name="$1-debits-$2" cpu0 cpu1 ev0 ev1 t0 t1
    D_REDIS_US="" D_EVALS="" D_SERVER_US="" J_ACKED=0
    cpu0=$(redis_cpu_us)
    ev0=$(redis_evals)
    t0=$(server_cpu_ticks)
    gl "$name" $((STEP_S + 90)) --viewers 200 --rooms 200 --senders 200 --rate "$r" \
        --duration "$STEP_S" --drain "$drain" --connect-rate 2000 --prefix "$name" ||
        { log "$tag debits $what: failed (see $OUT/$name.err)"; return 1; }
    t1=$(server_cpu_ticks)
    cpu1=$(redis_cpu_us)
    ev1=$(redis_evals)
    eval "$(node "$HERE/report.js" debits "$OUT/$name.json")"
    if [ "${J_ACKED:-0}" -gt 0 ]; then
        D_REDIS_US=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$J_ACKED" 'BEGIN { printf "%.1f", (b - a) / n }')
        D_EVALS=$(awk -v a="$ev0" -v b="$ev1" -v n="$J_ACKED" 'BEGIN { printf "%.3f", (b - a) / n }')
        D_SERVER_US=$(awk -v a="$t0" -v b="$t1" -v n="$J_ACKED" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", (b - a) * 1e6 / hz / n }')
    fi
    return 0
}

# 4. debits (the ledger issue): 200 senders, 200 rooms with one viewer each, on this server's own
# Redis. After a short warm-up run (its own prefix): "gift cost" at 4,000 gifts/s for STEP_S s
# (Redis CPU, EVAL/EVALSHA calls and server CPU per accepted gift, answer and delivery p99), then
# "overload" at 24,000 gifts/s offered for STEP_S s with up to 10 s of drain (accepted gifts/s up
# to the last answer, answer latency, refusals, Redis CPU per accepted gift). Each measured run
# also opens its rooms and credits its senders (--setup), the same for every server.
sc_debits() {
    local tag=$1 k
    gl "$tag-debits-warmup" 60 --viewers 200 --rooms 200 --senders 200 --rate 200 --duration 1 \
        --drain 3 --connect-rate 2000 --prefix "$tag-debits-warmup" ||
        log "$tag debits warm-up: failed (see $OUT/$tag-debits-warmup.err)"
    settle

    if debit_run "$tag" cost 4000 5; then
        put "$tag.debits.cost_sent" "$J_SENT"
        put "$tag.debits.cost_acked" "$J_ACKED"
        put "$tag.debits.cost_refused" "$J_REFUSED"
        put "$tag.debits.cost_refused_codes" "$J_CODES"
        put "$tag.debits.cost_unanswered" "$J_UNANSWERED"
        put "$tag.debits.cost_ans_p99" "$J_A99"
        put "$tag.debits.cost_del_p99" "$J_D99"
        put "$tag.debits.cost_redis_us" "${D_REDIS_US:-failed}"
        put "$tag.debits.cost_evals" "${D_EVALS:-failed}"
        put "$tag.debits.cost_server_us" "${D_SERVER_US:-failed}"
        log "$tag debits cost 4000/s: $J_ACKED of $J_SENT acked, $J_REFUSED refused, $J_UNANSWERED unanswered; Redis $D_REDIS_US µs, $D_EVALS scripts, server $D_SERVER_US µs per gift; answer p99 $J_A99 ms, delivery p99 $J_D99 ms"
    else
        for k in cost_acked cost_redis_us cost_evals cost_server_us cost_ans_p99 cost_del_p99; do
            put "$tag.debits.$k" failed
        done
    fi
    settle

    if debit_run "$tag" overload 24000 10; then
        put "$tag.debits.over_sent" "$J_SENT"
        put "$tag.debits.over_acked" "$J_ACKED"
        put "$tag.debits.over_aps" "$J_APS_LAST"
        put "$tag.debits.over_refused" "$J_REFUSED"
        put "$tag.debits.over_refused_codes" "$J_CODES"
        put "$tag.debits.over_unanswered" "$J_UNANSWERED"
        put "$tag.debits.over_ans_p50" "$J_A50"
        put "$tag.debits.over_ans_p99" "$J_A99"
        put "$tag.debits.over_ans_max" "$J_AMAX"
        put "$tag.debits.over_redis_us" "${D_REDIS_US:-failed}"
        put "$tag.debits.over_evals" "${D_EVALS:-failed}"
        put "$tag.debits.over_server_us" "${D_SERVER_US:-failed}"
        log "$tag debits overload 24000/s: $J_APS_LAST accepted/s to the last answer, $J_ACKED of $J_SENT acked, $J_REFUSED refused ($J_CODES), $J_UNANSWERED unanswered; answer p50/p99/max $J_A50/$J_A99/$J_AMAX ms; Redis $D_REDIS_US µs per gift"
    else
        for k in over_aps over_ans_p99 over_refused over_redis_us; do
            put "$tag.debits.$k" failed
        done
    fi
}

# ---- the run ------------------------------------------------------------------------------------
T0=$(date +%s)
put meta.date "$(date -u '+%Y-%m-%d %H:%M UTC')"
put meta.cores "$(nproc)"
put meta.cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
put meta.mem "$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
put meta.load "$(cut -d' ' -f1-3 /proc/loadavg)"
put meta.commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo +dirty)"
put meta.workers "$HAVE_WORKERS"
put meta.nofile "$NOFILE"
put meta.step_s "$STEP_S"
log "results in $OUT (ulimit -n $NOFILE, load $(cut -d' ' -f1-3 /proc/loadavg))"

for srv in w1 w2 peer; do
    case " $SERVERS " in *" $srv "*) ;; *) put "$srv.na" "not in BENCH_SERVERS" ;; esac
done
for srv in $SERVERS; do
    if [ "$srv" = w2 ] && [ "$HAVE_WORKERS" != 1 ]; then
        put "w2.na" "giftd has no workers option"
        continue
    fi
    if [ "$srv" = peer ] && ! prepare_peer; then
        put "peer.na" "peer not available"
        continue
    fi
    log "== $srv"
    if ! start_server "$srv"; then
        stop_server
        put "$srv.na" "did not start"
        continue
    fi
    for sc in $SCENARIOS; do
        settle
        ensure_server "$srv" || { put "$srv.$sc" failed; continue; }
        "sc_$sc" "$srv"
        [ "$sc" = fanout2k ] && settle_lag "$srv"
    done
    put "$srv.rss_end_kib" "$(rss_kib "$SPID")"
    stop_server
done
put meta.elapsed_s $(($(date +%s) - T0))

node "$HERE/report.js" table "$RES" | tee "$OUT/table.md"
# The debits' Redis CPU per gift moves by a third from run to run on a shared machine; the
# script's instruction count (bench/script_cost.sh) does not, so it goes with it.
case " $SCENARIOS " in
*" debits "*)
    if sc_line=$("$HERE/script_cost.sh" 2>>"$OUT/script_cost.err"); then
        printf '\n%s (bench/script_cost.sh: counted, not timed)\n' "$sc_line" | tee -a "$OUT/table.md"
    else
        log "script_cost.sh failed (see $OUT/script_cost.err)"
    fi
    ;;
esac
log "done in $(($(date +%s) - T0)) s; raw reports in $OUT"
