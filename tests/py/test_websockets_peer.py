"""`websockets` (a strict RFC 6455 peer, compression off) through the relay to a
`websockets` echo upstream: payload fidelity, fragmentation, ping/pong, close codes
both ways, and auth refusal.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from conftest import PROVIDER_KEY, RELAY_KEY, RelayFactory
from helpers.echo import SERVER_CLOSE_REASON, EchoUpstream
from helpers.loop import BackgroundLoop
from helpers.relay import Relay
from helpers.shim import TcpShim

TIMEOUT = 20.0
MiB = 1024 * 1024


def _connect(relay: Relay, path: str = "/v1/responses", key: str = RELAY_KEY) -> Any:
    return connect(
        relay.url + path,
        additional_headers={"Authorization": f"Bearer {key}"},
        compression=None,
        max_size=64 * MiB,
        ping_interval=None,
        open_timeout=10,
        close_timeout=5,
    )


def run(coro: Any, timeout: float = 60.0) -> Any:
    """Run a client coroutine in a fresh loop, bounded."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def _echo(ws: ClientConnection, msg: str | bytes) -> str | bytes:
    await ws.send(msg)
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


def test_text_binary_and_large_messages_are_byte_exact(
    driver: str, relay_factory: RelayFactory, echo_upstream: EchoUpstream
) -> None:
    relay = relay_factory(echo_upstream.url, driver)
    text = "héllo ☃ 🚀 \"quoted\" \\ \n\t" * 3
    binary = bytes(range(256)) * 4
    one_mib = os.urandom(1 * MiB)
    three_mib = os.urandom(3 * MiB)
    big_text = ("0123456789abcdef☃" * (MiB // 16))[: 3 * MiB]

    async def main() -> None:
        async with _connect(relay) as ws:
            got = await _echo(ws, text)
            assert isinstance(got, str) and got == text
            got = await _echo(ws, binary)
            assert isinstance(got, bytes) and got == binary
            got = await _echo(ws, b"")
            assert got == b""
            got = await _echo(ws, "")
            assert got == ""
            for blob in (one_mib, three_mib):
                got = await _echo(ws, blob)
                assert isinstance(got, bytes) and len(got) == len(blob)
                assert hashlib.sha256(got).digest() == hashlib.sha256(blob).digest()
            got = await _echo(ws, big_text)
            assert isinstance(got, str) and got == big_text

    run(main())
    (conn,) = echo_upstream.snapshot()
    # Managed mode: upstream sees the provider key, never the relay key.
    assert conn.header("Authorization") == f"Bearer {PROVIDER_KEY}"
    assert RELAY_KEY not in repr(conn.headers)
    assert conn.path == "/v1/responses"


def test_fragmented_message_is_reassembled_correctly(
    driver: str, relay_factory: RelayFactory, echo_upstream: EchoUpstream
) -> None:
    relay = relay_factory(echo_upstream.url, driver)
    text_parts = ["frag-one ", "☃ two ", "", "three 🚀"]
    bin_parts = [os.urandom(70_000), b"\x00", os.urandom(200_000)]

    async def main() -> None:
        async with _connect(relay) as ws:
            await ws.send(iter(text_parts))
            got = await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert got == "".join(text_parts)
            await ws.send(iter(bin_parts))
            got = await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert got == b"".join(bin_parts)
            # A ping (and its pong) between fragments must not break the message (§5.4).
            pinged = asyncio.Event()
            pong: list[Any] = []

            async def parts() -> Any:
                yield "a"
                await asyncio.wait_for(pinged.wait(), TIMEOUT)
                yield "b"

            async def ping_mid_message() -> None:
                await asyncio.sleep(0.05)
                pong.append(await ws.ping(b"mid"))
                pinged.set()

            await asyncio.gather(ws.send(parts()), ping_mid_message())
            await asyncio.wait_for(pong[0], TIMEOUT)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "ab"

    run(main())
    (conn,) = echo_upstream.snapshot()
    # The relay forwards frames as they are: upstream saw the same fragmentation
    # (`websockets` ends a fragmented send with an empty FIN continuation frame).
    assert conn.fragments == [len(text_parts) + 1, len(bin_parts) + 1, 3], conn.fragments


def test_ping_is_answered(driver: str, relay_factory: RelayFactory, echo_upstream: EchoUpstream) -> None:
    relay = relay_factory(echo_upstream.url, driver)

    async def main() -> None:
        async with _connect(relay) as ws:
            for payload in (b"", b"tollgate-ping", os.urandom(125)):
                pong_waiter = await ws.ping(payload)
                latency = await asyncio.wait_for(pong_waiter, TIMEOUT)
                assert latency >= 0
            # Data still flows after control frames.
            assert await _echo(ws, "after-ping") == "after-ping"

    run(main())


def test_client_close_code_reaches_upstream(
    driver: str, relay_factory: RelayFactory, echo_upstream: EchoUpstream
) -> None:
    relay = relay_factory(echo_upstream.url, driver)

    async def main() -> tuple[int | None, str | None]:
        async with _connect(relay) as ws:
            assert await _echo(ws, "hi") == "hi"
            await ws.close(4001, "bye")
            return ws.close_code, ws.close_reason

    code, _reason = run(main())
    (conn,) = echo_upstream.snapshot()
    assert conn.closed.wait(TIMEOUT), "upstream connection did not close"
    assert (conn.close_code, conn.close_reason) == (4001, "bye")
    # The closing handshake completed: the client got a close frame back (echoing 4001).
    assert code == 4001


def test_upstream_close_code_reaches_client(
    driver: str, relay_factory: RelayFactory, echo_upstream: EchoUpstream
) -> None:
    relay = relay_factory(echo_upstream.url, driver, extra=["--allow-path", "/close/4002"])

    async def main() -> ConnectionClosed:
        async with _connect(relay, path="/close/4002") as ws:
            assert await _echo(ws, "first") == "first"
            with pytest.raises(ConnectionClosed) as exc:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            return exc.value

    closed = run(main())
    assert closed.rcvd is not None, "client got no close frame (connection dropped?)"
    assert (closed.rcvd.code, closed.rcvd.reason) == (4002, SERVER_CLOSE_REASON)
    (conn,) = echo_upstream.snapshot()
    assert conn.closed.wait(TIMEOUT)
    # The client's echoed close frame made it back upstream: a clean closing handshake.
    assert conn.close_code == 4002


def test_wrong_key_is_refused_with_401(
    driver: str, relay_factory: RelayFactory, echo_upstream: EchoUpstream, bg: BackgroundLoop
) -> None:
    # A counting shim in front of the echo upstream sees even a bare TCP dial.
    tap = TcpShim(bg, echo_upstream.port).start()
    relay = relay_factory(tap.url, driver)

    async def attempt(headers: dict[str, str]) -> InvalidStatus:
        with pytest.raises(InvalidStatus) as exc:
            async with connect(relay.url + "/v1/responses", additional_headers=headers, compression=None, open_timeout=10):
                pass
        return exc.value

    wrong = run(attempt({"Authorization": "Bearer tg-wrong-key"}))
    assert wrong.response.status_code == 401
    missing = run(attempt({}))
    assert missing.response.status_code == 401
    # The provider key must not be usable as a relay key either.
    provider = run(attempt({"Authorization": f"Bearer {PROVIDER_KEY}"}))
    assert provider.response.status_code == 401
    try:
        assert tap.accepted == 0, "a refused client must not cause an upstream connection"

        # And the right key still works on the same relay.
        async def ok() -> None:
            async with _connect(relay) as ws:
                assert await _echo(ws, "ok") == "ok"

        run(ok())
        assert tap.accepted == 1
        assert len(echo_upstream.snapshot()) == 1
    finally:
        tap.stop()


def test_passthrough_mode_forwards_the_client_credential(
    driver: str, relay_factory: RelayFactory, echo_upstream: EchoUpstream
) -> None:
    relay = relay_factory(echo_upstream.url, driver, managed=False)

    async def main() -> None:
        async with _connect(relay, key="sk-client-own-key") as ws:
            assert await _echo(ws, "pass") == "pass"

    run(main())
    (conn,) = echo_upstream.snapshot()
    assert conn.header("Authorization") == "Bearer sk-client-own-key"
    assert PROVIDER_KEY not in repr(conn.headers)
