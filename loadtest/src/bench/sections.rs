//! The sweep, hop, usage-accuracy and error sections of the Markdown report, and the
//! sweep plot.

use std::fmt::Write as _;

use super::cases::Kind;
use super::peers::Peer;
use super::svg::{self, Series};
use super::table::{col, fmt, lat, samples, stat, table, window, Compare};
use super::{BenchResult, Sample};

/// The SUT's traced hop.
pub(crate) fn hops_of(s: &Sample) -> Option<&crate::gen::hops::HopStats> {
    window(s)?.hops.as_ref()
}

/// The table of the relays' own hops (the `hop@…` case), when the run traced them.
pub(crate) fn hops(o: &mut String, r: &BenchResult, peers: &[Peer]) {
    let hop_case = format!("hop@{}", super::cases::HOP_RATE);
    let hop = [
        col(
            "hop p50 µs",
            &hop_case,
            |s| Some(hops_of(s)?.p50_us),
            Compare::Ratio,
            false,
        ),
        col(
            "hop p90 µs",
            &hop_case,
            |s| Some(hops_of(s)?.p90_us),
            Compare::Ratio,
            false,
        ),
        col(
            "one-frame wake-ups: hop p50 µs",
            &hop_case,
            |s| hops_of(s)?.single_p50_us,
            Compare::Ratio,
            false,
        ),
        col(
            "frames per wake-up",
            &hop_case,
            |s| Some(hops_of(s)?.frames_per_wakeup),
            Compare::None,
            false,
        ),
        col(
            "wake-ups traced",
            &hop_case,
            |s| Some(hops_of(s)?.wakeups as f64),
            Compare::None,
            false,
        ),
    ];
    if r.samples.iter().any(|s| s.case == hop_case) {
        table(o, r, peers, &format!("The relay's own hop, µs: from its thread being switched in to the first frame it forwards, over every wake-up of the window (echo: 16 conns, 200 B at {}/s; `perf record -e sched:sched_switch -e net:net_dev_queue`; excludes the vCPU's wake-up latency and the peers' CPU)", fmt(super::cases::HOP_RATE)), &hop);
    }
}

/// Highest offered sweep rate the peer sustained (achieved ≥ 99%) in `rep`.
fn max_sustained(r: &BenchResult, peer: Peer, rep: usize) -> Option<f64> {
    r.samples
        .iter()
        .filter(|s| s.kind == Kind::Sweep && s.peer == peer && s.rep == rep)
        .filter_map(|s| s.report.as_ref())
        .filter_map(|rep| rep.offered_rate.filter(|o| rep.achieved_rate >= 0.99 * o))
        .max_by(f64::total_cmp)
}

/// Where the load side queues without any relay: `direct`'s echo p50 at a rate above the
/// one of its lowest p50 in the sweep, more than this many times that lowest. There the load
/// core (generator and mock on one CPU) is saturated, and every peer's latency is mostly
/// that queue's. (Below that rate a higher p50 is the other way round: an idle load core
/// waking for each frame — ~100 µs at 2k/s on this VM against ~50 at 8k/s.)
pub(crate) const LOAD_QUEUE_FACTOR: f64 = 2.0;

/// A sweep rate where the load side queues without any relay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LoadQueue {
    /// The offered rate, frames/s.
    pub rate: f64,
    /// `direct`'s echo p50 there, µs.
    pub p50: f64,
    /// The rate of `direct`'s lowest p50.
    pub low_rate: f64,
    /// `direct`'s lowest p50 of the sweep, µs.
    pub low: f64,
}

/// The load-bound rates among `direct`'s `(rate, p50 µs)`: above the rate of the lowest p50,
/// a p50 over [`LOAD_QUEUE_FACTOR`] × that lowest.
pub(crate) fn load_queues(direct: &[(f64, f64)]) -> Vec<LoadQueue> {
    let Some(&(low_rate, low)) = direct.iter().min_by(|a, b| a.1.total_cmp(&b.1)) else {
        return Vec::new();
    };
    direct
        .iter()
        .filter(|&&(rate, p50)| rate > low_rate && low > 0.0 && p50 > LOAD_QUEUE_FACTOR * low)
        .map(|&(rate, p50)| LoadQueue {
            rate,
            p50,
            low_rate,
            low,
        })
        .collect()
}

