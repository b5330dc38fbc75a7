#!/usr/bin/env bash
# Where one relay's CPU goes under the bench's paced or firehose load: the relay on CPU 0
# (one worker), the mock upstream and the generator on CPU 1, `perf record -g` of the
# relay's process for 8 s once the load runs; prints the split by binary (kernel, the
# relay's own code, libc) and the top functions, and keeps perf.data for `perf report`.
#   scripts/profile.sh PEER [WORKLOAD=paced] [OUT=profile-out]
#     PEER: floor | tunnel | tollgate        WORKLOAD: paced | firehose
# paced: 200 sessions, 300 deltas of ~190 B at 300/s each (the bench's `paced` case, one
# frame per wake-up); firehose: 64 sessions, unpaced bursts of 64 deltas.
# Builds the workspace in release mode first; TOLLGATE=path (or FLOOR=path) profiles another
# build, e.g. target/pgo/release/tollgate. FREQ (default 2000) is perf's sampling rate.
# Compare peers within one sitting, each profiled in turn: the VM's speed moves by the hour.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/common.sh
PEER=${1:?usage: scripts/profile.sh floor|tunnel|tollgate [paced|firehose] [OUT]}
WORKLOAD=${2:-paced}
OUT=${3:-profile-out}
case $PEER in
floor | tunnel | tollgate) ;;
*)
    echo "scripts/profile.sh: unknown peer '$PEER' (floor, tunnel, tollgate)" >&2
    exit 64
    ;;
esac
case $WORKLOAD in
paced)
    mock=(--deltas 300 --delta-bytes 190 --token-rate 300 --terminal-pad-bytes 1024)
    run=(--workload stream --sessions 200 --duration 16s)
    ;;
firehose)
    mock=(--deltas 500 --delta-burst 64)
    run=(--workload firehose --sessions 64 --duration 14s)
    ;;
*)
    echo "scripts/profile.sh: unknown workload '$WORKLOAD' (paced, firehose)" >&2
    exit 64
    ;;
esac
cargo build --release --workspace -q
mkdir -p "$OUT"
scratch_dir
up=$(free_port)
port=$(free_port)
taskset -c 1 target/release/loadtest mock-upstream --listen "127.0.0.1:$up" "${mock[@]}" >"$dir/mock.log" 2>&1 &
pids+=($!)
wait_port "$up" "the mock upstream"
case $PEER in
tollgate | tunnel)
    extra=(--usage-log "$dir/usage.jsonl")
    [ "$PEER" = tunnel ] && extra=(--tunnel)
    taskset -c 0 "${TOLLGATE:-target/release/tollgate}" --listen "127.0.0.1:$port" --workers 1 --no-pin --driver uring \
        --upstream "ws://127.0.0.1:$up" --client-keys "$dir/keys" --upstream-header "Authorization: Bearer x" \
        --log warn --drain-timeout 2s "${extra[@]}" >"$dir/relay.log" 2>&1 &
    ;;
floor)
    taskset -c 0 "${FLOOR:-target/release/tollgate-floor}" "127.0.0.1:$port" "127.0.0.1:$up" >"$dir/relay.log" 2>&1 &
    ;;
esac
relay=$!
pids+=($relay)
wait_port "$port" "$PEER"
taskset -c 1 target/release/loadtest run --target "ws://127.0.0.1:$port/v1/responses" --key k1 "${run[@]}" \
    --threads 1 --no-progress >"$OUT/$PEER-$WORKLOAD.run.txt" 2>&1 &
gen=$!
sleep 3
perf record -F "${FREQ:-2000}" -g -p "$relay" -o "$OUT/$PEER-$WORKLOAD.perf.data" -- sleep 8 2>/dev/null
wait $gen
grep -E '^\| (frames/s|completed) ' "$OUT/$PEER-$WORKLOAD.run.txt" || true
echo "== $PEER, $WORKLOAD: CPU by binary"
perf report -i "$OUT/$PEER-$WORKLOAD.perf.data" --no-children --sort dso -q -g none 2>/dev/null | head -5
echo "== top functions"
perf report -i "$OUT/$PEER-$WORKLOAD.perf.data" --no-children --sort dso,sym -q -g none 2>/dev/null | head -25
echo "perf.data: $OUT/$PEER-$WORKLOAD.perf.data"
