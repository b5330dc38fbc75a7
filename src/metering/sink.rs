//! The durable usage log: JSON Lines appended by one dedicated writer thread with group
//! commit, failing closed on the first I/O error.
//!
//! Workers [`SinkHandle::submit`] records into a bounded in-memory queue. The writer thread
//! drains it (at most `fsync_every` records per round), appends the serialized lines with one
//! `write_all` to a file opened with `O_APPEND`, and `fdatasync`s once `fsync_every` records
//! are unsynced or the oldest unsynced one is `fsync_interval` old, whichever comes first. A
//! record counts as durable only after the fsync that covers it.
//!
//! **Fail closed.** The first write or fsync error logs one ERROR line (path and error, never
//! record contents), marks the sink unhealthy for the rest of the process
//! ([`SinkHandle::healthy`]), and stops the writer. Records still queued, written but not
//! synced, or submitted afterwards (up to the queue bound) stay in memory and come back from
//! [`Sink::shutdown`] as [`SinkStats::not_durable`]; nothing is dropped silently.
//!
//! **Backpressure.** When the queue is full, `submit` blocks the calling thread for at most
//! [`SUBMIT_BLOCK`] waiting for room; if the queue is still full it returns
//! [`SinkError::QueueFull`] and counts the record as rejected (metric and ERROR line).

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::record::UsageRecord;
use super::recover;
use crate::metrics::SinkMetrics;

/// Longest a `submit` waits for room in a full queue before giving up with `QueueFull`.
pub const SUBMIT_BLOCK: Duration = Duration::from_secs(1);

/// Where usage records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkPath {
    /// Appended to this file (created `0640` if missing), fsynced.
    File(PathBuf),
    /// Written to stdout, flushed, never fsynced.
    Stdout,
    /// Discarded: no usage log (submit succeeds, nothing is kept).
    Disabled,
}

/// Sink settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// Destination.
    pub path: SinkPath,
    /// Longest a written record waits for its fsync (default 10 ms).
    pub fsync_interval: Duration,
    /// Fsync at the latest after this many unsynced records (default 256).
    pub fsync_every: usize,
    /// Most records queued for the writer (default 65536).
    pub queue_capacity: usize,
}

impl SinkConfig {
    /// The defaults (10 ms, 256 records, 65536 queued) for `path`.
    pub fn new(path: SinkPath) -> Self {
        SinkConfig {
            path,
            fsync_interval: Duration::from_millis(10),
            fsync_every: 256,
            queue_capacity: 65_536,
        }
    }
}

/// Why the sink refused something.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// `submit` after the sink failed (a write or fsync error) or was shut down. The record
    /// was kept in memory if the queue had room (reported by `shutdown` as not durable),
    /// otherwise counted as rejected.
    #[error("usage log unavailable")]
    Unavailable,
    /// `submit` found the queue full for [`SUBMIT_BLOCK`]; the record was not accepted.
    #[error("usage log queue full")]
    QueueFull,
    /// `start` with `fsync_every` or `queue_capacity` of 0.
    #[error("usage log setting `{0}` must be at least 1")]
    ZeroLimit(&'static str),
    /// `start` could not open (or create) the log file.
    #[error("cannot open usage log {path}: {source}")]
    Open {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// `start` found a torn last line and could not move it aside (see `recover`).
    #[error("cannot recover torn tail of usage log {path}: {source}")]
    Recover {
        /// The log file.
        path: PathBuf,
        /// What went wrong.
        source: recover::RecoverError,
    },
    /// `start` could not spawn the writer thread.
    #[error("cannot spawn usage log writer: {0}")]
    Spawn(io::Error),
    /// `shutdown` found that the writer thread had panicked.
    #[error("usage log writer panicked")]
    WriterPanicked,
}

/// What `shutdown` reports.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Records covered by a completed fsync (for stdout: written and flushed).
    pub durable: u64,
    /// Records accepted but not made durable (only after a failure), in submission order.
    /// The caller must surface these (e.g. on stderr): they are not in the log.
    pub not_durable: Vec<UsageRecord>,
    /// Records refused outright (queue full); counted, not kept.
    pub rejected: u64,
    /// Whether the sink failed closed.
    pub failed: bool,
}

/// Queue shared between handles and the writer.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    not_empty: Condvar,
    not_full: Condvar,
    metrics: Arc<SinkMetrics>,
    capacity: usize,
    disabled: bool,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<UsageRecord>,
    shutdown: bool,
    failed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running sink; owns the writer thread. Dropping it shuts down like [`Sink::shutdown`]
/// but logs instead of returning the not-durable records.
#[derive(Debug)]
pub struct Sink {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<writer::Outcome>>,
}

/// A cheap, cloneable, `Send + Sync` handle the workers submit records through.
#[derive(Debug, Clone)]
pub struct SinkHandle {
    shared: Arc<Shared>,
}

