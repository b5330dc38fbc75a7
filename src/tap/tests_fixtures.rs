//! Fixture tests of the tap: every trace of `tests/fixtures/responses-ws/` fed whole, re-chunked
//! at random split points (seeded), and one byte at a time, through the SIMD and scalar taps,
//! against `NAME.expected.json` and against a serde_json reference extractor.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::*;

const LOCAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/responses-ws");
const SHARED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/responses-ws"
);
const SMALL: [&str; 7] = [
    "basic",
    "incomplete-failed-error",
    "lanes",
    "reasoning-cached",
    "steer-unknown",
    "type-last",
    "warmup",
];
const BIG: usize = 1 << 30;

pub(super) struct Fixture {
    pub(super) client: Vec<Vec<u8>>,
    pub(super) upstream: Vec<Vec<u8>>,
    expected: Value,
}

fn lines(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

pub(super) fn load(dir: &str, name: &str) -> Fixture {
    let dir = Path::new(dir);
    let expected = std::fs::read(dir.join(format!("{name}.expected.json"))).expect("expected");
    Fixture {
        client: lines(&dir.join(format!("{name}.client.jsonl"))),
        upstream: lines(&dir.join(format!("{name}.upstream.jsonl"))),
        expected: serde_json::from_slice(&expected).expect("expected.json parses"),
    }
}

/// How to cut each message into chunks.
#[derive(Clone, Copy, Debug)]
pub(super) enum Cut {
    Whole,
    /// Random split points, 0-length chunks included, chunks of at most `max` bytes.
    Random {
        seed: u64,
        max: usize,
    },
    Bytes1,
}

/// Feeds one message cut as asked; returns every event (the tap must return at most one).
pub(super) fn feed_msg(
    tap: &mut Tap,
    msg: &[u8],
    cut: Cut,
    rng: &mut fastrand::Rng,
) -> Vec<TapEvent> {
    let mut out = Vec::new();
    match cut {
        Cut::Whole => out.extend(tap.feed(msg, true)),
        Cut::Bytes1 => {
            for (i, b) in msg.iter().enumerate() {
                out.extend(tap.feed(std::slice::from_ref(b), i + 1 == msg.len()));
            }
        }
        Cut::Random { max, .. } => {
            let mut rest = msg;
            loop {
                let n = if rng.u8(..8) == 0 {
                    0
                } else {
                    rng.usize(1..=max.max(1))
                };
                let n = n.min(rest.len());
                let (head, tail) = rest.split_at(n);
                rest = tail;
                let last = rest.is_empty();
                // Sometimes the final chunk is followed by an empty `fin` chunk.
                let fin_later = last && rng.bool();
                out.extend(tap.feed(head, last && !fin_later));
                if fin_later {
                    out.extend(tap.feed(&[], true));
                }
                if last {
                    break;
                }
            }
        }
    }
    assert!(
        out.len() <= 1,
        "more than one event for one message: {out:?}"
    );
    out
}

/// Events for every message of `msgs` (None where the tap reported nothing).
pub(super) fn run(tap: &mut Tap, msgs: &[Vec<u8>], cut: Cut) -> Vec<Option<TapEvent>> {
    let seed = match cut {
        Cut::Random { seed, .. } => seed,
        _ => 0,
    };
    let mut rng = fastrand::Rng::with_seed(seed);
    msgs.iter()
        .map(|m| feed_msg(tap, m, cut, &mut rng).pop())
        .collect()
}

fn as_record(t: &Terminal) -> Value {
    let u = t.usage.unwrap_or_default();
    json!({
        "response_id": t.response_id, "stream_id": t.stream_id, "model": t.model,
        "status": t.status, "service_tier": t.service_tier,
        "input_tokens": u.input_tokens, "cached_tokens": u.cached_tokens,
        "output_tokens": u.output_tokens, "reasoning_tokens": u.reasoning_tokens,
    })
}

fn terminals(events: &[Option<TapEvent>]) -> Value {
    Value::Array(
        events
            .iter()
            .filter_map(|e| match e {
                Some(TapEvent::Terminal(t)) => Some(as_record(t)),
                _ => None,
            })
            .collect(),
    )
}

/// The exact text of `response.usage` when it is an object (serde_json's `RawValue`).
fn raw_usage(msg: &[u8]) -> Option<Box<str>> {
    #[derive(serde::Deserialize)]
    struct Event<'a> {
        #[serde(borrow)]
        response: Option<Resp<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Resp<'a> {
        #[serde(borrow)]
        usage: Option<&'a serde_json::value::RawValue>,
    }
    let e: Event<'_> = serde_json::from_slice(msg).ok()?;
    let raw = e.response?.usage?.get();
    raw.starts_with('{').then(|| Box::from(raw))
}

