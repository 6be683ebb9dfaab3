#!/bin/bash
# User-space instructions per echo request of one compare-suite peer's
# server, counted by callgrind (deterministic where `perf stat -e
# instructions` has no hardware counters). Needs valgrind and python3.
#
#   cargo bench --bench compare --no-run
#   benches/tools/callgrind_echo.sh target/release/deps/compare-<hash> [peer] [conns] [requests]
#
# Runs the peer's echo server under callgrind, warms it up with 2000
# requests, then counts `requests` requests of 128 bytes over `conns`
# connections (every reply byte checked) and prints instructions per
# request and the top functions by self cost. Under valgrind the server is
# slow, so its loop iterations batch more requests than in a real run:
# compare figures from this script with each other, not with real runs.
set -euo pipefail
BIN=$1; PEER=${2:-ringloop/uring}; CONNS=${3:-64}; N=${4:-25000}
HERE=$(cd "$(dirname "$0")" && pwd)
D=$(mktemp -d)
valgrind --tool=callgrind --compress-strings=no --compress-pos=no \
    --callgrind-out-file="$D/cg.out" "$BIN" --serve "$PEER" --proto echo --cpus none > "$D/out" 2> "$D/err" &
VG=$!
for _ in $(seq 1 150); do grep -q PORT "$D/out" 2>/dev/null && break; sleep 0.2; done
PORT=$(awk '/PORT/ {print $2}' "$D/out")
python3 "$HERE/echo_client.py" "$PORT" "$CONNS" 2000
callgrind_control -z "$VG" > /dev/null 2>&1
python3 "$HERE/echo_client.py" "$PORT" "$CONNS" "$N"
callgrind_control -d measured "$VG" > /dev/null 2>&1
{ kill -KILL "$VG" && wait "$VG"; } 2> /dev/null || true
python3 "$HERE/callgrind_self.py" "$(ls "$D"/cg.out.* | tail -1)" "$N"
rm -rf "$D"
