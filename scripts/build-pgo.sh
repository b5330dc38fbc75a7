#!/usr/bin/env bash
# The profile-guided (PGO) release build of the relay: what to deploy, and what
# `scripts/bench.sh --pgo` measures.
#
#   scripts/build-pgo.sh     → target/pgo/release/tollgate
#
# 1. builds tollgate instrumented (`-Cprofile-generate`, in target/pgo-gen);
# 2. trains it for about a minute on loopback against the mock upstream: Responses turns
#    (paced deltas, 200 sessions), an unpaced firehose, echo at 8k frames/s and session
#    churn, each through tollgate on io_uring and again on epoll (turns, churn and
#    firehose with a usage log); the same with a `wss://` upstream; echo and firehose
#    through `--tunnel`;
# 3. merges the profile with `llvm-profdata` of rustc's own LLVM version — rustup's
#    `llvm-tools` component (`rustup component add llvm-tools`, found in rustc's sysroot),
#    or `llvm-profdata-22` on PATH for rustc 1.95's LLVM 22 (Debian bookworm's archive stops
#    at LLVM 19) — exit 69 naming it when missing;
# 4. builds it again with `-Cprofile-use` (target/pgo), and puts the plain release build of
#    the floor (`tollgate-floor`) next to it, where `loadtest bench --tollgate` looks for
#    it. The floor is not trained: it ends by SIGTERM's default action, so an instrumented
#    floor would write no profile, and its wake-up is 25 code lines, little to lay out.
#
# Why: a wake-up that forwards one frame is mostly cache misses, and the profile lets the
# compiler put the instructions a wake-up runs next to each other, and the rest out of
# the way. `scripts/wake-footprint.sh tollgate`: 193 → 118 code lines (25 → 9 pages) and
# 100 → 96 data lines per wake-up; `scripts/hop-split.sh tollgate`: user time before the
# first send 3.36 → 2.91 µs, medians of four alternations (loadtest/BENCH-history.md "What a
# wake-up touches"). Code the training does not run is laid out as cold: train what you
# deploy (the workloads are below).
# Takes ~13 minutes on 2 cores the first time (every dependency built twice more, into
# target/pgo-gen and target/pgo), 3–4 minutes after. The plain `cargo build --release`
# stays the default build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for a in "$@"; do
    case $a in
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "scripts/build-pgo.sh: unknown argument '$a' (it takes none; --help)" >&2
        exit 64
        ;;
    esac
done
rustc_vv=$(rustc -vV)
llvm=$(sed -n 's/^LLVM version: \([0-9]*\).*/\1/p' <<<"$rustc_vv")
host=$(sed -n 's/^host: //p' <<<"$rustc_vv")
profdata=
for c in "$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata" "llvm-profdata-$llvm" llvm-profdata; do
    if command -v "$c" >/dev/null && "$c" --version 2>/dev/null | grep -q "LLVM version $llvm\."; then
        profdata=$c
        break
    fi
done
if [ -z "$profdata" ]; then
    echo "scripts/build-pgo.sh: needs llvm-profdata of LLVM $llvm, rustc's (rustup component add llvm-tools, or llvm-profdata-$llvm on PATH)" >&2
    exit 69
fi
for tool in openssl python3; do
    command -v "$tool" >/dev/null || {
        echo "scripts/build-pgo.sh: needs $tool" >&2
        exit 69
    }
done

cargo build --release -q -p tollgate-loadtest
cargo build --release -q --bin tollgate-floor
raw=$PWD/target/pgo-gen/profiles
rm -rf "$raw"
echo "==> build-pgo: instrumented build (target/pgo-gen)" >&2
RUSTFLAGS="-Cprofile-generate=$raw" cargo build --release -q --bin tollgate --target-dir target/pgo-gen

