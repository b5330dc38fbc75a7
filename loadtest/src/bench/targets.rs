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
//! pairs can never do that; the seven of paced and firehose can (all seven on one side),
//! and the nine of a sweep rate (eight of nine).

use std::fmt::Write as _;

use super::medians::{Medians, Metric};
use super::peers::Peer;
use super::table::{fmt, Stat};

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
    pub(crate) fn word(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "**missed**",
            Verdict::NotMeasured => "not measured",
        }
    }
}

/// What a verdict says more about than about the relays: it stands as measured, and the
/// report names the bound next to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    /// An echo row at a rate where the load side queues without a relay
    /// ([`Medians::load_queue`]): it measures mostly the load core's queue.
    Load,
    /// A CPU row against nginx or HAProxy, or an echo row against nginx, that the floor (a
    /// minimal io_uring tunnel with no WebSocket work) itself did not meet in this run
    /// ([`Medians::floor_ratio`]): no relay built on the same kernel path could have met it.
    Floor,
    /// An echo row whose ratio is no farther from 1 than the run's A/A pair's
    /// ([`Medians::twin_ratio`]: the same relay run twice, as tollgate and
    /// `tollgate-nolog`): the two peers differ by less than one relay differs from
    /// itself in that run, so the verdict is below what the run can resolve.
    Resolution,
}

impl Bound {
    pub(crate) fn word(self) -> &'static str {
        match self {
            Bound::Load => "load-bound",
            Bound::Floor => "floor-bound",
            Bound::Resolution => "below the run's resolution",
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
    /// What bounds the verdict, when something other than the relays does.
    pub bound: Option<Bound>,
    /// The number the verdict turns on, short: the ratio of medians (`×1.038`), KiB per
    /// session, or responses matched; "—" when not measured. A column of `--history`.
    pub figure: String,
    /// A ratio target's limit and its repetitions' pairs (the ratio of `a`'s run to `b`'s
    /// in each repetition): `--history` pools them over runs. `None` for other targets.
    pub pairs: Option<(f64, Vec<f64>)>,
}

impl Row {
    fn not_measured(target: String) -> Row {
        Row {
            target,
            measured: "—".into(),
            verdict: Verdict::NotMeasured,
            within_spread: false,
            bound: None,
            figure: "—".into(),
            pairs: None,
        }
    }

