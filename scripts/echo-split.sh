#!/usr/bin/env bash
# An echo through one relay split into its steps, from kernel tracepoints: one repetition of
# the bench's latency sweep at RATE (16 conns, 200 B, open loop; generator + mock in one
# thread on CPU 1, the relay on CPU 0), traced system-wide with `perf record -a -e
# sched:sched_waking -e sched:sched_switch -e net:net_dev_queue`. Each crossing of the relay
# (an echo crosses it twice: request and reply) is cut into five steps, median and p90 µs:
#   deliver   the load thread's data packet → the relay thread woken (on CPU 1: loopback,
#             TCP receive, the relay's wake-up callback — epoll's or io_uring's)
#   wake-up   woken → switched in, counted when CPU 0 was idle (the vCPU's wake-up)
#   hop       switched in → its first data packet (the bench's hop: its own work)
#   return    its data packet → the load thread woken (on CPU 0, in the relay's send)
#   load      the load thread woken → switched in on CPU 1
# A data packet is a `net_dev_queue` of more than 100 bytes (pure ACKs are 54–74); the
# relay's thread is the one sending most of them on CPU 0, the load thread on CPU 1.
# The hop step is the bench's hop (`loadtest/src/gen/hops.rs`, the same switch-in → first
# data packet over 100 bytes) measured again here, because the other steps need the
# wakings (`sched_waking`) in the same trace, which the bench's hop case does not record.
#   scripts/echo-split.sh PEER [RATE=8000]   PEER: floor | tunnel | tollgate | nginx | haproxy
# Needs release builds of loadtest (and of tollgate-floor for `floor`), perf, python3, and
# nginx or haproxy for those peers; TOLLGATE=path runs another tollgate build (default
# target/pgo/release/tollgate if built, else target/release/tollgate). The tracepoints slow
# every step a little: compare peers alternated, one run of this script each
# (loadtest/BENCH.md "Since bfull84: an echo at 8k/s split into its steps").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PEER=${1:?usage: scripts/echo-split.sh floor|tunnel|tollgate|nginx|haproxy [RATE]}
RATE=${2:-8000}
if [ $# -gt 2 ]; then
    echo "scripts/echo-split.sh: unexpected argument '$3' (PEER [RATE])" >&2
    exit 64
fi
case $PEER in
floor | tunnel | tollgate | nginx | haproxy) ;;
*)
    echo "scripts/echo-split.sh: unknown peer '$PEER' (floor, tunnel, tollgate, nginx, haproxy)" >&2
    exit 64
    ;;
esac
case $RATE in
'' | *[!0-9]*)
    echo "scripts/echo-split.sh: RATE must be frames per second, a whole number (got '$RATE')" >&2
    exit 64
    ;;
esac
TOLLGATE=${TOLLGATE:-}
if [ -z "$TOLLGATE" ]; then
    TOLLGATE=target/release/tollgate
    [ -x target/pgo/release/tollgate ] && TOLLGATE=target/pgo/release/tollgate
fi
for bin in target/release/loadtest "$TOLLGATE"; do
    if [ ! -x "$bin" ]; then
        echo "scripts/echo-split.sh: $bin is not built (cargo build --release --bins)" >&2
        exit 69
    fi
done
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
perf record -a -q -o "$dir/perf.data" -e sched:sched_waking -e sched:sched_switch \
    -e net:net_dev_queue -- target/release/loadtest bench --tollgate "$TOLLGATE" \
    --peers "$PEER" --only "sweep@$RATE" --reps 1 --sweep-reps 1 --no-install \
    --out "$dir/out" >"$dir/bench.log" 2>&1 || {
    echo "scripts/echo-split.sh: the bench failed; its log:" >&2
    cat "$dir/bench.log" >&2
    exit 1
}
p50=$(python3 -c 'import json,glob,sys
r = json.load(open(glob.glob(sys.argv[1] + "/runs/sweep-*.json")[0]))["report"]
print("%.1f" % r["latency"]["echo"]["p50_us"])' "$dir/out")
perf script -i "$dir/perf.data" --ns -F tid,cpu,time,event,trace 2>/dev/null |
    python3 -c '
import re, sys
from collections import Counter
peer, rate, p50 = sys.argv[1:4]
line_re = re.compile(r"^\s*(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)$")
events = []
for line in sys.stdin:
    m = line_re.match(line)
    if m:
        events.append((int(m[1]), int(m[2]), float(m[3]), m[4], m[5]))
def data_len(trace):
    m = re.search(r"len=(\d+)", trace)
    return int(m[1]) if m else 0
senders = [Counter(), Counter()]
for tid, cpu, _, ev, tr in events:
    if ev == "net:net_dev_queue" and cpu in (0, 1) and data_len(tr) > 100:
        senders[cpu][tid] += 1
if not senders[0] or not senders[1]:
    sys.exit("scripts/echo-split.sh: no data packets on CPU 0 and CPU 1 in the trace")
relay, load = senders[0].most_common(1)[0][0], senders[1].most_common(1)[0][0]
steps = {k: [] for k in ("deliver", "wake-up", "hop", "return", "load")}
load_sent = relay_woken = relay_in = relay_sent = load_woken = None
for tid, cpu, t, ev, tr in events:
    if ev == "sched:sched_waking":
        pid = int(re.search(r"pid=(\d+)", tr)[1])
        if pid == relay:
            relay_woken = t
            if load_sent is not None:
                steps["deliver"].append(t - load_sent)
                load_sent = None
        elif pid == load:
            load_woken = t
            if relay_sent is not None and tid == relay:
                steps["return"].append(t - relay_sent)
                relay_sent = None
    elif ev == "sched:sched_switch":
        nxt = int(re.search(r"next_pid=(\d+)", tr)[1])
        prev = int(re.search(r"prev_pid=(\d+)", tr)[1])
        if nxt == relay and cpu == 0:
            if relay_woken is not None and prev == 0:
                steps["wake-up"].append(t - relay_woken)
            relay_woken, relay_in = None, t
        elif prev == relay:
            relay_in = None
        if nxt == load and load_woken is not None:
            steps["load"].append(t - load_woken)
            load_woken = None
    elif ev == "net:net_dev_queue" and data_len(tr) > 100:
        if tid == relay and cpu == 0:
            if relay_in is not None:
                steps["hop"].append(t - relay_in)
                relay_in = None
            relay_sent = t
        elif tid == load and cpu == 1:
            load_sent = t
def q(v, f):
    v = sorted(v)
    return v[int(f * (len(v) - 1))] * 1e6
print(f"echo through {peer} at {rate}/s: p50 {p50} µs (the bench report of this traced run)")
print("%-8s %8s %8s %7s" % ("step", "p50 µs", "p90 µs", "count"))
total = 0.0
for name, v in steps.items():
    if v:
        total += q(v, 0.5)
        print(f"{name:8s} {q(v, 0.5):8.2f} {q(v, 0.9):8.2f} {len(v):7d}")
    else:
        print("%-8s %8s %8s %7d" % (name, "-", "-", 0))
print(f"sum of the p50s, one crossing: {total:.2f} µs")
' "$PEER" "$RATE" "$p50"
