//! The reading side of a data-plane session: received bytes walked by the session core —
//! upstream → client in the ring buffer they arrived in and forwarded from it, client →
//! upstream (and any partial header) in the leg's carry — and what each step's `next` asks
//! for.

use super::{Conn, Env, Out, Phase, CARRY_JOIN, HIGH_WATER};
use crate::flow::{Direction, Side};
use crate::relay::core::{Next, Step};
use crate::relay::lifecycle::{Event, PumpEnd};

impl Conn {
    pub(super) fn on_data(&mut self, env: &mut Env<'_>, side: Side, bid: u16, n: usize) {
        let i = side.index();
        if self.phase != Phase::Open || !self.legs[i].reading {
            // Lingering, or a leg that is no longer read: discard.
            env.ring.release(bid);
            return;
        }
        if self.legs[i].tls.is_some() {
            return self.on_tls_data(env, side, bid, n);
        }
        self.core.count_read(side.sends(), n);
        if self.tunnel {
            let dest = side.other();
            env.ring.hold(bid);
            let out = Out::Ring {
                bid,
                start: 0,
                end: n as u32,
            };
            self.queue(env, dest, out, true);
            env.ring.release(bid);
            self.flush(env, dest);
            return;
        }
        match side {
            // Client events are few and small: copy them behind the carry, where whole
            // messages are held until decided.
            Side::Client => {
                // SAFETY: the completion handed `bid` to us; nothing else references it.
                let data = unsafe { &env.ring.buf_mut(bid)[..n] };
                let carry = &mut self.legs[i].carry;
                if carry.capacity() == 0 {
                    *carry = env.spares.take();
                }
                carry.extend_from_slice(data);
                env.ring.release(bid);
                self.walk_carry(env, side);
            }
            Side::Upstream => self.walk_in_place(env, bid, n),
        }
    }

    /// Walk an upstream buffer in place and forward from it.
    fn walk_in_place(&mut self, env: &mut Env<'_>, bid: u16, n: usize) {
        let up = Side::Upstream.index();
        // SAFETY: the completion handed `bid` to us; it is referenced only through this
        // slice (and, once queued, by sends that read it).
        let buf = unsafe { &mut env.ring.buf_mut(bid)[..n] };
        let mut off = 0usize;
        if !self.legs[up].carry.is_empty() {
            // A partial header (or control frame) from the last buffer: complete it from the
            // front of this one, then go on in place.
            let k = n.min(CARRY_JOIN);
            let mut carry = std::mem::take(&mut self.legs[up].carry);
            let old = carry.len();
            carry.extend_from_slice(&buf[..k]);
            let step = self
                .core
                .on_bytes(Direction::UpstreamToClient, &mut carry, env.now);
            if step.forward > 0 {
                let data = carry[..step.forward].to_vec();
                self.queue(
                    env,
                    Side::Client,
                    Out::Owned { data, start: 0 },
                    step.boundary,
                );
            }
            if !self.handle_next(env, Side::Upstream, &step) {
                env.ring.release(bid);
                self.flush(env, Side::Client);
                return;
            }
            if step.skip >= old {
                // The carried bytes are done; the rest of `carry` is untouched bytes of
                // this buffer.
                off = step.skip - old;
            } else {
                // Still incomplete (a tiny buffer): keep carrying.
                carry.drain(..step.skip);
                carry.extend_from_slice(&buf[k..]);
                self.legs[up].carry = carry;
                env.ring.release(bid);
                return;
            }
        }
        while off < n {
            let step = self
                .core
                .on_bytes(Direction::UpstreamToClient, &mut buf[off..], env.now);
            if step.forward > 0 {
                env.ring.hold(bid);
                let out = Out::Ring {
                    bid,
                    start: off as u32,
                    end: (off + step.forward) as u32,
                };
                self.queue(env, Side::Client, out, step.boundary);
            }
            let keep_going = self.handle_next(env, Side::Upstream, &step);
            off += step.skip;
            if !keep_going {
                break;
            }
            if step.next == Next::Read {
                if off < n {
                    self.legs[up].carry.extend_from_slice(&buf[off..]);
                }
                break;
            }
        }
        env.ring.release(bid);
        self.flush(env, Side::Client);
    }

    /// Walk a leg's carry (client messages; upstream leftovers) and forward from it.
    pub(super) fn walk_carry(&mut self, env: &mut Env<'_>, side: Side) {
        let dir = side.sends();
        let dest = side.other();
        loop {
            let i = side.index();
            if self.legs[i].carry.is_empty() {
                break;
            }
            let mut carry = std::mem::take(&mut self.legs[i].carry);
            let step = self.core.on_bytes(dir, &mut carry, env.now);
            // Usually the whole carry is done with: the next bytes start a new buffer (none
            // while the session idles).
            let rest = if step.skip >= carry.len() {
                Vec::new()
            } else if step.skip == 0 {
                // All of it kept (a message still held): no copy.
                std::mem::take(&mut carry)
            } else {
                carry.split_off(step.skip)
            };
            if step.forward > 0 {
                carry.truncate(step.forward);
                self.queue(
                    env,
                    dest,
                    Out::Owned {
                        data: carry,
                        start: 0,
                    },
                    step.boundary,
                );
            } else {
                env.spares.put(carry);
            }
            // A client message forwarded rewritten (a model's route prefix removed).
            if let Some(data) = self.core.take_rewritten() {
                self.queue(env, dest, Out::Owned { data, start: 0 }, true);
            }
            self.legs[i].carry = rest;
            let keep_going = self.handle_next(env, side, &step);
            if !keep_going || step.next == Next::Read {
                if !keep_going {
                    self.legs[i].carry.clear();
                }
                break;
            }
        }
        self.flush(env, dest);
    }

    /// Act on a step's `next`; `false` when the source's stream ended.
    fn handle_next(&mut self, env: &mut Env<'_>, side: Side, step: &Step) -> bool {
        if let Some(out) = self.core.take_outbox() {
            self.legs[Side::Client.index()]
                .outbox
                .extend_from_slice(&out);
            self.release_outbox(env, Side::Client);
            self.flush(env, Side::Client);
            // The client's own messages filled its queue with the relay's answers (a
            // client that floods refused creates and reads nothing): stop reading it until
            // the queue drains, so its socket, not the relay's memory, holds the rest.
            let c = &mut self.legs[Side::Client.index()];
            if side == Side::Client
                && c.out_bytes + c.outbox.len() > HIGH_WATER
                && c.reading
                && !c.paused_own
            {
                c.paused_own = true;
                self.cancel_recv(env, Side::Client);
            }
        }
        if self.core.take_recheck() {
            self.retime = true;
        }
        match step.next {
            Next::Read | Next::Again => true,
            Next::Ended(end) => {
                if matches!(end, PumpEnd::PeerClose { held: false, .. }) && step.forward > 0 {
                    self.legs[side.other().index()].close_sent = true;
                }
                self.legs[side.index()].carry.clear();
                self.event(env, Event::Ended(side, end));
                false
            }
            Next::Drained => {
                self.event(env, Event::Drained);
                false
            }
        }
    }
}
