//! Incremental, linear search for the end of an HTTP head.

use memchr::memmem;

use super::{HandshakeError, Limits};

/// A limit was exceeded while looking for the end of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanLimit {
    TooLarge(usize),
    TooManyLines(usize),
}

/// Incremental search for the end of an HTTP head (`\r\n\r\n`) in a growing buffer.
///
/// Each call looks only at bytes added since the previous call (plus 3 bytes of overlap), so the
/// total work over a dribbled head is linear. The buffer passed on successive calls must keep
/// its earlier bytes unchanged (append-only). Use a fresh scanner per connection.
#[derive(Debug, Clone, Default)]
pub struct HeadScanner {
    scanned: usize,
    first_lf: Option<usize>,
    first_line_checked: bool,
    lines: usize,
    examined: usize,
}

impl HeadScanner {
    /// A scanner for a new, empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Total bytes examined so far (a work counter, for tests and metrics).
    pub fn examined(&self) -> usize {
        self.examined
    }

    /// Position of the first `\n` (end of the request or status line) the first time it is
    /// known, then `None`: the caller checks the first line once, before the head is complete.
    pub(super) fn take_first_line_end(&mut self) -> Option<usize> {
        if self.first_line_checked {
            return None;
        }
        self.first_line_checked = self.first_lf.is_some();
        self.first_lf
    }

    /// `Ok(Some(head_len))` once `\r\n\r\n` is found within the limits, `Ok(None)` to read more.
    pub(crate) fn scan(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, ScanLimit> {
        let window_end = buf.len().min(limits.max_header_bytes);
        let from = self.scanned.min(window_end);
        let overlap = from.saturating_sub(3);
        let window = buf.get(overlap..window_end).unwrap_or_default();
        self.examined += window.len();
        let end = memmem::find(window, b"\r\n\r\n").map(|i| overlap + i + 4);
        // Count lines only in bytes never counted before and before the end of the head.
        let count_to = end.unwrap_or(window_end);
        let fresh = buf.get(from..count_to).unwrap_or_default();
        for lf in memchr::memchr_iter(b'\n', fresh) {
            if self.first_lf.is_none() {
                self.first_lf = Some(from + lf);
            }
            self.lines += 1;
        }
        self.scanned = window_end;
        // Lines so far: the request/status line, the headers, and (once complete) the blank line.
        let allowed = limits
            .max_headers
            .saturating_add(if end.is_some() { 2 } else { 1 });
        if self.lines > allowed {
            return Err(ScanLimit::TooManyLines(limits.max_headers));
        }
        match end {
            Some(end) => Ok(Some(end)),
            None if buf.len() >= limits.max_header_bytes => {
                Err(ScanLimit::TooLarge(limits.max_header_bytes))
            }
            None => Ok(None),
        }
    }
}

impl From<ScanLimit> for HandshakeError {
    fn from(e: ScanLimit) -> Self {
        match e {
            ScanLimit::TooLarge(limit) => HandshakeError::HeadersTooLarge { limit },
            ScanLimit::TooManyLines(limit) => HandshakeError::TooManyHeaders { limit },
        }
    }
}
