//! The durable usage log: JSON Lines appended by one dedicated writer thread with group
//! commit, failing closed on the first I/O error.
//!
//! Workers [`SinkHandle::submit`] records into an in-memory queue; `submit` never blocks and
//! never drops a record. The writer thread sleeps until records arrive, then gathers them
//! for one group-commit interval, appends everything queued with one `write_all` to a file
//! opened with `O_APPEND`, and `fdatasync`s once (also after `fsync_every` records, so a
//! round stays bounded). A record counts as durable only after the fsync that covers it. A
//! worker wakes the writer only when the writer sleeps with nothing to do, so a busy relay
//! costs one wake-up, one write and one fsync per interval — not one per record.
//!
//! **Fail closed.** The first write or fsync error logs one ERROR line (path and error, never
//! record contents), marks the sink failed for the rest of the process, and stops the writer.
//! Records still queued, written but not synced, or submitted afterwards stay in memory and
//! come back from [`Sink::shutdown`] as [`SinkStats::not_durable`] (the relay prints them on
//! stderr); nothing is dropped silently.
//!
//! **Backpressure.** When `queue_capacity` records wait (a slow disk), the sink reports itself
//! unavailable ([`SinkHandle::healthy`] is `false`): the relay then refuses new
//! `response.create`s and new sessions, exactly as for a broken log, so the queue can only
//! grow by the responses already in flight. Records of those are still accepted (a terminal
//! event that was forwarded is never refused). Once the writer has brought the queue down to
//! half the capacity the sink is available again by itself.
//!
//! **Rotation.** [`SinkHandle::reopen`] (SIGHUP) makes the writer finish its round on the old
//! file (write and fsync), then open the path again: `mv usage.jsonl usage.1 && kill -HUP`
//! loses nothing — every record is in exactly one of the two files.
//!
//! **Process death.** `submit` also copies each record into the process's memory-mapped
//! journal `<log>.journal.<pid>-<random>` (see [`super::journal`]) before it returns — before the terminal event
//! that completed the record is forwarded. A relay killed between group commits (`kill -9`)
//! leaves its unwritten records there, and the next start appends them to the log — or,
//! when another relay runs on the same log, that relay's writer within a second. After each
//! round the writer faults in the journal's next pages ([`super::journal::Ahead`]), so the
//! workers' copies into it take no page fault.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::journal::{Journal, JournalError};
use super::record::UsageRecord;
use super::recover;
use crate::metrics::SinkMetrics;

pub use mark::DurableMark;

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
    /// Group-commit interval: longest a written record waits for its fsync (default 100 ms).
    pub fsync_interval: Duration,
    /// Fsync at the latest after this many records in one round (default 4096).
    pub fsync_every: usize,
    /// Records queued before the sink reports backpressure (default 65536).
    pub queue_capacity: usize,
    /// Test hook: sleep this long before every fsync (simulates a slow disk).
    pub fsync_delay: Duration,
    /// Ring bytes of the journal `<log>.journal.<pid>-<random>` (default 16 MiB); 0 = no journal.
    /// Only for a regular log file.
    pub journal_bytes: u64,
}

impl SinkConfig {
    /// The defaults (100 ms, 4096 records, 65536 queued, no delay, a 16 MiB journal) for
    /// `path`; the relay's `--usage-fsync-ms` says why 100 ms.
    pub fn new(path: SinkPath) -> Self {
        SinkConfig {
            path,
            fsync_interval: Duration::from_millis(100),
            fsync_every: 4096,
            queue_capacity: 65_536,
            fsync_delay: Duration::ZERO,
            journal_bytes: 16 << 20,
        }
    }
}

/// Why the sink refused something.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// `submit` after the sink failed (a write or fsync error) or was shut down. The record
    /// was kept in memory and is reported by `shutdown` as not durable.
    #[error("usage log unavailable")]
    Unavailable,
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
    /// `start` could not open, recover or map the journal.
    #[error("{0}")]
    Journal(#[from] JournalError),
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
    /// Whether the sink failed closed.
    pub failed: bool,
}

