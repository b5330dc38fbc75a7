//! The journal's next pages, faulted in by the writer thread before a worker writes to them.
//!
//! **Why.** A worker's first store into a page of the shared file mapping takes a page fault,
//! and for a file on a disk the file system's `page_mkwrite` (ext4's reserves blocks and may
//! wait on its own journal). An entry is ~0.6 KiB, so a worker took one every ~6 records,
//! on the thread that serves its sessions. A page written back by the kernel's flushers is
//! write-protected again, so a page faults again on its next lap too.
//!
//! **How.** After every round the writer thread asks `madvise(MADV_POPULATE_WRITE)` (Linux
//! 5.14) for the ring's next [`AHEAD`] bytes from the journal's head, outside the queue's lock:
//! the kernel takes those faults, `page_mkwrite` included, on the writer thread. Pages already
//! mapped writable cost a page-table walk. The range stops where the ring's free space ends:
//! past it are the entries the writer has not appended yet, which are mapped anyway.
//!
//! **Cost.** [`AHEAD`] bytes of the file's page cache stay mapped in the relay (counted in its
//! resident set) and marked dirty: the flushers write up to that much more per
//! `dirty_expire` period than the records alone would need. A worker that appends more than
//! [`AHEAD`] within one group-commit interval (512 KiB of ~630-byte entries per 100 ms, the
//! default: about 8,000 records a second) runs past the range and takes the faults itself
//! again, as it did before.
//!
//! **Measured.** `cargo bench --bench journal` (a ~630-byte entry into a 16 MiB journal on
//! ext4, 512 appends per chunk, the pages behind marked written between chunks), three runs
//! with `taskset -c 1`: a worker's append took 364–463 ns with its pages left to fault and
//! 79–138 ns with the range faulted in beforehand. In the relay, the release builds of the
//! commit before and of this one, alternated twice under one firehose run of the bench's
//! each (`perf record -e page-faults -c 1 -C 0 -- target/release/loadtest bench --tollgate
//! <build> --peers tollgate --only firehose --reps 1 --cpu-reps 1 --probe-reps 0
//! --no-install --out OUT`): the worker thread took 675 and 636 page faults for 2,917 and
//! 2,647 records before (512–554 in the journal's copy), 216 and 199 for 2,978 and 2,348
//! after (at most 98 in a copy, heap growth included). The writer's faults inside `madvise`
//! do not show in that count: the kernel counts only faults taken by an instruction.

use std::io;

use super::{ring_slices, Journal, HEADER, PAGE};

/// Ring bytes kept faulted in ahead of the next entry: ~800 records of a bench's ~630 bytes.
/// A quarter of the ring when that is less.
pub const AHEAD: u64 = 512 << 10;

/// Up to two address ranges of the journal's mapping (two when the range wraps around the
/// ring's end), page aligned. Made under the sink's queue lock by [`Journal::ahead`],
/// populated outside it by [`Ahead::populate`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ahead {
    /// `(address, bytes)`; an empty span has 0 bytes.
    pub(super) spans: [(usize, usize); 2],
}

impl Journal {
    /// The ring's next `min(AHEAD, capacity / 4)` bytes from the head — never past the free
    /// space, where the writer has not appended the records yet — as address ranges of the
    /// mapping, for the writer thread to fault in with [`Ahead::populate`].
    pub fn ahead(&self) -> Ahead {
        let from = self.head & !(PAGE - 1);
        let want = AHEAD.min(self.capacity / 4);
        let free_to = (self.written & !(PAGE - 1)) + self.capacity;
        let to = (self.head + want).min(free_to) & !(PAGE - 1);
        let base = self.map.as_ptr() as usize + HEADER;
        let mut out = Ahead::default();
        for (span, (at, len)) in out
            .spans
            .iter_mut()
            .zip(ring_slices(self.capacity, from, to))
        {
            *span = (base + at, len);
        }
        out
    }
}

impl Ahead {
    /// Faults the ranges in for writing (`MADV_POPULATE_WRITE`), so the worker's stores into
    /// them take no page fault. Their contents are unchanged. `EINVAL` means the kernel is
    /// older than 5.14: the caller stops asking.
    ///
    /// Call it while the journal it came from lives: the sink drops its journal only after
    /// joining the writer thread, the one caller.
    pub fn populate(&self) -> io::Result<()> {
        for &(addr, len) in &self.spans {
            if len == 0 {
                continue;
            }
            // SAFETY: madvise(2) with MADV_POPULATE_WRITE writes no memory: it faults pages in
            // as a write would, without storing. On a range that is no longer mapped it fails
            // with ENOMEM; it never dereferences anything in this process.
            let rc =
                unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_POPULATE_WRITE) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "ahead_tests.rs"]
mod tests;
