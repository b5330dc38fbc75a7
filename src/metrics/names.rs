//! Every metric name the relay exports, defined once. Counters end in `_total`.

/// Counter: sessions accepted past the handshake.
pub const SESSIONS_OPENED: &str = "tollgate_sessions_opened_total";
/// Counter: sessions that ended.
pub const SESSIONS_CLOSED: &str = "tollgate_sessions_closed_total";
/// Gauge: sessions open now (opened − closed, summed over workers).
pub const SESSIONS_ACTIVE: &str = "tollgate_sessions_active";
/// Histogram: session lifetime in seconds.
pub const SESSION_DURATION: &str = "tollgate_session_duration_seconds";
/// Counter, label `reason`: upgrades refused before a session started.
pub const HANDSHAKE_FAILURES: &str = "tollgate_handshake_failures_total";
/// Counter, label `dir`: WebSocket frames relayed.
pub const FRAMES: &str = "tollgate_frames_total";
/// Counter, label `dir`: WebSocket frame bytes relayed (headers included).
pub const FRAME_BYTES: &str = "tollgate_frame_bytes_total";
/// Counter, labels `code`, `side`: close frames, by code and by who closed.
pub const CLOSES: &str = "tollgate_closes_total";
/// Counter, labels `model`, `tenant`, `route`, `kind`: tokens metered.
pub const TOKENS: &str = "tollgate_tokens_total";
/// Counter, labels `status`, `route`: usage records made, by record status.
pub const RESPONSES: &str = "tollgate_responses_total";
/// Counter, label `route`: sessions opened on each route.
pub const ROUTE_SESSIONS: &str = "tollgate_route_sessions_total";
/// Counter: duplicate terminal events ignored (exactly-once by `response.id`).
pub const DUPLICATE_TERMINALS: &str = "tollgate_usage_duplicate_terminals_total";
/// Counter: `response.create`s ended by an upstream `error` event before any `response.created`.
pub const CREATES_FAILED: &str = "tollgate_usage_creates_failed_total";
/// Counter, label `code`: `response.create`s the relay refused with an error event.
pub const CREATES_REFUSED: &str = "tollgate_creates_refused_total";
/// Counter: panics contained inside a session or a handshake.
pub const PANICS: &str = "tollgate_panics_total";
/// Counter: sessions handed to the buffer-ring data plane (plain or TLS legs).
pub const RING_SESSIONS: &str = "tollgate_ring_sessions_total";
/// Counter: bytes copied out of the receive ring because a leg held its share of ring
/// buffers or the ring ran low (clients behind their streams).
pub const RING_COPIED_BYTES: &str = "tollgate_ring_copied_bytes_total";
/// Gauge: receive-ring buffers holding bytes not yet forwarded (all workers).
pub const RING_HELD: &str = "tollgate_ring_buffers_held";
/// Counter, label `side`: sessions cut because that leg stopped reading.
pub const STALLED_LEGS: &str = "tollgate_stalled_legs_total";
/// Counter: orphan drains started (client left with responses in flight).
pub const ORPHAN_DRAINS_STARTED: &str = "tollgate_orphan_drains_started_total";
/// Counter: orphan drains finished (terminal events arrived or the deadline passed).
pub const ORPHAN_DRAINS_FINISHED: &str = "tollgate_orphan_drains_finished_total";
/// Gauge: orphan drains running now.
pub const ORPHAN_DRAINS_ACTIVE: &str = "tollgate_orphan_drains_active";
/// Counter: usage records written to the log (not yet necessarily durable).
pub const USAGE_RECORDS_WRITTEN: &str = "tollgate_usage_records_written_total";
/// Counter: usage records covered by a completed fsync.
pub const USAGE_RECORDS_DURABLE: &str = "tollgate_usage_records_durable_total";
/// Gauge: 1 while the usage log writer is `--usage-queue-capacity` records behind.
pub const USAGE_LOG_BACKPRESSURE: &str = "tollgate_usage_log_backpressure";
/// Counter: times the usage log writer fell `--usage-queue-capacity` records behind.
pub const USAGE_LOG_BACKPRESSURE_EVENTS: &str = "tollgate_usage_log_backpressure_events_total";
/// Counter: usage log reopens (SIGHUP, log rotation).
pub const USAGE_LOG_REOPENS: &str = "tollgate_usage_log_reopens_total";
/// Counter: usage log write/fsync errors (the first one fails the sink closed).
pub const USAGE_LOG_ERRORS: &str = "tollgate_usage_log_errors_total";
/// Counter: fsyncs (fdatasync) of the usage log.
pub const USAGE_LOG_FSYNCS: &str = "tollgate_usage_log_fsyncs_total";
/// Gauge: records queued for the usage log writer.
pub const USAGE_LOG_QUEUE_DEPTH: &str = "tollgate_usage_log_queue_depth";
/// Counter: usage records queued without a journal entry (the journal was a whole ring behind).
pub const USAGE_JOURNAL_SKIPPED: &str = "tollgate_usage_journal_skipped_total";
/// Counter: usage records appended to the log from dead relays' journals (at start and by
/// adoption while running): each is a record a killed relay had forwarded but not written.
pub const USAGE_JOURNAL_RECOVERED: &str = "tollgate_usage_journal_recovered_total";
/// Gauge: 1 while the usage log accepts records, 0 once it failed closed.
pub const USAGE_LOG_HEALTHY: &str = "tollgate_usage_log_healthy";
/// Gauge, label `driver`: the I/O driver in use (`io_uring` or `epoll`), always 1.
pub const DRIVER_INFO: &str = "tollgate_driver_info";
/// Gauge, label `version`: build information, always 1.
pub const BUILD_INFO: &str = "tollgate_build_info";
/// Gauge: usage records durable in the log, not yet acknowledged by JetStream.
pub const EXPORT_BACKLOG_RECORDS: &str = "tollgate_usage_export_backlog_records";
/// Gauge: bytes of the same.
pub const EXPORT_BACKLOG_BYTES: &str = "tollgate_usage_export_backlog_bytes";
/// Counter: records acknowledged by JetStream.
pub const EXPORT_ACKED: &str = "tollgate_usage_export_acked_total";
/// Counter: export failures.
pub const EXPORT_ERRORS: &str = "tollgate_usage_export_errors_total";
/// Gauge: 1 while the backlog is over `--usage-export-max-backlog`.
pub const EXPORT_BACKLOGGED: &str = "tollgate_usage_export_backlogged";
/// Gauge: 1 while Redis answers.
pub const BUDGET_BACKEND_UP: &str = "tollgate_budget_backend_up";
/// Counter: budget leases taken.
pub const BUDGET_LEASES: &str = "tollgate_budget_leases_total";
/// Counter: tokens leased.
pub const BUDGET_LEASED_TOKENS: &str = "tollgate_budget_leased_tokens_total";
/// Counter: Redis operations that failed.
pub const BUDGET_ERRORS: &str = "tollgate_budget_errors_total";
