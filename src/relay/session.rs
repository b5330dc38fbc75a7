//! A relayed session: the two pumps, the watchdog, and the close rules.
//!
//! See `LIFECYCLE.md` beside this file for who closes what with which code.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::control::{close_frame, error_event_frame, linger, LINGER};
use super::leg::Leg;
use super::pump::{pump, tunnel, BufSizer, DirState, DirStats, PumpEnd};
use super::signal::Signal;
use super::walker::Walker;
use crate::metering::session::{EndReason, SessionMeter};
use crate::runtime::WorkerCtx;
use crate::tap::{Direction, Tap, TapEvent};
use crate::ws::close::codes;
use crate::ws::frame::Role;

/// Direction of a pump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client → upstream.
    ClientToUpstream,
    /// Upstream → client.
    UpstreamToClient,
}

/// How long a close handshake may take before the relay tears the session down.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the watchdog re-checks conditions that end when responses end (an age limit
/// or a shutdown waiting for in-flight responses).
const RECHECK: Duration = Duration::from_millis(100);

/// State the two pumps and the watchdog share (one worker thread; never borrowed across
/// an await).
pub struct SessionShared {
    meter: RefCell<SessionMeter>,
    stop_c2u: Signal,
    stop_u2c: Signal,
    done: Signal,
    ended: Cell<u8>,
    last_activity: Cell<Instant>,
    /// When the client went away with responses open (orphan drain start).
    drain_since: Cell<Option<Instant>>,
    /// When a close handshake started.
    closing_since: Cell<Option<Instant>>,
    refused_create: Cell<bool>,
    sink: crate::metering::sink::SinkHandle,
    buffer_bytes: usize,
    /// Relay-originated frames for the client leg (error events), written by whichever
    /// pump gets there first at a frame boundary.
    client_inject: RefCell<Vec<u8>>,
    inject_signal: Signal,
    /// The watchdog's wake-up, raised when a deadline it sleeps towards changes.
    watchdog_wake: RefCell<Option<Rc<Signal>>>,
}

impl SessionShared {
    /// The stop signal of a direction.
    pub fn stop(&self, dir: Dir) -> &Signal {
        match dir {
            Dir::ClientToUpstream => &self.stop_c2u,
            Dir::UpstreamToClient => &self.stop_u2c,
        }
    }

    /// Wake the watchdog: a deadline it sleeps towards changed (drain or close started).
    pub fn wake_watchdog(&self) {
        if let Some(w) = self.watchdog_wake.borrow().as_ref() {
            w.raise();
        }
    }

    /// Record activity (idle timeout).
    pub fn touch(&self, now: Instant) {
        self.last_activity.set(now);
    }

    /// Whether the usage log accepts records (else new creates are refused).
    pub fn usage_log_healthy(&self) -> bool {
        self.sink.healthy()
    }

    /// The configured read-buffer size.
    pub fn buffer_bytes(&self) -> usize {
        self.buffer_bytes
    }

    /// Whether the message just walked was a `response.create` to refuse (clears the flag).
    pub fn take_refused_create(&self) -> bool {
        self.refused_create.replace(false)
    }

    /// Tell the client its create was refused: an `error` event on the client leg.
    pub async fn refuse_create(&self) {
        let frame = error_event_frame(
            "usage_log_unavailable",
            "the relay cannot record usage right now; the request was not sent upstream",
            false,
        );
        self.client_inject.borrow_mut().extend_from_slice(&frame);
        self.inject_signal.raise();
    }

    /// A tap event from a pump.
    pub fn on_tap_event(&self, dir: Dir, ev: &TapEvent, now: Instant) {
        let mut m = self.meter.borrow_mut();
        match dir {
            Dir::ClientToUpstream
                if matches!(ev, TapEvent::Create { .. }) && !self.sink.healthy() =>
            {
                tracing::error!("usage log unavailable: refusing response.create");
                self.refused_create.set(true);
            }
            Dir::ClientToUpstream => m.on_client(ev, now),
            Dir::UpstreamToClient => {
                // A refused record is not lost: the sink logs the failure, keeps the record
                // and hands it back at shutdown; new creates are refused while it is down.
                let _ = m.on_upstream(ev, now);
            }
        }
    }

