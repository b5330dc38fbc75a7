//! SessionMeter: matching across lanes, FIFO, steering successors, exactly-once.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::temp_log;
use crate::metering::reader::read_log;
use crate::metering::record::{RecordStatus, UsageRecord};
use crate::metering::session::{EndReason, SessionMeter};
use crate::metering::sink::{Sink, SinkConfig, SinkPath};
use crate::metrics::{Registry, SinkMetrics, WorkerMetrics};
use crate::tap::{TapEvent, Terminal, TerminalKind, Usage};

/// Runs `f` with a meter over a real file sink, then returns the records in the log.
pub(super) fn records(f: impl FnOnce(&mut SessionMeter, Instant)) -> Vec<UsageRecord> {
    records_with(None, f)
}

/// [`records`] with worker metrics attached to the meter.
pub(super) fn records_with(
    wm: Option<Rc<WorkerMetrics>>,
    f: impl FnOnce(&mut SessionMeter, Instant),
) -> Vec<UsageRecord> {
    let (_d, path) = temp_log();
    let sink = Sink::start(
        SinkConfig::new(SinkPath::File(path.clone())),
        Arc::new(SinkMetrics::default()),
    )
    .expect("start");
    let mut m = SessionMeter::new(42, Arc::from("acme"), Arc::from("openai"), sink.handle());
    if let Some(wm) = wm {
        m = m.with_metrics(wm);
    }
    f(&mut m, Instant::now());
    let stats = sink.shutdown().expect("shutdown");
    assert!(stats.not_durable.is_empty());
    let log = read_log(&path).expect("read");
    assert_eq!(log.torn_tail, None);
    log.records
}

pub(super) fn lane(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

pub(super) fn create(model: &str, l: Option<&str>) -> TapEvent {
    TapEvent::Create {
        model: Some(model.to_owned()),
        stream_id: lane(l),
        generate: None,
    }
}

pub(super) fn created(id: &str, l: Option<&str>, model: &str) -> TapEvent {
    TapEvent::Created {
        response_id: id.to_owned(),
        stream_id: lane(l),
        model: Some(model.to_owned()),
    }
}

pub(super) fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        cached_tokens: input / 2,
        output_tokens: output,
        reasoning_tokens: output / 2,
        total_tokens: input + output,
    }
}

pub(super) fn terminal(
    id: &str,
    l: Option<&str>,
    kind: TerminalKind,
    u: Option<Usage>,
) -> TapEvent {
    TapEvent::Terminal(Box::new(Terminal {
        event: kind,
        response_id: id.to_owned(),
        model: Some("gpt-5-2026".to_owned()),
        status: None,
        service_tier: Some("default".to_owned()),
        stream_id: lane(l),
        usage: u,
        usage_raw: None,
    }))
}

pub(super) fn delta(l: Option<&str>) -> TapEvent {
    TapEvent::Delta { stream_id: lane(l) }
}

pub(super) fn ms(t0: Instant, n: u64) -> Instant {
    t0 + Duration::from_millis(n)
}

#[test]
fn lanes_interleaved() {
    let recs = records(|m, t0| {
        m.on_client(&create("gpt-5", Some("a")), t0);
        m.on_client(&create("gpt-5-mini", Some("b")), ms(t0, 1));
        assert_eq!(m.open_responses(), 2);
        assert!(!m.wants_deltas());
        m.on_upstream(&created("rb", Some("b"), "gpt-5-mini"), ms(t0, 5))
            .expect("ok");
        m.on_upstream(&created("ra", Some("a"), "gpt-5"), ms(t0, 6))
            .expect("ok");
        assert!(m.wants_deltas());
        m.on_upstream(&delta(Some("b")), ms(t0, 21)).expect("ok");
        assert!(m.wants_deltas(), "lane a has no output yet");
        m.on_upstream(&delta(Some("a")), ms(t0, 40)).expect("ok");
        assert!(!m.wants_deltas());
        m.on_upstream(
            &terminal(
                "ra",
                Some("a"),
                TerminalKind::Completed,
                Some(usage(100, 20)),
            ),
            ms(t0, 100),
        )
        .expect("ok");
        assert_eq!(m.open_responses(), 1);
        m.on_upstream(
            &terminal(
                "rb",
                Some("b"),
                TerminalKind::Completed,
                Some(usage(200, 30)),
            ),
            ms(t0, 201),
        )
        .expect("ok");
        assert_eq!(m.open_responses(), 0);
    });
    assert_eq!(recs.len(), 2);
    let (a, b) = (&recs[0], &recs[1]);
    assert_eq!(
        (a.response_id.as_str(), a.stream_id.as_deref()),
        ("ra", Some("a"))
    );
    assert_eq!(a.requested_model.as_deref(), Some("gpt-5"));
    assert_eq!(
        a.model.as_deref(),
        Some("gpt-5-2026"),
        "the terminal's resolved model wins"
    );
    assert_eq!((a.ttft_ms, a.duration_ms), (Some(40), 100));
    assert_eq!(
        (
            a.input_tokens,
            a.cached_tokens,
            a.output_tokens,
            a.reasoning_tokens,
            a.total_tokens
        ),
        (100, 50, 20, 10, 120)
    );
    assert!(a.usage_final);
    assert_eq!(a.status, RecordStatus::Completed);
    assert_eq!(
        (a.session, a.tenant.as_str(), a.upstream.as_str()),
        (42, "acme", "openai")
    );
    assert_eq!(
        (b.response_id.as_str(), b.stream_id.as_deref()),
        ("rb", Some("b"))
    );
    assert_eq!(b.requested_model.as_deref(), Some("gpt-5-mini"));
    assert_eq!((b.ttft_ms, b.duration_ms), (Some(20), 200));
    assert_eq!(b.service_tier.as_deref(), Some("default"));
}

