//! `loadtest bench`: every peer of `shared/benchmarking.md` side by side in one
//! run, in front of the same mock upstream, with the SUT pinned to CPU 0 and the
//! generator + mock pinned to CPU 1; ≥3 repetitions (9 per latency-sweep rate) in
//! alternating peer order; a JSON file per run, Markdown tables and an SVG of the
//! latency sweep.

pub mod cases;
mod echo_pairs;
mod history;
mod history_cells;
mod hop_history;
pub mod host;
mod load_core;
mod load_follow;
mod load_history;
pub mod machine;
mod medians;
pub mod peers;
mod proxy_conf;
mod render;
mod schedule;
pub mod sections;
pub mod svg;
pub mod table;
mod targets;
mod targets_report;
#[cfg(test)]
mod test_runs;
pub mod usage;
mod window_cpu;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::gen::{self, Report};
use cases::{Case, Kind, Profile};
pub use history::history;
use host::MockHost;
use machine::Machine;
use peers::{Peer, PeerEnv, RunningPeer, TlsMode};
pub use render::render;
pub use schedule::{schedule, Reps};
use usage::UsageCheck;

/// The tenant key every generator presents (tollgate checks it; the others pass it on).
pub const BENCH_KEY: &str = "tg-bench-key-0001";
/// Load-side utilisation above which a throughput cell may be generator-bound.
const BUSY: f64 = 0.9;

/// What `loadtest bench` runs.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// One repetition, short durations.
    pub quick: bool,
    /// Add the 4k and 9k idle-session sizes.
    pub full: bool,
    /// Override the profile's repetitions.
    pub reps: Option<usize>,
    /// Override the profile's repetitions of each sweep rate.
    pub sweep_reps: Option<usize>,
    /// Override the profile's repetitions of the CPU cases (paced, firehose).
    pub cpu_reps: Option<usize>,
    /// Probe repetitions of each CPU case (default `schedule::DEFAULT_PROBE_REPS`).
    pub probe_reps: Option<usize>,
    /// Peers to run (default: all).
    pub peers: Vec<Peer>,
    /// Output directory.
    pub out: PathBuf,
    /// The tollgate binary.
    pub tollgate: PathBuf,
    /// Install nginx/haproxy with apt-get when missing.
    pub install: bool,
    /// The command line, for the report.
    pub command: String,
    /// Run only the cases whose name starts with one of these (empty = all).
    pub only: Vec<String>,
    /// Which legs run TLS.
    pub tls: peers::TlsMode,
}

/// One (case, peer, repetition) run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Case name.
    pub case: String,
    /// Case group.
    pub kind: Kind,
    /// Peer.
    pub peer: Peer,
    /// Repetition (0-based).
    pub rep: usize,
    /// The generator's report.
    pub report: Option<Report>,
    /// Data frames the mock wrote.
    pub mock_frames_sent: u64,
    /// Usage log vs ledger (tollgate only).
    pub usage: Option<UsageCheck>,
    /// Load side ≥ 90% of its core while the SUT is not.
    pub generator_bound: bool,
    /// Why there is no report.
    pub error: Option<String>,
    /// A CPU case's probe repetition: the run with perf's syscall count and user/kernel
    /// sampler attached (`gen::Probes::Split`). Its CPU, raised by the probes, is left out
    /// of every CPU figure; only the probes' own are read from it (`window_cpu`). Reports
    /// written before probe repetitions existed have none: their CPU runs were all probed.
    #[serde(default)]
    pub probe_rep: bool,
}

impl Sample {
    /// A run of `case` by `peer` with nothing measured yet.
    fn empty(case: &Case, peer: Peer, rep: usize) -> Sample {
        Sample {
            case: case.name.clone(),
            kind: case.kind,
            peer,
            rep,
            report: None,
            mock_frames_sent: 0,
            usage: None,
            generator_bound: false,
            error: None,
            probe_rep: false,
        }
    }
}

