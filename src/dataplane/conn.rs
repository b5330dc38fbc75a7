//! One session on the io_uring data plane: the same sans-IO [`SessionCore`] as the async
//! adapter, driven by completions instead of futures.
//!
//! Each leg has one multishot receive armed while the relay reads it; each completion
//! names a buffer of the worker's ring. Upstream → client bytes are walked in that buffer
//! and sent from it (no copy); the buffer goes back to the ring when its last forwarded
//! piece is sent. Client → upstream bytes are few (client events): they are copied into the
//! leg's carry, where whole messages are held until decided (see `relay::walker`). Only an
//! incomplete frame header or control frame (≤ 139 bytes) is ever carried between upstream
//! buffers. An idle session holds no buffer at all.
//!
//! Under epoll the same session runs on readiness instead ([`Env::epoll`]; the readiness
//! side lives in `conn/epoll.rs`): reads into buffers taken from the same ring
//! ([`BufRing::pop`]) are handled exactly like multishot completions, and send results
//! come back as [`Task`]s. Only the three places that would push an SQE (`arm_recv`,
//! `cancel_recv`, `flush`) look at [`Env::epoll`].

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, types};

mod epoll;

#[cfg(test)]
pub(super) use epoll::more_with_buffer;
pub(super) use epoll::Task;

use super::bufring::BufRing;
use super::{user_data, Op};
use crate::flow::{Direction, Side};
use crate::limits::SessionSlot;
use crate::relay::control::{close_frame, outgoing_bytes, LINGER};
use crate::relay::core::{Next, SessionCore, Step};
use crate::relay::leg::{FINISH_TIMEOUT, FINISH_TIMEOUT_STOPPING};
use crate::relay::lifecycle::{Actions, ClosedBy, Event, PumpEnd};
use crate::relay::session::{log_end, SessionInfo};
use crate::runtime::timers::TimerKey;
use crate::runtime::WorkerCtx;
use crate::ws::close::codes;

/// Most pieces gathered into one send.
const MAX_IOV: usize = 16;
/// Queued bytes towards a leg above which the other leg stops being read (TCP backpressure
/// reaches its peer); reading resumes below a quarter of it.
const HIGH_WATER: usize = 256 * 1024;
/// Bytes of a new buffer copied behind a carried partial header: enough to complete any
/// frame header (14) or control frame (131).
const CARRY_JOIN: usize = 256;

/// A piece of a leg's outgoing stream.
enum Out {
    /// Bytes of a ring buffer (`bid`), `start..end`.
    Ring { bid: u16, start: u32, end: u32 },
    /// Bytes the session owns (carried or relay-originated), from `start`.
    Owned { data: Vec<u8>, start: usize },
}

impl Out {
    fn remaining(&self) -> usize {
        match self {
            Out::Ring { start, end, .. } => (*end - *start) as usize,
            Out::Owned { data, start } => data.len() - start,
        }
    }
}

/// A send's iovecs and message header: they must stay put while the send is in flight.
struct SendBuf {
    iov: [libc::iovec; MAX_IOV],
    msg: libc::msghdr,
}

#[derive(Default)]
struct Leg {
    fd: RawFd,
    /// A multishot receive is armed (its last completion not yet seen).
    recv_armed: bool,
    /// The session wants this leg read.
    reading: bool,
    /// Reading paused because the other leg's queue is full.
    paused: bool,
    /// The last receive ended with ENOBUFS: re-armed when buffers come back.
    starved: bool,
    /// epoll: a cancel of the armed receive is queued (no more reads meanwhile).
    cancelling: bool,
    /// epoll: the send in flight got `EAGAIN`; it is retried when the leg is writable.
    send_blocked: bool,
    /// epoll: an event said the peer closed (or the socket failed). No edge follows the
    /// end of stream, so reads go on past a short read until it is seen.
    hup: bool,
    /// EOF (or an error) was seen on this leg.
    eof: bool,
    /// Unprocessed bytes received from this leg.
    carry: Vec<u8>,
    out: VecDeque<Out>,
    out_bytes: usize,
    sending: bool,
    send_buf: Option<Box<SendBuf>>,
    /// Whether the queued stream ends on a frame boundary.
    boundary: bool,
    /// Relay-originated frames waiting for a boundary.
    outbox: Vec<u8>,
    close_sent: bool,
    /// The relay is done forwarding to this leg (new bytes are dropped); what is queued
    /// still goes out, then the write side is shut down.
    finished: bool,
    shut_wr: bool,
    /// Shut down (both ways) at once; nothing more is written.
    killed: bool,
    /// A write failed.
    failed: bool,
    in_flight_since: Option<Instant>,
    /// Watching this leg's writes for a stall, since.
    watch: Option<Instant>,
}

