#!/usr/bin/env bash
# Installs the Debian packages the test suite needs when they are missing (and only then),
# so `scripts/test-all.sh` works on a fresh Debian machine that has only the Rust toolchain
# and python3. Run by scripts/test-all.sh and .ci/run; safe to run again.
#
#   python3-venv   `python3 -m venv` for the pinned Python test tools (openai SDK,
#                  websockets, kosoku); Debian splits venv out of python3
#   nodejs, npm    the pinned Node clients in tests/node (openai Node SDK, Codex CLI),
#                  installed there with `npm ci`
#   nats-server    NATS JetStream, the fleet's usage-record stream (tests/fleet_export.rs)
#   redis-server   Redis, the fleet's shared budgets and session caps (tests/fleet_budget.rs)
#
# Needs root (or sudo) only when something is missing; otherwise it prints the command.
set -euo pipefail

missing=()
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v nats-server >/dev/null || missing+=(nats-server)
command -v redis-server >/dev/null || missing+=(redis-server)

((${#missing[@]})) || exit 0

echo "==> installing Debian packages: ${missing[*]}" >&2
if [[ $(id -u) -eq 0 ]]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo apt-get update -q
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
else
    echo "scripts/install-deps.sh: missing ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
