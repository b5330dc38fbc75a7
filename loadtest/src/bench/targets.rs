//! The data plane's targets (issue 11) evaluated on one run: each target's numbers, the
//! ratio of medians and whether it is met — computed here, so that the report says it
//! and nobody has to do the arithmetic by hand. A target whose case or peers did not run
//! (not installed, left out with `--peers` or `--only`) is "not measured", never met; the
//! idle target is evaluated at 1,000 sessions and more only. Each verdict also says
//! whether the repetitions settle it. A ratio target `a ≤ limit × b` is "within the
//! reps' spread" when some rep of one against some rep of the other lands on each side of
//! the limit — unless the repetitions' pairs settle it: the schedule runs every peer once
//! per repetition, in alternating order, so `a`'s and `b`'s runs of one repetition are
//! minutes apart, while the machine drifts over the whole run (on this VM a peer's even
//! and odd reps have differed by more than the gaps the targets ask about). When a sign
//! test on the pairs (how many are within the limit) puts them on the verdict's side at
//! 5%, the verdict is settled even though the cross range straddles the limit. Three
//! pairs can never do that; the nine of a sweep rate can.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::cases::Kind;
use super::peers::Peer;
use super::sections::{load_queues, LOAD_QUEUE_FACTOR};
use super::table::{fmt, lat, samples, stat, win_us_frame, Stat};
use super::BenchResult;

/// A measured quantity whose median the targets compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Metric {
    /// Paced: SUT CPU µs per frame inside the measurement window.
    Paced,
    /// Firehose: the same.
    Firehose,
    /// KiB of RSS per idle session, at this many sessions.
    Idle(usize),
    /// Echo p50 µs at this offered rate (frames/s).
    EchoP50(u64),
    /// Echo p99 µs at this offered rate.
    EchoP99(u64),
    /// The load core's utilisation (generator + mock, 0–1) in the runs at this offered
    /// echo rate.
    EchoLoad(u64),
}

/// The medians (with the reps' range) the targets need, per metric and peer.
#[derive(Debug, Default)]
pub(crate) struct Medians {
    map: HashMap<(Metric, Peer), Stat>,
    /// Each rep's value: `(rep, value)`.
    reps: HashMap<(Metric, Peer), Vec<(usize, f64)>>,
    idle_sizes: Vec<usize>,
    sweep_rates: Vec<u64>,
    /// Responses whose usage matched the mock's ledger, and responses in the ledger.
    accuracy: Option<(usize, usize)>,
}

impl Medians {
    fn get(&self, m: Metric, p: Peer) -> Option<Stat> {
        self.map.get(&(m, p)).copied()
    }

    /// `a`'s value over `b`'s, per repetition both measured.
    fn paired(&self, m: Metric, a: Peer, b: Peer) -> Vec<f64> {
        let (Some(ra), Some(rb)) = (self.reps.get(&(m, a)), self.reps.get(&(m, b))) else {
            return Vec::new();
        };
        ra.iter()
            .filter_map(|&(rep, x)| {
                let &(_, y) = rb.iter().find(|(r, _)| *r == rep)?;
                (y > 0.0).then(|| x / y)
            })
            .collect()
    }

    /// The ratio row of `a ≤ limit × b` on `metric`.
    fn ratio(&self, target: String, metric: Metric, a: Peer, b: Peer, limit: f64) -> Row {
        ratio_row(
            target,
            self.get(metric, a),
            self.get(metric, b),
            &self.paired(metric, a, b),
            limit,
        )
    }

    /// Why an echo verdict at `rate` says more about the load side than about the relays,
    /// when it does: `direct` (no relay) had a p50 there more than [`LOAD_QUEUE_FACTOR`]
    /// times its lowest in the sweep, at a higher rate than that lowest's
    /// ([`load_queues`]). `None` when it did not, or when `direct` did not
    /// run.
    pub(crate) fn load_queue(&self, rate: u64) -> Option<String> {
        let direct: Vec<(f64, f64)> = self
            .sweep_rates
            .iter()
            .filter_map(|&r| Some((r as f64, self.get(Metric::EchoP50(r), Peer::Direct)?.median)))
            .collect();
        let q = load_queues(&direct)
            .into_iter()
            .find(|q| q.rate == rate as f64)?;
        let load: Vec<Stat> = [Peer::Tollgate, Peer::Nginx]
            .into_iter()
            .filter_map(|p| self.get(Metric::EchoLoad(rate), p))
            .collect();
        let busy = match (
            load.iter().map(|s| s.min).min_by(f64::total_cmp),
            load.iter().map(|s| s.max).max_by(f64::total_cmp),
        ) {
            (Some(lo), Some(hi)) => format!(
                "; load core {:.0}–{:.0}% in tollgate's and nginx's runs",
                lo * 100.0,
                hi * 100.0
            ),
            _ => String::new(),
        };
        Some(format!(
            "load-bound: without a relay (direct) p50 {} µs, ×{:.1} its lowest ({} at {}/s){busy}",
            fmt(q.p50),
            q.p50 / q.low,
            fmt(q.low),
            fmt(q.low_rate)
        ))
    }

