//! SessionMeter: errors, disconnects, bounds and sink failures.

use std::sync::Arc;
use std::time::Instant;

use super::session::{create, created, delta, ms, records, terminal, usage};
use crate::metering::record::RecordStatus;
use crate::metering::session::{EndReason, SessionMeter, MAX_PENDING};
use crate::metering::sink::{Sink, SinkConfig, SinkError, SinkPath};
use crate::metrics::SinkMetrics;
use crate::tap::{TapEvent, TerminalKind};

#[test]
fn error_after_created_keeps_the_response_open_for_its_usage() {
    let recs = records(|m, t0| {
        m.on_client(&create("gpt-5", None), t0);
        m.on_upstream(&created("r1", None, "gpt-5"), t0)
            .expect("ok");
        m.on_upstream(
            &TapEvent::Error {
                status: Some(500),
                code: None,
                stream_id: None,
            },
            ms(t0, 2),
        )
        .expect("ok");
        assert_eq!(m.open_responses(), 1);
        m.finish(EndReason::UpstreamDisconnected, ms(t0, 10));
    });
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].status, RecordStatus::UpstreamDisconnected);
    assert!(!recs[0].usage_final);
}

#[test]
fn finish_records_open_responses_as_not_final() {
    let mut stats = None;
    let recs = records(|m, t0| {
        m.on_client(&create("gpt-5", Some("a")), t0);
        m.on_client(&create("gpt-5-mini", Some("b")), t0);
        m.on_client(&create("gpt-5", Some("c")), t0);
        m.on_upstream(&created("ra", Some("a"), "gpt-5"), ms(t0, 1))
            .expect("ok");
        m.on_upstream(&created("rb", Some("b"), "gpt-5-mini"), ms(t0, 1))
            .expect("ok");
        m.on_upstream(&delta(Some("a")), ms(t0, 9)).expect("ok");
        m.on_upstream(
            &terminal("rb", Some("b"), TerminalKind::Completed, Some(usage(5, 5))),
            ms(t0, 20),
        )
        .expect("ok");
        assert_eq!(m.open_responses(), 2, "ra open, lane c pending");
        m.finish(EndReason::ClientDisconnected, ms(t0, 50));
        assert_eq!(m.open_responses(), 0);
        assert!(!m.wants_deltas());
        // A terminal after finish for an already-recorded id is a duplicate.
        m.on_upstream(
            &terminal("ra", Some("a"), TerminalKind::Completed, Some(usage(1, 1))),
            ms(t0, 60),
        )
        .expect("ok");
        stats = Some(m.stats());
    });
    assert_eq!(recs.len(), 2);
    let ra = recs
        .iter()
        .find(|r| r.response_id == "ra")
        .expect("ra recorded");
    assert_eq!(ra.status, RecordStatus::ClientDisconnected);
    assert!(!ra.usage_final);
    assert_eq!(
        (ra.input_tokens, ra.output_tokens, ra.total_tokens),
        (0, 0, 0)
    );
    assert_eq!(
        (ra.model.as_deref(), ra.requested_model.as_deref()),
        (Some("gpt-5"), Some("gpt-5"))
    );
    assert_eq!((ra.ttft_ms, ra.duration_ms), (Some(9), 50));
    let stats = stats.expect("ran");
    assert_eq!(
        (stats.unanswered_creates, stats.duplicate_terminals),
        (1, 1)
    );
}

#[test]
fn relay_shutdown_status() {
    let recs = records(|m, t0| {
        m.on_upstream(&created("r", None, "gpt-5"), t0).expect("ok");
        m.finish(EndReason::RelayShutdown, t0);
    });
    assert_eq!(recs[0].status, RecordStatus::RelayShutdown);
    assert_eq!(recs[0].requested_model, None);
}

#[test]
fn terminal_without_usage_or_created_is_still_recorded() {
    let recs = records(|m, t0| {
        m.on_client(&create("gpt-5", Some("z")), t0);
        m.on_upstream(
            &terminal("rz", Some("z"), TerminalKind::Failed, None),
            ms(t0, 8),
        )
        .expect("ok");
        assert_eq!(m.open_responses(), 0, "consumed the pending create");
    });
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(
        (r.response_id.as_str(), r.status, r.usage_final),
        ("rz", RecordStatus::Failed, false)
    );
    assert_eq!(
        (r.requested_model.as_deref(), r.duration_ms, r.ttft_ms),
        (Some("gpt-5"), 8, None)
    );
}

#[test]
fn creates_past_the_bound_still_count_as_open() {
    let recs = records(|m, t0| {
        for _ in 0..MAX_PENDING + 3 {
            m.on_client(&create("gpt-5", None), t0);
        }
        assert_eq!(m.open_responses(), MAX_PENDING + 3);
        assert_eq!(m.stats().untracked_creates, 3);
        m.finish(EndReason::ClientDisconnected, t0);
        assert_eq!(m.stats().unanswered_creates, (MAX_PENDING + 3) as u64);
    });
    assert!(recs.is_empty(), "no response id, no record");
}

#[test]
fn sink_failure_is_returned_and_counted() {
    let sink = Sink::start(
        SinkConfig::new(SinkPath::File("/dev/full".into())),
        Arc::new(SinkMetrics::default()),
    )
    .expect("start");
    let h = sink.handle();
    let mut m = SessionMeter::new(1, Arc::from("t"), Arc::from("u"), h.clone());
    let t0 = Instant::now();
    m.on_upstream(&created("r0", None, "gpt-5"), t0)
        .expect("ok");
    m.on_upstream(
        &terminal("r0", None, TerminalKind::Completed, Some(usage(1, 1))),
        t0,
    )
    .expect("queued");
    assert!(super::wait_until(|| !h.healthy()));
    m.on_upstream(&created("r1", None, "gpt-5"), t0)
        .expect("ok");
    let e = m.on_upstream(
        &terminal("r1", None, TerminalKind::Completed, Some(usage(1, 1))),
        t0,
    );
    assert!(matches!(e, Err(SinkError::Unavailable)));
    assert_eq!(m.stats().submit_errors, 1);
    let stats = sink.shutdown().expect("shutdown");
    assert_eq!(stats.not_durable.len(), 2, "both kept, neither durable");
}
