//! The writer thread: gather for one interval, append, fsync; fail closed on the first error.

use std::fs::File;
use std::io::{self, Stdout, Write};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::{open_append, Journal, Queued, Shared, SinkConfig, State};
use crate::metering::append::append_lines;

/// How often a writer with a journal looks for journals of relays that died beside it
/// ([`Journal::adopt`]): one directory listing a second when there are none.
const ADOPT_EVERY: Duration = Duration::from_secs(1);

/// Bytes of the write buffer a quiet writer keeps. A burst (a thousand sessions finishing a
/// turn within one group-commit interval) grows it to hundreds of KiB; kept for good, that
/// is memory a quiet relay holds (heaptrack: a 318 KB buffer after 1,000 sessions' turns,
/// counted by the idle bench against its sessions; loadtest/BENCH-history.md). 64 KiB holds
/// a round of ~100 records (a bench run's records average 625–630 bytes: `awk` over
/// bfull65's usage logs). A busy writer keeps what it has: it trims only when nothing is
/// queued.
const KEEP_BUF_BYTES: usize = 64 * 1024;

/// Entries of the record queues (`queue`, `journaled`, `unsynced`) a quiet writer keeps.
const KEEP_QUEUED: usize = 1024;

/// The log is durable (appended and fsynced) up to `end` — its length right after this
/// relay's last append, which counts what relays sharing the log appended before it (the
/// fsync covers their bytes too) — or, for a log that is not a regular file, `bytes` more of
/// it: the exporter may read that far.
fn advance_mark(shared: &Shared, end: Option<u64>, bytes: u64) {
    if let Some(m) = shared
        .mark
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_mut()
    {
        m.offset = match end {
            Some(end) => m.offset.max(end),
            None => m.offset + bytes,
        };
    }
}

/// With nothing queued: shrinks the writer's buffer, its unsynced list and the record queues
/// where a burst grew them past [`KEEP_BUF_BYTES`] and [`KEEP_QUEUED`]. Returns whether it
/// shrank any (then the caller releases the freed heap). Everything written is synced by
/// then (`commit` fsyncs before it returns), so the buffers hold nothing.
fn trim(buf: &mut Vec<u8>, unsynced: &mut Vec<Queued>, st: &mut State) -> bool {
    let big = buf.capacity() > KEEP_BUF_BYTES
        || unsynced.capacity() > KEEP_QUEUED
        || st.queue.capacity() > KEEP_QUEUED
        || st.journaled.capacity() > KEEP_QUEUED;
    if big {
        buf.clear();
        buf.shrink_to(KEEP_BUF_BYTES);
        unsynced.shrink_to(KEEP_QUEUED);
        st.queue.shrink_to(KEEP_QUEUED);
        st.journaled.shrink_to(KEEP_QUEUED);
    }
    big
}

/// Destination the writer owns.
#[derive(Debug)]
pub(super) enum Output {
    /// The log file, opened `O_APPEND`.
    File {
        /// Open file.
        file: File,
        /// Its path, for error lines and reopening.
        path: PathBuf,
    },
    /// Process stdout.
    Stdout(Stdout),
}

impl Output {
    /// Appends `buf` (whole lines); for a file, after ending another relay's torn line and
    /// returning the log's length after it ([`append_lines`]; `known_end` is the length this
    /// writer left it at).
    fn append(&mut self, buf: &[u8], known_end: Option<u64>) -> io::Result<Option<u64>> {
        match self {
            Output::File { file, .. } => append_lines(file, buf, known_end).map(|a| a.end),
            Output::Stdout(s) => {
                let mut l = s.lock();
                l.write_all(buf)?;
                l.flush()?;
                Ok(None)
            }
        }
    }

    /// `fdatasync` for a file; nothing for stdout.
    fn sync(&mut self) -> io::Result<()> {
        match self {
            Output::File { file, .. } => file.sync_data(),
            Output::Stdout(_) => Ok(()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Output::File { path, .. } => path.display().to_string(),
            Output::Stdout(_) => "<stdout>".to_owned(),
        }
    }
}

/// What the writer hands back when it stops.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// Records covered by a completed fsync.
    pub durable: u64,
    /// Records taken from the queue but not made durable (after a failure).
    pub not_durable: Vec<Queued>,
}

/// What one round found besides records.
struct Round {
    batch: Vec<Queued>,
    /// The journal position after the batch's last record (with a journal).
    journaled: Option<u64>,
    reopen: bool,
    last: bool,
}

