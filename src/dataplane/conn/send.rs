//! The writing side of a data-plane session: pieces queued towards a leg (ring buffers
//! forwarded in place, bytes the session owns), gathered into one `send`/`sendmsg` of up to
//! [`MAX_IOV`] pieces, completed by releasing what was sent; backpressure between the legs
//! (reading one leg pauses while the other's queue is over [`HIGH_WATER`]; the client's,
//! too, while its own queue is, when its own messages filled it with refusals).

use io_uring::opcode;

use super::{io_err, on_socket, user_data, Conn, Env, Leg, Op, Phase, HIGH_WATER};
use crate::dataplane::bufring::BufRing;
use crate::dataplane::spares::{MAX_IOV, MAX_SPARE_CAPACITY};
use crate::flow::Side;
use crate::relay::lifecycle::Event;

/// Ring buffers one leg's queue may hold (pieces, the send in flight included): as many as
/// one gathered send takes. A piece queued beyond that — or while fewer than a quarter of
/// the ring's buffers are free ([`RING_LOW_WATER`]) — is copied into memory of the
/// session's own and its buffer goes back to the ring at once (`Leg::push`). Without this,
/// a client that stopped reading while its response streamed small deltas held one ring
/// buffer per delta once its socket buffer was full, and emptied the ring of its worker:
/// every other session there waited for buffers until the stuck one's slow-consumer
/// timeout (tests/backpressure.rs, `stuck_clients_of_streamed_deltas_…`). A queue moving
/// at the client's pace never holds this many, so the forwarding path stays copy-free.
const RING_PIECES_PER_LEG: u16 = MAX_IOV as u16;
/// The ring is low below `count / RING_LOW_WATER` free buffers: then every queued piece is
/// copied, so stuck legs together cannot take more than three quarters of the ring.
const RING_LOW_WATER: usize = 4;

/// A piece of a leg's outgoing stream.
pub(super) enum Out {
    /// Bytes of a ring buffer (`bid`), `start..end`.
    Ring { bid: u16, start: u32, end: u32 },
    /// Bytes the session owns (carried or relay-originated), from `start`.
    Owned { data: Vec<u8>, start: usize },
}

impl Out {
    pub(super) fn remaining(&self) -> usize {
        match self {
            Out::Ring { start, end, .. } => (*end - *start) as usize,
            Out::Owned { data, start } => data.len() - start,
        }
    }
}

impl Conn {
    pub(in crate::dataplane) fn on_send(&mut self, env: &mut Env<'_>, side: Side, res: i32) {
        self.ops -= 1;
        let leg = &mut self.legs[side.index()];
        leg.sending = false;
        if let Some(sb) = leg.send_buf.take() {
            env.spares.put_send_buf(sb);
        }
        if io_err(res) {
            leg.failed = true;
            leg.in_flight_since = None;
            Self::drop_queue(env.ring, leg);
            self.unpause_other(env, side);
            if self.phase == Phase::Open {
                if self.tunnel {
                    self.end(env);
                } else {
                    self.event(env, Event::WriteFailed(side));
                }
            }
        } else {
            let mut n = res as usize;
            leg.out_bytes -= n.min(leg.out_bytes);
            while n > 0 {
                let Some(front) = leg.out.front_mut() else {
                    break;
                };
                let rem = front.remaining();
                if n >= rem {
                    n -= rem;
                    match leg.out.pop_front() {
                        Some(Out::Ring { bid, .. }) => {
                            leg.ring_pieces -= 1;
                            env.ring.release(bid);
                        }
                        Some(Out::Owned { data, .. }) => env.spares.put(data),
                        None => {}
                    }
                } else {
                    match front {
                        Out::Ring { start, .. } => *start += n as u32,
                        Out::Owned { start, .. } => *start += n,
                    }
                    n = 0;
                }
            }
            leg.in_flight_since = (!leg.out.is_empty()).then_some(env.now);
            self.flush(env, side);
            // The other leg was paused for this one's queue: resume below a quarter; so
            // is this leg's own reading when its queue of the relay's answers paused it.
            let leg = &mut self.legs[side.index()];
            if leg.out_bytes < HIGH_WATER / 4 {
                if leg.paused_own && leg.out_bytes + leg.outbox.len() < HIGH_WATER / 4 {
                    leg.paused_own = false;
                    self.arm_recv(env, side);
                }
                self.unpause_other(env, side);
            }
        }
        self.after(env);
    }

