//! Every fixture trace, as real WebSocket frames (masked client frames, fragmented
//! messages, arbitrary read boundaries), through the relay's walker, tap, session meter
//! and durable sink: the records must equal `NAME.expected.json`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tollgate::metering::{read_log, EndReason, SessionMeter, Sink, SinkConfig, SinkPath};
use tollgate::metrics::Registry;
use tollgate::relay::walker::Walker;
use tollgate::tap::{Direction, Tap};
use tollgate::ws::frame::{encode_frame, Opcode, Role};

const SCENARIOS: [&str; 8] = [
    "basic",
    "reasoning-cached",
    "lanes",
    "incomplete-failed-error",
    "type-last",
    "warmup",
    "large",
    "steer-unknown",
];

fn fixture_dir(name: &str) -> Option<PathBuf> {
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/responses-ws");
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/responses-ws");
    [local, shared]
        .into_iter()
        .find(|d| d.join(format!("{name}.upstream.jsonl")).exists())
}

/// Encode each line as one message split into `pieces(i)` frames.
fn encode(lines: &[&str], mask: bool, rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        let bytes = line.as_bytes();
        let pieces = rng.usize(1..=4).min(bytes.len().max(1));
        let mut cuts: Vec<usize> = (0..pieces - 1)
            .map(|_| rng.usize(0..=bytes.len()))
            .collect();
        cuts.sort_unstable();
        let mut start = 0;
        for (i, end) in cuts.into_iter().chain([bytes.len()]).enumerate() {
            let op = if i == 0 {
                Opcode::Text
            } else {
                Opcode::Continuation
            };
            let mut frame = Vec::new();
            encode_frame(
                &mut frame,
                op,
                &bytes[start..end],
                mask.then(|| rng.u32(..).to_ne_bytes()),
            );
            if i + 1 < pieces {
                frame[0] &= 0x7f; // not FIN
            }
            out.extend(frame);
            if rng.u8(..) < 40 {
                // A ping between fragments, as a peer may send.
                encode_frame(
                    &mut out,
                    Opcode::Ping,
                    b"k",
                    mask.then(|| rng.u32(..).to_ne_bytes()),
                );
            }
            start = end;
        }
    }
    out
}

/// Walk `wire` in random read-sized chunks as a pump would; hand events to `on_event`.
fn walk(
    wire: &[u8],
    sender: Role,
    rng: &mut fastrand::Rng,
    mut on_event: impl FnMut(tollgate::tap::TapEvent, &mut Tap),
) {
    let dir = if sender == Role::Client {
        Direction::ClientToUpstream
    } else {
        Direction::UpstreamToClient
    };
    let mut walker = Walker::new(sender, 64 << 20, 64 << 20, 4096);
    let mut tap = Tap::new(dir, 64 << 20);
    let mut buf = Vec::new();
    let mut pos = 0;
    while pos < wire.len() {
        let n = rng.usize(1..=8192).min(wire.len() - pos);
        buf.extend_from_slice(&wire[pos..pos + n]);
        pos += n;
        let w = walker
            .walk(&mut buf, &mut tap, &mut on_event)
            .expect("fixtures are valid frames");
        buf.drain(..w.ready);
    }
    assert!(buf.is_empty());
}

#[test]
fn fixtures_through_walker_tap_meter_and_sink_give_the_expected_records() {
    for name in SCENARIOS {
        let Some(dir) = fixture_dir(name) else {
            eprintln!("skipping {name}: fixture not found (../shared absent)");
            continue;
        };
        let client = std::fs::read_to_string(dir.join(format!("{name}.client.jsonl"))).unwrap();
        let upstream = std::fs::read_to_string(dir.join(format!("{name}.upstream.jsonl"))).unwrap();
        let expected: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{name}.expected.json"))).unwrap(),
        )
        .unwrap();
        let client: Vec<&str> = client.lines().filter(|l| !l.is_empty()).collect();
        let upstream: Vec<&str> = upstream.lines().filter(|l| !l.is_empty()).collect();
        let seeds = if name == "large" { 2 } else { 12 };
        for seed in 0..seeds {
            let mut rng = fastrand::Rng::with_seed(seed);
            let tmp = tempfile::tempdir().unwrap();
            let log = tmp.path().join("usage.jsonl");
            let registry = Arc::new(Registry::new());
            let sink = Sink::start(
                SinkConfig::new(SinkPath::File(log.clone())),
                registry.sink_metrics(),
            )
            .unwrap();
            let mut meter =
                SessionMeter::new(1, Arc::from("acme"), Arc::from("ws://mock"), sink.handle());
            let now = Instant::now();
            walk(
                &encode(&client, true, &mut rng),
                Role::Client,
                &mut rng,
                |ev, _| meter.on_client(&ev, now),
            );
            walk(
                &encode(&upstream, false, &mut rng),
                Role::Server,
                &mut rng,
                |ev, tap| {
                    meter.on_upstream(&ev, now).unwrap();
                    tap.set_track_deltas(meter.wants_deltas());
                },
            );
            assert_eq!(meter.open_responses(), 0, "{name}: every response ended");
            meter.finish(EndReason::ClientDisconnected, now);
            let stats = sink.shutdown().unwrap();
            assert!(stats.not_durable.is_empty());
            let recs = read_log(&log).unwrap().records;
            let want = expected.as_array().unwrap();
            assert_eq!(recs.len(), want.len(), "{name} seed {seed}: {recs:#?}");
            for (r, w) in recs.iter().zip(want) {
                let got = serde_json::json!({
                    "response_id": r.response_id, "stream_id": r.stream_id, "model": r.model,
                    "status": r.status.as_str(), "service_tier": r.service_tier,
                    "input_tokens": r.input_tokens, "cached_tokens": r.cached_tokens,
                    "output_tokens": r.output_tokens, "reasoning_tokens": r.reasoning_tokens,
                });
                assert_eq!(&got, w, "{name} seed {seed}");
                assert!(r.usage_final);
            }
        }
    }
}
