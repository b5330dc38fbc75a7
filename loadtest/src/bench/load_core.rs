//! The load core's CPU in a run — the generator and the mock on CPU 1 — and a relay's CPU
//! over it: the paced cost with the host's speed divided out (loadtest/BENCH.md "Per
//! load-core µs").

use super::window_cpu::{run_report, win_us_frame, window};
use super::Sample;

/// The load core's CPU µs per frame the generator received (generator and mock on CPU 1,
/// over the whole run). Paced, it does the same work per frame whichever relay is in
/// between — one frame per wake-up on each side, and `direct`, with no relay, lands with
/// the relays — so it moves only with how fast the host runs both cores that minute.
/// Over the whole run because `direct` has no measurement window; the quotient
/// ([`win_per_load`]) uses the window's.
pub(crate) fn load_us_frame(s: &Sample) -> Option<f64> {
    let r = run_report(s)?;
    let frames = r.counts.frames_received;
    (frames > 0 && r.load_cpu_s > 0.0).then(|| r.load_cpu_s * 1e6 / frames as f64)
}

/// The SUT's CPU over the load core's, both over the measurement window
/// (`WindowReport::load_cpu_s`: the same seconds, the same frames); `None` in reports
/// written before the window measured the load core.
pub(crate) fn per_window_load(s: &Sample) -> Option<f64> {
    let w = window(s)?;
    let load = w.load_cpu_s.filter(|&c| c > 0.0)?;
    Some(w.cpu_s / load)
}

/// The SUT's CPU over the load core's: a relay's cost with the host's speed that minute
/// divided out. Over the measurement window where the run measured the load core there
/// ([`per_window_load`]); in reports written before, the window's CPU per frame over the
/// whole run's [`load_us_frame`].
pub(crate) fn win_per_load(s: &Sample) -> Option<f64> {
    per_window_load(s).or_else(|| Some(win_us_frame(s)? / load_us_frame(s)?))
}
