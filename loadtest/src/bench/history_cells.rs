//! Cells and heading rows shared by `--history`'s tables (`history`, `load_history`), in
//! their own module so those tables import them from here rather than from each other.

use std::fmt::Write as _;

use super::table::stat;
use super::BenchResult;

/// The pooled pairs of a ratio target: "×median; k of n ≤ ×limit", or "—" without pairs.
pub(super) fn pooled_cell(limit: Option<f64>, pairs: &[f64]) -> String {
    let (Some(limit), Some(st)) = (limit, stat(pairs)) else {
        return "—".into();
    };
    let k = pairs.iter().filter(|&&x| x <= limit).count();
    format!("×{:.3}; {k} of {} ≤ ×{limit}", st.median, pairs.len())
}

/// A table's heading row and rule: "target", a column per run, then `tail`'s columns.
pub(super) fn head(o: &mut String, runs: &[(String, BenchResult)], tail: &[&str]) {
    let _ = write!(o, "| target |");
    for name in runs
        .iter()
        .map(|(n, _)| n.as_str())
        .chain(tail.iter().copied())
    {
        let _ = write!(o, " {name} |");
    }
    let _ = writeln!(o, "\n|---|{}", "---|".repeat(runs.len() + tail.len()));
}
