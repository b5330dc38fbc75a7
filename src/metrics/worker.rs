//! Per-worker counters: plain `Cell`s, touched only by the worker that owns them.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::registry::Registry;
use super::snapshot::{close_code_label, Side, TokenCounts, WorkerSnapshot};
use crate::flow::Direction;
use crate::tap::Usage;

/// Upper bounds (seconds) of the session-duration histogram buckets; `+Inf` is implied.
pub const SESSION_DURATION_BUCKETS: [f64; 8] = [0.1, 1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0];
/// Label text of [`SESSION_DURATION_BUCKETS`] (the `le` label).
pub(crate) const SESSION_DURATION_LE: [&str; 8] =
    ["0.1", "1", "10", "60", "300", "900", "1800", "3600"];
/// Most distinct `(model, tenant)` token series one worker keeps; past it the model label
/// becomes [`OTHER`].
pub const MAX_TOKEN_SERIES: usize = 512;
/// Most distinct response statuses one worker keeps; past it the status becomes [`OTHER`].
pub const MAX_STATUS_SERIES: usize = 32;
/// Most distinct tenant labels one worker keeps; past it the tenant label becomes [`OTHER`]
/// (in passthrough mode every client key is a tenant, so their number is unbounded).
pub const MAX_TENANT_LABELS: usize = 256;
/// Longest model label kept (bytes, cut at a char boundary).
pub const MAX_MODEL_LABEL: usize = 128;
/// Label value that stands for everything past a cardinality cap.
pub const OTHER: &str = "_other";

/// One worker's counters. `!Sync`: owned by its worker thread, no atomics on the hot path;
/// [`WorkerMetrics::publish`] copies them into the shared [`Registry`] on a timer.
#[derive(Debug)]
pub struct WorkerMetrics {
    registry: Arc<Registry>,
    sessions_opened: Cell<u64>,
    sessions_closed: Cell<u64>,
    duration_buckets: [Cell<u64>; 9],
    duration_sum: Cell<f64>,
    duplicate_terminals: Cell<u64>,
    creates_failed: Cell<u64>,
    orphan_drains_started: Cell<u64>,
    orphan_drains_finished: Cell<u64>,
    panics: Cell<u64>,
    ring_sessions: Cell<u64>,
    ring_copied_bytes: Cell<u64>,
    ring_held: Cell<u64>,
    stalls: [Cell<u64>; 2],
    labeled: RefCell<Labeled>,
}

/// The rarely-touched labeled series.
#[derive(Debug, Default)]
struct Labeled {
    handshake_failures: BTreeMap<&'static str, u64>,
    frames: BTreeMap<String, [u64; 2]>,
    frame_bytes: BTreeMap<String, [u64; 2]>,
    closes: BTreeMap<(&'static str, Side, String), u64>,
    /// Tokens by route, tenant and model: nested so that a record whose series exists is
    /// counted by `&str` lookups, without building an owned key (three `String`s) per record
    /// as a `(model, tenant, route)` key would; [`WorkerMetrics::snapshot`] flattens it.
    tokens: BTreeMap<String, BTreeMap<String, BTreeMap<String, TokenCounts>>>,
    /// Series in `tokens`.
    token_series: usize,
    /// Usage records by status, then route (nested for the same reason).
    responses: BTreeMap<String, BTreeMap<String, u64>>,
    /// Series in `responses`.
    response_series: usize,
    route_sessions: BTreeMap<String, u64>,
    creates_refused: BTreeMap<&'static str, u64>,
    tenants: std::collections::BTreeSet<String>,
}

/// The value under `key` in the innermost map of a labelled family, created (and counted in
/// `count`, the family's series) when new.
fn series<'a, V: Default>(
    m: &'a mut BTreeMap<String, V>,
    key: &str,
    count: &mut usize,
) -> &'a mut V {
    m.entry(key.to_owned()).or_insert_with(|| {
        *count += 1;
        V::default()
    })
}

