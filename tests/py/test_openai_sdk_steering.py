"""Steering through the relay with the official `openai` SDK (`conn.response.steer`).

client.responses.connect() → relay (managed mode, usage log) → `loadtest mock-upstream`
pacing its deltas, so the steer reaches the mock while the response is still streaming.
The mock answers as openai-python's `ResponseSteer*Event` types describe: `accepted` with
`steer.{id, previous_response_id}`, the running response ends `response.incomplete`
(reason `steered`), and an automatic successor (no `response.create`) follows on the lane.

What the relay must do (protocol.md: the successor's `response.created` is the commit
point): carry the steer and its answers unchanged, and write one usage record per billed
response — the steered one and its successor — even when the client leaves between them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Iterator

import pytest
from openai import AsyncOpenAI
from openai.types.responses import ResponseSteerAcceptedEvent, ResponseSteerFailedEvent

from conftest import RELAY_KEY, TENANT, RelayFactory
from helpers.rust_mock import RustMock
from test_openai_sdk import TERMINAL, _usage_records

STEP_TIMEOUT = 20.0
# A steer sent at the first delta lands while the response streams (20 deltas, 20 ms apart).
PACED = ["--deltas", "20", "--token-rate", "50"]


@pytest.fixture
def paced_mock(tmp_path: Path) -> Iterator[RustMock]:
    """The mock upstream pacing 20 deltas per response at 50/s; successors 300 ms after
    their predecessor ends (the gap a leaving client falls into)."""
    mock = RustMock.start(tmp_path, [*PACED, "--successor-delay", "300ms"])
    yield mock
    mock.stop()


async def _until(conn: Any, events: list[Any], done: Any) -> None:
    """Receive events into `events` until `done(ev)` holds for one (bounded)."""

    async def _collect() -> None:
        while True:
            ev = await conn.recv()
            events.append(ev)
            if done(ev):
                return

    await asyncio.wait_for(_collect(), STEP_TIMEOUT)


async def _warm_up(conn: Any) -> str:
    """One plain turn; returns its response id. The SDK builds its event models lazily: the
    first events it parses take it ~0.5 s, long enough for a paced response to finish before
    a steer sent "at its first delta" leaves the client."""
    events: list[Any] = []
    await conn.send({"type": "response.create", "model": "gpt-5", "input": "hello", "store": False})
    await _until(conn, events, lambda ev: ev.type in TERMINAL)
    assert events[-1].type == "response.completed", [e.type for e in events]
    return events[-1].response.id


async def _steered_turn(conn: Any, events: list[Any]) -> str:
    """Create a response and steer it at its first delta; return the steered response's id
    once its `response.incomplete` arrived (the successor has not started yet)."""
    await conn.send({"type": "response.create", "model": "gpt-5", "input": "write a long story", "store": False})
    await _until(conn, events, lambda ev: ev.type == "response.output_text.delta")
    first = events[0].response.id
    await conn.response.steer(input="make it short", previous_response_id=first)
    await _until(conn, events, lambda ev: ev.type in TERMINAL)
    return first


def _assert_steered(events: list[Any], first: str) -> None:
    """The steered response's events as the SDK parsed them."""
    accepted = [e for e in events if e.type == "response.steer.accepted"]
    assert len(accepted) == 1, [e.type for e in events]
    assert isinstance(accepted[0], ResponseSteerAcceptedEvent), type(accepted[0])
    assert accepted[0].steer.previous_response_id == first
    assert accepted[0].steer.id
    end = events[-1]
    assert end.type == "response.incomplete", [e.type for e in events]
    assert end.response.id == first
    assert end.response.incomplete_details.reason == "steered"


def _assert_records_match_ledger(mock: RustMock, usage_log: Path, want: dict[str, str]) -> None:
    """The mock billed exactly the responses of `want` (id → status), and the relay wrote
    one final record for each with the ledger's usage."""
    ledger = {e["response_id"]: e for e in mock.wait_ledger(len(want))}
    assert set(ledger) == set(want), (ledger, want)
    records = _usage_records(usage_log, len(want))
    assert len(records) == len(want), records
    by_id = {r["response_id"]: r for r in records}
    assert set(by_id) == set(want), records
    for rid, status in want.items():
        rec, entry = by_id[rid], ledger[rid]
        assert rec["tenant"] == TENANT
        assert rec["status"] == status, rec
        assert rec["usage_final"] is True, rec
        for k in ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens"):
            assert rec[k] == entry[k], (k, rec, entry)


