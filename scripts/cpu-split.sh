#!/usr/bin/env bash
# Where a relay's CPU per frame goes: user space (its own instructions) or the kernel (the
# TCP stack, io_uring, scheduling). Runs `loadtest bench --only CASE` for the peers (their
# runs alternated by the bench's own schedule, REPS each) while `perf record` samples CPU 0
# — the relay's core — every PERIOD_US µs of CPU time (`-e cpu-clock`, no PMU needed;
# PERIOD_US from the environment, default 1000 as in the bench; 250 takes four times the
# samples at four times the cost),
# then attributes each sample to the run whose relay process was on the CPU, as user or
# kernel time, and divides by the frames that run forwarded.
#   scripts/cpu-split.sh [--peers LIST] [--only CASE] [--reps N]
#     LIST: peers of `loadtest bench` (default floor,tunnel,tollgate); CASE: paced (default)
#     or firehose; N: runs per peer (default 5).
#   scripts/cpu-split.sh --overhead [--reps N]
#     what the sampling itself costs: a busy loop pinned to CPU 0, its CPU time with and
#     without the same `perf record` attached, alternated N times (default 5); needs cc.
# TOLLGATE=path benches another build of the relay (e.g. target/pgo/release/tollgate).
# Builds the workspace in release mode first; needs perf.
#
# Why: the bench's CPU per frame is the sum of both, and on this VM the kernel part — the
# same syscalls and io_uring operations for the floor, `--tunnel` and tollgate — moves by
# ±15% between runs with the host, which hides a few-percent difference in the relays' own
# code (loadtest/BENCH-history.md "User space and kernel, sampled"). The samples split the two: the
# user-space part is what a relay's code adds on a shared kernel path.
# Each line also prints samples × PERIOD_US against the run's CPU clock (`check`): near 1.0
# when the sampling saw all of the relay's CPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PEERS=floor,tunnel,tollgate
PERIOD_US=${PERIOD_US:-1000}
CASE=paced
REPS=5
OVERHEAD=0
while [ $# -gt 0 ]; do
    case $1 in
    --overhead) OVERHEAD=1; shift ;;
    --peers) PEERS=${2:?--peers needs a list}; shift 2 ;;
    --only) CASE=${2:?--only needs a case}; shift 2 ;;
    --reps) REPS=${2:?--reps needs a number}; shift 2 ;;
    *)
        echo "scripts/cpu-split.sh: unknown argument '$1' (--peers LIST, --only paced|firehose, --reps N, --overhead)" >&2
        exit 64
        ;;
    esac
done
case $CASE in
paced | firehose) ;;
*)
    echo "scripts/cpu-split.sh: --only '$CASE': paced or firehose" >&2
    exit 64
    ;;
esac
[[ $PERIOD_US =~ ^[1-9][0-9]*$ ]] || {
    echo "scripts/cpu-split.sh: PERIOD_US '$PERIOD_US': a positive number of µs" >&2
    exit 64
}
[[ $REPS =~ ^[1-9][0-9]*$ ]] || {
    echo "scripts/cpu-split.sh: --reps '$REPS': a positive number" >&2
    exit 64
}
command -v perf >/dev/null || {
    echo "scripts/cpu-split.sh: perf not found (apt-get install linux-perf)" >&2
    exit 69
}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
if ((OVERHEAD)); then
    # A loop whose CPU time varies by well under 1% between runs on a quiet core (a
    # Python loop varies by ±8% here, more than the effect); built with the system's cc.
    command -v cc >/dev/null || {
        echo "scripts/cpu-split.sh: --overhead needs a C compiler, cc (apt-get install gcc)" >&2
        exit 69
    }
    cat >"$dir/spin.c" <<'C'
