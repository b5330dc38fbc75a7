//! One session, sans-IO: both directions' walkers and taps, the meter, the decision on each
//! client message, the deadlines, and the close rules. An I/O adapter (`session`) feeds it
//! bytes and events and carries out what it answers; nothing here touches a socket or a
//! clock of its own, so every decision is testable with plain byte buffers.
//!
//! Client messages are held whole (the walker's hold mode) and decided here before their
//! first byte leaves: a `response.create` is refused — never forwarded — with an `error`
//! event on the client leg when its `stream_id` or `model` is invalid, when the usage log
//! cannot take records, or when the tenant is over its turns per minute. Anything else,
//! including events the relay does not know (`response.steer`, `response.append`, future
//! types), is forwarded byte for byte.
//!
//! The client leg's walk (messages held, charged to the budget) is in `core/client.rs`, the
//! decision on each complete client message in `core/admit.rs`, the nearest deadline in
//! `core/deadlines.rs`.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::lifecycle::{self, Actions, ClosedBy, Event, Facts, PumpEnd};
use super::walker::{WalkError, Walker};
use crate::config::FrameLimits;
use crate::flow::{Direction, Side};
use crate::limits::Tenant;
use crate::metering::{EndReason, SessionMeter, SinkHandle};
use crate::metrics::WorkerMetrics;
use crate::route::Routes;
use crate::tap::{Budget, Tap, TapEvent};
use crate::ws::frame::Role;

mod admit;
mod client;
mod deadlines;

/// How long the peer has to answer a forwarded close before both legs are shut down.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest `stream_id` (protocol: 1–256 characters of `[A-Za-z0-9_.-]`).
pub const MAX_STREAM_ID: usize = 256;
/// Longest `model` name accepted in a `response.create` (bytes).
pub const MAX_MODEL: usize = 256;

/// The session settings every session of a worker shares.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// Frame and message limits.
    pub frames: FrameLimits,
    /// `--idle-timeout` (applies while no response is open).
    pub idle_timeout: Duration,
    /// `--response-timeout`.
    pub response_timeout: Duration,
    /// `--orphan-drain-timeout`.
    pub orphan_drain_timeout: Duration,
    /// `--slow-consumer-timeout`.
    pub slow_consumer_timeout: Duration,
    /// `--max-connection-age`.
    pub max_connection_age: Option<Duration>,
    /// `--drain-timeout` (also the grace after the age limit for open responses).
    pub drain_timeout: Duration,
    /// Test hook: a create for this model panics inside the session.
    pub debug_panic_model: Option<String>,
}

/// What a session's core works with besides its own state.
pub struct CoreEnv {
    /// Where records go (and whether creates may start).
    pub sink: SinkHandle,
    /// The worker's assembly budget (held client messages, the tap's copies).
    pub budget: Rc<Budget>,
    /// The tenant's limits and counters.
    pub tenant: Option<Arc<Tenant>>,
    /// The worker's counters.
    pub metrics: Rc<WorkerMetrics>,
    /// The session's route among all routes (model prefixes, allowlists); `None` = no
    /// model rules (tests).
    pub route: Option<(Arc<Routes>, usize)>,
}

/// What the adapter does after [`SessionCore::on_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Keep `buf[skip..]` at the front of the next buffer and read more.
    Read,
    /// Call again with `buf[skip..]`: a client message was decided and more bytes follow.
    Again,
    /// The source's input ended (close frame or protocol error): report
    /// `Event::Ended(source, end)` after forwarding.
    Ended(PumpEnd),
    /// Orphan drain: the last open response just ended (report [`Event::Drained`]).
    Drained,
}

/// What to do with a walked buffer: forward `buf[..forward]` to the destination, drop
/// `buf[forward..skip]` (a refused message), then as `next` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Bytes to forward.
    pub forward: usize,
    /// Bytes done with (`>= forward`).
    pub skip: usize,
    /// Whether the forwarded bytes end on a frame boundary.
    pub boundary: bool,
    /// What next.
    pub next: Next,
}

/// Per-direction counters, folded into the worker's metrics at session end.
#[derive(Debug, Default, Clone, Copy)]
pub struct DirStats {
    /// Frames seen.
    pub frames: u64,
    /// Bytes read from the source.
    pub bytes: u64,
    /// Reads.
    pub reads: u64,
}

struct Pipe {
    walker: Walker,
    tap: Tap,
    stats: DirStats,
}