#[test]
fn fifo_within_a_lane() {
    let recs = records(|m, t0| {
        m.on_client(&create("m1", None), t0);
        m.on_client(&create("m2", None), ms(t0, 10));
        m.on_upstream(&created("r1", None, "x"), ms(t0, 11))
            .expect("ok");
        m.on_upstream(
            &terminal("r1", None, TerminalKind::Completed, Some(usage(1, 1))),
            ms(t0, 20),
        )
        .expect("ok");
        assert_eq!(m.open_responses(), 1, "second create still pending");
        m.on_upstream(&created("r2", None, "x"), ms(t0, 21))
            .expect("ok");
        m.on_upstream(
            &terminal("r2", None, TerminalKind::Incomplete, Some(usage(2, 2))),
            ms(t0, 50),
        )
        .expect("ok");
    });
    let got: Vec<_> = recs
        .iter()
        .map(|r| {
            (
                r.response_id.as_str(),
                r.requested_model.as_deref(),
                r.duration_ms,
                r.status,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("r1", Some("m1"), 20, RecordStatus::Completed),
            ("r2", Some("m2"), 40, RecordStatus::Incomplete)
        ]
    );
}

#[test]
fn steering_successor_opens_a_response() {
    let recs = records(|m, t0| {
        m.on_client(&create("gpt-5", None), t0);
        m.on_upstream(&created("r1", None, "gpt-5"), ms(t0, 1))
            .expect("ok");
        m.on_upstream(
            &terminal("r1", None, TerminalKind::Incomplete, Some(usage(10, 5))),
            ms(t0, 30),
        )
        .expect("ok");
        assert_eq!(m.open_responses(), 0);
        m.on_upstream(&created("r2", None, "gpt-5"), ms(t0, 31))
            .expect("ok");
        assert_eq!(m.open_responses(), 1, "successor without a pending create");
        assert!(m.wants_deltas());
        m.on_upstream(&delta(None), ms(t0, 36)).expect("ok");
        m.on_upstream(
            &terminal("r2", None, TerminalKind::Completed, Some(usage(25, 6))),
            ms(t0, 61),
        )
        .expect("ok");
        assert_eq!(m.open_responses(), 0);
    });
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[1].response_id, "r2");
    assert_eq!(
        recs[1].requested_model.as_deref(),
        Some("gpt-5"),
        "inherits the lane's model"
    );
    assert_eq!(
        (recs[1].ttft_ms, recs[1].duration_ms),
        (Some(5), 30),
        "timed from its own created"
    );
    assert_eq!(recs[1].input_tokens, 25);
}

