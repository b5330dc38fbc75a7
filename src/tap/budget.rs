//! The worker's budget for message assembly: the bytes its sessions hold (the taps' copies of
//! split events, client messages held whole until decided).

/// Bytes one worker lets its sessions hold for message assembly — the tap's copies of split
/// events and the client messages held whole — so many large messages at once cannot
/// exhaust memory. Single-threaded (`Rc`), one per worker.
#[derive(Debug)]
pub struct Budget {
    used: std::cell::Cell<usize>,
    cap: usize,
    refusals: std::cell::Cell<u64>,
}

impl Budget {
    /// A budget of `cap` bytes.
    pub fn new(cap: usize) -> Budget {
        Budget {
            used: std::cell::Cell::new(0),
            cap,
            refusals: std::cell::Cell::new(0),
        }
    }

    /// Take `n` bytes if they fit; counts a refusal otherwise.
    pub fn try_take(&self, n: usize) -> bool {
        let taken = self.try_reserve(n);
        if !taken {
            self.refusals.set(self.refusals.get() + 1);
        }
        taken
    }

    /// Take `n` bytes if they fit, without counting a refusal (capacity reserved ahead is
    /// optional: without it the buffer grows as bytes arrive).
    pub(super) fn try_reserve(&self, n: usize) -> bool {
        match self.used.get().checked_add(n).filter(|&t| t <= self.cap) {
            Some(t) => {
                self.used.set(t);
                true
            }
            None => false,
        }
    }

    /// Give `n` bytes back.
    pub fn give(&self, n: usize) {
        self.used.set(self.used.get().saturating_sub(n));
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.get()
    }

    /// Times a take did not fit.
    pub fn refusals(&self) -> u64 {
        self.refusals.get()
    }
}