/// One session's state, sans-IO.
pub struct SessionCore {
    id: u64,
    limits: Rc<SessionLimits>,
    env: CoreEnv,
    pipes: [Pipe; 2],
    meter: SessionMeter,
    /// Relay-originated frames for the client leg (refusals), written at its next boundary.
    outbox: Vec<u8>,
    /// A rewritten client message for the upstream leg ([`SessionCore::take_rewritten`]).
    rewritten: Option<Vec<u8>>,
    /// Bytes of this session charged to the worker's budget (held client bytes).
    held_charged: usize,
    started: Instant,
    last_activity: Instant,
    closing_since: Option<Instant>,
    drain_since: Option<Instant>,
    closed_by: Option<ClosedBy>,
    end_reason: Option<EndReason>,
    close_codes: [Option<u16>; 2],
    dead: [bool; 2],
    close_received: [bool; 2],
    ended: bool,
    finished: bool,
    /// Set when a condition that waits for responses to end (shutdown, age) became true
    /// with responses open: the adapter re-evaluates deadlines once none is open.
    recheck_when_idle: bool,
    recheck: bool,
}

impl SessionCore {
    /// A session `id` of `tenant` on route `upstream`, starting at `now`.
    pub fn new(
        id: u64,
        tenant: Arc<str>,
        upstream: Arc<str>,
        limits: Rc<SessionLimits>,
        env: CoreEnv,
        now: Instant,
    ) -> SessionCore {
        let fl = limits.frames;
        let up = Pipe {
            walker: Walker::new(
                Role::Client,
                fl.max_frame_bytes,
                fl.max_message_up,
                fl.max_fragments,
            )
            .with_hold(true),
            tap: Tap::new(Direction::ClientToUpstream, fl.max_message_up as usize)
                .with_budget(env.budget.clone()),
            stats: DirStats::default(),
        };
        let down = Pipe {
            walker: Walker::new(
                Role::Server,
                fl.max_frame_bytes,
                fl.max_message_down,
                fl.max_fragments,
            ),
            tap: Tap::new(Direction::UpstreamToClient, fl.max_message_down as usize)
                .with_budget(env.budget.clone()),
            stats: DirStats::default(),
        };
        let route_name = env
            .route
            .as_ref()
            .and_then(|(r, i)| r.list.get(*i))
            .map_or_else(|| Arc::from("default"), |r| r.name.clone());
        let meter = SessionMeter::new(id, tenant, upstream, env.sink.clone())
            .with_route(route_name)
            .with_metrics(env.metrics.clone());
        SessionCore {
            id,
            limits,
            env,
            pipes: [up, down],
            meter,
            outbox: Vec::new(),
            rewritten: None,
            held_charged: 0,
            started: now,
            last_activity: now,
            closing_since: None,
            drain_since: None,
            closed_by: None,
            end_reason: None,
            close_codes: [None; 2],
            dead: [false; 2],
            close_received: [false; 2],
            ended: false,
            finished: false,
            recheck_when_idle: false,
            recheck: false,
        }
    }

    /// The session id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// `n` bytes were read from `dir`'s source.
    pub fn count_read(&mut self, dir: Direction, n: usize) {
        let s = &mut self.pipes[dir.index()].stats;
        s.bytes += n as u64;
        s.reads += 1;
    }

    /// Walk `buf` (bytes from `dir`'s source: what the last step kept, then new bytes) in
    /// place and say what to do with it.
    pub fn on_bytes(&mut self, dir: Direction, buf: &mut [u8], now: Instant) -> Step {
        self.last_activity = now;
        match dir {
            Direction::ClientToUpstream => self.client_bytes(buf, now),
            Direction::UpstreamToClient => self.upstream_bytes(buf, now),
        }
    }

    fn upstream_bytes(&mut self, buf: &mut [u8], now: Instant) -> Step {
        let (pipes, meter) = (&mut self.pipes, &mut self.meter);
        let pipe = &mut pipes[1];
        let tenant = &self.env.tenant;
        let walked = pipe.walker.walk(buf, &mut pipe.tap, &mut |ev, tap| {
            // A finished response is charged against the tenant's fleet budget (in memory).
            if let (TapEvent::Terminal(t), Some(tenant)) = (&ev, tenant) {
                if let Some(u) = &t.usage {
                    tenant.charge(u.total_tokens);
                }
            }
            // A record the sink could not take is kept by the sink (reported at shutdown).
            let _ = meter.on_upstream(&ev, now);
            // From the next frame of this read on: a `response.created` makes the first
            // delta worth reading (TTFT), and that delta makes the rest not worth it.
            tap.set_track_deltas(meter.wants_deltas());
        });
        let w = match walked {
            Ok(w) => w,
            Err(e) => return protocol_end(e, buf.len()),
        };
        pipe.stats.frames += w.frames;
        // Responses open and successors to come: the drain (and a shutdown's wait) ends at 0.
        let open = meter.awaiting();
        if open == 0 && self.recheck_when_idle {
            self.recheck = true;
        }
        if let Some(close) = w.close {
            self.close_codes[1] = close.code;
            return Step {
                forward: w.ready,
                skip: w.ready,
                boundary: true,
                next: Next::Ended(PumpEnd::PeerClose {
                    code: close.code,
                    held: false,
                }),
            };
        }
        Step {
            forward: w.ready,
            skip: w.ready,
            boundary: w.boundary,
            next: if self.drain_since.is_some() && open == 0 {
                Next::Drained
            } else {
                Next::Read
            },
        }
    }

