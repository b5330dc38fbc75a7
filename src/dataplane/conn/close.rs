//! The close rules of a data-plane session (`relay/LIFECYCLE.md`): events go to the
//! sans-IO core, whose [`Actions`] are carried out here (kill a leg, stop reading, send the
//! last frames, finish, linger, free); after every handler, [`Conn::after`] moves the
//! session on and re-arms its nearest deadline in the worker's timers.

use std::time::{Duration, Instant};

use super::{Conn, Env, Leg, Phase, Task};
use crate::flow::Side;
use crate::relay::control::{close_frame, outgoing_bytes, LINGER};
use crate::relay::leg::{FINISH_TIMEOUT, FINISH_TIMEOUT_STOPPING};
use crate::relay::lifecycle::{Actions, ClosedBy, Event};
use crate::relay::session::{log_end, log_stall};
use crate::ws::close::codes;

impl Conn {
    pub(super) fn event(&mut self, env: &mut Env<'_>, event: Event) {
        let may_drain = self.drain_slot || env.ctx.orphan_drain_available();
        let a = self.core.on_event(event, may_drain, env.now);
        if let Event::Stalled(side) = event {
            log_stall(env.ctx, &self.info, side);
        }
        self.apply(env, a);
    }

    pub(super) fn apply(&mut self, env: &mut Env<'_>, a: Actions) {
        self.retime = true;
        if a.start_drain && !self.drain_slot && env.ctx.try_start_orphan_drain() {
            self.drain_slot = true;
        }
        for side in Side::BOTH {
            let i = side.index();
            if a.kill[i] {
                self.kill(side);
                if !self.legs[i].sending {
                    Self::drop_queue(env.ring, &mut self.legs[i]);
                }
                self.unpause_other(env, side);
            }
            if a.close_received[i] && side == Side::Upstream {
                self.legs[i].close_sent = true;
            }
            if let Some(o) = a.send[i] {
                let bytes = outgoing_bytes(o, side == Side::Upstream);
                self.finish_leg(env, side, bytes);
            }
            if a.stop_reading[i] {
                self.legs[i].reading = false;
                self.cancel_recv(env, side);
            }
        }
        if a.end {
            self.end(env);
        }
    }

    /// Queue the leg's last frames (at a frame boundary), then shut its write side down.
    pub(super) fn finish_leg(&mut self, env: &mut Env<'_>, side: Side, last: Vec<u8>) {
        let leg = &mut self.legs[side.index()];
        if !leg.accepting() {
            return;
        }
        if leg.boundary && !leg.close_sent {
            leg.outbox.extend_from_slice(&last);
            leg.close_sent = true;
            self.release_outbox(env, side);
        }
        self.legs[side.index()].finished = true;
        self.flush(env, side);
    }

    pub(super) fn end(&mut self, env: &mut Env<'_>) {
        if self.phase != Phase::Open {
            return;
        }
        if self.tunnel {
            self.core.set_closed_by(ClosedBy::TunnelEnded);
        }
        for side in Side::BOTH {
            let last = if self.tunnel {
                Vec::new() // a byte tunnel writes no frames of its own
            } else {
                let (f, n) = close_frame(codes::GOING_AWAY, "", side == Side::Upstream);
                f[..n].to_vec()
            };
            self.finish_leg(env, side, last);
            self.legs[side.index()].reading = true; // read (and discard) while lingering
        }
        self.core.finish(env.now);
        if self.drain_slot {
            self.drain_slot = false;
            env.ctx.orphan_drain_ended();
        }
        log_end(env.ctx, &self.info, &self.core);
        let limit = if env.ctx.shutting_down() {
            FINISH_TIMEOUT_STOPPING
        } else {
            FINISH_TIMEOUT
        };
        self.phase = Phase::Finishing {
            until: env.now + limit,
        };
        for side in Side::BOTH {
            self.arm_recv(env, side);
        }
    }

    pub(super) fn close(&mut self, env: &mut Env<'_>) {
        if self.phase == Phase::Closing {
            return;
        }
        self.phase = Phase::Closing;
        for side in Side::BOTH {
            self.cancel_recv(env, side);
            if !self.legs[side.index()].sending {
                Self::drop_queue(env.ring, &mut self.legs[side.index()]);
            } else {
                // A send still in flight on a finished leg: cut it so it completes now.
                self.kill(side);
            }
        }
        if let Some(k) = self.armed.take() {
            env.ctx.timers.disarm(k);
        }
    }

    /// Bookkeeping after each event: move between phases, re-arm the deadline.
    pub(super) fn after(&mut self, env: &mut Env<'_>) {
        if env.epoll {
            for side in Side::BOTH {
                let leg = &mut self.legs[side.index()];
                // A killed leg's blocked send fails now; do not wait for an edge.
                if leg.killed && leg.send_blocked {
                    leg.send_blocked = false;
                    env.tasks.push_back((env.slot, env.gen, side, Task::Resend));
                }
            }
        }
        if let Phase::Finishing { .. } = self.phase {
            if self.legs.iter().all(Leg::flushed) {
                let linger = if env.ctx.shutting_down() {
                    Duration::from_millis(300)
                } else {
                    LINGER
                };
                self.phase = Phase::Lingering {
                    until: env.now + linger,
                };
                self.retime = true;
            }
        }
        if let Phase::Lingering { .. } = self.phase {
            if self.legs.iter().all(|l| l.eof || l.killed || l.failed) {
                self.close(env);
            }
        }
        if self.phase == Phase::Closing {
            for leg in &mut self.legs {
                if !leg.sending {
                    Self::drop_queue(env.ring, leg);
                }
            }
            return;
        }
        if self.retime {
            self.retime = false;
            self.rearm(env);
        }
    }

    /// Per side: since when a stall could be counted (a write in flight, or the start of
    /// the watch); legs quiet for a whole period stop being watched.
    pub(super) fn stalls(&mut self, now: Instant, slow: Duration) -> [Option<Instant>; 2] {
        std::array::from_fn(|i| {
            let leg = &mut self.legs[i];
            let start = leg.watch?;
            match leg.in_flight_since {
                Some(t) => Some(t),
                None if now >= start + slow => {
                    leg.watch = None;
                    None
                }
                None => Some(start),
            }
        })
    }

    /// Apply deadlines that passed, then arm the nearest one.
    pub(super) fn rearm(&mut self, env: &mut Env<'_>) {
        let at = loop {
            match self.phase {
                Phase::Open if self.tunnel => break None,
                Phase::Open => {
                    let slow = env.ctx.session_limits.slow_consumer_timeout;
                    let stalls = self.stalls(env.now, slow);
                    let shutdown = env.ctx.drain_deadline();
                    match self.core.next_deadline(shutdown, stalls, env.now) {
                        Some((at, ev)) if at <= env.now => {
                            self.event(env, ev);
                            continue;
                        }
                        Some((at, _)) => break Some(at),
                        None => break None,
                    }
                }
                Phase::Finishing { until } | Phase::Lingering { until } => break Some(until),
                Phase::Closing => break None,
            }
        };
        if self.phase == Phase::Closing {
            return;
        }
        if self.armed.map(|k| k.at()) == at {
            return;
        }
        if let Some(k) = self.armed.take() {
            env.ctx.timers.disarm(k);
        }
        if let Some(at) = at {
            let key = u64::from(env.slot) | (u64::from(env.gen) << 32);
            self.armed = Some(env.ctx.timers.arm_key(at, key));
        }
    }
}
