"""Helpers for the Python end-to-end suite: processes and in-process peers.

- `loop.BackgroundLoop`: one asyncio loop on a daemon thread, for in-process servers.
- `relay.Relay`: the `tollgate` binary on 127.0.0.1:0, port parsed from its log.
- `echo.EchoUpstream`: a strict `websockets` echo server that records what it saw.
- `mock_upstream.MockUpstream`: a tiny Responses-protocol upstream (Python).
- `rust_mock.RustMock`: `loadtest mock-upstream` as a subprocess, when it is usable.
- `shim.AuthShim`: TCP shim that inserts an `Authorization` header (for kosoku).
"""
