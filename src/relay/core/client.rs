//! The client leg's bytes: walked with whole messages held (charged to the worker's
//! budget) until each is decided (`admit`), then forwarded, rewritten or refused.

use std::time::Instant;

use super::admit::{Decision, Refusal};
use super::{protocol_end, Next, SessionCore, Step};
use crate::relay::lifecycle::PumpEnd;
use crate::relay::rewrite::rewrite_model;
use crate::ws::close::codes;

impl SessionCore {
    pub(super) fn client_bytes(&mut self, buf: &mut [u8], now: Instant) -> Step {
        let pipe = &mut self.pipes[0];
        let mut event = None;
        let walked = pipe
            .walker
            .walk(buf, &mut pipe.tap, &mut |ev, _| event = Some(ev));
        let w = match walked {
            Ok(w) => w,
            Err(e) => {
                self.charge_held(0);
                return protocol_end(e, buf.len());
            }
        };
        pipe.stats.frames += w.frames;
        if let Some(close) = w.close {
            self.charge_held(0);
            // Hold a client's close while responses are open or a steering successor is to
            // come: the relay answers the client itself and keeps reading upstream for their
            // usage (orphan drain).
            let held = self.meter.awaiting() > 0;
            self.close_codes[0] = close.code;
            return Step {
                forward: if held { w.close_start } else { w.ready },
                skip: w.ready,
                boundary: true,
                next: Next::Ended(PumpEnd::PeerClose {
                    code: close.code,
                    held,
                }),
            };
        }
        if let Some((start, end)) = w.message {
            let next = if end < buf.len() {
                Next::Again
            } else {
                Next::Read
            };
            self.charge_held(buf.len() - end);
            let forward = match self.decide(event, now) {
                Decision::Forward => end,
                Decision::Refuse => start,
                Decision::Rewrite(model) => match rewrite_model(&buf[start..end], &model) {
                    Ok(bytes) => {
                        self.rewritten = Some(bytes);
                        start
                    }
                    Err(e) => {
                        // Never forward a prefixed model the provider would reject, and
                        // never silently: the client gets an error event.
                        tracing::warn!(session = self.id, error = %e, "model rewrite failed; create refused");
                        self.refuse(
                            &Refusal {
                                status: 400,
                                kind: "invalid_request_error",
                                code: "invalid_request",
                                message: format!("the relay could not rewrite this message: {e}"),
                            },
                            None,
                        );
                        start
                    }
                },
            };
            return Step {
                forward,
                skip: end,
                boundary: true,
                next,
            };
        }
        // Holding an incomplete message (or carrying a partial header): bounded by the
        // worker's budget.
        if !self.charge_held(buf.len() - w.ready) {
            return Step {
                forward: w.ready,
                skip: buf.len(),
                boundary: true,
                next: Next::Ended(PumpEnd::Protocol {
                    code: codes::TRY_AGAIN,
                    reason: "relay memory limit",
                    mid_frame: false,
                }),
            };
        }
        Step {
            forward: w.ready,
            skip: w.ready,
            boundary: w.boundary,
            next: Next::Read,
        }
    }

    /// Charge the worker's budget for `held` bytes kept by this session; `false` (and no
    /// change) when they do not fit.
    pub(super) fn charge_held(&mut self, held: usize) -> bool {
        let budget = &self.env.budget;
        if held > self.held_charged {
            if !budget.try_take(held - self.held_charged) {
                return false;
            }
        } else {
            budget.give(self.held_charged - held);
        }
        self.held_charged = held;
        true
    }
}