/// Writes the sweep table (p50 / p99 by offered rate, max sustained rate), then the load
/// core's utilisation at each rate and the rates where `direct` shows it queueing.
pub(crate) fn sweep(o: &mut String, r: &BenchResult, peers: &[Peer]) {
    let _ = writeln!(o, "\n### Latency sweep (echo p50 / p99 µs by offered frames/s, medians of {} repetitions; a curve stops once achieved < 99% of offered)\n", r.sweep_reps());
    let _ = write!(o, "| peer | max sustained |");
    for rate in &r.sweep_rates {
        let _ = write!(o, " {}/s |", fmt(*rate));
    }
    let _ = write!(o, "\n|---|---|");
    for _ in &r.sweep_rates {
        o.push_str("---|");
    }
    o.push('\n');
    for p in peers {
        let ms: Vec<f64> = (0..r.sweep_reps())
            .filter_map(|rep| max_sustained(r, *p, rep))
            .collect();
        let _ = write!(
            o,
            "| {} | {} |",
            p.name(),
            stat(&ms).map_or("—".into(), |s| fmt(s.median))
        );
        for rate in &r.sweep_rates {
            let case = format!("sweep@{rate}");
            let p50: Vec<f64> = samples(r, &case, *p)
                .filter_map(|s| lat(s, "echo", |l| l.p50_us))
                .collect();
            let p99: Vec<f64> = samples(r, &case, *p)
                .filter_map(|s| lat(s, "echo", |l| l.p99_us))
                .collect();
            match (stat(&p50), stat(&p99)) {
                (Some(a), Some(b)) => {
                    let _ = write!(o, " {} / {} |", fmt(a.median), fmt(b.median));
                }
                _ => o.push_str(" — |"),
            }
        }
        o.push('\n');
    }
    let mut load = Vec::new();
    let mut direct = Vec::new();
    for rate in &r.sweep_rates {
        let case = format!("sweep@{rate}");
        let util: Vec<f64> = r
            .samples
            .iter()
            .filter(|s| s.case == case)
            .filter_map(|s| Some(s.report.as_ref()?.load_cpu_util * 100.0))
            .collect();
        if let Some(u) = stat(&util) {
            load.push(format!("{}/s {:.0}%", fmt(*rate), u.median));
        }
        let p50: Vec<f64> = samples(r, &case, Peer::Direct)
            .filter_map(|s| lat(s, "echo", |l| l.p50_us))
            .collect();
        if let Some(d) = stat(&p50) {
            direct.push((*rate, d.median));
        }
    }
    if !load.is_empty() {
        let _ = write!(
            o,
            "\nLoad core (generator + mock, CPU 1), median over every peer's runs: {}.",
            load.join(", ")
        );
        let bound: Vec<String> = load_queues(&direct)
            .iter()
            .map(|q| format!("{}/s (direct p50 {} µs)", fmt(q.rate), fmt(q.p50)))
            .collect();
        if !bound.is_empty() {
            let _ = write!(
                o,
                " *Load-bound* (the load side queues without any relay: at a rate above that \
                 of direct's lowest p50, direct's p50 over {LOAD_QUEUE_FACTOR}× that lowest): {}.",
                bound.join(", ")
            );
        }
        o.push('\n');
    }
    steal(o, r, peers);
}