/// Everything one bench run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchResult {
    /// The command line.
    pub command: String,
    /// Which legs ran TLS.
    #[serde(default)]
    pub tls: TlsMode,
    /// The machine.
    pub machine: Machine,
    /// `(name, version)` of the peers.
    pub versions: Vec<(String, String)>,
    /// How processes were placed.
    pub pinning: String,
    /// Repetitions of every case but the sweep's rates and the CPU cases.
    pub reps: usize,
    /// Repetitions of each sweep rate (`reps` in reports written before it existed).
    #[serde(default)]
    pub sweep_reps: Option<usize>,
    /// Repetitions of the CPU cases, paced and firehose (`reps` in reports written before
    /// it existed).
    #[serde(default)]
    pub cpu_reps: Option<usize>,
    /// Probe repetitions of each CPU case (none in reports written before they existed).
    #[serde(default)]
    pub probe_reps: Option<usize>,
    /// Offered sweep rates.
    pub sweep_rates: Vec<f64>,
    /// Package installs attempted.
    pub installs: Vec<String>,
    /// Wall time of the whole bench, seconds.
    pub elapsed_s: f64,
    /// Every run.
    pub samples: Vec<Sample>,
}

/// The Markdown report: the tables, then the data plane's targets evaluated on them.
pub fn markdown(r: &BenchResult, peers: &[Peer]) -> String {
    let mut o = table::markdown(r, peers);
    targets_report::section(&mut o, r);
    o
}

impl BenchResult {
    /// Repetitions of each sweep rate.
    pub fn sweep_reps(&self) -> usize {
        self.sweep_reps.unwrap_or(self.reps)
    }

    /// Repetitions of the CPU cases (paced, firehose).
    pub fn cpu_reps(&self) -> usize {
        self.cpu_reps.unwrap_or(self.reps)
    }

    /// Probe repetitions of each CPU case (0 in reports written before they existed).
    pub fn probe_reps(&self) -> usize {
        self.probe_reps.unwrap_or(0)
    }
}

