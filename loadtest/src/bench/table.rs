//! Markdown tables (rows = peers, columns = metrics; median with min–max over
//! repetitions, ratio or difference to `direct` and to `tunnel`) and the sweep plot.

use std::fmt::Write as _;

use super::cases::Kind;
use super::peers::Peer;
use super::{BenchResult, Sample};

pub(crate) use super::load_core::{load_us_frame, per_window_load, win_per_load};
pub(crate) use super::window_cpu::{run_report, win_us_frame, win_user, window};
use super::window_cpu::{sut_us_frame, win_helpers, win_kernel, win_main_thread, win_syscalls};

/// Median, min and max of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

/// Median/min/max of `v` (`None` when empty).
pub fn stat(v: &[f64]) -> Option<Stat> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Stat {
        median,
        min: v[0],
        max: v[n - 1],
    })
}

/// Compact number: `412.3k`, `1.25M`, `87.5`, `3.21`.
pub fn fmt(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub(crate) type Getter = fn(&Sample) -> Option<f64>;

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Compare {
    /// Show ×ratio to direct and tunnel.
    Ratio,
    /// Show +difference to direct and tunnel (latencies).
    Added,
    /// No comparison.
    None,
}

pub(crate) struct Col {
    title: String,
    case: String,
    get: Getter,
    cmp: Compare,
    throughput: bool,
}

pub(crate) fn col(title: &str, case: &str, get: Getter, cmp: Compare, throughput: bool) -> Col {
    Col {
        title: title.into(),
        case: case.into(),
        get,
        cmp,
        throughput,
    }
}

pub(crate) fn lat(
    s: &Sample,
    name: &str,
    q: fn(&crate::gen::stats::LatencySummary) -> f64,
) -> Option<f64> {
    s.report.as_ref()?.latency.get(name).map(q)
}

pub(crate) fn samples<'a>(
    r: &'a BenchResult,
    case: &'a str,
    peer: Peer,
) -> impl Iterator<Item = &'a Sample> {
    r.samples
        .iter()
        .filter(move |s| s.case == case && s.peer == peer)
}

fn cell_stat(r: &BenchResult, c: &Col, peer: Peer) -> Option<Stat> {
    let v: Vec<f64> = samples(r, &c.case, peer)
        .filter_map(|s| (c.get)(s))
        .collect();
    stat(&v)
}

fn cell(r: &BenchResult, c: &Col, peer: Peer) -> String {
    let Some(st) = cell_stat(r, c, peer) else {
        let err = samples(r, &c.case, peer).find_map(|s| s.error.clone());
        return match err {
            Some(e) if e.contains("not installed") => "not installed".into(),
            Some(_) => "failed".into(),
            None => "—".into(),
        };
    };
    let mut out = if (st.max - st.min).abs() > f64::EPSILON {
        format!("{} ({}–{})", fmt(st.median), fmt(st.min), fmt(st.max))
    } else {
        fmt(st.median)
    };
    let mut refs = Vec::new();
    for (rp, tag) in [(Peer::Direct, "d"), (Peer::Tunnel, "t")] {
        if rp == peer || c.cmp == Compare::None {
            continue;
        }
        if let Some(base) = cell_stat(r, c, rp) {
            match c.cmp {
                Compare::Ratio if base.median != 0.0 => {
                    refs.push(format!("×{:.2} {tag}", st.median / base.median))
                }
                Compare::Added => refs.push(format!("{:+.1} {tag}", st.median - base.median)),
                _ => {}
            }
        }
    }
    if !refs.is_empty() {
        let _ = write!(out, "<br>{}", refs.join(", "));
    }
    let bound = samples(r, &c.case, peer)
        .filter(|s| s.generator_bound)
        .count();
    let all = samples(r, &c.case, peer)
        .filter(|s| s.report.is_some())
        .count();
    if c.throughput && peer != Peer::Direct && bound * 2 > all {
        out.push_str("<br>generator-bound");
    }
    out
}

pub(crate) fn table(o: &mut String, r: &BenchResult, peers: &[Peer], title: &str, cols: &[Col]) {
    let _ = writeln!(o, "\n### {title}\n");
    let _ = write!(o, "| peer |");
    for c in cols {
        let _ = write!(o, " {} |", c.title);
    }
    let _ = write!(o, "\n|---|");
    for _ in cols {
        let _ = write!(o, "---|");
    }
    o.push('\n');
    for p in peers {
        let _ = write!(o, "| {} |", p.name());
        for c in cols {
            let _ = write!(o, " {} |", cell(r, c, *p));
        }
        o.push('\n');
    }
}

