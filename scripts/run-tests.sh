#!/bin/sh
# run-tests.sh BUILD_DIR [CTEST ARGS...]: runs every test of a build (unit, integration, e2e,
# browser), or those the extra ctest arguments select (e.g. -E browser_).
# Integration and end-to-end tests start their own redis-server(s) (and PostgreSQL) on free
# ports and stop them afterwards.
set -eu
build=${1:-build}
[ $# -gt 0 ] && shift
ctest --test-dir "$build" --output-on-failure --timeout 300 -j2 "$@"
