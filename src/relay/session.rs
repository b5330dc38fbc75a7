//! A relayed session over async streams (plain TCP or TLS, io_uring or epoll): two pumps
//! feed the sans-IO [`SessionCore`] and carry out what it answers; a control loop sleeps
//! until the core's nearest deadline (armed in the worker's timer map) and applies it.
//!
//! Everything runs in one task ([`join3`]): each part has a waker of its own and is polled
//! only when that waker fired, so a frame from upstream does not also poll the client pump
//! and the control loop. The parts share a few flags ([`Ctl`]); nothing is borrowed across
//! an await. See `LIFECYCLE.md` for the close rules, implemented in `lifecycle`.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::RawFd;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::control::{linger, LINGER};
use super::core::{CoreEnv, Next, SessionCore};
use super::leg::Leg;
use super::lifecycle::{ClosedBy, Event, PumpEnd};
use super::pump::{BufSizer, MIN_READ_BUFFER};
use super::ready::{park, Parked, ReadReady};
use crate::flow::{Direction, Side};
use crate::limits::SessionSlot;
use crate::runtime::parts::join3;
use crate::runtime::WorkerCtx;

mod control_loop;
mod ctl;
mod tunnel;
pub use ctl::{Ctl, SessionHandle};
use tunnel::tunnel;

/// Identity of a session for logs and records.
pub struct SessionInfo {
    /// Worker-unique session id.
    pub id: u64,
    /// Tenant (never a key).
    pub tenant: Arc<str>,
    /// Route index (into the config's routes).
    pub route: usize,
    /// Route name.
    pub route_name: Arc<str>,
    /// The route's upstream URL.
    pub upstream: Arc<str>,
    /// Request path (as the client sent it).
    pub path: String,
}

/// One side of a session as the adapter gets it: read half, write half, socket fd.
pub struct Conn<R, W> {
    /// Read half.
    pub read: R,
    /// Write half.
    pub write: W,
    /// The TCP socket's descriptor (for shutdown on kill).
    pub fd: RawFd,
    /// Bytes already read past the handshake (frames pipelined behind it).
    pub leftover: Vec<u8>,
}

/// Run `f`, turning a panic inside it into `Err` (the panic does not unwind into the
/// runtime, which would kill the worker and every session on it).
///
/// A struct future, not an `async fn`: an `async fn` would hold `f` twice (its argument
/// and the pinned copy it polls), which doubled every session's task (16,256 → 4,608
/// bytes, `-Zprint-type-sizes`).
pub fn catch_unwind<F: Future>(f: F) -> CatchUnwind<F> {
    CatchUnwind(f)
}