    /// What the floor says about a CPU target `tollgate ≤ limit × peer`: the floor's own
    /// ratio to `peer` in this run, and whether it is above `limit` (then no relay on the
    /// floor's kernel path meets the target here). `None` when the floor or `peer` did
    /// not run.
    pub(crate) fn floor_context(
        &self,
        metric: Metric,
        peer: Peer,
        limit: f64,
    ) -> Option<(String, bool)> {
        let floor = self.get(metric, Peer::Floor)?;
        let other = self.get(metric, peer).filter(|s| s.median > 0.0)?;
        let r = floor.median / other.median;
        let bound = r > limit;
        Some((
            format!(
                "{}the floor (no WebSocket work) ×{r:.3} {}",
                if bound { "floor-bound: " } else { "" },
                peer.name()
            ),
            bound,
        ))
    }

    /// Gathers the medians from a run.
    pub(crate) fn of(r: &BenchResult) -> Medians {
        let mut out = Medians::default();
        let mut put =
            |m: Metric, case: &str, peer: Peer, get: fn(&super::Sample) -> Option<f64>| {
                let reps: Vec<(usize, f64)> = samples(r, case, peer)
                    .filter_map(|s| Some((s.rep, get(s).filter(|x| x.is_finite())?)))
                    .collect();
                let v: Vec<f64> = reps.iter().map(|&(_, x)| x).collect();
                if let Some(st) = stat(&v) {
                    out.map.insert((m, peer), st);
                    out.reps.insert((m, peer), reps);
                }
            };
        let mut idle: Vec<(usize, String)> = Vec::new();
        for s in r.samples.iter().filter(|s| s.kind == Kind::Idle) {
            if let Some(n) = s.case.strip_prefix("idle-").and_then(|n| n.parse().ok()) {
                if !idle.iter().any(|(m, _)| *m == n) {
                    idle.push((n, s.case.clone()));
                }
            }
        }
        for peer in Peer::KNOWN {
            put(Metric::Paced, "paced", peer, win_us_frame);
            put(Metric::Firehose, "firehose", peer, win_us_frame);
            for (n, case) in &idle {
                put(Metric::Idle(*n), case, peer, |s| {
                    s.report.as_ref()?.sut.as_ref()?.kib_per_session
                });
            }
            for &rate in &r.sweep_rates {
                let case = format!("sweep@{rate}");
                put(Metric::EchoP50(rate as u64), &case, peer, |s| {
                    lat(s, "echo", |l| l.p50_us)
                });
                put(Metric::EchoP99(rate as u64), &case, peer, |s| {
                    lat(s, "echo", |l| l.p99_us)
                });
                put(Metric::EchoLoad(rate as u64), &case, peer, |s| {
                    Some(s.report.as_ref()?.load_cpu_util)
                });
            }
        }
        out.idle_sizes = idle.into_iter().map(|(n, _)| n).collect();
        out.sweep_rates = r.sweep_rates.iter().map(|&x| x as u64).collect();
        out.accuracy = super::sections::accuracy(r).map(|a| (a.matched, a.ledger));
        out
    }
}

/// Whether a target holds in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Met.
    Met,
    /// Measured and missed.
    Missed,
    /// Its case or a peer it compares did not run.
    NotMeasured,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "**missed**",
            Verdict::NotMeasured => "not measured",
        }
    }
}

/// One target's line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// What is required.
    pub target: String,
    /// The numbers behind the verdict.
    pub measured: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The reps put the quantity on both sides of the limit.
    pub within_spread: bool,
    /// An echo row at a rate where the load side queues without a relay
    /// ([`Medians::load_queue`]): the verdict stands, but it measures mostly the load
    /// core's queue.
    pub load_bound: bool,
    /// A CPU row against nginx or HAProxy that the floor (a minimal io_uring tunnel with
    /// no WebSocket work) itself did not meet in this run ([`Medians::floor_context`]):
    /// the verdict stands, and no relay built on the same kernel path could have met it.
    pub floor_bound: bool,
}

