//! Every fixture trace through the real tap and a `SessionMeter`: the records must equal
//! `NAME.expected.json` (one per terminal event, in upstream order).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::temp_log;
use crate::metering::reader::read_log;
use crate::metering::record::UsageRecord;
use crate::metering::session::{EndReason, SessionMeter};
use crate::metering::sink::{Sink, SinkConfig, SinkPath};
use crate::metrics::SinkMetrics;
use crate::tap::{Direction, Tap};

const LOCAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/responses-ws");
/// `large` is kept only in the shared fixtures beside the repository.
const SHARED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/responses-ws"
);
const NAMES: [&str; 8] = [
    "basic",
    "incomplete-failed-error",
    "lanes",
    "large",
    "reasoning-cached",
    "steer-unknown",
    "type-last",
    "warmup",
];

fn lines(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Client frames first (pipelined creates), then the upstream trace.
fn meter_fixture(dir: &Path, name: &str) -> (Vec<UsageRecord>, usize) {
    let (_d, path) = temp_log();
    let sink = Sink::start(
        SinkConfig::new(SinkPath::File(path.clone())),
        Arc::new(SinkMetrics::default()),
    )
    .expect("start");
    let mut m = SessionMeter::new(1, Arc::from("t"), Arc::from("u"), sink.handle());
    let mut up = Tap::new(Direction::ClientToUpstream, 1 << 30);
    let mut down = Tap::new(Direction::UpstreamToClient, 1 << 30);
    let now = Instant::now();
    for msg in lines(&dir.join(format!("{name}.client.jsonl"))) {
        if let Some(ev) = up.feed(&msg, true) {
            m.on_client(&ev, now);
        }
    }
    let mut deltas = 0;
    for msg in lines(&dir.join(format!("{name}.upstream.jsonl"))) {
        down.set_track_deltas(m.wants_deltas());
        if let Some(ev) = down.feed(&msg, true) {
            deltas += usize::from(matches!(ev, crate::tap::TapEvent::Delta { .. }));
            m.on_upstream(&ev, now).expect("submit");
        }
    }
    assert_eq!(
        m.open_responses(),
        0,
        "{name}: every create answered or failed"
    );
    m.finish(EndReason::ClientDisconnected, now);
    sink.shutdown().expect("shutdown");
    (read_log(&path).expect("read").records, deltas)
}

#[test]
fn fixtures_meter_to_expected_records() {
    let mut ran = 0;
    for name in NAMES {
        let Some(dir) = [LOCAL, SHARED]
            .map(Path::new)
            .into_iter()
            .find(|d| d.join(format!("{name}.expected.json")).exists())
        else {
            assert_eq!(name, "large", "small fixtures are in the repository");
            continue;
        };
        ran += 1;
        let expected: Value = serde_json::from_slice(
            &std::fs::read(dir.join(format!("{name}.expected.json"))).expect("expected"),
        )
        .expect("json");
        let expected = expected.as_array().expect("array");
        let (recs, deltas) = meter_fixture(dir, name);
        assert_eq!(recs.len(), expected.len(), "{name}");
        for (r, e) in recs.iter().zip(expected) {
            let got = serde_json::json!({
                "response_id": r.response_id, "stream_id": r.stream_id, "model": r.model,
                "status": r.status.as_str(), "service_tier": r.service_tier,
                "input_tokens": r.input_tokens, "cached_tokens": r.cached_tokens,
                "output_tokens": r.output_tokens, "reasoning_tokens": r.reasoning_tokens,
            });
            assert_eq!(&got, e, "{name}");
            assert!(r.usage_final, "{name}: terminal usage is final");
            assert!(r.requested_model.is_some(), "{name}: requested model known");
            assert_eq!(
                r.ttft_ms.is_some(),
                r.output_tokens > 0,
                "{name}: ttft iff output"
            );
        }
        // Tracking stops after each response's first output: on one lane, at most one delta
        // per response reaches the meter (interleaved lanes see more until both have output).
        if name != "lanes" {
            assert!(deltas <= expected.len(), "{name}: {deltas} deltas tracked");
        }
    }
    assert!(ran >= NAMES.len() - 1);
}
