"""A TCP shim that can add a header to, and records, each connection's request head.

Two uses:
- kosoku sends no credentials, and the relay must never grow an auth bypass, so the
  Autobahn run goes kosoku → shim (inserts `Authorization: Bearer <relay key>`) → relay.
- In front of an upstream whose CLI cannot report what it received (the Rust mock),
  the shim records the upgrade request head the relay sent, so tests can check which
  credential went upstream.

Only the first request head on each connection is touched (a header line inserted
right after the request line); everything after it is copied both ways unchanged,
with half-closes propagated and a reset on one side aborting both.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from .loop import BackgroundLoop

MAX_HEAD = 64 * 1024
HEAD_TIMEOUT = 10.0


class TcpShim:
    """Listens on 127.0.0.1:0 and forwards to `127.0.0.1:target_port`."""

    def __init__(self, bg: BackgroundLoop, target_port: int, inject_header: str | None = None) -> None:
        self.bg = bg
        self.target_port = target_port
        self.inject = f"{inject_header}\r\n".encode() if inject_header else b""
        self.port = 0
        self.accepted = 0  # TCP connections accepted, handshake or not
        self._heads: list[bytes] = []
        self._lock = threading.Lock()
        self._server: Any = None

    @property
    def url(self) -> str:
        """`ws://127.0.0.1:PORT` of the shim's listener."""
        return f"ws://127.0.0.1:{self.port}"

    def heads(self) -> list[bytes]:
        """Request heads forwarded so far (after insertion), in arrival order."""
        with self._lock:
            return list(self._heads)

    def start(self) -> "TcpShim":
        """Bind and serve (bounded wait)."""

        async def _start() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, limit=MAX_HEAD)
            self.port = self._server.sockets[0].getsockname()[1]

        self.bg.run(_start())
        return self

    def stop(self) -> None:
        """Stop listening and drop every connection (bounded)."""

        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
                if hasattr(self._server, "close_clients"):
                    self._server.close_clients()
                await asyncio.wait_for(self._server.wait_closed(), 10)

        try:
            self.bg.run(_stop(), timeout=15)
        except Exception:
            pass

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        u_writer: asyncio.StreamWriter | None = None
        with self._lock:
            self.accepted += 1
        try:
            head = await asyncio.wait_for(c_reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            line_end = head.index(b"\r\n") + 2
            head = head[:line_end] + self.inject + head[line_end:]
            with self._lock:
                self._heads.append(head)
            u_reader, u_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.target_port), HEAD_TIMEOUT
            )
            u_writer.write(head)
            await u_writer.drain()
            both = (c_writer, u_writer)
            await asyncio.gather(_pipe(c_reader, u_writer, both), _pipe(u_reader, c_writer, both))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, OSError):
            pass
        finally:
            for w in (c_writer, u_writer):
                if w is not None:
                    w.close()


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, both: tuple[asyncio.StreamWriter, ...]
) -> None:
    """Copy `reader` → `writer`; EOF becomes a half-close, an error (reset) aborts both."""
    try:
        while True:
            data = await reader.read(256 * 1024)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        for w in both:
            w.transport.abort()