impl Leg {
    fn accepting(&self) -> bool {
        !self.finished && !self.killed && !self.failed
    }

    /// Everything queued is written and the write side shut (or the leg is gone).
    fn flushed(&self) -> bool {
        self.killed || self.failed || (self.out.is_empty() && !self.sending && self.shut_wr)
    }
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Relaying.
    Open,
    /// Ended: last frames go out until `until`.
    Finishing { until: Instant },
    /// Reading (and discarding) what the peers still send, until EOF or `until`.
    Lingering { until: Instant },
    /// Receives cancelled; the slot is freed once no operation is in flight.
    Closing,
}

/// What a connection needs from its data plane while it handles an event.
pub(super) struct Env<'a> {
    pub ctx: &'a Rc<WorkerCtx>,
    pub ring: &'a BufRing,
    pub slot: u32,
    pub gen: u32,
    pub now: Instant,
    /// Legs whose receive ended for want of buffers: (slot, gen, side).
    pub starved: &'a mut Vec<(u32, u32, Side)>,
    /// The worker runs epoll: I/O is done here on readiness instead of by the ring.
    pub epoll: bool,
    /// epoll: work for the next turn of the dispatcher: (slot, gen, side, task).
    pub tasks: &'a mut VecDeque<(u32, u32, Side, Task)>,
}

/// One data-plane session.
pub(super) struct Conn {
    info: SessionInfo,
    core: SessionCore,
    legs: [Leg; 2],
    _tenant: Option<SessionSlot>,
    phase: Phase,
    drain_slot: bool,
    armed: Option<TimerKey>,
    /// Operations in flight (the slot is freed only at 0).
    ops: u32,
    /// Set when deadlines must be looked at again after this event.
    retime: bool,
    /// `--tunnel`: bytes are copied as they come, nothing is walked or metered.
    tunnel: bool,
}

fn io_err(res: i32) -> bool {
    res < 0
}

impl Conn {
    pub(super) fn new(
        info: SessionInfo,
        core: SessionCore,
        fds: [RawFd; 2],
        tenant: Option<SessionSlot>,
        tunnel: bool,
    ) -> Conn {
        let mut legs: [Leg; 2] = Default::default();
        for (leg, fd) in legs.iter_mut().zip(fds) {
            leg.fd = fd;
            leg.reading = true;
            leg.boundary = true;
        }
        Conn {
            info,
            core,
            legs,
            _tenant: tenant,
            phase: Phase::Open,
            drain_slot: false,
            armed: None,
            ops: 0,
            retime: true,
            tunnel,
        }
    }

    /// Arm both receives and walk what arrived with the handshakes.
    pub(super) fn start(&mut self, env: &mut Env<'_>, leftovers: [Vec<u8>; 2]) {
        for side in Side::BOTH {
            self.arm_recv(env, side);
        }
        let [client, upstream] = leftovers;
        if self.tunnel {
            for (side, data) in [(Side::Upstream, upstream), (Side::Client, client)] {
                if !data.is_empty() {
                    let dest = side.other();
                    self.queue(env, dest, Out::Owned { data, start: 0 }, true);
                    self.flush(env, dest);
                }
            }
            self.after(env);
            return;
        }
        if !upstream.is_empty() {
            self.legs[Side::Upstream.index()].carry = upstream;
            self.walk_carry(env, Side::Upstream);
        }
        if !client.is_empty() {
            self.legs[Side::Client.index()].carry = client;
            self.walk_carry(env, Side::Client);
        }
        self.after(env);
    }

    /// The session id.
    pub(super) fn id(&self) -> u64 {
        self.info.id
    }

