//! One worker thread: a pinned monoio runtime (io_uring, or epoll as the fallback) with
//! its own SO_REUSEPORT listener, its sessions and its counters.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::timers::Timers;
use super::{Shared, StartError};
use crate::config::Driver;
use crate::dataplane::DataPlane;
use crate::metrics::WorkerMetrics;
use crate::relay::core::SessionLimits;
use crate::relay::session::SessionHandle;
use crate::tap::Budget;

/// One worker's context (lives on its thread).
pub struct WorkerCtx {
    /// Worker index.
    pub id: usize,
    /// Shared state.
    pub shared: Arc<Shared>,
    /// This worker's counters.
    pub metrics: Rc<WorkerMetrics>,
    /// Settings every session of this worker uses.
    pub session_limits: Rc<SessionLimits>,
    /// Bytes this worker's sessions may hold for message assembly.
    pub budget: Rc<Budget>,
    /// This worker's deadlines.
    pub timers: Timers,
    /// Whether the worker runs the epoll driver (pumps must yield to let timers fire).
    pub epoll: bool,
    /// The buffer-ring data plane (io_uring workers), for plain-TCP sessions.
    pub dataplane: Option<Rc<DataPlane>>,
    orphan_drains: Cell<usize>,
    next_session: Cell<u64>,
    active: Cell<usize>,
    shutdown_waker: RefCell<Option<Waker>>,
    /// Live sessions, poked when shutdown begins.
    sessions: RefCell<HashMap<u64, Rc<SessionHandle>>>,
}

/// Removes a session from its worker's registry when the session ends.
pub struct SessionRegistration<'a> {
    ctx: &'a WorkerCtx,
    id: u64,
}

impl Drop for SessionRegistration<'_> {
    fn drop(&mut self) {
        self.ctx.sessions.borrow_mut().remove(&self.id);
    }
}

impl WorkerCtx {
    /// Whether a graceful shutdown has begun.
    pub fn shutting_down(&self) -> bool {
        self.shared.shutting_down()
    }

    /// While shutting down: the deadline for in-flight responses.
    pub fn drain_deadline(&self) -> Option<Instant> {
        if self.shutting_down() {
            self.shared
                .drain_deadline
                .get()
                .copied()
                .or(Some(Instant::now()))
        } else {
            None
        }
    }

    /// Whether an orphan-drain slot is free.
    pub fn orphan_drain_available(&self) -> bool {
        self.orphan_drains.get() < self.shared.config.max_orphan_drains
    }

    /// Reserve an orphan-drain slot (bounded by `--max-orphan-drains`).
    pub fn try_start_orphan_drain(&self) -> bool {
        let n = self.orphan_drains.get();
        if n >= self.shared.config.max_orphan_drains {
            return false;
        }
        self.orphan_drains.set(n + 1);
        self.metrics.orphan_drain_started();
        true
    }

    /// Release an orphan-drain slot.
    pub fn orphan_drain_ended(&self) {
        self.orphan_drains
            .set(self.orphan_drains.get().saturating_sub(1));
        self.metrics.orphan_drain_finished();
    }

    /// A session id unique in this process: worker index in the top bits.
    pub fn next_session_id(&self) -> u64 {
        let n = self.next_session.get() + 1;
        self.next_session.set(n);
        ((self.id as u64) << 48) | n
    }

    /// Register a live session (poked when shutdown begins) until the returned guard drops.
    pub fn register_session(&self, id: u64, handle: Rc<SessionHandle>) -> SessionRegistration<'_> {
        self.sessions.borrow_mut().insert(id, handle);
        SessionRegistration { ctx: self, id }
    }

    /// Connections (handshakes and sessions) on this worker now.
    pub fn active(&self) -> usize {
        self.active.get()
    }

    /// A connection started (handshake or session).
    pub fn conn_started(&self) {
        self.active.set(self.active.get() + 1);
    }

    /// A connection ended.
    pub fn conn_ended(&self) {
        self.active.set(self.active.get().saturating_sub(1));
    }
}