/// Host steal in the sweep: per peer and rate, the median over repetitions of each CPU's
/// steal (the hypervisor running something else while that vCPU had work), relay core /
/// load core. On a shared host a run's echo latency rises with it (loadtest/BENCH-history.md,
/// "16k/s and the host's steal"). Nothing when no run recorded it.
fn steal(o: &mut String, r: &BenchResult, peers: &[Peer]) {
    let cpu = |s: &Sample, i: usize| s.report.as_ref()?.host_steal.get(i).map(|f| f * 100.0);
    if !r
        .samples
        .iter()
        .any(|s| s.case.starts_with("sweep@") && cpu(s, 0).is_some())
    {
        return;
    }
    let _ = writeln!(
        o,
        "\nHost steal during the sweep, % of each run (the hypervisor ran something else \
         while the vCPU had work; relay core CPU 0 / load core CPU 1, medians):\n"
    );
    let _ = write!(o, "| peer |");
    for rate in &r.sweep_rates {
        let _ = write!(o, " {}/s |", fmt(*rate));
    }
    let _ = writeln!(o, "\n|---|{}", "---|".repeat(r.sweep_rates.len()));
    for p in peers {
        let _ = write!(o, "| {} |", p.name());
        for rate in &r.sweep_rates {
            let case = format!("sweep@{rate}");
            let by_cpu = |i: usize| -> Vec<f64> {
                samples(r, &case, *p).filter_map(|s| cpu(s, i)).collect()
            };
            match (stat(&by_cpu(0)), stat(&by_cpu(1))) {
                (Some(a), Some(b)) => {
                    let _ = write!(o, " {:.1} / {:.1} |", a.median, b.median);
                }
                _ => o.push_str(" — |"),
            }
        }
        o.push('\n');
    }
}

/// Usage accuracy over every run that checked its usage log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Accuracy {
    /// Responses whose record matched the mock's ledger.
    pub matched: usize,
    /// Responses in the ledger (or records, when there are more).
    pub ledger: usize,
    /// Runs checked.
    pub runs: usize,
}

/// The run's usage accuracy (`None` when no run checked a usage log).
pub(crate) fn accuracy(r: &BenchResult) -> Option<Accuracy> {
    let checks: Vec<_> = r.samples.iter().filter_map(|s| s.usage.as_ref()).collect();
    if checks.is_empty() {
        return None;
    }
    Some(Accuracy {
        matched: checks.iter().map(|u| u.matched).sum(),
        ledger: checks.iter().map(|u| u.ledger.max(u.records)).sum(),
        runs: checks.len(),
    })
}

