#!/usr/bin/env bash
# How much memory one wake-up of a relay touches: the relay runs under valgrind's lackey
# (every instruction and data access traced, with the syscalls in between) while an echo
# goes through it (4 conns, 200 B, 25 echoes/s, 6 s). A wake-up is what the relay's
# threads run between two calls that may block (io_uring_enter waiting for a completion,
# epoll_wait). Per wake-up (medians over the middle half of the trace): distinct 64-byte
# code and data lines, distinct 4 KiB pages, instructions; then the code lines by function
# (means), and the data lines by the function that first touched them.
#   scripts/wake-footprint.sh PEER [TOP=15]    PEER: floor | tunnel | tollgate
# TOLLGATE=path (or FLOOR=path) traces another build of the relay, e.g. to compare two.
# Builds the workspace in release mode first; needs valgrind. The counts do not depend on
# the host's load, so they compare builds exactly, as long as each wake-up handles one
# completion's worth of work: the rate is low because lackey writes a line per access, and
# at 100 echoes/s, on a slower day of this VM, tollgate's wake-ups took two or three frames
# at once (the instruction quartiles printed show the mix); what a line costs when the
# relay wakes cold is `scripts/hop-split.sh`'s to measure (loadtest/BENCH-history.md "What a
# wake-up touches").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/common.sh
PEER=${1:?usage: scripts/wake-footprint.sh floor|tunnel|tollgate [TOP]}
TOP=${2:-15}
case $PEER in
floor | tunnel | tollgate) ;;
*)
    echo "scripts/wake-footprint.sh: unknown peer '$PEER' (floor, tunnel, tollgate)" >&2
    exit 64
    ;;
esac
command -v valgrind >/dev/null || {
    echo "scripts/wake-footprint.sh: valgrind not found (apt-get install valgrind)" >&2
    exit 69
}
cargo build --release --workspace -q
dir=$(mktemp -d)
pids=()
# lackey does not end on SIGTERM while the traced thread waits in io_uring_enter.
trap 'kill -KILL "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
echo "bench k1" >"$dir/keys"
target/release/loadtest mock-upstream --listen 127.0.0.1:0 --echo >"$dir/mock.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
    up=$(grep -o '127\.0\.0\.1:[0-9]*' "$dir/mock.log" | head -1 || true)
    [ -n "$up" ] && break
    sleep 0.1
done
[ -n "$up" ] || { echo "scripts/wake-footprint.sh: the mock upstream did not start" >&2; exit 1; }
port=$(free_port)
vg=(valgrind --tool=lackey --trace-mem=yes --trace-syscalls=yes --log-file="$dir/trace")
case $PEER in
floor)
    bin=${FLOOR:-target/release/tollgate-floor}
    "${vg[@]}" "$bin" "127.0.0.1:$port" "$up" >"$dir/relay.log" 2>&1 &
    ;;
tollgate | tunnel)
    bin=${TOLLGATE:-target/release/tollgate}
    extra=()
    [ "$PEER" = tunnel ] && extra=(--tunnel)
    "${vg[@]}" "$bin" --listen "127.0.0.1:$port" --workers 1 --no-pin --driver uring \
        --upstream "ws://$up" --client-keys "$dir/keys" --upstream-header "Authorization: Bearer x" \
        --log warn "${extra[@]}" >"$dir/relay.log" 2>&1 &
    ;;
esac
pids+=($!)
# Under valgrind the relay takes seconds to start listening.
wait_port "$port" "$PEER under valgrind" 30
target/release/loadtest run --target "ws://127.0.0.1:$port" --key k1 --workload echo \
    --sessions 4 --rate 25 --frame-bytes 200 --duration 6 --threads 1 --no-progress >"$dir/run.log" 2>&1 || {
    echo "scripts/wake-footprint.sh: the echo through $PEER failed:" >&2
    tail -5 "$dir/run.log" >&2
    exit 1
}
{
    kill -KILL "${pids[@]}"
    wait
} 2>/dev/null || true
pids=()
# valgrind maps a position-independent executable at 0x108000.
python3 - "$PEER" "$bin" "$dir/trace" "$TOP" <<'EOF'
import bisect, collections, re, statistics as st, subprocess, sys
peer, binary, trace, top = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
BASE = 0x108000
syms = []
nm = subprocess.run(["nm", "-n", "-S", "-C", "--defined-only", binary], capture_output=True, text=True)
for l in nm.stdout.splitlines():
    p = l.split(" ", 3)
    if len(p) == 4 and p[2] in "tTwW":
        syms.append((int(p[0], 16), int(p[1], 16), p[3]))
starts = [s[0] for s in syms]
def name(addr):
    r = addr - BASE
    i = bisect.bisect_right(starts, r) - 1
    if i >= 0 and r < syms[i][0] + max(syms[i][1], 1):
        return syms[i][2]
    return "(outside the binary: libc, vdso)"
blocking = re.compile(r"sys_io_uring_enter \( 0x[0-9a-f]+, \d+, (\d+)|sys_epoll_p?wait")
wakes, code, data, last = [], collections.Counter(), {}, 0
with open(trace, errors="replace") as f:
    for line in f:
        c = line[:2]
        if c == "I ":
            last = int(line.split()[1].split(",")[0], 16)
            code[last] += 1
        elif c in (" L", " S", " M"):
            data.setdefault(int(line.split()[1].split(",")[0], 16) >> 6, last)
        elif line.startswith("SYSCALL"):
            m = blocking.search(line)
            if m and (m.group(1) is None or int(m.group(1)) >= 1):
                wakes.append((code, data))
                code, data = collections.Counter(), {}
total = len(wakes)
wakes = [w for w in wakes[total // 4 : 3 * total // 4] if w[0]]
if not wakes:
    sys.exit("no wake-ups traced: did the echo reach the relay?")
n = len(wakes)
def med(f):
    return st.median(f(w) for w in wakes)
lines = lambda w: {a >> 6 for a in w[0]}
print(f"{peer}: {n} wake-ups (the middle half of {total}); per wake-up, medians:")
print(f"  code: {med(lambda w: len(lines(w))):g} lines on {med(lambda w: len({a >> 12 for a in w[0]})):g} pages; "
      f"data: {med(lambda w: len(w[1])):g} lines on {med(lambda w: len({l >> 6 for l in w[1]})):g} pages; "
      f"{med(lambda w: sum(w[0].values())):g} instructions")
ins = sorted(sum(w[0].values()) for w in wakes)
print(f"  instructions per wake-up: p25 {ins[n // 4]}, p75 {ins[3 * n // 4]}, max {ins[-1]}")
by_code, by_data = collections.Counter(), collections.Counter()
for w in wakes:
    for l in lines(w):
        by_code[name(l << 6)] += 1
    for toucher in w[1].values():
        by_data[name(toucher)] += 1
print(f"  code lines by function (mean per wake-up):")
for k, v in by_code.most_common(top):
    print(f"    {v / n:6.1f}  {k[:110]}")
print(f"  data lines by the function that first touched them (mean per wake-up):")
for k, v in by_data.most_common(top):
    print(f"    {v / n:6.1f}  {k[:110]}")
EOF
