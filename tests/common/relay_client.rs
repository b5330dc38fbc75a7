//! The client the relay suites (tests/relay.rs, tests/relay_tls.rs) share: Codex's headers
//! on a `?trace=1` path, a Responses `response.create`, and a refused upgrade read back.

use std::time::Duration;

use tollgate_loadtest::client::{connect, ClientOpts, ConnectError, WsClient};

use super::{start_relay, TestRelay, RELAY_KEY};

/// The relay's key, Codex's headers, and a query string the relay must pass through.
pub fn opts() -> ClientOpts {
    ClientOpts {
        headers: vec![
            ("Authorization".into(), format!("Bearer {RELAY_KEY}")),
            (
                "OpenAI-Beta".into(),
                "responses_websockets=2026-02-06".into(),
            ),
            ("session_id".into(), "sess-42".into()),
            ("x-client-request-id".into(), "req-7".into()),
            ("originator".into(), "codex_cli_rs".into()),
        ],
        path: "/v1/responses?trace=1".into(),
        recv_timeout: Some(Duration::from_secs(20)),
        ..ClientOpts::default()
    }
}

/// A plain WebSocket through `relay`, upgraded.
pub async fn client(relay: &TestRelay) -> WsClient {
    connect(&format!("ws://{}/v1/responses?trace=1", relay.addr), opts())
        .await
        .expect("upgrade through the relay")
}

/// A `response.create` for `model`; `extra` is appended inside the object.
pub fn create(model: &str, extra: &str) -> String {
    format!(
        r#"{{"type":"response.create","model":"{model}","input":[{{"type":"message","role":"user","content":[{{"type":"input_text","text":"say \"hi\"\n"}}]}}]{extra}}}"#
    )
}

/// Starts a relay on `upstream` and returns the HTTP refusal its upgrade gets: status,
/// headers, body. Panics on a 101 or a failure that is not an HTTP answer.
pub async fn refused_status(
    driver: &str,
    upstream: &str,
    extra: &[&str],
) -> (u16, Vec<(String, String)>, String) {
    let relay = start_relay(driver, upstream, extra);
    refused(connect(&format!("ws://{}/v1/responses", relay.addr), opts()).await)
}

/// The HTTP refusal an upgrade got: status, headers, body. Panics on a session or a
/// failure that is not an HTTP answer.
pub fn refused(r: Result<WsClient, ConnectError>) -> (u16, Vec<(String, String)>, String) {
    match r {
        Err(ConnectError::Refused {
            status,
            headers,
            body,
        }) => (status, headers, body),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, got a session"),
    }
}
