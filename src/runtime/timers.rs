//! Per-worker deadlines: one ordered map of `(deadline, key) → waker` and one task that
//! sleeps until the earliest entry — instead of a timer future inside every session.
//!
//! A session arms at most one deadline at a time (its nearest: idle, response, drain, close
//! handshake, age, shutdown, or a stalled write) and re-arms only when that deadline moves
//! earlier or fires, so a busy session touches the map about once per deadline period, not
//! per frame, and an idle one costs nothing but its entry.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// An armed deadline; pass it back to [`Timers::disarm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimerKey {
    at: Instant,
    seq: u64,
}

impl TimerKey {
    /// When it fires.
    pub fn at(&self) -> Instant {
        self.at
    }
}

/// Who a deadline wakes.
enum Target {
    /// A task.
    Waker(Waker),
    /// A data-plane session (by its key), collected for [`Timers::take_due`].
    Key(u64),
}

/// The worker's deadlines.
#[derive(Default)]
pub struct Timers {
    map: RefCell<BTreeMap<TimerKey, Target>>,
    /// Keys whose deadline passed, and the task that handles them.
    due: RefCell<Vec<u64>>,
    due_waker: RefCell<Option<Waker>>,
    seq: Cell<u64>,
    /// The timer task's waker, woken when an earlier deadline than the one it sleeps
    /// towards is armed.
    task: RefCell<Option<Waker>>,
    sleeping_until: Cell<Option<Instant>>,
    stop: Cell<bool>,
}

impl Timers {
    /// Wake `waker` at `at`. Returns the key for [`Timers::disarm`].
    pub fn arm(&self, at: Instant, waker: &Waker) -> TimerKey {
        self.insert(at, Target::Waker(waker.clone()))
    }

    /// At `at`, put `key` on the due list ([`Timers::take_due`]) and wake the task that
    /// registered with [`Timers::set_due_waker`].
    pub fn arm_key(&self, at: Instant, key: u64) -> TimerKey {
        self.insert(at, Target::Key(key))
    }

    /// The task that handles keyed deadlines.
    pub fn set_due_waker(&self, waker: &Waker) {
        let mut w = self.due_waker.borrow_mut();
        match w.as_ref() {
            Some(x) if x.will_wake(waker) => {}
            _ => *w = Some(waker.clone()),
        }
    }

    /// Keys whose deadline passed since the last call.
    pub fn take_due(&self, out: &mut Vec<u64>) {
        out.append(&mut self.due.borrow_mut());
    }

    fn insert(&self, at: Instant, target: Target) -> TimerKey {
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        let key = TimerKey { at, seq };
        self.map.borrow_mut().insert(key, target);
        if self.sleeping_until.get().is_none_or(|t| at < t) {
            if let Some(w) = self.task.borrow().as_ref() {
                w.wake_by_ref();
            }
        }
        key
    }

    /// Forget an armed deadline (no-op if it already fired).
    pub fn disarm(&self, key: TimerKey) {
        self.map.borrow_mut().remove(&key);
    }

    /// Deadlines armed now.
    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    /// Whether no deadline is armed.
    pub fn is_empty(&self) -> bool {
        self.map.borrow().is_empty()
    }

    /// Make [`Timers::run`] return.
    pub fn stop(&self) {
        self.stop.set(true);
        if let Some(w) = self.task.borrow().as_ref() {
            w.wake_by_ref();
        }
    }

    /// Wake every entry due at `now`; returns the earliest remaining deadline.
    pub fn fire(&self, now: Instant) -> Option<Instant> {
        loop {
            let due = {
                let mut map = self.map.borrow_mut();
                match map.first_key_value() {
                    Some((k, _)) if k.at <= now => map.pop_first(),
                    Some((k, _)) => return Some(k.at),
                    None => return None,
                }
            };
            match due {
                Some((_, Target::Waker(w))) => w.wake(),
                Some((_, Target::Key(k))) => {
                    self.due.borrow_mut().push(k);
                    if let Some(w) = self.due_waker.borrow().as_ref() {
                        w.wake_by_ref();
                    }
                }
                None => {}
            }
        }
    }

    /// The timer task: sleep until the earliest deadline, wake what is due, repeat.
    pub async fn run(&self) {
        loop {
            if self.stop.get() {
                return;
            }
            let next = self.fire(Instant::now());
            self.sleeping_until.set(next);
            // Sleep until `next` or until an earlier deadline is armed.
            let wait = next.map(|t| t.saturating_duration_since(Instant::now()));
            let armed_earlier = poll_fn(|cx| {
                let mut t = self.task.borrow_mut();
                match t.as_ref() {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *t = Some(cx.waker().clone()),
                }
                drop(t);
                let earliest = self.map.borrow().first_key_value().map(|(k, _)| k.at);
                let earlier = match (earliest, next) {
                    (Some(e), Some(n)) => e < n,
                    (Some(_), None) => true,
                    _ => false,
                };
                if earlier || self.stop.get() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            });
            match wait {
                // `sleep(duration)`, not `sleep_until(std Instant → monoio Instant)`: with the
                // converted deadline the timer never fired here.
                Some(d) => {
                    monoio::select! {
                        _ = monoio::time::sleep(d.max(Duration::from_micros(1))) => {},
                        _ = armed_earlier => {},
                    }
                }
                None => armed_earlier.await,
            }
            self.sleeping_until.set(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[monoio::test(enable_timer = true)]
    async fn deadlines_fire_in_order_and_disarmed_ones_never() {
        let timers = Rc::new(Timers::default());
        let t = timers.clone();
        let runner = monoio::spawn(async move { t.run().await });
        let fired = Rc::new(RefCell::new(Vec::new()));
        let start = Instant::now();
        let mut handles = Vec::new();
        for (name, ms, keep) in [
            ("c", 60u64, true),
            ("a", 20, true),
            ("x", 30, true),
            ("b", 40, true),
        ] {
            let timers = timers.clone();
            let fired = fired.clone();
            handles.push(monoio::spawn(async move {
                let at = start + Duration::from_millis(ms);
                let mut key = None;
                poll_fn(|cx| {
                    if Instant::now() >= at {
                        return Poll::Ready(());
                    }
                    if key.is_none() {
                        key = Some(timers.arm(at, cx.waker()));
                    }
                    Poll::Pending
                })
                .await;
                if keep {
                    fired.borrow_mut().push(name);
                }
            }));
        }
        // Disarm "x" right away: its task is never woken, so it never records itself.
        monoio::time::sleep(Duration::from_millis(5)).await;
        {
            let x: Vec<TimerKey> = timers
                .map
                .borrow()
                .keys()
                .filter(|k| k.at == start + Duration::from_millis(30))
                .copied()
                .collect();
            assert_eq!(x.len(), 1);
            timers.disarm(x[0]);
        }
        monoio::time::sleep(Duration::from_millis(100)).await;
        drop(handles);
        assert_eq!(*fired.borrow(), ["a", "b", "c"]);
        assert!(timers.is_empty());
        timers.stop();
        runner.await;
    }

    #[test]
    fn fire_wakes_only_what_is_due() {
        let timers = Timers::default();
        let waker = Waker::noop();
        let now = Instant::now();
        timers.arm(now + Duration::from_secs(5), waker);
        timers.arm(now, waker);
        timers.arm(now - Duration::from_secs(1), waker);
        assert_eq!(timers.fire(now), Some(now + Duration::from_secs(5)));
        assert_eq!(timers.len(), 1);
    }
}
