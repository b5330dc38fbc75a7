"""A strict RFC 6455 echo upstream built on `websockets` (compression off).

Runs on a `BackgroundLoop`. Every message is echoed back with its type (text/binary).
It records, per connection: the request path and headers, how many frames each
message arrived in, and the close code/reason it received.

Path-driven behaviour (the relay appends the client's path to its upstream URL):
- `/close/<code>`: after echoing the first message, close with `<code>` "server-bye".
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from .loop import BackgroundLoop

MAX_MESSAGE = 64 * 1024 * 1024
SERVER_CLOSE_REASON = "server-bye"


@dataclass
class EchoConnection:
    """What the echo upstream saw on one connection."""

    path: str
    headers: list[tuple[str, str]]
    fragments: list[int] = field(default_factory=list)  # frames per message, in order
    close_code: int | None = None  # close code received from the peer (the relay)
    close_reason: str | None = None
    closed: threading.Event = field(default_factory=threading.Event)

    def header(self, name: str) -> str | None:
        """First value of header `name` (case-insensitive)."""
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


class EchoUpstream:
    """The echo server; `start()` binds 127.0.0.1:0 on the given loop."""

    def __init__(self, bg: BackgroundLoop) -> None:
        self.bg = bg
        self.port = 0
        self._server: Any = None
        self._lock = threading.Lock()
        self.connections: list[EchoConnection] = []

    @property
    def url(self) -> str:
        """`ws://127.0.0.1:PORT`."""
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> "EchoUpstream":
        """Bind and serve (bounded wait)."""

        async def _start() -> None:
            self._server = await serve(
                self._handle,
                "127.0.0.1",
                0,
                compression=None,
                max_size=MAX_MESSAGE,
                max_queue=64,
                ping_interval=None,
                close_timeout=5,
                open_timeout=10,
            )
            self.port = self._server.sockets[0].getsockname()[1]

        self.bg.run(_start())
        return self

    def stop(self) -> None:
        """Close the server and every open connection (bounded)."""

        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
                await asyncio.wait_for(self._server.wait_closed(), 10)

        try:
            self.bg.run(_stop(), timeout=15)
        except Exception:
            pass

    def snapshot(self) -> list[EchoConnection]:
        """The connections seen so far, in accept order."""
        with self._lock:
            return list(self.connections)

    async def _handle(self, ws: ServerConnection) -> None:
        req = ws.request
        assert req is not None
        rec = EchoConnection(path=req.path, headers=list(req.headers.raw_items()))
        with self._lock:
            self.connections.append(rec)
        close_after_first: int | None = None
        if req.path.startswith("/close/"):
            close_after_first = int(req.path.split("/")[2])
        try:
            while True:
                frames: list[bytes | str] = []
                async for frag in ws.recv_streaming():
                    frames.append(frag)
                rec.fragments.append(len(frames))
                if frames and isinstance(frames[0], str):
                    await ws.send("".join(frames))  # type: ignore[arg-type]
                else:
                    await ws.send(b"".join(frames))  # type: ignore[arg-type]
                if close_after_first is not None:
                    await ws.close(close_after_first, SERVER_CLOSE_REASON)
                    break
        except ConnectionClosed as exc:
            if exc.rcvd is not None:
                rec.close_code = exc.rcvd.code
                rec.close_reason = exc.rcvd.reason
        finally:
            # `ws.close_code` is the peer's code when it closed first; keep what we got.
            if rec.close_code is None and ws.protocol.close_rcvd is not None:
                rec.close_code = ws.protocol.close_rcvd.code
                rec.close_reason = ws.protocol.close_rcvd.reason
            rec.closed.set()
