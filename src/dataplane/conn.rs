//! One session on the io_uring data plane: the same sans-IO [`SessionCore`] as the async
//! adapter, driven by completions instead of futures.
//!
//! Each leg has one multishot receive armed while the relay reads it; each completion
//! names a buffer of the worker's ring. Upstream → client bytes are walked in that buffer
//! and sent from it (no copy); the buffer goes back to the ring when its last forwarded
//! piece is sent. Client → upstream bytes are few (client events): they are copied into the
//! leg's carry, where whole messages are held until decided (see `relay::walker`). Only an
//! incomplete frame header or control frame (≤ 139 bytes) is ever carried between upstream
//! buffers. An idle session holds no buffer at all, nor a send header: a gathered send's
//! iovecs come from the worker's spares for the time the send is in flight (`spares.rs`).
//!
//! Under epoll the same session runs on readiness instead ([`Env::epoll`]; the readiness
//! side lives in `conn/epoll.rs`): reads into buffers taken from the same ring
//! ([`BufRing::pop`]) are handled exactly like multishot completions, and send results
//! come back as [`Task`]s. Only the three places that would push an SQE (`arm_recv`,
//! `cancel_recv`, `flush`) look at [`Env::epoll`].
//!
//! This file holds the session's state, its completion handlers and the arming of
//! receives; the walk of received bytes is in `conn/recv.rs`, the writing side (queued
//! pieces, gathered sends, backpressure) in `conn/send.rs`, the close rules (events,
//! actions, finishing, lingering) in `conn/close.rs`, and what a TLS leg adds (decrypting
//! into the carry, sealing what is queued, `close_notify`) in `conn/tls_leg.rs`.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Instant;

use io_uring::{cqueue, opcode};

mod close;
mod epoll;
mod recv;
mod send;
mod tls_leg;

use send::Out;

#[cfg(test)]
pub(super) use epoll::more_with_buffer;
pub(super) use epoll::Task;

use super::bufring::BufRing;
use super::ops::{user_data, Op};
use super::spares::SendBuf;
use super::tls::LegTls;
use crate::flow::Side;
use crate::limits::SessionSlot;
use crate::relay::core::SessionCore;
use crate::relay::lifecycle::{Event, PumpEnd};
use crate::relay::session::SessionInfo;
use crate::runtime::timers::TimerKey;
use crate::runtime::WorkerCtx;

/// Queued bytes towards a leg above which the other leg stops being read (TCP backpressure
/// reaches its peer); reading resumes below a quarter of it. The client leg's own reading
/// stops the same way when what fills its queue is the relay's answers to it (`paused_own`).
const HIGH_WATER: usize = crate::relay::leg::OUTBOX_HIGH_WATER;
/// Bytes of a new buffer copied behind a carried partial header: enough to complete any
/// frame header (14) or control frame (131).
const CARRY_JOIN: usize = 256;

#[derive(Default)]
struct Leg {
    fd: RawFd,
    /// io_uring: the socket's entry in the ring's registered file table, which receives
    /// and sends name instead of `fd` (see `fixed_files`).
    fixed: Option<u32>,
    /// A multishot receive is armed (its last completion not yet seen).
    recv_armed: bool,
    /// The session wants this leg read.
    reading: bool,
    /// Reading paused because the other leg's queue is full.
    paused: bool,
    /// The client leg's reading paused because its *own* queue is full of what the relay
    /// answered it with (refused creates' `error` events): a client that sends and never
    /// reads would otherwise grow that queue without bound (see `Conn::handle_next`).
    paused_own: bool,
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
    /// Queued pieces that are ring buffers (at most `send::RING_PIECES_PER_LEG`).
    ring_pieces: u16,
    sending: bool,
    /// The iovecs of the gathered send in flight, from the worker's spares; given back at
    /// its completion (a single piece goes out as a plain `send` and needs none), so an
    /// idle session holds none.
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
    /// A TLS leg: its rustls connection. What is received is decrypted into `carry`, what
    /// is queued is sealed into records first (`super::tls`).
    tls: Option<Box<LegTls>>,
}