#include <stdio.h>
#include <time.h>
int main(void) {
    struct timespec a, b;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    volatile unsigned long x = 0;
    for (unsigned long i = 0; i < 3000000000UL; i++) x += i;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    printf("%.4f\n", (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
    return 0;
}
C
    cc -O1 -o "$dir/loop" "$dir/spin.c"
    # Called in a subshell (`$(spin)`, `spin >file &`): `exec` makes the loop the process
    # perf attaches to.
    spin() { exec taskset -c 0 "$dir/loop"; }
    plain=() sampled=()
    for _ in $(seq "$REPS"); do
        plain+=("$(spin)")
        spin >"$dir/spin" &
        p=$!
        perf record -q -e cpu-clock -c "${PERIOD_US}000" -p "$p" -o "$dir/perf.data" >/dev/null 2>&1 &
        q=$!
        wait "$p"
        kill -INT "$q" 2>/dev/null || true
        wait "$q" 2>/dev/null || true
        sampled+=("$(cat "$dir/spin")")
    done
    python3 - "${plain[*]}" "${sampled[*]}" "$PERIOD_US" <<'EOF'
import statistics as st, sys
a, b = ([float(x) for x in v.split()] for v in sys.argv[1:3])
period = float(sys.argv[3]) * 1e-6
ma, mb = st.median(a), st.median(b)
k = sum(y > x for x, y in zip(a, b))
print(f"busy loop on CPU 0, CPU seconds: without sampling {ma:.3f} ({min(a):.3f}–{max(a):.3f}), "
      f"sampled every {period * 1e6:g} µs {mb:.3f} ({min(b):.3f}–{max(b):.3f}): {100 * (mb / ma - 1):+.1f}%, "
      f"{(mb - ma) / (mb / period) * 1e6:.1f} µs per sample; sampled higher in {k} of {len(a)} pairs")
EOF
    exit 0
fi
cargo build --release --workspace -q
perf record -q -e cpu-clock -c "${PERIOD_US}000" -C 0 -o "$dir/perf.data" -- \
    target/release/loadtest bench --tollgate "${TOLLGATE:-target/release/tollgate}" --peers "$PEERS" \
    --only "$CASE" --reps 1 --cpu-reps "$REPS" --probe-reps 0 --out "$dir/bench" >"$dir/bench.log" 2>&1 || {
    echo "scripts/cpu-split.sh: the bench failed:" >&2
    tail -5 "$dir/bench.log" >&2
    exit 1
}
# Each sample to user space or the kernel by the bench's own rule (loadtest's sampler).
perf script -i "$dir/perf.data" -F pid,ip 2>/dev/null | target/release/loadtest split-samples >"$dir/samples"
python3 - "$dir" "$CASE" "$PEERS" "$PERIOD_US" <<'EOF'
import collections, glob, json, statistics as st, sys
d, case, peers = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
PERIOD_US = float(sys.argv[4])
# (pid, "user"|"kernel") -> samples, from `loadtest split-samples`: "PID USER KERNEL" lines
count = collections.Counter()
with open(f"{d}/samples") as f:
    for line in f:
        pid, user, kernel = (int(x) for x in line.split())
        count[(pid, "user")] += user
        count[(pid, "kernel")] += kernel
rows = collections.defaultdict(list)
for path in sorted(glob.glob(f"{d}/bench/runs/{case}-*.json")):
    run = json.load(open(path))
    rep = run.get("report") or {}
    sut = rep.get("sut") or {}
    c = rep.get("counts") or {}
    frames = c.get("frames_sent", 0) + c.get("frames_received", 0)
    if run.get("peer") not in peers or not frames or not sut.get("pids"):
        continue
    u = sum(count[(p, "user")] for p in sut["pids"]) * PERIOD_US / frames
    k = sum(count[(p, "kernel")] for p in sut["pids"]) * PERIOD_US / frames
    clock = sut["cpu_s"] * 1e6 / frames
    rows[run["peer"]].append((u, k, u + k, (u + k) / clock if clock else float("nan")))
if not rows:
    sys.exit(f"no {case} runs with a relay process in {d}/bench/runs")
def cell(xs, f=".2f"):
    return f"{st.median(xs):{f}} ({min(xs):{f}}–{max(xs):{f}})"
print(f"{case}: CPU µs per frame on the relay's core, sampled every {PERIOD_US:g} µs of CPU; "
      f"median (min–max) of {max(len(v) for v in rows.values())} runs per peer")
print(f"| peer | user | kernel | total | check |")
print(f"|---|---|---|---|---|")
for peer in peers:
    r = rows.get(peer)
    if not r:
        print(f"| {peer} | — | — | — | — |")
        continue
    print(f"| {peer} | {cell([x[0] for x in r])} | {cell([x[1] for x in r])} | "
          f"{cell([x[2] for x in r])} | {cell([x[3] for x in r])} |")
base = peers[0]
if base in rows:
    bt = st.median(x[2] for x in rows[base])
    bu = st.median(x[0] for x in rows[base])
    for peer in peers[1:]:
        if peer in rows:
            du = st.median(x[0] for x in rows[peer]) - bu
            print(f"{peer}: user space {du:+.2f} µs per frame against {base}, "
                  f"{100 * du / bt:+.1f}% of {base}'s total")
EOF
