//! The session core with plain byte buffers: decisions on client messages, deadlines, drain.

use std::collections::HashMap;

use super::*;
use crate::limits::{TenantLimits, Tenants};
use crate::metering::{Sink, SinkConfig, SinkPath};
use crate::metrics::{Registry, SinkMetrics};
use crate::relay::lifecycle::Deadline;
use crate::ws::frame::{encode_frame, parse_header, Opcode};
use crate::ws::mask::apply_mask;

pub(super) struct Fixture {
    pub(super) core: SessionCore,
    sink_metrics: Arc<SinkMetrics>,
    _sink: Sink,
    _dir: tempfile::TempDir,
    budget: Rc<Budget>,
}

fn limits() -> SessionLimits {
    SessionLimits {
        frames: FrameLimits {
            max_frame_bytes: 1 << 20,
            max_message_up: 1 << 20,
            max_message_down: 1 << 20,
            max_fragments: 64,
        },
        idle_timeout: Duration::from_secs(300),
        response_timeout: Duration::from_secs(1800),
        orphan_drain_timeout: Duration::from_secs(120),
        slow_consumer_timeout: Duration::from_secs(30),
        max_connection_age: None,
        drain_timeout: Duration::from_secs(120),
        debug_panic_model: None,
    }
}

fn fixture_with(turns_per_minute: Option<u32>, budget: usize) -> Fixture {
    fixture_routed(turns_per_minute, budget, None)
}

pub(super) fn fixture_routed(
    turns_per_minute: Option<u32>,
    budget: usize,
    route: Option<(Arc<Routes>, usize)>,
) -> Fixture {
    let dir = tempfile::tempdir().expect("tmp");
    let sink_metrics = Arc::new(SinkMetrics::default());
    let sink = Sink::start(
        SinkConfig::new(SinkPath::File(dir.path().join("u.jsonl"))),
        sink_metrics.clone(),
    )
    .expect("sink");
    let tenants = Tenants::new(
        TenantLimits {
            turns_per_minute,
            ..TenantLimits::default()
        },
        HashMap::new(),
    );
    let budget = Rc::new(Budget::new(budget));
    let env = CoreEnv {
        sink: sink.handle(),
        budget: budget.clone(),
        tenant: Some(tenants.get(&Arc::from("acme"))),
        metrics: Rc::new(WorkerMetrics::new(Arc::new(Registry::new()))),
        route,
    };
    let core = SessionCore::new(
        1,
        Arc::from("acme"),
        Arc::from("up"),
        Rc::new(limits()),
        env,
        Instant::now(),
    );
    Fixture {
        core,
        sink_metrics,
        _sink: sink,
        _dir: dir,
        budget,
    }
}

pub(super) fn fixture() -> Fixture {
    fixture_with(None, 1 << 30)
}

pub(super) fn client_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, opcode, payload, Some([0x11, 0x22, 0x33, 0x44]));
    out
}

pub(super) fn server_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, Opcode::Text, payload, None);
    out
}

/// Unmasked payloads of the client frames in `b`.
pub(super) fn payloads(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let h = parse_header(b, Role::Client, 1 << 30).unwrap().unwrap();
        let end = h.header_len + h.payload_len as usize;
        let mut p = b[h.header_len..end].to_vec();
        if let Some(k) = h.mask {
            apply_mask(&mut p, k, 0);
        }
        out.push(p);
        b = &b[end..];
    }
    out
}

/// The error events in the outbox, as JSON.
pub(super) fn outbox_events(core: &mut SessionCore) -> Vec<serde_json::Value> {
    let Some(out) = core.take_outbox() else {
        return Vec::new();
    };
    let mut v = Vec::new();
    let mut b = &out[..];
    while !b.is_empty() {
        let h = parse_header(b, Role::Server, 1 << 30).unwrap().unwrap();
        let end = h.header_len + h.payload_len as usize;
        v.push(serde_json::from_slice(&b[h.header_len..end]).expect("json"));
        b = &b[end..];
    }
    v
}

pub(super) const CREATE: &[u8] =
    br#"{"type":"response.create","model":"gpt-5","stream_id":"lane-1","input":"hi"}"#;

