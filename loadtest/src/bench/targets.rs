//! The data plane's targets (issue 11) evaluated on one run: each target's numbers, the
//! ratio of medians and whether it is met — computed here, so that the report says it
//! and nobody has to do the arithmetic by hand. A target whose case or peers did not run
//! (not installed, left out with `--peers` or `--only`) is "not measured", never met; the
//! idle target is evaluated at 1,000 sessions and more only.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::cases::Kind;
use super::peers::Peer;
use super::table::{fmt, lat, samples, stat};
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
}

/// The medians the targets need, per metric and peer.
#[derive(Debug, Default)]
pub(crate) struct Medians {
    map: HashMap<(Metric, Peer), f64>,
    idle_sizes: Vec<usize>,
    sweep_rates: Vec<u64>,
    /// Responses whose usage matched the mock's ledger, and responses in the ledger.
    accuracy: Option<(usize, usize)>,
}

impl Medians {
    fn get(&self, m: Metric, p: Peer) -> Option<f64> {
        self.map.get(&(m, p)).copied()
    }

    /// Gathers the medians from a run.
    pub(crate) fn of(r: &BenchResult) -> Medians {
        let mut out = Medians::default();
        let mut put =
            |m: Metric, case: &str, peer: Peer, get: fn(&super::Sample) -> Option<f64>| {
                let v: Vec<f64> = samples(r, case, peer).filter_map(get).collect();
                if let Some(st) = stat(&v) {
                    out.map.insert((m, peer), st.median);
                }
            };
        let win = |s: &super::Sample| {
            s.report
                .as_ref()?
                .sut
                .as_ref()?
                .window
                .as_ref()?
                .cpu_us_per_frame
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
            put(Metric::Paced, "paced", peer, win);
            put(Metric::Firehose, "firehose", peer, win);
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
    /// A peer it compares did not run.
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
}

/// `a ≤ limit × b`, as a row: "a vs b unit: ×ratio".
fn ratio_row(target: String, a: Option<f64>, b: Option<f64>, limit: f64, unit: &str) -> Row {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => {
            let ratio = a / b;
            Row {
                target,
                measured: format!("{} vs {} {unit}: ×{ratio:.3}", fmt(a), fmt(b)),
                verdict: if ratio <= limit {
                    Verdict::Met
                } else {
                    Verdict::Missed
                },
            }
        }
        _ => Row {
            target,
            measured: "—".into(),
            verdict: Verdict::NotMeasured,
        },
    }
}

/// The targets, in the order.
pub(crate) fn rows(m: &Medians) -> Vec<Row> {
    use Peer::{Floor, Haproxy, Nginx, Tollgate, Tunnel};
    let mut v = vec![
        ratio_row(
            "paced: `--tunnel` ≤ 1.05 × the floor (CPU per frame)".into(),
            m.get(Metric::Paced, Tunnel),
            m.get(Metric::Paced, Floor),
            1.05,
            "µs",
        ),
        ratio_row(
            "paced: tollgate ≤ 1.05 × `--tunnel`".into(),
            m.get(Metric::Paced, Tollgate),
            m.get(Metric::Paced, Tunnel),
            1.05,
            "µs",
        ),
        ratio_row(
            "paced: tollgate ≤ 0.95 × nginx".into(),
            m.get(Metric::Paced, Tollgate),
            m.get(Metric::Paced, Nginx),
            0.95,
            "µs",
        ),
        ratio_row(
            "paced: tollgate ≤ 0.85 × HAProxy".into(),
            m.get(Metric::Paced, Tollgate),
            m.get(Metric::Paced, Haproxy),
            0.85,
            "µs",
        ),
    ];
    // The better of nginx and HAProxy is the one that spends less per frame.
    let better = [Nginx, Haproxy]
        .into_iter()
        .filter_map(|p| m.get(Metric::Firehose, p).map(|x| (p, x)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let mut fire = ratio_row(
        format!(
            "firehose: tollgate ≤ 1.0 × the better of nginx and HAProxy{}",
            better.map_or(String::new(), |(p, _)| format!(" ({})", p.name()))
        ),
        m.get(Metric::Firehose, Tollgate),
        better.map(|b| b.1),
        1.0,
        "µs",
    );
    if better.is_some_and(|_| {
        m.get(Metric::Firehose, Nginx).is_none() || m.get(Metric::Firehose, Haproxy).is_none()
    }) {
        // Only one of the two ran: the better of both is not known.
        fire.verdict = Verdict::NotMeasured;
    }
    v.push(fire);
    // The target is per session at scale; below 1,000 sessions (`--quick`) the process's
    // fixed memory dominates the quotient, so it is not evaluated there.
    for &n in m.idle_sizes.iter().filter(|&&n| n >= 1000) {
        let kib = m.get(Metric::Idle(n), Tollgate);
        v.push(Row {
            target: format!("idle: tollgate ≤ 4 KiB per plain session ({n} sessions)"),
            measured: kib.map_or("—".into(), |k| {
                format!(
                    "{} KiB{}",
                    fmt(k),
                    m.get(Metric::Idle(n), Haproxy)
                        .map_or(String::new(), |h| format!(" (HAProxy {})", fmt(h)))
                )
            }),
            verdict: match kib {
                Some(k) if k <= 4.0 => Verdict::Met,
                Some(_) => Verdict::Missed,
                None => Verdict::NotMeasured,
            },
        });
    }
    for &rate in &m.sweep_rates {
        for (q, metric) in [
            ("p50", Metric::EchoP50(rate)),
            ("p99", Metric::EchoP99(rate)),
        ] {
            v.push(ratio_row(
                format!("echo {q} at {}/s: tollgate ≤ nginx", fmt(rate as f64)),
                m.get(metric, Tollgate),
                m.get(metric, Nginx),
                1.0,
                "µs",
            ));
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
        },
        _ => Row {
            target: "usage accuracy 1.000".into(),
            measured: "—".into(),
            verdict: Verdict::NotMeasured,
        },
    });
    v
}

/// Writes the targets section.
pub(crate) fn section(o: &mut String, r: &BenchResult) {
    let rows = rows(&Medians::of(r));
    let count = |v: Verdict| rows.iter().filter(|x| x.verdict == v).count();
    let _ = writeln!(
        o,
        "\n### Targets of the data plane (issue 11), from this run's medians\n\n{} met, {} missed, {} not measured (their case or a peer they compare did not run)\n",
        count(Verdict::Met),
        count(Verdict::Missed),
        count(Verdict::NotMeasured)
    );
    let _ = writeln!(o, "| target | this run | |\n|---|---|---|");
    for x in &rows {
        let _ = writeln!(
            o,
            "| {} | {} | {} |",
            x.target,
            x.measured,
            x.verdict.word()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn medians(pairs: &[(Metric, Peer, f64)]) -> Medians {
        let mut m = Medians::default();
        for &(metric, peer, x) in pairs {
            m.map.insert((metric, peer), x);
        }
        m
    }

    fn find<'a>(rows: &'a [Row], prefix: &str) -> &'a Row {
        rows.iter()
            .find(|r| r.target.starts_with(prefix))
            .unwrap_or_else(|| panic!("no row {prefix}"))
    }

    #[test]
    fn a_ratio_at_the_limit_is_met_and_just_above_it_missed() {
        let at = ratio_row("t".into(), Some(8.5), Some(10.0), 0.85, "µs");
        assert_eq!(at.verdict, Verdict::Met);
        assert_eq!(at.measured, "8.50 vs 10.0 µs: ×0.850");
        let above = ratio_row("t".into(), Some(8.51), Some(10.0), 0.85, "µs");
        assert_eq!(above.verdict, Verdict::Missed);
        let none = ratio_row("t".into(), Some(8.0), None, 0.85, "µs");
        assert_eq!(none.verdict, Verdict::NotMeasured);
    }

    #[test]
    fn paced_targets_compare_tollgate_with_each_peer() {
        use Peer::*;
        let m = medians(&[
            (Metric::Paced, Floor, 7.0),
            (Metric::Paced, Tunnel, 7.5),
            (Metric::Paced, Tollgate, 8.0),
            (Metric::Paced, Nginx, 12.0),
            (Metric::Paced, Haproxy, 9.0),
        ]);
        let r = rows(&m);
        // 7.5 / 7.0 = 1.071: the tunnel misses the floor target.
        assert_eq!(find(&r, "paced: `--tunnel`").verdict, Verdict::Missed);
        // 8.0 / 7.5 = 1.067.
        assert_eq!(find(&r, "paced: tollgate ≤ 1.05").verdict, Verdict::Missed);
        assert_eq!(find(&r, "paced: tollgate ≤ 0.95").verdict, Verdict::Met);
        // 8.0 / 9.0 = 0.889 > 0.85.
        assert_eq!(find(&r, "paced: tollgate ≤ 0.85").verdict, Verdict::Missed);
    }

    #[test]
    fn firehose_compares_with_the_cheaper_of_nginx_and_haproxy() {
        use Peer::*;
        let m = medians(&[
            (Metric::Firehose, Tollgate, 0.45),
            (Metric::Firehose, Nginx, 0.80),
            (Metric::Firehose, Haproxy, 0.44),
        ]);
        let r = rows(&m);
        let f = find(&r, "firehose");
        assert!(f.target.ends_with("(haproxy)"), "{}", f.target);
        assert_eq!(f.verdict, Verdict::Missed, "0.45 > 0.44: {}", f.measured);
        // Only nginx ran: the better of the two is unknown.
        let m = medians(&[
            (Metric::Firehose, Tollgate, 0.45),
            (Metric::Firehose, Nginx, 0.80),
        ]);
        assert_eq!(find(&rows(&m), "firehose").verdict, Verdict::NotMeasured);
    }

    #[test]
    fn idle_echo_and_accuracy_rows_follow_the_run() {
        use Peer::*;
        let mut m = medians(&[
            (Metric::Idle(1000), Tollgate, 2.3),
            (Metric::Idle(9000), Tollgate, 4.2),
            (Metric::EchoP50(16000), Tollgate, 172.0),
            (Metric::EchoP50(16000), Nginx, 165.0),
            (Metric::EchoP99(16000), Tollgate, 700.0),
            (Metric::EchoP99(16000), Nginx, 800.0),
        ]);
        m.idle_sizes = vec![200, 1000, 9000];
        m.map.insert((Metric::Idle(200), Tollgate), 11.0);
        m.sweep_rates = vec![16000];
        m.accuracy = Some((10, 10));
        let r = rows(&m);
        assert_eq!(
            find(&r, "idle: tollgate ≤ 4 KiB per plain session (1000").verdict,
            Verdict::Met
        );
        assert_eq!(
            find(&r, "idle: tollgate ≤ 4 KiB per plain session (9000").verdict,
            Verdict::Missed
        );
        assert!(!r.iter().any(|x| x.target.contains("(200 sessions)")));
        assert_eq!(find(&r, "echo p50 at 16.0k/s").verdict, Verdict::Missed);
        assert_eq!(find(&r, "echo p99 at 16.0k/s").verdict, Verdict::Met);
        assert_eq!(find(&r, "usage accuracy").verdict, Verdict::Met);
        m.accuracy = Some((9, 10));
        assert_eq!(find(&rows(&m), "usage accuracy").verdict, Verdict::Missed);
        m.accuracy = None;
        assert_eq!(
            find(&rows(&m), "usage accuracy").verdict,
            Verdict::NotMeasured
        );
    }
}
