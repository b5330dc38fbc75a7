//! Helpers shared by the loadtest integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use tollgate_loadtest::bench::host::MockHost;
use tollgate_loadtest::bench::peers::PeerEnv;
use tollgate_loadtest::client::{self, ClientOpts, WsClient};
use tollgate_loadtest::gen::{Report, RunConfig, Workload};
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

/// A short run of `workload` against `target`: 4 sessions on 2 threads for 600 ms.
pub fn quick(workload: Workload, target: String) -> RunConfig {
    RunConfig {
        target,
        workload,
        sessions: 4,
        threads: 2,
        progress: false,
        duration: Duration::from_millis(600),
        ..RunConfig::default()
    }
}

/// The `tollgate` binary of this build (next to `loadtest`). `cargo test` in the workspace
/// root builds it; `cargo test -p tollgate-loadtest` alone does not, so build it here
/// rather than skip (a skipped test proves nothing).
pub fn debug_tollgate() -> PathBuf {
    sibling_bin("tollgate")
}

/// A binary of the `tollgate` package next to `loadtest`, built here when missing.
pub fn sibling_bin(name: &str) -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_loadtest"));
    let t = exe.parent().expect("target dir").join(name);
    if !t.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let ok = std::process::Command::new(cargo)
            .current_dir(root)
            .args(["build", "-p", "tollgate", "--bin", name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok && t.is_file(), "could not build {}", t.display());
    }
    t
}

/// A plain (no TLS) environment for this build's relay, with a keys file in `dir`
/// holding the tenant `bench` with key `k-test-1`.
pub fn plain_env(dir: &std::path::Path) -> PeerEnv {
    let keys = dir.join("keys");
    std::fs::write(&keys, "bench k-test-1\n").unwrap();
    PeerEnv {
        tls: tollgate_loadtest::bench::peers::TlsMode::None,
        tls_files: None,
        tollgate: debug_tollgate(),
        keys_file: keys,
        sut_cpu: None,
    }
}