    /// A rewritten client message waiting for the upstream leg: send it right after the
    /// bytes the last [`Step`] said to forward.
    pub fn take_rewritten(&mut self) -> Option<Vec<u8>> {
        self.rewritten.take()
    }

    /// Relay-originated frames waiting for the client leg.
    pub fn take_outbox(&mut self) -> Option<Vec<u8>> {
        (!self.outbox.is_empty()).then(|| std::mem::take(&mut self.outbox))
    }

    /// Something ended: apply the close rules, update the state, return what to do.
    /// `may_drain`: whether the worker has a free orphan-drain slot.
    pub fn on_event(&mut self, event: Event, may_drain: bool, now: Instant) -> Actions {
        let facts = Facts {
            awaiting: self.meter.awaiting(),
            closing: self.closing_since.is_some(),
            draining: self.drain_since.is_some(),
            may_drain,
            dead: self.dead,
        };
        let a = lifecycle::on_event(&facts, event);
        if self.closed_by.is_none() {
            self.closed_by = a.closed_by;
        }
        if a.end_reason.is_some() {
            self.end_reason = a.end_reason;
        }
        for side in Side::BOTH {
            let i = side.index();
            if a.kill[i] || a.send[i].is_some() {
                self.dead[i] = true;
            }
            self.close_received[i] |= a.close_received[i];
        }
        if a.start_closing && self.closing_since.is_none() {
            self.closing_since = Some(now);
        }
        if a.start_drain {
            self.drain_since = Some(now);
        }
        self.ended |= a.end;
        tracing::debug!(session = self.id, ?event, ?a, "session event");
        a
    }

    /// Whether deadlines must be looked at again now (responses just ended while a
    /// shutdown or the age limit waited for them). Clears the flag.
    pub fn take_recheck(&mut self) -> bool {
        std::mem::take(&mut self.recheck)
    }

    /// Responses created (or requested) and not yet ended.
    pub fn open_responses(&self) -> usize {
        self.meter.open_responses()
    }

    /// Whether the client left and upstream is read for usage only.
    pub fn draining(&self) -> bool {
        self.drain_since.is_some()
    }

    /// Whether the session must stop.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Whether the relay no longer writes to `side`.
    pub fn is_dead(&self, side: Side) -> bool {
        self.dead[side.index()]
    }

    /// Whether `side` sent its close (never send it one).
    pub fn close_received(&self, side: Side) -> bool {
        self.close_received[side.index()]
    }

    /// Who ended the session (set by the first event that said).
    pub fn closed_by(&self) -> Option<ClosedBy> {
        self.closed_by
    }

    /// Say who ended the session, unless an event already did.
    pub fn set_closed_by(&mut self, by: ClosedBy) {
        self.closed_by.get_or_insert(by);
    }

    /// Close codes received from (client, upstream).
    pub fn close_codes(&self) -> [Option<u16>; 2] {
        self.close_codes
    }

    /// Counters of a direction.
    pub fn stats(&self, dir: Direction) -> DirStats {
        self.pipes[dir.index()].stats
    }

    /// When the session started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Record every response still open (once): status from the event that ended the
    /// session, or from who closed it.
    pub fn finish(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.charge_held(0);
        let reason = self
            .end_reason
            .or(self.closed_by.map(ClosedBy::end_reason))
            .unwrap_or(EndReason::ClientDisconnected);
        self.meter.finish(reason, now);
    }

    /// After a contained panic: the session is cut; record what was open as `relay_error`.
    pub fn finish_after_panic(&mut self, now: Instant) {
        self.end_reason = Some(EndReason::RelayError);
        self.closed_by = Some(ClosedBy::RelayError);
        self.finish(now);
    }
}

impl Drop for SessionCore {
    fn drop(&mut self) {
        self.charge_held(0);
    }
}

fn protocol_end(e: WalkError, len: usize) -> Step {
    Step {
        forward: e.valid_upto,
        skip: len,
        boundary: !e.mid_frame,
        next: Next::Ended(PumpEnd::Protocol {
            code: e.code,
            reason: e.reason,
            mid_frame: e.mid_frame,
        }),
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
#[cfg(test)]
#[path = "core_tests_routes.rs"]
mod tests_routes;
#[cfg(test)]
#[path = "core_tests_steering.rs"]
mod tests_steering;
