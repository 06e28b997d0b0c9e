#!/bin/sh
# fuzz.sh: giftd's libFuzzer harnesses (fuzz/, built with -DGIFTD_FUZZ=ON by clang-14).
#   fuzz.sh available
#       exits 0 when clang-14 can build and link a libFuzzer harness with ASan and UBSan.
#   fuzz.sh run BUILD_DIR SECONDS [TARGET...]
#       runs each target (default: all of fuzz/corpus/) for SECONDS on a scratch copy of its
#       seed corpus in BUILD_DIR/fuzz-work/TARGET (the committed seeds are never written), then
#       prints libFuzzer's final stats. Exits 1 when a fuzzer found something: its report is in
#       BUILD_DIR/fuzz-work/TARGET/log and the input in BUILD_DIR/fuzz-work/TARGET/artifacts/.
set -eu
src="$(cd "$(dirname "$0")/.." && pwd)"

available() {
    command -v clang-14 >/dev/null 2>&1 || return 1
    tmp=$(mktemp -d)
    printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
        >"$tmp/probe.c"
    ok=0
    clang-14 -fsanitize=fuzzer,address,undefined "$tmp/probe.c" -o "$tmp/probe" \
        >/dev/null 2>&1 || ok=1
    rm -rf "$tmp"
    return $ok
}

# run_one BUILD_DIR SECONDS TARGET: one fuzzer; returns libFuzzer's exit status.
run_one() {
    bin="$1/fuzz/fuzz_$3"
    work="$1/fuzz-work/$3"
    [ -x "$bin" ] || { echo "fuzz: $bin is missing (build $1 with -DGIFTD_FUZZ=ON)" >&2; return 1; }
    rm -rf "$work"
    mkdir -p "$work/corpus" "$work/artifacts"
    cp "$src/fuzz/corpus/$3/"* "$work/corpus/" || return 1
    dict=""
    [ -f "$src/fuzz/dict/$3.dict" ] && dict="-dict=$src/fuzz/dict/$3.dict"
    echo "fuzz_$3: ${2}s on $(ls "$work/corpus" | wc -l) seeds"
    status=0
    # Leaks are bugs too (libFuzzer checks each input that allocates more than it frees).
    ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=1" \
        "$bin" -max_total_time="$2" -timeout=25 -print_final_stats=1 $dict \
        -artifact_prefix="$work/artifacts/" "$work/corpus" >"$work/log" 2>&1 || status=$?
    # libFuzzer's last status line ("#N DONE cov: … ft: … corp: …") and its final stats.
    grep -E '^#[0-9]+[[:space:]]+(DONE|INITED|pulse|NEW|REDUCE)' "$work/log" | tail -n 1 || true
    grep -E '^stat::' "$work/log" || true
    echo "fuzz_$3: corpus now $(ls "$work/corpus" | wc -l) files"
    if [ "$status" != 0 ]; then
        echo "fuzz_$3: FOUND SOMETHING (exit $status); the report:" >&2
        grep -v -E '^#[0-9]+[[:space:]]' "$work/log" | tail -n 40 >&2
        ls "$work/artifacts" >&2
    fi
    return "$status"
}

case "${1:-}" in
available)
    available
    ;;
run)
    [ $# -ge 3 ] || { echo "usage: $0 run BUILD_DIR SECONDS [TARGET...]" >&2; exit 2; }
    build="$2"
    secs="$3"
    shift 3
    [ $# -gt 0 ] || set -- $(ls "$src/fuzz/corpus")
    failed=""
    for t in "$@"; do
        run_one "$build" "$secs" "$t" || failed="$failed $t"
    done
    if [ -n "$failed" ]; then
        echo "fuzz: found something in:$failed" >&2
        exit 1
    fi
    ;;
*)
    echo "usage: $0 available | run BUILD_DIR SECONDS [TARGET...]" >&2
    exit 2
    ;;
esac
