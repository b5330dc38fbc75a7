"""The official `openai` SDK in WebSocket mode, through the relay, to the mock upstream.

client.responses.connect() (base_url=http://relay/v1, api_key = the relay key)
  → relay (managed mode: checks the relay key, sends the provider key upstream)
  → recording shim → `loadtest mock-upstream`.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI
from websockets.exceptions import InvalidStatus

from conftest import PROVIDER_KEY, RELAY_KEY, TENANT, MockRoute, RelayFactory

TURN_TIMEOUT = 20.0
TERMINAL = {"response.completed", "response.incomplete", "response.failed", "error"}


async def _turn(conn: Any, **create: Any) -> list[Any]:
    """Send one `response.create` and collect events up to the terminal one (bounded)."""
    await conn.send({"type": "response.create", **create})
    events = []

    async def _collect() -> None:
        while True:
            ev = await conn.recv()
            events.append(ev)
            if ev.type in TERMINAL:
                return

    await asyncio.wait_for(_collect(), TURN_TIMEOUT)
    return events


def _usage_records(path: Path, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Poll the relay's usage log (JSON lines) until it holds `n` records."""
    deadline = time.monotonic() + timeout
    while True:
        recs = []
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    recs.append(json.loads(line))
                except ValueError:
                    pass
        if len(recs) >= n or time.monotonic() >= deadline:
            return recs
        time.sleep(0.02)


def test_sdk_two_turns_through_relay(
    driver: str, relay_factory: RelayFactory, mock_upstream: MockRoute, tmp_path: Path
) -> None:
    usage_log = tmp_path / "usage.jsonl"
    relay = relay_factory(mock_upstream.url, driver, usage_log=usage_log)

    async def main() -> tuple[list[Any], list[Any], list[Any]]:
        client = AsyncOpenAI(api_key=RELAY_KEY, base_url=f"http://127.0.0.1:{relay.port}/v1", max_retries=0)
        async with client.responses.connect(
            websocket_connection_options={"open_timeout": 10, "close_timeout": 5}
        ) as conn:
            first = await _turn(conn, model="gpt-5", input="hello", store=False)
            rid = first[-1].response.id
            second = await _turn(conn, model="gpt-5", input="again", store=False, previous_response_id=rid)
            # The mock checks previous_response_id against its connection-local cache:
            # an unknown id is answered with an `error` event (so turn 2 really chained).
            bogus = await _turn(conn, model="gpt-5", input="x", store=False, previous_response_id="resp_nope")
        return first, second, bogus

    first, second, bogus = asyncio.run(asyncio.wait_for(main(), 60))

    for events in (first, second):
        types = [e.type for e in events]
        assert types[0] == "response.created", types
        assert types[-1] == "response.completed", types
        assert types.count("response.output_text.delta") == 5, types
        seqs = [e.sequence_number for e in events]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"events reordered or lost: {seqs}"
        created, done = events[0].response, events[-1].response
        assert created.id == done.id
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert done.output[0].content[0].text == text
        assert done.usage.output_tokens == 5
    first_id, second_id = first[-1].response.id, second[-1].response.id
    assert first_id != second_id
    # The mock bills cached tokens only for a chained turn, and refuses unknown ids.
    assert first[-1].response.usage.input_tokens_details.cached_tokens == 0
    assert second[-1].response.usage.input_tokens_details.cached_tokens > 0
    assert [e.type for e in bogus] == ["error"], bogus
    assert bogus[0].error.code == "previous_response_not_found", bogus

    # One upstream connection carried both turns, and it carried the provider key only.
    heads = mock_upstream.heads()
    assert len(heads) == 1, heads
    head = heads[0].decode("latin-1")
    auth = [line for line in head.split("\r\n") if line.lower().startswith("authorization:")]
    assert auth == [f"authorization: Bearer {PROVIDER_KEY}"] or auth == [f"Authorization: Bearer {PROVIDER_KEY}"], head
    assert RELAY_KEY not in head
    assert head.startswith("GET /v1/responses"), head

    # Upstream billed exactly these two responses, and the relay metered the same usage.
    ledger = mock_upstream.mock.wait_ledger(2)
    assert [e["response_id"] for e in ledger] == [first_id, second_id]
    records = _usage_records(usage_log, 2)
    by_id = {r["response_id"]: r for r in records}
    assert set(by_id) == {first_id, second_id}, records
    for entry in ledger:
        rec = by_id[entry["response_id"]]
        assert rec["tenant"] == TENANT
        assert rec["status"] == "completed"
        assert rec["usage_final"] is True
        for k in ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens"):
            assert rec[k] == entry[k], (k, rec, entry)
    assert RELAY_KEY not in relay.log_text()


