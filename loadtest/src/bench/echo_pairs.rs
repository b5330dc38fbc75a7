//! `loadtest bench --history`'s second table: echo latency of the floor and tollgate
//! against nginx, repetition pair by repetition pair, every run pooled — the fastest echo,
//! the quantiles, what the echoes cost the load core, the host's steal, and the p50
//! difference read at equal steal — and the same columns for the run's A/A pair
//! (`tollgate-nolog` against tollgate, one relay run twice on echo).

use std::fmt::Write as _;

use super::peers::Peer;
use super::table::{fmt, lat, samples, stat};
use super::{BenchResult, Sample};

/// One statistic of one echo run.
type Statistic = fn(&Sample) -> Option<f64>;

/// A row's two peers: the peer, and the one its differences are taken against.
type Pair = (Peer, Peer);

/// The table's rows per rate: the floor and tollgate against nginx, then the A/A pair —
/// `tollgate-nolog` against tollgate, the same relay on echo.
const ROWS: [(&str, Pair); 3] = [
    ("floor", (Peer::Floor, Peer::Nginx)),
    ("tollgate", (Peer::Tollgate, Peer::Nginx)),
    (
        "A/A: tollgate-nolog vs tollgate",
        (Peer::TollgateNoLog, Peer::Tollgate),
    ),
];

/// The load core's CPU (the generator and the mock: one thread, one core) per echo, µs.
fn load_us_per_echo(s: &Sample) -> Option<f64> {
    let r = s.report.as_ref()?;
    let echoes = r.counts.completed;
    (echoes > 0).then(|| r.load_cpu_s * 1e6 / echoes as f64)
}

/// Host steal on both CPUs (relay core + load core), percentage points of the run.
fn steal_points(s: &Sample) -> Option<f64> {
    let st = &s.report.as_ref()?.host_steal;
    (!st.is_empty()).then(|| st.iter().sum::<f64>() * 100.0)
}

fn echo_p50(s: &Sample) -> Option<f64> {
    lat(s, "echo", |l| l.p50_us)
}

/// The statistics [`echo_pairs`] compares: the fastest echo, the quantiles, what the
/// echoes cost the load core, and the host's steal.
const SHAPE: [(&str, Statistic); 6] = [
    ("min", |s| lat(s, "echo", |l| l.min_us)),
    ("p50", echo_p50),
    ("p90", |s| lat(s, "echo", |l| l.p90_us)),
    ("p99", |s| lat(s, "echo", |l| l.p99_us)),
    ("load core, µs per echo", load_us_per_echo),
    ("host steal, points", steal_points),
];

/// The Theil–Sen line `y = a + b·x` through `pts`: `b` the median of the slopes between
/// every two points, `a` the median of `y − b·x`. Robust where least squares is not: a
/// repetition the host stalled for milliseconds moves it little. `None` for fewer than
/// three points or when no two points differ in x.
fn theil_sen(pts: &[(f64, f64)]) -> Option<(f64, f64)> {
    if pts.len() < 3 {
        return None;
    }
    let mut slopes = Vec::new();
    for (i, (x1, y1)) in pts.iter().enumerate() {
        for (x2, y2) in pts.iter().skip(i + 1) {
            if x2 != x1 {
                slopes.push((y2 - y1) / (x2 - x1));
            }
        }
    }
    let b = stat(&slopes)?.median;
    let rest: Vec<f64> = pts.iter().map(|(x, y)| y - b * x).collect();
    Some((stat(&rest)?.median, b))
}

/// Every repetition's pair at `case`: `peer`'s run and nginx's run of the same repetition
/// of the same run, all runs pooled.
pub(crate) fn pairs<'a>(
    runs: &'a [(String, BenchResult)],
    case: &'a str,
    peer: Peer,
) -> impl Iterator<Item = (&'a Sample, &'a Sample)> {
    pairs_with(runs, case, peer, Peer::Nginx)
}