#[test]
fn duplicate_terminal_is_ignored_and_counted() {
    let registry = Arc::new(Registry::new());
    let wm = Rc::new(WorkerMetrics::new(registry));
    let mut stats = None;
    let recs = records_with(Some(wm.clone()), |meter, t0| {
        meter.on_client(&create("gpt-5", None), t0);
        meter
            .on_upstream(&created("r1", None, "gpt-5"), t0)
            .expect("ok");
        let t = terminal("r1", None, TerminalKind::Completed, Some(usage(3, 4)));
        meter.on_upstream(&t, ms(t0, 5)).expect("ok");
        meter
            .on_upstream(&t, ms(t0, 6))
            .expect("duplicate is not an error");
        meter.finish(EndReason::ClientDisconnected, ms(t0, 7));
        stats = Some(meter.stats());
    });
    assert_eq!(recs.len(), 1, "exactly one record per response.id");
    let stats = stats.expect("ran");
    assert_eq!((stats.records, stats.duplicate_terminals), (1, 1));
    let snap = wm.snapshot();
    assert_eq!(snap.duplicate_terminals, 1);
    assert_eq!(
        snap.responses
            .get(&("completed".to_owned(), "default".to_owned())),
        Some(&1)
    );
    let tok = snap
        .tokens
        .get(&(
            "gpt-5-2026".to_owned(),
            "acme".to_owned(),
            "default".to_owned(),
        ))
        .expect("series");
    assert_eq!(
        (tok.input, tok.cached, tok.output, tok.reasoning),
        (3, 1, 4, 2)
    );
}

#[test]
fn duplicates_are_caught_within_the_recent_window_and_ids_past_it_are_forgotten() {
    use crate::metering::session::MAX_RECENT_DONE;
    let mut stats = None;
    let recs = records_with(None, |meter, t0| {
        let done = |meter: &mut SessionMeter, id: &str, at: u64| {
            meter.on_client(&create("gpt-5", None), ms(t0, at));
            meter
                .on_upstream(&created(id, None, "gpt-5"), ms(t0, at))
                .expect("ok");
            let t = terminal(id, None, TerminalKind::Completed, Some(usage(1, 1)));
            meter.on_upstream(&t, ms(t0, at + 1)).expect("ok");
        };
        for i in 0..MAX_RECENT_DONE {
            done(meter, &format!("r{i}"), 2 * i as u64);
        }
        // Every id of the window is still known: repeats are ignored (created and terminal).
        for i in [0, MAX_RECENT_DONE / 2, MAX_RECENT_DONE - 1] {
            let id = format!("r{i}");
            meter
                .on_upstream(&created(&id, None, "gpt-5"), ms(t0, 999))
                .expect("ok");
            let t = terminal(&id, None, TerminalKind::Completed, Some(usage(1, 1)));
            meter.on_upstream(&t, ms(t0, 999)).expect("ok");
        }
        // One more response pushes r0 out of the window: r0 is a new response again.
        done(meter, "fresh", 1000);
        done(meter, "r0", 1002);
        meter.finish(EndReason::ClientDisconnected, ms(t0, 1010));
        stats = Some(meter.stats());
    });
    let stats = stats.expect("ran");
    assert_eq!(stats.duplicate_terminals, 3);
    assert_eq!(recs.len(), MAX_RECENT_DONE + 2);
    assert_eq!(
        recs.iter().filter(|r| r.response_id == "r0").count(),
        2,
        "r0 once in the window and once after it was forgotten"
    );
}

#[test]
fn error_fails_the_pending_create_of_its_lane_only() {
    let mut stats = None;
    let recs = records(|m, t0| {
        m.on_client(&create("gpt-5", Some("x")), t0);
        m.on_client(&create("gpt-5", Some("y")), t0);
        let err = |l: Option<&str>| TapEvent::Error {
            status: Some(400),
            code: Some("previous_response_not_found".into()),
            stream_id: lane(l),
        };
        m.on_upstream(&err(Some("x")), ms(t0, 3)).expect("ok");
        assert_eq!(m.open_responses(), 1, "lane y still pending");
        m.on_upstream(&err(None), ms(t0, 4)).expect("ok");
        assert_eq!(
            m.open_responses(),
            1,
            "default-lane error does not touch lane y"
        );
        m.on_upstream(&created("ry", Some("y"), "gpt-5"), ms(t0, 5))
            .expect("ok");
        m.on_upstream(
            &terminal("ry", Some("y"), TerminalKind::Failed, Some(usage(7, 1))),
            ms(t0, 9),
        )
        .expect("ok");
        stats = Some(m.stats());
    });
    assert_eq!(recs.len(), 1, "no record for the failed create");
    assert_eq!(
        (recs[0].response_id.as_str(), recs[0].status),
        ("ry", RecordStatus::Failed)
    );
    let stats = stats.expect("ran");
    assert_eq!((stats.errors, stats.creates_failed), (2, 1));
}

