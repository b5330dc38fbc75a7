//! Buffers the data plane owns for a moment, kept by the worker for the next use: byte
//! buffers (a client message held whole in its leg's carry, then queued towards the
//! upstream until its send completes), so a steady stream of client messages allocates
//! nothing; and send headers ([`SendBuf`], a gathered send's iovecs), so a session holds
//! one only while such a send is in flight.
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
/// Most pieces gathered into one send.
pub const MAX_IOV: usize = 16;
/// Most send headers a worker keeps (~320 bytes each): as many as gathered sends were in
/// flight at once, at most one per leg; more are freed.
pub const MAX_SEND_BUFS: usize = 256;

/// A gathered send's iovecs and message header: they must stay put while the send is in
/// flight, so a leg holds one (boxed) from the send's start to its completion and then
/// gives it back here. Before, each leg boxed its own at its first send and kept it: a
/// session that had sent both ways held two (~0.6 KiB) for the rest of its life.
pub struct SendBuf {
    pub iov: [libc::iovec; MAX_IOV],
    pub msg: libc::msghdr,
}

/// The worker's spare buffers.
#[derive(Default)]
pub struct Spares {
    bytes: Vec<Vec<u8>>,
    /// Boxed: a leg holds the box while its send is in flight (the kernel reads the header
    /// and iovecs at their address), and handing it out or back moves only the pointer.
    #[allow(clippy::vec_box)]
    send_bufs: Vec<Box<SendBuf>>,
}

impl Spares {
    /// An empty buffer, with capacity when a spare is left.
    pub fn take(&mut self) -> Vec<u8> {
        self.bytes.pop().unwrap_or_default()
    }

    /// A send header (its contents stale: the caller fills what it sends).
    pub fn take_send_buf(&mut self) -> Box<SendBuf> {
        self.send_bufs.pop().unwrap_or_else(|| {
            // SAFETY: plain C structs, all-zero is a valid (empty) value.
            Box::new(unsafe { std::mem::zeroed::<SendBuf>() })
        })
    }

    /// Keep a send header whose send completed, unless enough are kept already.
    pub fn put_send_buf(&mut self, sb: Box<SendBuf>) {
        if self.send_bufs.len() < MAX_SEND_BUFS {
            self.send_bufs.push(sb);
        }
    }

    /// Keep `buf` for later (emptied), unless it has no capacity, too much, or enough are
    /// kept already.
    pub fn put(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() == 0
            || buf.capacity() > MAX_SPARE_CAPACITY
            || self.bytes.len() >= MAX_SPARES
        {
            return;
        }
        buf.clear();
        self.bytes.push(buf);
    }

    /// Buffers kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// No buffer kept.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
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

    #[test]
    fn a_send_header_is_reused_and_the_kept_ones_are_bounded() {
        let mut s = Spares::default();
        let a = s.take_send_buf();
        let at = &*a as *const SendBuf;
        s.put_send_buf(a);
        let again = s.take_send_buf();
        assert_eq!(
            &*again as *const SendBuf, at,
            "the header given back is handed out"
        );
        let fresh = s.take_send_buf();
        assert_ne!(&*fresh as *const SendBuf, at, "none kept: a new one");
        let many: Vec<_> = (0..MAX_SEND_BUFS + 9).map(|_| s.take_send_buf()).collect();
        for sb in many {
            s.put_send_buf(sb);
        }
        assert_eq!(s.send_bufs.len(), MAX_SEND_BUFS);
    }
}