/// Every repetition's pair at `case`: `peer`'s run and `reference`'s run of the same
/// repetition of the same run, all runs pooled.
fn pairs_with<'a>(
    runs: &'a [(String, BenchResult)],
    case: &'a str,
    peer: Peer,
    reference: Peer,
) -> impl Iterator<Item = (&'a Sample, &'a Sample)> {
    runs.iter().flat_map(move |(_, r)| {
        samples(r, case, peer).filter_map(move |s| {
            let other = samples(r, case, reference).find(|n| n.rep == s.rep)?;
            Some((s, other))
        })
    })
}

/// The p50 difference against `reference` at equal host steal: over every pair that
/// recorded steal, the Theil–Sen line Δp50 = a + b·Δsteal (points), "a (n pairs, b µs per
/// point)"; "—" when there is no such line.
fn at_equal_steal(runs: &[(String, BenchResult)], case: &str, (peer, reference): Pair) -> String {
    let pts: Vec<(f64, f64)> = pairs_with(runs, case, peer, reference)
        .filter_map(|(s, n)| {
            let steal = steal_points(s)? - steal_points(n)?;
            Some((steal, echo_p50(s)? - echo_p50(n)?))
        })
        .collect();
    match theil_sen(&pts) {
        Some((a, b)) => format!("{a:+.1} ({} pairs, {b:+.1} µs per point)", pts.len()),
        None => "—".into(),
    }
}

/// Every pair's `q` of `peer` minus `reference`'s at `case` (the two runs of one
/// repetition of one run), all runs pooled.
fn diffs(
    runs: &[(String, BenchResult)],
    case: &str,
    (peer, reference): Pair,
    q: Statistic,
) -> Vec<f64> {
    pairs_with(runs, case, peer, reference)
        .filter_map(|(s, n)| Some(q(s)? - q(n)?))
        .collect()
}

/// Differences against nginx as one cell: "median difference; k of n", k the pairs at or
/// below nginx (difference ≤ 0). `None` without differences.
pub(crate) fn diff_cell(d: &[f64]) -> Option<String> {
    let st = stat(d)?;
    let k = d.iter().filter(|&&x| x <= 0.0).count();
    // No "-0.0": a median that rounds to zero prints as +0.0.
    let m = if st.median.abs() < 0.05 {
        0.0
    } else {
        st.median
    };
    Some(format!("{m:+.1}; {k} of {}", d.len()))
}

/// One row's cells, one per [`SHAPE`] statistic: "median difference; k of n" with k the
/// pairs with the peer at or below the reference ("—" for a statistic no pair has, such as
/// steal in runs written before it was recorded), then the p50 difference at equal steal.
/// `None` without pairs.
fn pair_cells(runs: &[(String, BenchResult)], case: &str, pair: Pair) -> Option<Vec<String>> {
    let cells: Vec<Option<String>> = SHAPE
        .iter()
        .map(|&(_, q)| diff_cell(&diffs(runs, case, pair, q)))
        .collect();
    if cells.iter().all(Option::is_none) {
        return None;
    }
    let mut row: Vec<String> = cells
        .into_iter()
        .map(|c| c.unwrap_or_else(|| "—".into()))
        .collect();
    row.push(at_equal_steal(runs, case, pair));
    Some(row)
}