pub(super) fn pin_to_core(core: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::warn!(core, "could not pin worker to core");
        }
    }
}

/// Marks the relay failed if its worker thread unwinds (a panic outside any session):
/// `/readyz` turns 503 and the process is asked to stop, so it exits non-zero and a
/// supervisor restarts it — never a silently dead worker.
struct DeathWatch {
    shared: Arc<Shared>,
    id: usize,
}

impl Drop for DeathWatch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(worker = self.id, "worker thread died; stopping the relay");
            self.shared.worker_failed.store(true, Ordering::SeqCst);
            self.shared.ready.store(false, Ordering::SeqCst);
            // SAFETY: signalling our own process; the main thread takes SIGTERM.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGTERM);
            }
        }
    }
}

/// io_uring setup flags, best first: one thread owns each ring, so completions can wait for
/// it to ask for them (`DEFER_TASKRUN`) instead of interrupting it; `COOP_TASKRUN` where
/// that is not available; none on old kernels.
fn uring_builders() -> [(&'static str, io_uring::Builder); 3] {
    let mut defer = io_uring::IoUring::builder();
    defer.setup_single_issuer().setup_defer_taskrun();
    let mut coop = io_uring::IoUring::builder();
    coop.setup_coop_taskrun().setup_taskrun_flag();
    [
        ("single_issuer+defer_taskrun", defer),
        ("coop_taskrun", coop),
        ("none", io_uring::IoUring::builder()),
    ]
}

pub(super) fn worker_thread(
    id: usize,
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    tx: std::sync::mpsc::Sender<Result<&'static str, StartError>>,
) {
    let _watch = DeathWatch {
        shared: shared.clone(),
        id,
    };
    let want = shared.config.driver;
    let uring_ok = want != Driver::Epoll && monoio::utils::detect_uring();
    if want == Driver::Uring && !uring_ok {
        let _ = tx.send(Err(StartError::Worker {
            worker: id,
            why: "--driver uring: io_uring is not available on this kernel".into(),
        }));
        return;
    }
    if uring_ok {
        let mut last_err = None;
        for (flags, builder) in uring_builders() {
            if shared.config.uring_setup.is_some_and(|f| f != flags) {
                continue;
            }
            if shared.config.debug_fail_uring {
                last_err = Some(std::io::Error::other("test hook --debug-fail-uring"));
                continue;
            }
            match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .enable_timer()
                .with_entries(1024)
                .uring_builder(builder)
                .build()
            {
                Ok(mut rt) => {
                    tracing::debug!(worker = id, flags, "io_uring ring built");
                    shared.registry.set_uring_flags(flags);
                    rt.block_on(worker_main(id, shared, listener, tx, "io_uring"));
                    return;
                }
                Err(e) => {
                    tracing::debug!(worker = id, flags, error = %e, "io_uring setup refused; trying fewer flags");
                    last_err = Some(e);
                }
            }
        }
        let e = last_err.map(|e| e.to_string()).unwrap_or_default();
        if want == Driver::Uring {
            let _ = tx.send(Err(StartError::Worker {
                worker: id,
                why: format!("io_uring runtime: {e}"),
            }));
            return;
        }
        tracing::warn!(worker = id, error = %e, "io_uring runtime failed; falling back to epoll");
    }
    match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut rt) => rt.block_on(worker_main(id, shared, listener, tx, "epoll")),
        Err(e) => {
            let _ = tx.send(Err(StartError::Worker {
                worker: id,
                why: format!("epoll runtime: {e}"),
            }));
        }
    }
}

