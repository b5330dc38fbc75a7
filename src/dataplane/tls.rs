//! A TLS leg on the data plane: rustls driven sans-IO by the session's completions.
//!
//! Production upstreams are `wss://`, so a session whose legs could only be plain TCP would
//! leave every production session on the async adapter. Here a leg keeps its rustls
//! connection (after the handshake, which ran on monoio futures in `crate::tls`) and the
//! session does the record work itself:
//!
//! - **in**: a multishot receive fills a ring buffer with ciphertext as for a plain leg;
//!   [`LegTls::recv`] feeds it to rustls, which copies it into its deframer and decrypts in
//!   place, and the plaintext is appended to the leg's carry, where the session core walks
//!   it (`conn/recv.rs`). The ring buffer goes back to the ring at once.
//! - **out**: what is queued towards a TLS leg is encrypted when queued
//!   ([`LegTls::seal`]); the leg's queue then holds ciphertext only, so sends, partial
//!   sends and backpressure count ciphertext bytes exactly as a plain leg counts its bytes.
//! - records rustls sends on its own (an alert; a TLS 1.3 key update's answer leaves ahead
//!   of the next sealed data) are queued after each receive ([`LegTls::take_pending`]),
//!   and the write side's end sends a
//!   `close_notify` before the TCP shutdown ([`LegTls::close_notify`]), as the async
//!   adapter's `shutdown` does.
//!
//! Copies: rustls needs the ciphertext in its own buffer (one copy in) and hands plaintext
//! out of its own (one copy out); sealing copies the plaintext into rustls and the records
//! out of it. A plain leg forwards from the ring buffer without a copy; a TLS leg cannot,
//! and what it saves against the async adapter is the rest: no per-read readiness poll
//! (`PollAdd`) and `recv`, no task wake-ups, no session future.
//!
//! What an idle TLS leg holds is what the async adapter's stream held: the rustls
//! connection (its keys and its 4 KiB deframer buffer), boxed.
//!
//! # Alternatives
//!
//! - **kTLS** (the kernel encrypts and decrypts; the leg becomes a plain socket to the data
//!   plane, with no copy at all): the kernels this runs on must offer the `tls` ULP — the
//!   bench VM's does not (`/proc/sys/net/ipv4/tcp_available_ulp` lists only `mptcp`), and
//!   kTLS receive hands non-data records (key updates, tickets) to user space through
//!   control messages a multishot receive does not carry. A production build could add it
//!   where available, behind this same leg type.
//! - **rustls's unbuffered API** (`UnbufferedConnection`) decrypts in place in the caller's
//!   buffer, which would save the copy into rustls's deframer; but a record (up to 16 KiB
//!   plus overhead) spans ring buffers, so the leg would reassemble records in a buffer of
//!   its own anyway, and drive the handshake's state machine by hand. The buffered API
//!   costs one copy of each record and keeps the handshake in `crate::tls`.

use std::io::{self, BufRead, Write};

use rustls::Connection;

/// Errors of a TLS leg: the peer sent something rustls rejects, or the stream was cut
/// without a `close_notify`.
#[derive(Debug, thiserror::Error)]
pub enum TlsLegError {
    /// A TLS protocol error (a bad record, a failed decryption, an alert).
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// rustls refused the bytes or the plaintext (e.g. its deframer buffer is full).
    #[error("tls i/o: {0}")]
    Io(#[from] io::Error),
}

/// What a receive left the leg in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsIn {
    /// Still open.
    Open,
    /// The peer sent `close_notify`: its stream has ended cleanly.
    Closed,
}

/// One leg's rustls connection, handed over from the handshake.
pub struct LegTls {
    conn: Connection,
    /// Ciphertext the handshake had read but rustls had not taken yet; fed at the start.
    handoff: Vec<u8>,
    /// `close_notify` was received.
    peer_closed: bool,
    /// `close_notify` was queued.
    notified: bool,
}

impl LegTls {
    /// Take over `conn` (handshake done) and `handoff`, ciphertext read past what rustls
    /// took.
    pub fn new(mut conn: Connection, handoff: Vec<u8>) -> Box<LegTls> {
        // The session bounds what it queues (`HIGH_WATER`); rustls must not cut a write.
        conn.set_buffer_limit(None);
        Box::new(LegTls {
            conn,
            handoff,
            peer_closed: false,
            notified: false,
        })
    }

    /// The ciphertext handed over by the handshake (fed once, at the session's start).
    pub fn take_handoff(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.handoff)
    }

    /// Whether the peer's `close_notify` was received.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Feed `data` (ciphertext as received) to rustls and append the plaintext it yields to
    /// `plain` — including plaintext rustls held already (from the handshake's reads).
    pub fn recv(&mut self, mut data: &[u8], plain: &mut Vec<u8>) -> Result<TlsIn, TlsLegError> {
        self.drain(plain)?;
        while !data.is_empty() && !self.peer_closed {
            let n = self.conn.read_tls(&mut data)?;
            self.conn.process_new_packets()?;
            self.drain(plain)?;
            if n == 0 {
                // rustls takes nothing more once it saw `close_notify`.
                break;
            }
        }
        Ok(if self.peer_closed {
            TlsIn::Closed
        } else {
            TlsIn::Open
        })
    }

    /// Move the plaintext rustls holds into `plain`.
    fn drain(&mut self, plain: &mut Vec<u8>) -> Result<(), TlsLegError> {
        loop {
            let mut reader = self.conn.reader();
            let n = match reader.fill_buf() {
                // Clean end of the peer's stream (`close_notify`), all plaintext read.
                Ok([]) => {
                    self.peer_closed = true;
                    return Ok(());
                }
                Ok(chunk) => {
                    plain.extend_from_slice(chunk);
                    chunk.len()
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            reader.consume(n);
        }
    }

    /// Encrypt `data` (plaintext of the leg's outgoing stream) and append the records to
    /// `out`.
    pub fn seal(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), TlsLegError> {
        while !data.is_empty() {
            let n = self.conn.writer().write(data)?;
            if n == 0 {
                // rustls took nothing (it would not without a buffer limit): do not spin.
                return Err(
                    io::Error::new(io::ErrorKind::WriteZero, "tls writer took nothing").into(),
                );
            }
            data = &data[n..];
            self.take_pending(out)?;
        }
        Ok(())
    }

    /// Append the records rustls has queued to `out` (a ticket, an alert; a key update's
    /// answer leaves with the next sealed data).
    pub fn take_pending(&mut self, out: &mut Vec<u8>) -> Result<(), TlsLegError> {
        while self.conn.wants_write() {
            if self.conn.write_tls(out)? == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Queue `close_notify` (once) and append it to `out`.
    pub fn close_notify(&mut self, out: &mut Vec<u8>) -> Result<(), TlsLegError> {
        if self.notified {
            return Ok(());
        }
        self.notified = true;
        self.conn.send_close_notify();
        self.take_pending(out)
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