/// The writer thread's state.
pub(super) struct Writer {
    shared: Arc<Shared>,
    out: Output,
    interval: Duration,
    every: usize,
    fsync_delay: Duration,
    /// Taken from the queue, written or not, not yet covered by an fsync.
    unsynced: Vec<Queued>,
    buf: Vec<u8>,
    durable: u64,
    /// The log's length after this writer's last append (or adoption), while no rotation
    /// came between: a log still that long ends in this writer's newline.
    log_end: Option<u64>,
    /// When to look for dead relays' journals next (with a journal of its own).
    adopt_at: Option<Instant>,
    /// Whether to fault in the journal's next pages after each round (see
    /// [`Writer::fault_in_ahead`]).
    fault_ahead: bool,
}

impl Writer {
    pub(super) fn new(shared: Arc<Shared>, out: Output, cfg: &SinkConfig) -> Self {
        let adopt_at = shared.journaled.then(|| Instant::now() + ADOPT_EVERY);
        let fault_ahead = shared.journaled;
        Writer {
            shared,
            out,
            interval: cfg.fsync_interval,
            every: cfg.fsync_every,
            fsync_delay: cfg.fsync_delay,
            unsynced: Vec::new(),
            buf: Vec::new(),
            durable: 0,
            log_end: None,
            adopt_at,
            fault_ahead,
        }
    }

    /// Runs until shutdown; returns what became durable and what did not.
    pub(super) fn run(mut self) -> Outcome {
        self.fault_in_ahead();
        loop {
            let round = self.take_round();
            if let Err((what, e)) = self.commit(round.batch, round.journaled) {
                self.fail(what, &e);
                break;
            }
            if round.reopen {
                self.reopen();
            }
            if round.last {
                break;
            }
            self.fault_in_ahead();
            self.adopt();
        }
        Outcome {
            durable: self.durable,
            not_durable: std::mem::take(&mut self.unsynced),
        }
    }

