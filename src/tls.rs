//! TLS streams (client side to `wss://` upstreams, server side for `--tls-cert`) on rustls,
//! holding no I/O buffer while a session is idle.
//!
//! # Why not monoio-rustls
//!
//! monoio-rustls 0.4 wraps every stream in two 16 KiB buffers (monoio-io-wrapper's
//! `ReadBuffer`/`WriteBuffer`) that live as long as the stream; an idle session with TLS on
//! both legs held four of them. Measured with `loadtest bench --tls both --only idle`:
//! 113 KiB per idle session (nginx 70, HAProxy 39). Its `unsafe_io` mode lends rustls's
//! own buffer to the io_uring read instead, which is unsound here: the session drops read
//! futures in `select!`s, and the kernel may still write into the buffer after the drop.
//! rustls's unbuffered API (`UnbufferedConnection`) would need the same record buffers,
//! just owned by us, plus a hand-written state machine.
//!
//! # What this does instead
//!
//! Reads wait for *readiness* (`TcpStream::readable`: an io_uring `PollAdd`, or the epoll
//! registration) and then `recv(MSG_DONTWAIT)` into one scratch buffer per worker thread,
//! which is fed to rustls synchronously, before any other task can run — so one buffer
//! serves every session of the worker. A read first tries the `recv` optimistically
//! (a busy stream costs one syscall per read, like an epoll server); only `EAGAIN` parks it
//! on readiness. The bytes rustls cannot take yet (its plaintext buffer is full) are kept
//! in a per-stream `Vec` that is freed as soon as it is drained. Writes encrypt into a
//! `Vec` sized to the record and hand it to the runtime (`write_all`), which owns it only
//! while the send is in flight. What an idle stream keeps is rustls's own state: the
//! connection, its keys and a 4 KiB deframer buffer.
//!
//! Post-handshake, the read half never writes (TLS 1.3 key updates and tickets queue in
//! rustls and leave with the next write), so the two halves of a split stream never both
//! send — the same rule monoio-rustls follows.

use std::io::{self, Read};
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Split};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ConnectionCommon, ServerConfig, ServerConnection};

/// Bytes read from a socket per `recv`: one TLS record at most (16 KiB + header + tag).
const SCRATCH: usize = 16 * 1024 + 512;

thread_local! {
    /// The worker's receive scratch buffer (see the module docs).
    static SCRATCH_BUF: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; SCRATCH].into_boxed_slice());
}

/// The client side of a TLS stream.
pub type ClientTlsStream = TlsStream<ClientConnection>;
/// The server side of a TLS stream.
pub type ServerTlsStream = TlsStream<ServerConnection>;

/// Accepts TLS clients with one server configuration.
#[derive(Clone)]
pub struct TlsAcceptor(Arc<ServerConfig>);

impl From<Arc<ServerConfig>> for TlsAcceptor {
    fn from(c: Arc<ServerConfig>) -> Self {
        TlsAcceptor(c)
    }
}

impl TlsAcceptor {
    /// Run the server handshake on `tcp`.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<ServerTlsStream> {
        let conn = ServerConnection::new(self.0.clone()).map_err(io::Error::other)?;
        let mut s = TlsStream::new(tcp, conn);
        s.handshake().await?;
        Ok(s)
    }
}

/// Dials TLS servers with one client configuration.
#[derive(Clone)]
pub struct TlsConnector(Arc<ClientConfig>);

impl From<Arc<ClientConfig>> for TlsConnector {
    fn from(c: Arc<ClientConfig>) -> Self {
        TlsConnector(c)
    }
}

impl TlsConnector {
    /// Run the client handshake on `tcp` for `name` (SNI and certificate check).
    pub async fn connect(
        &self,
        name: ServerName<'static>,
        tcp: TcpStream,
    ) -> io::Result<ClientTlsStream> {
        let conn = ClientConnection::new(self.0.clone(), name).map_err(io::Error::other)?;
        let mut s = TlsStream::new(tcp, conn);
        s.handshake().await?;
        Ok(s)
    }
}

