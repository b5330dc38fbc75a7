//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`): `count` buffers of `size` bytes the
//! kernel picks from when a multishot receive completes, handed back once their bytes have
//! been forwarded.
//!
//! The ring is two page-aligned anonymous mappings: the ring of `io_uring_buf` entries the
//! kernel reads (its tail is the `resv` field of entry 0) and the buffers themselves. A
//! buffer is the kernel's from the moment it is in the ring until a completion names it;
//! then it is ours until [`BufRing::recycle`] puts it back. Buffers are handed back in any
//! order: each recycle writes the next ring slot with that buffer's id. A buffer forwarded
//! in several pieces is counted ([`BufRing::hold`]) and goes back when the last piece is
//! sent.

use std::cell::Cell;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

/// Why a buffer ring could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BufRingError {
    /// `count` is not a power of two in 1..=32768, or `size` is 0 or over 1 MiB.
    #[error(
        "buffer ring of {count} × {size} B: count must be a power of two ≤ 32768, size 1 B..=1 MiB"
    )]
    Shape {
        /// Buffers asked for.
        count: usize,
        /// Size asked for.
        size: usize,
    },
    /// mmap failed.
    #[error("buffer ring mmap: {0}")]
    Map(io::Error),
    /// The kernel refused the registration (kernels before 5.19).
    #[error("register buffer ring: {0}")]
    Register(io::Error),
}

/// One anonymous mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: an anonymous private mapping; no file, no fixed address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                // Populated up front: the ring is a fixed per-worker cost, paid (and
                // visible in RSS) at start, not attributed to whichever sessions first
                // touch each buffer.
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(p.cast())
            .map(|ptr| Mapping { ptr, len })
            .ok_or_else(|| io::Error::other("mmap returned null"))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// The ring and its buffers. Single-threaded (one per worker).
pub struct BufRing {
    ring: Mapping,
    bufs: Mapping,
    count: u16,
    size: usize,
    bgid: u16,
    /// Our copy of the tail (published to entry 0's `resv` with release ordering).
    tail: Cell<u16>,
    /// Per buffer: outstanding pieces still to be sent (0: in the ring or free to recycle).
    holds: Box<[Cell<u16>]>,
    /// Buffers now in the ring (the kernel's).
    in_ring: Cell<u32>,
    /// The consumer's position when this process takes buffers itself ([`BufRing::pop`],
    /// the epoll data plane) instead of the kernel.
    head: Cell<u16>,
}

impl BufRing {
    /// `count` buffers (a power of two) of `size` bytes for buffer group `bgid`, all in the
    /// ring. Register it with [`BufRing::register`] before use.
    pub fn new(count: usize, size: usize, bgid: u16) -> Result<BufRing, BufRingError> {
        if !count.is_power_of_two() || count > 32768 || size == 0 || size > 1 << 20 {
            return Err(BufRingError::Shape { count, size });
        }
        let page = 4096;
        let ring_len = (count * std::mem::size_of::<BufRingEntry>()).div_ceil(page) * page;
        let ring = Mapping::new(ring_len).map_err(BufRingError::Map)?;
        let bufs = Mapping::new(count * size).map_err(BufRingError::Map)?;
        let r = BufRing {
            ring,
            bufs,
            count: count as u16,
            size,
            bgid,
            tail: Cell::new(0),
            holds: (0..count).map(|_| Cell::new(0)).collect(),
            in_ring: Cell::new(0),
            head: Cell::new(0),
        };
        for bid in 0..count as u16 {
            r.push(bid);
        }
        r.publish();
        Ok(r)
    }

    /// Register the ring with `submitter`'s io_uring.
    pub fn register(&self, submitter: &io_uring::Submitter<'_>) -> Result<(), BufRingError> {
        // SAFETY: the ring mapping lives as long as `self`, which unregisters nothing on
        // drop — the owner must drop the io_uring (or unregister) before dropping `self`;
        // `DataPlane` keeps both for the worker's lifetime.
        unsafe {
            submitter
                .register_buf_ring(self.ring.ptr.as_ptr() as u64, self.count, self.bgid)
                .map_err(BufRingError::Register)
        }
    }

    /// The buffer group id.
    pub fn bgid(&self) -> u16 {
        self.bgid
    }

    /// Size of each buffer.
    pub fn buf_size(&self) -> usize {
        self.size
    }

