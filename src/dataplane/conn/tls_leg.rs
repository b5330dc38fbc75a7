//! The TLS side of a data-plane session: ciphertext received on a TLS leg decrypted into
//! its carry and walked from there, what is queued towards a TLS leg sealed into records,
//! the records rustls sends on its own, and `close_notify` at the end of the write side.
//! The record work itself is [`LegTls`](super::LegTls) (`dataplane/tls.rs`).

use super::send::piece;
use super::{Conn, Env, Leg, Out};
use crate::dataplane::tls::{TlsIn, TlsLegError};
use crate::flow::Side;
use crate::relay::lifecycle::PumpEnd;

impl Conn {
    /// Ciphertext from a TLS leg: decrypted into the leg's carry (the ring buffer goes back
    /// at once), then walked like client messages — or, in tunnel mode, forwarded as is.
    pub(super) fn on_tls_data(&mut self, env: &mut Env<'_>, side: Side, bid: u16, n: usize) {
        let i = side.index();
        let mut plain = std::mem::take(&mut self.legs[i].carry);
        if plain.capacity() == 0 {
            plain = env.spares.take();
        }
        let before = plain.len();
        let r = match self.legs[i].tls.as_mut() {
            // SAFETY: the completion handed `bid` to us; nothing else references it.
            Some(tls) => tls.recv(unsafe { &env.ring.buf_mut(bid)[..n] }, &mut plain),
            None => Ok(TlsIn::Open),
        };
        env.ring.release(bid);
        let end = Self::tls_end_of(r, self.info.id);
        // Records rustls sends on its own go out before anything else is queued.
        self.tls_pending(env, side);
        let got = plain.len() - before;
        if got > 0 {
            self.core.count_read(side.sends(), got);
        }
        if self.tunnel {
            let dest = side.other();
            if plain.is_empty() {
                env.spares.put(plain);
            } else {
                self.queue(
                    env,
                    dest,
                    Out::Owned {
                        data: plain,
                        start: 0,
                    },
                    true,
                );
                self.flush(env, dest);
            }
        } else {
            self.legs[i].carry = plain;
            if got > 0 {
                self.walk_carry(env, side);
            }
            if self.legs[i].carry.is_empty() {
                // Nothing held: give the buffer's memory back (an idle leg holds none).
                let carry = std::mem::take(&mut self.legs[i].carry);
                env.spares.put(carry);
            }
        }
        if let Some(end) = end {
            self.leg_ended(env, side, end);
        }
    }

    /// How a TLS receive's result ends the leg's stream, if it does.
    pub(super) fn tls_end_of(r: Result<TlsIn, TlsLegError>, session: u64) -> Option<PumpEnd> {
        match r {
            Ok(TlsIn::Open) => None,
            Ok(TlsIn::Closed) => Some(PumpEnd::Eof),
            Err(e) => {
                tracing::debug!(session, error = %e, "tls leg failed");
                Some(PumpEnd::ReadError)
            }
        }
    }

    /// Queue the records rustls wants to send on its own on a TLS leg (e.g. an alert) and
    /// start sending them.
    pub(super) fn tls_pending(&mut self, env: &mut Env<'_>, side: Side) {
        let leg = &mut self.legs[side.index()];
        let Some(tls) = leg.tls.as_mut() else {
            return;
        };
        let mut records = Vec::new();
        if tls.take_pending(&mut records).is_err()
            || records.is_empty()
            || leg.killed
            || leg.failed
            || leg.shut_wr
        {
            // Nothing to send, or the leg can no longer be written.
            return;
        }
        leg.out_bytes += records.len();
        leg.out.push_back(Out::Owned {
            data: records,
            start: 0,
        });
        self.flush(env, side);
    }
}

impl Leg {
    /// Seal `out` (plaintext of this TLS leg's outgoing stream) into records; the piece is
    /// released. `None`: nothing to queue.
    pub(super) fn seal(&mut self, env: &mut Env<'_>, out: Out) -> Result<Option<Out>, TlsLegError> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(Some(out));
        };
        let (ptr, len) = piece(env.ring, &out);
        let mut records = env.spares.take();
        // SAFETY: the piece's bytes (a ring buffer this leg was handed, or an owned vector)
        // are valid for `len` bytes until released below.
        let sealed = tls.seal(
            unsafe { std::slice::from_raw_parts(ptr, len) },
            &mut records,
        );
        match out {
            Out::Ring { bid, .. } => {
                env.ring.release(bid);
            }
            Out::Owned { data, .. } => env.spares.put(data),
        }
        if let Err(e) = sealed {
            env.spares.put(records);
            return Err(e);
        }
        if records.is_empty() {
            env.spares.put(records);
            return Ok(None);
        }
        Ok(Some(Out::Owned {
            data: records,
            start: 0,
        }))
    }

    /// A TLS leg whose queue ran dry after the relay finished it: queue `close_notify`
    /// (once) ahead of the TCP shutdown.
    pub(super) fn queue_close_notify(&mut self) {
        let Some(tls) = self.tls.as_mut() else {
            return;
        };
        let mut records = Vec::new();
        if tls.close_notify(&mut records).is_ok() && !records.is_empty() {
            self.out_bytes += records.len();
            self.out.push_back(Out::Owned {
                data: records,
                start: 0,
            });
        }
    }
}
