#!/usr/bin/env bash
# Helpers for the scripts that start relays and mocks on loopback; sourced by them
# (`. scripts/common.sh`), not run.

# free_port: a free loopback port, the kernel's pick (bound and released at once).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT WHAT [SECONDS=5]: return once something accepts on 127.0.0.1:PORT;
# otherwise exit 1 naming WHAT.
wait_port() {
    local _
    for _ in $(seq $((${3:-5} * 20))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "$0: nothing listens on 127.0.0.1:$1 ($2)" >&2
    exit 1
}

# scratch_dir: sets `dir` to a new temporary directory holding a keys file for key `k1`
# and `pids` to an empty array, and traps EXIT to stop every PID in `pids` and remove
# `dir` (the scripts that start a relay and a mock on loopback).
scratch_dir() {
    dir=$(mktemp -d)
    pids=()
    trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
    echo "bench k1" >"$dir/keys"
}
