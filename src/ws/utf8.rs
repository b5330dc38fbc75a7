//! Incremental UTF-8 validation for text messages split across frames and reads.
//!
//! RFC 6455 §8.1 requires failing the connection (1007) on invalid UTF-8 in a text message;
//! Autobahn 6.x additionally expects "fail fast": the error must be reported as soon as the
//! bytes seen so far cannot start a valid sequence, not at the end of the message. Each chunk
//! is checked whole by [`super::utf8_simd::is_valid`] (AVX-512 or AVX2 where the CPU has it,
//! `simdutf8`'s `basic` flavour elsewhere) and, only when that fails, again with `simdutf8`'s
//! `compat` flavour, whose error detail matches `std`: an `error_len()` of `None` means only
//! "input ended inside a sequence whose prefix is valid". A chunk that ends inside a
//! character is checked without that character's first 1–3 bytes, which `std` checks as a
//! valid prefix and which wait for the next chunk: the fast check then passes it, with no
//! second pass to find the cut.

use thiserror::Error;

/// Why a text message is not valid UTF-8. Both map to close code 1007.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum Utf8Error {
    /// An invalid byte sequence was seen (or a prefix no valid sequence can start with).
    #[error("invalid UTF-8 in text message")]
    Invalid,
    /// The message ended inside a multi-byte sequence.
    #[error("text message ends inside a UTF-8 sequence")]
    Incomplete,
}

impl Utf8Error {
    /// Always 1007 (invalid frame payload data).
    pub fn close_code(&self) -> u16 {
        1007
    }
}

