#!/usr/bin/env bash
# Relay CPU spent by N idle sessions (no traffic, no pings) over 5 seconds.
#   scripts/idle-cpu.sh [N=3000]      (builds the workspace in release mode first)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --workspace
N=${1:-3000}
dir=$(mktemp -d)
trap 'kill $TP $MP 2>/dev/null || true; rm -rf "$dir"' EXIT
echo "acme k1" >"$dir/keys"
taskset -c 1 target/release/loadtest mock-upstream --listen 127.0.0.1:9411 --echo >"$dir/mock.log" 2>&1 &
MP=$!
sleep 0.5
taskset -c 0 target/release/tollgate --listen 127.0.0.1:9410 --workers 1 --no-pin \
    --upstream ws://127.0.0.1:9411 --client-keys "$dir/keys" --upstream-header "Authorization: Bearer x" >"$dir/relay.log" 2>&1 &
TP=$!
sleep 0.5
taskset -c 1 target/release/loadtest run --target ws://127.0.0.1:9410 --key k1 --workload idle \
    --sessions "$N" --ping-interval 1h --duration 12s --threads 1 >"$dir/run.log" 2>&1 &
LP=$!
sleep 6
read -r u0 s0 < <(awk '{print $14, $15}' /proc/$TP/stat)
sleep 5
read -r u1 s1 < <(awk '{print $14, $15}' /proc/$TP/stat)
tick=$(getconf CLK_TCK)
echo "$N idle sessions: relay CPU over 5 s = $(( (u1 - u0 + s1 - s0) * 1000 / tick )) ms (user $(( (u1 - u0) * 1000 / tick )) ms, system $(( (s1 - s0) * 1000 / tick )) ms)"
wait $LP
