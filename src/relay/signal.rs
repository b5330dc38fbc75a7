//! A single-threaded, level-triggered signal: set once, every waiter wakes.
//!
//! The two pumps and the watchdog of a session run on one worker thread, so this needs no
//! atomics: a `Cell` flag and the wakers of the tasks waiting on it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A flag that, once raised, stays raised and wakes its waiters.
#[derive(Default)]
pub struct Signal {
    raised: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Signal {
    /// Raise the signal and wake every waiter.
    pub fn raise(&self) {
        if !self.raised.replace(true) {
            for w in self.waiters.borrow_mut().drain(..) {
                w.wake();
            }
        }
    }

    /// Lower the signal again (for a signal used as a repeatable notification by a
    /// single waiter that resets it after each wake-up).
    pub fn reset(&self) {
        self.raised.set(false);
    }

    /// Whether the signal has been raised.
    pub fn is_raised(&self) -> bool {
        self.raised.get()
    }

    /// Resolve once the signal is raised.
    pub fn wait(&self) -> Wait<'_> {
        Wait { signal: self }
    }
}

/// Future returned by [`Signal::wait`].
pub struct Wait<'a> {
    signal: &'a Signal,
}

impl Future for Wait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.raised.get() {
            return Poll::Ready(());
        }
        let mut w = self.signal.waiters.borrow_mut();
        if !w.iter().any(|x| x.will_wake(cx.waker())) {
            w.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[monoio::test(enable_timer = true)]
    async fn raise_wakes_a_waiter() {
        let s = std::rc::Rc::new(Signal::default());
        let s2 = s.clone();
        let h = monoio::spawn(async move {
            s2.wait().await;
            7
        });
        monoio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert!(!s.is_raised());
        s.raise();
        assert_eq!(h.await, 7);
        // Raised stays raised.
        s.wait().await;
    }
}
