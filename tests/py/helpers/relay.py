"""The `tollgate` binary as a subprocess on 127.0.0.1:0.

The relay logs `... tollgate listening listen=127.0.0.1:PORT workers=N driver="io_uring" ...`
to stderr once every worker is accepting; `Relay.start` waits (bounded) for that line and
parses the port. Stop is SIGTERM, then SIGKILL if it has not exited in time.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Mapping, Sequence

REPO = Path(__file__).resolve().parents[3]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LISTEN = re.compile(r"tollgate listening .*?\blisten=(\S+)")
_DRIVER = re.compile(r'\bdriver="?([A-Za-z_]+)"?')
_ADMIN = re.compile(r"\badmin=127\.0\.0\.1:(\d+)")

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


def target_dir() -> Path:
    """Cargo's target directory (honours CARGO_TARGET_DIR)."""
    return Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))


def relay_binary() -> Path:
    """Path of the relay binary: $TOLLGATE_BIN or `<target>/debug/tollgate`."""
    return Path(os.environ.get("TOLLGATE_BIN", target_dir() / "debug" / "tollgate"))


class RelayStartError(RuntimeError):
    """The relay exited or never logged its listen address within the timeout."""


class Relay:
    """One running relay process. Use `start()`; always `stop()` (fixtures do)."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.args = list(args)
        self.log_path = log_path
        self.port: int = 0
        self.driver: str = ""
        # The admin listener's port (`--admin-listen 127.0.0.1:0`); 0 without one.
        self.admin_port: int = 0
        self.returncode: int | None = None
        # Only what we pass: no TOLLGATE_* or OPENAI_API_KEY leaks in from the caller.
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("TOLLGATE_") and k not in ("OPENAI_API_KEY", "RUST_LOG")
        }
        base["NO_COLOR"] = "1"
        base.update(env)
        self._env = base
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self._env,
        )

    @classmethod
    def start(
        cls,
        extra_args: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        binary: Path | None = None,
        timeout: float = START_TIMEOUT,
    ) -> "Relay":
        """Start `tollgate --listen 127.0.0.1:0 --drain-timeout 1s <extra_args>` and wait
        until it logs its listen address."""
        binary = binary or relay_binary()
        if not binary.exists():
            raise RelayStartError(f"relay binary {binary} not found: run `cargo build` first")
        args = [str(binary), "--listen", "127.0.0.1:0", "--drain-timeout", "1s", *extra_args]
        relay = cls(args, env, log_path)
        try:
            relay._wait_listening(timeout)
        except BaseException:
            relay.stop()
            raise
        return relay

    def log_text(self) -> str:
        """Everything the relay logged so far, ANSI colours stripped."""
        try:
            return _ANSI.sub("", self.log_path.read_text(errors="replace"))
        except FileNotFoundError:
            return ""

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()
            m = _LISTEN.search(text)
            if m:
                addr = m.group(1)
                self.port = int(addr.rsplit(":", 1)[1])
                line = text[m.start() :].splitlines()[0]
                d = _DRIVER.search(line)
                self.driver = d.group(1) if d else ""
                a = _ADMIN.search(line)
                self.admin_port = int(a.group(1)) if a else 0
                return
            if self.proc.poll() is not None:
                raise RelayStartError(
                    f"relay exited with {self.proc.returncode} before listening:\n{text[-4000:]}"
                )
            time.sleep(0.02)
        raise RelayStartError(f"relay did not log `listen=` within {timeout}s:\n{self.log_text()[-4000:]}")

    def metric(self, name: str) -> float:
        """The value of the unlabelled metric `name` on the admin listener's /metrics."""
        assert self.admin_port, "start the relay with --admin-listen 127.0.0.1:0"
        url = f"http://127.0.0.1:{self.admin_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == name:
                return float(parts[1])
        raise KeyError(f"{name} not in /metrics:\n{text[:2000]}")

    @property
    def url(self) -> str:
        """`ws://127.0.0.1:PORT` of the client listener."""
        return f"ws://127.0.0.1:{self.port}"

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.returncode = self.proc.returncode
        if not self._log.closed:
            self._log.close()
        return self.returncode

    def panicked(self) -> bool:
        """Whether the relay logged a Rust panic."""
        return "panicked at" in self.log_text()