    /// Whether the slot can be freed (descriptors closed, nothing in flight).
    pub(super) fn done(&self) -> bool {
        self.phase == Phase::Closing && self.ops == 0
    }

    /// Close both descriptors (once nothing is in flight).
    pub(super) fn close_fds(&mut self) {
        for leg in &mut self.legs {
            if leg.fd >= 0 {
                // SAFETY: the session owns these descriptors; no operation uses them now.
                unsafe {
                    libc::close(leg.fd);
                }
                leg.fd = -1;
            }
        }
    }

    // ---- events ---------------------------------------------------------------------

    pub(super) fn on_recv(&mut self, env: &mut Env<'_>, side: Side, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        if !more {
            self.legs[side.index()].recv_armed = false;
            self.ops -= 1;
        }
        if res > 0 {
            if let Some(bid) = cqueue::buffer_select(flags) {
                env.ring.taken(bid);
                self.on_data(env, side, bid, res as usize);
            }
        } else if res == -libc::ENOBUFS {
            self.legs[side.index()].starved = true;
            env.starved.push((env.slot, env.gen, side));
        } else if res == -libc::ECANCELED {
        } else {
            // EOF (0) or a read error.
            let first = !self.legs[side.index()].eof;
            self.legs[side.index()].eof = true;
            if first && self.phase == Phase::Open {
                if self.tunnel {
                    self.end(env);
                } else {
                    let end = if res == 0 {
                        PumpEnd::Eof
                    } else {
                        PumpEnd::ReadError
                    };
                    self.event(env, Event::Ended(side, end));
                }
            }
        }
        if !more && (res > 0 || res == -libc::ECANCELED) {
            // The kernel ended the multishot receive (it may), or a pause/stop cancelled it:
            // arm it again if the leg is still to be read.
            self.arm_recv(env, side);
        }
        self.after(env);
    }

    pub(super) fn on_send(&mut self, env: &mut Env<'_>, side: Side, res: i32) {
        self.ops -= 1;
        let leg = &mut self.legs[side.index()];
        leg.sending = false;
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
                    if let Some(Out::Ring { bid, .. }) = leg.out.pop_front() {
                        env.ring.release(bid);
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
            // The other leg was paused for this one's queue: resume below a quarter.
            if self.legs[side.index()].out_bytes < HIGH_WATER / 4 {
                self.unpause_other(env, side);
            }
        }
        self.after(env);
    }

    /// The ring has buffers again: re-arm a receive that ended with ENOBUFS.
    pub(super) fn unstarve(&mut self, env: &mut Env<'_>, side: Side) {
        self.legs[side.index()].starved = false;
        self.arm_recv(env, side);
        self.after(env);
    }

    /// A deadline of this session passed (or shutdown began: look again).
    pub(super) fn on_timer(&mut self, env: &mut Env<'_>) {
        self.armed = None;
        self.retime = true;
        match self.phase {
            Phase::Open => {}
            Phase::Finishing { until } if env.now >= until => {
                for side in Side::BOTH {
                    if !self.legs[side.index()].flushed() {
                        self.kill(side);
                    }
                }
            }
            Phase::Lingering { until } if env.now >= until => self.close(env),
            _ => {}
        }
        self.after(env);
    }

    /// After a contained panic: record what was open (`relay_error`), close both legs
    /// 1011 (at a frame boundary; a leg mid-frame is shut down), then finish as usual.
    pub(super) fn on_panic(&mut self, env: &mut Env<'_>) {
        if self.phase == Phase::Open {
            self.core.finish_after_panic(env.now);
            let a = self.core.on_event(Event::Panicked, false, env.now);
            self.apply(env, a);
        } else {
            for side in Side::BOTH {
                self.kill(side);
            }
            self.close(env);
        }
        self.after(env);
    }

    /// The worker is exiting with this session still here: record what is open.
    pub(super) fn finish_records(&mut self, now: Instant) {
        self.core.finish(now);
    }

    // ---- bytes ------------------------------------------------------------------------

    fn on_data(&mut self, env: &mut Env<'_>, side: Side, bid: u16, n: usize) {
        let i = side.index();
        if self.phase != Phase::Open || !self.legs[i].reading {
            // Lingering, or a leg that is no longer read: discard.
            env.ring.release(bid);
            return;
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
                self.legs[i].carry.extend_from_slice(data);
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
    fn walk_carry(&mut self, env: &mut Env<'_>, side: Side) {
        let dir = side.sends();
        let dest = side.other();
        loop {
            let i = side.index();
            if self.legs[i].carry.is_empty() {
                break;
            }
            let mut carry = std::mem::take(&mut self.legs[i].carry);
            let step = self.core.on_bytes(dir, &mut carry, env.now);
            let rest = carry.split_off(step.skip.min(carry.len()));
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
            self.release_outbox(Side::Client);
            self.flush(env, Side::Client);
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

    // ---- writing ----------------------------------------------------------------------

    /// Queue `out` towards `side`; drop it if the relay no longer writes there.
    fn queue(&mut self, env: &mut Env<'_>, side: Side, out: Out, boundary: bool) {
        let leg = &mut self.legs[side.index()];
        if !leg.accepting() {
            if let Out::Ring { bid, .. } = out {
                env.ring.release(bid);
            }
            return;
        }
        leg.out_bytes += out.remaining();
        leg.out.push_back(out);
        leg.boundary = boundary;
        self.release_outbox(side);
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
    fn release_outbox(&mut self, side: Side) {
        let leg = &mut self.legs[side.index()];
        if leg.boundary && !leg.outbox.is_empty() && leg.accepting() {
            let data = std::mem::take(&mut leg.outbox);
            leg.out_bytes += data.len();
            leg.out.push_back(Out::Owned { data, start: 0 });
        }
    }

    /// Start a send of what is queued towards `side`, unless one is in flight.
    fn flush(&mut self, env: &mut Env<'_>, side: Side) {
        let leg = &mut self.legs[side.index()];
        if leg.sending || leg.killed || leg.failed || self.phase == Phase::Closing {
            return;
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
        let sb = leg.send_buf.get_or_insert_with(|| {
            // SAFETY: plain C structs, all-zero is a valid (empty) value.
            Box::new(unsafe { std::mem::zeroed::<SendBuf>() })
        });
        let mut n = 0;
        for out in leg.out.iter().take(MAX_IOV) {
            let (ptr, len) = match out {
                Out::Ring { bid, start, end } => (
                    env.ring.addr(*bid, *start as usize),
                    (*end - *start) as usize,
                ),
                // SAFETY: in bounds (`start <= len`).
                Out::Owned { data, start } => {
                    (unsafe { data.as_ptr().add(*start) }, data.len() - start)
                }
            };
            sb.iov[n] = libc::iovec {
                iov_base: ptr as *mut libc::c_void,
                iov_len: len,
            };
            n += 1;
        }
        if env.epoll {
            sb.msg.msg_iov = sb.iov.as_mut_ptr();
            sb.msg.msg_iovlen = n;
            self.send_started(env, side);
            self.epoll_send(env, side);
            return;
        }
        let ud = user_data(env.slot, env.gen, side, Op::Send);
        let fd = types::Fd(leg.fd);
        let sqe = if n == 1 {
            opcode::Send::new(
                fd,
                sb.iov[0].iov_base as *const u8,
                sb.iov[0].iov_len as u32,
            )
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(ud)
        } else {
            sb.msg.msg_iov = sb.iov.as_mut_ptr();
            sb.msg.msg_iovlen = n;
            opcode::SendMsg::new(fd, &sb.msg)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build()
                .user_data(ud)
        };
        // SAFETY: the iovecs and message header live in `send_buf` (boxed, kept until the
        // session is freed), and point into ring buffers and owned vectors that stay
        // queued until this send completes.
        if unsafe { monoio::ext::uring_push(&sqe) }.is_ok() {
            self.send_started(env, side);
        }
    }

    /// A send towards `side` is in flight (submitted, or tried under epoll): count it and
    /// watch the leg for a stall.
    fn send_started(&mut self, env: &mut Env<'_>, side: Side) {
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
    fn watch(&mut self, env: &mut Env<'_>, side: Side) {
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
    fn unpause_other(&mut self, env: &mut Env<'_>, side: Side) {
        let other = side.other();
        if self.legs[other.index()].paused {
            self.legs[other.index()].paused = false;
            self.arm_recv(env, other);
        }
    }

    fn drop_queue(ring: &BufRing, leg: &mut Leg) {
        // The piece in flight (if any) is still read by the kernel: only its completion
        // may release it. `sending` is false when this runs (completion or kill below).
        for out in leg.out.drain(..) {
            if let Out::Ring { bid, .. } = out {
                ring.release(bid);
            }
        }
        leg.out_bytes = 0;
    }

    // ---- reading ----------------------------------------------------------------------

    fn arm_recv(&mut self, env: &mut Env<'_>, side: Side) {
        let leg = &mut self.legs[side.index()];
        let wanted = match self.phase {
            Phase::Open => leg.reading && !leg.paused,
            Phase::Finishing { .. } | Phase::Lingering { .. } => true,
            Phase::Closing => false,
        };
        if leg.recv_armed || leg.starved || leg.eof || leg.killed || !wanted {
            return;
        }
        if env.epoll {
            // Bytes may have come while no receive was armed (their edge is gone): read now.
            leg.recv_armed = true;
            self.ops += 1;
            env.tasks.push_back((env.slot, env.gen, side, Task::Read));
            return;
        }
        let sqe = opcode::RecvMulti::new(types::Fd(leg.fd), env.ring.bgid())
            .build()
            .user_data(user_data(env.slot, env.gen, side, Op::Recv));
        // SAFETY: the socket stays open until this receive's last completion (the slot is
        // freed only with no operation in flight); the buffers are the ring's.
        if unsafe { monoio::ext::uring_push(&sqe) }.is_ok() {
            leg.recv_armed = true;
            self.ops += 1;
        }
    }

    fn cancel_recv(&mut self, env: &mut Env<'_>, side: Side) {
        if !self.legs[side.index()].recv_armed {
            return;
        }
        if env.epoll {
            let leg = &mut self.legs[side.index()];
            if !leg.cancelling {
                leg.cancelling = true;
                env.tasks.push_back((env.slot, env.gen, side, Task::Cancel));
            }
            return;
        }
        let target = user_data(env.slot, env.gen, side, Op::Recv);
        let sqe = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data(env.slot, env.gen, side, Op::Cancel));
        // SAFETY: a cancel carries no buffer; its completion is ignored.
        let _ = unsafe { monoio::ext::uring_push(&sqe) };
    }

    fn kill(&mut self, side: Side) {
        let leg = &mut self.legs[side.index()];
        if !leg.killed {
            leg.killed = true;
            // SAFETY: shutdown(2) of our own socket: pending operations on it complete.
            unsafe {
                libc::shutdown(leg.fd, libc::SHUT_RDWR);
            }
        }
    }

    // ---- the close rules --------------------------------------------------------------

    fn event(&mut self, env: &mut Env<'_>, event: Event) {
        let may_drain = self.drain_slot || env.ctx.orphan_drain_available();
        let a = self.core.on_event(event, may_drain, env.now);
        if let Event::Stalled(side) = event {
            env.ctx.metrics.stalled(side);
            tracing::info!(
                session = self.info.id,
                side = side.as_str(),
                "leg stopped reading; cutting it"
            );
        }
        self.apply(env, a);
    }

    fn apply(&mut self, env: &mut Env<'_>, a: Actions) {
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
    fn finish_leg(&mut self, env: &mut Env<'_>, side: Side, last: Vec<u8>) {
        let leg = &mut self.legs[side.index()];
        if !leg.accepting() {
            return;
        }
        if leg.boundary && !leg.close_sent {
            leg.outbox.extend_from_slice(&last);
            leg.close_sent = true;
            self.release_outbox(side);
        }
        self.legs[side.index()].finished = true;
        self.flush(env, side);
    }

    fn end(&mut self, env: &mut Env<'_>) {
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

    fn close(&mut self, env: &mut Env<'_>) {
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
    fn after(&mut self, env: &mut Env<'_>) {
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
    fn stalls(&mut self, now: Instant, slow: Duration) -> [Option<Instant>; 2] {
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
    fn rearm(&mut self, env: &mut Env<'_>) {
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