dir=$(mktemp -d)
pids=()
cleanup() {
    { kill "${pids[@]}" && wait; } 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
load=target/release/loadtest
gen=target/pgo-gen/release
echo "bench k1" >"$dir/keys"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -addext "basicConstraints=critical,CA:FALSE" -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null

. scripts/common.sh
# mock NAME ARGS…: start a mock upstream; its port in $mock_port.
mock() {
    local name=$1
    shift
    mock_port=$(free_port)
    taskset -c 1 "$load" mock-upstream --listen "127.0.0.1:$mock_port" "$@" >"$dir/mock-$name.log" 2>&1 &
    pids+=($!)
    wait_port "$mock_port" "mock $name"
}
# relay UPSTREAM_URL ARGS…: start an instrumented tollgate; its port in $relay_port.
relay() {
    local up=$1
    shift
    relay_port=$(free_port)
    taskset -c 0 "$gen/tollgate" --listen "127.0.0.1:$relay_port" --workers 1 --no-pin --upstream "$up" \
        --client-keys "$dir/keys" --upstream-header "Authorization: Bearer x" --log warn "$@" \
        >"$dir/relay-$relay_port.log" 2>&1 &
    pids+=($!)
    wait_port "$relay_port" "tollgate $*"
}
drive() {
    local target=$1
    shift
    taskset -c 1 "$load" run --target "ws://127.0.0.1:$target" --key k1 --threads 1 --no-progress "$@" \
        >"$dir/run.log" 2>&1 || {
        echo "scripts/build-pgo.sh: training run failed: $*" >&2
        tail -5 "$dir/run.log" >&2
        exit 1
    }
}
stop_all() {
    # SIGTERM: the relays drain and exit, writing their profiles.
    { kill "${pids[@]}" && wait; } 2>/dev/null || true
    pids=()
}

echo "==> build-pgo: training (about a minute)" >&2
for scheme in ws wss; do
    tls=()
    [ "$scheme" = wss ] && tls=(--tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem")
    ca=()
    [ "$scheme" = wss ] && ca=(--upstream-ca "$dir/cert.pem")
    mock paced "${tls[@]}" --deltas 300 --delta-bytes 190 --token-rate 300 --terminal-pad-bytes 1024
    paced=$mock_port
    mock fire "${tls[@]}" --deltas 500 --delta-burst 64
    fire=$mock_port
    mock echo "${tls[@]}" --echo
    echo_up=$mock_port
    for driver in uring epoll; do
        secs=6
        [ "$scheme" = wss ] || [ "$driver" = epoll ] && secs=3
        relay "$scheme://127.0.0.1:$paced" --driver "$driver" --usage-log "$dir/usage-$driver-$scheme" "${ca[@]}"
        drive "$relay_port" --workload stream --sessions 200 --duration "${secs}s"
        drive "$relay_port" --workload churn --sessions 10 --duration 2s
        relay "$scheme://127.0.0.1:$fire" --driver "$driver" --usage-log "$dir/usage-f-$driver-$scheme" "${ca[@]}"
        drive "$relay_port" --workload firehose --sessions 64 --duration "${secs}s"
        relay "$scheme://127.0.0.1:$echo_up" --driver "$driver" "${ca[@]}"
        drive "$relay_port" --workload echo --sessions 16 --rate 8000 --duration "${secs}s"
    done
    if [ "$scheme" = ws ]; then
        relay "ws://127.0.0.1:$echo_up" --driver uring --tunnel
        drive "$relay_port" --workload echo --sessions 16 --rate 8000 --duration 3s
        relay "ws://127.0.0.1:$fire" --driver uring --tunnel
        drive "$relay_port" --workload firehose --sessions 64 --duration 3s
    fi
    stop_all
done
"$profdata" merge -o target/pgo-gen/merged.profdata "$raw"

echo "==> build-pgo: optimized build (target/pgo)" >&2
RUSTFLAGS="-Cprofile-use=$PWD/target/pgo-gen/merged.profdata" cargo build --release -q --bin tollgate \
    --target-dir target/pgo
cp target/release/tollgate-floor target/pgo/release/tollgate-floor
echo "target/pgo/release/tollgate"
