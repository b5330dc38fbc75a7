//! Helpers shared by the loadtest integration tests.
#![allow(dead_code)]

use serde_json::{json, Value};
use tollgate_loadtest::bench::host::MockHost;
use tollgate_loadtest::client::{self, ClientOpts, WsClient};
use tollgate_loadtest::gen::Report;
use tollgate_loadtest::mock::{MockConfig, MockUpstream};

/// A `response.create` with `extra` merged in.
pub fn create(extra: Value) -> String {
    let mut v = json!({"type":"response.create","model":"gpt-5","store":false,
        "input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"hello ☃"}]}]});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    v.to_string()
}

/// Starts a mock with `cfg` and connects a plain client to it.
pub async fn mock_and_client(cfg: MockConfig) -> (MockUpstream, WsClient) {
    let mock = MockUpstream::start(cfg).await.expect("mock starts");
    let c = client::connect(&mock.url(), ClientOpts::default())
        .await
        .expect("client connects");
    (mock, c)
}

/// The `type` of each event.
pub fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// The expected type sequence of one generated response with `n` deltas.
pub fn expected_types(n: usize, terminal: &str) -> Vec<String> {
    let mut t = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    t.extend(std::iter::repeat_n("response.output_text.delta", n));
    t.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        terminal,
    ]);
    t.into_iter().map(str::to_string).collect()
}

/// A mock that echoes every frame and records nothing.
pub fn echo_mock() -> MockHost {
    MockHost::start(MockConfig {
        echo: true,
        record: false,
        ..MockConfig::default()
    })
    .unwrap()
}

/// Every frame the run sent came back, and each was timed.
pub fn assert_every_echo_back(r: &Report) {
    assert_eq!(r.counts.errors, 0, "{:?}", r.error_samples);
    assert!(r.counts.frames_sent > 500, "{:?}", r.counts);
    assert_eq!(r.counts.frames_received, r.counts.frames_sent);
    assert_eq!(r.latency["echo"].count, r.counts.frames_sent);
}