/// The future [`catch_unwind`] returns.
pub struct CatchUnwind<F>(F);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of the only field, which is never moved out.
        let f = unsafe { self.map_unchecked_mut(|s| &mut s.0) };
        match std::panic::catch_unwind(AssertUnwindSafe(|| f.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

struct Session<'a, CW, UW> {
    ctx: &'a Rc<WorkerCtx>,
    info: &'a SessionInfo,
    core: Rc<RefCell<SessionCore>>,
    ctl: Rc<Ctl>,
    client: Leg<CW>,
    upstream: Leg<UW>,
    /// Per side: watching its writes for a stall, since when.
    watch: [Cell<Option<Instant>>; 2],
    drain_slot: Cell<bool>,
    pumps_left: Cell<u8>,
    buffer_bytes: usize,
}

/// A session's sans-IO core, with this worker's settings, sink, budget and metrics.
pub fn new_core(
    ctx: &Rc<WorkerCtx>,
    info: &SessionInfo,
    tenant: Option<&SessionSlot>,
) -> SessionCore {
    let env = CoreEnv {
        sink: ctx.shared.sink.clone(),
        budget: ctx.budget.clone(),
        tenant: tenant.map(|s| Arc::clone(s.tenant())),
        metrics: ctx.metrics.clone(),
        route: Some((ctx.shared.config.routes.clone(), info.route)),
    };
    SessionCore::new(
        info.id,
        info.tenant.clone(),
        info.upstream.clone(),
        ctx.session_limits.clone(),
        env,
        Instant::now(),
    )
}

/// Run the session as a task of its own: the handshake's task (and the memory of its
/// future) ends here, so a session holds only the state it needs.
pub fn spawn<CR, CW, UR, UW>(
    ctx: &Rc<WorkerCtx>,
    info: SessionInfo,
    client: Conn<CR, CW>,
    upstream: Conn<UR, UW>,
    tenant: Option<SessionSlot>,
) where
    CR: AsyncReadRent + ReadReady + 'static,
    CW: AsyncWriteRent + 'static,
    UR: AsyncReadRent + ReadReady + 'static,
    UW: AsyncWriteRent + 'static,
{
    let ctx = Rc::clone(ctx);
    ctx.conn_started();
    monoio::spawn(async move {
        let id = info.id;
        if catch_unwind(run(&ctx, info, client, upstream, tenant))
            .await
            .is_err()
        {
            ctx.metrics.panicked();
            tracing::error!(session = id, "session panicked while closing");
        }
        ctx.conn_ended();
    });
}

/// Relay frames between an upgraded client and upstream until the session ends.
pub async fn run<CR, CW, UR, UW>(
    ctx: &Rc<WorkerCtx>,
    info: SessionInfo,
    client: Conn<CR, CW>,
    upstream: Conn<UR, UW>,
    tenant: Option<SessionSlot>,
) where
    CR: AsyncReadRent + ReadReady,
    CW: AsyncWriteRent,
    UR: AsyncReadRent + ReadReady,
    UW: AsyncWriteRent,
{
    if ctx.shared.config.tunnel {
        return Box::pin(tunnel(ctx, &info, client, upstream)).await;
    }
    let core = Rc::new(RefCell::new(new_core(ctx, &info, tenant.as_ref())));
    let ctl = Rc::new(Ctl::default());
    let _registered = ctx.register_session(
        info.id,
        Rc::new(SessionHandle {
            core: core.clone(),
            ctl: ctl.clone(),
        }),
    );
    let buffer_bytes = ctx.shared.config.buffer_bytes;
    let sizer = BufSizer::new(buffer_bytes);
    let s = Session {
        ctx,
        info: &info,
        core,
        ctl,
        client: Leg::new(client.write, client.fd),
        upstream: Leg::new(upstream.write, upstream.fd),
        watch: Default::default(),
        drain_slot: Cell::new(false),
        pumps_left: Cell::new(2),
        buffer_bytes,
    };
    let (mut crd, mut urd) = (client.read, upstream.read);
    let body = join3(
        s.pump(
            Direction::ClientToUpstream,
            &mut crd,
            &s.upstream,
            sizer.first(client.leftover),
        ),
        s.pump(
            Direction::UpstreamToClient,
            &mut urd,
            &s.client,
            sizer.first(upstream.leftover),
        ),
        s.control(),
    );
    if let Err(panic) = catch_unwind(body).await {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(session = info.id, panic = %what, "session panicked; closing it 1011 and recording its open responses");
        ctx.metrics.panicked();
        s.client.abandon_if_lost();
        s.upstream.abandon_if_lost();
        let a = s
            .core
            .borrow_mut()
            .on_event(Event::Panicked, false, Instant::now());
        s.apply(a).await;
    }
    s.finish().await;
    let linger_for = if ctx.shutting_down() {
        Duration::from_millis(300)
    } else {
        LINGER
    };
    let _ = monoio::time::timeout(linger_for, async {
        monoio::join!(linger(&mut crd), linger(&mut urd))
    })
    .await;
}

impl<CW: AsyncWriteRent, UW: AsyncWriteRent> Session<'_, CW, UW> {
    /// One direction: read, let the core walk, forward, until the source ends or the
    /// session stops this pump.
    async fn pump<R: AsyncReadRent + ReadReady, W: AsyncWriteRent>(
        &self,
        dir: Direction,
        src: &mut R,
        dst: &Leg<W>,
        mut buf: Vec<u8>,
    ) {
        self.pump_inner(dir, src, dst, &mut buf).await;
        let left = self.pumps_left.get() - 1;
        self.pumps_left.set(left);
        if left == 0 {
            self.ctl.end.set(true);
            self.ctl.wake();
        }
    }

    async fn pump_inner<R: AsyncReadRent + ReadReady, W: AsyncWriteRent>(
        &self,
        dir: Direction,
        src: &mut R,
        dst: &Leg<W>,
        buf: &mut Vec<u8>,
    ) {
        let side = dir.source();
        let mut sizer = BufSizer::new(self.buffer_bytes);
        let mut pending = !buf.is_empty();
        let (mut last_read, mut last_room) = (0, usize::MAX);
        let mut budget = READS_PER_YIELD;
        loop {
            if self.ctl.stopped(side) {
                return;
            }
            if !pending && self.ctx.epoll {
                budget -= 1;
                if budget == 0 {
                    // With epoll a read of a socket that always has data completes at once,
                    // so a busy pump never lets the runtime park — and monoio fires timers
                    // only when it parks. A zero sleep every few reads lets the worker's
                    // timers (deadlines, the metrics ticker) and other sessions run. (With
                    // io_uring every read waits for its completion, which parks.)
                    budget = READS_PER_YIELD;
                    monoio::time::sleep(Duration::ZERO).await;
                }
            }
            if !pending && buf.is_empty() {
                // Idle: hold no read buffer while nothing arrives (`relay::ready`).
                match park(src, buf, self.ctl.until_stopped(side)).await {
                    Parked::Ready => {}
                    Parked::Stopped => return,
                    Parked::Failed => {
                        return self.event(Event::Ended(side, PumpEnd::ReadError)).await
                    }
                }
            }
            if !pending {
                if buf.len() == buf.capacity() {
                    // Never issue a zero-length read (it reads as EOF); a held message grows
                    // the buffer (bounded by the message limits and the worker's budget).
                    buf.reserve(buf.len().max(MIN_READ_BUFFER));
                }
                let (len, cap) = (buf.len(), buf.capacity());
                last_room = cap - len;
                let read = src.read(std::mem::take(buf).slice_mut(len..cap));
                let r = monoio::select! {
                    r = read => Some(r),
                    _ = self.ctl.until_stopped(side) => None,
                };
                let Some((res, b)) = r else { return };
                *buf = b.into_inner();
                match res {
                    Ok(0) => return self.event(Event::Ended(side, PumpEnd::Eof)).await,
                    Err(_) => return self.event(Event::Ended(side, PumpEnd::ReadError)).await,
                    Ok(n) => {
                        self.core.borrow_mut().count_read(dir, n);
                        last_read = n;
                    }
                }
            }
            pending = false;
            let now = Instant::now();
            let step = self.core.borrow_mut().on_bytes(dir, buf, now);
            if step.forward > 0 && !dst.is_dead() {
                self.watch_writes(dir.dest(), now);
                // Keep a small carried tail apart: if the write is cut (the leg killed), the
                // buffer goes with it, and the walk must still resume at the right byte.
                let mut tail = [0u8; 160];
                let tail_len = buf.len() - step.skip;
                let keep = tail_len <= tail.len();
                if keep {
                    tail[..tail_len].copy_from_slice(&buf[step.skip..]);
                }
                let whole = std::mem::take(buf);
                match dst
                    .forward(whole.slice(0..step.forward), step.boundary, now)
                    .await
                {
                    Some(s) => {
                        *buf = s.into_inner();
                        drop_front(buf, step.skip);
                    }
                    None if keep => {
                        *buf = Vec::with_capacity(MIN_READ_BUFFER);
                        buf.extend_from_slice(&tail[..tail_len]);
                    }
                    None => return,
                }
                if dst.take_failed() {
                    self.event(Event::WriteFailed(dir.dest())).await;
                }
            } else {
                drop_front(buf, step.skip);
            }
            // A client message forwarded rewritten (a model's route prefix removed) goes
            // right behind the bytes before it.
            let rewritten = self.core.borrow_mut().take_rewritten();
            if let Some(bytes) = rewritten {
                if !dst.is_dead() {
                    self.watch_writes(dir.dest(), now);
                    let _ = dst.forward(bytes, true, now).await;
                    if dst.take_failed() {
                        self.event(Event::WriteFailed(dir.dest())).await;
                    }
                }
            }
            let out = self.core.borrow_mut().take_outbox();
            if let Some(out) = out {
                self.client.inject(out).await;
            }
            match step.next {
                Next::Read => {}
                Next::Again => pending = true,
                Next::Ended(end) => {
                    if matches!(end, PumpEnd::PeerClose { held: false, .. }) && !dst.is_dead() {
                        dst.mark_close_sent();
                    }
                    return self.event(Event::Ended(side, end)).await;
                }
                Next::Drained => return self.event(Event::Drained).await,
            }
            if self.core.borrow_mut().take_recheck() {
                self.ctl.poke();
            }
            sizer.adjust(buf, last_read, last_room);
        }
    }
}

