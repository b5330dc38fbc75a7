//! Steering successors a session still waits for.
//!
//! A `response.steer` queues input onto a running response. Per openai-python's
//! `BetaResponseSteer*Event` docs: `response.steer.accepted` means the server owns the input;
//! the response then ends at a safe boundary (`response.incomplete`, reason `steered`) or
//! completes normally, and an automatic successor's `response.created` commits the input. So
//! a billable response can start after every response of the session has ended, and the
//! orphan drain — and a shutdown's or the age limit's wait for open responses — must not end
//! in that gap: a client that left right after the steered response's terminal event would
//! otherwise take its successor's record with it.
//!
//! Rules (sans-IO; [`super::session::SessionMeter`] feeds them):
//! - a client `response.steer` is *unanswered* until a `response.steer.accepted` or `.failed`
//!   answers it, or an `error` event no pending create claims (an upstream that does not
//!   know steering answers with an error);
//! - `accepted` makes that submission (`steer.id`) *due*: a successor of its response
//!   (`steer.previous_response_id`) will come;
//! - a `response.created` (or a terminal event never seen created) that answers no client
//!   create is a successor: it commits every due submission of the oldest due response (the
//!   queued input of one response goes to one successor);
//! - `failed` with a due submission's id (accepted, then not committed:
//!   `successor_creation_failed`) and `pending` (the response waits for the client's tool
//!   results: only an explicit `response.create` continues it) end that submission's wait;
//!   `failed` for no due submission answers an unanswered steer.
//!
//! Bounded: at most [`MAX_DUE`] due submissions and [`MAX_UNANSWERED`] unanswered steers are
//! counted; more are not waited for. A wait this extends is itself bounded
//! (`--orphan-drain-timeout`, `--drain-timeout`), so an upstream that never answers a steer
//! costs a drain its timeout, never a session that lives for ever; the idle and response
//! timeouts do not count what is here.

use super::recent::id_hash;
use crate::tap::SteerOutcome;

/// Most submissions counted as due per session.
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
    /// Accepted submissions not yet committed, oldest first: keyed hashes of (`steer.id`,
    /// `steer.previous_response_id`), `0` for an absent one.
    due: Vec<(u64, u64)>,
}

fn key(s: Option<&str>) -> u64 {
    s.map_or(0, id_hash)
}

impl Successors {
    /// The client sent a `response.steer`.
    pub(crate) fn steer_sent(&mut self) {
        let w = self.0.get_or_insert_with(Box::default);
        w.unanswered = (w.unanswered + 1).min(MAX_UNANSWERED);
    }

    /// The upstream said `outcome` of submission `steer_id` steering `previous`.
    pub(crate) fn answered(
        &mut self,
        outcome: SteerOutcome,
        steer_id: Option<&str>,
        previous: Option<&str>,
    ) {
        let entry = (key(steer_id), key(previous));
        match outcome {
            SteerOutcome::Accepted => {
                let w = self.0.get_or_insert_with(Box::default);
                w.unanswered = w.unanswered.saturating_sub(1);
                if !w.due.contains(&entry) && w.due.len() < MAX_DUE {
                    w.due.push(entry);
                }
            }
            SteerOutcome::Pending => {
                self.end_wait(entry);
            }
            SteerOutcome::Failed => {
                if !self.end_wait(entry) {
                    self.unclaimed_error();
                }
            }
        }
        self.free_if_done();
    }

    /// Ends the wait for a due submission; false when it was not due.
    fn end_wait(&mut self, entry: (u64, u64)) -> bool {
        let Some(w) = &mut self.0 else {
            return false;
        };
        let Some(i) = w.due.iter().position(|e| *e == entry) else {
            return false;
        };
        w.due.remove(i);
        true
    }

    /// An `error` event that ended no pending create (or a `failed` for no due submission):
    /// the answer to a steer, if any waits.
    pub(crate) fn unclaimed_error(&mut self) {
        if let Some(w) = &mut self.0 {
            w.unanswered = w.unanswered.saturating_sub(1);
        }
        self.free_if_done();
    }

    /// A response arrived that answers no client create: the successor of the oldest due
    /// response, committing every due submission for it.
    pub(crate) fn successor_arrived(&mut self) {
        if let Some(w) = &mut self.0 {
            if let Some(&(_, parent)) = w.due.first() {
                w.due.retain(|e| e.1 != parent);
            }
        }
        self.free_if_done();
    }

    /// Steers unanswered plus submissions due.
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
    use SteerOutcome::{Accepted, Failed, Pending};

    #[test]
    fn a_steer_waits_for_its_answer_then_for_its_successor() {
        let mut s = Successors::default();
        s.steer_sent();
        assert_eq!(s.waiting(), 1, "unanswered");
        s.answered(Accepted, Some("steer_1"), Some("resp_a"));
        assert_eq!(s.waiting(), 1, "successor due");
        s.successor_arrived();
        assert_eq!(s.waiting(), 0);
        assert!(s.0.is_none(), "freed once nothing waits");
    }

    #[test]
    fn one_successor_commits_every_steer_of_its_response() {
        let mut s = Successors::default();
        for _ in 0..3 {
            s.steer_sent();
        }
        s.answered(Accepted, Some("steer_1"), Some("resp_a"));
        s.answered(Accepted, Some("steer_2"), Some("resp_b"));
        s.answered(Accepted, Some("steer_3"), Some("resp_a"));
        assert_eq!(s.waiting(), 3);
        s.successor_arrived();
        assert_eq!(s.waiting(), 1, "resp_a's two committed by its successor");
        s.successor_arrived();
        assert_eq!(s.waiting(), 0);
        s.successor_arrived();
        assert_eq!(s.waiting(), 0, "nothing due: nothing changes");
    }

    #[test]
    fn pending_or_a_late_failure_ends_a_due_wait() {
        let mut s = Successors::default();
        s.steer_sent();
        s.steer_sent();
        s.answered(Accepted, Some("steer_1"), Some("resp_a"));
        s.answered(Accepted, Some("steer_2"), Some("resp_a"));
        s.answered(Pending, Some("steer_1"), Some("resp_a"));
        assert_eq!(s.waiting(), 1, "steer_1 waits for the client's create");
        s.answered(Failed, Some("steer_2"), Some("resp_a"));
        assert_eq!(
            s.waiting(),
            0,
            "steer_2 not committed (successor_creation_failed)"
        );
    }

    #[test]
    fn a_failed_steer_or_an_unclaimed_error_only_answers() {
        let mut s = Successors::default();
        s.steer_sent();
        s.answered(Failed, None, Some("resp_a"));
        assert_eq!(s.waiting(), 0);
        s.steer_sent();
        s.unclaimed_error();
        assert_eq!(s.waiting(), 0);
        s.unclaimed_error();
        s.answered(Failed, None, None);
        s.answered(Pending, Some("steer_9"), None);
        assert!(s.0.is_none(), "nothing allocated for answers alone");
        // An acceptance with no steer seen (the client's was not tapped) still waits.
        s.answered(Accepted, None, None);
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
            let id = format!("steer_{i}");
            s.answered(Accepted, Some(&id), Some("resp_a"));
        }
        assert_eq!(s.waiting(), usize::from(MAX_UNANSWERED) - 200 + MAX_DUE);
        s.clear();
        assert_eq!(s.waiting(), 0);
    }
}