/// The Markdown report.
pub fn markdown(r: &BenchResult, peers: &[Peer]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "## Side-by-side benchmark\n");
    let _ = writeln!(o, "- command: `{}`", r.command);
    let _ = writeln!(o, "- {}", r.machine.line());
    let v: Vec<String> = r
        .versions
        .iter()
        .map(|(n, v)| format!("{n}: {v}"))
        .collect();
    let _ = writeln!(o, "- versions: {}", v.join("; "));
    let _ = writeln!(
        o,
        "- pinning: {}; one worker / thread / process per peer",
        r.pinning
    );
    let _ = writeln!(o, "- limits: a process may hold at most {} open files here (hard limit), so one relay process holds at most ~{} sessions (2 descriptors each)", r.machine.nofile.1, r.machine.nofile.1 / 2);
    let probes = match r.probe_reps() {
        0 => String::new(),
        n => format!(" and {n} more of each with perf's probes, read only for syscalls and the user/kernel split"),
    };
    let _ = writeln!(o, "- {} repetition(s) per peer ({} of paced and firehose{probes}, {} per sweep rate) in alternating order; cells: median (min–max); `×r d`/`×r t` = ratio of medians to direct/tunnel; `+x d` = added µs; bench wall time {:.0} s", r.reps, r.cpu_reps(), r.sweep_reps(), r.elapsed_s);
    if !r.installs.is_empty() {
        let _ = writeln!(o, "- installed: {}", r.installs.join("; "));
    }
    let reference = r.sweep_rates.first().copied().unwrap_or(0.0);
    let ref_case = format!("sweep@{reference}");
    let through = [
        col(
            "firehose frames/s",
            "firehose",
            |s| run_report(s).map(|r| r.frames_per_s),
            Compare::Ratio,
            true,
        ),
        col(
            "firehose SUT µs/frame",
            "firehose",
            sut_us_frame,
            Compare::Ratio,
            false,
        ),
        col(
            "stream SUT µs/frame",
            "stream",
            sut_us_frame,
            Compare::Ratio,
            false,
        ),
        col(
            "bulk 16 KiB MB/s",
            "bulk-16KiB",
            |s| s.report.as_ref().map(|r| r.mb_per_s),
            Compare::Ratio,
            true,
        ),
        col(
            "bulk 64 KiB MB/s",
            "bulk-64KiB",
            |s| s.report.as_ref().map(|r| r.mb_per_s),
            Compare::Ratio,
            true,
        ),
        col(
            "bulk 64 KiB SUT µs/MB",
            "bulk-64KiB",
            |s| s.report.as_ref()?.sut.as_ref()?.cpu_us_per_mb,
            Compare::Ratio,
            false,
        ),
        col(
            "churn sessions/s",
            "churn",
            |s| s.report.as_ref().map(|r| r.achieved_rate),
            Compare::Ratio,
            true,
        ),
    ];
    table(
        &mut o,
        r,
        peers,
        "Throughput and SUT CPU (firehose: 64 conns, unpaced; bulk: 8 conns × 4 in flight, echo)",
        &through,
    );
    let per_frame = [
        col(
            "paced frames/s",
            "paced",
            |s| run_report(s).map(|r| r.frames_per_s),
            Compare::Ratio,
            true,
        ),
        col(
            "paced SUT µs/frame",
            "paced",
            win_us_frame,
            Compare::Ratio,
            false,
        ),
        col(
            "paced syscalls/frame",
            "paced",
            win_syscalls,
            Compare::Ratio,
            false,
        ),
        col(
            "paced user µs/frame",
            "paced",
            win_user,
            Compare::Ratio,
            false,
        ),
        col(
            "paced kernel µs/frame",
            "paced",
            win_kernel,
            Compare::Ratio,
            false,
        ),
        col(
            "paced main thread µs/frame",
            "paced",
            win_main_thread,
            Compare::Ratio,
            false,
        ),
        col(
            "paced other threads µs/frame",
            "paced",
            win_helpers,
            Compare::None,
            false,
        ),
        col(
            "paced load core µs/frame",
            "paced",
            load_us_frame,
            Compare::Ratio,
            false,
        ),
        col(
            "paced SUT per load-core µs",
            "paced",
            win_per_load,
            Compare::Ratio,
            false,
        ),
        col(
            "firehose SUT µs/frame",
            "firehose",
            win_us_frame,
            Compare::Ratio,
            false,
        ),
        col(
            "firehose syscalls/frame",
            "firehose",
            win_syscalls,
            Compare::Ratio,
            false,
        ),
        col(
            "firehose user µs/frame",
            "firehose",
            win_user,
            Compare::Ratio,
            false,
        ),
    ];
    table(
        &mut o,
        r,
        peers,
        &format!("Cost per frame inside the measurement window (connection setup and teardown excluded; paced: 200 conns × 300 deltas/s of ~190 B, one frame per wake-up; firehose: 64 conns unpaced; main thread = the workers; other threads = tollgate's usage-log writer; load core = the generator and the mock on CPU 1 over the whole run, per frame received; SUT per load-core µs = the two CPUs' quotient inside the window; syscalls from `perf stat -e raw_syscalls:sys_enter`; user and kernel: the SUT's CPU sampled every 1 ms of it with `perf record -e cpu-clock`, user space being the relay's own code{})", if r.probe_reps() > 0 {
            "; syscalls, user and kernel from the probe repetitions, whose CPU includes perf's own: their user plus kernel is that run's total, not the SUT µs/frame of the unprobed ones"
        } else {
            ""
        }),
        &per_frame,
    );
    let latency = [
        col(
            "stream first delta p50",
            "stream",
            |s| lat(s, "first_delta", |l| l.p50_us),
            Compare::Added,
            false,
        ),
        col(
            "stream first delta p99",
            "stream",
            |s| lat(s, "first_delta", |l| l.p99_us),
            Compare::Added,
            false,
        ),
        col(
            "stream inter-delta p99",
            "stream",
            |s| lat(s, "inter_delta", |l| l.p99_us),
            Compare::Added,
            false,
        ),
        col(
            &format!("echo p50 @{}/s", fmt(reference)),
            &ref_case,
            |s| lat(s, "echo", |l| l.p50_us),
            Compare::Added,
            false,
        ),
        col(
            &format!("echo p99 @{}/s", fmt(reference)),
            &ref_case,
            |s| lat(s, "echo", |l| l.p99_us),
            Compare::Added,
            false,
        ),
        col(
            &format!("echo p99.9 @{}/s", fmt(reference)),
            &ref_case,
            |s| lat(s, "echo", |l| l.p999_us),
            Compare::Added,
            false,
        ),
    ];
    table(&mut o, r, peers, "Latency, µs (stream: 100 conns, 20 deltas paced at 100/s; echo: 16 conns, 200 B, open loop, from scheduled send)", &latency);
    super::sections::hops(&mut o, r, peers);
    super::sections::sweep(&mut o, r, peers);
    let mut cap: Vec<Col> = r
        .samples
        .iter()
        .filter(|s| s.kind == Kind::Idle)
        .map(|s| s.case.clone())
        .fold(Vec::<String>::new(), |mut v, c| {
            if !v.contains(&c) {
                v.push(c);
            }
            v
        })
        .into_iter()
        .flat_map(|c| {
            let n = c.trim_start_matches("idle-").to_string();
            [
                col(
                    &format!("KiB/session ({n} idle)"),
                    &c,
                    |s| s.report.as_ref()?.sut.as_ref()?.kib_per_session,
                    Compare::Ratio,
                    false,
                ),
                col(
                    &format!("ping p99 µs ({n} idle)"),
                    &c,
                    |s| lat(s, "ping", |l| l.p99_us),
                    Compare::Added,
                    false,
                ),
                col(
                    &format!("sessions open ({n})"),
                    &c,
                    |s| s.report.as_ref().map(|r| r.counts.sessions as f64),
                    Compare::None,
                    false,
                ),
            ]
        })
        .collect();
    cap.push(col("errors (all runs)", "", |_| None, Compare::None, false));
    table(&mut o, r, peers, "Idle capacity (sessions spread over 127.0.0.2–127.0.0.9; ΔRSS of every SUT process ÷ sessions)", &cap[..cap.len() - 1]);
    super::sections::usage_and_errors(&mut o, r);
    o
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