    /// Number of buffers.
    pub fn count(&self) -> usize {
        usize::from(self.count)
    }

    /// Buffers in the ring now (what receives can still fill).
    pub fn available(&self) -> usize {
        self.in_ring.get() as usize
    }

    /// The bytes of buffer `bid`.
    ///
    /// # Safety
    ///
    /// `bid` must have been handed out by a completion and not recycled since, and no
    /// other reference to the same buffer may be alive.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn buf_mut(&self, bid: u16) -> &mut [u8] {
        debug_assert!(bid < self.count);
        std::slice::from_raw_parts_mut(
            self.bufs.ptr.as_ptr().add(usize::from(bid) * self.size),
            self.size,
        )
    }

    /// Address of byte `off` of buffer `bid` (for a send's iovec).
    pub fn addr(&self, bid: u16, off: usize) -> *const u8 {
        debug_assert!(bid < self.count && off <= self.size);
        // SAFETY: in bounds of the buffers mapping.
        unsafe {
            self.bufs
                .ptr
                .as_ptr()
                .add(usize::from(bid) * self.size + off)
        }
    }

    /// Take the next buffer of the ring the way the kernel would (oldest first), for a
    /// ring that is not registered: the epoll data plane reads into it itself. Like a
    /// completion's buffer it is then [`BufRing::taken`] by whoever fills it (or taken and
    /// recycled at once when the read brought nothing). `None` when the ring is empty.
    /// Never mix with a registered ring: the kernel keeps its own head.
    pub fn pop(&self) -> Option<u16> {
        if self.in_ring.get() == 0 {
            return None;
        }
        let mask = self.count - 1;
        let h = self.head.get();
        // SAFETY: index masked into the ring; entries between head and tail were written
        // by `push`.
        let bid = unsafe {
            (*self
                .ring
                .ptr
                .as_ptr()
                .cast::<BufRingEntry>()
                .add(usize::from(h & mask)))
            .bid()
        };
        self.head.set(h.wrapping_add(1));
        Some(bid)
    }

    /// A completion handed buffer `bid` to us: it is held once (by whoever processes it)
    /// until [`BufRing::release`].
    pub fn taken(&self, bid: u16) {
        self.in_ring.set(self.in_ring.get().saturating_sub(1));
        if let Some(h) = self.holds.get(usize::from(bid)) {
            h.set(1);
        }
    }

    /// One more piece of buffer `bid` is queued for sending.
    pub fn hold(&self, bid: u16) {
        if let Some(h) = self.holds.get(usize::from(bid)) {
            h.set(h.get() + 1);
        }
    }

    /// One piece of buffer `bid` was sent (or dropped): back to the ring after the last.
    /// Returns whether it went back.
    pub fn release(&self, bid: u16) -> bool {
        let Some(h) = self.holds.get(usize::from(bid)) else {
            return false;
        };
        let n = h.get().saturating_sub(1);
        h.set(n);
        if n == 0 {
            self.recycle(bid);
            true
        } else {
            false
        }
    }

    /// Put buffer `bid` back in the ring now (nothing references it).
    pub fn recycle(&self, bid: u16) {
        if let Some(h) = self.holds.get(usize::from(bid)) {
            h.set(0);
        }
        self.push(bid);
        self.publish();
    }

    fn push(&self, bid: u16) {
        let mask = self.count - 1;
        let t = self.tail.get();
        // SAFETY: index masked into the ring; the kernel only reads entries before the
        // published tail, and this one is past it until `publish`.
        unsafe {
            let e = &mut *self
                .ring
                .ptr
                .as_ptr()
                .cast::<BufRingEntry>()
                .add(usize::from(t & mask));
            e.set_addr(self.addr(bid, 0) as u64);
            e.set_len(self.size as u32);
            e.set_bid(bid);
        }
        self.tail.set(t.wrapping_add(1));
        self.in_ring.set(self.in_ring.get() + 1);
    }

    fn publish(&self) {
        // SAFETY: entry 0's `resv` is the ring's tail; the kernel reads it with acquire
        // ordering, so the entries written before are visible to it.
        unsafe {
            let tail = BufRingEntry::tail(self.ring.ptr.as_ptr().cast::<BufRingEntry>())
                .cast_mut()
                .cast::<AtomicU16>();
            (*tail).store(self.tail.get(), Ordering::Release);
        }
    }
}

#[cfg(test)]
#[path = "bufring_tests.rs"]
mod tests;
