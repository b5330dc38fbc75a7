//! A session's state brought into cache before its completion is handled.

use super::conn::Conn;

/// Ask the CPU for every cache line of a session's state at once.
///
/// Under paced traffic each completion belongs to a different session, whose state went
/// cold since its last frame; walking, tapping and metering it touch lines all over the
/// `Conn` one after another, each load waiting for the one before (a profile of the
/// paced bench puts a third of `Walker::walk`'s samples on its first load of `self`).
/// Prefetching them together overlaps those misses; the dispatcher also prefetches the
/// next completion's session while it runs the current one.
///
/// Measured (`perf record -C 0 -F 10000 -g -- target/release/loadtest bench --peers
/// tollgate --only paced --reps 1 --tollgate BIN`, four alternations): user space 8.54% of
/// the worker's samples without, 7.70% with (`Walker::walk` 1.26 → 0.48%, `Conn::on_recv`
/// 1.43 → 0.96%, `SessionCore::on_bytes` 0.49 → 0.15%); CPU per paced frame, six runs each
/// in ABBA order, median 20.8 → 20.2 µs (inside the VM's spread). Firehose, where the
/// sessions stay hot, unchanged. The first touch of each session still waits.
#[inline]
pub(super) fn prefetch(conn: &Conn) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let base = (conn as *const Conn).cast::<i8>();
        for off in (0..std::mem::size_of::<Conn>()).step_by(64) {
            // SAFETY: a prefetch is a hint that never faults; the address is inside `conn`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.add(off)) };
        }
    }
    // Elsewhere a hint only (stable Rust has no portable prefetch); nothing to do.
    #[cfg(not(target_arch = "x86_64"))]
    let _ = conn;
}
