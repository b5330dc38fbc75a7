#!/usr/bin/env bash
# Side-by-side benchmark: direct, tollgate --tunnel, tollgate (io_uring, with and
# without --usage-log, and epoll), nginx, haproxy in
# front of the same mock upstream, SUT pinned to CPU 0, generator + mock to CPU 1.
# Method: shared/benchmarking.md. Output: bench-out/ (bench.md, bench.json,
# sweep.svg, runs/*.json). Installs nginx-light and haproxy with apt-get when
# missing (pass --no-install to skip them instead).
#
#   scripts/bench.sh            # 3 repetitions (7 of paced and firehose, 9 per sweep rate)
#   scripts/bench.sh --quick    # 1 repetition, short runs, < 3 min
#   scripts/bench.sh --full     # also 4,000 and 9,000 idle sessions
#   scripts/bench.sh --pgo …    # tollgate (and its tunnel) as scripts/build-pgo.sh builds it
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
pgo=0
for a in "$@"; do
    if [ "$a" = --pgo ]; then
        pgo=1
    else
        args+=("$a")
    fi
done
cargo build --release --workspace
if ((pgo)); then
    scripts/build-pgo.sh >/dev/null
    args=(--tollgate target/pgo/release/tollgate "${args[@]}")
fi
exec target/release/loadtest bench "${args[@]}"
