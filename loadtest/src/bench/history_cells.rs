//! What `--history`'s tables share (`history`, `load_history`, `load_follow`): each run's
//! medians, computed once per run, and the cells and heading rows — in their own module so
//! those tables import them from here rather than from each other.

use std::fmt::Write as _;

use super::medians::Medians;
use super::table::stat;
use super::BenchResult;

/// A run as the history's tables read it: its label and its medians.
pub(super) type Measured = (String, Medians);

/// Each run's medians, once per run, for every table that compares them.
pub(super) fn measured(runs: &[(String, BenchResult)]) -> Vec<Measured> {
    runs.iter()
        .map(|(name, r)| (name.clone(), Medians::of(r)))
        .collect()
}

/// The pooled pairs of a ratio target: "×median; k of n ≤ ×limit", or "—" without pairs.
pub(super) fn pooled_cell(limit: Option<f64>, pairs: &[f64]) -> String {
    let (Some(limit), Some(st)) = (limit, stat(pairs)) else {
        return "—".into();
    };
    let k = pairs.iter().filter(|&&x| x <= limit).count();
    format!("×{:.3}; {k} of {} ≤ ×{limit}", st.median, pairs.len())
}

/// A table's heading row and rule: `first` (what the rows are), a column per run, then
/// `tail`'s columns.
pub(super) fn head(o: &mut String, first: &str, runs: &[Measured], tail: &[&str]) {
    let _ = write!(o, "| {first} |");
    for name in runs
        .iter()
        .map(|(n, _)| n.as_str())
        .chain(tail.iter().copied())
    {
        let _ = write!(o, " {name} |");
    }
    let _ = writeln!(o, "\n|---|{}", "---|".repeat(runs.len() + tail.len()));
}