    /// Whether the meter waits for a first delta (TTFT).
    pub fn meter_wants_deltas(&self) -> bool {
        self.meter.borrow().wants_deltas()
    }

    /// Responses created (or requested) and not yet ended.
    pub fn open_responses(&self) -> usize {
        self.meter.borrow().open_responses()
    }

    /// Whether a pump whose destination died should keep reading (orphan drain).
    pub fn keep_draining(&self, dir: Dir) -> bool {
        dir == Dir::UpstreamToClient
            && self.drain_since.get().is_some()
            && self.open_responses() > 0
    }
}

/// Identity of a session for logs and records.
pub struct SessionInfo {
    /// Worker-unique session id.
    pub id: u64,
    /// Tenant (never a key).
    pub tenant: std::sync::Arc<str>,
    /// Upstream label.
    pub upstream: std::sync::Arc<str>,
    /// Request path.
    pub path: String,
}

/// What ended a session, for the log line.
#[derive(Debug, Default)]
struct Outcome {
    client_close: Option<u16>,
    upstream_close: Option<u16>,
    closed_by: &'static str,
}

/// Relay frames between an upgraded client and upstream until the session ends.
#[allow(clippy::too_many_arguments)]
pub async fn run<CR, CW, UR, UW>(
    ctx: &Rc<WorkerCtx>,
    info: SessionInfo,
    mut client_rd: CR,
    client_wr: CW,
    mut up_rd: UR,
    up_wr: UW,
    client_leftover: Vec<u8>,
    upstream_leftover: Vec<u8>,
) where
    CR: AsyncReadRent,
    CW: AsyncWriteRent,
    UR: AsyncReadRent,
    UW: AsyncWriteRent,
{
    let cfg = &ctx.shared.config;
    let started = Instant::now();
    let client_leg = Leg::new(client_wr);
    let up_leg = Leg::new(up_wr);
    let mut up_stats = DirStats::default();
    let mut down_stats = DirStats::default();
    let buf_size = cfg.buffer_bytes;
    let sizer = BufSizer::new(buf_size);
    let with_cap = |v: Vec<u8>| sizer.first(v);
    let sh = SessionShared {
        meter: RefCell::new(
            SessionMeter::new(
                info.id,
                info.tenant.clone(),
                info.upstream.clone(),
                ctx.shared.sink.clone(),
            )
            .with_metrics(ctx.metrics.clone()),
        ),
        stop_c2u: Signal::default(),
        stop_u2c: Signal::default(),
        done: Signal::default(),
        ended: Cell::new(0),
        last_activity: Cell::new(started),
        drain_since: Cell::new(None),
        closing_since: Cell::new(None),
        refused_create: Cell::new(false),
        sink: ctx.shared.sink.clone(),
        buffer_bytes: buf_size,
        client_inject: RefCell::new(Vec::new()),
        inject_signal: Signal::default(),
        watchdog_wake: RefCell::new(None),
    };
    let outcome = RefCell::new(Outcome::default());
    let end_reason: Cell<Option<EndReason>> = Cell::new(None);

    if cfg.tunnel {
        let c2u = async {
            tunnel(
                &mut client_rd,
                &up_leg,
                with_cap(client_leftover),
                &sh.stop_c2u,
                &mut up_stats,
                sizer,
            )
            .await;
            sh.stop_u2c.raise();
        };
        let u2c = async {
            tunnel(
                &mut up_rd,
                &client_leg,
                with_cap(upstream_leftover),
                &sh.stop_u2c,
                &mut down_stats,
                sizer,
            )
            .await;
            sh.stop_c2u.raise();
        };
        monoio::join!(c2u, u2c);
        client_leg.finish(None).await;
        up_leg.finish(None).await;
        let _ = monoio::time::timeout(LINGER, async {
            monoio::join!(linger(&mut client_rd), linger(&mut up_rd))
        })
        .await;
        log_end(
            ctx,
            &info,
            started,
            &up_stats,
            &down_stats,
            &Outcome {
                closed_by: "tunnel",
                ..Default::default()
            },
        );
        return;
    }

    let fl = cfg.frames;
    let mut up_state = DirState {
        dir: Dir::ClientToUpstream,
        walker: Walker::new(
            Role::Client,
            fl.max_frame_bytes,
            fl.max_message_up,
            fl.max_fragments,
        ),
        tap: Tap::new(Direction::ClientToUpstream, fl.max_message_up as usize),
        stats: DirStats::default(),
        sizer,
    };
    let mut down_state = DirState {
        dir: Dir::UpstreamToClient,
        walker: Walker::new(
            Role::Server,
            fl.max_frame_bytes,
            fl.max_message_down,
            fl.max_fragments,
        ),
        tap: Tap::new(Direction::UpstreamToClient, fl.max_message_down as usize),
        stats: DirStats::default(),
        sizer,
    };

    let end_one = || {
        let n = sh.ended.get() + 1;
        sh.ended.set(n);
        if n == 2 {
            sh.done.raise();
        }
    };

    let c2u = async {
        let end = pump(
            &mut client_rd,
            &up_leg,
            with_cap(client_leftover),
            &mut up_state,
            &sh,
        )
        .await;
        tracing::debug!(session = info.id, end = ?end, "client pump ended");
        match end {
            PumpEnd::PeerClose { close, forwarded } => {
                outcome.borrow_mut().client_close = close.code;
                if outcome.borrow().closed_by.is_empty() {
                    outcome.borrow_mut().closed_by = "client";
                }
                if forwarded {
                    // Upstream answers with its close; the upstream pump forwards it.
                    sh.closing_since.set(Some(Instant::now()));
                    sh.wake_watchdog();
                } else {
                    // Responses are open: answer the client ourselves and drain upstream.
                    let code = close.code.unwrap_or(codes::NORMAL);
                    let (f, n) = close_frame(code, "", false);
                    client_leg.finish(Some(&f[..n])).await;
                    start_drain(ctx, &sh, &end_reason);
                }
            }
            PumpEnd::Eof | PumpEnd::ReadError(_) => {
                client_leg.kill();
                outcome.borrow_mut().closed_by = "client_vanished";
                start_drain(ctx, &sh, &end_reason);
            }
            PumpEnd::Protocol(e) => {
                outcome.borrow_mut().closed_by = "client_protocol_error";
                let (f, n) = close_frame(e.code, e.reason, false);
                if !e.mid_frame {
                    client_leg.finish(Some(&f[..n])).await;
                }
                client_leg.kill();
                outcome.borrow_mut().client_close = Some(e.code);
                start_drain(ctx, &sh, &end_reason);
            }
            PumpEnd::DestGone => {
                outcome.borrow_mut().closed_by = "upstream_vanished";
                end_reason.set(Some(EndReason::UpstreamDisconnected));
                sh.stop_u2c.raise();
            }
            PumpEnd::Stopped | PumpEnd::Drained => {}
        }
        end_one();
    };

    let u2c = async {
        let end = pump(
            &mut up_rd,
            &client_leg,
            with_cap(upstream_leftover),
            &mut down_state,
            &sh,
        )
        .await;
        tracing::debug!(session = info.id, end = ?end, "upstream pump ended");
        match end {
            PumpEnd::PeerClose { close, .. } => {
                outcome.borrow_mut().upstream_close = close.code;
                if outcome.borrow().closed_by.is_empty() {
                    outcome.borrow_mut().closed_by = "upstream";
                }
                if sh.open_responses() > 0 {
                    end_reason.set(Some(EndReason::UpstreamDisconnected));
                }
                up_leg.mark_close_sent(); // upstream already closed: never send it another close
                if sh.closing_since.get().is_some() || client_leg.is_dead() {
                    sh.stop_c2u.raise();
                } else {
                    sh.closing_since.set(Some(Instant::now()));
                    sh.wake_watchdog();
                }
            }
            PumpEnd::Eof | PumpEnd::ReadError(_) => {
                outcome.borrow_mut().closed_by = "upstream_vanished";
                up_leg.kill();
                end_reason.set(Some(EndReason::UpstreamDisconnected));
                let mut frames = error_event_frame(
                    "upstream_disconnected",
                    "the upstream connection ended without a close frame",
                    false,
                );
                let (f, n) = close_frame(codes::INTERNAL, "upstream disconnected", false);
                frames.extend_from_slice(&f[..n]);
                client_leg.finish(Some(&frames)).await;
                sh.stop_c2u.raise();
            }
            PumpEnd::Protocol(e) => {
                outcome.borrow_mut().closed_by = "upstream_protocol_error";
                end_reason.set(Some(EndReason::UpstreamDisconnected));
                let (f, n) = close_frame(e.code, e.reason, true);
                if !e.mid_frame {
                    up_leg.finish(Some(&f[..n])).await;
                }
                up_leg.kill();
                // A message over the limit is "too big" for the client too (Codex falls back
                // to HTTP on 1009); any other upstream violation is a bad gateway.
                let (f, n) = if e.code == codes::TOO_BIG {
                    close_frame(codes::TOO_BIG, "upstream message too big", false)
                } else {
                    close_frame(codes::BAD_GATEWAY, "upstream protocol error", false)
                };
                client_leg.finish(Some(&f[..n])).await;
                sh.stop_c2u.raise();
            }
            PumpEnd::DestGone | PumpEnd::Drained => {
                client_leg.kill();
                sh.stop_c2u.raise();
            }
            PumpEnd::Stopped => {}
        }
        end_one();
    };

    // The watchdog sleeps until the nearest deadline (idle, age, drain, close handshake)
    // instead of ticking, so an idle session costs no wake-ups; it is woken early when a
    // drain or close handshake starts and, through the worker, when shutdown begins.
    let wake = Rc::new(Signal::default());
    let _registered = ctx.register_session(info.id, wake.clone());
    *sh.watchdog_wake.borrow_mut() = Some(wake.clone());
    let watchdog = async {
        loop {
            let now = Instant::now();
            let shutting = ctx.shutting_down();
            let open = sh.open_responses();
            let mut stop_all = false;
            if let Some(t) = sh.drain_since.get() {
                if now.duration_since(t) >= cfg.orphan_drain_timeout {
                    tracing::warn!(session = info.id, open, "orphan drain timed out");
                    stop_all = true;
                }
            } else if now.duration_since(sh.last_activity.get()) >= cfg.idle_timeout {
                outcome.borrow_mut().closed_by = "idle_timeout";
                stop_all = true;
            } else if let Some(max_age) = cfg.max_connection_age {
                let age = now.duration_since(started);
                if age >= max_age && (open == 0 || age >= max_age + cfg.drain_timeout) {
                    outcome.borrow_mut().closed_by = "max_connection_age";
                    if open > 0 {
                        end_reason.set(Some(EndReason::RelayShutdown));
                    }
                    stop_all = true;
                }
            }
            if let Some(t) = sh.closing_since.get() {
                if now.duration_since(t) >= CLOSE_TIMEOUT {
                    stop_all = true;
                }
            }
            if shutting && (open == 0 || ctx.drain_deadline_passed(now)) {
                if outcome.borrow().closed_by.is_empty() {
                    outcome.borrow_mut().closed_by = "relay_shutdown";
                }
                if open > 0 {
                    end_reason.set(Some(EndReason::RelayShutdown));
                }
                stop_all = true;
            }
            if stop_all {
                sh.stop_c2u.raise();
                sh.stop_u2c.raise();
            }
            // Conditions that depend on responses ending (age limit reached, shutdown) are
            // re-checked every RECHECK; everything else has an exact deadline.
            let mut next = match sh.drain_since.get() {
                Some(t) => t + cfg.orphan_drain_timeout,
                None => sh.last_activity.get() + cfg.idle_timeout,
            };
            if let Some(max_age) = cfg.max_connection_age {
                next = next.min((started + max_age).max(now + RECHECK.min(max_age)));
            }
            if let Some(t) = sh.closing_since.get() {
                next = next.min(t + CLOSE_TIMEOUT);
            }
            if shutting || stop_all {
                next = next.min(now + RECHECK);
            }
            // `sleep(duration)`, not `sleep_until(std Instant → monoio Instant)`: with the
            // converted deadline the timer never fired here (the idle-timeout test hung).
            monoio::select! {
                _ = monoio::time::sleep(next.saturating_duration_since(Instant::now())) => {},
                _ = wake.wait() => {},
                _ = sh.done.wait() => break,
            }
            wake.reset();
        }
    };

    // Relay-originated frames for the client (refused creates) go out through the leg's
    // outbox, never splitting a forwarded frame.
    let injector = async {
        loop {
            monoio::select! {
                _ = sh.inject_signal.wait() => {},
                _ = sh.done.wait() => break,
            }
            sh.inject_signal.reset();
            let data = std::mem::take(&mut *sh.client_inject.borrow_mut());
            if !data.is_empty() {
                client_leg.inject(&data).await;
            }
        }
    };

    monoio::join!(c2u, u2c, watchdog, injector);
    if sh.drain_since.get().is_some() {
        ctx.orphan_drain_ended();
    }

    // Close whatever is still open, with 1001 (going away) unless a close already went.
    let (f, n) = close_frame(codes::GOING_AWAY, "", false);
    client_leg.finish(Some(&f[..n])).await;
    let (f, n) = close_frame(codes::GOING_AWAY, "", true);
    up_leg.finish(Some(&f[..n])).await;
    let reason = end_reason
        .get()
        .unwrap_or(match outcome.borrow().closed_by {
            "upstream" | "upstream_vanished" | "upstream_protocol_error" => {
                EndReason::UpstreamDisconnected
            }
            "relay_shutdown" => EndReason::RelayShutdown,
            _ => EndReason::ClientDisconnected,
        });
    sh.meter.borrow_mut().finish(reason, Instant::now());
    log_end(
        ctx,
        &info,
        started,
        &up_state.stats,
        &down_state.stats,
        &outcome.borrow(),
    );
    let _ = monoio::time::timeout(LINGER, async {
        monoio::join!(linger(&mut client_rd), linger(&mut up_rd))
    })
    .await;
}

