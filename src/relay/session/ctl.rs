//! The flags the three parts of a session share ([`Ctl`]: stop per side, end, poke, the
//! control loop's armed deadline, and the wakers waiting on them), and what the worker keeps
//! of a live session ([`SessionHandle`]).

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

use crate::flow::Side;
use crate::relay::core::SessionCore;
use crate::runtime::parts::WakerSet;

/// The flags the parts of a session share. Each part runs under a waker of its own
/// ([`join3`](crate::runtime::parts::join3)): the control loop's is kept for pokes, the pumps waiting for a stop are kept
/// in a set.
#[derive(Default)]
pub struct Ctl {
    control: RefCell<Option<Waker>>,
    stop_waiters: WakerSet,
    pub(super) stop: [Cell<bool>; 2],
    pub(super) end: Cell<bool>,
    pub(super) poke: Cell<bool>,
    pub(super) armed_at: Cell<Option<Instant>>,
}

impl Ctl {
    pub(super) fn register(&self, w: &Waker) {
        self.stop_waiters.register(w);
    }

    pub(super) fn register_control(&self, w: &Waker) {
        let mut slot = self.control.borrow_mut();
        if slot.as_ref().is_none_or(|x| x.data() != w.data()) {
            *slot = Some(w.clone());
        }
    }

    /// A stop flag (or the end) changed: wake every part.
    pub(super) fn wake(&self) {
        self.stop_waiters.wake_all();
        self.wake_control();
    }

    pub(super) fn wake_control(&self) {
        if let Some(w) = self.control.borrow().as_ref() {
            w.wake_by_ref();
        }
    }

    /// Make the control loop look at its deadlines again.
    pub fn poke(&self) {
        self.poke.set(true);
        self.wake_control();
    }

    pub(super) fn stopped(&self, side: Side) -> bool {
        self.stop[side.index()].get() || self.end.get()
    }

    /// Resolves once reading `side` must stop.
    pub(super) fn until_stopped(&self, side: Side) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| {
            if self.stopped(side) {
                Poll::Ready(())
            } else {
                self.register(cx.waker());
                Poll::Pending
            }
        })
    }
}

/// What the worker keeps of a live session: a way to poke it (shutdown began) and, should
/// its task never finish, to record its open responses at exit.
pub struct SessionHandle {
    pub(super) core: Rc<RefCell<SessionCore>>,
    pub(super) ctl: Rc<Ctl>,
}

impl SessionHandle {
    /// Wake the session's control loop (e.g. shutdown began).
    pub fn poke(&self) {
        self.ctl.poke();
    }

    /// Record the session's open responses now (idempotent): used when the worker exits
    /// while the session is still there.
    pub fn finish_records(&self, now: Instant) {
        if let Ok(mut c) = self.core.try_borrow_mut() {
            c.finish(now);
        }
    }
}
