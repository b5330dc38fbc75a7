//! The process's memory policy, applied once at start by [`super::run`]: whether the heap
//! may be backed by transparent huge pages (THP), `--huge-pages off|allow` (default `off`).
//!
//! mimalloc asks for THP on its arenas (`madvise(MADV_HUGEPAGE)`), so on a kernel whose THP
//! mode is `madvise` or `always` a heap left alone grows in 2 MiB pages. Most of a relay's
//! heap is small per-session state spread over many sessions, which THP rounds up: RSS
//! moves in 2 MiB steps and holds more per idle session. Measured side by side
//! (`target/release/loadtest bench --full --peers tollgate,tollgate-thp --only paced --only
//! firehose --only idle --reps 5`, medians, KiB per idle session after a turn at 1k / 4k /
//! 9k sessions): off 2.15 / 2.16 / 2.20, allowed 4.10 / 2.97 / 2.93; CPU per frame paced
//! 10.3 vs 10.4 µs, firehose 0.56 vs 0.52, each within the other's spread (the data plane's
//! time is ~93% the kernel's, and its receive buffers are plain mappings, not heap). So
//! `off` is the default: `prctl(PR_SET_THP_DISABLE)` for the whole process before the
//! workers start (it covers every later fault). `MIMALLOC_ALLOW_THP=0` in the environment
//! has the same effect (mimalloc applies it itself).

use crate::config::HugePages;

/// What the process runs with (logged at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HugePagesOutcome {
    /// Transparent huge pages off for this process.
    Off,
    /// Left to the kernel's THP mode and mimalloc.
    Allowed,
    /// The kernel refused `PR_SET_THP_DISABLE` or `PR_GET_THP_DISABLE` (this errno): as
    /// the kernel chooses.
    Unavailable(i32),
}

impl HugePagesOutcome {
    /// Name for the start-up log.
    pub fn as_str(self) -> &'static str {
        match self {
            HugePagesOutcome::Off => "off",
            HugePagesOutcome::Allowed => "allowed",
            HugePagesOutcome::Unavailable(_) => "unavailable",
        }
    }
}

/// Apply `--huge-pages` to the whole process (its threads and every later mapping); call
/// before the workers start, so their allocations follow it. Returns what the process runs
/// with, read back from the kernel: `allow` under a parent (or `MIMALLOC_ALLOW_THP=0`) that
/// already turned THP off reports [`HugePagesOutcome::Off`].
pub fn set_huge_pages(policy: HugePages) -> HugePagesOutcome {
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    if policy == HugePages::Off {
        // SAFETY: prctl(2) with PR_SET_THP_DISABLE takes integer arguments only and changes
        // a flag of this process's memory map; no pointers are passed.
        if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
            return HugePagesOutcome::Unavailable(errno());
        }
    }
    // SAFETY: as above; PR_GET_THP_DISABLE only reads the flag (returned as the result).
    match unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) } {
        0 => HugePagesOutcome::Allowed,
        r if r > 0 => HugePagesOutcome::Off,
        _ => HugePagesOutcome::Unavailable(errno()),
    }
}