    /// Sleeps until there is work, gathers records for one group-commit interval (unless
    /// shutting down), then takes at most `every` of them.
    fn take_round(&mut self) -> Round {
        let sh = &*self.shared;
        let mut st = sh.lock();
        if st.queue.is_empty() && trim(&mut self.buf, &mut self.unsynced, &mut st) {
            // Quiet after a burst: give back what it freed, outside the lock (a submit must
            // not wait for madvise).
            drop(st);
            crate::heap::release_freed();
            st = sh.lock();
        }
        while st.queue.is_empty() && !st.shutdown && !st.reopen {
            st.writer_idle = true;
            // Idle, it still wakes for the next adoption.
            st = match self.adopt_at {
                None => sh.wake.wait(st).unwrap_or_else(PoisonError::into_inner),
                Some(at) => {
                    let now = Instant::now();
                    if now >= at {
                        break;
                    }
                    sh.wake
                        .wait_timeout(st, at - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
        st.writer_idle = false;
        // Group commit: let more records arrive for one interval before writing, unless
        // this round already holds a full batch or the relay is stopping (or holds nothing:
        // it woke to adopt).
        let deadline = Instant::now() + self.interval;
        while !st.shutdown && !st.queue.is_empty() && st.queue.len() < self.every {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = sh
                .wake
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let n = st.queue.len().min(self.every);
        let batch: Vec<Queued> = st.queue.drain(..n).collect();
        let k = n.min(st.journaled.len());
        let journaled = st.journaled.drain(..k).next_back();
        sh.update_backpressure(st.queue.len());
        let reopen = std::mem::take(&mut st.reopen);
        let last = st.shutdown && st.queue.is_empty();
        Round {
            batch,
            journaled,
            reopen,
            last,
        }
    }

    /// Serializes `batch` (what the workers did not), appends it with one `write_all` (under
    /// the log's lock, on a new line if a relay sharing the log left a torn one:
    /// [`append_lines`]), frees its journal entries up to `journaled` (the records are in the
    /// kernel's page cache now, which a killed process does not take with it), and fsyncs it.
    fn commit(
        &mut self,
        batch: Vec<Queued>,
        journaled: Option<u64>,
    ) -> Result<(), (&'static str, io::Error)> {
        if batch.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        let n = batch.len() as u64;
        for q in batch {
            // Serializing plain strings and integers cannot fail; if it ever did, the record
            // stays in `unsynced` and the sink fails closed below rather than skipping it.
            let line = match &q {
                Queued::Line(l) => {
                    self.buf.extend_from_slice(l);
                    Ok(())
                }
                Queued::Record(rec) => {
                    serde_json::to_writer(&mut self.buf, rec).map_err(io::Error::other)
                }
            };
            self.unsynced.push(q);
            line.map_err(|e| ("serialize", e))?;
            self.buf.push(b'\n');
        }
        let end = self
            .out
            .append(&self.buf, self.log_end)
            .map_err(|e| ("write", e))?;
        self.log_end = end;
        self.shared.metrics.add_written(n);
        if let Some(at) = journaled {
            if let Some(j) = self.shared.lock().journal.as_mut() {
                j.set_written(at);
            }
        }
        if !self.fsync_delay.is_zero() {
            std::thread::sleep(self.fsync_delay);
        }
        // NEVER retry a failed fsync on the same fd: after a failed fsync the kernel may
        // already have dropped the dirty pages and marked them clean, so a second fsync can
        // "succeed" without the data ever reaching the disk. `fail` stops this writer for
        // good instead.
        self.out.sync().map_err(|e| ("fsync", e))?;
        advance_mark(&self.shared, end, self.buf.len() as u64);
        let n = self.unsynced.len() as u64;
        self.durable += n;
        self.shared.metrics.add_durable(n);
        self.unsynced.clear();
        Ok(())
    }

    /// Faults in the journal's next pages ([`Journal::ahead`]), outside the queue's lock, so
    /// the workers' copies into them take no page fault. Stops asking on a kernel without
    /// `MADV_POPULATE_WRITE`; another failure only leaves the faults to the workers.
    fn fault_in_ahead(&mut self) {
        if !self.fault_ahead {
            return;
        }
        let Some(ahead) = self.shared.lock().journal.as_ref().map(Journal::ahead) else {
            return;
        };
        match ahead.populate() {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.fault_ahead = false;
                tracing::info!(
                    "the kernel has no MADV_POPULATE_WRITE (Linux 5.14): workers fault the usage journal's pages in themselves"
                );
            }
            Err(error) => {
                tracing::debug!(%error, "could not fault in the usage journal's next pages");
            }
        }
    }

    /// Once every [`ADOPT_EVERY`]: appends the records of relays that died beside this one
    /// (their journals no process holds) to the log, like a start does. Between rounds, so
    /// everything this writer wrote is synced and the durable mark moves past the adopted
    /// lines too. A failure is logged and tried again at the next adoption: it concerns
    /// another relay's journal, not this relay's log.
    fn adopt(&mut self) {
        let (Some(at), Output::File { file, path }) = (self.adopt_at, &mut self.out) else {
            return;
        };
        let now = Instant::now();
        if now < at {
            return;
        }
        self.adopt_at = Some(now + ADOPT_EVERY);
        match Journal::adopt(file, path, self.log_end) {
            Ok(found) if found.found > 0 => {
                if found.end.is_some() {
                    self.log_end = found.end;
                }
                advance_mark(&self.shared, found.end, found.bytes);
                self.shared.metrics.add_journal_recovered(found.appended);
                tracing::warn!(
                    log = %path.display(),
                    found = found.found,
                    appended = found.appended,
                    "usage journal of a relay that died beside this one held records it had not written; appended the missing ones to the log"
                );
            }
            Ok(_) => {}
            Err(error) => {
                tracing::error!(%error, "adopting a dead relay's usage journal failed; trying again in 1 s");
            }
        }
    }

    /// Log rotation: everything so far is written and synced to the old file; continue on a
    /// new file at the same path. If the path cannot be opened, keep the old file (records
    /// still land in the renamed file, nothing is lost) and say so.
    fn reopen(&mut self) {
        let Output::File { file, path } = &mut self.out else {
            return;
        };
        match open_append(path) {
            Ok(f) => {
                // The old file is complete (written and synced): the mark moves to the new.
                if let Ok(m) = super::DurableMark::of(&f) {
                    *self
                        .shared
                        .mark
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(m);
                }
                *file = f;
                self.log_end = None;
                self.shared.metrics.add_reopen();
                tracing::info!(path = %path.display(), "usage log reopened");
            }
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "usage log reopen failed; still appending to the previous file");
            }
        }
    }

    /// Fails the sink closed and idles until shutdown.
    fn fail(&mut self, what: &'static str, error: &io::Error) {
        tracing::error!(
            path = %self.out.describe(),
            op = what,
            %error,
            unsynced = self.unsynced.len(),
            "usage log failed; failing closed: new responses and sessions are refused"
        );
        let sh = &*self.shared;
        let mut st = sh.lock();
        st.failed = true;
        sh.metrics.fail();
        while !st.shutdown {
            st = sh.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
