//! One leg's write half, shared by the two pumps of a session.
//!
//! The pump that forwards into a leg owns the writes; the other pump may need to *inject*
//! a relay-originated frame (an `error` event) into the same leg. Both run in one task on
//! one worker thread, so the writer sits in a `RefCell<Option<W>>` that a writer takes out
//! for the duration of one write and puts back (no lock, no atomics). Injected frames wait
//! in an outbox until the leg is at a frame boundary, so they never split a forwarded frame.
//!
//! Every write can be interrupted: [`Leg::kill`] (a stalled peer, a deadline, shutdown)
//! shuts the socket down, and a write in progress returns at once. The leg remembers since
//! when a write is in flight, which is how the session finds a peer that stopped reading
//! (`--slow-consumer-timeout`).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::os::fd::RawFd;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use monoio::buf::IoBuf;
use monoio::io::AsyncWriteRent;

use crate::runtime::parts::WakerSet;

/// Longest the relay waits to write its last frames (a close) to a leg at session end.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(1);

/// The same while the relay is stopping (the drain deadline already passed).
pub const FINISH_TIMEOUT_STOPPING: Duration = Duration::from_millis(200);

/// Most bytes of relay-originated frames an outbox holds before [`Leg::inject`] waits for
/// it to drain (also the data plane's high-water mark, which is defined as this): the
/// client pump, which injects refused creates' `error` events, then stops reading a client
/// that sends and never reads, and that client's socket, not the relay's memory, holds
/// what it sends next.
pub const OUTBOX_HIGH_WATER: usize = 256 * 1024;

/// A leg's write half plus the state needed to share and interrupt it.
pub struct Leg<W> {
    writer: RefCell<Option<W>>,
    /// Parts waiting for the writer while another part holds it (woken on put and kill).
    waiters: WakerSet,
    fd: RawFd,
    boundary: Cell<bool>,
    outbox: RefCell<Vec<u8>>,
    dead: Cell<bool>,
    failed: Cell<bool>,
    killed: Cell<bool>,
    /// The part holding the writer, in a write: woken on kill. One slot: only the holder
    /// waits here, and a new holder replaces the last.
    kill_waker: Cell<Option<Waker>>,
    /// A close frame went into this leg (forwarded or the relay's own): no other is sent.
    close_sent: Cell<bool>,
    /// `finish` ran.
    finished: Cell<bool>,
    in_flight_since: Cell<Option<Instant>>,
    bytes: Cell<u64>,
}

impl<W: AsyncWriteRent> Leg<W> {
    /// Wrap a write half of the socket `fd`.
    pub fn new(w: W, fd: RawFd) -> Leg<W> {
        Leg {
            writer: RefCell::new(Some(w)),
            waiters: WakerSet::default(),
            fd,
            boundary: Cell::new(true),
            outbox: RefCell::new(Vec::new()),
            dead: Cell::new(false),
            failed: Cell::new(false),
            killed: Cell::new(false),
            kill_waker: Cell::new(None),
            close_sent: Cell::new(false),
            finished: Cell::new(false),
            in_flight_since: Cell::new(None),
            bytes: Cell::new(0),
        }
    }

    /// Writes are discarded from now on (the peer is gone, the leg was finished or killed).
    pub fn is_dead(&self) -> bool {
        self.dead.get()
    }

    /// A write failed (the peer is gone); cleared by reading it.
    pub fn take_failed(&self) -> bool {
        self.failed.replace(false)
    }

    /// Since when the current write has made no progress (`None`: no write in flight).
    pub fn in_flight_since(&self) -> Option<Instant> {
        self.in_flight_since.get()
    }

    /// Whether everything written so far ends on a frame boundary.
    pub fn at_boundary(&self) -> bool {
        self.boundary.get()
    }

    /// Whether a close frame went into this leg.
    pub fn close_sent(&self) -> bool {
        self.close_sent.get()
    }

    /// Bytes written to this leg.
    pub fn bytes_written(&self) -> u64 {
        self.bytes.get()
    }

    /// Stop writing at once: discard later writes, interrupt a write in progress, and shut
    /// the socket down (both directions), so the peer and any pending read see the end.
    pub fn kill(&self) {
        self.dead.set(true);
        if !self.killed.replace(true) {
            // SAFETY: shutdown(2) on a descriptor this session owns; it only changes the
            // socket's state (a stale or closed fd yields an error, which is ignored).
            unsafe {
                libc::shutdown(self.fd, libc::SHUT_RDWR);
            }
            self.waiters.take_all();
            if let Some(w) = self.kill_waker.take() {
                w.wake();
            }
        }
    }

    async fn take(&self) -> Option<W> {
        poll_fn(|cx| {
            if self.killed.get() {
                return Poll::Ready(None);
            }
            match self.writer.borrow_mut().take() {
                Some(w) => Poll::Ready(Some(w)),
                None => {
                    self.waiters.register(cx.waker());
                    Poll::Pending
                }
            }
        })
        .await
    }

    fn put(&self, w: W) {
        *self.writer.borrow_mut() = Some(w);
        self.waiters.take_all();
    }

    fn arm_kill(&self, waker: &Waker) {
        let slot = self.kill_waker.take();
        self.kill_waker.set(match slot {
            Some(w) if w.data() == waker.data() => Some(w),
            _ => Some(waker.clone()),
        });
    }

