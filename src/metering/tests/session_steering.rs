//! SessionMeter: what a session still waits for while a steer is answered and its successor
//! created ([`SessionMeter::awaiting`]).

use super::session::{create, created, records, terminal, usage};
use crate::metering::record::RecordStatus;
use crate::metering::session::SessionMeter;
use crate::tap::{SteerOutcome, TapEvent, TerminalKind};

fn answer(outcome: SteerOutcome, previous: &str) -> TapEvent {
    TapEvent::SteerAnswer {
        outcome,
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
        let ended = terminal("r1", None, TerminalKind::Incomplete, Some(usage(10, 3)));
        up(m, &ended, t);
        assert_eq!(
            (m.open_responses(), m.awaiting()),
            (0, 1),
            "the steer is not answered yet"
        );
        up(m, &answer(SteerOutcome::Accepted, "r1"), t);
        assert_eq!(m.awaiting(), 1, "its successor is due");
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
fn a_steer_pending_after_completion_waits_for_one_successor() {
    records(|m, t| {
        m.on_client(&create("gpt-5", None), t);
        up(m, &created("r1", None, "gpt-5"), t);
        m.on_client(&TapEvent::Steer, t);
        m.on_client(&TapEvent::Steer, t);
        let done = terminal("r1", None, TerminalKind::Completed, Some(usage(10, 3)));
        up(m, &done, t);
        assert_eq!(m.awaiting(), 2, "two steers unanswered");
        up(m, &answer(SteerOutcome::Pending, "r1"), t);
        up(m, &answer(SteerOutcome::Accepted, "r1"), t);
        assert_eq!(m.awaiting(), 1, "one successor for r1");
        // A successor seen only by its terminal event (its `created` was lost) is one too.
        let s = terminal("r2", None, TerminalKind::Completed, Some(usage(20, 4)));
        up(m, &s, t);
        assert_eq!(m.awaiting(), 0);
    });
}

#[test]
fn failures_and_errors_answer_a_steer_without_a_successor() {
    records(|m, t| {
        m.on_client(&TapEvent::Steer, t);
        up(m, &answer(SteerOutcome::Failed, "r0"), t);
        assert_eq!(m.awaiting(), 0, "failed: nothing follows");
        // An upstream that does not know steering answers with an error event.
        m.on_client(&TapEvent::Steer, t);
        up(m, &error("unknown_event_type"), t);
        assert_eq!(m.awaiting(), 0);
        // A successor announced and then not created.
        m.on_client(&TapEvent::Steer, t);
        up(m, &answer(SteerOutcome::Accepted, "r0"), t);
        assert_eq!(m.awaiting(), 1);
        up(m, &error("successor_creation_failed"), t);
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
        up(m, &answer(SteerOutcome::Failed, "r0"), t);
        assert_eq!(m.awaiting(), 0);
    });
}

#[test]
fn a_create_answered_does_not_settle_a_due_successor() {
    records(|m, t| {
        up(m, &answer(SteerOutcome::Accepted, "r0"), t);
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