/// Streaming validator for one text message at a time. Carries at most 3 bytes (an
/// incomplete but so-far-valid sequence) between [`Utf8Validator::feed`] calls.
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    /// Pending bytes of a sequence split across chunks; only `pending[..pending_len]` is live.
    pending: [u8; 4],
    pending_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next chunk of the message. Fails as soon as an invalid sequence is
    /// certain, including an incomplete sequence whose prefix is already impossible. After an
    /// error the validator is reset (the connection is expected to close).
    ///
    /// The common case — nothing pending and the chunk valid — is a test and one call of the
    /// SIMD check; the pending and rejected cases are out of line. `cargo bench --bench
    /// walker`, alternated: `walker/server_deltas` 9.1–9.2 → 8.3–8.7 µs with this split (the
    /// kernel change of the same commit alone left it at 9.2–9.5).
    #[inline]
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), Utf8Error> {
        if self.pending_len != 0 {
            return self.feed_after_pending(chunk);
        }
        self.feed_fresh(chunk)
    }

    /// [`Self::feed`] with nothing pending. The whole-chunk check (no error position, faster)
    /// answers the common case: the chunk is valid and ends on a character boundary. A chunk
    /// that ends inside a character (a read or a frame cut there: about one chunk in fifteen
    /// in the bench mock's text, 6.7% of whose bytes are a character's second to fourth)
    /// has its last 1–3 bytes, the sequence's start, set aside first: the fast check then
    /// reads the bytes before them once, and `std` the ≤ 3 bytes, which must be a valid
    /// prefix. Checking the whole chunk instead fails at the cut and takes a second pass
    /// (`compat`) to find it (`utf8/stream_16k` in `cargo bench --bench walker`; see
    /// `loadtest/BENCH.md`).
    #[inline]
    fn feed_fresh(&mut self, chunk: &[u8]) -> Result<(), Utf8Error> {
        if chunk.last().is_some_and(|&b| b >= 0x80) {
            return self.feed_cut(chunk);
        }
        if super::utf8_simd::is_valid(chunk) {
            return Ok(());
        }
        self.feed_rejected(chunk)
    }

    /// [`Self::feed_fresh`] for a chunk whose last byte is not ASCII.
    #[inline(never)]
    fn feed_cut(&mut self, chunk: &[u8]) -> Result<(), Utf8Error> {
        match cut_sequence_start(chunk) {
            Some(cut) => {
                let (head, tail) = chunk.split_at(cut);
                let prefix = matches!(std::str::from_utf8(tail), Err(e) if e.error_len().is_none());
                if prefix && super::utf8_simd::is_valid(head) {
                    self.pending[..tail.len()].copy_from_slice(tail);
                    self.pending_len = tail.len() as u8;
                    return Ok(());
                }
            }
            None if super::utf8_simd::is_valid(chunk) => return Ok(()),
            None => {}
        }
        self.feed_rejected(chunk)
    }

    /// [`Self::feed`] when a sequence from the previous chunk is pending.
    #[inline(never)]
    fn feed_after_pending(&mut self, chunk: &[u8]) -> Result<(), Utf8Error> {
        let rest = match self.complete_pending(chunk) {
            Ok(Some(rest)) => rest,
            Ok(None) => return Ok(()),
            Err(e) => {
                self.reset();
                return Err(e);
            }
        };
        self.feed_fresh(rest)
    }

    /// A chunk (with nothing pending) the whole-chunk check rejected — invalid, or a sequence
    /// split at the chunk's end whose start is not a valid prefix — validated again by
    /// `compat` for the detail. A chunk that only ends inside a valid sequence takes
    /// [`Self::feed_cut`]'s way and does not get here; the pending case below stays as the
    /// net under that shortcut, so a verdict never depends on it alone.
    #[inline(never)]
    fn feed_rejected(&mut self, rest: &[u8]) -> Result<(), Utf8Error> {
        match simdutf8::compat::from_utf8(rest) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => {
                self.reset();
                Err(Utf8Error::Invalid)
            }
            Err(e) => {
                // A valid prefix of a sequence, 1..=3 bytes, runs to the end of the chunk.
                let tail = rest.get(e.valid_up_to()..).unwrap_or_default();
                let k = tail.len().min(3);
                self.pending[..k].copy_from_slice(&tail[..k]);
                self.pending_len = k as u8;
                Ok(())
            }
        }
    }

    /// Ends the message: an incomplete trailing sequence is an error. Always resets, ready for
    /// the next message.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let incomplete = self.pending_len != 0;
        self.reset();
        if incomplete {
            Err(Utf8Error::Incomplete)
        } else {
            Ok(())
        }
    }

    /// Forgets any pending bytes (start of a new message).
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }

    /// `true` when no partial sequence is pending (the bytes so far end on a char boundary).
    pub fn is_at_boundary(&self) -> bool {
        self.pending_len == 0
    }

    /// Moves bytes from `chunk` into the pending sequence until it completes or `chunk` runs
    /// out. Returns the unconsumed rest of `chunk` once no sequence is pending, or `None` if
    /// `chunk` was used up while the sequence is still incomplete.
    fn complete_pending<'a>(&mut self, chunk: &'a [u8]) -> Result<Option<&'a [u8]>, Utf8Error> {
        let mut rest = chunk;
        while self.pending_len != 0 {
            let Some((&b, tail)) = rest.split_first() else {
                return Ok(None);
            };
            rest = tail;
            let n = usize::from(self.pending_len);
            if let Some(slot) = self.pending.get_mut(n) {
                *slot = b;
            }
            let seq = self.pending.get(..=n).unwrap_or_default();
            match simdutf8::compat::from_utf8(seq) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_some() || n + 1 >= 4 => return Err(Utf8Error::Invalid),
                Err(_) => self.pending_len += 1,
            }
        }
        Ok(Some(rest))
    }
}

/// Where a multi-byte sequence starts that runs past the end of `bytes`, when one does: its
/// lead byte is among the last three and fewer bytes follow it than it announces. Says nothing
/// about validity (the caller checks both sides).
fn cut_sequence_start(bytes: &[u8]) -> Option<usize> {
    let from = bytes.len().saturating_sub(3);
    let (at, &lead) = bytes
        .iter()
        .enumerate()
        .skip(from)
        .rev()
        .find(|(_, &b)| b & 0xC0 != 0x80)?;
    let announced = match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => return None,
    };
    (bytes.len() - at < announced).then_some(at)
}

#[cfg(test)]
#[path = "utf8_tests.rs"]
mod tests;
