//! The ring's registered (fixed) file table: each io_uring session's two sockets are
//! installed in it when the session comes to the data plane, and its receives and sends
//! name them by table index instead of by descriptor.
//!
//! Why: an SQE that names a socket by descriptor makes the kernel look the descriptor up
//! and take a reference on its file (`fget`) when the operation is issued, and drop it
//! (`fput`) when the operation ends — once per send and once per armed receive. A fixed
//! file was looked up once, at install.
//!
//! Measured under the paced bench (one frame per wake-up, so one send per frame; `perf
//! record -C 0 -g -F 4000 -- target/release/loadtest bench --tollgate BIN --peers tollgate
//! --only paced --reps 1`): the file lookup (`fget`, `fput`, `io_file_get_normal`) was 269
//! of the worker's 17,088 samples (1.57%) before, 40 of 18,399 (0.22%) with the table; but
//! `sock_from_file`, the next to touch the socket's `struct file`, went from 170 to 335
//! samples — the lookup's cache miss moved there — so the net is ~0.4% of the worker.
//! CPU per frame cannot resolve that: six alternated pairs of one-rep runs (paced and
//! firehose) gave with/without ratios of 0.95–1.13 (median 1.013) and 0.88–1.07 (median
//! 1.021).
//!
//! The price: two `io_uring_register` calls per session (install, remove), and a table of
//! `2 × --max-sessions` entries per worker in the kernel (8 bytes each: 160 KB at the
//! 10,000 sessions a 20,000-file process can hold). A kernel without sparse tables (before
//! 5.19), or one that refuses the table, leaves every session on descriptors; so does a
//! slot beyond the table.
//!
//! **Order on close**: an installed entry holds the socket's file, so `close(2)` of the
//! descriptor alone would neither release the socket nor, for a socket whose write side is
//! still open, send its FIN. [`remove`] comes first, and only once no operation of the
//! session is in flight (an in-flight operation holds its own reference anyway).

use std::os::fd::RawFd;

/// The kernel's largest table (`IORING_MAX_FIXED_FILES`).
const KERNEL_MAX: usize = 1 << 20;

/// Table entries for `sessions` sessions: two per session, within the open-file limit
/// (the kernel refuses a larger table) and the kernel's own maximum.
pub(super) fn entries(sessions: usize, nofile: usize) -> u32 {
    let n = sessions.saturating_mul(2).min(nofile).min(KERNEL_MAX);
    // Whole sessions only.
    (n & !1) as u32
}

/// The soft open-file limit (1024 if it cannot be read).
fn nofile() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    }
}

/// Register a sparse table for `sessions` sessions on this thread's io_uring. Returns its
/// entries, or 0 (logged) when there is no table.
pub(super) fn register(sessions: usize) -> u32 {
    let n = entries(sessions, nofile());
    if n == 0 {
        return 0;
    }
    match monoio::ext::with_uring(|u| u.submitter().register_files_sparse(n)) {
        Some(Ok(())) => {
            tracing::debug!(entries = n, "registered file table");
            n
        }
        Some(Err(e)) => {
            tracing::warn!(entries = n, error = %e, "no registered file table; sessions name their sockets by descriptor");
            0
        }
        None => 0,
    }
}

/// Install a session's sockets (client, upstream) at slot `slot`'s entries of a table of
/// `files` entries. `Some(first entry)`, or `None` when the slot is beyond the table or the
/// kernel refused (the session then uses descriptors).
pub(super) fn install(files: u32, slot: u32, fds: [RawFd; 2]) -> Option<u32> {
    let base = slot.checked_mul(2)?;
    if base.checked_add(2)? > files {
        return None;
    }
    match monoio::ext::with_uring(|u| u.submitter().register_files_update(base, &fds)) {
        Some(Ok(2)) => Some(base),
        Some(Ok(n)) => {
            // Partly installed: take back what went in.
            tracing::debug!(slot, installed = n, "file table update incomplete");
            remove(base);
            None
        }
        Some(Err(e)) => {
            tracing::debug!(slot, error = %e, "file table update refused");
            None
        }
        None => None,
    }
}

/// Clear the two entries from `base`, releasing the table's hold on the sockets. Must run
/// before their descriptors are closed.
pub(super) fn remove(base: u32) {
    match monoio::ext::with_uring(|u| u.submitter().register_files_update(base, &[-1, -1])) {
        Some(Ok(_)) | None => {}
        Some(Err(e)) => {
            // Cannot happen for entries we installed; the sockets are then released when
            // the entries are next overwritten.
            tracing::error!(base, error = %e, "could not clear file table entries");
        }
    }
}

#[cfg(test)]
#[path = "fixed_files_tests.rs"]
mod tests;
