//! Signals, taken synchronously by the main thread: SIGTERM/SIGINT stop, SIGHUP reloads.

/// The signals the main thread takes synchronously: SIGTERM, SIGINT, SIGHUP.
fn control_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a zeroed sigset in place.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Block SIGTERM/SIGINT/SIGHUP in this thread (and the threads it spawns later), so
/// [`wait_signal`] can take them synchronously.
pub fn block_signals() {
    let set = control_signals();
    // SAFETY: pthread_sigmask reads a valid sigset.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Wait for SIGTERM/SIGINT (→ `true`: shut down) or SIGHUP (→ `false`: reload).
pub fn wait_signal() -> bool {
    let set = control_signals();
    let mut sig: libc::c_int = 0;
    // SAFETY: sigwait reads a valid sigset and writes the signal number into `sig`.
    unsafe {
        libc::sigwait(&set, &mut sig);
    }
    sig != libc::SIGHUP
}
