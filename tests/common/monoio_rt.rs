//! The runtimes the vendored monoio's tests run on (`#[path]`-included by
//! `tests/monoio_time.rs` and `tests/monoio_ext.rs`): a worker's io_uring ring flags, the
//! timer driver on.

/// An io_uring runtime with a worker's ring flags, or `None` (said on stderr) where the
/// kernel has no io_uring.
pub fn uring_runtime() -> Option<monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>> {
    let mut b = io_uring::IoUring::builder();
    b.setup_single_issuer().setup_defer_taskrun();
    match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .uring_builder(b)
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("io_uring unavailable ({e}); skipped");
            None
        }
    }
}

/// An epoll (monoio's legacy driver) runtime.
pub fn epoll_runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("epoll runtime")
}
