//! One worker thread: a pinned monoio runtime (io_uring, or epoll as the fallback) with
//! its own SO_REUSEPORT listener, its sessions and its counters.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Shared, StartError};
use crate::config::Driver;
use crate::metrics::WorkerMetrics;
use crate::relay::signal::Signal;

/// One worker's context (lives on its thread).
pub struct WorkerCtx {
    /// Worker index.
    pub id: usize,
    /// Shared state.
    pub shared: Arc<Shared>,
    /// This worker's counters.
    pub metrics: Rc<WorkerMetrics>,
    orphan_drains: Cell<usize>,
    next_session: Cell<u64>,
    active: Cell<usize>,
    shutdown_signal: Signal,
    /// Each live session's watchdog wake-up, raised when shutdown begins.
    sessions: RefCell<HashMap<u64, Rc<Signal>>>,
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

    /// Whether the graceful-drain deadline has passed.
    pub fn drain_deadline_passed(&self, now: Instant) -> bool {
        self.shared.drain_deadline.get().is_some_and(|d| now >= *d)
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

    /// Register a session's watchdog wake-up (woken when shutdown begins) until the
    /// returned guard drops.
    pub fn register_session(&self, id: u64, wake: Rc<Signal>) -> SessionRegistration<'_> {
        self.sessions.borrow_mut().insert(id, wake);
        SessionRegistration { ctx: self, id }
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

pub(super) fn worker_thread(
    id: usize,
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    tx: std::sync::mpsc::Sender<Result<&'static str, StartError>>,
) {
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
        match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .with_entries(1024)
            .build()
        {
            Ok(mut rt) => {
                rt.block_on(worker_main(id, shared, listener, tx, "io_uring"));
                return;
            }
            Err(e) if want == Driver::Uring => {
                let _ = tx.send(Err(StartError::Worker {
                    worker: id,
                    why: format!("io_uring runtime: {e}"),
                }));
                return;
            }
            Err(e) => {
                tracing::warn!(worker = id, error = %e, "io_uring runtime failed; falling back to epoll")
            }
        }
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
    let ctx = Rc::new(WorkerCtx {
        id,
        metrics: Rc::new(WorkerMetrics::new(shared.registry.clone())),
        shared,
        orphan_drains: Cell::new(0),
        next_session: Cell::new(0),
        active: Cell::new(0),
        shutdown_signal: Signal::default(),
        sessions: RefCell::new(HashMap::new()),
    });
    let _ = tx.send(Ok(driver));
    drop(tx);
    tracing::debug!(worker = id, driver, "worker started");

    // Publish counters and watch for shutdown on a timer (never per frame).
    let ticker = {
        let ctx = ctx.clone();
        monoio::spawn(async move {
            loop {
                monoio::time::sleep(Duration::from_millis(200)).await;
                ctx.metrics.publish(ctx.id);
                if ctx.shutting_down() {
                    ctx.shutdown_signal.raise();
                    for wake in ctx.sessions.borrow().values() {
                        wake.raise();
                    }
                    return;
                }
            }
        })
    };

    loop {
        let accepted = monoio::select! {
            r = listener.accept() => r,
            _ = ctx.shutdown_signal.wait() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let ctx = ctx.clone();
                monoio::spawn(async move {
                    ctx.conn_started();
                    crate::server::accept::serve(&ctx, stream, peer).await;
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
    // Sessions close themselves at the drain deadline (their watchdogs see the flag).
    let hard_stop = Instant::now() + ctx.shared.config.drain_timeout + Duration::from_secs(10);
    while ctx.active.get() > 0 && Instant::now() < hard_stop {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    ctx.metrics.publish(ctx.id);
    tracing::debug!(worker = id, "worker stopped");
}