def _connect(port: int) -> Any:
    """The SDK's WebSocket connection to the relay on `port`, with the relay's key."""
    client = AsyncOpenAI(api_key=RELAY_KEY, base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
    return client.responses.connect(websocket_connection_options={"open_timeout": 10, "close_timeout": 5})


async def _warm_then_steer(conn: Any) -> tuple[str, list[Any], str]:
    """The warm-up turn, then the steered one: (warm-up id, steered events, steered id)."""
    warm = await _warm_up(conn)
    steered: list[Any] = []
    first = await _steered_turn(conn, steered)
    return warm, steered, first


def test_sdk_steer_and_successor_through_relay(
    driver: str, relay_factory: RelayFactory, paced_mock: RustMock, tmp_path: Path
) -> None:
    """The client stays: it sees accepted, the steered incomplete and the successor, and a
    late steer of the finished response fails (`response_already_completed`, no id)."""
    usage_log = tmp_path / "usage.jsonl"
    relay = relay_factory(f"ws://127.0.0.1:{paced_mock.port}", driver, usage_log=usage_log)

    async def main() -> tuple[str, list[Any], str, list[Any], list[Any]]:
        async with _connect(relay.port) as conn:
            warm, steered, first = await _warm_then_steer(conn)
            successor: list[Any] = []
            await _until(conn, successor, lambda ev: ev.type in TERMINAL)
            late: list[Any] = []
            await conn.response.steer(input="too late", previous_response_id=first)
            await _until(conn, late, lambda ev: ev.type == "response.steer.failed")
        return warm, steered, first, successor, late

    warm, steered, first, successor, late = asyncio.run(asyncio.wait_for(main(), 60))
    _assert_steered(steered, first)
    types = [e.type for e in successor]
    assert types[0] == "response.created" and types[-1] == "response.completed", types
    second = successor[0].response.id
    assert second != first and successor[-1].response.id == second
    assert successor[-1].response.usage.output_tokens == 20
    assert [e.type for e in late] == ["response.steer.failed"], [e.type for e in late]
    assert isinstance(late[0], ResponseSteerFailedEvent), type(late[0])
    assert late[0].error.code == "response_already_completed"
    assert late[0].steer.id is None and late[0].steer.previous_response_id == first

    want = {warm: "completed", first: "incomplete", second: "completed"}
    _assert_records_match_ledger(paced_mock, usage_log, want)
    assert RELAY_KEY not in relay.log_text()


def test_sdk_client_leaves_before_the_successor(
    driver: str, relay_factory: RelayFactory, paced_mock: RustMock, tmp_path: Path
) -> None:
    """The client closes its connection right after the steered `response.incomplete`, in
    the 300 ms before the successor's `response.created`: nothing is open then, but the
    accepted steer is owed a successor, so the relay keeps the upstream to record it."""
    usage_log = tmp_path / "usage.jsonl"
    relay = relay_factory(f"ws://127.0.0.1:{paced_mock.port}", driver, usage_log=usage_log)

    async def main() -> tuple[str, list[Any], str]:
        async with _connect(relay.port) as conn:
            return await _warm_then_steer(conn)

    warm, steered, first = asyncio.run(asyncio.wait_for(main(), 60))
    _assert_steered(steered, first)

    # The successor was billed upstream after the client left; the relay recorded it too.
    ledger = paced_mock.wait_ledger(3)
    assert len(ledger) == 3, ledger
    second = next(e["response_id"] for e in ledger if e["response_id"] not in (warm, first))
    want = {warm: "completed", first: "incomplete", second: "completed"}
    _assert_records_match_ledger(paced_mock, usage_log, want)
    assert RELAY_KEY not in relay.log_text()
