"""Autobahn with the relay as the *client*: kosoku in `fuzzingserver` mode is the upstream,
and a strict echo client (`websockets`) drives the cases through the relay. From kosoku's
side the relay's upstream leg is the client under test: every frame it sends must be
masked, every violation kosoku sends must make it fail the connection with the right code.

Pass criterion (shared/test-matrix.md): no case fails through the relay that passes when the
same echo client talks to kosoku directly. Also here: the deflate cases (12.x, 13.x) with the
relay as the *server* — compression is declined, so they are UNIMPLEMENTED with a clean close.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from conftest import RELAY_KEY, RelayFactory
from helpers.echo import EchoUpstream
from helpers.shim import TcpShim
from test_autobahn import (
    CLOSE_OK,
    _case_key,
    _kosoku_bin,
    _pair,
    _passes,
)

CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]
# The paths of Autobahn's fuzzingserver protocol; the relay dials only allowed paths.
PATHS = ["/getCaseCount", "/runCase", "/updateReports"]
RUN_TIMEOUT = 240.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _echo_client(base: str, agent: str, headers: dict[str, str]) -> None:
    """Autobahn's client protocol: count the cases, echo every message of each, report."""
    kw: dict[str, Any] = dict(
        additional_headers=headers,
        compression=None,
        max_size=None,
        ping_interval=None,
        open_timeout=10,
        close_timeout=5,
    )
    async with connect(f"{base}/getCaseCount", **kw) as ws:
        count = int(await ws.recv())
    for i in range(1, count + 1):
        try:
            async with connect(f"{base}/runCase?case={i}&agent={agent}", **kw) as ws:
                async for msg in ws:
                    await ws.send(msg)
        except (ConnectionClosed, InvalidStatus, OSError, asyncio.TimeoutError):
            pass  # the verdict is kosoku's
    async with connect(f"{base}/updateReports?agent={agent}", **kw) as ws:
        try:
            await ws.recv()
        except ConnectionClosed:
            pass


def run_fuzzingserver(outdir: Path, drive) -> dict[str, dict[str, Any]]:
    """Start kosoku as the server, let `drive(port)` run the client, return the results."""
    port = _free_port()
    args = [_kosoku_bin(), "-m", "fuzzingserver", f"127.0.0.1:{port}", "-o", str(outdir)]
    for c in CASES:
        args += ["-i", c]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        drive(port)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    index = outdir / "index.json"
    assert index.exists(), f"kosoku wrote no index.json:\n{out}"
    data = json.loads(index.read_text())
    (results,) = data.values()
    return results


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The same echo client straight against kosoku: what the client gets without the relay."""
    return run_fuzzingserver(
        tmp_path_factory.mktemp("fuzzingserver-direct"),
        lambda port: asyncio.run(asyncio.wait_for(_echo_client(f"ws://127.0.0.1:{port}", "direct", {}), RUN_TIMEOUT)),
    )


@pytest.mark.parametrize("driver", ["uring", "epoll"])
def test_autobahn_with_the_relay_as_client(
    driver: str, relay_factory: RelayFactory, direct: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    def through_relay(port: int) -> None:
        extra = ["--max-fragments", "131072", "--max-message-bytes-up", "64MiB"]
        for p in PATHS:
            extra += ["--allow-path", p]
        relay = relay_factory(f"ws://127.0.0.1:{port}", driver, extra=extra)
        asyncio.run(
            asyncio.wait_for(
                _echo_client(relay.url, "relay", {"Authorization": f"Bearer {RELAY_KEY}"}),
                RUN_TIMEOUT,
            )
        )

    relayed = run_fuzzingserver(tmp_path / "relay", through_relay)
    assert set(relayed) == set(direct), "every case ran both ways"
    problems = []
    for case_id in sorted(relayed, key=_case_key):
        entry = relayed[case_id]
        if _passes(entry) or _pair(direct.get(case_id)) == _pair(entry):
            continue
        problems.append(f"{case_id}: relay {_pair(entry)} (direct {_pair(direct.get(case_id))})")
    passed = sum(1 for e in relayed.values() if _passes(e))
    print(f"\nrelay as client [{driver}]: {passed}/{len(relayed)} cases pass; direct {sum(1 for e in direct.values() if _passes(e))}")
    assert not problems, f"{len(problems)} case(s) fail through the relay but not direct:\n" + "\n".join(problems)


@pytest.mark.parametrize("driver", ["uring", "epoll"])
def test_deflate_cases_are_unimplemented_with_a_clean_close(
    driver: str, relay_factory: RelayFactory, echo_upstream: EchoUpstream, bg, tmp_path: Path
) -> None:
    relay = relay_factory(echo_upstream.url, driver, extra=["--allow-path", "/"])
    shim = TcpShim(bg, relay.port, inject_header=f"Authorization: Bearer {RELAY_KEY}").start()
    outdir = tmp_path / "deflate"
    try:
        args = [_kosoku_bin(), "-o", str(outdir), "-p", "1", "-i", "12.1.*", "-i", "13.1.*", shim.url]
        subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    finally:
        shim.stop()
    (results,) = json.loads((outdir / "index.json").read_text()).values()
    assert results, "no deflate case ran"
    bad = {c: _pair(e) for c, e in results.items() if e["behavior"] != "UNIMPLEMENTED" or e["behaviorClose"] not in CLOSE_OK | {"UNIMPLEMENTED"}}
    assert not bad, f"deflate cases not cleanly unimplemented: {bad}"