impl Sink {
    /// Opens the destination (recovering a torn last line of an existing file, see
    /// `recover`), and starts the writer thread `tollgate-usage-log`. `metrics` receives the
    /// sink's counters and health (pass `Registry::sink_metrics()`; `/readyz` reads it).
    pub fn start(cfg: SinkConfig, metrics: Arc<SinkMetrics>) -> Result<Sink, SinkError> {
        if cfg.fsync_every == 0 {
            return Err(SinkError::ZeroLimit("fsync_every"));
        }
        if cfg.queue_capacity == 0 {
            return Err(SinkError::ZeroLimit("queue_capacity"));
        }
        let out = match &cfg.path {
            SinkPath::Disabled => None,
            SinkPath::Stdout => Some(writer::Output::Stdout(io::stdout())),
            SinkPath::File(path) => Some(writer::Output::File {
                file: open_log(path)?,
                path: path.clone(),
            }),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            metrics,
            capacity: cfg.queue_capacity,
            disabled: out.is_none(),
        });
        let writer = match out {
            None => None,
            Some(out) => {
                let sh = Arc::clone(&shared);
                let w = writer::Writer::new(sh, out, cfg.fsync_interval, cfg.fsync_every);
                let h = std::thread::Builder::new()
                    .name("tollgate-usage-log".into())
                    .spawn(move || w.run())
                    .map_err(SinkError::Spawn)?;
                Some(h)
            }
        };
        Ok(Sink { shared, writer })
    }

    /// A handle for submitting records.
    pub fn handle(&self) -> SinkHandle {
        SinkHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Stops accepting records, lets the writer drain the queue and fsync, joins it, and
    /// reports what became durable and what did not.
    pub fn shutdown(mut self) -> Result<SinkStats, SinkError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<SinkStats, SinkError> {
        self.shared.lock().shutdown = true;
        self.shared.not_empty.notify_all();
        self.shared.not_full.notify_all();
        let outcome = match self.writer.take() {
            Some(h) => h.join().map_err(|_| SinkError::WriterPanicked)?,
            None => writer::Outcome::default(),
        };
        let mut st = self.shared.lock();
        let mut not_durable = outcome.not_durable;
        not_durable.extend(st.queue.drain(..));
        self.shared.metrics.set_queue_depth(0);
        Ok(SinkStats {
            durable: outcome.durable,
            not_durable,
            rejected: self.shared.metrics.rejected(),
            failed: st.failed,
        })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if self.writer.is_none() {
            return;
        }
        match self.stop() {
            Ok(stats) if !stats.not_durable.is_empty() => {
                tracing::error!(
                    not_durable = stats.not_durable.len(),
                    "usage log dropped without shutdown; records not durable"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "usage log writer failed at drop"),
        }
    }
}

impl SinkHandle {
    /// Queues `rec` for the log. Blocks at most [`SUBMIT_BLOCK`] while the queue is full
    /// (then `QueueFull`); returns `Unavailable` once the sink has failed or shut down (the
    /// record is still kept if the queue has room, see [`SinkError::Unavailable`]). With
    /// [`SinkPath::Disabled`] it discards `rec` and returns `Ok`.
    pub fn submit(&self, rec: UsageRecord) -> Result<(), SinkError> {
        let sh = &*self.shared;
        if sh.disabled {
            return Ok(());
        }
        let mut st = sh.lock();
        let deadline = Instant::now() + SUBMIT_BLOCK;
        loop {
            if st.failed || st.shutdown {
                if st.queue.len() < sh.capacity {
                    st.queue.push_back(rec);
                    sh.metrics.set_queue_depth(st.queue.len());
                } else {
                    sh.metrics.add_rejected();
                }
                return Err(SinkError::Unavailable);
            }
            if st.queue.len() < sh.capacity {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                drop(st);
                sh.metrics.add_rejected();
                tracing::error!(
                    capacity = sh.capacity,
                    "usage log queue full; record rejected"
                );
                return Err(SinkError::QueueFull);
            }
            st = sh
                .not_full
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let was_empty = st.queue.is_empty();
        st.queue.push_back(rec);
        sh.metrics.set_queue_depth(st.queue.len());
        drop(st);
        // The writer only sleeps on an empty queue.
        if was_empty {
            sh.not_empty.notify_one();
        }
        Ok(())
    }

    /// `false` forever after the first write or fsync error: the relay then refuses new
    /// `response.create`s (error event `usage_log_unavailable`) and new sessions (503).
    pub fn healthy(&self) -> bool {
        self.shared.metrics.healthy()
    }

    /// Records made durable so far (covered by a completed fsync; stdout: flushed).
    pub fn durable_count(&self) -> u64 {
        self.shared.metrics.durable()
    }

    /// Records waiting in the queue now.
    pub fn queue_depth(&self) -> usize {
        self.shared.lock().queue.len()
    }
}

/// Opens `path` for appending (creating it `0640`), first moving a torn last line aside.
fn open_log(path: &std::path::Path) -> Result<File, SinkError> {
    use std::os::unix::fs::OpenOptionsExt;
    recover::recover_torn_tail(path).map_err(|source| SinkError::Recover {
        path: path.to_owned(),
        source,
    })?;
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(|source| SinkError::Open {
            path: path.to_owned(),
            source,
        })?;
    // Make a newly created file's directory entry durable too.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(file)
}

mod writer;
