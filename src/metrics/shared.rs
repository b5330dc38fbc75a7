//! Counters of the parts that run beside the workers — the usage-log sink and the fleet
//! exporter — shared with the registry as atomics (touched per record or per batch, never
//! per frame).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Counters of the usage-log sink, shared between the sink's writer thread, the workers'
/// `SinkHandle`s and the registry (atomics: touched per record, never per frame).
#[derive(Debug)]
pub struct SinkMetrics {
    healthy: AtomicBool,
    backpressure: AtomicBool,
    written: AtomicU64,
    durable: AtomicU64,
    backpressure_events: AtomicU64,
    reopens: AtomicU64,
    errors: AtomicU64,
    fsyncs: AtomicU64,
    queue_depth: AtomicU64,
    journal_skipped: AtomicU64,
    journal_recovered: AtomicU64,
}

impl Default for SinkMetrics {
    fn default() -> Self {
        SinkMetrics {
            healthy: AtomicBool::new(true),
            backpressure: AtomicBool::new(false),
            written: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            backpressure_events: AtomicU64::new(0),
            reopens: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            journal_skipped: AtomicU64::new(0),
            journal_recovered: AtomicU64::new(0),
        }
    }
}

impl SinkMetrics {
    /// `true` until the sink's first write or fsync error.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }
    /// Healthy and not backpressured: new responses and sessions may start.
    pub fn accepting(&self) -> bool {
        self.healthy() && !self.backpressured()
    }
    /// Whether the writer is `queue_capacity` records behind (until it is half way down).
    pub fn backpressured(&self) -> bool {
        self.backpressure.load(Ordering::Acquire)
    }
    /// Turns backpressure on or off (counting each time it turns on).
    pub fn set_backpressure(&self, on: bool) {
        if self.backpressure.swap(on, Ordering::AcqRel) != on && on {
            self.backpressure_events.fetch_add(1, Ordering::Relaxed);
        }
    }
    /// Times backpressure turned on.
    pub fn backpressure_events(&self) -> u64 {
        self.backpressure_events.load(Ordering::Relaxed)
    }
    /// The log file was reopened (rotation).
    pub fn add_reopen(&self) {
        self.reopens.fetch_add(1, Ordering::Relaxed);
    }
    /// Reopens so far.
    pub fn reopens(&self) -> u64 {
        self.reopens.load(Ordering::Relaxed)
    }
    /// Marks the sink failed (forever) and counts the error.
    pub fn fail(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.healthy.store(false, Ordering::Release);
    }
    /// `n` records were written (handed to the kernel).
    pub fn add_written(&self, n: u64) {
        self.written.fetch_add(n, Ordering::Relaxed);
    }
    /// An fsync made `n` more records durable.
    pub fn add_durable(&self, n: u64) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.durable.fetch_add(n, Ordering::Release);
    }
    /// Sets the queue-depth gauge.
    pub fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.store(depth as u64, Ordering::Relaxed);
    }
    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
    /// Records covered by a completed fsync so far.
    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }
    /// Write/fsync errors so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
    /// Fsyncs so far.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }
    /// Records queued now.
    pub fn queue_depth(&self) -> u64 {
        self.queue_depth.load(Ordering::Relaxed)
    }
    /// A record was queued without a journal entry (the journal was full).
    pub fn journal_skipped(&self) {
        self.journal_skipped.fetch_add(1, Ordering::Relaxed);
    }
    /// Records queued without a journal entry so far.
    pub fn journal_skips(&self) -> u64 {
        self.journal_skipped.load(Ordering::Relaxed)
    }
    /// `n` records of dead relays' journals were appended to the log.
    pub fn add_journal_recovered(&self, n: u64) {
        self.journal_recovered.fetch_add(n, Ordering::Relaxed);
    }
    /// Records appended from dead relays' journals so far.
    pub fn journal_recovered(&self) -> u64 {
        self.journal_recovered.load(Ordering::Relaxed)
    }
}

/// Counters of the fleet thread (usage export, shared budgets): atomics written by that
/// thread, read by scrapes and `/readyz`.
#[derive(Debug, Default)]
pub struct FleetMetrics {
    /// Export configured.
    pub export_enabled: AtomicBool,
    /// Records durable in the log and not yet acknowledged by JetStream.
    pub export_backlog_records: AtomicU64,
    /// Bytes of the same.
    pub export_backlog_bytes: AtomicU64,
    /// Records acknowledged by JetStream.
    pub export_acked: AtomicU64,
    /// Publish, ack or connection failures.
    pub export_errors: AtomicU64,
    /// The backlog is over `--usage-export-max-backlog` (`/readyz` 503).
    pub export_backlogged: AtomicBool,
    /// Budgets configured.
    pub budget_enabled: AtomicBool,
    /// Redis answered the last sync (inverted: set while it does *not*).
    pub budget_backend_down: AtomicBool,
    /// Leases taken from Redis.
    pub budget_leases: AtomicU64,
    /// Tokens in them.
    pub budget_leased_tokens: AtomicU64,
    /// Redis operations that failed.
    pub budget_errors: AtomicU64,
}

impl FleetMetrics {
    fn bump(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    /// One more export error.
    pub fn export_error(&self) {
        Self::bump(&self.export_errors, 1);
    }
    /// `n` records acknowledged.
    pub fn exported(&self, n: u64) {
        Self::bump(&self.export_acked, n);
    }
    /// The backlog now.
    pub fn set_backlog(&self, records: u64, bytes: u64, max: u64) {
        self.export_backlog_records
            .store(records, Ordering::Relaxed);
        self.export_backlog_bytes.store(bytes, Ordering::Relaxed);
        self.export_backlogged
            .store(records > max, Ordering::Release);
    }
    /// Whether the export backlog keeps the relay from being ready.
    pub fn backlogged(&self) -> bool {
        self.export_backlogged.load(Ordering::Acquire)
    }
    /// A lease of `tokens` was taken.
    pub fn lease(&self, tokens: u64) {
        Self::bump(&self.budget_leases, 1);
        Self::bump(&self.budget_leased_tokens, tokens);
    }
    /// A Redis operation failed.
    pub fn budget_error(&self) {
        Self::bump(&self.budget_errors, 1);
    }
    pub(super) fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