/// Echo latency of the floor and tollgate against nginx, repetition pair by repetition
/// pair, every run pooled: per sweep rate and statistic, the median of (peer − nginx) µs
/// and how many pairs had the peer at or below nginx. `min` is an echo that met no queue —
/// the path itself; where min agrees and p50/p90 part, the difference is queueing, not the
/// relay's work per frame. The load core's CPU per echo says whether the relay's traffic
/// made the side that queues do more work. The last row per rate is the A/A pair
/// (`tollgate-nolog` against tollgate): the same columns for one relay run twice, the
/// bench's resolution. Empty when no run has any of the rows' pairs in a sweep.
pub(crate) fn echo_pairs(runs: &[(String, BenchResult)]) -> String {
    let mut rates: Vec<f64> = Vec::new();
    for (_, r) in runs {
        for &rate in &r.sweep_rates {
            if !rates.contains(&rate) {
                rates.push(rate);
            }
        }
    }
    rates.sort_by(f64::total_cmp);
    let mut body = String::new();
    for rate in &rates {
        let case = format!("sweep@{rate}");
        for (label, pair) in ROWS {
            if let Some(cells) = pair_cells(runs, &case, pair) {
                let _ = writeln!(
                    body,
                    "| {}/s | {label} | {} |",
                    fmt(*rate),
                    cells.join(" | ")
                );
            }
        }
    }
    if body.is_empty() {
        return body;
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\n### Echo latency against nginx, pair by pair, {} runs pooled\n\n\
         Each cell: over every repetition's pair (the peer's run and nginx's of the same \
         repetition), the median of the peer's latency minus nginx's, µs, and in how many \
         pairs the peer was at or below nginx. *min* is an echo that met no queue: the path \
         itself. Where min agrees and p50/p90 part, the difference is queueing (at the load \
         core or the relay's), not the relay's work per frame. *load core*: the CPU the \
         generator and the mock (one thread on the load core) spent per echo; where it \
         agrees too, the relay's traffic gave the load core no more work, only other \
         timing. *host steal*: the hypervisor running something else while a vCPU had work, \
         relay core + load core, percentage points of the run; on a shared host a run's \
         p50 rises with it. *p50 at equal steal*: the Theil–Sen line through \
         every pair's (steal difference, p50 difference), read at no steal difference, and \
         its slope. *A/A*: `tollgate-nolog` against tollgate, one relay run twice (on \
         echo no response ends, so no usage record is written): what two runs of the same \
         relay give in these columns, and so how far a peer's row against nginx must be \
         from it to say something about the peer.\n",
        runs.len()
    );
    let names: Vec<&str> = SHAPE.iter().map(|&(n, _)| n).collect();
    let _ = writeln!(
        o,
        "| rate | peer | {} | p50 at equal steal |",
        names.join(" | ")
    );
    let _ = writeln!(o, "|---|---|{}", "---|".repeat(SHAPE.len() + 1));
    o.push_str(&body);
    o
}

#[cfg(test)]
mod tests {
    use super::super::test_runs::{echo_run, line, result, with_steal};
    use super::*;

    /// The pairs of two runs pooled per rate and statistic; a rate the floor did not run
    /// has no floor row; runs without nginx add nothing.
    #[test]
    fn echo_pairs_pool_each_repetition_against_nginx_across_runs() {
        let a = result(vec![
            echo_run("nginx", 2000.0, 0, 100.0, 0.2),
            echo_run("tollgate", 2000.0, 0, 90.0, 0.2),
            echo_run("floor", 2000.0, 0, 110.0, 0.2),
            echo_run("nginx", 2000.0, 1, 200.0, 0.2),
            // The load core 0.1 busier at 2000/s: 50 µs more per echo.
            echo_run("tollgate", 2000.0, 1, 230.0, 0.3),
            // No nginx run of repetition 2: not a pair.
            echo_run("tollgate", 2000.0, 2, 10.0, 0.2),
        ]);
        let b = result(vec![
            echo_run("nginx", 2000.0, 0, 100.0, 0.2),
            echo_run("tollgate", 2000.0, 0, 120.0, 0.2),
            // The A/A pair: tollgate-nolog against tollgate of the same repetition.
            echo_run("tollgate-nolog", 2000.0, 0, 126.0, 0.2),
            echo_run("nginx", 16000.0, 0, 300.0, 0.5),
            echo_run("tollgate", 16000.0, 0, 290.0, 0.5),
        ]);
        let md = echo_pairs(&[("a".into(), a), ("b".into(), b)]);
        assert!(
            md.starts_with("\n### Echo latency against nginx, pair by pair, 2 runs pooled\n"),
            "{md}"
        );
        assert!(
            md.contains("| rate | peer | min | p50 | p90 | p99 | load core, µs per echo | host steal, points | p50 at equal steal |\n"),
            "{md}"
        );
        // tollgate at 2000/s: p50 differences −10, +30, +20 → median +20, 1 of 3 ≤ nginx;
        // min is half, p90 twice, p99 four times p50 in these runs. The load core: 0, +50,
        // 0 µs per echo → median 0, 2 of 3 at or below nginx.
        assert_eq!(
            line(&md, "| 2000/s | tollgate"),
            "| 2000/s | tollgate | +10.0; 1 of 3 | +20.0; 1 of 3 | +40.0; 1 of 3 | +80.0; 1 of 3 | +0.0; 2 of 3 | — | — |"
        );
        assert_eq!(
            line(&md, "| 2000/s | floor"),
            "| 2000/s | floor | +5.0; 0 of 1 | +10.0; 0 of 1 | +20.0; 0 of 1 | +40.0; 0 of 1 | +0.0; 1 of 1 | — | — |"
        );
        assert_eq!(
            line(&md, "| 16.0k/s | tollgate"),
            "| 16.0k/s | tollgate | -5.0; 1 of 1 | -10.0; 1 of 1 | -20.0; 1 of 1 | -40.0; 1 of 1 | +0.0; 1 of 1 | — | — |"
        );
        assert!(!md.contains("| 16.0k/s | floor"), "{md}");
        // tollgate-nolog's one pair: +6 at p50 (126 against 120), so not at or below.
        assert_eq!(
            line(&md, "| 2000/s | A/A: tollgate-nolog vs tollgate"),
            "| 2000/s | A/A: tollgate-nolog vs tollgate | +3.0; 0 of 1 | +6.0; 0 of 1 | +12.0; 0 of 1 | +24.0; 0 of 1 | +0.0; 1 of 1 | — | — |"
        );
        assert!(!md.contains("| 16.0k/s | A/A"), "{md}");
        // No nginx anywhere: no section.
        let lone = result(vec![echo_run("tollgate", 2000.0, 0, 90.0, 0.2)]);
        assert_eq!(echo_pairs(&[("c".into(), lone)]), "");
    }