fn bump(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

/// Cuts `s` to at most `max` bytes at a char boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

impl WorkerMetrics {
    /// Counters for one worker, publishing into `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        WorkerMetrics {
            registry,
            sessions_opened: Cell::new(0),
            sessions_closed: Cell::new(0),
            duration_buckets: Default::default(),
            duration_sum: Cell::new(0.0),
            duplicate_terminals: Cell::new(0),
            creates_failed: Cell::new(0),
            orphan_drains_started: Cell::new(0),
            orphan_drains_finished: Cell::new(0),
            panics: Cell::new(0),
            ring_sessions: Cell::new(0),
            ring_copied_bytes: Cell::new(0),
            ring_held: Cell::new(0),
            stalls: Default::default(),
            labeled: RefCell::new(Labeled::default()),
        }
    }

    /// A session passed its handshake (client got its 101).
    pub fn session_opened(&self) {
        bump(&self.sessions_opened, 1);
    }

    /// A session ended after `duration`.
    pub fn session_closed(&self, duration: Duration) {
        bump(&self.sessions_closed, 1);
        let secs = duration.as_secs_f64();
        let idx = SESSION_DURATION_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(8);
        if let Some(b) = self.duration_buckets.get(idx) {
            bump(b, 1);
        }
        self.duration_sum.set(self.duration_sum.get() + secs);
    }

    /// An upgrade was refused before a session started; `reason` is a fixed snake_case code.
    pub fn handshake_failed(&self, reason: &'static str) {
        *self
            .labeled
            .borrow_mut()
            .handshake_failures
            .entry(reason)
            .or_default() += 1;
    }

    /// A session on `route` relayed `n` frames of `bytes` total in direction `dir`
    /// (counted once per session, at its end; routes are few, from the config).
    pub fn frames(&self, route: &str, dir: Direction, n: u64, bytes: u64) {
        let i = dir.index();
        let mut guard = self.labeled.borrow_mut();
        let l = &mut *guard;
        for (map, add) in [(&mut l.frames, n), (&mut l.frame_bytes, bytes)] {
            match map.get_mut(route) {
                Some(v) => v[i] = v[i].wrapping_add(add),
                None => {
                    let mut v = [0; 2];
                    v[i] = add;
                    map.insert(route.to_owned(), v);
                }
            }
        }
    }

    /// A leg of a session on `route` was closed with `code` by `side`.
    pub fn close(&self, code: u16, side: Side, route: &str) {
        let key = (close_code_label(code), side, route.to_owned());
        *self.labeled.borrow_mut().closes.entry(key).or_default() += 1;
    }

    /// Tokens of one usage record on `route` (model label cut to [`MAX_MODEL_LABEL`] bytes;
    /// past [`MAX_TOKEN_SERIES`] series the model and tenant become [`OTHER`]; routes are
    /// few, from the config).
    pub fn tokens(&self, model: &str, tenant: &str, route: &str, usage: &Usage) {
        let mut guard = self.labeled.borrow_mut();
        let l = &mut *guard;
        let mut tenant = if l.tenants.contains(tenant) {
            tenant
        } else if l.tenants.len() < MAX_TENANT_LABELS {
            l.tenants.insert(tenant.to_owned());
            tenant
        } else {
            OTHER
        };
        let mut model = clip(model, MAX_MODEL_LABEL);
        let add = |t: &mut TokenCounts| {
            t.input = t.input.wrapping_add(usage.input_tokens);
            t.cached = t.cached.wrapping_add(usage.cached_tokens);
            t.output = t.output.wrapping_add(usage.output_tokens);
            t.reasoning = t.reasoning.wrapping_add(usage.reasoning_tokens);
        };
        // The common case: the series exists.
        if let Some(t) = l
            .tokens
            .get_mut(route)
            .and_then(|m| m.get_mut(tenant))
            .and_then(|m| m.get_mut(model))
        {
            add(t);
            return;
        }
        if l.token_series >= MAX_TOKEN_SERIES {
            (model, tenant) = (OTHER, OTHER);
        }
        let by_tenant = l.tokens.entry(route.to_owned()).or_default();
        let by_model = by_tenant.entry(tenant.to_owned()).or_default();
        add(series(by_model, model, &mut l.token_series));
    }

    /// A usage record with `status` was made on `route`.
    pub fn response(&self, status: &str, route: &str) {
        let mut guard = self.labeled.borrow_mut();
        let l = &mut *guard;
        if let Some(n) = l.responses.get_mut(status).and_then(|m| m.get_mut(route)) {
            *n += 1;
            return;
        }
        let known = l.responses.contains_key(status);
        let status = if known || l.response_series < MAX_STATUS_SERIES {
            status
        } else {
            OTHER
        };
        let by_route = l.responses.entry(status.to_owned()).or_default();
        *series(by_route, route, &mut l.response_series) += 1;
    }

    /// A session on `route` passed its handshake (besides [`WorkerMetrics::session_opened`]).
    pub fn route_session(&self, route: &str) {
        let mut l = self.labeled.borrow_mut();
        *l.route_sessions.entry(route.to_owned()).or_default() += 1;
    }

    /// A duplicate terminal event for an already-recorded `response.id` was ignored.
    pub fn duplicate_terminal(&self) {
        bump(&self.duplicate_terminals, 1);
    }

    /// A `response.create` was ended by an upstream `error` event before `response.created`.
    pub fn create_failed(&self) {
        bump(&self.creates_failed, 1);
    }

    /// The client left with responses in flight; the relay keeps reading upstream.
    pub fn orphan_drain_started(&self) {
        bump(&self.orphan_drains_started, 1);
    }

    /// An orphan drain ended (terminal events arrived, or its deadline passed).
    pub fn orphan_drain_finished(&self) {
        bump(&self.orphan_drains_finished, 1);
    }

    /// The relay refused a `response.create` with error `code`.
    pub fn create_refused(&self, code: &'static str) {
        *self
            .labeled
            .borrow_mut()
            .creates_refused
            .entry(code)
            .or_default() += 1;
    }

    /// A panic inside a session or handshake was contained.
    pub fn panicked(&self) {
        bump(&self.panics, 1);
    }

    /// A session was handed to the buffer-ring data plane.
    pub fn ring_session(&self) {
        bump(&self.ring_sessions, 1);
    }

    /// `n` bytes were copied out of the receive ring (a queue behind its client).
    pub fn ring_copied(&self, n: usize) {
        bump(&self.ring_copied_bytes, n as u64);
    }

    /// `n` receive-ring buffers hold bytes not yet forwarded.
    pub fn set_ring_held(&self, n: usize) {
        self.ring_held.set(n as u64);
    }

    /// A leg of `side` stopped reading for `--slow-consumer-timeout`.
    pub fn stalled(&self, side: crate::flow::Side) {
        bump(&self.stalls[side.index()], 1);
    }

    /// A plain copy of the counters.
    pub fn snapshot(&self) -> WorkerSnapshot {
        let l = self.labeled.borrow();
        WorkerSnapshot {
            sessions_opened: self.sessions_opened.get(),
            sessions_closed: self.sessions_closed.get(),
            duration_buckets: std::array::from_fn(|i| self.duration_buckets[i].get()),
            duration_sum: self.duration_sum.get(),
            handshake_failures: l.handshake_failures.clone(),
            frames: l.frames.clone(),
            frame_bytes: l.frame_bytes.clone(),
            closes: l.closes.clone(),
            tokens: l
                .tokens
                .iter()
                .flat_map(|(route, m)| {
                    m.iter().flat_map(move |(tenant, m)| {
                        m.iter().map(move |(model, t)| {
                            ((model.clone(), tenant.clone(), route.clone()), *t)
                        })
                    })
                })
                .collect(),
            responses: l
                .responses
                .iter()
                .flat_map(|(status, m)| {
                    m.iter()
                        .map(move |(route, n)| ((status.clone(), route.clone()), *n))
                })
                .collect(),
            route_sessions: l.route_sessions.clone(),
            duplicate_terminals: self.duplicate_terminals.get(),
            creates_failed: self.creates_failed.get(),
            orphan_drains_started: self.orphan_drains_started.get(),
            orphan_drains_finished: self.orphan_drains_finished.get(),
            creates_refused: l.creates_refused.clone(),
            panics: self.panics.get(),
            ring_sessions: self.ring_sessions.get(),
            ring_copied_bytes: self.ring_copied_bytes.get(),
            ring_held: self.ring_held.get(),
            stalls: [self.stalls[0].get(), self.stalls[1].get()],
        }
    }

    /// Copies the counters into the registry as worker `worker_id`'s (replacing its previous
    /// copy). Call every ~500 ms and once at shutdown.
    pub fn publish(&self, worker_id: usize) {
        self.registry.publish(worker_id, self.snapshot());
    }
}
