//! What a run says about the SUT's CPU, read for the tables and the targets: CPU per frame
//! over the whole run and inside the measurement window, per thread group, and the perf
//! probes' syscalls per frame and user/kernel split.
//!
//! A CPU case's *probe repetition* ([`Sample::probe_rep`]) is the one run per peer with
//! `perf stat` and `perf record` attached to the SUT ([`crate::gen::Probes::Split`]). The
//! probes cost the SUT CPU of their own — a perf context switched with every wake-up, a
//! tracepoint on every syscall, so more for a relay that wakes and calls the kernel more
//! (loadtest/BENCH.md, "perf's own cost, and probe repetitions") — so everything read here
//! but the probes' own figures leaves that run out: [`run_report`] and [`window`] see no
//! probe repetition, [`probed_window`] sees every run.

use super::Sample;
use crate::gen::window::WindowReport;
use crate::gen::Report;

/// The generator's report of a run whose figures count: `None` for a probe repetition.
pub(crate) fn run_report(s: &Sample) -> Option<&Report> {
    s.report.as_ref().filter(|_| !s.probe_rep)
}

/// The measurement window of a run whose figures count (no probe repetition).
pub(crate) fn window(s: &Sample) -> Option<&WindowReport> {
    run_report(s)?.sut.as_ref()?.window.as_ref()
}

/// The measurement window of any run, a probe repetition's included: for the probes' own
/// figures, which only a probed window has.
fn probed_window(s: &Sample) -> Option<&WindowReport> {
    s.report.as_ref()?.sut.as_ref()?.window.as_ref()
}

/// SUT CPU µs per frame over the whole run.
pub(crate) fn sut_us_frame(s: &Sample) -> Option<f64> {
    run_report(s)?.sut.as_ref()?.cpu_us_per_frame
}

/// SUT CPU µs per frame inside the measurement window.
pub(crate) fn win_us_frame(s: &Sample) -> Option<f64> {
    window(s)?.cpu_us_per_frame
}

/// Syscalls per frame inside the window (`perf stat`).
pub(crate) fn win_syscalls(s: &Sample) -> Option<f64> {
    probed_window(s)?.syscalls_per_frame
}

/// The window's CPU µs per frame (its clock) divided into (user space, kernel) in the
/// proportion of the samples. The samples themselves come to 96–99% of the clock and span
/// the window plus perf's start and stop; their proportion is what they measure well. The
/// clock is the probed run's own, so the split adds up to that run's total.
pub(crate) fn win_split(s: &Sample) -> Option<(f64, f64)> {
    let w = probed_window(s)?;
    let (u, k) = (w.user_us_per_frame?, w.kernel_us_per_frame?);
    let total = w.cpu_us_per_frame?;
    (u + k > 0.0).then(|| (total * u / (u + k), total * k / (u + k)))
}

/// The user-space part of [`win_split`].
pub(crate) fn win_user(s: &Sample) -> Option<f64> {
    win_split(s).map(|(u, _)| u)
}

/// The kernel part of [`win_split`].
pub(crate) fn win_kernel(s: &Sample) -> Option<f64> {
    win_split(s).map(|(_, k)| k)
}

/// CPU µs per frame of the busiest thread group (the workers: `tollgate-w`, `nginx`,
/// `haproxy`).
pub(crate) fn win_main_thread(s: &Sample) -> Option<f64> {
    window(s)?.threads.first()?.cpu_us_per_frame
}

/// CPU µs per frame of every other thread group (tollgate: the usage-log writer).
pub(crate) fn win_helpers(s: &Sample) -> Option<f64> {
    let w = window(s)?;
    let rest: f64 = w.threads.iter().skip(1).map(|g| g.cpu_s).sum();
    (w.frames > 0).then(|| rest * 1e6 / w.frames as f64)
}