    /// Pairs whose p50 differs by 5 µs plus 10 µs per point of extra host steal: the
    /// steal column pools the steal differences, the last reads the line at no difference.
    #[test]
    fn echo_pairs_read_the_p50_difference_at_equal_host_steal() {
        let pair = |rep: usize, nginx_steal: f64, steal: f64| {
            let (p50_nginx, extra) = (300.0, (steal - nginx_steal) * 100.0);
            [
                with_steal(
                    echo_run("nginx", 16000.0, rep, p50_nginx, 0.9),
                    nginx_steal,
                    0.0,
                ),
                with_steal(
                    echo_run(
                        "tollgate",
                        16000.0,
                        rep,
                        p50_nginx + 5.0 + 10.0 * extra,
                        0.9,
                    ),
                    steal,
                    0.0,
                ),
            ]
        };
        // Steal differences of 0, +2 and +5 points: p50 +5, +25, +55.
        let runs: Vec<_> = [
            pair(0, 0.03, 0.03),
            pair(1, 0.01, 0.03),
            pair(2, 0.10, 0.15),
        ]
        .into_iter()
        .flatten()
        .collect();
        let md = echo_pairs(&[("a".into(), result(runs))]);
        assert!(
            line(&md, "| 16.0k/s | tollgate").ends_with(
                "| +100.0; 0 of 3 | +0.0; 3 of 3 | +2.0; 1 of 3 | +5.0 (3 pairs, +10.0 µs per point) |"
            ),
            "{md}"
        );
        // Too few points, or a steal that did not vary: no line.
        assert_eq!(theil_sen(&[(0.0, 1.0), (1.0, 2.0)]), None);
        assert_eq!(theil_sen(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]), None);
        // Six slopes of 2, and four (999.75 to 3993) to a repetition the host stalled: the
        // median slope stays 2, and the line through the rest is y = 1 + 2x.
        let (a, b) = theil_sen(&[
            (0.0, 1.0),
            (1.0, 3.0),
            (2.0, 5.0),
            (3.0, 7.0),
            (4.0, 4000.0),
        ])
        .expect("a line");
        assert_eq!((a, b), (1.0, 2.0));
    }
}
