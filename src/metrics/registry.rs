//! The shared registry the workers publish into, and its Prometheus text rendering.

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::names;
use super::shared::{FleetMetrics, SinkMetrics};
use super::snapshot::WorkerSnapshot;
use super::worker::SESSION_DURATION_LE;

/// Everything `/metrics` shows: the workers' latest snapshots, the sink's counters, and
/// static info. `Mutex`-protected: touched on the publish timer and by scrapes only.
#[derive(Debug, Default)]
pub struct Registry {
    workers: Mutex<BTreeMap<usize, WorkerSnapshot>>,
    sink: Arc<SinkMetrics>,
    fleet: Arc<FleetMetrics>,
    driver: OnceLock<&'static str>,
    uring_flags: OnceLock<&'static str>,
}

impl Registry {
    /// An empty registry with a fresh, healthy [`SinkMetrics`].
    pub fn new() -> Self {
        Registry::default()
    }

    /// The sink counters to pass to `metering::Sink::start` (and read by `/readyz`).
    pub fn sink_metrics(&self) -> Arc<SinkMetrics> {
        Arc::clone(&self.sink)
    }

    /// The fleet thread's counters.
    pub fn fleet_metrics(&self) -> Arc<FleetMetrics> {
        Arc::clone(&self.fleet)
    }

    /// Records the I/O driver in use (`"io_uring"` or `"epoll"`); the first call wins.
    pub fn set_driver(&self, driver: &'static str) {
        let _ = self.driver.set(driver);
    }

    /// Records the io_uring setup flags the workers' rings were built with.
    pub fn set_uring_flags(&self, flags: &'static str) {
        let _ = self.uring_flags.set(flags);
    }