    /// The target without what one run decides about it: the firehose's better peer. Rows
    /// of different runs with the same key are the same target (`--history`).
    pub(crate) fn key(&self) -> &str {
        if self.target.starts_with(FIRE) {
            FIRE
        } else {
            &self.target
        }
    }
}

/// The firehose target; its row names the better of nginx and HAProxy in that run.
const FIRE: &str = "firehose: tollgate ≤ 1.0 × the better of nginx and HAProxy";

/// The row of `a ≤ limit × b` on `metric`.
fn ratio(m: &Medians, target: String, metric: Metric, a: Peer, b: Peer, limit: f64) -> Row {
    ratio_row(
        metric.unit(),
        target,
        m.get(metric, a),
        m.get(metric, b),
        &m.paired(metric, a, b),
        limit,
    )
}

/// `a ≤ limit × b` on the medians, as a row: "a vs b µs: ×ratio (reps ×lo–×hi; pairs k of
/// n ≤ ×limit)" — lo and hi the smallest and largest ratio of any rep of `a` to any rep of
/// `b`, k the repetitions whose pair is within the limit (printed with two pairs or more).
/// Within the reps' spread: the cross range straddles the limit, unless the pairs settle
/// it — a sign test puts them on the verdict's side at 5% (two-sided), which takes six
/// pairs or more all on one side, or eight of nine. The medians are in `unit`: µs of CPU
/// per frame or latency, or KiB per idle session (the idle target with TLS).
fn ratio_row(
    unit: &str,
    target: String,
    a: Option<Stat>,
    b: Option<Stat>,
    paired: &[f64],
    limit: f64,
) -> Row {
    match (a, b) {
        (Some(a), Some(b)) if b.min > 0.0 => {
            let c = compare(a, b, paired, limit);
            Row {
                target,
                measured: format!(
                    "{} vs {} {unit}: ×{:.3} ({})",
                    fmt(a.median),
                    fmt(b.median),
                    c.ratio,
                    c.spread
                ),
                verdict: c.verdict,
                within_spread: !c.settled,
                bound: None,
                figure: format!("×{:.3}", c.ratio),
                pairs: Some((limit, paired.to_vec())),
            }
        }
        _ => Row::not_measured(target),
    }
}

/// `a ≤ limit × b` judged on the medians ([`ratio_row`] says how).
struct Compared {
    ratio: f64,
    verdict: Verdict,
    /// "reps ×lo–×hi", then "; pairs k of n ≤ ×limit" with two pairs or more.
    spread: String,
    /// The cross range does not straddle the limit, or the pairs settle the verdict.
    settled: bool,
}

/// `a ≤ limit × b` for medians with `b.min > 0`.
fn compare(a: Stat, b: Stat, paired: &[f64], limit: f64) -> Compared {
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
    Compared {
        ratio,
        verdict,
        spread,
        settled,
    }
}

/// Two-sided sign test: the chance that `n` fair coin flips put `k` or fewer on one side,
/// either side.
pub(super) fn sign_test_p(k: usize, n: usize) -> f64 {
    let (mut choose, mut tail) = (1.0f64, 0.0f64);
    for i in 0..=k {
        if i > 0 {
            choose = choose * (n + 1 - i) as f64 / i as f64;
        }
        tail += choose;
    }
    (2.0 * tail / 2f64.powi(n as i32)).min(1.0)
}

/// `row` (a target `tollgate ≤ limit × peer` on CPU per frame or echo latency) with the
/// floor's own ratio to `peer` appended, and bound by the floor when that ratio is above
/// `limit` (a row that was not measured, or a run without the floor, is left alone).
fn with_floor(mut row: Row, m: &Medians, metric: Metric, peer: Peer, limit: f64) -> Row {
    if row.verdict == Verdict::NotMeasured {
        return row;
    }
    if let Some(r) = m.floor_ratio(metric, peer) {
        let bound = r > limit;
        let _ = write!(
            row.measured,
            "; {}the floor (no WebSocket work) ×{r:.3} {}",
            if bound { "floor-bound: " } else { "" },
            peer.name()
        );
        if bound {
            row.bound = Some(Bound::Floor);
        }
    }
    row
}

/// `row` (an echo target `tollgate ≤ nginx`) with the run's A/A pair appended — the same
/// relay's two runs on `metric` ([`Medians::twin_ratio`]) — and, when no other bound
/// applies, bound by the run's resolution if tollgate's ratio to nginx is no farther
/// from 1 (on a log scale: ×1.05 and ×0.952 are as far) than the A/A pair's. The verdict
/// stands as measured either way. A row that was not measured, or a run without
/// `tollgate-nolog`, is left alone.
fn with_twin(mut row: Row, m: &Medians, metric: Metric) -> Row {
    if row.verdict == Verdict::NotMeasured {
        return row;
    }
    let (Some(twin), Some(r)) = (
        m.twin_ratio(metric),
        m.ratio(metric, Peer::Tollgate, Peer::Nginx),
    ) else {
        return row;
    };
    let within = r.ln().abs() <= twin.ln().abs();
    let _ = write!(
        row.measured,
        "; A/A (tollgate-nolog, the same relay on echo, vs tollgate) ×{twin:.3}{}",
        if within { ": within it" } else { "" }
    );
    if within && row.bound.is_none() {
        row.bound = Some(Bound::Resolution);
    }
    row
}

/// `row` (a CPU target `a ≤ limit × b`) with what the two peers' user-space time per frame
/// — their own code, sampled — tells: the two medians and their difference as a share of
/// `b`'s total. Between the floor, `--tunnel` and tollgate, which make the same syscalls
/// and io_uring operations per frame, that difference is what one's code adds over the
/// other's while their kernel time moves with the host between runs; against nginx and
/// HAProxy the kernel paths differ too, and the split says how much of the gap is code. A
/// run without the sampled split, or a `total` that is not CPU per frame (no
/// [`Metric::user_part`]), leaves the row alone.
fn with_user_split(mut row: Row, m: &Medians, total: Metric, a: Peer, b: Peer) -> Row {
    let Some(user) = total.user_part() else {
        return row;
    };
    if row.verdict == Verdict::NotMeasured {
        return row;
    }
    if let (Some(ua), Some(ub), Some(tb)) = (
        m.get(user, a),
        m.get(user, b),
        m.get(total, b).filter(|t| t.median > 0.0),
    ) {
        let d = ua.median - ub.median;
        let _ = write!(
            row.measured,
            "; user space (sampled) {} vs {} µs: {:+.2} µs, {:+.1}% of {}'s total",
            fmt(ua.median),
            fmt(ub.median),
            d,
            100.0 * d / tb.median,
            b.name()
        );
    }
    row
}

/// The paced targets: (peer, against, limit, target), in the order.
pub(crate) const PACED: [(Peer, Peer, f64, &str); 4] = [
    (
        Peer::Tunnel,
        Peer::Floor,
        1.05,
        "paced: `--tunnel` ≤ 1.05 × the floor (CPU per frame)",
    ),
    (
        Peer::Tollgate,
        Peer::Tunnel,
        1.05,
        "paced: tollgate ≤ 1.05 × `--tunnel`",
    ),
    (
        Peer::Tollgate,
        Peer::Nginx,
        0.95,
        "paced: tollgate ≤ 0.95 × nginx",
    ),
    (
        Peer::Tollgate,
        Peer::Haproxy,
        0.85,
        "paced: tollgate ≤ 0.85 × HAProxy",
    ),
];

/// The targets, in the order.
pub(crate) fn rows(m: &Medians) -> Vec<Row> {
    use Peer::{Haproxy, Nginx, Tollgate};
    let mut v: Vec<Row> = PACED
        .into_iter()
        .map(|(a, b, limit, target)| {
            let row = ratio(m, target.into(), Metric::Paced, a, b, limit);
            let row = with_user_split(row, m, Metric::Paced, a, b);
            let row = if matches!(b, Nginx | Haproxy) {
                with_floor(row, m, Metric::Paced, b, limit)
            } else {
                row
            };
            with_load_control(row, m, a, b, limit)
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
    v.push(match better {
        Some(b) => with_floor(
            with_user_split(
                ratio(
                    m,
                    format!("{FIRE} ({})", b.name()),
                    Metric::Firehose,
                    Tollgate,
                    b,
                    1.0,
                ),
                m,
                Metric::Firehose,
                Tollgate,
                b,
            ),
            m,
            Metric::Firehose,
            b,
            1.0,
        ),
        None => Row::not_measured(FIRE.into()),
    });
    // The target is per session at scale; below 1,000 sessions (`--quick`) the process's
    // fixed memory dominates the quotient, so it is not evaluated there.
    for &n in m.idle_sizes.iter().filter(|&&n| n >= 1000) {
        // With TLS the target is HAProxy's figure with the same legs, not 4 KiB:
        // a rustls session's state is several KiB by itself.
        if let Some(legs) = m.tls.legs() {
            v.push(ratio(
                m,
                format!("idle with {legs}: tollgate ≤ HAProxy per session ({n} sessions)"),
                Metric::Idle(n),
                Tollgate,
                Haproxy,
                1.0,
            ));
            continue;
        }
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
            bound: None,
            figure: format!("{} KiB", fmt(kib.median)),
            pairs: None,
        });
    }
    for &rate in &m.sweep_rates {
        let queue = m.load_queue(rate);
        for (q, metric) in [
            ("p50", Metric::EchoP50(rate)),
            ("p99", Metric::EchoP99(rate)),
        ] {
            let mut row = ratio(
                m,
                format!("echo {q} at {}/s: tollgate ≤ nginx", fmt(rate as f64)),
                metric,
                Tollgate,
                Nginx,
                1.0,
            );
            match (&queue, row.verdict == Verdict::NotMeasured) {
                (_, true) => {}
                (Some(why), false) => {
                    // The load core's queue dominates there; the floor's ratio says no more.
                    let _ = write!(row.measured, "; {why}");
                    row.bound = Some(Bound::Load);
                }
                // The floor's own latency against nginx's: what the kernel path allows.
                (None, false) => row = with_floor(row, m, metric, Nginx, 1.0),
            }
            v.push(with_twin(row, m, metric));
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
            bound: None,
            figure: if matched == ledger {
                "1.000".into()
            } else {
                format!("{matched} of {ledger}")
            },
            pairs: None,
        },
        _ => Row::not_measured("usage accuracy 1.000".into()),
    });
    v
}

#[cfg(test)]
#[path = "targets_tests.rs"]
mod tests;

#[path = "targets_load.rs"]
mod load;
use load::with_load_control;

#[cfg(test)]
#[path = "targets_split_tests.rs"]
mod split_tests;

#[cfg(test)]
#[path = "targets_load_tests.rs"]
mod load_tests;
