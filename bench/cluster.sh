#!/usr/bin/env bash
# bench/cluster.sh: the gift path on a Redis Cluster next to one Redis, same load, same machine.
# Usage: bench/cluster.sh [BUILD_DIR]   (make bench-cluster)
#
# Starts a private cluster of MASTERS masters (default 3, no replicas; in memory) on free ports
# and a private single redis-server, then for each: giftd --workers=1 on it, giftload with 200
# viewers in 200 rooms and 200 senders at RATE gifts/s (default 3000) for DURATION s (default
# 5). Prints the Redis CPU per accepted gift (INFO cpu delta / acks) on each master and summed,
# how the gifts split over the masters, and the same figure on one Redis. Stops everything it
# started, by PID; logs and giftload reports go to BUILD_DIR/bench/cluster-<date>/.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=$(cd "${1:-build}" 2>/dev/null && pwd) || { echo "bench: no build directory" >&2; exit 2; }
MASTERS=${MASTERS:-3}
RATE=${RATE:-3000}
DURATION=${DURATION:-5}
SECRET=bench-secret-0123456789abcdef
OUT=$BUILD/bench/cluster-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null
    done
    wait 2>/dev/null
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# redis-server on port $1 in dir $2 with extra options; its PID is remembered.
redis_on() {
    local port=$1 dir=$2
    shift 2
    mkdir -p "$dir"
    (cd "$dir" && exec redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --logfile redis.log "$@") &
    PIDS+=($!)
    for _ in $(seq 50); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "bench: redis-server on $port did not start" >&2
    exit 1
}

cpu_us() {
    redis-cli -p "$1" info cpu | awk -F: '/used_cpu_(sys|user):/ {s+=$2} END {printf "%.0f", s*1e6}'
}

# run LABEL REDIS-FLAG PORTS...: giftd on that Redis, the load, Redis CPU per acked gift.
run() {
    local label=$1 flag=$2
    shift 2
    local gp
    gp=$(free_port)
    (cd "$ROOT" && exec "$BUILD/giftd" "$flag" --auth.secret=$SECRET --listen=127.0.0.1:$gp \
        --limits.gifts_per_sec=1000000 --limits.frames_per_sec=1000000 --workers=1) \
        >"$OUT/giftd-$label.log" 2>&1 &
    local gpid=$!
    PIDS+=($gpid)
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$gp/readyz" >/dev/null && break
        sleep 0.1
    done
    "$BUILD/giftload" --url "ws://127.0.0.1:$gp" --setup --secret $SECRET --viewers 200 \
        --rooms 200 --senders 200 --rate 1 --duration 1 --drain 1 --connect-rate 2000 \
        --prefix warm --quiet >/dev/null 2>&1
    declare -A c0
    for p in "$@"; do
        c0[$p]=$(cpu_us "$p")
    done
    "$BUILD/giftload" --url "ws://127.0.0.1:$gp" --setup --secret $SECRET --viewers 200 \
        --rooms 200 --senders 200 --rate "$RATE" --duration "$DURATION" --drain 5 \
        --connect-rate 2000 --json "$OUT/giftload-$label.json" >"$OUT/giftload-$label.out" 2>&1
    local acked
    acked=$(node -e "console.log(require('$OUT/giftload-$label.json').gifts_acked)")
    local total=0
    echo "$label: $acked gifts acked at $RATE/s offered"
    for p in "$@"; do
        local d=$(($(cpu_us "$p") - ${c0[$p]}))
        total=$((total + d))
        local pubs
        pubs=$(redis-cli -p "$p" --scan --pattern 'giftd:{r:*}:pub:*' | wc -l)
        if [ $# -gt 1 ]; then
            printf '  master :%s  %6.1f us of Redis CPU per acked gift  (%s gifts published here)\n' \
                "$p" "$(echo "$d / $acked" | bc -l)" "$pubs"
        fi
    done
    printf '  total         %6.1f us of Redis CPU per acked gift\n' "$(echo "$total / $acked" | bc -l)"
    grep -E "answer latency" "$OUT/giftload-$label.out" | sed 's/^/  /'
    kill $gpid
    wait $gpid 2>/dev/null
}

ports=()
for i in $(seq "$MASTERS"); do
    p=$(free_port)
    ports+=("$p")
    redis_on "$p" "$OUT/node-$p" --cluster-enabled yes --cluster-config-file nodes.conf \
        --cluster-port "$(free_port)"
done
redis-cli --cluster create $(printf '127.0.0.1:%s ' "${ports[@]}") --cluster-yes \
    >"$OUT/create.log" 2>&1 || { echo "bench: cluster create failed" >&2; exit 1; }
for _ in $(seq 100); do
    redis-cli -p "${ports[0]}" cluster info | grep -q cluster_state:ok && break
    sleep 0.1
done
seeds=$(printf '127.0.0.1:%s,' "${ports[@]}")
run "cluster-$MASTERS-masters" "--redis.cluster=${seeds%,}" "${ports[@]}"

single=$(free_port)
redis_on "$single" "$OUT/single"
run "one-redis" "--redis.url=redis://127.0.0.1:$single/0" "$single"