#[test]
fn the_providers_usage_object_is_carried_whole_with_the_route() {
    let (_d, path) = temp_log();
    let sink = Sink::start(
        SinkConfig::new(SinkPath::File(path.clone())),
        Arc::new(SinkMetrics::default()),
    )
    .expect("start");
    let mut m = SessionMeter::new(1, Arc::from("acme"), Arc::from("wss://x"), sink.handle())
        .with_route(Arc::from("xai"));
    let t0 = Instant::now();
    m.on_client(&create("grok-4", None), t0);
    let raw = r#"{"input_tokens":7,"output_tokens":3,"total_tokens":10,"compute_units":2.5,"input_tokens_details":{"cached_tokens":0,"cache_write_tokens":6}}"#;
    let TapEvent::Terminal(mut t) =
        terminal("r1", None, TerminalKind::Completed, Some(usage(7, 3)))
    else {
        unreachable!()
    };
    t.usage_raw = Some(raw.into());
    m.on_upstream(&TapEvent::Terminal(t), ms(t0, 5))
        .expect("ok");
    // A terminal without a raw object (e.g. `usage: null`) records none.
    m.on_client(&create("grok-4", None), ms(t0, 6));
    m.on_upstream(&terminal("r2", None, TerminalKind::Failed, None), ms(t0, 9))
        .expect("ok");
    sink.shutdown().expect("shutdown");
    let recs = read_log(&path).expect("read").records;
    assert_eq!(recs.len(), 2);
    assert_eq!(
        (recs[0].route.as_str(), recs[1].route.as_str()),
        ("xai", "xai")
    );
    let u = recs[0].usage.as_ref().expect("usage carried").value();
    assert_eq!(u["compute_units"], serde_json::json!(2.5));
    assert_eq!(u["input_tokens_details"]["cache_write_tokens"], 6);
    assert_eq!(recs[0].input_tokens, 7);
    assert_eq!(recs[1].usage, None);
}

#[test]
fn a_quiet_session_gives_back_what_its_responses_grew() {
    let recs = records(|m, t0| {
        m.on_client(&create("gpt-5", Some("a")), t0);
        m.on_client(&create("gpt-5", Some("b")), t0);
        m.on_upstream(&created("ra", Some("a"), "gpt-5"), ms(t0, 1))
            .expect("ok");
        m.on_upstream(&created("rb", Some("b"), "gpt-5"), ms(t0, 2))
            .expect("ok");
        m.on_upstream(
            &terminal("ra", Some("a"), TerminalKind::Completed, Some(usage(1, 1))),
            ms(t0, 3),
        )
        .expect("ok");
        assert!(
            m.held_capacity() > 0,
            "rb is still open: nothing is given back yet"
        );
        m.on_upstream(
            &terminal("rb", Some("b"), TerminalKind::Completed, Some(usage(2, 2))),
            ms(t0, 4),
        )
        .expect("ok");
        assert_eq!(m.held_capacity(), 0, "quiet: open list and queues freed");
        // What outlives a response is kept: a repeated terminal is still a duplicate, and a
        // steering successor on lane a still inherits its model.
        m.on_upstream(
            &terminal("rb", Some("b"), TerminalKind::Completed, Some(usage(2, 2))),
            ms(t0, 5),
        )
        .expect("ok");
        assert_eq!(m.stats().duplicate_terminals, 1);
        m.on_upstream(&created("ra2", Some("a"), "gpt-5"), ms(t0, 6))
            .expect("ok");
        m.on_upstream(
            &terminal("ra2", Some("a"), TerminalKind::Completed, Some(usage(3, 3))),
            ms(t0, 9),
        )
        .expect("ok");
    });
    let ids: Vec<_> = recs
        .iter()
        .map(|r| (r.response_id.as_str(), r.requested_model.as_deref()))
        .collect();
    assert_eq!(
        ids,
        [
            ("ra", Some("gpt-5")),
            ("rb", Some("gpt-5")),
            ("ra2", Some("gpt-5"))
        ]
    );
}

#[test]
fn a_session_whose_last_create_failed_gives_back_its_queue() {
    let recs = records(|m, t0| {
        m.on_client(&create("gpt-5", None), t0);
        m.on_client(&create("gpt-5", None), t0);
        let error = TapEvent::Error {
            status: Some(429),
            code: Some("rate_limit_exceeded".into()),
            stream_id: None,
        };
        m.on_upstream(&error, ms(t0, 1)).expect("ok");
        assert!(m.held_capacity() > 0, "one create still pending");
        m.on_upstream(&error, ms(t0, 2)).expect("ok");
        assert_eq!(m.held_capacity(), 0, "quiet: the lane's queue freed");
        assert_eq!(m.stats().creates_failed, 2);
        assert_eq!(m.open_responses(), 0);
    });
    assert!(recs.is_empty(), "failed creates make no record");
}
