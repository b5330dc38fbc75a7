//! The targets section of `bench.md`: how many targets the run met and missed, what the
//! verdicts' qualifiers mean (within the reps' spread, load-bound, floor-bound, TLS legs),
//! and a row per target as `targets.rs` judged it.

use std::fmt::Write as _;

use super::medians::{Medians, Metric};
use super::peers::Peer;
use super::sections::LOAD_QUEUE_FACTOR;
use super::table::fmt;
use super::targets::{rows, Bound, Verdict};
use super::BenchResult;

/// Writes the targets section.
pub(crate) fn section(o: &mut String, r: &BenchResult) {
    let medians = Medians::of(r);
    let rows = rows(&medians);
    let count = |v: Verdict| rows.iter().filter(|x| x.verdict == v).count();
    let unsettled = |v: Verdict| {
        rows.iter()
            .filter(|x| x.verdict == v && x.within_spread)
            .count()
    };
    // (met, missed) rows that `b` bounds.
    let bounded = |b: Bound| {
        let n = |v: Verdict| {
            rows.iter()
                .filter(|x| x.verdict == v && x.bound == Some(b))
                .count()
        };
        (n(Verdict::Met), n(Verdict::Missed))
    };
    let _ = writeln!(
        o,
        "\n### Targets of the data plane (issue 11), from this run's medians\n\n\
         {} met ({} of them within the reps' spread), {} missed ({} within the reps' spread), \
         {} not measured (their case or a peer they compare did not run). Within the reps' \
         spread: some rep of one peer against some rep of the other lands on each side of \
         the limit (\"reps ×lo–×hi\"), and the repetitions' pairs (the two peers' runs of \
         one repetition, next to each other in the schedule) do not settle it — a sign \
         test on them (\"pairs k of n\" within the limit) does not put them on the \
         verdict's side at 5%. Another run may turn such a verdict.\n",
        count(Verdict::Met),
        unsettled(Verdict::Met),
        count(Verdict::Missed),
        unsettled(Verdict::Missed),
        count(Verdict::NotMeasured)
    );
    if let Some(legs) = r.tls.legs() {
        let _ = writeln!(
            o,
            "This run has {legs} (`wss://`). The issue states its CPU and echo targets from \
             plain-TCP measurements; they are judged here as measured, and rows against the \
             floor are not measured (it runs only without TLS). With TLS the idle target is \
             HAProxy's figure per session on the same legs instead of 4 KiB.\n"
        );
    }
    let (met_lb, missed_lb) = bounded(Bound::Load);
    if met_lb + missed_lb > 0 {
        let _ = writeln!(
            o,
            "{met_lb} of the met and {missed_lb} of the missed are *load-bound*: echo at a \
             rate where the load side queues without any relay (above the rate of direct's \
             lowest p50, direct's p50 more than {LOAD_QUEUE_FACTOR}× that lowest), so the latencies there are mostly \
             the load core's queue (generator and mock share one CPU). The verdicts stand as \
             measured; they say little about the relays.\n"
        );
    }
    let (met_fb, missed_fb) = bounded(Bound::Floor);
    if met_fb + missed_fb > 0 {
        let _ = writeln!(
            o,
            "{met_fb} of the met and {missed_fb} of the missed are *floor-bound*: CPU \
             against nginx or HAProxy, or echo latency against nginx, where the floor — a \
             minimal io_uring tunnel with no WebSocket work, one multishot receive per \
             socket and a send straight from the buffer — did not meet the limit itself in \
             this run. The verdicts stand as measured; on that kernel path no relay meets \
             them on this machine that hour.\n"
        );
    }
    let (met_rb, missed_rb) = bounded(Bound::Resolution);
    if met_rb + missed_rb > 0 {
        let _ = writeln!(
            o,
            "{met_rb} of the met and {missed_rb} of the missed are *below the run's \
             resolution*: echo rows where tollgate's ratio to nginx is no farther from 1 than \
             the run's A/A pair's — `tollgate-nolog` against tollgate, one relay run twice \
             (on echo no response ends, so no usage record is written) — so the two peers \
             differ by less than one relay differs from itself in this run. The verdicts \
             stand as measured; another run may turn them.\n"
        );
    }
    load_control(o, &medians);
    let _ = writeln!(o, "| target | this run | verdict |\n|---|---|---|");
    for x in &rows {
        let _ = writeln!(
            o,
            "| {} | {} | {}{}{} |",
            x.target,
            x.measured,
            x.verdict.word(),
            if x.within_spread {
                ", within the reps' spread"
            } else {
                ""
            },
            x.bound.map_or(String::new(), |b| format!(", {}", b.word()))
        );
    }
}