/// The client is gone or done: keep reading upstream while responses are open (bounded by
/// `--orphan-drain-timeout` and `--max-orphan-drains`), otherwise stop at once.
fn start_drain(ctx: &Rc<WorkerCtx>, sh: &SessionShared, end_reason: &Cell<Option<EndReason>>) {
    if sh.open_responses() > 0 && ctx.try_start_orphan_drain() {
        tracing::debug!(
            open = sh.open_responses(),
            "client gone; draining upstream for usage"
        );
        sh.drain_since.set(Some(Instant::now()));
        end_reason.set(Some(EndReason::ClientDisconnected));
        sh.wake_watchdog();
    } else {
        sh.stop_u2c.raise();
    }
}

fn log_end(
    ctx: &Rc<WorkerCtx>,
    info: &SessionInfo,
    started: Instant,
    up: &DirStats,
    down: &DirStats,
    o: &Outcome,
) {
    ctx.metrics.session_closed(started.elapsed());
    ctx.metrics
        .frames(crate::metrics::Dir::ClientToUpstream, up.frames, up.bytes);
    ctx.metrics.frames(
        crate::metrics::Dir::UpstreamToClient,
        down.frames,
        down.bytes,
    );
    if let Some(c) = o.client_close {
        ctx.metrics.close(c, crate::metrics::Side::Client);
    }
    if let Some(c) = o.upstream_close {
        ctx.metrics.close(c, crate::metrics::Side::Upstream);
    }
    tracing::info!(
        session = info.id,
        tenant = %info.tenant,
        upstream = %info.upstream,
        path = %info.path,
        duration_ms = started.elapsed().as_millis() as u64,
        frames_up = up.frames,
        reads_up = up.reads,
        bytes_up = up.bytes,
        frames_down = down.frames,
        reads_down = down.reads,
        bytes_down = down.bytes,
        client_close = o.client_close,
        upstream_close = o.upstream_close,
        closed_by = o.closed_by,
        "session closed"
    );
}