/// Failures that stop the bench before it runs anything.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The tollgate binary is missing.
    #[error("tollgate binary not found at {0} (build it with cargo build --release)")]
    NoTollgate(PathBuf),
    /// The output directory cannot be written.
    #[error("cannot write {path}: {source}")]
    Output {
        /// Path.
        path: PathBuf,
        /// Error.
        source: std::io::Error,
    },
    /// `--render`: the run's `bench.json` cannot be read or parsed.
    #[error("cannot read the bench report {path}: {reason}")]
    Input {
        /// Path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

fn out_err(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Output {
        path: path.to_path_buf(),
        source,
    }
}

fn run_one(case: &Case, peer: Peer, rep: usize, probe: bool, env: &PeerEnv, work: &Path) -> Sample {
    let mut s = Sample {
        probe_rep: probe,
        ..Sample::empty(case, peer, rep)
    };
    let dir = match fresh_run_dir(work, &format!("{}-{}-{rep}", case.name, peer.name())) {
        Ok(d) => d,
        Err(e) => {
            s.error = Some(format!("run directory: {e}"));
            return s;
        }
    };
    let mut mcfg = case.mock.clone();
    if env.tls != TlsMode::None {
        match env
            .tls_files
            .as_ref()
            .map(|f| crate::tls::server_config_from_files(&f.cert, &f.key))
        {
            Some(Ok(c)) => mcfg.tls = Some(c),
            Some(Err(e)) => {
                s.error = Some(format!("mock TLS: {e}"));
                return s;
            }
            None => {}
        }
    }
    let ledger = dir.join("ledger.jsonl");
    if peer.meters() {
        mcfg.ledger_path = Some(ledger.clone());
    }
    let mock = match MockHost::start(mcfg) {
        Ok(m) => m,
        Err(e) => {
            s.error = Some(format!("mock: {e}"));
            return s;
        }
    };
    let rp = match RunningPeer::start(peer, env, mock.addr, &dir) {
        Ok(p) => p,
        Err(e) => {
            s.error = Some(e.to_string());
            return s;
        }
    };
    let mut rc = case.run.clone();
    rc.target = rp.url.clone();
    rc.key = Some(BENCH_KEY.to_string());
    rc.sut_pids = rp.pids();
    if probe {
        rc.probes = gen::Probes::Split;
    }
    if case.one_load_thread() {
        rc.host = Some(mock.event_loop.clone());
    }
    rc.tls_ca_pem = env
        .tls_files
        .as_ref()
        .and_then(|f| std::fs::read(&f.ca).ok());
    let report = gen::run(&rc);
    s.mock_frames_sent = mock.counters.frames_sent();
    let usage_log = rp.usage_log.clone();
    rp.stop();
    mock.stop();
    if let Some(log) = usage_log {
        s.usage = usage::compare_files(&log, &ledger).ok();
    }
    match report {
        Ok(r) => {
            let sut_busy = r.sut.as_ref().map_or(0.0, |x| x.cpu_util);
            s.generator_bound = r.load_cpu_util >= BUSY && sut_busy < BUSY;
            s.report = Some(r);
        }
        Err(e) => s.error = Some(e.to_string()),
    }
    s
}

/// An empty directory for one run under `work` (`@` in the name becomes `-`).
///
/// The relay's usage log and the mock's ledger both append (the relay's must:
/// a restart may not drop records), so a run that reused the directory of an
/// earlier, interrupted run into the same `--out` compared that run's records
/// too: bfull39 counted 200 responses an aborted run had cut as "record
/// without a ledger entry". Whatever an earlier run left here is removed.
fn fresh_run_dir(work: &Path, name: &str) -> std::io::Result<PathBuf> {
    let dir = work.join(name.replace('@', "-"));
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Host steal per CPU as whole percents, "3/1%"; "n/a" without the column.
fn steal_cells(steal: &[f64]) -> String {
    if steal.is_empty() {
        return "n/a".into();
    }
    let v: Vec<String> = steal.iter().map(|f| format!("{:.0}", f * 100.0)).collect();
    format!("{}%", v.join("/"))
}

fn summary_line(s: &Sample) -> String {
    match (&s.report, &s.error) {
        (Some(r), _) => format!(
            "{} {:>8} rep{}: {:>9.0} frames/s {:>6.1} MB/s, done {:>7.0}/s, SUT {:>3.0}%, load {:>3.0}%, steal {}, errors {}{}",
            s.case,
            s.peer.name(),
            s.rep,
            r.frames_per_s,
            r.mb_per_s,
            r.achieved_rate,
            r.sut.as_ref().map_or(0.0, |x| x.cpu_util * 100.0),
            r.load_cpu_util * 100.0,
            steal_cells(&r.host_steal),
            r.counts.errors,
            s.usage.as_ref().map(|u| format!(", usage {:.3}", u.accuracy())).unwrap_or_default()
        ),
        (None, Some(e)) => format!("{} {} rep{}: {e}", s.case, s.peer.name(), s.rep),
        (None, None) => format!("{} {} rep{}: no result", s.case, s.peer.name(), s.rep),
    }
}

/// Runs the whole matrix, writes the outputs under `cfg.out`, returns the result.
pub fn run_bench(cfg: &BenchConfig) -> Result<BenchResult, BenchError> {
    let started = Instant::now();
    if !cfg.tollgate.is_file() {
        return Err(BenchError::NoTollgate(cfg.tollgate.clone()));
    }
    let machine = Machine::detect();
    // SUT on CPU 0; this process (generator + mock threads, created after this
    // call, inherit the mask) on CPU 1.
    let two = machine.nproc >= 2;
    let pinning = if two && machine::pin_current_thread(1).is_ok() {
        "SUT pinned to CPU 0 (taskset -c 0); generator + mock (one process; one thread each, one thread for both in the latency sweep) pinned to CPU 1 (sched_setaffinity)".to_string()
    } else {
        "unpinned (fewer than 2 CPUs or sched_setaffinity failed)".to_string()
    };
    let installs = if cfg.install {
        machine::ensure_debian_peers()
    } else {
        Vec::new()
    };
    // Absolute: nginx resolves relative paths against its -p prefix.
    let out = std::path::absolute(&cfg.out).map_err(out_err(&cfg.out))?;
    let work = out.join("work");
    std::fs::create_dir_all(&work).map_err(out_err(&work))?;
    let runs_dir = out.join("runs");
    std::fs::create_dir_all(&runs_dir).map_err(out_err(&runs_dir))?;
    let keys_file = work.join("keys");
    std::fs::write(&keys_file, format!("bench {BENCH_KEY}\n")).map_err(out_err(&keys_file))?;
    let tls_files = match cfg.tls {
        TlsMode::None => None,
        _ => Some(peers::TlsFiles::generate(&work).map_err(out_err(&work))?),
    };
    let env = PeerEnv {
        tls: cfg.tls,
        tls_files,
        tollgate: cfg.tollgate.clone(),
        keys_file,
        sut_cpu: two.then_some(0),
    };

    let profile = if cfg.quick {
        Profile::QUICK
    } else {
        Profile::DEFAULT
    };
    let reps = Reps::resolve(
        &profile,
        cfg.reps,
        cfg.sweep_reps,
        cfg.cpu_reps,
        cfg.probe_reps,
    );
    let all: Vec<Case> = cases::cases(&profile, cfg.quick, cfg.full)
        .into_iter()
        .filter(|c| cfg.only.is_empty() || cfg.only.iter().any(|o| c.name.starts_with(o.as_str())))
        .collect();
    let runs = schedule(&all, &cfg.peers, reps);
    let total = runs.len();
    let mut samples = Vec::new();
    let mut saturated: HashSet<(Peer, usize)> = HashSet::new();
    let mut missing: HashSet<Peer> = HashSet::new();
    let mut n = 0;
    for (case, rep, peer) in runs {
        n += 1;
        if case.kind == Kind::Sweep && saturated.contains(&(peer, rep)) {
            continue;
        }
        let s = if missing.contains(&peer) {
            Sample {
                error: Some("not installed".into()),
                ..Sample::empty(case, peer, rep)
            }
        } else {
            run_one(case, peer, rep, reps.is_probe(case.kind, rep), &env, &work)
        };
        if s.error
            .as_deref()
            .is_some_and(|e| e.contains("not installed"))
        {
            missing.insert(peer);
        }
        if case.kind == Kind::Sweep {
            let ok = s
                .report
                .as_ref()
                .is_some_and(|r| r.offered_rate.is_some_and(|o| r.achieved_rate >= 0.99 * o));
            if !ok {
                saturated.insert((peer, rep));
            }
        }
        eprintln!(
            "[{n}/{total} {:>4.0}s] {}",
            started.elapsed().as_secs_f64(),
            summary_line(&s)
        );
        let file = runs_dir.join(format!(
            "{}-{}-{rep}.json",
            case.name.replace('@', "-"),
            peer.name()
        ));
        if let Ok(j) = serde_json::to_vec_pretty(&s) {
            std::fs::write(&file, j).map_err(out_err(&file))?;
        }
        samples.push(s);
        std::thread::sleep(Duration::from_millis(200));
    }
    let result = BenchResult {
        command: cfg.command.clone(),
        tls: cfg.tls,
        machine,
        versions: peers::versions(&cfg.tollgate),
        pinning,
        reps: reps.other,
        sweep_reps: Some(reps.sweep),
        cpu_reps: Some(reps.cpu),
        probe_reps: Some(reps.probe),
        sweep_rates: cases::sweep_rates(cfg.quick),
        installs,
        elapsed_s: started.elapsed().as_secs_f64(),
        samples,
    };
    let json = out.join("bench.json");
    let body = serde_json::to_vec_pretty(&result).unwrap_or_default();
    std::fs::write(&json, body).map_err(out_err(&json))?;
    let md = out.join("bench.md");
    std::fs::write(&md, markdown(&result, &cfg.peers)).map_err(out_err(&md))?;
    let svg = out.join("sweep.svg");
    std::fs::write(&svg, sections::sweep_plot(&result, &cfg.peers)).map_err(out_err(&svg))?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_directory_left_by_an_interrupted_run_starts_empty() {
        let work = std::env::temp_dir().join(format!("tollgate-bench-work-{}", std::process::id()));
        let stale = work.join("paced-tollgate-epoll-0");
        std::fs::create_dir_all(stale.join("nested")).unwrap();
        std::fs::write(stale.join("usage.jsonl"), "{\"response_id\":\"old\"}\n").unwrap();
        std::fs::write(stale.join("nested/x"), "x").unwrap();
        let dir = fresh_run_dir(&work, "paced-tollgate-epoll-0").unwrap();
        assert_eq!(dir, stale);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        // A name with `@` (echo@8000) maps to a path without it, created anew.
        let echo = fresh_run_dir(&work, "echo@8000-tollgate-1").unwrap();
        assert_eq!(echo, work.join("echo-8000-tollgate-1"));
        assert!(echo.is_dir());
        std::fs::remove_dir_all(&work).unwrap();
    }
}