/// Queue shared between handles and the writer.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Durable extent of the current log file (`None`: not a file).
    mark: Mutex<Option<DurableMark>>,
    /// The writer waits here when it has nothing to do.
    wake: Condvar,
    metrics: Arc<SinkMetrics>,
    capacity: usize,
    disabled: bool,
    /// The sink has a journal: workers serialize their records (once, for the journal and
    /// the log alike).
    journaled: bool,
}

/// A queued record: its JSON line when the worker serialized it (for the journal; the writer
/// appends it as it is), else the record itself, which the writer serializes.
#[derive(Debug)]
enum Queued {
    Line(Vec<u8>),
    Record(Box<UsageRecord>),
}

impl Queued {
    /// The record back, for [`SinkStats::not_durable`] (only when not everything was written).
    fn into_record(self) -> Option<UsageRecord> {
        match self {
            Queued::Record(r) => Some(*r),
            // Read back what `submit` serialized: it parses as it was written.
            Queued::Line(l) => match serde_json::from_slice(&l) {
                Ok(r) => Some(r),
                Err(error) => {
                    tracing::error!(
                        %error,
                        line = %String::from_utf8_lossy(&l),
                        "usage record not in the log and not readable back; its line as queued"
                    );
                    None
                }
            },
        }
    }
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Queued>,
    /// With a journal: for each queued record, the journal position after its entry (after
    /// the entry before it when it has none).
    journaled: VecDeque<u64>,
    journal: Option<Journal>,
    shutdown: bool,
    failed: bool,
    /// The writer asked for a reopen of the log path (SIGHUP).
    reopen: bool,
    /// The writer sleeps on `wake` with an empty queue (only then does `submit` notify).
    writer_idle: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Backpressure on at `capacity` queued, off again at half of it.
    fn update_backpressure(&self, queued: usize) {
        if queued >= self.capacity {
            self.metrics.set_backpressure(true);
        } else if queued <= self.capacity / 2 {
            self.metrics.set_backpressure(false);
        }
        self.metrics.set_queue_depth(queued);
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
        let mut journal = None;
        let out = match &cfg.path {
            SinkPath::Disabled => None,
            SinkPath::Stdout => Some(writer::Output::Stdout(io::stdout())),
            SinkPath::File(path) => {
                let mut file = open_log(path)?;
                let regular = file.metadata().is_ok_and(|m| m.is_file());
                if cfg.journal_bytes > 0 && regular {
                    let (j, found) = Journal::open(cfg.journal_bytes, &mut file, path)?;
                    metrics.add_journal_recovered(found.appended);
                    if found.found > 0 {
                        tracing::warn!(
                            log = %path.display(),
                            found = found.found,
                            appended = found.appended,
                            "usage journal held records the previous run had not written; appended the missing ones to the log"
                        );
                    }
                    journal = Some(j);
                }
                Some(writer::Output::File {
                    file,
                    path: path.clone(),
                })
            }
        };
        let mark = match &out {
            Some(writer::Output::File { file, path }) => {
                Some(DurableMark::of(file).map_err(|source| SinkError::Open {
                    path: path.clone(),
                    source,
                })?)
            }
            _ => None,
        };
        let shared = Arc::new(Shared {
            journaled: journal.is_some(),
            mark: Mutex::new(mark),
            state: Mutex::new(State {
                journal,
                ..State::default()
            }),
            wake: Condvar::new(),
            metrics,
            capacity: cfg.queue_capacity,
            disabled: out.is_none(),
        });
        let writer = match out {
            None => None,
            Some(out) => {
                let w = writer::Writer::new(Arc::clone(&shared), out, &cfg);
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
        self.shared.wake.notify_all();
        let outcome = match self.writer.take() {
            Some(h) => h.join().map_err(|_| SinkError::WriterPanicked)?,
            None => writer::Outcome::default(),
        };
        let mut st = self.shared.lock();
        let not_durable: Vec<UsageRecord> = outcome
            .not_durable
            .into_iter()
            .chain(st.queue.drain(..))
            .filter_map(Queued::into_record)
            .collect();
        st.journaled.clear();
        // A clean stop wrote everything: the journal goes. Otherwise it keeps what was not
        // written for the next start to append.
        if let Some(j) = st.journal.take() {
            if not_durable.is_empty() && !st.failed {
                if let Err(error) = j.remove() {
                    tracing::warn!(%error, "could not delete the usage journal");
                }
            }
        }
        self.shared.metrics.set_queue_depth(0);
        Ok(SinkStats {
            durable: outcome.durable,
            not_durable,
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
    /// Queues `rec` for the log without blocking (one short mutex hold). The record is always
    /// kept: `Unavailable` after the sink has failed or shut down means it is held in memory
    /// and reported by [`Sink::shutdown`] instead of written. With [`SinkPath::Disabled`] it
    /// discards `rec` and returns `Ok`.
    pub fn submit(&self, rec: UsageRecord) -> Result<(), SinkError> {
        let sh = &*self.shared;
        if sh.disabled {
            return Ok(());
        }
        // With a journal: serialized outside the lock, copied into the journal under it
        // (entries in queue order), and queued as that line for the writer. Serializing
        // strings and integers cannot fail; if it did, the record would go without a journal
        // entry and the writer would try again.
        let line = if sh.journaled {
            serde_json::to_vec(&rec).ok()
        } else {
            None
        };
        let mut st = sh.lock();
        if let Some(j) = st.journal.as_mut() {
            let at = match line.as_deref().and_then(|l| j.append(l)) {
                Some(at) => at,
                None => {
                    sh.metrics.journal_skipped();
                    j.head()
                }
            };
            st.journaled.push_back(at);
        }
        st.queue.push_back(match line {
            Some(l) => Queued::Line(l),
            None => Queued::Record(Box::new(rec)),
        });
        let queued = st.queue.len();
        sh.update_backpressure(queued);
        if st.failed || st.shutdown {
            return Err(SinkError::Unavailable);
        }
        let wake = st.writer_idle;
        st.writer_idle = false;
        drop(st);
        if wake {
            sh.wake.notify_one();
        }
        Ok(())
    }

    /// `false` once the log failed (forever) and while the writer is `queue_capacity`
    /// records behind: the relay then refuses new `response.create`s (error event
    /// `usage_log_unavailable`) and new sessions (503).
    pub fn healthy(&self) -> bool {
        self.shared.disabled || self.shared.metrics.accepting()
    }

    /// Whether the log failed for good (a write or fsync error).
    pub fn failed(&self) -> bool {
        !self.shared.metrics.healthy()
    }

    /// Close and reopen the log file at its path after the current round (log rotation).
    pub fn reopen(&self) {
        let sh = &*self.shared;
        if sh.disabled {
            return;
        }
        sh.lock().reopen = true;
        sh.wake.notify_one();
    }

    /// Records made durable so far (covered by a completed fsync; stdout: flushed).
    pub fn durable_count(&self) -> u64 {
        self.shared.metrics.durable()
    }

    /// How far the log file is durable (`None` for stdout or no log).
    pub fn durable_mark(&self) -> Option<DurableMark> {
        *self
            .shared
            .mark
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records waiting in the queue now.
    pub fn queue_depth(&self) -> usize {
        self.shared.lock().queue.len()
    }
}

/// Opens `path` for appending (creating it `0640`), first moving a torn last line aside.
fn open_log(path: &std::path::Path) -> Result<File, SinkError> {
    recover::recover_torn_tail(path).map_err(|source| SinkError::Recover {
        path: path.to_owned(),
        source,
    })?;
    open_append(path).map_err(|source| SinkError::Open {
        path: path.to_owned(),
        source,
    })
}

/// `O_APPEND | O_CREAT`, mode `0640`; a new file's directory entry is made durable too.
/// Readable as well: an append reads the log's last byte when another relay may have left
/// a torn line ([`append_lines`](crate::metering::append::append_lines)).
fn open_append(path: &std::path::Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(file)
}

mod mark;
mod writer;
