//! The io_uring data plane: every session moves its bytes here, driven by completions, once
//! the handshake (on monoio futures) has sent the 101 — plain TCP legs and TLS legs alike
//! (a TLS leg keeps its rustls connection and the session does the record work: `tls.rs`).
//!
//! # How it works
//!
//! Per worker, one provided-buffer ring ([`bufring::BufRing`], `--ring-buffers` ×
//! `--ring-buffer-bytes`), and a handler the runtime calls with each batch of completions
//! right after the park that reaped them (`DataPlane::run`). Each leg of each session has one
//! multishot receive armed on the worker's ring; its completions name the ring buffer the
//! kernel filled. The session walks and meters the bytes in that buffer
//! (`relay::core::SessionCore`, the same sans-IO core as the async path) and sends them to
//! the other leg straight from it; the buffer returns to the ring when the send that
//! carries its last piece completes. So:
//!
//! - an idle session holds **no read buffer** and no send header — only its state
//!   (`conn::Conn`, and what its meter keeps between responses) and two armed receives in
//!   the kernel;
//! - a receive is armed once, not once per read: no failed first attempt, no poll re-arm;
//! - every completion of a batch is handled in one task poll, and every send a batch
//!   causes goes to the kernel with the driver's next `io_uring_enter`;
//! - a session's two sockets sit in the ring's registered file table
//!   (`fixed_files.rs`), so a send or an armed receive names a table entry: no descriptor
//!   lookup and file reference (`fget`/`fput`) per operation;
//! - deadlines live in the worker's timer map (`runtime::timers`), keyed by session.
//!
//! Ring exhaustion is normal operation, not an error: a receive that finds the ring empty
//! ends with `ENOBUFS`; its leg waits in a list and is re-armed once buffers come back
//! (the kernel keeps the bytes in the socket meanwhile). A leg whose queue towards a slow
//! peer exceeds 256 KiB stops being read, so TCP backpressure reaches the sender and one
//! session cannot take the ring from the others.
//!
//! # Why a patched monoio
//!
//! monoio 0.2.4 submits one SQE per operation future and matches one CQE to it; its
//! operation trait is crate-private, so it cannot express a multishot receive or register
//! a buffer ring. The alternatives were: (1) our own ring next to monoio's on the same
//! thread — but a thread waits on one ring, and with `DEFER_TASKRUN` completions of the
//! second ring would not even be posted until that thread entered it, so every wake-up
//! would cost an extra `io_uring_enter` (or an eventfd read); (2) leaving monoio for a
//! purpose-built runtime — the handshake, TLS and timers would all have to
//! be rebuilt. (3), chosen: monoio vendored with one added module, `monoio::ext`
//! (`vendor/monoio/TOLLGATE-PATCH.md`, ~200 lines): caller-owned SQEs (user data with the
//! top bit set) on monoio's own ring, their CQEs queued for the caller, and the same for
//! epoll registrations. The handshake keeps using monoio's futures; the data plane shares
//! the ring and the thread, at no extra syscall. The same patch makes monoio's timer path
//! cheap on a wake-up that only brought completions (a coarse clock proves no timer is due;
//! io_uring keeps one absolute timeout in the ring instead of a relative one per
//! `io_uring_enter`): with a timer armed, one completion's round trip from the ring to the
//! dispatcher went from 604–611 to 488–490 ns (`cargo bench --bench wakeup`; a bare
//! io_uring loop 412–435). And the runtime hands completions to a handler after its park
//! (`monoio::ext::set_handler`) instead of waking a task for them, as the floor's loop does.
//!
//! # Under epoll
//!
//! The same sessions run on a worker whose driver is epoll (`--driver epoll`, or `auto` on
//! a kernel without io_uring): each socket is registered for edge-triggered readiness on
//! monoio's own epoll instance (`monoio::ext::legacy_register`), the ring's buffers are
//! handed out by the process itself ([`BufRing::pop`]), and the session reads until a short
//! read and sends with a non-blocking `sendmsg` (see `conn`). The session code is the same
//! — only the three places that would push an SQE differ — so an idle session costs the same
//! under both drivers, with no read buffer.
//!
//! A TLS leg (a `wss://` listener or upstream) arrives here with its rustls connection:
//! ciphertext is received into ring buffers like any bytes and decrypted into the leg's
//! carry, and what goes towards it is sealed into records when queued (`tls.rs`). Until
//! 2026-12-03 TLS sessions stayed on the async adapter, which paid a readiness poll, a
//! `recv` and a task wake-up per read: 2.14 syscalls per paced frame against 0.26 here, and
//! 22.8 against 18.4 µs of CPU (loadtest/BENCH-history.md, "TLS (production's shape)",
//! "2026-12-03: TLS legs on the data plane"). With
//! `--no-ring` every session runs on the async adapter (`relay::session`), the same core over futures.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::os::fd::RawFd;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use io_uring::cqueue;
use monoio::ext::ExtEvent;

