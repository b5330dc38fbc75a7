//! The writer thread: drain, append, group-commit fsync; fail closed on the first error.

use std::fs::File;
use std::io::{self, Stdout, Write};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::Shared;
use crate::metering::record::UsageRecord;

/// Destination the writer owns.
#[derive(Debug)]
pub(super) enum Output {
    /// The log file, opened `O_APPEND`.
    File {
        /// Open file.
        file: File,
        /// Its path, for error lines.
        path: PathBuf,
    },
    /// Process stdout.
    Stdout(Stdout),
}

impl Output {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Output::File { file, .. } => file.write_all(buf),
            Output::Stdout(s) => {
                let mut l = s.lock();
                l.write_all(buf)?;
                l.flush()
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
    pub not_durable: Vec<UsageRecord>,
}

/// The writer thread's state.
pub(super) struct Writer {
    shared: Arc<Shared>,
    out: Output,
    interval: Duration,
    every: usize,
    /// Taken from the queue, written or not, not yet covered by an fsync.
    unsynced: Vec<UsageRecord>,
    /// When the oldest of `unsynced` was taken.
    oldest: Option<Instant>,
    buf: Vec<u8>,
    durable: u64,
}

impl Writer {
    pub(super) fn new(shared: Arc<Shared>, out: Output, interval: Duration, every: usize) -> Self {
        Writer {
            shared,
            out,
            interval,
            every,
            unsynced: Vec::new(),
            oldest: None,
            buf: Vec::new(),
            durable: 0,
        }
    }

    /// Runs until shutdown; returns what became durable and what did not.
    pub(super) fn run(mut self) -> Outcome {
        loop {
            let (batch, last) = self.take_batch();
            if !batch.is_empty() {
                self.shared.not_full.notify_all();
            }
            if let Err((what, e)) = self.append(batch) {
                self.fail(what, &e);
                break;
            }
            let due = self.oldest.is_some_and(|t| t.elapsed() >= self.interval);
            if !self.unsynced.is_empty() && (last || due || self.unsynced.len() >= self.every) {
                // NEVER retry a failed fsync on the same fd: after a failed fsync the kernel
                // may already have dropped the dirty pages and marked them clean, so a second
                // fsync can "succeed" without the data ever reaching the disk. `fail` stops
                // this writer for good instead.
                if let Err(e) = self.out.sync() {
                    self.fail("fsync", &e);
                    break;
                }
                let n = self.unsynced.len() as u64;
                self.durable += n;
                self.shared.metrics.add_durable(n);
                self.unsynced.clear();
                self.oldest = None;
            }
            if last {
                break;
            }
        }
        Outcome {
            durable: self.durable,
            not_durable: std::mem::take(&mut self.unsynced),
        }
    }

    /// Waits for records (or the fsync deadline, or shutdown) and takes at most `every`.
    /// Returns the batch and whether this is the last round (shutdown with the queue empty).
    fn take_batch(&mut self) -> (Vec<UsageRecord>, bool) {
        let sh = &*self.shared;
        let mut st = sh.lock();
        while st.queue.is_empty() && !st.shutdown {
            match self.oldest {
                None => {
                    st = sh
                        .not_empty
                        .wait(st)
                        .unwrap_or_else(PoisonError::into_inner)
                }
                Some(t) => {
                    let due = t + self.interval;
                    let now = Instant::now();
                    if now >= due {
                        break;
                    }
                    st = sh
                        .not_empty
                        .wait_timeout(st, due - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
        let n = st.queue.len().min(self.every);
        let batch: Vec<UsageRecord> = st.queue.drain(..n).collect();
        sh.metrics.set_queue_depth(st.queue.len());
        (batch, st.shutdown && st.queue.is_empty())
    }

    /// Serializes `batch` and appends it with one `write_all`.
    fn append(&mut self, batch: Vec<UsageRecord>) -> Result<(), (&'static str, io::Error)> {
        if batch.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        let n = batch.len() as u64;
        for rec in batch {
            // Serializing plain strings and integers cannot fail; if it ever did, the record
            // stays in `unsynced` and the sink fails closed below rather than skipping it.
            let line = serde_json::to_writer(&mut self.buf, &rec).map_err(io::Error::other);
            self.unsynced.push(rec);
            line.map_err(|e| ("serialize", e))?;
            self.buf.push(b'\n');
        }
        self.oldest.get_or_insert_with(Instant::now);
        self.out.write_all(&self.buf).map_err(|e| ("write", e))?;
        self.shared.metrics.add_written(n);
        Ok(())
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
        sh.not_full.notify_all();
        while !st.shutdown {
            st = sh
                .not_empty
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}
