//! The orchestrator: threads with current-thread runtimes, the progress bar,
//! CPU and memory sampling of the system under test, and merging the results.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;

use super::conn::Target;
use super::report::{Report, SutReport};
use super::stats::{Counts, Hists};
use super::{echo, idle, procfs, stream, timer, GenError, RunConfig, Workload};

/// State every generator thread shares (read-mostly; counters are only for the
/// progress bar and the idle phase, touched once per turn or session).
#[derive(Debug)]
pub(crate) struct Shared {
    pub cfg: RunConfig,
    pub target: Target,
    pub epoch: Instant,
    /// When turn-based workloads stop starting new turns.
    pub deadline: Instant,
    pub progress: AtomicU64,
    pub connected: AtomicU64,
    pub connect_failed: AtomicU64,
    /// Idle: sessions done with their turns (idling now) or given up.
    pub settled: AtomicU64,
    /// Idle: set to the end of the ping phase once every session is open.
    pub idle_until: watch::Receiver<Option<Instant>>,
    /// Frames so far, both ways (the measurement window reads it).
    pub live_frames: Arc<AtomicU64>,
}

impl Shared {
    /// Nanoseconds from the run's epoch to `t`.
    pub fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }
}

/// What one thread collects.
#[derive(Debug, Default)]
pub(crate) struct Local {
    pub hists: Hists,
    pub counts: Counts,
    pub errors: Vec<String>,
    /// Frames so far, both ways, shared with the run's measurement window.
    pub live_frames: Arc<AtomicU64>,
}

impl Local {
    /// Counts frames sent and received (also for the measurement window).
    pub fn frames(&mut self, sent: u64, received: u64) {
        self.counts.frames_sent += sent;
        self.counts.frames_received += received;
        self.live_frames
            .fetch_add(sent + received, Ordering::Relaxed);
    }

    /// Counts a failure and keeps the first few messages.
    pub fn error(&mut self, e: &GenError) {
        self.counts.errors += 1;
        if self.errors.len() < 5 {
            self.errors.push(e.to_string());
        }
    }
}

/// Thread-local collector handle.
pub(crate) type LocalRef = Rc<RefCell<Local>>;

fn validate(cfg: &RunConfig) -> Result<(), GenError> {
    if cfg.sessions == 0 {
        return Err(GenError::Config("--sessions must be at least 1"));
    }
    if cfg.threads == 0 {
        return Err(GenError::Config("--threads must be at least 1"));
    }
    if cfg.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(GenError::Config("--rate must be a positive number"));
    }
    if cfg.turns == Some(0) {
        return Err(GenError::Config("--turns must be at least 1"));
    }
    Ok(())
}

fn thread_main(shared: Arc<Shared>, index: usize) -> Result<Local, GenError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(GenError::Runtime)?;
    let set = tokio::task::LocalSet::new();
    let out = set.block_on(&rt, thread_body(shared, index));
    drop(set);
    out
}

/// One generator thread's work, on its own runtime ([`thread_main`]) or on a loop it shares
/// ([`RunConfig::host`]); must run inside a `LocalSet`.
async fn thread_body(shared: Arc<Shared>, index: usize) -> Result<Local, GenError> {
    timer::tighten_timer_slack();
    let local: LocalRef = Rc::new(RefCell::new(Local {
        live_frames: shared.live_frames.clone(),
        ..Local::default()
    }));
    let l = local.clone();
    match shared.cfg.workload {
        Workload::Stream | Workload::Firehose => stream::run_thread(shared, index, l).await,
        Workload::Churn => stream::churn_thread(shared, index, l).await,
        Workload::Echo => echo::run_thread(shared, index, l).await,
        Workload::Idle => idle::run_thread(shared, index, l).await,
    }?;
    // Tasks this thread aborted may still hold a reference until their loop drops them.
    Ok(Rc::try_unwrap(local)
        .map(RefCell::into_inner)
        .unwrap_or_else(|rc| std::mem::take(&mut *rc.borrow_mut())))
}

/// A generator thread of this run: a thread of its own, or work on a shared loop.
enum Worker {
    Thread(std::thread::JoinHandle<Result<Local, GenError>>),
    Hosted(std::sync::mpsc::Receiver<Result<Local, GenError>>),
}

impl Worker {
    fn start(shared: &Arc<Shared>, index: usize) -> Result<Worker, GenError> {
        let s = shared.clone();
        match (&shared.cfg.host, index) {
            (Some(host), 0) => host
                .spawn(move || thread_body(s, 0))
                .map(Worker::Hosted)
                .map_err(|e| GenError::Runtime(std::io::Error::other(e))),
            _ => std::thread::Builder::new()
                .name(format!("gen-{index}"))
                .spawn(move || thread_main(s, index))
                .map(Worker::Thread)
                .map_err(GenError::Runtime),
        }
    }

