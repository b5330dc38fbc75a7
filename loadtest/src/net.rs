//! Socket plumbing shared by the mock and the client: a plain-or-TLS stream that
//! can be told to reset (SO_LINGER 0) when dropped, and a batching frame writer
//! that encodes with fastwebsockets' `Frame` but owns the socket write half, so
//! tests can also emit deliberately invalid bytes.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use fastwebsockets::{Frame, OpCode, Payload};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// The transport under a connection.
#[derive(Debug)]
pub enum Conn {
    /// Plain TCP.
    Plain(TcpStream),
    /// Server side of TLS.
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Client side of TLS.
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A [`Conn`] plus a flag: when set, dropping the stream resets the TCP
/// connection (SO_LINGER 0 → RST) instead of closing it with a FIN.
#[derive(Debug)]
pub struct Stream {
    conn: Conn,
    rst_on_drop: Arc<AtomicBool>,
}

impl Stream {
    /// Wraps a transport; returns the stream and its reset-on-drop flag.
    pub fn new(conn: Conn) -> (Self, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        (
            Stream {
                conn,
                rst_on_drop: flag.clone(),
            },
            flag,
        )
    }

    fn tcp(&self) -> &TcpStream {
        match &self.conn {
            Conn::Plain(s) => s,
            Conn::ServerTls(s) => s.get_ref().0,
            Conn::ClientTls(s) => s.get_ref().0,
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.rst_on_drop.load(Ordering::Relaxed) {
            // Best effort: if this fails the peer sees a FIN instead of an RST.
            let _ = self.tcp().set_zero_linger();
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.get_mut().conn {
            Conn::Plain($s) => $e,
            Conn::ServerTls($s) => $e,
            Conn::ClientTls($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, b))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match &self.conn {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::ServerTls(s) => s.is_write_vectored(),
            Conn::ClientTls(s) => s.is_write_vectored(),
        }
    }
}

/// How to put one message on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Masking {
    /// No mask (correct for servers).
    None,
    /// A fresh random key per frame (correct for clients; a violation for servers).
    Random,
}

/// Encodes frames into a batch buffer and writes them with one `write_all`.
#[derive(Debug)]
pub struct FrameWriter<W> {
    w: W,
    batch: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Wraps a write half.
    pub fn new(w: W) -> Self {
        FrameWriter {
            w,
            batch: Vec::with_capacity(16 * 1024),
        }
    }

    /// Bytes queued but not yet written.
    pub fn pending(&self) -> usize {
        self.batch.len()
    }

    /// Queues one frame.
    pub fn push_frame(&mut self, fin: bool, opcode: OpCode, masking: Masking, payload: Vec<u8>) {
        let mut f = Frame::new(fin, opcode, None, Payload::Owned(payload));
        if masking == Masking::Random {
            f.mask();
        }
        let mut head = [0u8; 16];
        let n = f.fmt_head(&mut head);
        self.batch
            .extend_from_slice(head.get(..n).unwrap_or_default());
        self.batch.extend_from_slice(&f.payload);
    }

    /// Queues one message, split into `pieces` frames (1 = unfragmented).
    pub fn push_message(
        &mut self,
        opcode: OpCode,
        masking: Masking,
        payload: &[u8],
        pieces: usize,
    ) {
        let pieces = pieces.clamp(1, payload.len().max(1));
        let step = payload.len().div_ceil(pieces).max(1);
        let mut chunks: Vec<&[u8]> = payload.chunks(step).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        let last = chunks.len() - 1;
        for (i, c) in chunks.into_iter().enumerate() {
            let op = if i == 0 { opcode } else { OpCode::Continuation };
            self.push_frame(i == last, op, masking, c.to_vec());
        }
    }

    /// Queues raw bytes verbatim.
    pub fn push_raw(&mut self, bytes: &[u8]) {
        self.batch.extend_from_slice(bytes);
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.batch.is_empty() {
            self.w.write_all(&self.batch).await?;
            self.batch.clear();
        }
        self.w.flush().await
    }

    /// Flushes, then shuts the write side down (TLS close_notify + TCP FIN).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.flush().await?;
        self.w.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame_tap::{HeaderWalker, RawHeader};

    fn headers(bytes: &[u8]) -> Vec<RawHeader> {
        let mut out = Vec::new();
        HeaderWalker::default().feed(bytes, &mut |h| out.push(h));
        out
    }

    #[test]
    fn fragmented_message_uses_continuations_and_one_fin() {
        let mut fw = FrameWriter::new(Vec::new());
        fw.push_message(OpCode::Text, Masking::None, b"abcdefghij", 3);
        let hs = headers(&fw.batch);
        let shape: Vec<(bool, u8, u64)> = hs
            .iter()
            .map(|h| (h.fin, h.opcode, h.payload_len))
            .collect();
        assert_eq!(shape, vec![(false, 1, 4), (false, 0, 4), (true, 0, 2)]);
        assert!(hs.iter().all(|h| !h.masked));
    }

    #[test]
    fn masked_frames_carry_the_mask_bit_and_unmask_back() {
        let mut fw = FrameWriter::new(Vec::new());
        fw.push_message(OpCode::Binary, Masking::Random, b"hello", 1);
        let hs = headers(&fw.batch);
        assert_eq!(hs.len(), 1);
        assert!(hs[0].masked);
        let key = [fw.batch[2], fw.batch[3], fw.batch[4], fw.batch[5]];
        let mut payload = fw.batch[6..].to_vec();
        fastwebsockets::unmask(&mut payload, key);
        assert_eq!(payload, b"hello");
    }

    #[test]
    fn empty_message_is_one_fin_frame() {
        let mut fw = FrameWriter::new(Vec::new());
        fw.push_message(OpCode::Text, Masking::None, b"", 4);
        assert_eq!(fw.batch, vec![0x81, 0x00]);
    }
}