/// What a correct tap reports, computed with serde_json over the whole message.
pub(super) fn reference(dir: Direction, track: bool, msg: &[u8]) -> Option<TapEvent> {
    let v: Value = serde_json::from_slice(msg).ok()?;
    let obj = v.as_object()?;
    let s = |o: &Map<String, Value>, k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
    let n = |o: &Map<String, Value>, k: &str| o.get(k).and_then(Value::as_u64);
    let ty = obj.get("type")?.as_str()?;
    let stream_id = s(obj, "stream_id");
    let terminal = |event| {
        let r = obj.get("response")?.as_object()?;
        let usage = r.get("usage").and_then(Value::as_object).map(|u| {
            let sub = |d: &str, k: &str| u.get(d).and_then(Value::as_object).and_then(|d| n(d, k));
            let (input, output) = (
                n(u, "input_tokens").unwrap_or(0),
                n(u, "output_tokens").unwrap_or(0),
            );
            Usage {
                input_tokens: input,
                cached_tokens: sub("input_tokens_details", "cached_tokens").unwrap_or(0),
                output_tokens: output,
                reasoning_tokens: sub("output_tokens_details", "reasoning_tokens").unwrap_or(0),
                total_tokens: n(u, "total_tokens").unwrap_or(input + output),
            }
        });
        Some(TapEvent::Terminal(Box::new(Terminal {
            event,
            response_id: s(r, "id")?,
            model: s(r, "model"),
            status: s(r, "status"),
            service_tier: s(r, "service_tier"),
            stream_id: stream_id.clone(),
            usage,
            usage_raw: raw_usage(msg),
        })))
    };
    match (dir, ty) {
        (Direction::ClientToUpstream, "response.create") => Some(TapEvent::Create {
            model: s(obj, "model"),
            stream_id,
            generate: obj.get("generate").and_then(Value::as_bool),
        }),
        (Direction::ClientToUpstream, "response.steer") => Some(TapEvent::Steer),
        (Direction::ClientToUpstream, _) => None,
        (_, "response.created") => {
            let r = obj.get("response")?.as_object()?;
            Some(TapEvent::Created {
                response_id: s(r, "id")?,
                stream_id,
                model: s(r, "model"),
            })
        }
        (_, "response.steer.accepted" | "response.steer.pending" | "response.steer.failed") => {
            let steer = obj.get("steer").and_then(Value::as_object);
            Some(TapEvent::SteerAnswer {
                outcome: match ty {
                    "response.steer.accepted" => SteerOutcome::Accepted,
                    "response.steer.pending" => SteerOutcome::Pending,
                    _ => SteerOutcome::Failed,
                },
                steer_id: steer.and_then(|o| s(o, "id")),
                previous_response_id: steer
                    .and_then(|o| s(o, "previous_response_id"))
                    .or_else(|| s(obj, "previous_response_id")),
            })
        }
        (_, "response.completed") => terminal(TerminalKind::Completed),
        (_, "response.incomplete") => terminal(TerminalKind::Incomplete),
        (_, "response.failed") => terminal(TerminalKind::Failed),
        (_, "error") => Some(TapEvent::Error {
            status: n(obj, "status").and_then(|s| u16::try_from(s).ok()),
            code: obj
                .get("error")
                .and_then(Value::as_object)
                .and_then(|e| s(e, "code")),
            stream_id,
        }),
        (_, t) if track && t.starts_with("response.") && t.ends_with(".delta") => {
            Some(TapEvent::Delta { stream_id })
        }
        _ => None,
    }
}

fn taps(dir: Direction) -> [Tap; 2] {
    [Tap::new(dir, BIG), Tap::new_scalar(dir, BIG)]
}

