//! The session's deadlines: of the drain, close-handshake, idle, response, age, shutdown
//! and slow-consumer limits that apply now, the nearest one and the event it raises.

use std::time::Instant;

use super::{SessionCore, CLOSE_TIMEOUT};
use crate::flow::Side;
use crate::relay::lifecycle::{Deadline, Event};

impl SessionCore {
    /// The nearest deadline and the event it raises. `shutdown`: the drain deadline when
    /// the relay is stopping; `stalls`: per side, since when a write has made no progress.
    pub fn next_deadline(
        &mut self,
        shutdown: Option<Instant>,
        stalls: [Option<Instant>; 2],
        now: Instant,
    ) -> Option<(Instant, Event)> {
        let l = &*self.limits;
        let open = self.meter.open_responses();
        // Steering successors still to come hold the age limit and a shutdown as open
        // responses do; the idle and response timeouts count responses only, so an upstream
        // that never answers a steer cannot keep a session for ever.
        let awaiting = self.meter.awaiting();
        let mut best: Option<(Instant, Event)> = None;
        let mut consider = |at: Instant, ev: Event| {
            if best.is_none_or(|(b, _)| at < b) {
                best = Some((at, ev));
            }
        };
        self.recheck_when_idle = false;
        if let Some(t) = self.drain_since {
            consider(
                t + l.orphan_drain_timeout,
                Event::Deadline(Deadline::OrphanDrain),
            );
        }
        if let Some(t) = self.closing_since {
            consider(t + CLOSE_TIMEOUT, Event::Deadline(Deadline::CloseHandshake));
        }
        if open == 0 {
            if self.drain_since.is_none() {
                consider(
                    self.last_activity + l.idle_timeout,
                    Event::Deadline(Deadline::Idle),
                );
            }
        } else if let Some(oldest) = self.meter.oldest_start() {
            // A response that is merely silent (a model thinking) is not idle: only
            // --response-timeout bounds it.
            consider(
                oldest + l.response_timeout,
                Event::Deadline(Deadline::Response),
            );
        }
        if let Some(age) = l.max_connection_age {
            let at = self.started + age;
            if awaiting == 0 {
                consider(at, Event::Deadline(Deadline::MaxAge));
            } else {
                consider(at + l.drain_timeout, Event::Deadline(Deadline::MaxAge));
                if now >= at {
                    self.recheck_when_idle = true;
                }
            }
        }
        if let Some(deadline) = shutdown {
            if awaiting == 0 {
                consider(now, Event::Deadline(Deadline::Shutdown));
            } else {
                consider(deadline, Event::Deadline(Deadline::Shutdown));
                self.recheck_when_idle = true;
            }
        }
        for side in Side::BOTH {
            if let Some(since) = stalls[side.index()] {
                if !self.dead[side.index()] {
                    consider(since + l.slow_consumer_timeout, Event::Stalled(side));
                }
            }
        }
        best
    }
}