    /// The io_uring setup flags in use, if io_uring runs.
    pub fn uring_flags(&self) -> Option<&'static str> {
        self.uring_flags.get().copied()
    }

    /// Replaces worker `worker_id`'s snapshot.
    pub fn publish(&self, worker_id: usize, snap: WorkerSnapshot) {
        let mut w = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        w.insert(worker_id, snap);
    }

    /// The sum of all published worker snapshots.
    pub fn total(&self) -> WorkerSnapshot {
        let w = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut sum = WorkerSnapshot::default();
        for s in w.values() {
            sum.add(s);
        }
        sum
    }

    /// Prometheus text exposition format 0.0.4, workers summed.
    pub fn render(&self) -> String {
        let t = self.total();
        let mut o = Out(String::with_capacity(4096));
        let active = t.sessions_opened.saturating_sub(t.sessions_closed);
        o.single(
            names::SESSIONS_OPENED,
            "counter",
            "Sessions accepted past the handshake.",
            t.sessions_opened,
        );
        o.single(
            names::SESSIONS_CLOSED,
            "counter",
            "Sessions that ended.",
            t.sessions_closed,
        );
        o.single(
            names::SESSIONS_ACTIVE,
            "gauge",
            "Sessions open now.",
            active,
        );

        o.head(
            names::SESSION_DURATION,
            "histogram",
            "Session lifetime in seconds.",
        );
        let bucket = format!("{}_bucket", names::SESSION_DURATION);
        let mut cum = 0u64;
        for (i, n) in t.duration_buckets.iter().enumerate() {
            cum += n;
            let le = SESSION_DURATION_LE.get(i).copied().unwrap_or("+Inf");
            o.sample(&bucket, &[("le", le)], cum);
        }
        o.sample(
            &format!("{}_sum", names::SESSION_DURATION),
            &[],
            t.duration_sum,
        );
        o.sample(&format!("{}_count", names::SESSION_DURATION), &[], cum);

        o.head(
            names::HANDSHAKE_FAILURES,
            "counter",
            "Upgrades refused before a session started, by reason.",
        );
        for (reason, n) in &t.handshake_failures {
            o.sample(names::HANDSHAKE_FAILURES, &[("reason", reason)], n);
        }
        let dirs = ["client_to_upstream", "upstream_to_client"];
        o.head(
            names::FRAMES,
            "counter",
            "WebSocket frames relayed, by route and direction.",
        );
        for (route, v) in &t.frames {
            for (d, n) in dirs.iter().zip(v) {
                o.sample(names::FRAMES, &[("route", route), ("dir", d)], n);
            }
        }
        o.head(
            names::FRAME_BYTES,
            "counter",
            "WebSocket frame bytes relayed, by route and direction.",
        );
        for (route, v) in &t.frame_bytes {
            for (d, n) in dirs.iter().zip(v) {
                o.sample(names::FRAME_BYTES, &[("route", route), ("dir", d)], n);
            }
        }
        o.head(
            names::CLOSES,
            "counter",
            "Close frames, by code, the side that closed and route.",
        );
        for ((code, side, route), n) in &t.closes {
            o.sample(
                names::CLOSES,
                &[("code", code), ("side", side.as_str()), ("route", route)],
                n,
            );
        }
        o.head(
            names::TOKENS,
            "counter",
            "Tokens metered, by model, tenant, route and kind.",
        );
        for ((model, tenant, route), c) in &t.tokens {
            for (kind, n) in [
                ("input", c.input),
                ("cached", c.cached),
                ("output", c.output),
                ("reasoning", c.reasoning),
            ] {
                o.sample(
                    names::TOKENS,
                    &[
                        ("model", model),
                        ("tenant", tenant),
                        ("route", route),
                        ("kind", kind),
                    ],
                    n,
                );
            }
        }
        o.head(
            names::RESPONSES,
            "counter",
            "Usage records made, by status and route.",
        );
        for ((status, route), n) in &t.responses {
            o.sample(names::RESPONSES, &[("status", status), ("route", route)], n);
        }
        o.head(
            names::ROUTE_SESSIONS,
            "counter",
            "Sessions opened, by route.",
        );
        for (route, n) in &t.route_sessions {
            o.sample(names::ROUTE_SESSIONS, &[("route", route)], n);
        }
        o.single(
            names::DUPLICATE_TERMINALS,
            "counter",
            "Duplicate terminal events ignored.",
            t.duplicate_terminals,
        );
        o.single(
            names::CREATES_FAILED,
            "counter",
            "Creates ended by an upstream error event before response.created.",
            t.creates_failed,
        );
        o.single(
            names::ORPHAN_DRAINS_STARTED,
            "counter",
            "Orphan drains started.",
            t.orphan_drains_started,
        );
        o.single(
            names::ORPHAN_DRAINS_FINISHED,
            "counter",
            "Orphan drains finished.",
            t.orphan_drains_finished,
        );
        let drains = t
            .orphan_drains_started
            .saturating_sub(t.orphan_drains_finished);
        o.single(
            names::ORPHAN_DRAINS_ACTIVE,
            "gauge",
            "Orphan drains running now.",
            drains,
        );

        o.head(
            names::CREATES_REFUSED,
            "counter",
            "response.create events the relay refused (error event, not forwarded), by code.",
        );
        for (code, n) in &t.creates_refused {
            o.sample(names::CREATES_REFUSED, &[("code", code)], n);
        }
        o.single(
            names::PANICS,
            "counter",
            "Panics contained inside a session or handshake (the session was closed 1011).",
            t.panics,
        );
        o.single(
            names::RING_SESSIONS,
            "counter",
            "Sessions handed to the buffer-ring data plane (the rest run on the async adapter).",
            t.ring_sessions,
        );
        o.single(
            names::RING_COPIED_BYTES,
            "counter",
            "Bytes copied out of the receive ring into a session's own memory because that leg held its share of ring buffers or the ring ran low (clients behind their streams).",
            t.ring_copied_bytes,
        );
        o.single(
            names::RING_HELD,
            "gauge",
            "Receive-ring buffers holding bytes not yet forwarded, all workers (each worker's ring has --ring-buffers).",
            t.ring_held,
        );
        o.head(
            names::STALLED_LEGS,
            "counter",
            "Sessions cut because a leg stopped reading for --slow-consumer-timeout, by side.",
        );
        for (side, n) in ["client", "upstream"].iter().zip(t.stalls) {
            o.sample(names::STALLED_LEGS, &[("side", side)], n);
        }

        let s = &self.sink;
        o.single(
            names::USAGE_RECORDS_WRITTEN,
            "counter",
            "Usage records written to the log.",
            s.written(),
        );
        o.single(
            names::USAGE_RECORDS_DURABLE,
            "counter",
            "Usage records covered by a completed fsync.",
            s.durable(),
        );
        o.single(
            names::USAGE_LOG_BACKPRESSURE,
            "gauge",
            "1 while the usage log writer is --usage-queue-capacity records behind (new responses refused).",
            u8::from(s.backpressured()),
        );
        o.single(
            names::USAGE_LOG_BACKPRESSURE_EVENTS,
            "counter",
            "Times the usage log writer fell --usage-queue-capacity records behind.",
            s.backpressure_events(),
        );
        o.single(
            names::USAGE_LOG_REOPENS,
            "counter",
            "Usage log reopens (SIGHUP, log rotation).",
            s.reopens(),
        );
        o.single(
            names::USAGE_LOG_ERRORS,
            "counter",
            "Usage log write/fsync errors.",
            s.errors(),
        );
        o.single(
            names::USAGE_LOG_FSYNCS,
            "counter",
            "Usage log fsyncs.",
            s.fsyncs(),
        );
        o.single(
            names::USAGE_LOG_QUEUE_DEPTH,
            "gauge",
            "Usage records queued for the writer.",
            s.queue_depth(),
        );
        o.single(
            names::USAGE_JOURNAL_SKIPPED,
            "counter",
            "Usage records queued without a journal entry (journal full).",
            s.journal_skips(),
        );
        o.single(
            names::USAGE_JOURNAL_RECOVERED,
            "counter",
            "Usage records appended to the log from dead relays' journals.",
            s.journal_recovered(),
        );
        o.single(
            names::USAGE_LOG_HEALTHY,
            "gauge",
            "1 while the usage log accepts records, 0 once it failed closed.",
            u8::from(s.healthy()),
        );

        let f = &self.fleet;
        if f.export_enabled.load(Ordering::Relaxed) {
            o.single(
                names::EXPORT_BACKLOG_RECORDS,
                "gauge",
                "Usage records durable in the log and not yet acknowledged by JetStream.",
                FleetMetrics::get(&f.export_backlog_records),
            );
            o.single(
                names::EXPORT_BACKLOG_BYTES,
                "gauge",
                "Bytes of usage log not yet acknowledged by JetStream.",
                FleetMetrics::get(&f.export_backlog_bytes),
            );
            o.single(
                names::EXPORT_ACKED,
                "counter",
                "Usage records acknowledged by JetStream.",
                FleetMetrics::get(&f.export_acked),
            );
            o.single(
                names::EXPORT_ERRORS,
                "counter",
                "Usage export failures (connect, publish, ack timeout).",
                FleetMetrics::get(&f.export_errors),
            );
            o.single(
                names::EXPORT_BACKLOGGED,
                "gauge",
                "1 while the export backlog is over --usage-export-max-backlog (/readyz 503).",
                u8::from(f.backlogged()),
            );
        }
        if f.budget_enabled.load(Ordering::Relaxed) {
            o.single(
                names::BUDGET_BACKEND_UP,
                "gauge",
                "1 while Redis (fleet budgets and session counts) answers.",
                u8::from(!f.budget_backend_down.load(Ordering::Relaxed)),
            );
            o.single(
                names::BUDGET_LEASES,
                "counter",
                "Budget leases taken from Redis.",
                FleetMetrics::get(&f.budget_leases),
            );
            o.single(
                names::BUDGET_LEASED_TOKENS,
                "counter",
                "Tokens in the budget leases taken.",
                FleetMetrics::get(&f.budget_leased_tokens),
            );
            o.single(
                names::BUDGET_ERRORS,
                "counter",
                "Redis operations that failed.",
                FleetMetrics::get(&f.budget_errors),
            );
        }

        if let Some(driver) = self.driver.get() {
            o.head(names::DRIVER_INFO, "gauge", "I/O driver in use.");
            match self.uring_flags.get() {
                Some(flags) => o.sample(
                    names::DRIVER_INFO,
                    &[("driver", driver), ("uring_flags", flags)],
                    1,
                ),
                None => o.sample(names::DRIVER_INFO, &[("driver", driver)], 1),
            }
        }
        o.head(names::BUILD_INFO, "gauge", "Build information.");
        o.sample(
            names::BUILD_INFO,
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        o.0
    }
}

/// Text exposition writer.
struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        // Infallible: writing to a String.
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                self.0.push_str(k);
                self.0.push_str("=\"");
                escape_label_into(&mut self.0, v);
                self.0.push('"');
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        self.head(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Escapes a label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Escapes HELP text: `\` → `\\`, newline → `\n`.
fn escape_help(h: &str) -> String {
    h.replace('\\', "\\\\").replace('\n', "\\n")
}