impl Row {
    fn not_measured(target: String) -> Row {
        Row {
            target,
            measured: "—".into(),
            verdict: Verdict::NotMeasured,
            within_spread: false,
            load_bound: false,
            floor_bound: false,
        }
    }
}

/// `a ≤ limit × b` on the medians, as a row: "a vs b µs: ×ratio (reps ×lo–×hi; pairs k of
/// n ≤ ×limit)" — lo and hi the smallest and largest ratio of any rep of `a` to any rep of
/// `b`, k the repetitions whose pair is within the limit (printed with two pairs or more).
/// Within the reps' spread: the cross range straddles the limit, unless the pairs settle
/// it — a sign test puts them on the verdict's side at 5% (two-sided), which takes six
/// pairs or more all on one side, or eight of nine. Every ratio target compares µs: CPU
/// per frame or latency.
fn ratio_row(target: String, a: Option<Stat>, b: Option<Stat>, paired: &[f64], limit: f64) -> Row {
    match (a, b) {
        (Some(a), Some(b)) if b.min > 0.0 => {
            let ratio = a.median / b.median;
            let verdict = if ratio <= limit {
                Verdict::Met
            } else {
                Verdict::Missed
            };
            let (lo, hi) = (a.min / b.max, a.max / b.min);
            let mut spread = format!("reps ×{lo:.2}–×{hi:.2}");
            let mut settled = !(lo <= limit && hi > limit);
            let n = paired.len();
            if n >= 2 {
                let k = paired.iter().filter(|&&x| x <= limit).count();
                let _ = write!(spread, "; pairs {k} of {n} ≤ ×{limit}");
                let agrees = match verdict {
                    Verdict::Met => 2 * k > n,
                    _ => 2 * k < n,
                };
                settled |= agrees && sign_test_p(k.min(n - k), n) < 0.05;
            }
            Row {
                target,
                measured: format!(
                    "{} vs {} µs: ×{ratio:.3} ({spread})",
                    fmt(a.median),
                    fmt(b.median)
                ),
                verdict,
                within_spread: !settled,
                load_bound: false,
                floor_bound: false,
            }
        }
        _ => Row::not_measured(target),
    }
}

/// Two-sided sign test: the chance that `n` fair coin flips put `k` or fewer on one side,
/// either side.
fn sign_test_p(k: usize, n: usize) -> f64 {
    let (mut choose, mut tail) = (1.0f64, 0.0f64);
    for i in 0..=k {
        if i > 0 {
            choose = choose * (n + 1 - i) as f64 / i as f64;
        }
        tail += choose;
    }
    (2.0 * tail / 2f64.powi(n as i32)).min(1.0)
}

/// `row` with the floor's ratio to `peer` appended, marked floor-bound when the floor
/// itself is above `limit` (a row that was not measured is left alone).
fn with_floor(mut row: Row, m: &Medians, metric: Metric, peer: Peer, limit: f64) -> Row {
    if row.verdict == Verdict::NotMeasured {
        return row;
    }
    if let Some((why, bound)) = m.floor_context(metric, peer, limit) {
        let _ = write!(row.measured, "; {why}");
        row.floor_bound = bound;
    }
    row
}

