"""Steering through the relay with the official `openai` SDK (`conn.response.steer`).

client.responses.connect() → relay (managed mode, usage log) → `loadtest mock-upstream`
pacing its deltas, so the steer reaches the mock while the response is still streaming.
The mock answers as openai-python's `ResponseSteer*Event` types describe: `accepted` with
`steer.{id, previous_response_id}`, the running response ends `response.incomplete`
(reason `steered`), and an automatic successor (no `response.create`) follows on the lane.

What the relay must do (protocol.md: the successor's `response.created` is the commit
point): carry the steer and its answers unchanged, and write one usage record per billed
response — the steered one and its successor — even when the client leaves between them.

A steered call of a client-owned function (`tool_choice: "required"`) is different: it
completes, and the steer is answered `response.steer.pending` (`waiting_for_required_input`)
— no successor comes until the client sends its tool result. A relay whose client left must
then stop waiting for one, not hold the upstream until `--orphan-drain-timeout`.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from openai import AsyncOpenAI
from openai.types.responses import (
    ResponseSteerAcceptedEvent,
    ResponseSteerFailedEvent,
    ResponseSteerPendingEvent,
)

from conftest import RELAY_KEY, TENANT, RelayFactory
from helpers.relay import Relay
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


def _assert_recorded(mock: RustMock, relay: Relay, usage_log: Path, want: dict[str, str]) -> None:
    """The mock billed exactly the responses of `want` (id → status), the relay wrote one
    final record for each with the ledger's usage, and its log never showed the client's key."""
    assert RELAY_KEY not in relay.log_text()
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
    _assert_recorded(paced_mock, relay, usage_log, want)


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
    _assert_recorded(paced_mock, relay, usage_log, want)


TOOLS = [{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}]
# The relay would hold an upstream this long waiting for a successor that never comes.
LONG_ORPHAN_DRAIN = ["--orphan-drain-timeout", "60s", "--admin-listen", "127.0.0.1:0"]


async def _steered_call(conn: Any, events: list[Any]) -> str:
    """Create a response that must call `lookup` and steer it at its first argument delta;
    return its id once its `response.completed` arrived (the `pending` has not yet)."""
    create = {"type": "response.create", "model": "gpt-5", "input": "look it up", "store": False}
    await conn.send({**create, "tools": TOOLS, "tool_choice": "required"})
    await _until(conn, events, lambda ev: ev.type == "response.function_call_arguments.delta")
    first = events[0].response.id
    await conn.response.steer(input="and be quick", previous_response_id=first)
    await _until(conn, events, lambda ev: ev.type in TERMINAL)
    return first


def _assert_call_completed(events: list[Any], first: str) -> tuple[str, str]:
    """The steered call completed with its `function_call`; returns (steer id, call id)."""
    accepted = [e for e in events if e.type == "response.steer.accepted"]
    assert len(accepted) == 1 and accepted[0].steer.previous_response_id == first, events
    end = events[-1]
    assert end.type == "response.completed" and end.response.id == first, [e.type for e in events]
    call = end.response.output[0]
    assert call.type == "function_call" and call.name == "lookup", call
    return accepted[0].steer.id, call.call_id


def test_sdk_steered_function_call_waits_for_the_clients_result(
    driver: str, relay_factory: RelayFactory, paced_mock: RustMock, tmp_path: Path
) -> None:
    """The steer of a function call is `pending` after `response.completed`; the client's
    continuation (its `function_call_output`) is the next response, and nothing else."""
    usage_log = tmp_path / "usage.jsonl"
    relay = relay_factory(f"ws://127.0.0.1:{paced_mock.port}", driver, usage_log=usage_log)

    async def main() -> tuple[str, list[Any], str, list[Any], list[Any]]:
        async with _connect(relay.port) as conn:
            warm = await _warm_up(conn)
            called: list[Any] = []
            first = await _steered_call(conn, called)
            pending: list[Any] = []
            await _until(conn, pending, lambda ev: ev.type == "response.steer.pending")
            call_id = called[-1].response.output[0].call_id
            result = {"type": "function_call_output", "call_id": call_id, "output": "42"}
            cont = {"type": "response.create", "model": "gpt-5", "store": False, "tools": TOOLS}
            await conn.send({**cont, "previous_response_id": first, "input": [result]})
            continued: list[Any] = []
            await _until(conn, continued, lambda ev: ev.type in TERMINAL)
        return warm, called, first, pending, continued

    warm, called, first, pending, continued = asyncio.run(asyncio.wait_for(main(), 60))
    steer_id, call_id = _assert_call_completed(called, first)
    assert [e.type for e in pending] == ["response.steer.pending"], [e.type for e in pending]
    p = pending[0]
    assert isinstance(p, ResponseSteerPendingEvent), type(p)
    assert p.reason == "waiting_for_required_input"
    assert p.steer.id == steer_id and p.steer.previous_response_id == first
    assert [(r.type, r.call_id) for r in p.required_input] == [("function_call_output", call_id)]
    types = [e.type for e in continued]
    assert types[0] == "response.created" and types[-1] == "response.completed", types
    second = continued[-1].response.id
    assert second not in (warm, first)

    want = {warm: "completed", first: "completed", second: "completed"}
    _assert_recorded(paced_mock, relay, usage_log, want)


def test_sdk_client_leaves_before_the_pending_steer(
    driver: str, relay_factory: RelayFactory, paced_mock: RustMock, tmp_path: Path
) -> None:
    """The client closes right after the steered call's `response.completed`, 300 ms before
    its `response.steer.pending`. The accepted steer is owed a successor, so the relay keeps
    the upstream (an orphan drain starts); `pending` says none will come without the client,
    so the drain ends then — not 60 s later at `--orphan-drain-timeout`."""
    usage_log = tmp_path / "usage.jsonl"
    upstream = f"ws://127.0.0.1:{paced_mock.port}"
    relay = relay_factory(upstream, driver, usage_log=usage_log, extra=LONG_ORPHAN_DRAIN)

    async def main() -> tuple[str, list[Any], str]:
        async with _connect(relay.port) as conn:
            warm = await _warm_up(conn)
            called: list[Any] = []
            return warm, called, await _steered_call(conn, called)

    warm, called, first = asyncio.run(asyncio.wait_for(main(), 60))
    _assert_call_completed(called, first)

    deadline = time.monotonic() + 10
    while relay.metric("tollgate_orphan_drains_finished_total") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert relay.metric("tollgate_orphan_drains_started_total") == 1
    assert relay.metric("tollgate_orphan_drains_finished_total") == 1, "the drain outlived `pending`"
    assert relay.metric("tollgate_orphan_drains_active") == 0
    _assert_recorded(paced_mock, relay, usage_log, {warm: "completed", first: "completed"})
