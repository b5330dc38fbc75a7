//! Steering successors a session still waits for.
//!
//! A `response.steer` can end the running response (`response.incomplete`, reason
//! `steered`) and start an automatic successor, and a steer still pending when a response
//! completes is taken by a successor too ("the successor's `response.created` is the commit
//! point"; `response.steer.pending` may arrive after `response.completed`). So a billable
//! response can start after every response of the session has ended, and the orphan drain —
//! and a shutdown's or the age limit's wait for open responses — must not end in that gap:
//! a client that left right after a steered response's terminal event would otherwise take
//! its successor's record with it.
//!
//! Rules (sans-IO; [`super::session::SessionMeter`] feeds them):
//! - a client `response.steer` is *unanswered* until an upstream `response.steer.*` answers
//!   it, or an `error` event no pending create claims (an upstream that does not know
//!   steering answers with an error);
//! - `accepted` or `pending` for response X makes one successor *due* for X — once per X: a
//!   steer answered `pending` and later `accepted`, or two steers of one response, wait for
//!   one successor;
//! - a `response.created` (or a terminal event never seen created) that answers no client
//!   create is a successor: it takes the oldest due entry; an `error` with code
//!   `successor_creation_failed` drops the oldest due entry; `failed` only answers.
//!
//! Bounded: at most [`MAX_DUE`] due successors and [`MAX_UNANSWERED`] unanswered steers are
//! counted; more are not waited for. A wait this extends is itself bounded
//! (`--orphan-drain-timeout`, `--drain-timeout`), so an upstream that never answers a steer
//! costs a drain its timeout, never a session that lives for ever; the idle and response
//! timeouts do not count what is here.

use super::recent::id_hash;
use crate::tap::SteerOutcome;

/// Most successors counted as due per session (upstream allows 16 responses in flight).
pub const MAX_DUE: usize = 64;
/// Most unanswered steers counted per session.
pub const MAX_UNANSWERED: u16 = 1024;

/// The steering successors one session waits for: nothing allocated until a steer is seen,
/// and freed once nothing waits (a session holds 8 bytes for it, not 32).
#[derive(Debug, Default)]
pub(crate) struct Successors(Option<Box<Waiting>>);

#[derive(Debug, Default)]
struct Waiting {
    /// Client steers no answer has matched yet.
    unanswered: u16,
    /// Keyed hashes of the responses whose successor is due (`0` for an answer without a
    /// `previous_response_id`), oldest first.
    due: Vec<u64>,
}

impl Successors {
    /// The client sent a `response.steer`.
    pub(crate) fn steer_sent(&mut self) {
        let w = self.0.get_or_insert_with(Box::default);
        w.unanswered = (w.unanswered + 1).min(MAX_UNANSWERED);
    }

    /// The upstream answered a steer for `previous` (its `previous_response_id`).
    pub(crate) fn answered(&mut self, outcome: SteerOutcome, previous: Option<&str>) {
        if outcome == SteerOutcome::Failed {
            return self.unclaimed_error();
        }
        let w = self.0.get_or_insert_with(Box::default);
        w.unanswered = w.unanswered.saturating_sub(1);
        let key = previous.map_or(0, id_hash);
        if !w.due.contains(&key) && w.due.len() < MAX_DUE {
            w.due.push(key);
        }
    }

    /// An `error` event that ended no pending create (or a `failed` answer): the answer to
    /// a steer, if any waits.
    pub(crate) fn unclaimed_error(&mut self) {
        if let Some(w) = &mut self.0 {
            w.unanswered = w.unanswered.saturating_sub(1);
        }
        self.free_if_done();
    }

    /// A response arrived that answers no client create (a successor), or the upstream said
    /// it could not create one (`successor_creation_failed`): the oldest due entry is done.
    pub(crate) fn settle_oldest(&mut self) {
        if let Some(w) = &mut self.0 {
            if !w.due.is_empty() {
                w.due.remove(0);
            }
        }
        self.free_if_done();
    }

    /// Steers unanswered plus successors due.
    pub(crate) fn waiting(&self) -> usize {
        self.0
            .as_ref()
            .map_or(0, |w| usize::from(w.unanswered) + w.due.len())
    }

    /// The session ended: nothing is waited for any more.
    pub(crate) fn clear(&mut self) {
        self.0 = None;
    }

    fn free_if_done(&mut self) {
        if self.waiting() == 0 {
            self.0 = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steer_waits_for_its_answer_then_for_its_successor() {
        let mut s = Successors::default();
        s.steer_sent();
        assert_eq!(s.waiting(), 1, "unanswered");
        s.answered(SteerOutcome::Accepted, Some("resp_a"));
        assert_eq!(s.waiting(), 1, "successor due");
        s.settle_oldest();
        assert_eq!(s.waiting(), 0);
        assert!(s.0.is_none(), "freed once nothing waits");
    }

    #[test]
    fn pending_then_accepted_for_one_response_waits_for_one_successor() {
        let mut s = Successors::default();
        s.steer_sent();
        s.steer_sent();
        s.answered(SteerOutcome::Pending, Some("resp_a"));
        s.answered(SteerOutcome::Accepted, Some("resp_a"));
        assert_eq!(s.waiting(), 1);
        s.answered(SteerOutcome::Pending, Some("resp_b"));
        assert_eq!(s.waiting(), 2, "another response's successor");
        s.settle_oldest();
        s.settle_oldest();
        assert_eq!(s.waiting(), 0);
        s.settle_oldest();
        assert_eq!(s.waiting(), 0, "nothing due: no underflow");
    }

    #[test]
    fn a_failed_steer_or_an_unclaimed_error_only_answers() {
        let mut s = Successors::default();
        s.steer_sent();
        s.answered(SteerOutcome::Failed, Some("resp_a"));
        assert_eq!(s.waiting(), 0);
        s.steer_sent();
        s.unclaimed_error();
        assert_eq!(s.waiting(), 0);
        s.unclaimed_error();
        s.answered(SteerOutcome::Failed, None);
        assert_eq!(s.waiting(), 0, "answers without a steer change nothing");
        // An answer with no steer seen (the client's was not tapped) still makes one due.
        assert!(s.0.is_none(), "nothing allocated for answers alone");
        s.answered(SteerOutcome::Accepted, None);
        assert_eq!(s.waiting(), 1);
    }

    #[test]
    fn a_session_that_never_steers_holds_one_pointer() {
        assert_eq!(std::mem::size_of::<Successors>(), 8);
    }

    #[test]
    fn bounded() {
        let mut s = Successors::default();
        for _ in 0..5000 {
            s.steer_sent();
        }
        for i in 0..200 {
            s.answered(SteerOutcome::Accepted, Some(&format!("resp_{i}")));
        }
        assert_eq!(s.waiting(), usize::from(MAX_UNANSWERED) - 200 + MAX_DUE);
        s.clear();
        assert_eq!(s.waiting(), 0);
    }
}