use crate::flow::Side;
use crate::limits::SessionSlot;
use crate::relay::core::SessionCore;
use crate::relay::session::SessionInfo;
use crate::runtime::WorkerCtx;

pub mod bufring;
mod conn;
mod fixed_files;
mod ops;
mod prefetch;
mod spares;
mod tls;

use bufring::{BufRing, BufRingError};
use conn::{Conn, Env, Task};
use ops::{decode, user_data, Op, GEN_MASK};
use prefetch::prefetch;
use spares::Spares;
pub use tls::LegTls;

/// One entry of the worker's session table: the session, and a generation that tells a
/// completion for an earlier session in the same slot from one for this session.
struct Slot {
    gen: u32,
    conn: Option<Box<Conn>>,
}

/// One worker's data plane.
pub struct DataPlane {
    ring: BufRing,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
    starved: RefCell<Vec<(u32, u32, Side)>>,
    poke: Cell<bool>,
    waker: RefCell<Option<std::task::Waker>>,
    live: Cell<usize>,
    /// The worker runs epoll (readiness) rather than io_uring (completions).
    epoll: bool,
    /// epoll: work queued by handlers for the dispatcher's next turn.
    tasks: RefCell<VecDeque<(u32, u32, Side, Task)>>,
    /// Buffers of client messages whose send completed, for the next ones.
    spares: RefCell<Spares>,
    /// io_uring: entries of the ring's registered (fixed) file table; slot `s` uses
    /// entries `2s` (client) and `2s + 1` (upstream). 0 = no table (epoll, or the kernel
    /// refused it): sessions name their sockets by descriptor.
    files: u32,
}

impl DataPlane {
    /// A data plane on the current thread's driver with a ring of `count` buffers of
    /// `size` bytes: registered with the io_uring, or handed out by the process under
    /// epoll. Fails outside a monoio runtime or on io_uring kernels without buffer rings.
    ///
    /// Under io_uring it also registers a sparse file table of `2 × sessions` entries
    /// (`fixed_files.rs`); a kernel that refuses it costs nothing but that saving.
    pub fn new(count: usize, size: usize, sessions: usize) -> Result<DataPlane, BufRingError> {
        let ring = BufRing::new(count, size, 0)?;
        let mut files = 0;
        let epoll = match monoio::ext::kind() {
            Some(monoio::ext::Kind::Uring) => {
                monoio::ext::with_uring(|u| ring.register(&u.submitter())).ok_or_else(|| {
                    BufRingError::Register(std::io::Error::other("not an io_uring runtime"))
                })??;
                files = fixed_files::register(sessions);
                false
            }
            Some(monoio::ext::Kind::Legacy) => true,
            None => {
                return Err(BufRingError::Register(std::io::Error::other(
                    "outside a monoio runtime",
                )))
            }
        };
        Ok(DataPlane {
            epoll,
            tasks: RefCell::new(VecDeque::new()),
            spares: RefCell::new(Spares::default()),
            ring,
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            starved: RefCell::new(Vec::new()),
            poke: Cell::new(false),
            waker: RefCell::new(None),
            live: Cell::new(0),
            files,
        })
    }