    /// Queue `out` towards `side`; drop it if the relay no longer writes there.
    pub(super) fn queue(&mut self, env: &mut Env<'_>, side: Side, out: Out, boundary: bool) {
        let leg = &mut self.legs[side.index()];
        if !leg.accepting() {
            if let Out::Ring { bid, .. } = out {
                env.ring.release(bid);
            }
            return;
        }
        if !leg.push(env, out) {
            self.kill(side);
            return;
        }
        self.legs[side.index()].boundary = boundary;
        self.release_outbox(env, side);
        // A full queue stops reading the other side: TCP backpressure reaches its peer.
        let other = side.other();
        if self.legs[side.index()].out_bytes > HIGH_WATER
            && self.legs[other.index()].reading
            && !self.legs[other.index()].paused
        {
            self.legs[other.index()].paused = true;
            self.cancel_recv(env, other);
        }
    }

    /// Relay-originated frames go out once the queued stream is at a frame boundary.
    pub(super) fn release_outbox(&mut self, env: &mut Env<'_>, side: Side) {
        let leg = &mut self.legs[side.index()];
        if leg.boundary && !leg.outbox.is_empty() && leg.accepting() {
            let data = std::mem::take(&mut leg.outbox);
            if !leg.push(env, Out::Owned { data, start: 0 }) {
                self.kill(side);
            }
        }
    }