/// The upstream's `response.created` for [`CREATE`]'s lane, as a server frame.
pub(super) fn created_frame(id: &str) -> Vec<u8> {
    server_frame(
        format!(r#"{{"type":"response.created","stream_id":"lane-1","response":{{"id":"{id}","model":"gpt-5"}}}}"#)
            .as_bytes(),
    )
}

#[test]
fn a_create_is_held_until_whole_then_forwarded_and_metered() {
    let mut f = fixture();
    let frame = client_frame(Opcode::Text, CREATE);
    let now = Instant::now();
    // The first half: nothing may leave yet.
    let mut buf = frame[..20].to_vec();
    let step = f.core.on_bytes(Direction::ClientToUpstream, &mut buf, now);
    assert_eq!((step.forward, step.skip, step.next), (0, 0, Next::Read));
    assert!(
        f.budget.used() >= 20,
        "held bytes are charged to the worker"
    );
    buf.extend_from_slice(&frame[20..]);
    let step = f.core.on_bytes(Direction::ClientToUpstream, &mut buf, now);
    assert_eq!((step.forward, step.skip), (frame.len(), frame.len()));
    assert!(step.boundary);
    assert_eq!(
        payloads(&buf),
        vec![CREATE.to_vec()],
        "same message, re-masked"
    );
    assert_ne!(buf, frame, "a fresh mask key");
    assert_eq!(f.core.open_responses(), 1);
    assert!(f.core.take_outbox().is_none());
    assert_eq!(f.budget.used(), 0, "nothing held any more");
}

#[test]
fn unknown_client_events_pass_through_untouched() {
    let mut f = fixture();
    for msg in [
        &br#"{"type":"response.steer","input":"also this"}"#[..],
        br#"{"type":"response.append","x":1}"#,
        br#"{"type":"some.future.event","nested":{"type":"response.create"}}"#,
        br#"not json at all"#,
    ] {
        let mut buf = client_frame(Opcode::Text, msg);
        let n = buf.len();
        let step = f
            .core
            .on_bytes(Direction::ClientToUpstream, &mut buf, Instant::now());
        assert_eq!((step.forward, step.skip), (n, n));
        assert_eq!(payloads(&buf), vec![msg.to_vec()]);
    }
    assert_eq!(f.core.open_responses(), 0, "none of those is a create");
}

#[test]
fn a_create_while_the_usage_log_is_down_is_refused_with_its_stream_id() {
    let mut f = fixture();
    f.sink_metrics.fail();
    let mut buf = client_frame(Opcode::Text, CREATE);
    let next = client_frame(Opcode::Text, br#"{"type":"response.steer"}"#);
    let first = buf.len();
    buf.extend_from_slice(&next);
    let step = f
        .core
        .on_bytes(Direction::ClientToUpstream, &mut buf, Instant::now());
    assert_eq!(
        (step.forward, step.skip, step.next),
        (0, first, Next::Again)
    );
    let ev = outbox_events(&mut f.core);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["type"], "error");
    assert_eq!(ev[0]["status"], 503);
    assert_eq!(ev[0]["stream_id"], "lane-1");
    assert_eq!(ev[0]["error"]["code"], "usage_log_unavailable");
    assert_eq!(
        f.core.open_responses(),
        0,
        "a refused create is not pending"
    );
    // What follows the refused create is still walked and forwarded.
    let mut rest = buf[first..].to_vec();
    let step = f
        .core
        .on_bytes(Direction::ClientToUpstream, &mut rest, Instant::now());
    assert_eq!(step.forward, next.len());
}

#[test]
fn a_create_sent_as_a_binary_frame_is_held_and_refused_too() {
    let mut f = fixture();
    f.sink_metrics.fail();
    let mut buf = client_frame(Opcode::Binary, CREATE);
    let step = f
        .core
        .on_bytes(Direction::ClientToUpstream, &mut buf, Instant::now());
    assert_eq!(step.forward, 0);
    assert_eq!(
        outbox_events(&mut f.core)[0]["error"]["code"],
        "usage_log_unavailable"
    );
}

#[test]
fn bad_stream_ids_and_huge_models_are_refused_without_echoing_them() {
    let mut f = fixture();
    let long_lane = "x".repeat(MAX_STREAM_ID + 1);
    let long_model = "m".repeat(MAX_MODEL + 1);
    for (msg, code) in [
        (
            format!(r#"{{"type":"response.create","model":"gpt-5","stream_id":"{long_lane}"}}"#),
            "invalid_stream_id",
        ),
        (
            r#"{"type":"response.create","model":"gpt-5","stream_id":"bad lane!"}"#.to_string(),
            "invalid_stream_id",
        ),
        (
            format!(r#"{{"type":"response.create","model":"{long_model}"}}"#),
            "invalid_model",
        ),
    ] {
        let mut buf = client_frame(Opcode::Text, msg.as_bytes());
        let step = f
            .core
            .on_bytes(Direction::ClientToUpstream, &mut buf, Instant::now());
        assert_eq!(step.forward, 0, "{code}");
        let ev = outbox_events(&mut f.core);
        assert_eq!(ev[0]["error"]["code"], code);
        assert!(
            ev[0].get("stream_id").is_none(),
            "an invalid lane is not echoed"
        );
    }
    assert_eq!(f.core.open_responses(), 0);
}

#[test]
fn turns_over_the_tenants_rate_get_rate_limit_exceeded() {
    let mut f = fixture_with(Some(2), 1 << 30);
    let mut codes = Vec::new();
    for _ in 0..3 {
        let mut buf = client_frame(Opcode::Text, CREATE);
        let step = f
            .core
            .on_bytes(Direction::ClientToUpstream, &mut buf, Instant::now());
        let ev = outbox_events(&mut f.core);
        codes.push((
            step.forward > 0,
            ev.first().map(|e| e["error"]["code"].clone()),
        ));
    }
    assert_eq!(codes[0], (true, None));
    assert_eq!(codes[1], (true, None));
    assert!(!codes[2].0, "the third is not forwarded");
    assert_eq!(
        codes[2].1.as_ref().and_then(|c| c.as_str()),
        Some("rate_limit_exceeded")
    );
    assert_eq!(f.core.open_responses(), 2);
}

#[test]
fn holding_past_the_workers_budget_closes_the_client_1013() {
    let mut f = fixture_with(None, 100);
    let big = vec![b'x'; 300];
    let mut frame = client_frame(Opcode::Text, &big);
    frame.truncate(200);
    let step = f
        .core
        .on_bytes(Direction::ClientToUpstream, &mut frame, Instant::now());
    assert!(matches!(
        step.next,
        Next::Ended(PumpEnd::Protocol { code: 1013, .. })
    ));
    assert_eq!(f.budget.used(), 0);
}

#[test]
fn a_client_close_is_held_while_responses_are_open() {
    let mut f = fixture();
    let mut buf = client_frame(Opcode::Text, CREATE);
    f.core
        .on_bytes(Direction::ClientToUpstream, &mut buf, Instant::now());
    let mut close = [0u8; 131];
    let n = crate::ws::close::encode_close_frame(&mut close, 1000, "", Some([1, 2, 3, 4]));
    let mut buf = close[..n].to_vec();
    let step = f
        .core
        .on_bytes(Direction::ClientToUpstream, &mut buf, Instant::now());
    assert_eq!(step.forward, 0, "not forwarded: the relay answers it");
    assert_eq!(
        step.next,
        Next::Ended(PumpEnd::PeerClose {
            code: Some(1000),
            held: true
        })
    );
}

#[test]
fn an_open_response_is_bounded_by_the_response_timeout_not_the_idle_timeout() {
    let mut f = fixture();
    let t0 = Instant::now();
    let mut ping = client_frame(Opcode::Ping, b"");
    f.core.on_bytes(Direction::ClientToUpstream, &mut ping, t0);
    let (at, ev) = f.core.next_deadline(None, [None, None], t0).expect("idle");
    assert_eq!(ev, Event::Deadline(Deadline::Idle));
    assert_eq!(at, t0 + Duration::from_secs(300));
    let mut buf = client_frame(Opcode::Text, CREATE);
    f.core.on_bytes(Direction::ClientToUpstream, &mut buf, t0);
    let (at, ev) = f
        .core
        .next_deadline(None, [None, None], t0)
        .expect("response");
    assert_eq!(ev, Event::Deadline(Deadline::Response));
    assert_eq!(at, t0 + Duration::from_secs(1800));
    // A stalled write comes first when it is nearer.
    let (at, ev) = f
        .core
        .next_deadline(None, [Some(t0), None], t0)
        .expect("stall");
    assert_eq!(
        (at, ev),
        (t0 + Duration::from_secs(30), Event::Stalled(Side::Client))
    );
    // Shutdown with a response open waits for the drain deadline.
    let dl = t0 + Duration::from_secs(10);
    assert_eq!(
        f.core.next_deadline(Some(dl), [None, None], t0),
        Some((dl, Event::Deadline(Deadline::Shutdown)))
    );
}

#[test]
fn the_drain_ends_when_the_last_open_response_is_recorded() {
    let mut f = fixture();
    let now = Instant::now();
    let mut buf = client_frame(Opcode::Text, CREATE);
    f.core.on_bytes(Direction::ClientToUpstream, &mut buf, now);
    let a = f
        .core
        .on_event(Event::Ended(Side::Client, PumpEnd::ReadError), true, now);
    assert!(a.start_drain && f.core.draining());
    let mut buf = created_frame("resp_1");
    let step = f.core.on_bytes(Direction::UpstreamToClient, &mut buf, now);
    assert_eq!(step.next, Next::Read);
    let mut buf = server_frame(
        br#"{"type":"response.completed","stream_id":"lane-1","response":{"id":"resp_1","model":"gpt-5","usage":{"input_tokens":1,"output_tokens":2,"total_tokens":3}}}"#,
    );
    let step = f.core.on_bytes(Direction::UpstreamToClient, &mut buf, now);
    assert_eq!(step.next, Next::Drained);
}

/// A terminal event split across reads: the walker tells the tap how long the frame is, so
/// its copy is charged to the worker's budget whole at the first read and given back once
/// the response is recorded.
#[test]
fn a_terminal_split_across_reads_is_charged_whole_then_given_back() {
    let mut f = fixture();
    let now = Instant::now();
    let mut buf = client_frame(Opcode::Text, CREATE);
    f.core.on_bytes(Direction::ClientToUpstream, &mut buf, now);
    let mut created = created_frame("resp_9");
    f.core
        .on_bytes(Direction::UpstreamToClient, &mut created, now);
    assert_eq!(f.core.open_responses(), 1);
    let payload = format!(
        r#"{{"type":"response.completed","stream_id":"lane-1","response":{{"id":"resp_9","model":"gpt-5","output":[{{"text":"{}"}}],"usage":{{"input_tokens":1,"output_tokens":2,"total_tokens":3}}}}}}"#,
        "word ".repeat(400)
    );
    let mut done = server_frame(payload.as_bytes());
    let header = done.len() - payload.len();
    let (first, rest) = done.split_at_mut(header + 100);
    let step = f.core.on_bytes(Direction::UpstreamToClient, first, now);
    assert_eq!(step.skip, first.len());
    assert_eq!(
        f.budget.used(),
        payload.len(),
        "the whole frame, charged once"
    );
    let step = f.core.on_bytes(Direction::UpstreamToClient, rest, now);
    assert_eq!(step.skip, rest.len());
    assert_eq!(f.budget.used(), 0, "given back at the message's end");
    assert_eq!(f.core.open_responses(), 0, "the response was recorded");
}

/// `response.created` and the first delta in one read: the tap starts reading deltas right
/// after the created event (not from the next read), so the first delta gives the response
/// its time to first token. (That the deltas after it are no longer scanned shows in the
/// profile in loadtest/BENCH.md, not here.)
#[test]
fn the_first_delta_in_the_same_read_as_created_sets_ttft() {
    let mut f = fixture();
    let now = Instant::now();
    let mut buf = client_frame(Opcode::Text, CREATE);
    f.core.on_bytes(Direction::ClientToUpstream, &mut buf, now);
    let mut read = created_frame("resp_3");
    for _ in 0..3 {
        read.extend(server_frame(
            br#"{"type":"response.output_text.delta","stream_id":"lane-1","delta":"hi"}"#,
        ));
    }
    let step = f.core.on_bytes(Direction::UpstreamToClient, &mut read, now);
    assert_eq!(step.skip, read.len());
    assert_eq!(f.core.open_responses(), 1);
    assert!(
        !f.core.meter.wants_deltas(),
        "the first delta of the read set the response's TTFT"
    );
}