    /// Entries of the registered file table (0 = none).
    pub fn fixed_files(&self) -> u32 {
        self.files
    }

    /// Sessions on this data plane now.
    pub fn live(&self) -> usize {
        self.live.get()
    }

    /// Take over an upgraded session whose legs are the TCP sockets `fds` (client,
    /// upstream), with the bytes each sent past its handshake; a leg with TLS comes with
    /// its rustls connection (`tls`).
    #[allow(clippy::too_many_arguments)]
    pub fn adopt(
        &self,
        ctx: &Rc<WorkerCtx>,
        info: SessionInfo,
        core: SessionCore,
        fds: [RawFd; 2],
        tls: [Option<Box<LegTls>>; 2],
        leftovers: [Vec<u8>; 2],
        tenant: Option<SessionSlot>,
    ) {
        let slot = match self.free.borrow_mut().pop() {
            Some(s) => s,
            None => {
                let mut slots = self.slots.borrow_mut();
                slots.push(Slot { gen: 0, conn: None });
                (slots.len() - 1) as u32
            }
        };
        let gen = self.slots.borrow()[slot as usize].gen;
        if self.epoll {
            for (fd, side) in fds.into_iter().zip(Side::BOTH) {
                let token = user_data(slot, gen, side, Op::Ready);
                if let Err(e) = monoio::ext::legacy_register(fd, token) {
                    // Cannot happen for a fresh socket short of the kernel's memory limits.
                    tracing::error!(session = info.id, error = %e, "epoll registration failed; closing the session");
                    ctx.metrics.panicked();
                    for fd in fds {
                        // SAFETY: the session owns both descriptors and nothing uses them.
                        unsafe {
                            libc::close(fd);
                        }
                    }
                    self.free.borrow_mut().push(slot);
                    return;
                }
            }
        }
        // No table (epoll, or refused by the kernel): `None`, without a syscall.
        let fixed = fixed_files::install(self.files, slot, fds);
        ctx.conn_started();
        ctx.metrics.ring_session();
        self.live.set(self.live.get() + 1);
        tracing::debug!(
            session = info.id,
            slot,
            fixed = fixed.is_some(),
            tls_client = tls[0].is_some(),
            tls_upstream = tls[1].is_some(),
            "session on the buffer-ring data plane"
        );
        let tunnel = ctx.shared.config.tunnel;
        let mut conn = Box::new(Conn::new(info, core, fds, tls, fixed, tenant, tunnel));
        {
            let mut starved = self.starved.borrow_mut();
            let mut tasks = self.tasks.borrow_mut();
            let mut spares = self.spares.borrow_mut();
            let mut env = Env {
                ctx,
                ring: &self.ring,
                slot,
                gen,
                now: Instant::now(),
                starved: &mut starved,
                epoll: self.epoll,
                tasks: &mut tasks,
                spares: &mut spares,
            };
            conn.start(&mut env, leftovers);
        }
        self.slots.borrow_mut()[slot as usize].conn = Some(conn);
        if !self.tasks.borrow().is_empty() {
            // epoll: the first reads were queued outside the dispatcher; let it run them
            // rather than wait for the sockets' first events.
            if let Some(w) = self.waker.borrow().as_ref() {
                w.wake_by_ref();
            }
        }
    }

    /// Shutdown began: every session looks at its deadlines again.
    pub fn poke_all(&self) {
        self.poke.set(true);
        if let Some(w) = self.waker.borrow().as_ref() {
            w.wake_by_ref();
        }
    }

    /// The worker is exiting: record the open responses of sessions still here.
    pub fn finish_all(&self, now: Instant) {
        for s in self.slots.borrow_mut().iter_mut() {
            if let Some(c) = s.conn.as_mut() {
                c.finish_records(now);
            }
        }
    }