    /// Start a send of what is queued towards `side`, unless one is in flight.
    pub(super) fn flush(&mut self, env: &mut Env<'_>, side: Side) {
        let leg = &mut self.legs[side.index()];
        if leg.sending || leg.killed || leg.failed || self.phase == Phase::Closing {
            return;
        }
        if leg.out.is_empty() && leg.finished && !leg.shut_wr {
            // A TLS leg ends its stream with `close_notify` before the TCP shutdown.
            leg.queue_close_notify();
        }
        if leg.out.is_empty() {
            leg.in_flight_since = None;
            if leg.finished && !leg.shut_wr {
                leg.shut_wr = true;
                // SAFETY: shutdown(2) of our own socket's write side.
                unsafe {
                    libc::shutdown(leg.fd, libc::SHUT_WR);
                }
            }
            return;
        }
        let ud = user_data(env.slot, env.gen, side, Op::Send);
        let n = leg.out.len().min(MAX_IOV);
        if n == 1 && !env.epoll {
            // One piece (the common case: a buffer forwarded as it came): a plain `send`,
            // whose SQE carries the pointer itself — no iovec to fill or keep.
            let (ptr, len) = piece(env.ring, &leg.out[0]);
            let sqe = on_socket!(leg, |t| opcode::Send::new(t, ptr, len as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build())
            .user_data(ud);
            // SAFETY: the piece's bytes (a ring buffer or an owned vector) stay queued until
            // this send completes.
            if unsafe { monoio::ext::uring_push(&sqe) }.is_ok() {
                self.send_started(env, side);
            }
            return;
        }
        let sb = leg.send_buf.insert(env.spares.take_send_buf());
        for (i, out) in leg.out.iter().take(n).enumerate() {
            let (ptr, len) = piece(env.ring, out);
            sb.iov[i] = libc::iovec {
                iov_base: ptr as *mut libc::c_void,
                iov_len: len,
            };
        }
        sb.msg.msg_iov = sb.iov.as_mut_ptr();
        sb.msg.msg_iovlen = n;
        if env.epoll {
            self.send_started(env, side);
            self.epoll_send(env, side);
            return;
        }
        let sqe = on_socket!(leg, |t| opcode::SendMsg::new(t, &sb.msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build())
        .user_data(ud);
        // SAFETY: the iovecs and message header live in `send_buf` (boxed, held until this
        // send completes), and point into ring buffers and owned vectors that stay queued
        // until then.
        if unsafe { monoio::ext::uring_push(&sqe) }.is_ok() {
            self.send_started(env, side);
        } else if let Some(sb) = leg.send_buf.take() {
            env.spares.put_send_buf(sb);
        }
    }

    /// A send towards `side` is in flight (submitted, or tried under epoll): count it and
    /// watch the leg for a stall.
    pub(super) fn send_started(&mut self, env: &mut Env<'_>, side: Side) {
        let leg = &mut self.legs[side.index()];
        leg.sending = true;
        if leg.in_flight_since.is_none() {
            leg.in_flight_since = Some(env.now);
        }
        self.ops += 1;
        self.watch(env, side);
    }

    /// A leg's writes are watched for a stall from its first write after a quiet period;
    /// the deadline then moves at most once per `--slow-consumer-timeout`.
    pub(super) fn watch(&mut self, env: &mut Env<'_>, side: Side) {
        let leg = &mut self.legs[side.index()];
        if leg.watch.is_none() {
            leg.watch = Some(env.now);
            let slow = env.ctx.session_limits.slow_consumer_timeout;
            if self.armed.is_none_or(|k| k.at() > env.now + slow) {
                self.retime = true;
            }
        }
    }

    /// `side`'s queue is short again (or gone): read the other side again if it was paused
    /// for it.
    pub(super) fn unpause_other(&mut self, env: &mut Env<'_>, side: Side) {
        let other = side.other();
        if self.legs[other.index()].paused {
            self.legs[other.index()].paused = false;
            self.arm_recv(env, other);
        }
    }

    pub(super) fn drop_queue(ring: &BufRing, leg: &mut Leg) {
        // The piece in flight (if any) is still read by the kernel: only its completion
        // may release it. `sending` is false when this runs (completion or kill below).
        for out in leg.out.drain(..) {
            if let Out::Ring { bid, .. } = out {
                ring.release(bid);
            }
        }
        leg.out_bytes = 0;
        leg.ring_pieces = 0;
    }
}

impl Leg {
    /// Put `out` at the end of the queue — on a TLS leg sealed into records first, so the
    /// queue holds only what goes on the wire. `false`: sealing failed (the piece is
    /// dropped; the caller kills the leg).
    fn push(&mut self, env: &mut Env<'_>, out: Out) -> bool {
        let out = if self.tls.is_some() {
            match self.seal(env, out) {
                Ok(Some(records)) => records,
                Ok(None) => return true,
                Err(e) => {
                    tracing::debug!(error = %e, "tls seal failed");
                    return false;
                }
            }
        } else {
            match out {
                Out::Ring { bid, start, end }
                    if self.ring_pieces >= RING_PIECES_PER_LEG
                        || env.ring.available() < env.ring.count() / RING_LOW_WATER =>
                {
                    self.copy_out_of_ring(env, bid, start as usize, end as usize);
                    return true;
                }
                Out::Ring { .. } => {
                    self.ring_pieces += 1;
                    out
                }
                out => out,
            }
        };
        self.out_bytes += out.remaining();
        self.out.push_back(out);
        true
    }

    /// Queue bytes `start..end` of ring buffer `bid` as a copy and give the buffer's piece
    /// back (see [`RING_PIECES_PER_LEG`]): appended to the last queued copy when it has
    /// room without growing (its bytes may be in a send in flight, so it must not move),
    /// else in a buffer of its own.
    fn copy_out_of_ring(&mut self, env: &mut Env<'_>, bid: u16, start: usize, end: usize) {
        let n = end - start;
        // SAFETY: the caller holds a piece of `bid` (a buffer a completion handed out, not
        // yet released: nothing writes to it meanwhile), and `start..end` lies inside it.
        let bytes = unsafe { std::slice::from_raw_parts(env.ring.addr(bid, start), n) };
        match self.out.back_mut() {
            Some(Out::Owned { data, .. }) if data.capacity() - data.len() >= n => {
                data.extend_from_slice(bytes);
            }
            _ => {
                let mut data = env.spares.take();
                data.reserve(n.max(MAX_SPARE_CAPACITY));
                data.extend_from_slice(bytes);
                self.out.push_back(Out::Owned { data, start: 0 });
            }
        }
        self.out_bytes += n;
        env.ring.release(bid);
        env.ctx.metrics.ring_copied(n);
    }
}

/// Where a queued piece's unsent bytes are.
pub(super) fn piece(ring: &BufRing, out: &Out) -> (*const u8, usize) {
    match out {
        Out::Ring { bid, start, end } => {
            (ring.addr(*bid, *start as usize), (*end - *start) as usize)
        }
        // SAFETY: in bounds (`start <= len`).
        Out::Owned { data, start } => (unsafe { data.as_ptr().add(*start) }, data.len() - start),
    }
}
