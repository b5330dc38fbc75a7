//! Byte buffers the data plane owns for a moment — a client message held whole in its leg's
//! carry, then queued towards the upstream until its send completes — kept by the worker
//! for the next message, so a steady stream of client messages allocates nothing.
//!
//! Measured (`perf record -C 0 -g` over `loadtest bench --peers tollgate --only sweep@8000
//! --sweep-reps 2`): before, mimalloc's `mi_malloc_aligned` and `mi_free` took 0.29% of the
//! relay core's samples, ~4% of the worker's user time — one allocation and one free per
//! client message; after, neither shows. An idle session still holds no buffer (a
//! carry emptied by its last message has no capacity); the worker keeps at most
//! [`MAX_SPARES`] buffers of at most [`MAX_SPARE_CAPACITY`] bytes each (larger messages
//! allocate as before).

/// Most buffers a worker keeps.
pub const MAX_SPARES: usize = 32;
/// Largest capacity kept (bigger buffers are freed).
pub const MAX_SPARE_CAPACITY: usize = 8 * 1024;

/// The worker's spare buffers.
#[derive(Debug, Default)]
pub struct Spares(Vec<Vec<u8>>);

impl Spares {
    /// An empty buffer, with capacity when a spare is left.
    pub fn take(&mut self) -> Vec<u8> {
        self.0.pop().unwrap_or_default()
    }

    /// Keep `buf` for later (emptied), unless it has no capacity, too much, or enough are
    /// kept already.
    pub fn put(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > MAX_SPARE_CAPACITY || self.0.len() >= MAX_SPARES
        {
            return;
        }
        buf.clear();
        self.0.push(buf);
    }

    /// Buffers kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No buffer kept.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_handed_out_again_empty_with_its_capacity() {
        let mut s = Spares::default();
        let mut b = s.take();
        assert_eq!(
            b.capacity(),
            0,
            "nothing kept yet: a new, unallocated buffer"
        );
        b.extend_from_slice(&[7u8; 300]);
        let (ptr, cap) = (b.as_ptr(), b.capacity());
        s.put(b);
        assert_eq!(s.len(), 1);
        let again = s.take();
        assert!(again.is_empty());
        assert_eq!((again.as_ptr(), again.capacity()), (ptr, cap));
        assert!(s.is_empty());
    }

    #[test]
    fn unallocated_oversized_and_surplus_buffers_are_not_kept() {
        let mut s = Spares::default();
        s.put(Vec::new());
        s.put(Vec::with_capacity(MAX_SPARE_CAPACITY + 1));
        assert!(s.is_empty());
        for _ in 0..MAX_SPARES + 5 {
            s.put(Vec::with_capacity(64));
        }
        assert_eq!(s.len(), MAX_SPARES);
    }
}