    /// Write all of `data` unless the leg is killed first; a failed write marks the leg
    /// dead and failed. `None`: killed mid-write — the write was cancelled and the buffer
    /// went with it (the driver keeps it until the cancellation completes).
    async fn write_raw<T: IoBuf + 'static>(&self, w: &mut W, data: T, now: Instant) -> Option<T> {
        let len = data.bytes_init();
        let mut pos = 0;
        let mut slice = data.slice(0..len);
        self.in_flight_since.set(Some(now));
        while pos < len {
            let killed = poll_fn(|cx| {
                if self.killed.get() {
                    Poll::Ready(())
                } else {
                    self.arm_kill(cx.waker());
                    Poll::Pending
                }
            });
            let r = monoio::select! {
                r = w.write(slice) => Some(r),
                _ = killed => None,
            };
            let Some((res, s)) = r else {
                self.in_flight_since.set(None);
                return None;
            };
            match res {
                Ok(n) if n > 0 => {
                    pos += n;
                    self.bytes.set(self.bytes.get() + n as u64);
                    self.in_flight_since.set(Some(Instant::now()));
                    slice = s.into_inner().slice(pos..len);
                }
                _ => {
                    self.dead.set(true);
                    self.failed.set(true);
                    slice = s;
                    break;
                }
            }
        }
        self.in_flight_since.set(None);
        Some(slice.into_inner())
    }

    /// Forward `data` (bytes from a pump's buffer); `boundary_after` says whether it ends on
    /// a frame boundary. Returns the buffer (`None` if the leg was killed mid-write and the
    /// buffer went with the cancelled write); check [`Leg::is_dead`] for failure.
    pub async fn forward<T: IoBuf + 'static>(
        &self,
        data: T,
        boundary_after: bool,
        now: Instant,
    ) -> Option<T> {
        if self.dead.get() {
            return Some(data);
        }
        let Some(mut w) = self.take().await else {
            return Some(data);
        };
        let data = self.write_raw(&mut w, data, now).await;
        if data.is_some() {
            self.boundary.set(boundary_after);
            if boundary_after && !self.outbox.borrow().is_empty() && !self.dead.get() {
                let pending = std::mem::take(&mut *self.outbox.borrow_mut());
                self.write_raw(&mut w, pending, Instant::now()).await;
            }
        }
        self.put(w);
        data
    }

    /// Inject a complete relay-originated frame: written now when the leg is idle at a
    /// boundary, otherwise by the forwarding pump at its next boundary. With more than
    /// [`OUTBOX_HIGH_WATER`] waiting that way, this waits until the outbox is written (or
    /// the leg is dead): the caller reads no more meanwhile.
    pub async fn inject(&self, frame: Vec<u8>) {
        if self.dead.get() {
            return;
        }
        self.outbox.borrow_mut().extend_from_slice(&frame);
        let idle = self.writer.borrow().is_some();
        if idle && self.boundary.get() {
            let Some(mut w) = self.take().await else {
                return;
            };
            let pending = std::mem::take(&mut *self.outbox.borrow_mut());
            if !pending.is_empty() && !self.dead.get() {
                self.write_raw(&mut w, pending, Instant::now()).await;
            }
            self.put(w);
        } else if self.outbox.borrow().len() > OUTBOX_HIGH_WATER {
            // Woken by `put` (the holder's write ended; at a boundary the outbox went with
            // it) and by `kill`.
            poll_fn(|cx| {
                if self.dead.get() || self.outbox.borrow().len() <= OUTBOX_HIGH_WATER {
                    Poll::Ready(())
                } else {
                    self.waiters.register(cx.waker());
                    Poll::Pending
                }
            })
            .await;
        }
    }

    /// The relay is done with this leg: write what waits in the outbox plus `last` (a close
    /// frame, unless one already went) when the leg is at a frame boundary, then shut the
    /// write side down. Bounded by `limit` ([`FINISH_TIMEOUT`], shorter when stopping); a
    /// leg that cannot take its last frames in time is killed. A leg left mid-frame gets no
    /// close (only a shutdown).
    pub async fn finish(&self, last: Option<&[u8]>, limit: Duration) {
        if self.finished.replace(true) {
            return;
        }
        let work = async {
            let Some(mut w) = self.take().await else {
                return;
            };
            if !self.dead.get() && self.boundary.get() {
                let mut pending = std::mem::take(&mut *self.outbox.borrow_mut());
                if let Some(l) = last.filter(|_| !self.close_sent.replace(true)) {
                    pending.extend_from_slice(l);
                }
                if !pending.is_empty() {
                    self.write_raw(&mut w, pending, Instant::now()).await;
                }
            }
            if !self.dead.get() {
                let _ = w.shutdown().await;
            }
            self.put(w);
        };
        if monoio::time::timeout(limit, work).await.is_err() {
            self.kill();
        }
        self.dead.set(true);
    }

    /// A close frame was forwarded into this leg (the relay sends no other).
    pub fn mark_close_sent(&self) {
        self.close_sent.set(true);
    }

    /// After a contained panic the writer may have been lost inside the dropped future:
    /// treat the leg as killed then, so nothing waits for it.
    pub fn abandon_if_lost(&self) {
        if self.writer.borrow().is_none() {
            self.kill();
        }
    }
}
