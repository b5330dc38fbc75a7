//! `loadtest bench --history`'s third table: each relay's own hop in every run — from its
//! thread being switched in to the first frame it forwards, in wake-ups that forwarded one
//! frame (the `hop@…` case, `gen::hops`) — and against nginx's, repetition pair by
//! repetition pair, every run pooled.
//!
//! Echo latency on this host moves by tens of µs between repetitions (the load core's
//! queue, the host's steal), so it cannot show whether one relay's own work per frame is a
//! µs or two longer than another's. The hop can: every wake-up is a sample, and nothing but
//! the relay's own thread is in it.

use std::fmt::Write as _;

use super::cases::HOP_RATE;
use super::echo_pairs::{diff_cell, pairs};
use super::peers::Peer;
use super::sections::hops_of;
use super::table::{fmt, samples, stat};
use super::{BenchResult, Sample};

/// A run's hop in wake-ups that forwarded exactly one frame: p50, µs.
fn one_frame_hop(s: &Sample) -> Option<f64> {
    hops_of(s)?.single_p50_us
}

/// The hop of every peer that traced one, per run (the median of its repetitions) and
/// against nginx ("median difference; k of n" pairs at or below nginx's). Empty when no
/// run traced a hop.
pub(crate) fn hop_history(runs: &[(String, BenchResult)]) -> String {
    let case = format!("hop@{HOP_RATE}");
    let mut body = String::new();
    // In table order; a peer that traced no hop (direct) has no row.
    for peer in Peer::ALL {
        let per_run: Vec<Option<f64>> = runs
            .iter()
            .map(|(_, r)| {
                let v: Vec<f64> = samples(r, &case, peer).filter_map(one_frame_hop).collect();
                Some(stat(&v)?.median)
            })
            .collect();
        if per_run.iter().all(Option::is_none) {
            continue;
        }
        let cells: Vec<String> = per_run
            .iter()
            .map(|m| m.map_or_else(|| "—".into(), |m| format!("{m:.1}")))
            .collect();
        let against = if peer == Peer::Nginx {
            None
        } else {
            let d: Vec<f64> = pairs(runs, &case, peer)
                .filter_map(|(s, n)| Some(one_frame_hop(s)? - one_frame_hop(n)?))
                .collect();
            diff_cell(&d)
        };
        let _ = writeln!(
            body,
            "| {} | {} | {} |",
            peer.name(),
            cells.join(" | "),
            against.unwrap_or_else(|| "—".into())
        );
    }
    if body.is_empty() {
        return body;
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\n### The relays' own hop across {} runs\n\n\
         Each run's cell: the p50 hop, µs, from the relay's thread being switched in to \
         the first frame it forwards, over the wake-ups that forwarded one frame (echo: 16 \
         conns, 200 B at {}/s, traced with `perf`), the median of the run's repetitions. \
         *against nginx*: over every repetition's pair (the peer's run and nginx's of the \
         same repetition), every run pooled, the median of the peer's hop minus nginx's, \
         µs, and in how many pairs the peer's was at or below nginx's. Every wake-up is a \
         sample and nothing but the relay's own thread is in it, so a difference of a µs \
         shows here that echo latency on this host cannot show.\n",
        runs.len(),
        fmt(HOP_RATE)
    );
    let _ = write!(o, "| peer |");
    for (name, _) in runs {
        let _ = write!(o, " {name} |");
    }
    let _ = writeln!(o, " against nginx |");
    let _ = writeln!(o, "|---|{}---|", "---|".repeat(runs.len()));
    o.push_str(&body);
    o
}

#[cfg(test)]
mod tests {
    use super::super::test_runs::{echo_run, hop_run, line, result};
    use super::*;

    #[test]
    fn each_peers_hop_per_run_and_its_pairs_against_nginx_pooled() {
        // Run a: tollgate 2 µs over nginx in both reps; run b: 1 µs over in rep 0, 0.4 under
        // in rep 1. The floor traced only in run a.
        let a = result(vec![
            hop_run("tollgate", 0, 15.0),
            hop_run("tollgate", 1, 16.0),
            hop_run("nginx", 0, 13.0),
            hop_run("nginx", 1, 14.0),
            hop_run("floor", 0, 12.0),
            hop_run("floor", 1, 14.6),
        ]);
        let b = result(vec![
            hop_run("tollgate", 0, 14.0),
            hop_run("tollgate", 1, 12.6),
            hop_run("nginx", 0, 13.0),
            hop_run("nginx", 1, 13.0),
        ]);
        let md = hop_history(&[("a".into(), a), ("b".into(), b)]);
        assert!(md.contains("### The relays' own hop across 2 runs"), "{md}");
        assert!(md.contains("| peer | a | b | against nginx |"), "{md}");
        // Per run: the median of the reps. Pooled: differences +2, +2, +1, -0.4.
        assert_eq!(
            line(&md, "| tollgate |"),
            "| tollgate | 15.5 | 13.3 | +1.5; 1 of 4 |"
        );
        assert_eq!(line(&md, "| nginx |"), "| nginx | 13.5 | 13.0 | — |");
        // Floor: -1 and +0.6 in run a; no hop in run b.
        assert_eq!(
            line(&md, "| floor |"),
            "| floor | 13.3 | — | -0.2; 1 of 2 |"
        );
        assert!(
            !md.contains("| tunnel |"),
            "no row for a peer without a hop:\n{md}"
        );
    }

    #[test]
    fn runs_without_a_traced_hop_add_no_table() {
        let r = result(vec![echo_run("tollgate", 2000.0, 0, 300.0, 0.4)]);
        assert_eq!(hop_history(&[("a".into(), r)]), "");
    }
}