/// Writes the usage-accuracy and error sections.
pub(crate) fn usage_and_errors(o: &mut String, r: &BenchResult) {
    let _ = writeln!(
        o,
        "\n### Usage accuracy (tollgate: usage log vs the mock's ledger, every tollgate run)\n"
    );
    let checks: Vec<_> = r
        .samples
        .iter()
        .filter_map(|s| s.usage.as_ref().map(|u| (s, u)))
        .collect();
    let a = accuracy(r).unwrap_or_default();
    let acc = if a.ledger == 0 {
        1.0
    } else {
        a.matched as f64 / a.ledger as f64
    };
    let _ = writeln!(
        o,
        "usage accuracy {acc:.3} ({}/{} responses over {} runs)",
        a.matched, a.ledger, a.runs
    );
    for (s, u) in checks
        .iter()
        .filter(|(_, u)| !u.problems.is_empty())
        .take(5)
    {
        let _ = writeln!(o, "- {} rep{}: {}", s.case, s.rep, u.problems.join("; "));
    }
    let errors: Vec<String> = r
        .samples
        .iter()
        .filter_map(|s| {
            let n = s.report.as_ref().map_or(0, |r| r.counts.errors);
            match (&s.error, n) {
                (Some(e), _) => Some(format!("{} {} rep{}: {e}", s.case, s.peer.name(), s.rep)),
                (None, n) if n > 0 => Some(format!(
                    "{} {} rep{}: {n} errors ({})",
                    s.case,
                    s.peer.name(),
                    s.rep,
                    s.report
                        .as_ref()
                        .map(|r| r.error_samples.join("; "))
                        .unwrap_or_default()
                )),
                _ => None,
            }
        })
        .collect();
    let _ = writeln!(
        o,
        "\n### Errors\n\n{}",
        if errors.is_empty() {
            "none".to_string()
        } else {
            errors
                .iter()
                .map(|e| format!("- {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
    );
}

/// The sweep plot: median p50/p99 per offered rate, one series per peer.
pub fn sweep_plot(r: &BenchResult, peers: &[Peer]) -> String {
    let series: Vec<Series> = peers
        .iter()
        .map(|p| Series {
            label: p.name().to_string(),
            points: r
                .sweep_rates
                .iter()
                .filter_map(|rate| {
                    let case = format!("sweep@{rate}");
                    let p50: Vec<f64> = samples(r, &case, *p)
                        .filter_map(|s| lat(s, "echo", |l| l.p50_us))
                        .collect();
                    let p99: Vec<f64> = samples(r, &case, *p)
                        .filter_map(|s| lat(s, "echo", |l| l.p99_us))
                        .collect();
                    Some((*rate, stat(&p50)?.median, stat(&p99)?.median))
                })
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    svg::sweep_svg(
        "echo latency vs offered rate (200 B frames, 16 connections)",
        &series,
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_runs::{echo_run, result, with_steal};
    use super::*;

    #[test]
    fn the_sweep_says_how_busy_the_load_core_was_and_where_direct_queues() {
        let r = result(vec![
            echo_run("direct", 2000.0, 0, 130.0, 0.20),
            echo_run("tollgate", 2000.0, 0, 221.0, 0.30),
            echo_run("direct", 16000.0, 0, 59.0, 0.88),
            echo_run("tollgate", 16000.0, 0, 163.0, 0.92),
            echo_run("direct", 32000.0, 0, 372.0, 0.99),
            echo_run("tollgate", 32000.0, 0, 546.0, 0.97),
            echo_run("nginx", 32000.0, 0, 463.0, 0.98),
        ]);
        let mut o = String::new();
        sweep(&mut o, &r, &[Peer::Direct, Peer::Tollgate, Peer::Nginx]);
        assert!(
            o.contains("| tollgate | 32.0k | 221 / 884 | 163 / 652 | 546 / 2184 |"),
            "{o}"
        );
        assert!(
            o.contains("median over every peer's runs: 2000/s 25%, 16.0k/s 90%, 32.0k/s 98%."),
            "{o}"
        );
        // 372 > 2 × 59 at a rate above 16k/s; 130 is too, but at a rate below it (an idle
        // load core, not a queue).
        assert!(
            o.contains("that lowest): 32.0k/s (direct p50 372 µs).\n"),
            "{o}"
        );
        // Without direct, no rate is called load-bound.
        let r = result(vec![echo_run("tollgate", 32000.0, 0, 546.0, 0.97)]);
        let mut o = String::new();
        sweep(&mut o, &r, &[Peer::Tollgate]);
        assert!(o.contains("32.0k/s 97%."), "{o}");
        assert!(!o.contains("Load-bound"), "{o}");
        // Runs written before steal was recorded: no steal table.
        assert!(!o.contains("Host steal"), "{o}");
    }

    #[test]
    fn the_sweep_shows_host_steal_per_peer_and_rate_when_runs_recorded_it() {
        let r = result(vec![
            with_steal(echo_run("nginx", 16000.0, 0, 300.0, 0.9), 0.02, 0.01),
            with_steal(echo_run("nginx", 16000.0, 1, 400.0, 0.9), 0.10, 0.05),
            with_steal(echo_run("nginx", 16000.0, 2, 350.0, 0.9), 0.04, 0.03),
            with_steal(echo_run("tollgate", 16000.0, 0, 330.0, 0.9), 0.06, 0.02),
            // A run without the column (an older kernel) adds nothing to the medians.
            echo_run("tollgate", 2000.0, 0, 200.0, 0.2),
        ]);
        let mut o = String::new();
        sweep(&mut o, &r, &[Peer::Tollgate, Peer::Nginx]);
        assert!(o.contains("\nHost steal during the sweep, % of each run (the hypervisor ran something else while the vCPU had work; relay core CPU 0 / load core CPU 1, medians):\n\n| peer | 2000/s | 16.0k/s | 32.0k/s |\n|---|---|---|---|\n"), "{o}");
        assert!(o.contains("| tollgate | — | 6.0 / 2.0 | — |\n"), "{o}");
        assert!(o.contains("| nginx | — | 4.0 / 3.0 | — |\n"), "{o}");
    }
}