def test_sdk_wrong_key_is_refused(driver: str, relay_factory: RelayFactory, mock_upstream: MockRoute) -> None:
    relay = relay_factory(mock_upstream.url, driver)

    async def main() -> None:
        client = AsyncOpenAI(api_key="tg-wrong-key", base_url=f"http://127.0.0.1:{relay.port}/v1", max_retries=0)
        async with client.responses.connect(websocket_connection_options={"open_timeout": 10}):
            pass

    with pytest.raises(InvalidStatus) as exc:
        asyncio.run(asyncio.wait_for(main(), 30))
    assert exc.value.response.status_code == 401
    assert mock_upstream.tap.accepted == 0, "a refused client must not cause an upstream dial"


def test_sdk_two_lanes_at_once_and_a_chain_on_each(
    driver: str, relay_factory: RelayFactory, mock_upstream: MockRoute, tmp_path: Path
) -> None:
    """Two `stream_id` lanes in flight at once on one socket, then a `previous_response_id`
    continuation on each: events interleave, each lane gets its own terminal, and every
    response has one record with its lane and the provider's whole usage object."""
    usage_log = tmp_path / "usage.jsonl"
    relay = relay_factory(mock_upstream.url, driver, usage_log=usage_log)

    async def lanes(conn: Any, creates: dict[str, dict[str, Any]]) -> dict[str, list[Any]]:
        for lane, body in creates.items():
            await conn.send({"type": "response.create", "stream_id": lane, **body})
        events: dict[str, list[Any]] = {lane: [] for lane in creates}
        done: set[str] = set()

        async def _collect() -> None:
            while done != set(creates):
                ev = await conn.recv()
                lane = getattr(ev, "stream_id", None)
                assert lane in events, ev
                events[lane].append(ev)
                if ev.type in TERMINAL:
                    done.add(lane)

        await asyncio.wait_for(_collect(), TURN_TIMEOUT)
        return events

    async def main() -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
        client = AsyncOpenAI(api_key=RELAY_KEY, base_url=f"http://127.0.0.1:{relay.port}/v1", max_retries=0)
        async with client.responses.connect(
            websocket_connection_options={"open_timeout": 10, "close_timeout": 5}
        ) as conn:
            first = await lanes(conn, {"a": {"model": "gpt-5", "input": "one"}, "b": {"model": "gpt-5-mini", "input": "two"}})
            ids = {lane: evs[-1].response.id for lane, evs in first.items()}
            second = await lanes(
                conn,
                {lane: {"model": "gpt-5", "input": "more", "previous_response_id": rid} for lane, rid in ids.items()},
            )
        return first, second

    first, second = asyncio.run(asyncio.wait_for(main(), 60))
    ids = []
    for turn in (first, second):
        for lane, evs in turn.items():
            types = [e.type for e in evs]
            assert types[0] == "response.created" and types[-1] == "response.completed", (lane, types)
            ids.append(evs[-1].response.id)
    # A continuation on each lane really chained (the mock bills cached tokens for it).
    for lane in ("a", "b"):
        assert second[lane][-1].response.usage.input_tokens_details.cached_tokens > 0, lane

    records = _usage_records(usage_log, 4)
    assert sorted(r["response_id"] for r in records) == sorted(ids), records
    ledger = {e["response_id"]: e for e in mock_upstream.mock.wait_ledger(4)}
    for r in records:
        assert r["stream_id"] in ("a", "b"), r
        assert r["route"] == "default"
        entry = ledger[r["response_id"]]
        for k in ("input_tokens", "cached_tokens", "output_tokens"):
            assert r[k] == entry[k], (k, r, entry)
        # Fields the relay does not model are carried whole.
        assert "compute_units" in r["usage"], r
        assert r["usage"]["input_tokens_details"]["cache_write_tokens"] >= 0, r
