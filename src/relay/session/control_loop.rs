//! A session's control loop (sleep until the core's nearest deadline, a poke or the end;
//! apply what passed), how the close rules' actions are carried out on the legs, the
//! slow-consumer watch, and the session's last steps.

use std::future::poll_fn;
use std::task::Poll;
use std::time::{Duration, Instant};

use monoio::io::AsyncWriteRent;

use super::{log_end, log_stall, Session};
use crate::flow::Side;
use crate::relay::control::{close_frame, outgoing_bytes};
use crate::relay::leg::{FINISH_TIMEOUT, FINISH_TIMEOUT_STOPPING};
use crate::relay::lifecycle::{Actions, Event};
use crate::runtime::timers::TimerKey;
use crate::ws::close::codes;

impl<CW: AsyncWriteRent, UW: AsyncWriteRent> Session<'_, CW, UW> {
    /// A write towards `side` is about to start: watch that leg for a stall. Watching
    /// begins once per `--slow-consumer-timeout` period of activity, so the control loop
    /// re-arms its deadline about that often — not per write.
    pub(super) fn watch_writes(&self, side: Side, now: Instant) {
        let w = &self.watch[side.index()];
        if w.get().is_none() {
            w.set(Some(now));
            let slow = self.ctx.session_limits.slow_consumer_timeout;
            if self.ctl.armed_at.get().is_none_or(|a| a > now + slow) {
                self.ctl.poke();
            }
        }
    }

    /// Per side: since when a stall could be counted (a write in flight since then, or the
    /// watch start); legs with no write in flight stop being watched after one period.
    pub(super) fn stalls(&self, now: Instant) -> [Option<Instant>; 2] {
        let slow = self.ctx.session_limits.slow_consumer_timeout;
        let in_flight = [
            self.client.in_flight_since(),
            self.upstream.in_flight_since(),
        ];
        std::array::from_fn(|i| {
            let start = self.watch[i].get()?;
            match in_flight[i] {
                Some(t) => Some(t),
                None if now >= start + slow => {
                    self.watch[i].set(None);
                    None
                }
                None => Some(start),
            }
        })
    }

    /// Apply the close rules to `event` and carry out what they say. The work (relay-
    /// originated frames, bounded waits) is boxed: it runs once or twice per session, and
    /// inlined at each call site it would make every session's future — the memory an
    /// idle session holds — several times larger.
    pub(super) async fn event(&self, event: Event) {
        let may_drain = self.drain_slot.get() || self.ctx.orphan_drain_available();
        let a = self
            .core
            .borrow_mut()
            .on_event(event, may_drain, Instant::now());
        Box::pin(self.apply(a)).await;
    }

    pub(super) async fn apply(&self, a: Actions) {
        if a.start_drain && !self.drain_slot.get() && self.ctx.try_start_orphan_drain() {
            self.drain_slot.set(true);
            tracing::debug!(
                session = self.info.id,
                "client gone; draining upstream for usage"
            );
        }
        if a.kill[0] {
            self.client.kill();
        }
        if a.kill[1] {
            self.upstream.kill();
        }
        if a.close_received[1] {
            // Upstream closed: it gets the client's answer if one comes, never our own.
            self.upstream.mark_close_sent();
        }
        for side in Side::BOTH {
            if a.stop_reading[side.index()] && !self.ctl.stop[side.index()].replace(true) {
                self.ctl.wake();
            }
        }
        if a.end {
            self.ctl.end.set(true);
            self.ctl.wake();
            // The session is over: a write still in flight (a peer not reading) would only
            // hold the end up, so it is cut.
            if self.client.in_flight_since().is_some() {
                self.client.kill();
            }
            if self.upstream.in_flight_since().is_some() {
                self.upstream.kill();
            }
        }
        // Deadlines may have changed (a drain or a close handshake started).
        self.ctl.poke();
        let limit = self.finish_limit();
        if let Some(o) = a.send[0] {
            self.client
                .finish(Some(&outgoing_bytes(o, false)), limit)
                .await;
        }
        if let Some(o) = a.send[1] {
            self.upstream
                .finish(Some(&outgoing_bytes(o, true)), limit)
                .await;
        }
    }

    /// How long a leg may take its last frames: shorter once the drain deadline passed.
    pub(super) fn finish_limit(&self) -> Duration {
        if self.ctx.shutting_down() {
            FINISH_TIMEOUT_STOPPING
        } else {
            FINISH_TIMEOUT
        }
    }

    /// Sleep until the core's nearest deadline (armed in the worker's timers), a poke or
    /// the end; apply deadlines that passed.
    pub(super) async fn control(&self) {
        let waker = poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
        let timers = &self.ctx.timers;
        let mut armed: Option<TimerKey> = None;
        while !self.ctl.end.get() {
            let now = Instant::now();
            let stalls = self.stalls(now);
            let shutdown = self.ctx.drain_deadline();
            let next = self.core.borrow_mut().next_deadline(shutdown, stalls, now);
            match next {
                Some((at, ev)) if at <= now => {
                    if let Event::Stalled(side) = ev {
                        log_stall(self.ctx, self.info, side);
                    }
                    self.event(ev).await;
                    continue;
                }
                Some((at, _)) => {
                    if armed.map(|k| k.at()) != Some(at) {
                        if let Some(k) = armed.take() {
                            timers.disarm(k);
                        }
                        tracing::trace!(
                            session = self.info.id,
                            in_ms = at.saturating_duration_since(now).as_millis() as u64,
                            "deadline armed"
                        );
                        armed = Some(timers.arm(at, &waker));
                        self.ctl.armed_at.set(Some(at));
                    }
                }
                None => {
                    if let Some(k) = armed.take() {
                        timers.disarm(k);
                    }
                    self.ctl.armed_at.set(None);
                }
            }
            poll_fn(|cx| {
                let due = armed.is_some_and(|k| Instant::now() >= k.at());
                if self.ctl.end.get() || self.ctl.poke.take() || due {
                    return Poll::Ready(());
                }
                self.ctl.register_control(cx.waker());
                Poll::Pending
            })
            .await;
        }
        if let Some(k) = armed {
            timers.disarm(k);
        }
    }

    /// Close what is still open (1001 where no close went), record open responses, log.
    pub(super) async fn finish(&self) {
        let limit = self.finish_limit();
        let (f, n) = close_frame(codes::GOING_AWAY, "", false);
        self.client.finish(Some(&f[..n]), limit).await;
        let (f, n) = close_frame(codes::GOING_AWAY, "", true);
        self.upstream.finish(Some(&f[..n]), limit).await;
        self.core.borrow_mut().finish(Instant::now());
        if self.drain_slot.get() {
            self.ctx.orphan_drain_ended();
        }
        log_end(self.ctx, self.info, &self.core.borrow());
    }
}