    /// The dispatcher: take every completion and due deadline of a batch, hand each to
    /// its session, then re-arm legs that waited for buffers. Runs for the worker's life.
    ///
    /// Completions do not wait for this task: the runtime hands each batch straight to the
    /// data plane after the park that reaped it (`monoio::ext::set_handler`), as the floor's
    /// bare loop does, with no task woken, scheduled and polled per batch. This task takes
    /// what else wakes the data plane: deadlines, shutdown's poke and the epoll path's
    /// queued work.
    ///
    /// Measured (`taskset -c 0 cargo bench --bench wakeup -- --warm-up-time 1
    /// --measurement-time 4`, twice): a completion's round trip through monoio with a
    /// timer armed, 569 and 633 ns by way of a task, 541 and 541 ns by way of the handler;
    /// the floor's bare loop 490 and 486 ns. Under paced load (`perf record -F 4000 -g -C
    /// 0` over `loadtest bench --peers tunnel --only paced`, four alternations of the old
    /// and new binary) user space fell from 4.07% to 3.78% of the worker's samples (the
    /// floor's is 1.6%); the CPU per frame and the traced hop did not move beyond their
    /// spread between reps.
    pub async fn run(self: Rc<Self>, ctx: Rc<WorkerCtx>) {
        let handler: monoio::ext::Handler = {
            let (dp, ctx) = (self.clone(), ctx.clone());
            Rc::new(move |events: &mut Vec<ExtEvent>| dp.turn(&ctx, events, &mut Vec::new()))
        };
        monoio::ext::set_handler(Some(handler));
        let mut events: Vec<ExtEvent> = Vec::with_capacity(256);
        let mut due: Vec<u64> = Vec::new();
        loop {
            poll_fn(|cx| {
                ctx.timers.set_due_waker(cx.waker());
                {
                    let mut w = self.waker.borrow_mut();
                    if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        *w = Some(cx.waker().clone());
                    }
                }
                let ready = monoio::ext::poll_events(cx, &mut events).is_ready();
                ctx.timers.take_due(&mut due);
                if ready || !due.is_empty() || self.poke.get() || !self.tasks.borrow().is_empty() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            self.turn(&ctx, &mut events, &mut due);
        }
    }

    /// One turn of the data plane: every completion of a batch, then due deadlines and
    /// shutdown's poke, then legs waiting for buffers and the epoll path's queued work.
    fn turn(&self, ctx: &Rc<WorkerCtx>, events: &mut Vec<ExtEvent>, due: &mut Vec<u64>) {
        let now = Instant::now();
        let mut batch = events.drain(..).peekable();
        while let Some(ev) = batch.next() {
            // The next completion's session comes into cache while this one runs.
            if let Some(next) = batch.peek() {
                self.prefetch_slot(next.user_data);
            }
            self.dispatch(ctx, ev, now);
        }
        for key in due.drain(..) {
            let (slot, gen) = ((key & 0xffff_ffff) as u32, (key >> 32) as u32);
            self.with_conn(ctx, slot, gen, now, |c, env| c.on_timer(env));
        }
        if self.poke.replace(false) {
            let n = self.slots.borrow().len() as u32;
            for slot in 0..n {
                let gen = self.slots.borrow()[slot as usize].gen;
                self.with_conn(ctx, slot, gen, now, |c, env| c.on_timer(env));
            }
        }
        self.unstarve(ctx, now);
        self.run_tasks(ctx, now);
        ctx.metrics
            .set_ring_held(self.ring.count() - self.ring.available());
    }

    /// epoll: run the queued tasks — send results, reads of newly armed legs — and those
    /// they queue in turn, until none is left. Every chain ends: a send result queues
    /// another send only while bytes are queued, and reads stop at [`conn`]'s per-leg
    /// budget. (Leaving work for a later turn would need the task to wake itself, and a
    /// task that always wakes itself keeps monoio from ever parking — where its timers run.)
    fn run_tasks(&self, ctx: &Rc<WorkerCtx>, now: Instant) {
        loop {
            let Some((slot, gen, side, task)) = self.tasks.borrow_mut().pop_front() else {
                return;
            };
            self.with_conn(ctx, slot, gen, now, |c, env| c.on_task(env, side, task));
        }
    }

    /// Start loading the state of the session a completion is for (see [`prefetch`]).
    fn prefetch_slot(&self, user_data: u64) {
        let (slot, gen, _, _) = decode(user_data);
        if let Some(Slot {
            gen: g,
            conn: Some(conn),
        }) = self.slots.borrow().get(slot as usize)
        {
            if *g == gen {
                prefetch(conn);
            }
        }
    }

    fn dispatch(&self, ctx: &Rc<WorkerCtx>, ev: ExtEvent, now: Instant) {
        let (slot, gen, side, op) = decode(ev.user_data);
        match op {
            Some(Op::Recv) => {
                let handled = self.with_conn(ctx, slot, gen, now, |c, env| {
                    c.on_recv(env, side, ev.result, ev.flags)
                });
                if !handled {
                    // A completion for a session already gone: give its buffer back.
                    if let Some(bid) = cqueue::buffer_select(ev.flags) {
                        self.ring.taken(bid);
                        self.ring.recycle(bid);
                    }
                }
            }
            Some(Op::Send) => {
                self.with_conn(ctx, slot, gen, now, |c, env| {
                    c.on_send(env, side, ev.result)
                });
            }
            Some(Op::Ready) => {
                self.with_conn(ctx, slot, gen, now, |c, env| {
                    c.on_ready(env, side, ev.result)
                });
            }
            Some(Op::Cancel) | None => {}
        }
    }

    /// Run `f` on the session in `slot` if it is still generation `gen`; contain a panic
    /// to that session; free the slot once the session is done. `false` if not found.
    fn with_conn(
        &self,
        ctx: &Rc<WorkerCtx>,
        slot: u32,
        gen: u32,
        now: Instant,
        f: impl FnOnce(&mut Conn, &mut Env<'_>),
    ) -> bool {
        let Some(mut conn) = ({
            let mut slots = self.slots.borrow_mut();
            match slots.get_mut(slot as usize) {
                Some(s) if s.gen == gen => s.conn.take(),
                _ => None,
            }
        }) else {
            return false;
        };
        prefetch(&conn);
        {
            let mut starved = self.starved.borrow_mut();
            let mut tasks = self.tasks.borrow_mut();
            let mut spares = self.spares.borrow_mut();
            let mut env = Env {
                ctx,
                ring: &self.ring,
                slot,
                gen,
                now,
                starved: &mut starved,
                epoll: self.epoll,
                tasks: &mut tasks,
                spares: &mut spares,
            };
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut conn, &mut env)));
            if r.is_err() {
                ctx.metrics.panicked();
                tracing::error!(
                    session = conn.id(),
                    "session panicked; closing it and recording its open responses"
                );
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| conn.on_panic(&mut env)));
            }
        }
        let mut slots = self.slots.borrow_mut();
        let s = &mut slots[slot as usize];
        if conn.done() {
            conn.close_fds();
            s.gen = (s.gen + 1) & GEN_MASK as u32;
            self.free.borrow_mut().push(slot);
            self.live.set(self.live.get() - 1);
            ctx.conn_ended();
        } else {
            s.conn = Some(conn);
        }
        true
    }

    /// Re-arm receives that ended for want of buffers, while buffers are back.
    fn unstarve(&self, ctx: &Rc<WorkerCtx>, now: Instant) {
        loop {
            if self.ring.available() < 2 {
                return;
            }
            let Some((slot, gen, side)) = ({
                let mut s = self.starved.borrow_mut();
                (!s.is_empty()).then(|| s.remove(0))
            }) else {
                return;
            };
            self.with_conn(ctx, slot, gen, now, |c, env| c.unstarve(env, side));
        }
    }
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