    /// Its result; `None` when it panicked (or its loop stopped before it finished).
    fn join(self) -> Option<Result<Local, GenError>> {
        match self {
            Worker::Thread(h) => h.join().ok(),
            Worker::Hosted(rx) => rx.recv().ok(),
        }
    }
}

fn progress_bar(cfg: &RunConfig) -> ProgressBar {
    let (len, msg) = match cfg.turns {
        Some(t) if cfg.workload != Workload::Idle => (t * cfg.sessions as u64, "turns"),
        _ => (cfg.duration.as_secs().max(1), "s"),
    };
    let pb = ProgressBar::new(len);
    if !cfg.progress || !std::io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template("{spinner} {wide_bar} {pos}/{len} {msg}") {
        pb.set_style(style);
    }
    pb.set_message(msg);
    pb
}

/// Runs the load described by `cfg` to the end and reports.
pub fn run(cfg: &RunConfig) -> Result<Report, GenError> {
    validate(cfg)?;
    let target = Target::parse_tls(&cfg.target, cfg.tls_ca_pem.as_deref())?;
    let (idle_tx, idle_rx) = watch::channel(None);
    let epoch = Instant::now();
    let far = Duration::from_secs(86_400);
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        target,
        epoch,
        deadline: epoch
            + if cfg.turns.is_some() {
                far
            } else {
                cfg.duration
            },
        progress: AtomicU64::new(0),
        connected: AtomicU64::new(0),
        connect_failed: AtomicU64::new(0),
        settled: AtomicU64::new(0),
        idle_until: idle_rx,
        live_frames: Arc::new(AtomicU64::new(0)),
    });
    if cfg.workload == Workload::Idle && cfg.idle_turns > 0 && !cfg.sut_pids.is_empty() {
        idle::warm_up(&shared)?;
    }
    let sut_cpu0 = procfs::cpu_seconds(&cfg.sut_pids);
    let self_pid = [std::process::id()];
    let self_cpu0 = procfs::cpu_seconds(&self_pid);
    let rss0 = procfs::rss_kib_sum(&cfg.sut_pids);
    let steal0 = procfs::steal_ticks();

    let pb = progress_bar(cfg);
    let done = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (pb, done, shared) = (pb.clone(), done.clone(), shared.clone());
        let by_time = cfg.turns.is_none() || cfg.workload == Workload::Idle;
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let pos = if by_time {
                    shared.epoch.elapsed().as_secs()
                } else {
                    shared.progress.load(Ordering::Relaxed)
                };
                pb.set_position(pos);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let handles: Vec<_> = (0..cfg.threads.min(cfg.sessions))
        .map(|i| Worker::start(&shared, i))
        .collect::<Result<_, _>>()?;

    // The measurement window: from a fifth into the run (sessions up, load settled) to a
    // tenth before its end (before teardown).
    let window = (!cfg.sut_pids.is_empty()
        && cfg.turns.is_none()
        && !matches!(cfg.workload, Workload::Idle | Workload::Churn))
    .then(|| {
        let (pids, frames) = (cfg.sut_pids.clone(), shared.live_frames.clone());
        let probes = cfg.probes;
        let d = cfg.duration;
        let start = epoch + (d / 5).max(Duration::from_millis(300));
        let end = epoch + d - d / 10;
        std::thread::spawn(move || super::window::measure(&pids, &frames, start, end, probes))
    });

    let mut rss_loaded = None;
    if cfg.workload == Workload::Idle {
        rss_loaded = Some(idle::await_sessions(&shared, &cfg.sut_pids));
        let _ = idle_tx.send(Some(Instant::now() + cfg.duration));
    }

    let mut hists = Hists::default();
    let mut counts = Counts::default();
    let mut errors = Vec::new();
    for h in handles {
        match h.join() {
            Some(Ok(l)) => {
                hists.merge(&l.hists);
                counts.merge(&l.counts);
                errors.extend(l.errors);
            }
            Some(Err(e)) => {
                done.store(true, Ordering::Relaxed);
                return Err(e);
            }
            None => {
                counts.errors += 1;
                errors.push(
                    "a generator thread panicked (or the event loop it ran on stopped)".to_string(),
                );
            }
        }
    }
    let wall = epoch.elapsed().as_secs_f64().max(1e-9);
    done.store(true, Ordering::Relaxed);
    let _ = ticker.join();
    pb.finish_and_clear();
    errors.truncate(10);

    let window = window.and_then(|h| h.join().ok()).flatten();
    let sut = (!cfg.sut_pids.is_empty()).then(|| {
        let cpu = procfs::cpu_seconds(&cfg.sut_pids) - sut_cpu0;
        let mut r = SutReport::new(&cfg.sut_pids, cpu, wall, &counts, rss0, rss_loaded);
        r.window = window;
        r
    });
    let load_cpu = procfs::cpu_seconds(&self_pid) - self_cpu0;
    let mut report = Report::new(cfg, wall, counts, &hists, load_cpu, sut, errors);
    report.host_steal = procfs::steal_fractions(&steal0, &procfs::steal_ticks(), wall);
    Ok(report)
}