async fn worker_main(
    id: usize,
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    tx: std::sync::mpsc::Sender<Result<&'static str, StartError>>,
    driver: &'static str,
) {
    let listener = match monoio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            let _ = tx.send(Err(StartError::Worker {
                worker: id,
                why: format!("listener: {e}"),
            }));
            return;
        }
    };
    let cfg = &shared.config;
    let session_limits = Rc::new(SessionLimits {
        frames: cfg.frames,
        idle_timeout: cfg.idle_timeout,
        response_timeout: cfg.response_timeout,
        orphan_drain_timeout: cfg.orphan_drain_timeout,
        slow_consumer_timeout: cfg.slow_consumer_timeout,
        max_connection_age: cfg.max_connection_age,
        drain_timeout: cfg.drain_timeout,
        debug_panic_model: cfg.debug_panic_on_model.clone(),
    });
    let dataplane = if !cfg.no_ring {
        match DataPlane::new(cfg.ring_buffers, cfg.ring_buffer_bytes, cfg.max_sessions) {
            Ok(dp) => Some(Rc::new(dp)),
            Err(e) => {
                tracing::warn!(worker = id, error = %e, "no buffer-ring data plane; plain-TCP sessions use the async path");
                None
            }
        }
    } else {
        None
    };
    let ctx = Rc::new(WorkerCtx {
        id,
        dataplane,
        metrics: Rc::new(WorkerMetrics::new(shared.registry.clone())),
        session_limits,
        budget: Rc::new(Budget::new(cfg.max_held_bytes)),
        timers: Timers::default(),
        epoll: driver == "epoll",
        shared,
        orphan_drains: Cell::new(0),
        next_session: Cell::new(0),
        active: Cell::new(0),
        shutdown_waker: RefCell::new(None),
        sessions: RefCell::new(HashMap::new()),
    });
    let _ = tx.send(Ok(driver));
    drop(tx);
    tracing::debug!(worker = id, driver, "worker started");

    let timers = {
        let ctx = ctx.clone();
        monoio::spawn(async move { ctx.timers.run().await })
    };
    if let Some(dp) = ctx.dataplane.clone() {
        monoio::spawn(dp.run(ctx.clone()));
    }
    // Publish counters and watch for shutdown on a timer (never per frame).
    let ticker = {
        let ctx = ctx.clone();
        monoio::spawn(async move {
            loop {
                monoio::time::sleep(Duration::from_millis(200)).await;
                ctx.metrics.publish(ctx.id);
                if ctx.shutting_down() {
                    if let Some(w) = ctx.shutdown_waker.borrow_mut().take() {
                        w.wake();
                    }
                    for s in ctx.sessions.borrow().values() {
                        s.poke();
                    }
                    if let Some(dp) = &ctx.dataplane {
                        dp.poke_all();
                    }
                    return;
                }
            }
        })
    };
    let shutdown = poll_fn(|cx| {
        if ctx.shutting_down() {
            return Poll::Ready(());
        }
        *ctx.shutdown_waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    });
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => r,
            _ = shutdown.as_mut() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let ctx = ctx.clone();
                monoio::spawn(async move {
                    ctx.conn_started();
                    let served = crate::relay::session::catch_unwind(crate::server::accept::serve(
                        &ctx, stream, peer,
                    ))
                    .await;
                    if served.is_err() {
                        ctx.metrics.panicked();
                        tracing::error!(%peer, "connection handler panicked; connection dropped");
                    }
                    ctx.conn_ended();
                });
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(worker = id, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    drop(listener);
    ticker.await;
    // Sessions close themselves at the drain deadline (their control loops were poked); a
    // stuck write is cut then, so they end within a second of it.
    let deadline = ctx.drain_deadline().unwrap_or_else(Instant::now);
    let hard_stop = deadline + Duration::from_secs(1);
    while ctx.active.get() > 0 && Instant::now() < hard_stop {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    // Whatever did not finish in time still gets its records.
    let now = Instant::now();
    for s in ctx.sessions.borrow().values() {
        s.finish_records(now);
    }
    if let Some(dp) = &ctx.dataplane {
        dp.finish_all(now);
        // The handler holds the data plane; the worker is done with both.
        monoio::ext::set_handler(None);
    }
    ctx.timers.stop();
    timers.await;
    ctx.metrics.publish(ctx.id);
    tracing::debug!(worker = id, "worker stopped");
}