/// Runs one fixture with one cut through both taps, both delta modes, checking everything.
fn check(name: &str, fx: &Fixture, cut: Cut) {
    for track in [false, true] {
        for (tap, kind) in taps(Direction::UpstreamToClient)
            .iter_mut()
            .zip(["simd", "scalar"])
        {
            tap.set_track_deltas(track);
            let events = run(tap, &fx.upstream, cut);
            let ctx = format!("{name} upstream {kind} track={track} {cut:?}");
            assert_eq!(terminals(&events), fx.expected, "{ctx}");
            for (i, (got, msg)) in events.iter().zip(&fx.upstream).enumerate() {
                let want = reference(Direction::UpstreamToClient, track, msg);
                assert_eq!(got, &want, "{ctx} line {}", i + 1);
            }
            assert_eq!((tap.overflows(), tap.malformed()), (0, 0), "{ctx}");
        }
    }
    for (tap, kind) in taps(Direction::ClientToUpstream)
        .iter_mut()
        .zip(["simd", "scalar"])
    {
        let events = run(tap, &fx.client, cut);
        for (i, (got, msg)) in events.iter().zip(&fx.client).enumerate() {
            let want = reference(Direction::ClientToUpstream, false, msg);
            assert_eq!(got, &want, "{name} client {kind} {cut:?} line {}", i + 1);
        }
    }
}

#[test]
fn fixtures_whole_match_expected() {
    for name in SMALL {
        check(name, &load(LOCAL, name), Cut::Whole);
    }
}

#[test]
fn fixtures_rechunked_match_expected() {
    for name in SMALL {
        let fx = load(LOCAL, name);
        for seed in 0..60 {
            // Small chunks for some seeds, up to whole-message chunks for others.
            let max = [1, 3, 16, 64, 256, 4096][seed as usize % 6];
            check(name, &fx, Cut::Random { seed, max });
        }
    }
}

#[test]
fn fixtures_one_byte_chunks() {
    for name in SMALL {
        check(name, &load(LOCAL, name), Cut::Bytes1);
    }
}

#[test]
fn large_fixture_whole_and_rechunked() {
    if !Path::new(SHARED).join("large.upstream.jsonl").exists() {
        println!("NOTICE: {SHARED} absent, large fixture test skipped");
        return;
    }
    let fx = load(SHARED, "large");
    check("large", &fx, Cut::Whole);
    for seed in 0..3 {
        check(
            "large",
            &fx,
            Cut::Random {
                seed,
                max: 1 << (8 + 4 * seed),
            },
        );
    }
}

#[test]
fn local_fixture_copies_match_shared() {
    if !Path::new(SHARED).exists() {
        println!("NOTICE: {SHARED} absent, fixture drift check skipped");
        return;
    }
    for name in SMALL {
        for ext in ["client.jsonl", "upstream.jsonl", "expected.json"] {
            let file = format!("{name}.{ext}");
            let local = std::fs::read(Path::new(LOCAL).join(&file)).expect("local fixture");
            let shared = std::fs::read(Path::new(SHARED).join(&file)).expect("shared fixture");
            assert!(
                local == shared,
                "tests/fixtures/responses-ws/{file} differs from shared/"
            );
        }
    }
}

fn create(model: &str, stream_id: Option<&str>, generate: Option<bool>) -> Option<TapEvent> {
    Some(TapEvent::Create {
        model: Some(model.into()),
        stream_id: stream_id.map(Into::into),
        generate,
    })
}

#[test]
fn create_events_from_client_fixtures() {
    let cases: [(&str, Vec<Option<TapEvent>>); 3] = [
        (
            "warmup",
            vec![
                create("gpt-5", None, Some(false)),
                create("gpt-5", None, None),
            ],
        ),
        (
            "lanes",
            vec![
                create("gpt-5", Some("agent_a"), None),
                create("gpt-5-mini", Some("agent.b-2"), None),
            ],
        ),
        // response.steer is reported (the meter waits for its answer); an unknown future
        // client event is not.
        (
            "steer-unknown",
            vec![create("gpt-5", None, None), Some(TapEvent::Steer), None],
        ),
    ];
    for (name, want) in cases {
        let fx = load(LOCAL, name);
        for cut in [Cut::Whole, Cut::Bytes1, Cut::Random { seed: 7, max: 9 }] {
            let mut tap = Tap::new(Direction::ClientToUpstream, BIG);
            assert_eq!(run(&mut tap, &fx.client, cut), want, "{name} {cut:?}");
        }
    }
}