/// A rustls connection over a monoio TCP stream, without per-stream I/O buffers.
pub struct TlsStream<C> {
    io: TcpStream,
    session: C,
    /// Received TLS bytes rustls could not take yet (usually empty and unallocated).
    pending: Vec<u8>,
    /// The peer's TCP half is closed (recv returned 0) and rustls was told.
    eof: bool,
}

// SAFETY: the read half touches `io` only through `readable`/`recv` and the write half
// only through `write_all`/`shutdown`; both touch `session` only between awaits, on one
// thread, and post-handshake only the write half sends (module docs).
unsafe impl<C> Split for TlsStream<C> {}

impl<C> AsRawFd for TlsStream<C> {
    fn as_raw_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }
}

/// What one `recv` gave.
enum Recv {
    /// Bytes arrived and were fed to rustls (or parked in `pending`).
    Data,
    /// The peer closed its half.
    Eof,
    /// Nothing to read now.
    WouldBlock,
}

impl<C, SD> TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: rustls::SideData,
{
    fn new(io: TcpStream, session: C) -> Self {
        TlsStream {
            io,
            session,
            pending: Vec::new(),
            eof: false,
        }
    }

    /// Feed `bytes` to rustls, processing records as they complete; what it cannot take
    /// now is appended to `pending`. Errors are TLS protocol errors.
    fn feed(session: &mut C, mut bytes: &[u8], pending: &mut Vec<u8>) -> io::Result<()> {
        while !bytes.is_empty() {
            match session.read_tls(&mut bytes) {
                Ok(0) => break,
                Ok(_) => {}
                // rustls's plaintext buffer is full: the reader must drain it first.
                Err(e) if e.kind() == io::ErrorKind::Other => break,
                Err(e) => return Err(e),
            }
            process(session)?;
        }
        if !bytes.is_empty() {
            pending.extend_from_slice(bytes);
        }
        Ok(())
    }

    /// Hand `pending` to rustls; frees it once drained.
    fn feed_pending(&mut self) -> io::Result<()> {
        let p = std::mem::take(&mut self.pending);
        let mut rest = Vec::new();
        Self::feed(&mut self.session, &p, &mut rest)?;
        self.pending = rest;
        Ok(())
    }

