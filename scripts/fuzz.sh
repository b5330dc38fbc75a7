#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/fuzz_targets/ (or those named), one after the other,
# each for SECONDS; each target's header says what it asserts. A target's corpus is
# fuzz/corpus/TARGET (kept between runs, not tracked), read together with fuzz/seeds/TARGET
# when that exists (never written to). `cargo fuzz run` builds each target first (release,
# with AddressSanitizer; ~5 minutes on 2 cores the first time).
# Exits 1 at the first target that fails to build, crashes, panics or times out, naming the
# input libFuzzer kept in fuzz/artifacts/TARGET/ and the command that replays it; 0 when
# every target ran its time clean.
#   scripts/fuzz.sh [SECONDS=60] [TARGET...]      (no TARGET: every one)
# Needs the nightly toolchain (`rustup toolchain install nightly`; the relay itself builds on
# stable) and cargo-fuzz: when `cargo +nightly fuzz` is missing it installs the version
# pinned here. Run it by hand: CI checks that the targets compile (`.ci/run`) and runs the
# session target's harness on fixed scripts (`tests/session_script.rs`), but fuzzes nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CARGO_FUZZ_VERSION=0.13.2
SECONDS_EACH=${1:-60}
case $SECONDS_EACH in
'' | *[!0-9]* | 0)
    echo "scripts/fuzz.sh: seconds per target must be a positive integer, not '$SECONDS_EACH'" >&2
    exit 64
    ;;
esac
shift $(($# > 0 ? 1 : 0))
known=()
for f in fuzz/fuzz_targets/*.rs; do
    known+=("$(basename "$f" .rs)")
done
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${known[@]}")
for t in "${targets[@]}"; do
    if [[ " ${known[*]} " != *" $t "* ]]; then
        echo "scripts/fuzz.sh: unknown target '$t' (${known[*]})" >&2
        exit 64
    fi
done
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "scripts/fuzz.sh: no nightly toolchain (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "scripts/fuzz.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in "${targets[@]}"; do
    corpus=("fuzz/corpus/$t")
    mkdir -p "${corpus[0]}" "fuzz/artifacts/$t"
    [[ -d fuzz/seeds/$t ]] && corpus+=("fuzz/seeds/$t")
    echo "== $t: ${SECONDS_EACH}s, corpus ${corpus[*]}"
    if ! cargo +nightly fuzz run -O "$t" "${corpus[@]}" -- -max_total_time="$SECONDS_EACH" \
        >"$log" 2>&1; then
        tail -40 "$log" >&2
        artifact=$(grep -o "fuzz/artifacts/$t/[^ ]*" "$log" | tail -1 || true)
        echo "scripts/fuzz.sh: $t failed; input: ${artifact:-see above}" >&2
        echo "replay: cargo +nightly fuzz run -O $t ${artifact:-ARTIFACT}" >&2
        exit 1
    fi
    grep -E '^Done [0-9]+ runs' "$log" || tail -1 "$log"
    echo "   corpus: $(find "${corpus[0]}" -type f | wc -l) inputs"
done
