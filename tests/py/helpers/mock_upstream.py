"""A tiny Responses-API WebSocket upstream in Python (`websockets`, compression off).

Each `response.create` yields `response.created`, `response.in_progress`,
`response.output_item.added`, `response.content_part.added`, N
`response.output_text.delta`, `response.output_text.done`, `response.content_part.done`,
`response.output_item.done` and `response.completed` carrying `usage`.
`previous_response_id` must name a response completed earlier on the same connection
(the real service's connection-local cache), else an `error` event
`previous_response_not_found` (status 400) is sent instead.

Usage is deterministic: `input_tokens = max(1, len(create frame) // 4)`,
`cached_tokens = input_tokens // 2` with a `previous_response_id`, `output_tokens` = deltas,
`total_tokens = input + output`.

It records every upgrade request (path, headers) and every client event, in memory,
and when run as a script also as JSON lines (`--record FILE`):

    python -m helpers.mock_upstream --listen 127.0.0.1:0 --record /tmp/mock.jsonl

prints `mock-upstream listening port=N` on stdout once bound.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

MODEL_SUFFIX = "-2026-08-07"
WORDS = ["relay", " edge", " café", " ☃", " \"quoted\"", " lane", " 🚀", " tab\t"]


@dataclass
class MockRequest:
    """One upgrade request as received, plus the events sent on that connection."""

    conn: int
    path: str
    headers: list[tuple[str, str]]
    events: list[dict[str, Any]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """First value of header `name` (case-insensitive)."""
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


@dataclass
class Billed:
    """Usage sent in one terminal event."""

    response_id: str
    model: str
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    total_tokens: int


class MockUpstream:
    """The mock server. Runs on an existing event loop (`start` must run on it)."""

    def __init__(self, deltas: int = 5, on_record: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.deltas = deltas
        self.port = 0
        self.requests: list[MockRequest] = []
        self.billed: list[Billed] = []
        self._ids = itertools.count(1)
        self._conns = itertools.count(0)
        self._lock = threading.Lock()
        self._server: Any = None
        self._on_record = on_record

    @property
    def url(self) -> str:
        """`ws://127.0.0.1:PORT`."""
        return f"ws://127.0.0.1:{self.port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> "MockUpstream":
        """Bind and serve on the running loop."""
        self._server = await serve(
            self._handle,
            host,
            port,
            compression=None,
            max_size=64 * 1024 * 1024,
            ping_interval=None,
            open_timeout=10,
            close_timeout=5,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Close the listener and every connection."""
        if self._server is not None:
            self._server.close()
            await asyncio.wait_for(self._server.wait_closed(), 10)

    def snapshot(self) -> list[MockRequest]:
        """Requests seen so far (copies of the list, not of the records)."""
        with self._lock:
            return list(self.requests)

    def _record(self, obj: dict[str, Any]) -> None:
        if self._on_record is not None:
            self._on_record(obj)

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):024x}"

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        req = MockRequest(
            conn=next(self._conns), path=ws.request.path, headers=list(ws.request.headers.raw_items())
        )
        with self._lock:
            self.requests.append(req)
        self._record({"kind": "request", "conn": req.conn, "path": req.path, "headers": req.headers})
        completed: set[str] = set()
        seq = itertools.count(0)
        try:
            async for raw in ws:
                text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
                try:
                    event = json.loads(text)
                except ValueError:
                    event = {"type": "<not json>"}
                req.events.append(event)
                self._record({"kind": "event", "conn": req.conn, "event": event})
                if event.get("type") == "response.create":
                    await self._respond(ws, event, len(raw), completed, seq)
        except ConnectionClosed:
            pass

    async def _respond(
        self, ws: ServerConnection, create: dict[str, Any], frame_len: int, completed: set[str], seq: Any
    ) -> None:
        prev = create.get("previous_response_id")
        if prev is not None and prev not in completed:
            await ws.send(
                json.dumps(
                    {
                        "type": "error",
                        "status": 400,
                        "error": {
                            "type": "invalid_request_error",
                            "code": "previous_response_not_found",
                            "message": f"Previous response with id '{prev}' not found.",
                            "param": "previous_response_id",
                        },
                    }
                )
            )
            return
        rid = self._new_id("resp")
        mid = self._new_id("msg")
        model = str(create.get("model", "gpt-5")) + MODEL_SUFFIX
        base: dict[str, Any] = {
            "id": rid,
            "object": "response",
            "created_at": 1795339547,
            "status": "in_progress",
            "model": model,
            "output": [],
            "service_tier": "default",
            "instructions": create.get("instructions"),
            "tools": [],
            "parallel_tool_calls": True,
            "previous_response_id": prev,
            "store": False,
            "text": {"format": {"type": "text"}},
        }

        async def emit(obj: dict[str, Any]) -> None:
            obj["sequence_number"] = next(seq)
            await ws.send(json.dumps(obj, ensure_ascii=False))

        await emit({"type": "response.created", "response": base})
        await emit({"type": "response.in_progress", "response": base})
        item = {"id": mid, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
        await emit({"type": "response.output_item.added", "output_index": 0, "item": item})
        part = {"type": "output_text", "text": "", "annotations": []}
        await emit(
            {"type": "response.content_part.added", "item_id": mid, "output_index": 0, "content_index": 0, "part": part}
        )
        pieces = [WORDS[i % len(WORDS)] for i in range(self.deltas)]
        for p in pieces:
            await emit(
                {
                    "type": "response.output_text.delta",
                    "item_id": mid,
                    "output_index": 0,
                    "content_index": 0,
                    "delta": p,
                    "logprobs": [],
                }
            )
        text = "".join(pieces)
        await emit(
            {
                "type": "response.output_text.done",
                "item_id": mid,
                "output_index": 0,
                "content_index": 0,
                "text": text,
                "logprobs": [],
            }
        )
        done_part = {"type": "output_text", "text": text, "annotations": []}
        await emit(
            {"type": "response.content_part.done", "item_id": mid, "output_index": 0, "content_index": 0, "part": done_part}
        )
        done_item = dict(item, status="completed", content=[done_part])
        await emit({"type": "response.output_item.done", "output_index": 0, "item": done_item})
        input_tokens = max(1, frame_len // 4)
        cached = input_tokens // 2 if prev is not None else 0
        usage = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": len(pieces),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + len(pieces),
        }
        final = dict(base, status="completed", output=[done_item], usage=usage)
        completed.add(rid)
        with self._lock:
            self.billed.append(Billed(rid, model, input_tokens, cached, len(pieces), input_tokens + len(pieces)))
        self._record({"kind": "billed", "response_id": rid, "usage": usage})
        await emit({"type": "response.completed", "response": final})


async def _amain(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", default="127.0.0.1:0", help="host:port to bind")
    ap.add_argument("--deltas", type=int, default=5, help="output_text deltas per response")
    ap.add_argument("--record", default=None, help="append requests/events as JSON lines to FILE")
    args = ap.parse_args(argv)
    host, port = args.listen.rsplit(":", 1)
    out = open(args.record, "a", encoding="utf-8") if args.record else None

    def on_record(obj: dict[str, Any]) -> None:
        if out is not None:
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
            out.flush()

    mock = await MockUpstream(deltas=args.deltas, on_record=on_record).start(host, int(port))
    print(f"mock-upstream listening port={mock.port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(_amain(sys.argv[1:]))
    except KeyboardInterrupt:
        pass
