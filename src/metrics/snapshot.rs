//! What a worker publishes: a plain copy of its counters ([`WorkerSnapshot`]), summed over
//! the workers by the [`Registry`](super::Registry), and the labels its series carry (who
//! closed a leg, a close code's label, a series' token counts).

use std::collections::BTreeMap;

/// Who closed a leg (label `side`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    /// The client.
    Client,
    /// The upstream.
    Upstream,
    /// The relay itself (limits, timeouts, shutdown, protocol errors).
    Relay,
}

impl Side {
    /// Label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
            Side::Relay => "relay",
        }
    }
}

/// The `code` label of a close: exact for 1000–1015, else `3xxx`, `4xxx` or `other`, so that a
/// peer's arbitrary codes cannot grow the series count.
pub fn close_code_label(code: u16) -> &'static str {
    const EXACT: [&str; 16] = [
        "1000", "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009", "1010",
        "1011", "1012", "1013", "1014", "1015",
    ];
    match code {
        1000..=1015 => EXACT
            .get(usize::from(code - 1000))
            .copied()
            .unwrap_or("other"),
        3000..=3999 => "3xxx",
        4000..=4999 => "4xxx",
        _ => "other",
    }
}

/// Token counts of one `(model, tenant)` series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    /// Input tokens.
    pub input: u64,
    /// Cached input tokens.
    pub cached: u64,
    /// Output tokens.
    pub output: u64,
    /// Reasoning tokens.
    pub reasoning: u64,
}

/// A plain copy of one worker's counters, as published into the [`Registry`](super::Registry).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerSnapshot {
    /// Sessions opened.
    pub sessions_opened: u64,
    /// Sessions closed.
    pub sessions_closed: u64,
    /// Session-duration histogram: per-bucket (non-cumulative) counts, last = `+Inf`.
    pub duration_buckets: [u64; 9],
    /// Sum of session durations, seconds.
    pub duration_sum: f64,
    /// Handshake failures by reason.
    pub handshake_failures: BTreeMap<&'static str, u64>,
    /// Frames by route, `[client_to_upstream, upstream_to_client]`.
    pub frames: BTreeMap<String, [u64; 2]>,
    /// Frame bytes by route, same order.
    pub frame_bytes: BTreeMap<String, [u64; 2]>,
    /// Closes by `(code label, side, route)`.
    pub closes: BTreeMap<(&'static str, Side, String), u64>,
    /// Tokens by `(model, tenant, route)`.
    pub tokens: BTreeMap<(String, String, String), TokenCounts>,
    /// Usage records by `(status, route)`.
    pub responses: BTreeMap<(String, String), u64>,
    /// Sessions opened, by route.
    pub route_sessions: BTreeMap<String, u64>,
    /// Duplicate terminal events ignored.
    pub duplicate_terminals: u64,
    /// Creates failed by an upstream error before `response.created`.
    pub creates_failed: u64,
    /// Orphan drains started.
    pub orphan_drains_started: u64,
    /// Orphan drains finished.
    pub orphan_drains_finished: u64,
    /// `response.create`s the relay refused, by error code.
    pub creates_refused: BTreeMap<&'static str, u64>,
    /// Panics contained inside a session or a handshake.
    pub panics: u64,
    /// Sessions that moved their bytes on the buffer-ring data plane.
    pub ring_sessions: u64,
    /// Bytes copied out of the receive ring because a leg held its share of ring buffers
    /// or the ring ran low (a client behind its stream).
    pub ring_copied_bytes: u64,
    /// Receive-ring buffers holding bytes not yet forwarded, as of the last turn.
    pub ring_held: u64,
    /// Sessions ended because a leg stopped reading (`--slow-consumer-timeout`), by side.
    pub stalls: [u64; 2],
}

impl WorkerSnapshot {
    /// Adds `o` into `self` (the registry sums workers with it).
    pub fn add(&mut self, o: &WorkerSnapshot) {
        self.sessions_opened += o.sessions_opened;
        self.sessions_closed += o.sessions_closed;
        for (a, b) in self.duration_buckets.iter_mut().zip(o.duration_buckets) {
            *a += b;
        }
        self.duration_sum += o.duration_sum;
        for (k, v) in &o.handshake_failures {
            *self.handshake_failures.entry(k).or_default() += v;
        }
        for (mine, theirs) in [
            (&mut self.frames, &o.frames),
            (&mut self.frame_bytes, &o.frame_bytes),
        ] {
            for (route, v) in theirs {
                let t = mine.entry(route.clone()).or_default();
                t[0] += v[0];
                t[1] += v[1];
            }
        }
        for (k, v) in &o.closes {
            *self.closes.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.tokens {
            let t = self.tokens.entry(k.clone()).or_default();
            t.input += v.input;
            t.cached += v.cached;
            t.output += v.output;
            t.reasoning += v.reasoning;
        }
        for (k, v) in &o.route_sessions {
            *self.route_sessions.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.responses {
            *self.responses.entry(k.clone()).or_default() += v;
        }
        self.duplicate_terminals += o.duplicate_terminals;
        self.creates_failed += o.creates_failed;
        self.orphan_drains_started += o.orphan_drains_started;
        self.orphan_drains_finished += o.orphan_drains_finished;
        for (k, v) in &o.creates_refused {
            *self.creates_refused.entry(k).or_default() += v;
        }
        self.panics += o.panics;
        self.ring_sessions += o.ring_sessions;
        self.ring_copied_bytes += o.ring_copied_bytes;
        self.ring_held += o.ring_held;
        for i in 0..2 {
            self.stalls[i] += o.stalls[i];
        }
    }
}