/// Build an SQE on a leg's socket: by its registered file table entry when it has one, else
/// by descriptor. (`io_uring`'s target type is sealed, so the two cases are spelled out.)
macro_rules! on_socket {
    ($leg:expr, |$t:ident| $build:expr) => {
        match $leg.fixed {
            Some(i) => {
                let $t = io_uring::types::Fixed(i);
                $build
            }
            None => {
                let $t = io_uring::types::Fd($leg.fd);
                $build
            }
        }
    };
}
use on_socket;

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
    /// The worker's spare buffers for client messages.
    pub spares: &'a mut super::spares::Spares,
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
        tls: [Option<Box<LegTls>>; 2],
        fixed: Option<u32>,
        tenant: Option<SessionSlot>,
        tunnel: bool,
    ) -> Conn {
        let mut legs: [Leg; 2] = Default::default();
        for (i, ((leg, fd), tls)) in legs.iter_mut().zip(fds).zip(tls).enumerate() {
            leg.fd = fd;
            leg.tls = tls;
            leg.fixed = fixed.map(|base| base + i as u32);
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
    pub(super) fn start(&mut self, env: &mut Env<'_>, mut leftovers: [Vec<u8>; 2]) {
        for side in Side::BOTH {
            self.arm_recv(env, side);
        }
        // A TLS leg: the plaintext rustls still holds, and the ciphertext the handshake read
        // past what rustls took, go behind the handshake's leftover.
        let mut ended = [None, None];
        for side in Side::BOTH {
            let i = side.index();
            if let Some(tls) = self.legs[i].tls.as_mut() {
                let handoff = tls.take_handoff();
                ended[i] = Self::tls_end_of(tls.recv(&handoff, &mut leftovers[i]), self.info.id);
                self.tls_pending(env, side);
            }
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
            self.ended_at_start(env, ended);
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
        self.ended_at_start(env, ended);
    }

    /// A TLS leg whose stream ended in what the handshake had read already.
    fn ended_at_start(&mut self, env: &mut Env<'_>, ended: [Option<PumpEnd>; 2]) {
        for side in Side::BOTH {
            if let Some(end) = ended[side.index()] {
                self.leg_ended(env, side, end);
            }
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

    /// Close both descriptors (once nothing is in flight), after taking them out of the
    /// registered file table (which would otherwise keep the sockets open).
    pub(super) fn close_fds(&mut self) {
        // The legs' entries are `base` (client, `legs[0]`) and `base + 1`.
        if let Some(base) = self.legs[0].fixed {
            super::fixed_files::remove(base);
            for leg in &mut self.legs {
                leg.fixed = None;
            }
        }
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
            // EOF (0) or a read error. A TLS stream cut without `close_notify` is a read
            // error, as rustls reports it to the async adapter.
            let clean = res == 0
                && self.legs[side.index()]
                    .tls
                    .as_ref()
                    .is_none_or(|t| t.peer_closed());
            let end = if clean {
                PumpEnd::Eof
            } else {
                PumpEnd::ReadError
            };
            self.leg_ended(env, side, end);
        }
        if !more && (res > 0 || res == -libc::ECANCELED) {
            // The kernel ended the multishot receive (it may), or a pause/stop cancelled it:
            // arm it again if the leg is still to be read.
            self.arm_recv(env, side);
        }
        self.after(env);
    }

    /// `side`'s stream ended (EOF, a read error, a TLS `close_notify` or TLS error): the
    /// session hears of it once.
    fn leg_ended(&mut self, env: &mut Env<'_>, side: Side, end: PumpEnd) {
        let first = !self.legs[side.index()].eof;
        self.legs[side.index()].eof = true;
        if first && self.phase == Phase::Open {
            if self.tunnel {
                self.end(env);
            } else {
                self.event(env, Event::Ended(side, end));
            }
        }
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

    // ---- reading ----------------------------------------------------------------------

    fn arm_recv(&mut self, env: &mut Env<'_>, side: Side) {
        let leg = &mut self.legs[side.index()];
        let wanted = match self.phase {
            Phase::Open => leg.reading && !leg.paused && !leg.paused_own,
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
        let bgid = env.ring.bgid();
        let sqe = on_socket!(leg, |t| opcode::RecvMulti::new(t, bgid).build())
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
}
