//! The paced targets' rows compared per load-core µs (`Metric::PacedPerLoad`), beside
//! their verdicts on the totals.

use std::fmt::Write as _;

use super::{compare, Medians, Metric, Peer, Row, Verdict};

/// `row` (a paced target `a ≤ limit × b`) with the same comparison made on each run's
/// SUT CPU over the load core's CPU in the same measurement window
/// ([`Metric::PacedPerLoad`]). Paced, the load core (generator and mock) does the same work
/// per frame whichever relay is in between, so its cost per frame moves only with how fast
/// the host runs that minute — and the relays' costs move with it (on this VM a peer's
/// paced reps spread by ±10–15% within one run, and its runs' CPU per frame follows the
/// load core's: `loadtest/BENCH-history.md`, "Paced CPU follows the load core"). Dividing
/// it out leaves the relay's own cost; the report's paragraph above
/// the table gives the load core's figures per peer, which is how a reader checks that it
/// did not depend on the relay in that run. The verdict stays on the totals, as the
/// issue states the target. A run without the load core's figures leaves the row alone.
pub(super) fn with_load_control(mut row: Row, m: &Medians, a: Peer, b: Peer, limit: f64) -> Row {
    if row.verdict == Verdict::NotMeasured {
        return row;
    }
    let metric = Metric::PacedPerLoad;
    let (Some(sa), Some(sb)) = (m.get(metric, a), m.get(metric, b).filter(|s| s.min > 0.0)) else {
        return row;
    };
    let c = compare(sa, sb, &m.paired(metric, a, b), limit);
    let _ = write!(
        row.measured,
        "; per load-core µs (the host's speed divided out): ×{:.3} ({}): {} ×{limit}{}",
        c.ratio,
        c.spread,
        if c.verdict == Verdict::Met {
            "at or under"
        } else {
            "over"
        },
        if c.settled {
            ""
        } else {
            ", within the reps' spread"
        }
    );
    row
}
