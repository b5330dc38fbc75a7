//! Per-session metering: turns the tap's events into exactly one usage record per
//! `response.id`.
//!
//! # Matching
//!
//! - A client `response.create` queues a *pending create* on its lane (`stream_id`; `None` is
//!   the default lane) with the requested model and its start time.
//! - An upstream `response.created` opens a response and binds it to the oldest pending create
//!   of its lane (FIFO within a lane). With no pending create on that lane it is a *steering
//!   successor*: it still opens a response, with the lane's last requested model and its own
//!   arrival as start time. Steers and their answers tell the session when a successor is
//!   still to come (`super::successors`; [`SessionMeter::awaiting`] counts them).
//! - A terminal event makes one record, keyed by `response.id`; a second terminal for an id
//!   already recorded (among the last [`MAX_RECENT_DONE`]) is ignored and counted. A terminal
//!   for an id never seen `created` is still recorded (it consumes the lane's oldest pending
//!   create).
//! - An `error` event ends the oldest pending create of its lane (no record: no response id).
//!   With no pending create on the lane it changes nothing: a response already created stays
//!   open, and is recorded by its terminal event or by [`SessionMeter::finish`], so a late
//!   terminal's real usage is never lost to an early guess.
//! - [`SessionMeter::finish`] records every response still open with the end reason as status,
//!   zero usage and `usage_final: false`.
//!
//! # Bounds
//!
//! At most [`MAX_PENDING`] pending creates and [`MAX_OPEN`] open responses are tracked per
//! session. Creates past the bound are only counted (their responses are matched like
//! successors); responses past the bound are still recorded by their terminal event but not by
//! `finish`.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use super::recent::MAX_RECENT_DONE;
use super::recent::{id_hash, RecentIds};
pub use super::record::EndReason;
use super::record::RecordStatus;
use super::sink::{SinkError, SinkHandle};
use super::successors::Successors;
use crate::metrics::WorkerMetrics;
use crate::tap::{TapEvent, Terminal, TerminalKind, Usage};

/// Most pending (not yet `created`) creates tracked per session.
pub const MAX_PENDING: usize = 1024;
/// Most open responses tracked per session (upstream allows 16 in flight).
pub const MAX_OPEN: usize = 64;
/// Most lanes remembered per session (upstream allows 32 named lanes per connection).
pub const MAX_LANES: usize = 64;

mod records;

/// Counters of one session's metering (also fed to [`WorkerMetrics`] when attached).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeterStats {
    /// Records made (submitted or not).
    pub records: u64,
    /// Duplicate terminal events ignored.
    pub duplicate_terminals: u64,
    /// Pending creates ended by an `error` event.
    pub creates_failed: u64,
    /// `error` events seen.
    pub errors: u64,
    /// Creates past [`MAX_PENDING`] (or [`MAX_LANES`]), counted but not queued.
    pub untracked_creates: u64,
    /// Responses past [`MAX_OPEN`], recorded only by their terminal event.
    pub untracked_responses: u64,
    /// Pending creates never answered by `response.created` when `finish` ran.
    pub unanswered_creates: u64,
    /// Records the sink refused (`submit` errors).
    pub submit_errors: u64,
}

#[derive(Debug)]
struct Pending {
    requested_model: Option<String>,
    start: Instant,
}

#[derive(Debug)]
struct Lane {
    id: Option<String>,
    queue: VecDeque<Pending>,
    last_model: Option<String>,
}

#[derive(Debug)]
struct Open {
    response_id: String,
    lane: Option<String>,
    requested_model: Option<String>,
    model: Option<String>,
    start: Instant,
    ttft: Option<Duration>,
}

/// One session's metering state. Lives on its worker thread.
#[derive(Debug)]
pub struct SessionMeter {
    session: u64,
    tenant: Arc<str>,
    route: Arc<str>,
    upstream: Arc<str>,
    sink: SinkHandle,
    metrics: Option<Rc<WorkerMetrics>>,
    lanes: Vec<Lane>,
    pending: usize,
    /// Creates counted but not queued (bounds); consumed by unmatched `created`/`error`.
    untracked: usize,
    open: Vec<Open>,
    /// The last [`MAX_RECENT_DONE`] recorded `response.id`s, as keyed hashes.
    done: RecentIds,
    successors: Successors,
    stats: MeterStats,
}

