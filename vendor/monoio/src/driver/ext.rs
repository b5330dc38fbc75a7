//! Raw access to the current thread's driver for a caller-owned data plane.
//!
//! This module is the one addition tollgate makes to monoio 0.2.4 (see
//! `vendor/monoio/TOLLGATE-PATCH.md`): monoio's own operations are futures that each own
//! one SQE and one CQE, which cannot express a multishot receive (one SQE, many CQEs) or a
//! provided-buffer ring. With this module a caller drives such operations itself, on the
//! same ring (or epoll instance) and the same thread as monoio's:
//!
//! - **io_uring**: push SQEs whose `user_data` has [`EXT_BIT`] set with [`uring_push`];
//!   their completions are not matched to monoio operations but queued here and taken with
//!   [`poll_events`]. [`with_uring`] reaches the ring for registrations (e.g.
//!   `register_buf_ring`).
//! - **legacy (epoll)**: register raw descriptors for edge-triggered readiness under a
//!   token with [`EXT_BIT`] set ([`legacy_register`]); readiness events are queued here and
//!   taken with [`poll_events`].
//!
//! Events are queued while the driver parks; [`poll_events`] wakes the one task that asked
//! for them, so a whole batch of completions costs one task poll. Or, with a handler set
//! ([`set_handler`]), the runtime calls the handler with each batch right after the park
//! that reaped it, as a bare `io_uring` loop would: no task is woken, scheduled or polled.

use std::{
    io,
    os::fd::RawFd,
    rc::Rc,
    task::{Context, Poll, Waker},
};

use super::{Inner, CURRENT};

/// Set in the `user_data` (io_uring) or token (epoll) of every caller-owned operation.
pub const EXT_BIT: u64 = 1 << 63;

/// Readiness bits of a legacy (epoll) event, in [`ExtEvent::result`].
pub mod ready {
    /// Readable.
    pub const READABLE: i32 = 1;
    /// Writable.
    pub const WRITABLE: i32 = 2;
    /// Peer closed its write side, or an error / hang-up.
    pub const CLOSED: i32 = 4;
}

/// One completion (io_uring) or readiness event (epoll) of a caller-owned operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtEvent {
    /// The operation's `user_data` (io_uring) or the descriptor's token (epoll).
    pub user_data: u64,
    /// io_uring: the CQE result (bytes, or `-errno`). epoll: [`ready`] bits.
    pub result: i32,
    /// io_uring: the CQE flags (`IORING_CQE_F_MORE`, buffer id…). epoll: 0.
    pub flags: u32,
}

/// Which driver the current thread runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// io_uring.
    Uring,
    /// epoll (monoio's legacy driver).
    Legacy,
}

/// Called by the runtime with each batch of events (see [`set_handler`]). It may push
/// SQEs, wake tasks and set or clear the handler; the batch is cleared after it returns.
pub type Handler = Rc<dyn Fn(&mut Vec<ExtEvent>)>;

/// Events queued for the caller, and the task waiting for them (or the handler).
#[derive(Default)]
pub(crate) struct ExtQueue {
    pub(crate) events: Vec<ExtEvent>,
    pub(crate) waker: Option<Waker>,
    handler: Option<Handler>,
    /// The last batch's vector, kept for the next one (no allocation per batch).
    spare: Vec<ExtEvent>,
}

impl ExtQueue {
    pub(crate) fn push(&mut self, ev: ExtEvent) {
        self.events.push(ev);
    }

