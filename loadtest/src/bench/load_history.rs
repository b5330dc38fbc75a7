//! `loadtest bench --history`'s table of the paced targets per load-core µs: each run's
//! SUT CPU over its load core's in the same measurement window (`Metric::PacedPerLoad`,
//! `bench::table::win_per_load`), the ratio of medians per run and every repetition's
//! pair pooled over the runs.
//!
//! On this VM a peer's paced CPU per frame moves by ±10–15% between repetitions of one run
//! and follows the load core's — the generator and the mock, which do the same work per
//! paced frame whichever relay is in between — so the quotient shows a few per cent
//! between relays that the totals' medians cannot settle. The targets' verdicts stay on
//! the totals (the first table).

use std::fmt::Write as _;

use super::history_cells::{head, pooled_cell, Measured};
use super::medians::Metric;
use super::targets::PACED;

/// The paced targets per load-core µs across `runs`; empty when no run has the figures.
pub(crate) fn load_history(runs: &[Measured]) -> String {
    let metric = Metric::PacedPerLoad;
    let mut body = String::new();
    for (a, b, limit, target) in PACED {
        let mut pooled: Vec<f64> = Vec::new();
        let mut cells: Vec<String> = Vec::new();
        for (_, m) in runs {
            cells.push(match m.ratio(metric, a, b) {
                Some(x) => {
                    pooled.extend(m.paired(metric, a, b));
                    format!(
                        "×{x:.3} {}",
                        if x <= limit { "at or under" } else { "over" }
                    )
                }
                None => "—".into(),
            });
        }
        if pooled.is_empty() {
            continue;
        }
        let _ = writeln!(
            body,
            "| {target} | {} | {} |",
            cells.join(" | "),
            pooled_cell(Some(limit), &pooled)
        );
    }
    if body.is_empty() {
        return body;
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\n### The paced targets per load-core µs across {} runs\n\n\
         Each run's cell: the ratio of medians of the two peers' SUT CPU over the load \
         core's in the same measurement window (the generator and the mock on CPU 1, which \
         do the same work per paced frame whichever relay is in between, so the quotient \
         divides out the host's speed that minute; in reports written before the window \
         measured the load core, its CPU per frame over the whole run), and whether it is \
         at or under the target's limit. *pairs, all runs*: every repetition's pair of runs pooled, \
         their median ratio and how many are within the limit. The verdicts of the targets \
         stay on the totals (the first table).\n",
        runs.len()
    );
    head(&mut o, "target", runs, &["pairs, all runs"]);
    o + &body
}

#[cfg(test)]
mod tests {
    use super::super::history_cells::measured;
    use super::super::test_runs::{line, paced_run, result, with_load};
    use super::*;

    /// Two runs; in the second, tollgate ran on slower minutes of the host than the
    /// tunnel. Per load-core µs both show tollgate 2% over the tunnel.
    #[test]
    fn each_run_and_the_pooled_pairs_compare_per_load_core_us() {
        let run = |slow: f64| {
            let mut v = Vec::new();
            for rep in 0..3 {
                v.push(with_load(paced_run("tunnel", rep, 10.0, None), 20.0));
                v.push(with_load(
                    paced_run("tollgate", rep, 10.2 * slow, None),
                    20.0 * slow,
                ));
            }
            result(v)
        };
        let runs = vec![("a".to_string(), run(1.0)), ("b".to_string(), run(1.2))];
        let md = load_history(&measured(&runs));
        assert!(
            md.contains("### The paced targets per load-core µs across 2 runs"),
            "{md}"
        );
        assert_eq!(
            line(&md, "| paced: tollgate ≤ 1.05 × `--tunnel`"),
            "| paced: tollgate ≤ 1.05 × `--tunnel` | ×1.020 at or under | ×1.020 at or under \
             | ×1.020; 6 of 6 ≤ ×1.05 |"
        );
        // Targets whose peers did not run have no row; runs without the figures, no table.
        assert!(!md.contains("HAProxy"), "{md}");
        let bare = result(vec![with_load(paced_run("tunnel", 0, 10.0, None), 0.0)]);
        assert_eq!(load_history(&measured(&[("c".to_string(), bare)])), "");
    }
}
