#!/usr/bin/env bash
# The repository's test command: every Rust test, then the Python end-to-end suite.
#
#   scripts/test-all.sh
#
# 0. scripts/install-deps.sh: the Debian packages the suite needs, when missing
# 1. .venv with the pinned Python test dependencies (requirements-test.txt); created if
#    missing, re-synced when requirements-test.txt changes; tests/node/node_modules from
#    its package-lock.json (`npm ci`) likewise.
# 2. cargo build --workspace --all-targets   (the relay and `loadtest` binaries the
#    Python suite launches, plus benches/examples so they keep compiling)
# 3. cargo test --workspace --no-fail-fast
# 4. .venv/bin/pytest -q tests/py           (openai Python and Node SDKs, Codex CLI,
#                                             websockets peer, Autobahn/kosoku)
#
# A failed build stops the script; failing tests in step 3 still let step 4 run, and the
# script then exits 1.
#
# Environment: PYTHON (default python3) creates the venv; PYTEST_TIMEOUT (default 900 s)
# bounds the Python suite; extra arguments are passed to pytest.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
PYTEST_TIMEOUT=${PYTEST_TIMEOUT:-900}
VENV="$ROOT/.venv"
STAMP="$VENV/.requirements-test.sha256"

step() { printf '\n==> %s\n' "$*" >&2; }
start=$SECONDS

bash "$ROOT/scripts/install-deps.sh"

# A build and test run from a clean clone leaves about 9 GiB in target/ (debug and
# release, with debuginfo). Say so up front when the disk cannot hold that: running out
# of space half-way shows up as an unrelated-looking failure (npm's unpacker, a linker).
NEED_KIB=$((10 * 1024 * 1024))
have_kib=$(df -Pk "$ROOT" | awk 'NR == 2 { print $4 }')
used_kib=$(du -sk "$ROOT/target" 2>/dev/null | cut -f1 || true)
if ((have_kib + ${used_kib:-0} < NEED_KIB)); then
    printf 'warning: %s MiB free for %s (target/ holds %s MiB); a run from a clean clone needs about %s MiB\n' \
        "$((have_kib / 1024))" "$ROOT" "$((${used_kib:-0} / 1024))" "$((NEED_KIB / 1024))" >&2
fi

want=$(sha256sum requirements-test.txt | cut -d' ' -f1)
if [[ ! -x "$VENV/bin/python" ]]; then
    step "creating $VENV ($("$PYTHON" --version 2>&1))"
    "$PYTHON" -m venv "$VENV"
fi
if [[ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ]]; then
    step "installing requirements-test.txt into .venv"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r requirements-test.txt
    echo "$want" >"$STAMP"
else
    step ".venv is up to date with requirements-test.txt"
fi

# The pinned Node clients (openai Node SDK, Codex CLI): `npm ci` from the lockfile, again
# only when the lockfile changed. At --loglevel=warn because npm's unpacker reports a full
# disk (ENOSPC) as a warning: at =error a failed `npm ci` printed only where its log was.
NODE_DIR="$ROOT/tests/node"
NODE_STAMP="$NODE_DIR/node_modules/.package-lock.sha256"
node_want=$(sha256sum "$NODE_DIR/package-lock.json" | cut -d' ' -f1)
if [[ "$(cat "$NODE_STAMP" 2>/dev/null || true)" != "$node_want" ]]; then
    step "npm ci in tests/node (openai Node SDK, Codex CLI)"
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=warn)
    echo "$node_want" >"$NODE_STAMP"
else
    step "tests/node/node_modules is up to date with package-lock.json"
fi

step "cargo build --workspace --all-targets"
cargo build --workspace --all-targets

# A failing suite does not hide the next one: both run, and any failure fails the script.
failed=()

step "cargo test --workspace --no-fail-fast"
cargo test --workspace --no-fail-fast || failed+=("cargo test (exit $?)")

step "pytest -q tests/py (timeout ${PYTEST_TIMEOUT}s)"
timeout --kill-after=30 "$PYTEST_TIMEOUT" "$VENV/bin/pytest" -q tests/py "$@" || failed+=("pytest (exit $?)")

if ((${#failed[@]})); then
    step "FAILED after $((SECONDS - start)) s: ${failed[*]}"
    exit 1
fi
step "all tests passed in $((SECONDS - start)) s"