/// The targets, in the order.
pub(crate) fn rows(m: &Medians) -> Vec<Row> {
    use Peer::{Floor, Haproxy, Nginx, Tollgate, Tunnel};
    // Paced: (peer, against, limit, target).
    let paced = [
        (
            Tunnel,
            Floor,
            1.05,
            "paced: `--tunnel` ≤ 1.05 × the floor (CPU per frame)",
        ),
        (
            Tollgate,
            Tunnel,
            1.05,
            "paced: tollgate ≤ 1.05 × `--tunnel`",
        ),
        (Tollgate, Nginx, 0.95, "paced: tollgate ≤ 0.95 × nginx"),
        (Tollgate, Haproxy, 0.85, "paced: tollgate ≤ 0.85 × HAProxy"),
    ];
    let mut v: Vec<Row> = paced
        .into_iter()
        .map(|(a, b, limit, target)| {
            let row = m.ratio(target.into(), Metric::Paced, a, b, limit);
            if matches!(b, Nginx | Haproxy) {
                with_floor(row, m, Metric::Paced, b, limit)
            } else {
                row
            }
        })
        .collect();
    // The better of nginx and HAProxy is the one that spends less per frame; with only
    // one of them in the run it is not known.
    let better = match (
        m.get(Metric::Firehose, Nginx),
        m.get(Metric::Firehose, Haproxy),
    ) {
        (Some(n), Some(h)) if h.median < n.median => Some(Haproxy),
        (Some(_), Some(_)) => Some(Nginx),
        _ => None,
    };
    let fire = "firehose: tollgate ≤ 1.0 × the better of nginx and HAProxy";
    v.push(match better {
        Some(b) => with_floor(
            m.ratio(
                format!("{fire} ({})", b.name()),
                Metric::Firehose,
                Tollgate,
                b,
                1.0,
            ),
            m,
            Metric::Firehose,
            b,
            1.0,
        ),
        None => Row::not_measured(fire.into()),
    });
    // The target is per session at scale; below 1,000 sessions (`--quick`) the process's
    // fixed memory dominates the quotient, so it is not evaluated there.
    for &n in m.idle_sizes.iter().filter(|&&n| n >= 1000) {
        let target = format!("idle: tollgate ≤ 4 KiB per plain session ({n} sessions)");
        let Some(kib) = m.get(Metric::Idle(n), Tollgate) else {
            v.push(Row::not_measured(target));
            continue;
        };
        v.push(Row {
            target,
            measured: format!(
                "{} KiB (reps {}–{}){}",
                fmt(kib.median),
                fmt(kib.min),
                fmt(kib.max),
                m.get(Metric::Idle(n), Haproxy)
                    .map_or(String::new(), |h| format!("; HAProxy {}", fmt(h.median)))
            ),
            verdict: if kib.median <= 4.0 {
                Verdict::Met
            } else {
                Verdict::Missed
            },
            within_spread: kib.min <= 4.0 && kib.max > 4.0,
            load_bound: false,
            floor_bound: false,
        });
    }
    for &rate in &m.sweep_rates {
        let queue = m.load_queue(rate);
        for (q, metric) in [
            ("p50", Metric::EchoP50(rate)),
            ("p99", Metric::EchoP99(rate)),
        ] {
            let mut row = m.ratio(
                format!("echo {q} at {}/s: tollgate ≤ nginx", fmt(rate as f64)),
                metric,
                Tollgate,
                Nginx,
                1.0,
            );
            if let (Some(why), false) = (&queue, row.verdict == Verdict::NotMeasured) {
                let _ = write!(row.measured, "; {why}");
                row.load_bound = true;
            }
            v.push(row);
        }
    }
    v.push(match m.accuracy {
        Some((matched, ledger)) if ledger > 0 => Row {
            target: "usage accuracy 1.000".into(),
            measured: format!("{matched} / {ledger} responses"),
            verdict: if matched == ledger {
                Verdict::Met
            } else {
                Verdict::Missed
            },
            within_spread: false,
            load_bound: false,
            floor_bound: false,
        },
        _ => Row::not_measured("usage accuracy 1.000".into()),
    });
    v
}

/// Writes the targets section.
pub(crate) fn section(o: &mut String, r: &BenchResult) {
    let rows = rows(&Medians::of(r));
    let count = |v: Verdict| rows.iter().filter(|x| x.verdict == v).count();
    let unsettled = |v: Verdict| {
        rows.iter()
            .filter(|x| x.verdict == v && x.within_spread)
            .count()
    };
    let load_bound = |v: Verdict| {
        rows.iter()
            .filter(|x| x.verdict == v && x.load_bound)
            .count()
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
    let (met_lb, missed_lb) = (load_bound(Verdict::Met), load_bound(Verdict::Missed));
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
    let floor_bound = |v: Verdict| {
        rows.iter()
            .filter(|x| x.verdict == v && x.floor_bound)
            .count()
    };
    let (met_fb, missed_fb) = (floor_bound(Verdict::Met), floor_bound(Verdict::Missed));
    if met_fb + missed_fb > 0 {
        let _ = writeln!(
            o,
            "{met_fb} of the met and {missed_fb} of the missed are *floor-bound*: CPU \
             against nginx or HAProxy where the floor — a minimal io_uring tunnel with no \
             WebSocket work, one multishot receive per socket and a send straight from the \
             buffer — did not meet the limit itself in this run. The verdicts stand as \
             measured; on that kernel path no relay meets them on this machine that hour.\n"
        );
    }
    let _ = writeln!(o, "| target | this run | verdict |\n|---|---|---|");
    for x in &rows {
        let _ = writeln!(
            o,
            "| {} | {} | {}{}{}{} |",
            x.target,
            x.measured,
            x.verdict.word(),
            if x.within_spread {
                ", within the reps' spread"
            } else {
                ""
            },
            if x.load_bound { ", load-bound" } else { "" },
            if x.floor_bound { ", floor-bound" } else { "" }
        );
    }
}

#[cfg(test)]
#[path = "targets_tests.rs"]
mod tests;
