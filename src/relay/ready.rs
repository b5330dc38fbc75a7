//! Waiting for data without lending a buffer.
//!
//! A read with a rent-style API (`read(buf)`) owns its buffer until data arrives; an idle
//! session would hold one read buffer per direction for as long as it is idle. The async
//! adapter instead waits for *readiness* first ([`ReadReady::ready`]) and allocates the
//! buffer only when there is something to read. A busy stream is ready at once, so it keeps
//! its buffer and pays nothing extra; only a stream that would block gives it back.
//!
//! - Plain TCP: `TcpStream::readable(true)` (io_uring `PollAdd`; under epoll the
//!   runtime's cached readiness, with no syscall). monoio 0.2.4 left that cache "readable"
//!   after a read that drained the socket, until a later read failed with `EAGAIN`; the
//!   vendored monoio clears it on a short stream read (`vendor/monoio/TOLLGATE-PATCH.md`),
//!   so an idle stream parks at once. (Before that patch this checked the cache with a
//!   `poll(0)` per read: epoll paced 4.1 syscalls per frame.) After a read that filled its
//!   buffer exactly the cache still says "readable": the next read is tried and, on
//!   `EAGAIN`, waits holding its buffer — the one case an idle stream keeps one. Sessions
//!   normally run on the data plane (`crate::dataplane`), which has no per-session read
//!   buffer at all; this covers `--no-ring`.
//! - TLS: [`crate::tls::TlsStream::fill`] — the record bytes go into rustls from the
//!   worker's scratch buffer, and the stream is ready once rustls holds plaintext.

use std::future::{poll_fn, Future};
use std::io;
use std::ops::{Deref, DerefMut};
use std::pin::pin;
use std::task::Poll;

use monoio::io::OwnedReadHalf;
use monoio::net::TcpStream;
use rustls::ConnectionCommon;

use crate::tls::TlsStream;

/// A read half that can wait until a read would not block, holding no buffer meanwhile.
pub trait ReadReady {
    /// Resolves once a read finds data, the end of the stream or an error (a spurious
    /// wake-up is allowed: the read that follows then simply waits).
    fn ready(&mut self) -> impl Future<Output = io::Result<()>>;
}

impl ReadReady for TcpStream {
    async fn ready(&mut self) -> io::Result<()> {
        self.readable(true).await
    }
}

impl<C, SD> ReadReady for TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: rustls::SideData,
{
    async fn ready(&mut self) -> io::Result<()> {
        self.fill().await
    }
}

impl<T: ReadReady> ReadReady for OwnedReadHalf<T> {
    async fn ready(&mut self) -> io::Result<()> {
        // SAFETY: the halves of a split stream live on one thread; `ready` touches only
        // the read side of `T` (see `crate::tls` for the TLS stream's split rule).
        let inner = unsafe { &mut *self.0.get() };
        inner.ready().await
    }
}

/// What [`park`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parked {
    /// Read now.
    Ready,
    /// The stop future resolved first: do not read.
    Stopped,
    /// The stream failed while waiting (e.g. a TLS protocol error): treat as a read error.
    Failed,
}

/// Before a read into `buf` (empty): if `src` has nothing to read now, free `buf`'s
/// memory while waiting and allocate it again (same capacity) once there is data.
pub async fn park<R: ReadReady, S: Future<Output = ()>>(
    src: &mut R,
    buf: &mut Vec<u8>,
    stop: S,
) -> Parked {
    let mut ready = pin!(src.ready());
    let mut stop = pin!(stop);
    let first = poll_fn(|cx| Poll::Ready(ready.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(Ok(())) => return Parked::Ready,
        Poll::Ready(Err(_)) => return Parked::Failed,
        Poll::Pending => {}
    }
    let cap = buf.capacity();
    *buf = Vec::new();
    let woke = poll_fn(|cx| {
        if stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Parked::Stopped);
        }
        ready.as_mut().poll(cx).map(|r| match r {
            Ok(()) => Parked::Ready,
            Err(_) => Parked::Failed,
        })
    })
    .await;
    if woke == Parked::Ready {
        *buf = Vec::with_capacity(cap);
    }
    woke
}

#[cfg(test)]
#[path = "ready_tests.rs"]
mod tests;
