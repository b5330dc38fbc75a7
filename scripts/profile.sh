#!/usr/bin/env bash
# Where one relay's CPU goes under the bench's paced or firehose load: `loadtest bench
# --peers PEER --only WORKLOAD` (one repetition; the case exactly as the bench defines it,
# relay on CPU 0 with one worker, the mock and the generator on CPU 1) under `perf record -g
# -C 0`; prints the split by binary (kernel, the relay's own code, libc) and the top
# functions of the relay's threads, and keeps perf.data for `perf report`.
#   scripts/profile.sh PEER [WORKLOAD=paced] [OUT=profile-out]
#     PEER: floor | tunnel | tollgate        WORKLOAD: paced | firehose
# Builds the workspace in release mode first; TOLLGATE=path profiles another build, e.g.
# target/pgo/release/tollgate (the floor is the `tollgate-floor` next to it, as in the
# bench). FREQ (default 2000) is perf's sampling rate. Compare peers within one sitting,
# each profiled in turn: the VM's speed moves by the hour.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
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
paced | firehose) ;;
*)
    echo "scripts/profile.sh: unknown workload '$WORKLOAD' (paced, firehose)" >&2
    exit 64
    ;;
esac
cargo build --release --workspace -q
mkdir -p "$OUT"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
data="$OUT/$PEER-$WORKLOAD.perf.data"
perf record -F "${FREQ:-2000}" -g -C 0 -o "$data" -- \
    target/release/loadtest bench --tollgate "${TOLLGATE:-target/release/tollgate}" --peers "$PEER" \
    --only "$WORKLOAD" --reps 1 --cpu-reps 1 --probe-reps 0 --no-install --out "$dir/bench" >"$dir/bench.log" 2>&1 || {
    echo "scripts/profile.sh: the bench failed:" >&2
    tail -5 "$dir/bench.log" >&2
    exit 1
}
cp "$dir/bench/bench.md" "$OUT/$PEER-$WORKLOAD.bench.md"
# CPU 0's samples of the relay's threads (`tollgate`, its worker `tollgate-w0`, the usage
# log's writer `tollgate-usage-`; the floor's one thread `tollgate-floor`), not the idle
# loop or kernel threads, as shares of the relay's own samples. (Filtered here rather than
# with `perf report --comms`, which with `--sort dso` drops the kernel's samples.)
relay_share() {
    perf report -i "$data" --no-children --sort "comm,$1" -q -g none 2>/dev/null |
        awk '$2 ~ /^tollgate/ { p = $1; sub(/%/, "", p); $1 = ""; $2 = ""; k = substr($0, 3)
                                 s[k] += p; t += p }
             END { for (k in s) printf "%7.2f%%  %s\n", 100 * s[k] / t, k }' | sort -rn
}
echo "== $PEER, $WORKLOAD: the relay's CPU by binary"
relay_share dso | head -4
echo "== top functions"
relay_share dso,sym | head -25
echo "perf.data: $data; the bench's report: $OUT/$PEER-$WORKLOAD.bench.md"
