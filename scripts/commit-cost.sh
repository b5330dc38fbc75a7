#!/usr/bin/env bash
# What one group commit of the usage log costs in CPU on this machine's disk, and what the
# ways around it would cost: each way makes BYTES durable COMMITS times (twice, in turn) in a
# fresh directory and prints the process's CPU (user + system, getrusage) and wall time per
# commit. The writer thread does the first: append, then `fdatasync`. The others are the
# cheaper commits tried for it (loadtest/BENCH-history.md, "The usage log's group-commit interval,
# a third time"):
#   append + fdatasync                 the usage log's commit
#   O_DSYNC append                     the same in one call
#   append + fdatasync, preallocated   64 MiB reserved ahead (FALLOC_FL_KEEP_SIZE)
#   pwrite in place + fdatasync        a pre-zeroed file written in place (no size change:
#                                      a write-ahead log's commit)
#   mmap journal + fdatasync of it     a pre-zeroed memory-mapped ring (the usage journal's
#                                      shape) made durable instead of the log, the log
#                                      appended and synced every 100th commit
#   append only                        no durability: the write's own cost
#   scripts/commit-cost.sh [--dir DIR] [--commits N] [--bytes B]
# DIR defaults to a new directory under ${TMPDIR:-/tmp} (the file system matters: put it
# where the usage log lives). Needs python3.
set -euo pipefail
dir=
commits=400
bytes=2048
while (($#)); do
    case $1 in
    --dir)
        dir=${2:?--dir needs a directory}
        shift 2
        ;;
    --commits | --bytes)
        [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || {
            echo "scripts/commit-cost.sh: $1 needs a positive number, not '${2:-}'" >&2
            exit 64
        }
        if [ "$1" = --commits ]; then commits=$2; else bytes=$2; fi
        shift 2
        ;;
    *)
        echo "scripts/commit-cost.sh: unknown argument '$1' (--dir DIR, --commits N, --bytes B)" >&2
        exit 64
        ;;
    esac
done
command -v python3 >/dev/null || {
    echo "scripts/commit-cost.sh: needs python3" >&2
    exit 69
}
if [ -z "$dir" ]; then
    dir=$(mktemp -d "${TMPDIR:-/tmp}/commit-cost.XXXXXX")
    trap 'rm -rf "$dir"' EXIT
fi
mkdir -p "$dir"
echo "in $dir ($(df -T "$dir" | awk 'NR==2 {print $1, $2}')), $commits commits of $bytes B each"
python3 - "$dir" "$commits" "$bytes" <<'EOF'
import ctypes, mmap, os, resource, sys, time

d, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
line = b"x" * (size - 1) + b"\n"
libc = ctypes.CDLL(None, use_errno=True)
FALLOC_FL_KEEP_SIZE = 1


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def fresh(name, flags=os.O_WRONLY | os.O_APPEND):
    p = os.path.join(d, name)
    if os.path.exists(p):
        os.unlink(p)
    return os.open(p, flags | os.O_CREAT, 0o640)


def zeroed(name, length):
    fd = fresh(name, os.O_RDWR)
    zeros = b"\0" * (1 << 20)
    left = length
    while left > 0:
        left -= os.write(fd, zeros[: min(left, len(zeros))])
    os.fsync(fd)
    return fd


def append_fdatasync():
    fd = fresh("log")
    return [fd], lambda i: (os.write(fd, line), os.fdatasync(fd))


def o_dsync():
    fd = fresh("log", os.O_WRONLY | os.O_APPEND | os.O_DSYNC)
    return [fd], lambda i: os.write(fd, line)


def preallocated():
    fd = fresh("log")
    if libc.fallocate(fd, FALLOC_FL_KEEP_SIZE, ctypes.c_long(0), ctypes.c_long(64 << 20)) != 0:
        raise OSError(ctypes.get_errno(), "fallocate")
    return [fd], lambda i: (os.write(fd, line), os.fdatasync(fd))


def in_place():
    fd = zeroed("wal", n * size + 4096)
    return [fd], lambda i: (os.pwrite(fd, line, i * size), os.fdatasync(fd))


def mmap_journal():
    cap = -(-(n * size + 4096) // 4096) * 4096
    jfd = zeroed("journal", cap)
    m = mmap.mmap(jfd, cap)
    fd = fresh("log")

    def step(i):
        m[i * size : (i + 1) * size] = line
        os.write(fd, line)
        os.fdatasync(jfd)
        if i % 100 == 99:
            os.fdatasync(fd)

    return [fd, jfd], step, m


def append_only():
    fd = fresh("log")
    return [fd], lambda i: os.write(fd, line)


ways = [
    ("append + fdatasync", append_fdatasync),
    ("O_DSYNC append", o_dsync),
    ("append + fdatasync, preallocated", preallocated),
    ("pwrite in place + fdatasync", in_place),
    ("mmap journal + fdatasync of it", mmap_journal),
    ("append only", append_only),
]
for rnd in (1, 2):
    for name, make in ways:
        made = make()
        fds, step = made[0], made[1]
        c, t = cpu(), time.monotonic()
        for i in range(n):
            step(i)
        c, t = cpu() - c, time.monotonic() - t
        print(f"round {rnd}  {name:34s} CPU {c / n * 1e6:7.1f} µs  wall {t / n * 1e6:7.1f} µs per commit")
        if len(made) > 2:
            made[2].close()
        for fd in fds:
            os.close(fd)
EOF
