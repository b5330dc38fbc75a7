"""The official `openai` Node SDK (`ResponsesWS`, over `ws`; pinned in tests/node) through
the relay to the mock upstream: two lanes at once, a chained turn, a create the relay
refuses (a model off the route's allowlist: an `error` event carrying the request's
`stream_id`, the socket stays open), and one more turn — checked in the SDK's view, in the
relay's session log, and in the usage records against the mock's ledger."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import RELAY_KEY, TENANT, MockRoute, RelayFactory
from test_openai_sdk import _usage_records

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "openai").is_dir():
        pytest.fail("node and tests/node/node_modules are required: run scripts/test-all.sh (npm ci)")
    return node


def test_node_sdk_lanes_chain_refusal_through_relay(
    driver: str, relay_factory: RelayFactory, mock_upstream: MockRoute, tmp_path: Path
) -> None:
    usage_log = tmp_path / "usage.jsonl"
    relay = relay_factory(
        mock_upstream.url,
        driver,
        usage_log=usage_log,
        extra=["--allow-model", "gpt-5", "--allow-model", "gpt-5-mini"],
    )
    run = subprocess.run(
        [_node(), str(NODE_DIR / "responses_ws.mjs"), f"http://127.0.0.1:{relay.port}/v1", RELAY_KEY, "gpt-4o"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, f"node client failed:\n{run.stderr}\n{run.stdout}"
    seen = json.loads(run.stdout.strip().splitlines()[-1])

    assert seen["lanes_interleaved"], seen
    assert seen["chained_cached"] > 0, "the continuation really chained on the upstream"
    refusal = seen["refusal"]
    assert refusal["type"] == "error" and refusal["stream_id"] == "c", refusal
    assert refusal["error"]["code"] == "model_not_allowed", refusal
    assert seen["last_type"] == "response.completed", "the session stayed open"

    ids = seen["ids"]
    assert len(set(ids)) == 4, ids
    ledger = {e["response_id"]: e for e in mock_upstream.mock.wait_ledger(4)}
    assert set(ledger) == set(ids), "the refused create never reached the upstream"
    records = _usage_records(usage_log, 4)
    assert sorted(r["response_id"] for r in records) == sorted(ids), records
    for r in records:
        e = ledger[r["response_id"]]
        assert r["tenant"] == TENANT and r["status"] == "completed", r
        assert (r["input_tokens"], r["output_tokens"]) == (e["input_tokens"], e["output_tokens"]), (r, e)
    lanes = sorted(str(r["stream_id"]) for r in records)
    assert lanes == ["None", "a", "a", "b"], lanes
    # The relay's own log saw the session and the refusal, and never the key.
    log = relay.log_text()
    assert "session closed" in log, log[-2000:]
    assert RELAY_KEY not in log
