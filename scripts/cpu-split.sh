#!/usr/bin/env bash
# Where a relay's CPU per frame goes: user space (its own instructions) or the kernel (the
# TCP stack, io_uring, scheduling). Runs `loadtest bench --only CASE` for the peers (their
# runs alternated by the bench's own schedule, REPS each) while `perf record` samples CPU 0
# — the relay's core — every 250 µs of CPU time (`-e cpu-clock -c 250000`, no PMU needed),
# then attributes each sample to the run whose relay process was on the CPU, as user or
# kernel time, and divides by the frames that run forwarded.
#   scripts/cpu-split.sh [--peers LIST] [--only CASE] [--reps N]
#     LIST: peers of `loadtest bench` (default floor,tunnel,tollgate); CASE: paced (default)
#     or firehose; N: runs per peer (default 5).
# TOLLGATE=path benches another build of the relay (e.g. target/pgo/release/tollgate).
# Builds the workspace in release mode first; needs perf.
#
# Why: the bench's CPU per frame is the sum of both, and on this VM the kernel part — the
# same syscalls and io_uring operations for the floor, `--tunnel` and tollgate — moves by
# ±15% between runs with the host, which hides a few-percent difference in the relays' own
# code (loadtest/BENCH.md "User space and kernel, sampled"). The samples split the two: the
# user-space part is what a relay's code adds on a shared kernel path, and it is stable.
# Each line also prints samples × 250 µs against the run's CPU clock (`check`): near 1.0
# when the sampling saw all of the relay's CPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PEERS=floor,tunnel,tollgate
CASE=paced
REPS=5
while [ $# -gt 0 ]; do
    case $1 in
    --peers) PEERS=${2:?--peers needs a list}; shift 2 ;;
    --only) CASE=${2:?--only needs a case}; shift 2 ;;
    --reps) REPS=${2:?--reps needs a number}; shift 2 ;;
    *)
        echo "scripts/cpu-split.sh: unknown argument '$1' (--peers LIST, --only paced|firehose, --reps N)" >&2
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
[[ $REPS =~ ^[1-9][0-9]*$ ]] || {
    echo "scripts/cpu-split.sh: --reps '$REPS': a positive number" >&2
    exit 64
}
command -v perf >/dev/null || {
    echo "scripts/cpu-split.sh: perf not found (apt-get install linux-perf)" >&2
    exit 69
}
cargo build --release --workspace -q
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
perf record -q -e cpu-clock -c 250000 -C 0 -o "$dir/perf.data" -- \
    target/release/loadtest bench --tollgate "${TOLLGATE:-target/release/tollgate}" --peers "$PEERS" \
    --only "$CASE" --reps 1 --cpu-reps "$REPS" --out "$dir/bench" >"$dir/bench.log" 2>&1 || {
    echo "scripts/cpu-split.sh: the bench failed:" >&2
    tail -5 "$dir/bench.log" >&2
    exit 1
}
perf script -i "$dir/perf.data" -F pid,ip 2>/dev/null >"$dir/samples"
python3 - "$dir" "$CASE" "$PEERS" <<'EOF'
import collections, glob, json, statistics as st, sys
d, case, peers = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
PERIOD_US = 250.0
KERNEL = 0xffff800000000000
# (pid, "user"|"kernel") -> samples
count = collections.Counter()
with open(f"{d}/samples") as f:
    for line in f:
        p = line.split()
        if len(p) < 2:
            continue
        try:
            pid, ip = int(p[0]), int(p[1], 16)
        except ValueError:
            continue
        count[(pid, "kernel" if ip >= KERNEL else "user")] += 1
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