/// Longest `response.id`, `stream_id` or `model` string the meter keeps (bytes); longer ones
/// from the upstream are cut (client creates with longer ones are refused before they get
/// here).
pub const MAX_FIELD_BYTES: usize = 256;

/// `s` cut to [`MAX_FIELD_BYTES`] at a char boundary.
fn capped(s: &str) -> String {
    let mut end = s.len().min(MAX_FIELD_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

impl SessionMeter {
    /// A meter for session `session` of `tenant` relayed to route `upstream`.
    pub fn new(session: u64, tenant: Arc<str>, upstream: Arc<str>, sink: SinkHandle) -> Self {
        SessionMeter {
            session,
            tenant,
            route: Arc::from("default"),
            upstream,
            sink,
            metrics: None,
            lanes: Vec::new(),
            pending: 0,
            untracked: 0,
            open: Vec::new(),
            done: RecentIds::default(),
            successors: Successors::default(),
            stats: MeterStats::default(),
        }
    }

    /// The route name written in each record (default `default`).
    pub fn with_route(mut self, route: Arc<str>) -> Self {
        self.route = route;
        self
    }

    /// Also counts records, tokens, duplicates and failed creates in the worker's metrics.
    pub fn with_metrics(mut self, metrics: Rc<WorkerMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// A client event: `Create` queues a pending create on its lane, `Steer` waits for its
    /// answer; others are ignored.
    pub fn on_client(&mut self, ev: &TapEvent, now: Instant) {
        let TapEvent::Create {
            model, stream_id, ..
        } = ev
        else {
            if let TapEvent::Steer = ev {
                self.successors.steer_sent();
            }
            return;
        };
        let pending = self.pending;
        let Some(lane) = self.lane_mut(stream_id.as_deref(), true) else {
            self.untracked += 1;
            self.stats.untracked_creates += 1;
            return;
        };
        lane.last_model.clone_from(model);
        if pending >= MAX_PENDING {
            self.untracked += 1;
            self.stats.untracked_creates += 1;
            return;
        }
        lane.queue.push_back(Pending {
            requested_model: model.clone(),
            start: now,
        });
        self.pending += 1;
    }

    /// An upstream event. Returns the sink's error when a record could not be submitted
    /// (the record was still counted; see [`SinkError`] for whether it was kept).
    pub fn on_upstream(&mut self, ev: &TapEvent, now: Instant) -> Result<(), SinkError> {
        match ev {
            TapEvent::Created {
                response_id,
                stream_id,
                model,
            } => {
                self.created(response_id, stream_id, model, now);
                Ok(())
            }
            TapEvent::Delta { stream_id } => {
                if let Some(o) = self
                    .open
                    .iter_mut()
                    .find(|o| o.lane == *stream_id && o.ttft.is_none())
                {
                    o.ttft = Some(now.saturating_duration_since(o.start));
                }
                Ok(())
            }
            TapEvent::Terminal(t) => self.terminal(t, now),
            TapEvent::Error { stream_id, .. } => {
                self.stats.errors += 1;
                if self.take_pending(stream_id.as_deref()).is_some() {
                    self.stats.creates_failed += 1;
                    if let Some(m) = &self.metrics {
                        m.create_failed();
                    }
                    self.compact_if_quiet();
                } else {
                    self.successors.unclaimed_error();
                }
                Ok(())
            }
            TapEvent::SteerAnswer {
                outcome,
                steer_id,
                previous_response_id,
            } => {
                self.successors.answered(
                    *outcome,
                    steer_id.as_deref(),
                    previous_response_id.as_deref(),
                );
                Ok(())
            }
            TapEvent::Create { .. } | TapEvent::Steer => Ok(()),
        }
    }

    /// `true` while some open response has seen no output yet: the relay then keeps
    /// `tap.set_track_deltas(true)`.
    pub fn wants_deltas(&self) -> bool {
        self.open.iter().any(|o| o.ttft.is_none())
    }

    /// Responses created (or pending creation) but not yet terminal.
    pub fn open_responses(&self) -> usize {
        self.open.len() + self.pending + self.untracked
    }

    /// [`Self::open_responses`] and the steering successors still to come (steers not yet
    /// answered, successors announced and not yet created): the orphan drain, and a shutdown's
    /// or the age limit's wait, end when this reaches 0.
    pub fn awaiting(&self) -> usize {
        self.open_responses() + self.successors.waiting()
    }

    /// When the oldest open response (or pending create) started; `--response-timeout`
    /// counts from here.
    pub fn oldest_start(&self) -> Option<Instant> {
        let open = self.open.iter().map(|o| o.start);
        let pending = self
            .lanes
            .iter()
            .filter_map(|l| l.queue.front().map(|p| p.start));
        open.chain(pending).min()
    }

    /// This session's counters so far.
    pub fn stats(&self) -> MeterStats {
        self.stats
    }

    /// The session ended: records every response still open with `reason` as status, zero
    /// usage and `usage_final: false`. Pending creates without a response id make no record
    /// (counted in [`MeterStats::unanswered_creates`]); sink refusals are counted in
    /// [`MeterStats::submit_errors`].
    pub fn finish(&mut self, reason: EndReason, now: Instant) {
        let open = std::mem::take(&mut self.open);
        for o in open {
            let rec = self.record(&o, reason.status(), None, None, None, now);
            self.done.remember(id_hash(&o.response_id));
            // Errors are counted in `emit`; keep recording the rest.
            let _ = self.emit(rec, &Usage::default());
        }
        self.stats.unanswered_creates += (self.pending + self.untracked) as u64;
        for lane in &mut self.lanes {
            lane.queue.clear();
        }
        self.pending = 0;
        self.untracked = 0;
        self.successors.clear();
    }

    fn created(&mut self, id: &str, lane: &Option<String>, model: &Option<String>, now: Instant) {
        let id = capped(id);
        let id = id.as_str();
        if self.open.iter().any(|o| o.response_id == id) || self.done.contains(id_hash(id)) {
            return;
        }
        let (requested_model, start) = match self.create_answered(lane.as_deref()) {
            Some(p) => (p.requested_model, p.start),
            // Steering successor (or a create past the bounds): the lane's last model.
            None => (
                self.lane_mut(lane.as_deref(), false)
                    .and_then(|l| l.last_model.clone()),
                now,
            ),
        };
        if self.open.len() >= MAX_OPEN {
            self.stats.untracked_responses += 1;
            return;
        }
        self.open.push(Open {
            response_id: capped(id),
            lane: lane.as_deref().map(capped),
            requested_model,
            model: model.as_deref().map(capped),
            start,
            ttft: None,
        });
    }

    fn terminal(&mut self, t: &Terminal, now: Instant) -> Result<(), SinkError> {
        let rid = capped(&t.response_id);
        // Hashed once (keyed SipHash: the ids come from the upstream) for the check and
        // for remembering it.
        let done = id_hash(&rid);
        let at = self.open.iter().position(|o| o.response_id == rid);
        // An open id is never among the done ones (`created` refuses those, and an id is
        // remembered as it leaves `open`), so the scan of the done ones — 1 KiB, cold by the
        // time a response ends — runs only for a terminal of a response not open.
        if at.is_none() && self.done.contains(done) {
            self.stats.duplicate_terminals += 1;
            if let Some(m) = &self.metrics {
                m.duplicate_terminal();
            }
            return Ok(());
        }
        let open = match at {
            Some(i) => self.open.remove(i),
            None => {
                // Never saw its `response.created`: still billable.
                let p = self.create_answered(t.stream_id.as_deref());
                Open {
                    response_id: rid.clone(),
                    lane: t.stream_id.as_deref().map(capped),
                    requested_model: p.as_ref().and_then(|p| p.requested_model.clone()),
                    model: None,
                    start: p.map_or(now, |p| p.start),
                    ttft: None,
                }
            }
        };
        let status = match t.event {
            TerminalKind::Completed => RecordStatus::Completed,
            TerminalKind::Incomplete => RecordStatus::Incomplete,
            TerminalKind::Failed => RecordStatus::Failed,
        };
        let mut rec = self.record(
            &open,
            status,
            t.usage.as_ref(),
            t.model.as_ref(),
            t.service_tier.as_ref(),
            now,
        );
        // Whatever the provider put in `usage`, known fields or not (checked only here, once
        // per response; a usage object the scanner accepted but serde cannot parse is kept
        // out rather than failing the record).
        rec.usage = t
            .usage_raw
            .as_deref()
            .and_then(crate::metering::record::RawUsage::from_provider);
        self.done.remember(done);
        let res = self.emit(rec, &t.usage.unwrap_or_default());
        self.compact_if_quiet();
        res
    }

    /// Nothing open or pending any more (after a terminal, or an `error` that ended the
    /// last pending create): give back the capacity the last responses grew (the open list,
    /// the lanes' queues), so a session waiting for its next turn holds only what outlives
    /// a response — its lanes' last models and the recent ids. Without it, the open list
    /// and the lane's queue kept the capacity of the first response's entries for the rest
    /// of the session; the bench's idle case, which measures sessions after a turn, shows
    /// it together with the send headers (`loadtest/src/gen/idle.rs`). Costs two
    /// allocations at the next response.
    fn compact_if_quiet(&mut self) {
        if !self.open.is_empty() || self.pending != 0 {
            return;
        }
        self.open = Vec::new();
        for lane in &mut self.lanes {
            lane.queue = VecDeque::new();
        }
        self.lanes.shrink_to_fit();
    }

    /// Capacity held by the open list and the lanes (tests: [`Self::compact_if_quiet`]).
    #[cfg(test)]
    pub(crate) fn held_capacity(&self) -> usize {
        self.open.capacity()
            + self.lanes.capacity().saturating_sub(self.lanes.len())
            + self.lanes.iter().map(|l| l.queue.capacity()).sum::<usize>()
    }

    /// The lane `id`, created if `create` (evicting an idle lane at [`MAX_LANES`]).
    fn lane_mut(&mut self, id: Option<&str>, create: bool) -> Option<&mut Lane> {
        if let Some(i) = self.lanes.iter().position(|l| l.id.as_deref() == id) {
            return self.lanes.get_mut(i);
        }
        if !create {
            return None;
        }
        if self.lanes.len() >= MAX_LANES {
            let idle = self.lanes.iter().position(|l| l.queue.is_empty())?;
            self.lanes.swap_remove(idle);
        }
        self.lanes.push(Lane {
            id: id.map(str::to_owned),
            queue: VecDeque::new(),
            last_model: None,
        });
        self.lanes.last_mut()
    }

    /// The create a response that just arrived answers: [`Self::take_pending`]; when there is
    /// neither a pending nor an untracked create, the response is a steering successor.
    fn create_answered(&mut self, lane: Option<&str>) -> Option<Pending> {
        let untracked = self.untracked;
        let p = self.take_pending(lane);
        if p.is_none() && untracked == 0 {
            self.successors.successor_arrived();
        }
        p
    }

    /// Pops the lane's oldest pending create; else consumes one untracked create (`None`).
    fn take_pending(&mut self, lane: Option<&str>) -> Option<Pending> {
        let p = self
            .lanes
            .iter_mut()
            .find(|l| l.id.as_deref() == lane)
            .and_then(|l| l.queue.pop_front());
        match p {
            Some(p) => {
                self.pending -= 1;
                Some(p)
            }
            None => {
                self.untracked = self.untracked.saturating_sub(1);
                None
            }
        }
    }
}