/// The paragraph on the paced rows' *per load-core µs* figures, with what lets a reader
/// check them in this run: the load core's CPU per frame with `direct` (no relay) and with
/// each relay, and how much narrower tollgate's reps are once the host's speed is divided
/// out. Not written when the run has no such figures.
fn load_control(o: &mut String, m: &Medians) {
    let Some(g) = m.get(Metric::PacedPerLoad, Peer::Tollgate) else {
        return;
    };
    let relays: Vec<f64> = Peer::KNOWN
        .into_iter()
        .filter(|&p| p != Peer::Direct)
        .filter_map(|p| m.get(Metric::PacedLoad, p).map(|s| s.median))
        .collect();
    let (Some(lo), Some(hi)) = (
        relays.iter().copied().min_by(f64::total_cmp),
        relays.iter().copied().max_by(f64::total_cmp),
    ) else {
        return;
    };
    let direct = match m.get(Metric::PacedLoad, Peer::Direct) {
        Some(d) if d.median > 0.0 => format!(
            "direct (no relay) {} µs, the relays {}–{} µs (×{:.2}–×{:.2} direct's)",
            fmt(d.median),
            fmt(lo),
            fmt(hi),
            lo / d.median,
            hi / d.median
        ),
        _ => format!("the relays {}–{} µs (direct did not run)", fmt(lo), fmt(hi)),
    };
    let spread = |s: super::table::Stat| {
        if s.min > 0.0 {
            format!("×{:.2}", s.max / s.min)
        } else {
            "—".into()
        }
    };
    let total = m
        .get(Metric::Paced, Peer::Tollgate)
        .map_or("—".into(), spread);
    let _ = writeln!(
        o,
        "*Per load-core µs* (the paced rows): the same comparison on each run's SUT CPU \
         over the load core's — the generator and the mock on CPU 1 — inside the \
         measurement window (in reports written before the window measured the load core: \
         the window's SUT CPU per frame over the whole run's load-core CPU per frame \
         received). Paced, the load core does the same work per frame whichever relay is in \
         between, so its cost per frame moves only with how fast the host runs that \
         minute, and the relays' costs move with it; the quotient divides that out. The \
         load core's CPU per frame received over each whole run, medians: {direct}. \
         Tollgate's reps spread {total} (largest over smallest) in µs per frame and {} per \
         load-core µs. The verdicts stay on the totals, as the issue states the targets.\n",
        spread(g)
    );
}

#[cfg(test)]
mod tests {
    use super::super::peers::TlsMode;
    use super::super::test_runs::{echo_run, line, result};
    use super::section;

    /// An echo miss no farther from 1 than the run's A/A pair is counted and explained
    /// above the table; without `tollgate-nolog` the paragraph is not written.
    #[test]
    fn echo_rows_below_the_runs_resolution_are_counted_and_explained() {
        let mut runs = vec![
            echo_run("nginx", 2000.0, 0, 100.0, 0.2),
            echo_run("tollgate", 2000.0, 0, 104.0, 0.2),
        ];
        let mut without = String::new();
        section(&mut without, &result(runs.clone()));
        assert!(!without.contains("resolution"), "{without}");
        runs.push(echo_run("tollgate-nolog", 2000.0, 0, 95.0, 0.2));
        let mut md = String::new();
        section(&mut md, &result(runs));
        assert!(
            md.contains("0 of the met and 2 of the missed are *below the run's resolution*"),
            "{md}"
        );
        assert!(
            line(&md, "| echo p50 at 2000/s")
                .ends_with("×0.913: within it | **missed**, below the run's resolution |"),
            "{md}"
        );
    }

    #[test]
    fn a_tls_run_names_its_legs_and_the_idle_target_it_is_held_to() {
        let mut r = result(Vec::new());
        let mut plain = String::new();
        section(&mut plain, &r);
        assert!(
            plain.contains("### Targets of the data plane (issue 11)"),
            "{plain}"
        );
        assert!(!plain.contains("This run has"), "{plain}");
        for (mode, legs) in [
            (TlsMode::Upstream, "a TLS upstream leg"),
            (TlsMode::Both, "TLS on both legs"),
        ] {
            r.tls = mode;
            let mut tls = String::new();
            section(&mut tls, &r);
            assert!(
                tls.contains(&format!("This run has {legs} (`wss://`).")),
                "{tls}"
            );
            assert!(
                tls.contains("HAProxy's figure per session on the same legs"),
                "{tls}"
            );
        }
    }
}
