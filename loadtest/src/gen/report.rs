//! The result of one run: JSON (serde) and a Markdown summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::stats::{Counts, Hists, LatencySummary};
use super::RunConfig;

/// CPU and memory of the system under test over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SutReport {
    /// Processes summed.
    pub pids: Vec<u32>,
    /// Δ(utime+stime) over the run, seconds.
    pub cpu_s: f64,
    /// `cpu_s` ÷ wall time (1.0 = one core busy).
    pub cpu_util: f64,
    /// CPU µs per frame forwarded (frames sent + received by the generator).
    pub cpu_us_per_frame: Option<f64>,
    /// CPU µs per MB of payload forwarded.
    pub cpu_us_per_mb: Option<f64>,
    /// Summed RSS before the run, KiB.
    pub rss_before_kib: u64,
    /// Idle: summed RSS with every session open, KiB.
    pub rss_loaded_kib: Option<u64>,
    /// Idle: (loaded − before) ÷ sessions open, KiB.
    pub kib_per_session: Option<f64>,
    /// The measurement window (setup and teardown excluded): CPU per frame, per thread,
    /// syscalls per frame.
    #[serde(default)]
    pub window: Option<super::window::WindowReport>,
}

impl SutReport {
    pub(crate) fn new(
        pids: &[u32],
        cpu_s: f64,
        wall: f64,
        c: &Counts,
        rss_before_kib: u64,
        rss_loaded_kib: Option<u64>,
    ) -> SutReport {
        let frames = c.frames_sent + c.frames_received;
        let mb = (c.bytes_sent + c.bytes_received) as f64 / 1e6;
        SutReport {
            pids: pids.to_vec(),
            cpu_s,
            cpu_util: cpu_s / wall,
            cpu_us_per_frame: (frames > 0).then(|| cpu_s * 1e6 / frames as f64),
            cpu_us_per_mb: (mb > 0.0).then(|| cpu_s * 1e6 / mb),
            rss_before_kib,
            rss_loaded_kib,
            kib_per_session: rss_loaded_kib
                .filter(|_| c.sessions > 0)
                .map(|l| l.saturating_sub(rss_before_kib) as f64 / c.sessions as f64),
            window: None,
        }
    }
}

/// Everything one `loadtest run` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Workload name.
    pub workload: String,
    /// Target URL.
    pub target: String,
    /// Sessions requested.
    pub sessions: usize,
    /// Generator threads.
    pub threads: usize,
    /// Turns per session, when fixed.
    pub turns_per_session: Option<u64>,
    /// Offered open-loop rate (turns/s or frames/s); `None` = closed loop.
    pub offered_rate: Option<f64>,
    /// Wall time of the run, seconds.
    pub duration_s: f64,
    /// Completed units per second (turns, echoes, pings, churned sessions); for
    /// open-loop echo, echoes received within the scheduling window ÷ its length.
    pub achieved_rate: f64,
    /// Raw counters.
    pub counts: Counts,
    /// Data frames per second, both directions.
    pub frames_per_s: f64,
    /// Payload MB (10^6 bytes) per second, both directions.
    pub mb_per_s: f64,
    /// Latency summaries by metric name.
    pub latency: BTreeMap<String, LatencySummary>,
    /// CPU seconds used by the generator process (generator + in-process mock).
    pub load_cpu_s: f64,
    /// `load_cpu_s` ÷ wall time.
    pub load_cpu_util: f64,
    /// Per CPU, in CPU order: the fraction of the run the hypervisor ran something else
    /// while that vCPU had work (`steal` in `/proc/stat`). Empty on a kernel without the
    /// column, and in reports written before it was recorded.
    #[serde(default)]
    pub host_steal: Vec<f64>,
    /// The system under test, when `--sut-pid` was given.
    pub sut: Option<SutReport>,
    /// The first few error messages.
    pub error_samples: Vec<String>,
    /// HdrHistogram percentile distributions (written by `--hgrm`).
    #[serde(skip)]
    pub hgrm: String,
}

fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

impl Report {
    pub(crate) fn new(
        cfg: &RunConfig,
        wall: f64,
        counts: Counts,
        hists: &Hists,
        load_cpu_s: f64,
        sut: Option<SutReport>,
        error_samples: Vec<String>,
    ) -> Report {
        let frames = (counts.frames_sent + counts.frames_received) as f64;
        let bytes = (counts.bytes_sent + counts.bytes_received) as f64;
        Report {
            workload: cfg.workload.name().to_string(),
            target: cfg.target.clone(),
            sessions: cfg.sessions,
            threads: cfg.threads.min(cfg.sessions),
            turns_per_session: cfg.turns,
            offered_rate: cfg.rate,
            duration_s: wall,
            // Open-loop echo: what came back while frames were being scheduled,
            // over that window (connect time and the final drain excluded).
            achieved_rate: if counts.window_ns > 0 {
                counts.in_window as f64 / (counts.window_ns as f64 / 1e9)
            } else {
                counts.completed as f64 / wall
            },
            frames_per_s: frames / wall,
            mb_per_s: bytes / 1e6 / wall,
            counts,
            latency: hists.summaries(),
            load_cpu_s,
            load_cpu_util: load_cpu_s / wall,
            host_steal: Vec::new(),
            sut,
            error_samples,
            hgrm: hists.hgrm(),
        }
    }

    /// A Markdown summary.
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let c = &self.counts;
        let _ = writeln!(
            o,
            "### loadtest run: {} → {}\n\n{} sessions on {} thread(s), {:.2} s, {}\n",
            self.workload,
            self.target,
            self.sessions,
            self.threads,
            self.duration_s,
            match self.offered_rate {
                Some(r) => format!("open loop at {}/s offered", fmt_rate(r)),
                None => "closed loop".to_string(),
            }
        );
        let _ = writeln!(o, "| metric | value |\n|---|---|");
        let _ = writeln!(
            o,
            "| completed | {} ({}/s) |",
            c.completed,
            fmt_rate(self.achieved_rate)
        );
        let _ = writeln!(
            o,
            "| frames sent / received | {} / {} |",
            c.frames_sent, c.frames_received
        );
        let _ = writeln!(o, "| frames/s | {} |", fmt_rate(self.frames_per_s));
        let _ = writeln!(o, "| MB/s | {:.1} |", self.mb_per_s);
        let _ = writeln!(o, "| sessions upgraded | {} |", c.sessions);
        let _ = writeln!(o, "| errors | {} |", c.errors);
        let _ = writeln!(
            o,
            "| generator CPU | {:.0}% of a core |",
            self.load_cpu_util * 100.0
        );
        if !self.host_steal.is_empty() {
            let cpus: Vec<String> = self
                .host_steal
                .iter()
                .enumerate()
                .map(|(i, f)| format!("CPU {i} {:.1}%", f * 100.0))
                .collect();
            let _ = writeln!(o, "| host steal | {} |", cpus.join(", "));
        }
        if let Some(s) = &self.sut {
            let _ = writeln!(o, "| SUT CPU | {:.0}% of a core |", s.cpu_util * 100.0);
            if let Some(v) = s.cpu_us_per_frame {
                let _ = writeln!(o, "| SUT CPU per frame | {v:.2} µs |");
            }
            if let Some(v) = s.cpu_us_per_mb {
                let _ = writeln!(o, "| SUT CPU per MB | {v:.0} µs |");
            }
            if let Some(v) = s.kib_per_session {
                let _ = writeln!(o, "| SUT memory per session | {v:.1} KiB |");
            }
        }
        if !self.latency.is_empty() {
            let _ = writeln!(o, "\n| latency (µs) | n | p50 | p90 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|");
            for (name, l) in &self.latency {
                let _ = writeln!(
                    o,
                    "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                    l.count, l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
                );
            }
        }
        for e in &self.error_samples {
            let _ = writeln!(o, "\nerror: {e}");
        }
        o
    }
}
