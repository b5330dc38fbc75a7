//! Giving the process's freed heap back to the kernel after a burst.
//!
//! The binary's allocator is mimalloc (`src/main.rs`). It keeps freed pages for reuse and
//! returns them to the kernel (`madvise`) only after a purge delay (1 s in mimalloc 3), and
//! only when some later allocator call on that thread or arena notices the delay is over. A
//! relay that goes quiet after a burst makes no such call, so what the burst freed stays
//! resident for as long as it is quiet. [`release_freed`] runs that purge now; the usage-log
//! writer calls it when it has shrunk its buffers after a burst and has nothing queued
//! (see `metering::sink::writer`). It is never called on a worker's hot path.
//!
//! Without mimalloc as the global allocator (the test binaries use the system allocator) it
//! only collects mimalloc's own empty heap: harmless.

/// Returns the calling thread's free heap pages and every arena range whose purge is due or
/// pending to the kernel (`mi_collect(true)`). It walks the thread's heap and purges
/// (`madvise`); libmimalloc-sys's docs warn that a forced collect "can be expensive", so
/// call it off the hot path, at most once per quiet period. Its cost was not measured on
/// its own; the writer calls it only after a trim.
pub fn release_freed() {
    // SAFETY: `mi_collect` takes a plain bool and only walks mimalloc's own structures for
    // the calling thread's heap and the shared arenas; mimalloc exports it for any thread
    // to call at any time (libmimalloc-sys: "Eagerly free memory").
    unsafe { libmimalloc_sys::mi_collect(true) }
}