    /// Wake the waiting task if events arrived (called once per driver tick). With a
    /// handler set nothing is woken: the runtime hands the batch over after its park.
    pub(crate) fn notify(&mut self) {
        if self.handler.is_none() && !self.events.is_empty() {
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>, out: &mut Vec<ExtEvent>) -> Poll<()> {
        if self.events.is_empty() {
            match &self.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => self.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        out.append(&mut self.events);
        Poll::Ready(())
    }
}

fn with_queue<R>(f: impl FnOnce(&mut ExtQueue) -> R) -> Option<R> {
    if !CURRENT.is_set() {
        return None;
    }
    Some(CURRENT.with(|inner| match inner {
        #[cfg(all(target_os = "linux", feature = "iouring"))]
        // SAFETY: the driver's state is only touched from this thread, and `f` cannot
        // re-enter the driver (it gets the queue, not the runtime).
        Inner::Uring(this) => f(unsafe { &mut (*this.get()).ext }),
        #[cfg(feature = "legacy")]
        // SAFETY: as above.
        Inner::Legacy(this) => f(unsafe { &mut (*this.get()).ext }),
    }))
}

/// Hand every batch of events to `handler` instead of a task waiting in [`poll_events`]:
/// the runtime calls it right after the park (or submit) that reaped the batch, before it
/// runs any task, and again while events are queued — it never parks with events waiting.
/// `None` goes back to [`poll_events`] (events already queued wait for it). Returns `false`
/// outside a runtime.
///
/// The handler runs outside any task: it must not block, and what it needs a task for it
/// wakes one for. Dropping the runtime drops the handler.
pub fn set_handler(handler: Option<Handler>) -> bool {
    with_queue(|q| {
        q.handler = handler;
        // Events queued before: the handler takes them at the runtime's next turn; a task
        // waiting in `poll_events` (handler removed) is woken for them now.
        q.notify();
    })
    .is_some()
}

/// Run the handler over the queued events, batch after batch until none is left; `true`
/// if it ran. Called by the runtime after each park and submit, and before it parks.
pub(crate) fn run_handler() -> bool {
    let mut ran = false;
    loop {
        let taken = with_queue(|q| {
            if q.events.is_empty() {
                return None;
            }
            let handler = q.handler.clone()?;
            let mut batch = std::mem::take(&mut q.spare);
            std::mem::swap(&mut batch, &mut q.events);
            Some((handler, batch))
        })
        .flatten();
        let Some((handler, mut batch)) = taken else {
            return ran;
        };
        ran = true;
        // No borrow of the driver is live here: the handler pushes SQEs through the same
        // queue and ring.
        handler(&mut batch);
        batch.clear();
        with_queue(|q| {
            if q.spare.capacity() < batch.capacity() {
                q.spare = batch;
            }
        });
    }
}

/// The driver of the current thread, or `None` outside a runtime.
pub fn kind() -> Option<Kind> {
    if !CURRENT.is_set() {
        return None;
    }
    CURRENT.with(|inner| match inner {
        #[cfg(all(target_os = "linux", feature = "iouring"))]
        Inner::Uring(_) => Some(Kind::Uring),
        #[cfg(feature = "legacy")]
        Inner::Legacy(_) => Some(Kind::Legacy),
    })
}

/// Take the queued events (appending them to `out`), or register the task to be woken
/// when some arrive.
pub fn poll_events(cx: &mut Context<'_>, out: &mut Vec<ExtEvent>) -> Poll<()> {
    CURRENT.with(|inner| match inner {
        #[cfg(all(target_os = "linux", feature = "iouring"))]
        // SAFETY: the driver's state is only touched from this thread, never across this call.
        Inner::Uring(this) => unsafe { (*this.get()).ext.poll(cx, out) },
        #[cfg(feature = "legacy")]
        // SAFETY: as above.
        Inner::Legacy(this) => unsafe { (*this.get()).ext.poll(cx, out) },
    })
}

/// Run `f` with the current thread's io_uring (`None` on epoll or outside a runtime).
#[cfg(all(target_os = "linux", feature = "iouring"))]
pub fn with_uring<R>(f: impl FnOnce(&mut io_uring::IoUring) -> R) -> Option<R> {
    if !CURRENT.is_set() {
        return None;
    }
    CURRENT.with(|inner| match inner {
        // SAFETY: the ring is only touched from this thread, and `f` cannot re-enter the
        // driver (it gets the ring, not the runtime).
        Inner::Uring(this) => Some(f(unsafe { &mut (*this.get()).uring })),
        #[cfg(feature = "legacy")]
        Inner::Legacy(_) => None,
    })
}

/// Queue an SQE on the current thread's ring (submitted with the driver's next submit or
/// park); flushes the submission queue to the kernel first when it is full. The SQE's
/// `user_data` must have [`EXT_BIT`] set.
///
/// # Safety
///
/// The SQE's buffers and descriptors must stay valid until its completion (for a multishot
/// operation, its last completion) has been returned by [`poll_events`].
#[cfg(all(target_os = "linux", feature = "iouring"))]
pub unsafe fn uring_push(sqe: &io_uring::squeue::Entry) -> io::Result<()> {
    debug_assert!(sqe.get_user_data() & EXT_BIT != 0);
    CURRENT.with(|inner| match inner {
        Inner::Uring(this) => {
            let inner = &mut *this.get();
            if inner.uring.submission().is_full() {
                inner.submit()?;
            }
            inner
                .uring
                .submission()
                .push(sqe)
                .map_err(|_| io::Error::other("io_uring submission queue full"))
        }
        #[cfg(feature = "legacy")]
        Inner::Legacy(_) => Err(io::Error::other("not an io_uring runtime")),
    })
}

/// Register `fd` with the current thread's epoll for edge-triggered read and write
/// readiness under `token` (which must have [`EXT_BIT`] set).
#[cfg(feature = "legacy")]
pub fn legacy_register(fd: RawFd, token: u64) -> io::Result<()> {
    debug_assert!(token & EXT_BIT != 0);
    with_legacy(|inner| {
        inner.poll.registry().register(
            &mut mio::unix::SourceFd(&fd),
            mio::Token(token as usize),
            mio::Interest::READABLE | mio::Interest::WRITABLE,
        )
    })
}

/// Register `fd` again under `token`: epoll re-checks its readiness and raises a new
/// event if it is ready now (for a reader that stopped before draining the socket, whose
/// edge will not come again).
#[cfg(feature = "legacy")]
pub fn legacy_reregister(fd: RawFd, token: u64) -> io::Result<()> {
    debug_assert!(token & EXT_BIT != 0);
    with_legacy(|inner| {
        inner.poll.registry().reregister(
            &mut mio::unix::SourceFd(&fd),
            mio::Token(token as usize),
            mio::Interest::READABLE | mio::Interest::WRITABLE,
        )
    })
}

/// Remove `fd` from the current thread's epoll.
#[cfg(feature = "legacy")]
pub fn legacy_deregister(fd: RawFd) -> io::Result<()> {
    with_legacy(|inner| {
        inner
            .poll
            .registry()
            .deregister(&mut mio::unix::SourceFd(&fd))
    })
}

#[cfg(feature = "legacy")]
fn with_legacy(f: impl FnOnce(&mut super::LegacyInner) -> io::Result<()>) -> io::Result<()> {
    if !CURRENT.is_set() {
        return Err(io::Error::other("outside a monoio runtime"));
    }
    CURRENT.with(|inner| match inner {
        // SAFETY: the driver's state is only touched from this thread.
        Inner::Legacy(this) => f(unsafe { &mut *this.get() }),
        #[cfg(all(target_os = "linux", feature = "iouring"))]
        Inner::Uring(_) => Err(io::Error::other("not an epoll runtime")),
    })
}
