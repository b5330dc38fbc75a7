//! SessionMeter: what a session still waits for while a steer is answered and its successor
//! created ([`SessionMeter::awaiting`]).

use super::session::{create, created, records, terminal, usage};
use crate::metering::record::RecordStatus;
use crate::metering::session::SessionMeter;
use crate::tap::{SteerOutcome, TapEvent, TerminalKind};

fn answer(outcome: SteerOutcome, steer: &str, previous: &str) -> TapEvent {
    TapEvent::SteerAnswer {
        outcome,
        steer_id: Some(steer.to_owned()),
        previous_response_id: Some(previous.to_owned()),
    }
}

fn error(code: &str) -> TapEvent {
    TapEvent::Error {
        status: Some(400),
        code: Some(code.to_owned()),
        stream_id: None,
    }
}

fn up(m: &mut SessionMeter, ev: &TapEvent, t: std::time::Instant) {
    m.on_upstream(ev, t).expect("submitted");
}

#[test]
fn a_steered_response_is_awaited_until_its_successor_ends() {
    let recs = records(|m, t| {
        m.on_client(&create("gpt-5", None), t);
        up(m, &created("r1", None, "gpt-5"), t);
        m.on_client(&TapEvent::Steer, t);
        assert_eq!((m.open_responses(), m.awaiting()), (1, 2));
        up(m, &answer(SteerOutcome::Accepted, "s1", "r1"), t);
        assert_eq!(m.awaiting(), 2, "answered: its successor is due");
        let ended = terminal("r1", None, TerminalKind::Incomplete, Some(usage(10, 3)));
        up(m, &ended, t);
        assert_eq!((m.open_responses(), m.awaiting()), (0, 1), "nothing open");
        up(m, &created("r2", None, "gpt-5"), t);
        assert_eq!((m.open_responses(), m.awaiting()), (1, 1), "now open");
        let done = terminal("r2", None, TerminalKind::Completed, Some(usage(20, 4)));
        up(m, &done, t);
        assert_eq!(m.awaiting(), 0);
    });
    let got: Vec<_> = recs
        .iter()
        .map(|r| (r.response_id.as_str(), r.status))
        .collect();
    assert_eq!(
        got,
        [
            ("r1", RecordStatus::Incomplete),
            ("r2", RecordStatus::Completed)
        ]
    );
}

#[test]
fn a_steer_unanswered_at_the_terminal_is_awaited_and_its_successor_may_be_seen_late() {
    records(|m, t| {
        m.on_client(&create("gpt-5", None), t);
        up(m, &created("r1", None, "gpt-5"), t);
        m.on_client(&TapEvent::Steer, t);
        m.on_client(&TapEvent::Steer, t);
        let done = terminal("r1", None, TerminalKind::Completed, Some(usage(10, 3)));
        up(m, &done, t);
        assert_eq!(m.awaiting(), 2, "two steers unanswered");
        up(m, &answer(SteerOutcome::Accepted, "s1", "r1"), t);
        up(m, &answer(SteerOutcome::Accepted, "s2", "r1"), t);
        assert_eq!(m.awaiting(), 2, "two submissions for r1");
        // One successor commits both; this one is seen only by its terminal event (its
        // `created` was lost).
        let s = terminal("r2", None, TerminalKind::Completed, Some(usage(20, 4)));
        up(m, &s, t);
        assert_eq!(m.awaiting(), 0);
    });
}

#[test]
fn pending_failures_and_errors_end_the_wait_without_a_successor() {
    records(|m, t| {
        m.on_client(&TapEvent::Steer, t);
        up(
            m,
            &TapEvent::SteerAnswer {
                outcome: SteerOutcome::Failed,
                steer_id: None,
                previous_response_id: Some("r0".into()),
            },
            t,
        );
        assert_eq!(m.awaiting(), 0, "rejected before an id was allocated");
        // An upstream that does not know steering answers with an error event.
        m.on_client(&TapEvent::Steer, t);
        up(m, &error("unknown_event_type"), t);
        assert_eq!(m.awaiting(), 0);
        // Accepted, then not committed.
        m.on_client(&TapEvent::Steer, t);
        up(m, &answer(SteerOutcome::Accepted, "s3", "r0"), t);
        assert_eq!(m.awaiting(), 1);
        up(m, &answer(SteerOutcome::Failed, "s3", "r0"), t);
        assert_eq!(m.awaiting(), 0, "successor_creation_failed");
        // Accepted, then waiting for the client's tool results: nothing automatic follows.
        m.on_client(&TapEvent::Steer, t);
        up(m, &answer(SteerOutcome::Accepted, "s4", "r0"), t);
        up(m, &answer(SteerOutcome::Pending, "s4", "r0"), t);
        assert_eq!(m.awaiting(), 0);
    });
}

#[test]
fn an_error_ends_a_pending_create_before_it_answers_a_steer() {
    records(|m, t| {
        m.on_client(&TapEvent::Steer, t);
        m.on_client(&create("gpt-5", None), t);
        assert_eq!((m.open_responses(), m.awaiting()), (1, 2));
        up(m, &error("previous_response_not_found"), t);
        assert_eq!(
            (m.open_responses(), m.awaiting()),
            (0, 1),
            "the create's error; the steer still waits"
        );
        up(m, &answer(SteerOutcome::Accepted, "s1", "r0"), t);
        assert_eq!(m.awaiting(), 1);
    });
}

#[test]
fn a_create_answered_does_not_commit_a_due_submission() {
    records(|m, t| {
        up(m, &answer(SteerOutcome::Accepted, "s1", "r0"), t);
        m.on_client(&create("gpt-5", None), t);
        up(m, &created("r1", None, "gpt-5"), t);
        assert_eq!(
            m.awaiting(),
            2,
            "r1 answers the create; r0's successor is still due"
        );
        m.finish(crate::metering::session::EndReason::ClientDisconnected, t);
        assert_eq!(m.awaiting(), 0, "nothing waited for once the session ended");
    });
}
