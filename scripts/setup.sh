#!/bin/sh
# setup.sh: installs (apt-get, as root) whatever giftd needs to build, run and test that is
# missing. Safe to run again: it installs nothing when everything is there.
set -eu
pkgs="build-essential cmake pkg-config libwebsockets-dev libwebsockets-evlib-uv libuv1-dev
libhiredis-dev libjansson-dev libssl-dev libcriterion-dev redis-server libpq-dev
libcurl4-openssl-dev postgresql curl chromium clang-14 libclang-rt-14-dev libfuzzer-14-dev"
# Node.js (the baseline peer of the benchmarks) may come from Debian or from NodeSource, whose
# nodejs package carries npm itself: install only what the commands say is missing.
command -v node >/dev/null 2>&1 || pkgs="$pkgs nodejs"
command -v npm >/dev/null 2>&1 || pkgs="$pkgs npm"
missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    echo "setup: installing:$missing"
    if [ "$(id -u)" != 0 ]; then
        echo "setup: run as root (or install these packages yourself):$missing" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Debian starts services on install where it can; giftd's tests start their own servers.
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# The browser tests' npm packages (playwright-core drives Debian's chromium; it downloads none;
# ws is the WebSocket the client library's Node tests give it).
browser_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
if [ -f "$browser_dir/package.json" ] && { [ ! -d "$browser_dir/node_modules/playwright-core" ] ||
    [ ! -d "$browser_dir/node_modules/ws" ]; }; then
    echo "setup: npm install in tests/browser"
    (cd "$browser_dir" && npm install --no-audit --no-fund)
fi