#[test]
fn steer_answer_from_fixture_on_every_path() {
    let fx = load(LOCAL, "steer-unknown");
    let want = TapEvent::SteerAnswer {
        outcome: SteerOutcome::Accepted,
        steer_id: None,
        previous_response_id: Some("resp_672de172a2d38d0dba9089da".into()),
    };
    // Whole, a byte at a time (assembled: `previous_response_id` is kept, not dropped as
    // a member nothing reads), and cut at random.
    for cut in [Cut::Whole, Cut::Bytes1, Cut::Random { seed: 3, max: 7 }] {
        let mut tap = Tap::new(Direction::UpstreamToClient, BIG);
        let answers: Vec<_> = run(&mut tap, &fx.upstream, cut)
            .into_iter()
            .flatten()
            .filter(|e| matches!(e, TapEvent::SteerAnswer { .. }))
            .collect();
        assert_eq!(answers, vec![want.clone()], "{cut:?}");
    }
    // openai-python's shape (`steer: {id, previous_response_id}`), `type` last, an id
    // escaped, every answer, whole and a byte at a time.
    for (ty, outcome) in [
        ("response.steer.accepted", SteerOutcome::Accepted),
        ("response.steer.pending", SteerOutcome::Pending),
        ("response.steer.failed", SteerOutcome::Failed),
    ] {
        let msg = format!(
            r#"{{"sequence_number":4,"steer":{{"input":[{{"type":"message"}}],"previous_response_id":"resp_\u0061","id":"steer_1"}},"error":{{"type":"x"}},"type":"{ty}"}}"#
        );
        let want = Some(TapEvent::SteerAnswer {
            outcome,
            steer_id: Some("steer_1".into()),
            previous_response_id: Some("resp_a".into()),
        });
        for cut in [Cut::Whole, Cut::Bytes1] {
            let mut tap = Tap::new(Direction::UpstreamToClient, BIG);
            let got = run(&mut tap, &[msg.clone().into_bytes()], cut);
            assert_eq!(got, vec![want.clone()], "{ty} {cut:?}");
        }
        let mut client = Tap::new(Direction::ClientToUpstream, BIG);
        assert_eq!(
            client.feed(msg.as_bytes(), true),
            None,
            "only from upstream"
        );
    }
}

#[test]
fn error_event_from_fixture() {
    let fx = load(LOCAL, "incomplete-failed-error");
    let mut tap = Tap::new(Direction::UpstreamToClient, BIG);
    let errors: Vec<_> = run(&mut tap, &fx.upstream, Cut::Whole)
        .into_iter()
        .flatten()
        .filter(|e| matches!(e, TapEvent::Error { .. }))
        .collect();
    let want = TapEvent::Error {
        status: Some(400),
        code: Some("previous_response_not_found".into()),
        stream_id: None,
    };
    assert_eq!(errors, vec![want]);
}

#[test]
fn lane_deltas_tracked_only_when_on() {
    let fx = load(LOCAL, "lanes");
    let mut tap = Tap::new(Direction::UpstreamToClient, BIG);
    let deltas = |events: Vec<Option<TapEvent>>| {
        events
            .into_iter()
            .flatten()
            .filter(|e| matches!(e, TapEvent::Delta { .. }))
            .collect::<Vec<_>>()
    };
    assert!(deltas(run(&mut tap, &fx.upstream, Cut::Whole)).is_empty());
    tap.set_track_deltas(true);
    let got = deltas(run(&mut tap, &fx.upstream, Cut::Whole));
    let lanes = |l: &str| {
        got.iter()
            .filter(|e| {
                **e == TapEvent::Delta {
                    stream_id: Some(l.into()),
                }
            })
            .count()
    };
    assert!(lanes("agent_a") > 0 && lanes("agent.b-2") > 0, "{got:?}");
    assert_eq!(lanes("agent_a") + lanes("agent.b-2"), got.len());
}
