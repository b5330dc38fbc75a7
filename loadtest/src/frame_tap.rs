//! Raw frame-header tap.
//!
//! fastwebsockets unmasks payloads and keeps the masking key private, so after
//! `read_frame` nobody can tell whether the peer masked a frame. [`FrameTap`] wraps
//! the read side of a socket *below* fastwebsockets and feeds every byte through
//! [`HeaderWalker`], a sans-IO walker that reports each frame header exactly as it
//! appeared on the wire. Because fastwebsockets (with auto-pong and auto-close off)
//! returns every frame in wire order, the N-th frame it returns pairs with the N-th
//! header in the tap's queue.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// One frame header as it appeared on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader {
    /// FIN bit.
    pub fin: bool,
    /// The three RSV bits, right-aligned (0 unless an extension was negotiated).
    pub rsv: u8,
    /// Opcode nibble, unvalidated.
    pub opcode: u8,
    /// MASK bit.
    pub masked: bool,
    /// Declared payload length.
    pub payload_len: u64,
}

/// Sans-IO walker: feed it a byte stream of WebSocket frames in any chunking and
/// it reports every frame header, skipping payloads.
#[derive(Debug, Default)]
pub struct HeaderWalker {
    head: [u8; 14],
    have: usize,
    skip: u64,
}

/// Total header length (2..=14) implied by the first two header bytes.
fn header_len(b0_b1: [u8; 2]) -> usize {
    let ext = match b0_b1[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if b0_b1[1] & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

impl HeaderWalker {
    /// Consumes `bytes`, calling `out` once per complete frame header.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut impl FnMut(RawHeader)) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                bytes = bytes.get(n..).unwrap_or_default();
                self.skip -= n as u64;
                continue;
            }
            let Some((&b, rest)) = bytes.split_first() else {
                break;
            };
            bytes = rest;
            if let Some(slot) = self.head.get_mut(self.have) {
                *slot = b;
                self.have += 1;
            }
            if self.have >= 2 && self.have == header_len([self.head[0], self.head[1]]) {
                let hdr = self.parse();
                self.have = 0;
                self.skip = hdr.payload_len;
                out(hdr);
            }
        }
    }

    fn parse(&self) -> RawHeader {
        let (b0, b1) = (self.head[0], self.head[1]);
        let payload_len = match b1 & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
            127 => {
                let mut len = [0u8; 8];
                len.copy_from_slice(&self.head[2..10]);
                u64::from_be_bytes(len)
            }
            n => u64::from(n),
        };
        RawHeader {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x07,
            opcode: b0 & 0x0f,
            masked: b1 & 0x80 != 0,
            payload_len,
        }
    }
}

/// Shared queue of headers seen by a [`FrameTap`], oldest first.
pub type HeaderQueue = Arc<Mutex<VecDeque<RawHeader>>>;

/// Pops the oldest header from a queue.
pub fn pop_header(q: &HeaderQueue) -> Option<RawHeader> {
    q.lock().unwrap_or_else(PoisonError::into_inner).pop_front()
}

/// An `AsyncRead` wrapper that walks every byte read through a [`HeaderWalker`].
#[derive(Debug)]
pub struct FrameTap<R> {
    inner: R,
    walker: HeaderWalker,
    queue: HeaderQueue,
}

impl<R> FrameTap<R> {
    /// Wraps `inner`; headers are appended to the returned queue.
    pub fn new(inner: R) -> (Self, HeaderQueue) {
        let queue = HeaderQueue::default();
        let tap = FrameTap {
            inner,
            walker: HeaderWalker::default(),
            queue: queue.clone(),
        };
        (tap, queue)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for FrameTap<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            let fresh = buf.filled().get(before..).unwrap_or_default();
            if !fresh.is_empty() {
                let mut q = this.queue.lock().unwrap_or_else(PoisonError::into_inner);
                this.walker.feed(fresh, &mut |h| q.push_back(h));
            }
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk_all(stream: &[u8], chunk: usize) -> Vec<RawHeader> {
        let mut w = HeaderWalker::default();
        let mut out = Vec::new();
        for c in stream.chunks(chunk) {
            w.feed(c, &mut |h| out.push(h));
        }
        out
    }

    fn frame(b0: u8, masked: bool, len: usize) -> Vec<u8> {
        let mut v = vec![b0];
        let m = if masked { 0x80 } else { 0 };
        if len < 126 {
            v.push(m | len as u8);
        } else if len < 65536 {
            v.push(m | 126);
            v.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            v.push(m | 127);
            v.extend_from_slice(&(len as u64).to_be_bytes());
        }
        if masked {
            v.extend_from_slice(&[1, 2, 3, 4]);
        }
        v.extend(std::iter::repeat_n(0x81u8, len)); // payload bytes that look like headers
        v
    }

    #[test]
    fn every_chunking_yields_the_same_headers() {
        let mut stream = Vec::new();
        stream.extend(frame(0x01, true, 5)); // text, not fin
        stream.extend(frame(0x80, true, 0)); // continuation fin, empty
        stream.extend(frame(0x89, false, 125)); // ping unmasked
        stream.extend(frame(0x82, true, 300)); // 16-bit length
        stream.extend(frame(0xc1, false, 70_000)); // rsv1 + 64-bit length
        let want = vec![
            RawHeader {
                fin: false,
                rsv: 0,
                opcode: 1,
                masked: true,
                payload_len: 5,
            },
            RawHeader {
                fin: true,
                rsv: 0,
                opcode: 0,
                masked: true,
                payload_len: 0,
            },
            RawHeader {
                fin: true,
                rsv: 0,
                opcode: 9,
                masked: false,
                payload_len: 125,
            },
            RawHeader {
                fin: true,
                rsv: 0,
                opcode: 2,
                masked: true,
                payload_len: 300,
            },
            RawHeader {
                fin: true,
                rsv: 4,
                opcode: 1,
                masked: false,
                payload_len: 70_000,
            },
        ];
        for chunk in [1, 2, 3, 7, 13, 64, 4096, stream.len()] {
            assert_eq!(walk_all(&stream, chunk), want, "chunk size {chunk}");
        }
    }

    #[test]
    fn partial_header_is_not_reported() {
        let mut w = HeaderWalker::default();
        let mut n = 0;
        w.feed(&[0x81, 0xfe, 0x01], &mut |_| n += 1);
        assert_eq!(n, 0);
        w.feed(&[0x00, 9, 9, 9, 9], &mut |_| n += 1);
        assert_eq!(n, 1);
    }
}