    /// One non-blocking `recv` into the worker's scratch buffer, fed to rustls at once.
    fn try_recv(&mut self) -> io::Result<Recv> {
        let fd = self.io.as_raw_fd();
        let session = &mut self.session;
        let pending = &mut self.pending;
        SCRATCH_BUF.with(|cell| {
            let mut buf = cell.borrow_mut();
            // SAFETY: `buf` is a valid, writable buffer of `buf.len()` bytes.
            let n =
                unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(Recv::WouldBlock),
                    io::ErrorKind::Interrupted => Ok(Recv::WouldBlock),
                    _ => Err(e),
                };
            }
            if n == 0 {
                return Ok(Recv::Eof);
            }
            Self::feed(session, &buf[..n as usize], pending)?;
            Ok(Recv::Data)
        })
    }

    /// Get more TLS bytes into rustls: from `pending`, or the socket (waiting for
    /// readiness when it has none). `Ok(false)`: the peer closed its half.
    async fn read_io(&mut self) -> io::Result<bool> {
        if !self.pending.is_empty() {
            self.feed_pending()?;
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        loop {
            match self.try_recv()? {
                Recv::Data => return Ok(true),
                Recv::Eof => {
                    self.eof = true;
                    // Tell rustls: a close without close_notify reads as UnexpectedEof.
                    let _ = self.session.read_tls(&mut io::empty());
                    process(&mut self.session)?;
                    return Ok(false);
                }
                Recv::WouldBlock => self.io.readable(false).await?,
            }
        }
    }

    /// Send everything rustls has queued.
    async fn write_io(&mut self) -> io::Result<()> {
        while self.session.wants_write() {
            // Sized by rustls (one `write_vectored` of its queued records): one allocation.
            let mut out = Vec::new();
            self.session.write_tls(&mut out)?;
            if out.is_empty() {
                break;
            }
            let (r, _) = self.io.write_all(out).await;
            r?;
        }
        Ok(())
    }

    async fn handshake(&mut self) -> io::Result<()> {
        while self.session.is_handshaking() {
            if self.session.wants_write() {
                self.write_io().await?;
                continue;
            }
            if self.session.wants_read() {
                if !self.read_io().await? && self.session.is_handshaking() {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "tls handshake eof",
                    ));
                }
                continue;
            }
            break;
        }
        self.write_io().await
    }

    /// Hand the stream over to the data plane (`crate::dataplane::LegTls`): the socket, the
    /// rustls connection (with any plaintext it holds), and the ciphertext read past what
    /// rustls took. Only between whole operations: nothing of the stream is in flight.
    pub fn into_parts(self) -> (TcpStream, C, Vec<u8>) {
        (self.io, self.session, self.pending)
    }

    /// Wait until a read finds plaintext, the end of the stream or an error, feeding
    /// rustls from the worker's scratch buffer — the caller lends no buffer meanwhile
    /// (`relay::ready`).
    pub async fn fill(&mut self) -> io::Result<()> {
        loop {
            let state = self
                .session
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() || self.eof {
                return Ok(());
            }
            if !self.read_io().await? {
                return Ok(());
            }
        }
    }

    async fn read_inner<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // SAFETY: `buf` is valid for `bytes_total()` writable bytes.
        let slice = unsafe { std::slice::from_raw_parts_mut(buf.write_ptr(), buf.bytes_total()) };
        loop {
            match self.session.reader().read(slice) {
                Ok(n) => {
                    // SAFETY: rustls wrote `n` bytes into the buffer.
                    unsafe { buf.set_init(n) };
                    return (Ok(n), buf);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return (Err(e), buf),
            }
            if self.eof && self.pending.is_empty() {
                // rustls knows about the EOF; without a close_notify it is unexpected.
                return (Err(io::ErrorKind::UnexpectedEof.into()), buf);
            }
            if let Err(e) = self.read_io().await {
                return (Err(e), buf);
            }
        }
    }
}

/// Process newly received records; a TLS error becomes `InvalidData`.
fn process<C, SD>(session: &mut C) -> io::Result<()>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: rustls::SideData,
{
    session
        .process_new_packets()
        .map(|_| ())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

impl<C, SD> AsyncReadRent for TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: rustls::SideData + 'static,
{
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        self.read_inner(buf).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // SAFETY: the raw buffer points into `buf`, which outlives the read.
        let n = match unsafe { RawBuf::new_from_iovec_mut(&mut buf) } {
            Some(raw) => self.read(raw).await.0,
            None => Ok(0),
        };
        if let Ok(n) = n {
            // SAFETY: `n` bytes were written into the first iovec.
            unsafe { buf.set_init(n) };
        }
        (n, buf)
    }
}

impl<C, SD> AsyncWriteRent for TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: rustls::SideData + 'static,
{
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: `buf` is valid for `bytes_init()` readable bytes.
        let slice = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        if let Err(e) = self.write_io().await {
            return (Err(e), buf);
        }
        let n = match io::Write::write(&mut self.session.writer(), slice) {
            Ok(n) => n,
            Err(e) => return (Err(e), buf),
        };
        match self.write_io().await {
            Ok(()) => (Ok(n), buf),
            Err(e) => (Err(e), buf),
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: the raw buffer points into `buf`, which outlives the write.
        let n = match unsafe { RawBuf::new_from_iovec(&buf) } {
            Some(raw) => self.write(raw).await.0,
            None => Ok(0),
        };
        (n, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        io::Write::flush(&mut self.session.writer())?;
        self.write_io().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.session.send_close_notify();
        self.write_io().await?;
        self.io.shutdown().await
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
pub(crate) mod tests;
