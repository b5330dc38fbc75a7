"""The Codex CLI (npm `@openai/codex`, pinned in tests/node) through the relay: a custom
provider pointing at the relay (`base_url`, `wire_api = "responses"`,
`supports_websockets = true`, `env_key`) runs `codex exec` against the mock upstream and
finishes a turn over WebSocket. Checked where it counts: the relay's session log (a
WebSocket session on /v1/responses carried the frames — no HTTP fallback), the upgrade the
upstream received (Codex's headers forwarded, the provider key injected, the relay key
gone), and the usage records against the mock's ledger (warm-up and turn, one record each).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import PROVIDER_KEY, RELAY_KEY, TENANT, MockRoute, RelayFactory
from test_openai_sdk import _usage_records

CODEX = Path(__file__).resolve().parents[1] / "node" / "node_modules" / ".bin" / "codex"


def test_codex_exec_finishes_a_turn_over_websocket(
    driver: str, relay_factory: RelayFactory, mock_upstream: MockRoute, tmp_path: Path
) -> None:
    if shutil.which("node") is None or not CODEX.exists():
        pytest.fail("the Codex CLI is installed by scripts/test-all.sh (npm ci in tests/node)")
    usage_log = tmp_path / "usage.jsonl"
    relay = relay_factory(mock_upstream.url, driver, usage_log=usage_log)
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f"""model = "gpt-5"
model_provider = "tollgate"

[model_providers.tollgate]
name = "tollgate"
base_url = "http://127.0.0.1:{relay.port}/v1"
wire_api = "responses"
supports_websockets = true
env_key = "TOLLGATE_KEY"
"""
    )
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_"))}
    env.update(CODEX_HOME=str(home), TOLLGATE_KEY=RELAY_KEY, HOME=str(tmp_path), NO_COLOR="1")
    run = subprocess.run(
        [str(CODEX), "exec", "--skip-git-repo-check", "say hi"],
        stdin=subprocess.DEVNULL,
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "token relay café" in out, f"the mock's answer reached Codex:\n{out[-4000:]}"

    # The relay carried it as a WebSocket session (Codex would otherwise fall back to HTTP,
    # which the relay does not serve): one session on /v1/responses, frames both ways.
    log = relay.log_text()
    sessions = [l for l in log.splitlines() if "session closed" in l]
    assert len(sessions) == 1, log[-4000:]
    m = re.search(r"frames_up=(\d+).*frames_down=(\d+)", sessions[0])
    assert m and int(m.group(1)) >= 2 and int(m.group(2)) >= 10, sessions[0]
    assert "path=/v1/responses" in sessions[0]
    assert RELAY_KEY not in log

    heads = [h.decode("latin-1").lower() for h in mock_upstream.heads()]
    assert len(heads) == 1, heads
    head = heads[0]
    assert "openai-beta: responses_websockets=" in head, head
    assert "originator: codex" in head, head
    assert f"authorization: bearer {PROVIDER_KEY}".lower() in head
    assert RELAY_KEY.lower() not in head
    assert "permessage-deflate" not in head, "compression is never offered upstream"

    # Warm-up (generate: false) and the turn: one record each, equal to the ledger.
    ledger = {e["response_id"]: e for e in mock_upstream.mock.wait_ledger(2)}
    records = _usage_records(usage_log, len(ledger))
    assert {r["response_id"] for r in records} == set(ledger), (records, ledger)
    for r in records:
        e = ledger[r["response_id"]]
        assert r["tenant"] == TENANT and r["status"] == "completed", r
        assert (r["input_tokens"], r["output_tokens"]) == (e["input_tokens"], e["output_tokens"])
    assert any(r["output_tokens"] == 0 for r in records), "the warm-up is metered too"
    assert any(r["output_tokens"] > 0 for r in records)
