#!/usr/bin/env bash
# Side-by-side benchmark: direct, tollgate --tunnel, tollgate (io_uring, with and
# without --usage-log, and epoll), nginx, haproxy in
# front of the same mock upstream, SUT pinned to CPU 0, generator + mock to CPU 1.
# Method: shared/benchmarking.md. Output: bench-out/ (bench.md, bench.json,
# sweep.svg, runs/*.json). Installs nginx-light and haproxy with apt-get when
# missing (pass --no-install to skip them instead).
#
#   scripts/bench.sh            # 3 repetitions (7 of paced and firehose plus 1 probe repetition, 9 per sweep rate)
#   scripts/bench.sh --quick    # 1 repetition, short runs, < 3 min
#   scripts/bench.sh --full     # also 4,000 and 9,000 idle sessions, and a second pass with
#                               # a wss:// upstream leg (production's shape) into OUT/tls-upstream
#   scripts/bench.sh --pgo …    # tollgate (and its tunnel) as scripts/build-pgo.sh builds it
#   scripts/bench.sh --dry-run … # print the loadtest commands, build and run nothing
#
# Other arguments go to `loadtest bench` (see its --help). The TLS pass (`--tls upstream`:
# paced CPU per frame and 4,000 idle sessions of the tunnel, tollgate, nginx and HAProxy)
# judges the issue's idle target with TLS — tollgate's KiB per session at or below
# HAProxy's on the same legs — which a plain run cannot. It runs only with --full and
# none of --tls, --only, --peers, --history, --render (those choose a run of their own).
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
pgo=0
dry=0
full=0
own=0
out=bench-out
while [ $# -gt 0 ]; do
    case $1 in
    --pgo) pgo=1 ;;
    --dry-run) dry=1 ;;
    --full)
        full=1
        args+=("$1")
        ;;
    --out)
        [ $# -ge 2 ] || {
            echo "scripts/bench.sh: '--out' needs a directory" >&2
            exit 64
        }
        out=$2
        shift
        ;;
    --out=*) out=${1#--out=} ;;
    --tls | --tls=* | --only | --only=* | --peers | --peers=* | --history | --history=* | --render | --render=*)
        own=1
        args+=("$1")
        ;;
    *) args+=("$1") ;;
    esac
    shift
done
tollgate=()
if ((pgo)); then
    tollgate=(--tollgate target/pgo/release/tollgate)
fi
plain=(target/release/loadtest bench "${tollgate[@]}" "${args[@]}" --out "$out")
tls=()
if ((full && !own)); then
    tls=(target/release/loadtest bench "${tollgate[@]}" "${args[@]}" --tls upstream
        --peers tunnel,tollgate,nginx,haproxy --only paced --only idle-4000 --out "$out/tls-upstream")
fi
if ((dry)); then
    echo "${plain[*]}"
    [ ${#tls[@]} -eq 0 ] || echo "${tls[*]}"
    exit 0
fi
cargo build --release --workspace
if ((pgo)); then
    scripts/build-pgo.sh >/dev/null
fi
"${plain[@]}"
if [ ${#tls[@]} -gt 0 ]; then
    "${tls[@]}"
fi
