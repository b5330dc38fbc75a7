//! One leg's write half, shared by the two pumps of a session.
//!
//! The pump that forwards into a leg owns the writes; the other pump may need to *inject*
//! a relay-originated frame (an `error` event) into the same leg. Both run on one worker
//! thread, so the writer sits in a `RefCell<Option<W>>` that a writer takes out for the
//! duration of one write and puts back (no lock, no atomics). Injected frames wait in an
//! outbox until the leg is at a frame boundary, so they never split a forwarded frame.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

use monoio::buf::IoBuf;
use monoio::io::AsyncWriteRentExt;

/// A leg's write half plus the state needed to share it.
pub struct Leg<W> {
    writer: RefCell<Option<W>>,
    waiter: Cell<Option<Waker>>,
    boundary: Cell<bool>,
    outbox: RefCell<Vec<u8>>,
    dead: Cell<bool>,
    close_sent: Cell<bool>,
    bytes: Cell<u64>,
}

impl<W: monoio::io::AsyncWriteRent> Leg<W> {
    /// Wrap a write half.
    pub fn new(w: W) -> Leg<W> {
        Leg {
            writer: RefCell::new(Some(w)),
            waiter: Cell::new(None),
            boundary: Cell::new(true),
            outbox: RefCell::new(Vec::new()),
            dead: Cell::new(false),
            close_sent: Cell::new(false),
            bytes: Cell::new(0),
        }
    }

    /// A write failed or the leg was closed: writes are discarded from now on.
    pub fn is_dead(&self) -> bool {
        self.dead.get()
    }

    /// Mark the leg dead (peer gone); later writes are discarded.
    pub fn kill(&self) {
        self.dead.set(true);
    }

    /// A close frame has been forwarded into this leg: the relay sends no other.
    pub fn mark_close_sent(&self) {
        self.close_sent.set(true);
    }

    /// Whether a close frame went into this leg.
    pub fn close_sent(&self) -> bool {
        self.close_sent.get()
    }

    /// Whether everything written so far ends on a frame boundary.
    pub fn at_boundary(&self) -> bool {
        self.boundary.get()
    }

    /// Bytes written to this leg.
    pub fn bytes_written(&self) -> u64 {
        self.bytes.get()
    }

    async fn take(&self) -> W {
        poll_fn(|cx| match self.writer.borrow_mut().take() {
            Some(w) => Poll::Ready(w),
            None => {
                self.waiter.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    fn put(&self, w: W) {
        *self.writer.borrow_mut() = Some(w);
        if let Some(waker) = self.waiter.take() {
            waker.wake();
        }
    }

    async fn write_raw<T: IoBuf + 'static>(&self, w: &mut W, data: T) -> T {
        let len = data.bytes_init() as u64;
        let (res, data) = w.write_all(data).await;
        match res {
            Ok(_) => self.bytes.set(self.bytes.get() + len),
            Err(_) => self.dead.set(true),
        }
        data
    }

    /// Forward `data` (forwarded bytes from a pump's buffer); `boundary_after` says whether it
    /// ends on a frame boundary. Returns the buffer; check [`Leg::is_dead`] for failure.
    pub async fn forward<T: IoBuf + 'static>(&self, data: T, boundary_after: bool) -> T {
        if self.dead.get() {
            return data;
        }
        let mut w = self.take().await;
        let data = self.write_raw(&mut w, data).await;
        self.boundary.set(boundary_after);
        if boundary_after && !self.outbox.borrow().is_empty() && !self.dead.get() {
            let pending = std::mem::take(&mut *self.outbox.borrow_mut());
            self.write_raw(&mut w, pending).await;
        }
        self.put(w);
        data
    }

    /// Inject a complete relay-originated frame: written now when the leg is idle at a
    /// boundary, otherwise by the forwarding pump at its next boundary.
    pub async fn inject(&self, frame: &[u8]) {
        if self.dead.get() {
            return;
        }
        self.outbox.borrow_mut().extend_from_slice(frame);
        let idle = self.writer.borrow().is_some();
        if idle && self.boundary.get() {
            let mut w = self.take().await;
            let pending = std::mem::take(&mut *self.outbox.borrow_mut());
            if !pending.is_empty() && !self.dead.get() {
                self.write_raw(&mut w, pending).await;
            }
            self.put(w);
        }
    }

    /// Session end: write anything still in the outbox plus `last` (a close frame) when the
    /// leg is at a boundary, then shut the write side down. Returns whether `last` was sent.
    pub async fn finish(&self, last: Option<&[u8]>) -> bool {
        let mut w = self.take().await;
        let mut sent = false;
        if !self.dead.get() && self.boundary.get() {
            let mut pending = std::mem::take(&mut *self.outbox.borrow_mut());
            if let Some(l) = last.filter(|_| !self.close_sent.get()) {
                pending.extend_from_slice(l);
                self.close_sent.set(true);
            }
            if !pending.is_empty() {
                self.write_raw(&mut w, pending).await;
                sent = last.is_some() && !self.dead.get();
            }
        }
        if !self.dead.get() {
            let _ = w.shutdown().await;
        }
        self.dead.set(true);
        self.put(w);
        sent
    }
}
