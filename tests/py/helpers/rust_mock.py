"""`loadtest mock-upstream` (crate `loadtest/`) as a subprocess on 127.0.0.1:0.

It prints `mock upstream listening on ws://127.0.0.1:PORT` on stdout once bound and
appends one JSON line per billed terminal event to `--ledger FILE`. Its CLI does not
report the upgrade requests it received, so the `mock_upstream` fixture puts a
recording `TcpShim` in front of it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

from .relay import target_dir

_LISTEN = re.compile(r"listening on ws://127\.0\.0\.1:(\d+)")
START_TIMEOUT = 15.0


def loadtest_binary() -> Path:
    """$LOADTEST_BIN or `<target>/debug/loadtest`."""
    return Path(os.environ.get("LOADTEST_BIN", target_dir() / "debug" / "loadtest"))


class RustMock:
    """One running `loadtest mock-upstream`; always `stop()` it (the fixture does)."""

    def __init__(self, args: list[str], log_path: Path, ledger_path: Path) -> None:
        self.log_path = log_path
        self.ledger_path = ledger_path
        self.port = 0
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )

    @classmethod
    def start(cls, tmp_path: Path, extra: Sequence[str] = ()) -> "RustMock":
        """Start on 127.0.0.1:0 with a ledger in `tmp_path`; wait (bounded) for its port."""
        binary = loadtest_binary()
        if not binary.exists():
            raise RuntimeError(f"{binary} not found: run `cargo build --workspace` first")
        ledger = tmp_path / "mock-ledger.jsonl"
        args = [str(binary), "mock-upstream", "--listen", "127.0.0.1:0", "--ledger", str(ledger), *extra]
        mock = cls(args, tmp_path / "mock-upstream.log", ledger)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            m = _LISTEN.search(mock.log_text())
            if m:
                mock.port = int(m.group(1))
                return mock
            if mock.proc.poll() is not None:
                break
            time.sleep(0.02)
        text = mock.log_text()
        mock.stop()
        raise RuntimeError(f"loadtest mock-upstream did not start:\n{text[-4000:]}")

    def log_text(self) -> str:
        """Everything the mock printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def ledger(self) -> list[dict[str, Any]]:
        """Billed usage records so far (one per terminal event)."""
        try:
            lines = self.ledger_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line still being written
        return out

    def wait_ledger(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Poll until the ledger has `n` records or `timeout` passes; return it."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.ledger()
            if len(got) >= n or time.monotonic() >= deadline:
                return got
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGINT, then SIGKILL if it has not exited within 5 s."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGINT)
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not self._log.closed:
            self._log.close()
