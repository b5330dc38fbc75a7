"""Fixtures for the end-to-end suite: the relay binary and the upstreams it talks to.

Everything binds 127.0.0.1:0. Subprocesses are stopped (SIGTERM, then SIGKILL) at
teardown, and every wait is bounded. In-process servers share one background asyncio
loop (`bg`) so tests can drive clients with `asyncio.run` in the main thread.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pytest

from helpers.echo import EchoUpstream
from helpers.loop import BackgroundLoop
from helpers.relay import Relay, relay_binary
from helpers.rust_mock import RustMock, loadtest_binary
from helpers.shim import TcpShim

DRIVERS = ["uring", "epoll"]
TENANT = "acme"
# Distinct, greppable keys: the relay key must never reach an upstream.
RELAY_KEY = "tg-relay-" + secrets.token_hex(12)
PROVIDER_KEY = "sk-provider-" + secrets.token_hex(12)


@pytest.fixture(scope="session")
def bg() -> Iterator[BackgroundLoop]:
    """One background event loop for every in-process server."""
    loop = BackgroundLoop()
    yield loop
    loop.close()


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    """The relay's io driver; every test that takes it runs once per driver."""
    return request.param


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    """A managed-mode keys file with one tenant (`TENANT RELAY_KEY`)."""
    p = tmp_path / "client-keys"
    p.write_text(f"# tenant key\n{TENANT} {RELAY_KEY}\n")
    return p


RelayFactory = Callable[..., Relay]


@pytest.fixture
def relay_factory(tmp_path: Path, keys_file: Path) -> Iterator[RelayFactory]:
    """`start(upstream_url, driver, *, managed=True, extra=(), usage_log=None)` → Relay.

    Managed mode uses `keys_file` and the default upstream header
    `Authorization: Bearer ${OPENAI_API_KEY}` with OPENAI_API_KEY=PROVIDER_KEY.
    The relay must run the driver asked for (no silent io_uring → epoll fallback).
    Every relay started is stopped at teardown, and teardown fails if one panicked.
    """
    started: list[Relay] = []

    def start(
        upstream_url: str,
        driver: str = "auto",
        *,
        managed: bool = True,
        extra: Sequence[str] = (),
        usage_log: Path | None = None,
    ) -> Relay:
        args = ["--upstream", upstream_url, "--driver", driver, "--workers", "2"]
        if managed:
            args += ["--client-keys", str(keys_file)]
        else:
            args += ["--passthrough-auth"]
        if usage_log is not None:
            args += ["--usage-log", str(usage_log), "--usage-fsync-ms", "5"]
        args += list(extra)
        log = tmp_path / f"relay-{len(started)}.log"
        relay = Relay.start(args, {"OPENAI_API_KEY": PROVIDER_KEY}, log)
        started.append(relay)
        want = {"uring": "io_uring", "epoll": "epoll"}.get(driver)
        assert want is None or relay.driver == want, f"asked for {driver}, relay runs {relay.driver!r}"
        return relay

    yield start
    problems = []
    for r in started:
        rc = r.stop()
        if r.panicked():
            problems.append(f"relay {r.args} panicked:\n{r.log_text()[-4000:]}")
        elif rc != 0:
            problems.append(f"relay {r.args} exited {rc} after SIGTERM:\n{r.log_text()[-4000:]}")
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture
def echo_upstream(bg: BackgroundLoop) -> Iterator[EchoUpstream]:
    """A strict `websockets` echo server (see helpers.echo)."""
    echo = EchoUpstream(bg).start()
    yield echo
    echo.stop()


@dataclass
class MockRoute:
    """The Rust mock upstream behind a recording shim: point the relay at `url`."""

    mock: RustMock
    tap: TcpShim

    @property
    def url(self) -> str:
        """Where the relay should dial (the recording shim)."""
        return self.tap.url

    def heads(self) -> list[bytes]:
        """Upgrade request heads the relay sent upstream, in arrival order."""
        return self.tap.heads()


@pytest.fixture
def mock_upstream(bg: BackgroundLoop, tmp_path: Path) -> Iterator[MockRoute]:
    """`loadtest mock-upstream` (5 deltas per response) behind a recording `TcpShim`."""
    mock = RustMock.start(tmp_path, ["--deltas", "5"])
    try:
        tap = TcpShim(bg, mock.port).start()
    except BaseException:
        mock.stop()
        raise
    yield MockRoute(mock, tap)
    tap.stop()
    mock.stop()


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say which binaries the run uses."""
    return [f"relay binary: {relay_binary()}", f"mock upstream binary: {loadtest_binary()}"]
