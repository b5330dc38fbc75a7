//! The tap's assembly buffer: what it keeps of a message split across reads (only what
//! extraction reads — skipped values are left out and skipped in place), sized from the
//! frame header, bounded by `max_buffer` and charged to the worker's budget.

use super::{State, Tap, TapError, RESERVE_AHEAD};

impl Tap {
    /// Keeps what the walk still needs of a message's first chunk: all of it (sized for the
    /// rest of its frame), unless the walk stopped inside a value nothing records — then
    /// only the bytes before that value and any the scanner must read again.
    pub(super) fn keep_first(&mut self, chunk: &[u8], frame_rest: u64) {
        match self.walker.as_deref().and_then(|w| w.droppable(chunk)) {
            Some(r) => {
                let (head, tail) = (
                    chunk.get(..r.start).unwrap_or_default(),
                    chunk.get(r.end..).unwrap_or_default(),
                );
                if self.append(head) && self.append(tail) {
                    if let Some(w) = self.walker.as_deref_mut() {
                        w.rebase(r.start);
                    }
                }
            }
            None => {
                if !self.append_sized(chunk, frame_rest) {
                    self.append(chunk);
                }
            }
        }
    }

    /// The part of a later chunk to keep: when the walk stopped inside a value nothing
    /// records (a terminal event's `output`) with nothing to read again, that value is
    /// skipped on through `chunk` in place and only what follows it is returned.
    pub(super) fn skip_in_place<'c, const SIMD: bool>(&mut self, chunk: &'c [u8]) -> &'c [u8] {
        let end = self.buf.len();
        match self.walker.as_deref_mut() {
            Some(w) if w.droppable(&self.buf).is_some_and(|r| r.end == end) => {
                let (Ok(n) | Err(n)) = w.skip_over::<SIMD>(chunk, end);
                chunk.get(n..).unwrap_or_default()
            }
            _ => chunk,
        }
    }

    /// Drops from `buf` the bytes of a value nothing records that the walk stopped in (they
    /// arrived in one chunk with bytes the walk needed).
    pub(super) fn drop_skipped(&mut self, buf: &mut Vec<u8>) {
        let Some(w) = self.walker.as_deref_mut() else {
            return;
        };
        if let Some(r) = w
            .droppable(buf)
            .filter(|r| r.start < r.end && r.end <= buf.len())
        {
            buf.drain(r.clone());
            w.rebase(r.start);
        }
    }

    /// Starts the assembly buffer with `first`, sized for the rest of its frame too (at most
    /// `RESERVE_AHEAD` and `max_buffer` in all), the whole size charged to the budget now.
    /// False, with nothing done, when there is nothing ahead or the whole does not fit the
    /// budget (the caller then appends as usual and the buffer grows as bytes arrive).
    pub(super) fn append_sized(&mut self, first: &[u8], frame_rest: u64) -> bool {
        let cap = self.max_buffer.min(RESERVE_AHEAD);
        let ahead = usize::try_from(frame_rest)
            .unwrap_or(usize::MAX)
            .min(cap.saturating_sub(first.len()));
        if ahead == 0 {
            return false;
        }
        let size = first.len() + ahead;
        if let Some(b) = &self.budget {
            if !b.try_reserve(size) {
                return false;
            }
        }
        self.charged += size;
        // Later chunks fill what was paid for ahead.
        self.prepaid = ahead;
        self.buf.reserve_exact(size);
        self.buf.extend_from_slice(first);
        true
    }

    /// Appends a chunk to the assembly buffer; false (and the message skipped) on overflow.
    pub(super) fn append(&mut self, chunk: &[u8]) -> bool {
        // Bytes reserved ahead are paid for already; only the rest is taken now.
        let prepaid = self.prepaid.min(chunk.len());
        let owed = chunk.len() - prepaid;
        let fits = self.buf.len().saturating_add(chunk.len()) <= self.max_buffer
            && self.budget.as_ref().is_none_or(|b| b.try_take(owed));
        if !fits {
            self.overflows += 1;
            self.last_error = Some(TapError::Overflow);
            self.state = State::Skip;
            self.release();
            self.buf = Vec::new();
            return false;
        }
        self.prepaid -= prepaid;
        self.charged += owed;
        self.buf.extend_from_slice(chunk);
        true
    }

    /// Give the bytes of the message being assembled back to the worker's budget.
    pub(super) fn release(&mut self) {
        if let Some(b) = &self.budget {
            b.give(self.charged);
        }
        self.charged = 0;
        self.prepaid = 0;
    }
}
