//! The relay's hop, measured in the kernel: from the moment one of the system under test's
//! threads is switched in (it woke for a frame) to the first frame it forwards (a data
//! packet leaving on loopback), over every wake-up of the measurement window.
//!
//! Echo latency through a relay on this VM moves by several µs from run to run (the
//! generator, the mock and the hypervisor's wake-ups dominate it), so a median of echo
//! latencies cannot show a difference of one µs between two relays. This can: every
//! wake-up is a sample (tens of thousands per run), and the interval excludes everything
//! that is not the relay's own work — the wake-up latency of its vCPU, the peers' CPU.
//!
//! Source: `perf record -a -e sched:sched_switch -e net:net_dev_queue` over the window,
//! read back with `perf script`. A wake-up is a `sched_switch` to one of the SUT's threads;
//! it ends when that thread is switched out. A data packet is a `net_dev_queue` of more
//! than [`DATA_MIN_LEN`] bytes sent by that thread (pure ACKs are 54–74 bytes). Wake-ups
//! in which the thread sent no data (a timer, an ACK) are not counted.

use std::collections::{HashMap, HashSet};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::perf_record::Recording;
use super::stats::LatencySummary;

/// Smallest `net_dev_queue` length counted as a forwarded frame (IP + TCP headers with
/// options are 52–60 bytes; a 200-byte echo frame is ~270).
pub const DATA_MIN_LEN: u32 = 100;

/// The hop of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HopStats {
    /// Wake-ups that forwarded at least one frame.
    pub wakeups: u64,
    /// Switch-in → first forwarded frame, µs: median.
    pub p50_us: f64,
    /// … 90th percentile.
    pub p90_us: f64,
    /// Wake-ups that forwarded exactly one frame: switch-in → that frame, median µs.
    pub single_p50_us: Option<f64>,
    /// Frames forwarded per counted wake-up.
    pub frames_per_wakeup: f64,
}

/// One `perf script --ns -F tid,cpu,time,event,trace` line, as far as the hop needs it.
#[derive(Debug, PartialEq)]
enum Event {
    /// `prev_pid` was switched out and `next_pid` in.
    Switch { prev: u32, next: u32 },
    /// A packet of `len` bytes queued by the current thread.
    Packet { len: u32 },
}

/// `(tid, time in ns, event)` of a line, or `None` for anything else.
fn parse_line(line: &str) -> Option<(u32, u64, Event)> {
    let mut it = line.split_ascii_whitespace();
    let tid: u32 = it.next()?.parse().ok()?;
    let _cpu = it.next()?;
    let time = it.next()?.strip_suffix(':')?;
    let (s, ns) = time.split_once('.')?;
    let ns: u64 = s.parse::<u64>().ok()? * 1_000_000_000 + ns.parse::<u64>().ok()?;
    let event = it.next()?.strip_suffix(':')?;
    let field = |key: &str| -> Option<u32> {
        line.split_ascii_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
    };
    let ev = match event {
        "sched:sched_switch" => Event::Switch {
            prev: field("prev_pid=")?,
            next: field("next_pid=")?,
        },
        "net:net_dev_queue" => Event::Packet {
            len: field("len=")?,
        },
        _ => return None,
    };
    Some((tid, ns, ev))
}

/// A wake-up in progress.
struct Running {
    since: u64,
    first: Option<u64>,
    frames: u32,
}

/// The hop over `perf script` output, counting the threads in `tids`; `None` when no
/// wake-up forwarded a frame.
pub fn hops(script: &str, tids: &HashSet<u32>) -> Option<HopStats> {
    let mut running: HashMap<u32, Running> = HashMap::new();
    // ns, like the generator's latency histograms (`gen::stats`).
    let new = || Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).ok();
    let (mut firsts, mut singles) = (new()?, new()?);
    let mut frames = 0u64;
    for (tid, t, ev) in script.lines().filter_map(parse_line) {
        match ev {
            Event::Switch { prev, next } => {
                if let Some(r) = running.remove(&prev) {
                    if let Some(f) = r.first {
                        let ns = f.saturating_sub(r.since).max(1);
                        firsts.saturating_record(ns);
                        if r.frames == 1 {
                            singles.saturating_record(ns);
                        }
                        frames += u64::from(r.frames);
                    }
                }
                if tids.contains(&next) {
                    running.insert(
                        next,
                        Running {
                            since: t,
                            first: None,
                            frames: 0,
                        },
                    );
                }
            }
            Event::Packet { len } if len > DATA_MIN_LEN => {
                if let Some(r) = running.get_mut(&tid) {
                    r.first.get_or_insert(t);
                    r.frames += 1;
                }
            }
            Event::Packet { .. } => {}
        }
    }
    if firsts.is_empty() {
        return None;
    }
    let all = LatencySummary::of(&firsts);
    Some(HopStats {
        wakeups: all.count,
        p50_us: all.p50_us,
        p90_us: all.p90_us,
        single_p50_us: (!singles.is_empty()).then(|| LatencySummary::of(&singles).p50_us),
        frames_per_wakeup: frames as f64 / all.count as f64,
    })
}

/// Thread ids of `pids` (from `/proc/PID/task`).
pub fn thread_ids(pids: &[u32]) -> HashSet<u32> {
    pids.iter()
        .filter_map(|p| std::fs::read_dir(format!("/proc/{p}/task")).ok())
        .flat_map(|d| d.flatten())
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// A running `perf record` of the two tracepoints, system-wide.
pub struct Trace(Recording);

impl Trace {
    /// Start recording; `None` when perf is missing or not allowed (the hop is then not
    /// reported).
    pub fn start() -> Option<Trace> {
        Recording::start(
            "hops",
            &["-a", "-e", "sched:sched_switch", "-e", "net:net_dev_queue"],
        )
        .map(Trace)
    }

    /// Stop recording and compute the hop of `tids`.
    pub fn stop(self, tids: &HashSet<u32>) -> Option<HopStats> {
        let text = self.0.finish(&["--ns", "-F", "tid,cpu,time,event,trace"])?;
        hops(&text, tids)
    }
}

#[cfg(test)]
#[path = "hops_tests.rs"]
mod tests;