/// Reads a pump makes before it yields to the worker's timers (epoll only).
const READS_PER_YIELD: u32 = 32;

/// Drop the first `n` bytes of `buf`, keeping the rest at the front.
fn drop_front(buf: &mut Vec<u8>, n: usize) {
    if n == 0 {
        return;
    }
    let len = buf.len();
    buf.copy_within(n..len, 0);
    buf.truncate(len - n);
}

/// Count a leg cut for not reading (`--slow-consumer-timeout`) and log it.
pub(crate) fn log_stall(ctx: &WorkerCtx, info: &SessionInfo, side: Side) {
    ctx.metrics.stalled(side);
    tracing::info!(
        session = info.id,
        side = side.as_str(),
        "leg stopped reading; cutting it"
    );
}

/// Count a closed session and write its log line.
pub(crate) fn log_end(ctx: &Rc<WorkerCtx>, info: &SessionInfo, core: &SessionCore) {
    let up = core.stats(Direction::ClientToUpstream);
    let down = core.stats(Direction::UpstreamToClient);
    ctx.metrics.session_closed(core.started().elapsed());
    let route = &*info.route_name;
    ctx.metrics
        .frames(route, Direction::ClientToUpstream, up.frames, up.bytes);
    ctx.metrics
        .frames(route, Direction::UpstreamToClient, down.frames, down.bytes);
    let [client_close, upstream_close] = core.close_codes();
    if let Some(c) = client_close {
        ctx.metrics.close(c, crate::metrics::Side::Client, route);
    }
    if let Some(c) = upstream_close {
        ctx.metrics.close(c, crate::metrics::Side::Upstream, route);
    }
    tracing::info!(
        session = info.id,
        tenant = %info.tenant,
        route = %info.route_name,
        upstream = %info.upstream,
        path = %info.path,
        duration_ms = core.started().elapsed().as_millis() as u64,
        frames_up = up.frames,
        reads_up = up.reads,
        bytes_up = up.bytes,
        frames_down = down.frames,
        reads_down = down.reads,
        bytes_down = down.bytes,
        client_close,
        upstream_close,
        closed_by = core.closed_by().map_or("", ClosedBy::as_str),
        "session closed"
    );
}
