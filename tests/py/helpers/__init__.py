"""Helpers for the Python end-to-end suite: processes and in-process peers.

- `loop.BackgroundLoop`: one asyncio loop on a daemon thread, for in-process servers.
- `relay.Relay`: the `tollgate` binary on 127.0.0.1:0, port parsed from its log.
- `echo.EchoUpstream`: a strict `websockets` echo server that records what it saw.
- `rust_mock.RustMock`: `loadtest mock-upstream` (the Responses-protocol mock) as a subprocess.
- `shim.TcpShim`: TCP shim that counts connections, records request heads and can insert
  an `Authorization` header (kosoku sends none).
"""
