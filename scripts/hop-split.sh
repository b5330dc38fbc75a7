#!/usr/bin/env bash
# The relay's hop split into user and kernel time: echo through one relay (16 conns, 200 B,
# open loop), the relay's thread traced on CPU 0 for 2 s, and per wake-up that forwarded
# data the time from its switch-in to the first data packet it sent, split into user time
# (between a syscall's return and the next syscall) and kernel time (the rest).
#   scripts/hop-split.sh PEER [RATE=8000]     PEER: floor | tunnel | tollgate | nginx
# Builds the workspace in release mode first; needs perf and, for nginx, nginx.
# TOLLGATE=path (or FLOOR=path) runs another build of the relay, e.g. to compare two.
# Tracing every syscall slows each one, so the hops here are longer than the bench's
# (`loadtest bench --only hop`, which traces only switches and packets); compare peers
# within one run of this script each, alternated (loadtest/BENCH-history.md "The relays' own hop
# across nine runs").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/common.sh
PEER=${1:?usage: scripts/hop-split.sh floor|tunnel|tollgate|nginx [RATE]}
RATE=${2:-8000}
case $PEER in
floor | tunnel | tollgate | nginx) ;;
*)
    echo "scripts/hop-split.sh: unknown peer '$PEER' (floor, tunnel, tollgate, nginx)" >&2
    exit 64
    ;;
esac
cargo build --release --workspace -q
scratch_dir
# Ports the kernel picks, so two runs (or anything else listening) do not collide.
up=$(free_port)
port=$(free_port)
taskset -c 1 target/release/loadtest mock-upstream --listen "127.0.0.1:$up" --echo >"$dir/mock.log" 2>&1 &
pids+=($!)
wait_port "$up" "the mock upstream"
case $PEER in
tollgate | tunnel)
    extra=()
    [ "$PEER" = tunnel ] && extra=(--tunnel)
    taskset -c 0 "${TOLLGATE:-target/release/tollgate}" --listen "127.0.0.1:$port" --workers 1 --no-pin --driver uring \
        --upstream "ws://127.0.0.1:$up" --client-keys "$dir/keys" --upstream-header "Authorization: Bearer x" \
        --log warn "${extra[@]}" >"$dir/relay.log" 2>&1 &
    ;;
floor)
    taskset -c 0 "${FLOOR:-target/release/tollgate-floor}" "127.0.0.1:$port" "127.0.0.1:$up" >"$dir/relay.log" 2>&1 &
    ;;
nginx)
    mkdir -p "$dir/n"
    cat >"$dir/n/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
user root;
pid $dir/n/nginx.pid;
worker_rlimit_nofile 20000;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path $dir/n/body; proxy_temp_path $dir/n/proxy; fastcgi_temp_path $dir/n/f;
  uwsgi_temp_path $dir/n/u; scgi_temp_path $dir/n/s;
  server { listen 127.0.0.1:$port; location / { proxy_pass http://127.0.0.1:$up;
    proxy_http_version 1.1; proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection "upgrade";
    proxy_buffering off; tcp_nodelay on; proxy_read_timeout 3600s; proxy_send_timeout 3600s; } }
}
EOF
    taskset -c 0 nginx -p "$dir/n/" -c "$dir/n/nginx.conf" -e "$dir/n/error.log" >"$dir/relay.log" 2>&1 &
    ;;
esac
pids+=($!)
wait_port "$port" "$PEER"
taskset -c 1 target/release/loadtest run --target "ws://127.0.0.1:$port" --key k1 --workload echo \
    --sessions 16 --rate "$RATE" --frame-bytes 200 --duration 6 --threads 1 --no-progress >"$dir/run.log" 2>&1 &
gen=$!
sleep 2.5
taskset -c 1 perf record -C 0 -q -o "$dir/perf.data" -e sched:sched_switch -e net:net_dev_queue \
    -e raw_syscalls:sys_enter -e raw_syscalls:sys_exit -- sleep 2 2>/dev/null
wait $gen
perf script -i "$dir/perf.data" --ns -F tid,time,event,trace 2>/dev/null | python3 -c '
import sys, statistics as st
peer, rate = sys.argv[1], sys.argv[2]
names = ("tollgate-w0", "tollgate-floor", "nginx")
rows, w = [], None
for line in sys.stdin:
    p = line.split()
    if len(p) < 3:
        continue
    try:
        tid, t = int(p[0]), float(p[1].rstrip(":")) * 1e6
    except ValueError:
        continue
    ev = p[2].rstrip(":")
    if ev == "sched:sched_switch":
        if w and w["tid"] == tid and w["pkt"] is not None:
            rows.append(w)
        w = None
        nxt = line.split("next_comm=")[1].split(" next_pid")[0]
        if nxt in names:
            w = {"tid": int(line.split("next_pid=")[1].split()[0]), "t0": t, "user": 0.0,
                 "since": None, "pkt": None, "n": 0}
        continue
    if not w or tid != w["tid"]:
        continue
    if ev == "raw_syscalls:sys_exit":
        if w["pkt"] is None:
            w["since"] = t
    elif ev == "raw_syscalls:sys_enter":
        if w["pkt"] is None and w["since"] is not None:
            w["user"] += t - w["since"]
            w["since"] = None
    elif ev == "net:net_dev_queue" and int(line.split("len=")[1].split()[0]) > 100:
        w["n"] += 1
        if w["pkt"] is None:
            w["pkt"] = t
if not rows:
    sys.exit("no wake-up of the relay forwarded data: is perf allowed to trace?")
def split(rs):
    m = lambda f: st.median(f(r) for r in rs)
    return (m(lambda r: r["pkt"] - r["t0"]), m(lambda r: r["user"]),
            m(lambda r: r["pkt"] - r["t0"] - r["user"]))
hop, user, kernel = split(rows)
one = [r for r in rows if r["n"] == 1] or rows
hop1, user1, kernel1 = split(one)
print(f"{peer} at {rate}/s: {len(rows)} wake-ups; to the first frame p50 {hop:.2f} us "
      f"(user {user:.2f}, kernel {kernel:.2f}); one-frame wake-ups ({len(one)}): "
      f"{hop1:.2f} us (user {user1:.2f}, kernel {kernel1:.2f})")
' "$PEER" "$RATE"
