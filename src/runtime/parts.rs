//! Running a session's parts in one task, polling only the part that woke.
//!
//! A session on the async adapter (`--no-ring`) is three futures in one task:
//! two pumps and the control loop. `monoio::join!` polls every unfinished branch on every
//! wake-up, so a frame arriving from upstream also polls the client pump (parked on its
//! read) and the control loop (asleep until a deadline) — 4.8% of the adapter's CPU under
//! paced load in `MaybeDone::poll` alone (`perf record`, 200 sessions × 300 deltas/s).
//! [`join3`] gives each part a waker of its own that marks the part ready before it wakes
//! the task, and polls only the marked parts (the way `FuturesUnordered` does for futures of
//! one type; the parts here have three types and are not boxed).
//!
//! With a waker per part, a slot that keeps one waker for "the session" would forget all
//! but the last part that waited on it. [`WakerSet`] is the slot that keeps each waiting
//! part: a few inline wakers, deduplicated by their data pointer (`Waker::will_wake` also
//! compares vtable pointers, which differ between codegen units, so it can fail to match a
//! waker to itself — the bug that once grew a waiter list by one waker per read).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// Most wakers a [`WakerSet`] keeps: what may wait on one condition while another part
/// holds it (of a session's three parts, two). A further one evicts the oldest, which is
/// woken (it polls again and re-registers, so nothing is lost — only a spurious poll).
const SET_SLOTS: usize = 2;

/// The wakers of the parts waiting on one condition (see the module docs). A `Cell`, not a
/// `RefCell`: it sits in every session's task, twice per leg, and the task's size is what
/// an idle session costs (a `RefCell` flag per set took a TLS session's task over an
/// allocator size class: +2 KiB per idle session, measured).
#[derive(Default)]
pub struct WakerSet {
    slots: Cell<[Option<Waker>; SET_SLOTS]>,
}

impl WakerSet {
    /// Keep `w` until the next [`WakerSet::wake_all`] / [`WakerSet::take_all`] (once, however
    /// often the same waker registers).
    pub fn register(&self, w: &Waker) {
        let mut slots = self.slots.take();
        let mut evicted = None;
        if !slots.iter().flatten().any(|x| x.data() == w.data()) {
            match slots.iter_mut().find(|s| s.is_none()) {
                Some(free) => *free = Some(w.clone()),
                None => {
                    evicted = slots[0].take();
                    slots.rotate_left(1);
                    slots[SET_SLOTS - 1] = Some(w.clone());
                }
            }
        }
        self.slots.set(slots);
        if let Some(e) = evicted {
            e.wake();
        }
    }

    /// Wake every kept waker and keep them (the condition is a level that may be waited on
    /// again).
    pub fn wake_all(&self) {
        let slots = self.slots.take();
        // Put back before waking: a waker may run code that registers again.
        let wakers = slots.clone();
        self.slots.set(slots);
        for w in wakers.iter().flatten() {
            w.wake_by_ref();
        }
    }

    /// Wake every kept waker and forget them (the condition was consumed).
    pub fn take_all(&self) {
        for w in self.slots.take().into_iter().flatten() {
            w.wake();
        }
    }

    /// Wakers kept now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        let slots = self.slots.take();
        let n = slots.iter().flatten().count();
        self.slots.set(slots);
        n
    }

    /// No waker kept.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the parts' wakers share with the join: which parts woke, and the task to wake.
struct Shared {
    ready: AtomicU8,
    task: Mutex<Option<Waker>>,
}

/// The waker of one part. `Arc` + atomics because `Wake` requires `Send + Sync`: a waker
/// may be cloned into anything; on this worker the atomics are uncontended.
struct PartWaker {
    shared: Arc<Shared>,
    bit: u8,
}

impl Wake for PartWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.ready.fetch_or(self.bit, Ordering::AcqRel);
        let task = self
            .shared
            .task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(t) = task.as_ref() {
            t.wake_by_ref();
        }
    }
}

pin_project_lite::pin_project! {
    #[project = PartProj]
    enum Part<F: Future> {
        Running { #[pin] f: F },
        Done { out: Option<F::Output> },
    }
}

impl<F: Future> Part<F> {
    /// Poll the part if it still runs; true once it is done.
    fn poll_part(mut self: Pin<&mut Self>, waker: &Waker) -> bool {
        let out = match self.as_mut().project() {
            PartProj::Running { f } => match f.poll(&mut Context::from_waker(waker)) {
                Poll::Ready(out) => out,
                Poll::Pending => return false,
            },
            PartProj::Done { .. } => return true,
        };
        self.set(Part::Done { out: Some(out) });
        true
    }

    fn take(self: Pin<&mut Self>) -> Option<F::Output> {
        match self.project() {
            PartProj::Done { out } => out.take(),
            PartProj::Running { .. } => None,
        }
    }
}

pin_project_lite::pin_project! {
    /// Three futures run to completion in one task, each polled only when its own waker
    /// fired (all three on the first poll). See the module docs.
    #[must_use = "futures do nothing unless polled"]
    pub struct Join3<A: Future, B: Future, C: Future> {
        #[pin] a: Part<A>,
        #[pin] b: Part<B>,
        #[pin] c: Part<C>,
        shared: Arc<Shared>,
        wakers: [Waker; 3],
        done: u8,
        // The data pointer of the task waker last stored in `shared` (as an address), so
        // a poll takes the lock only when the task's waker changed.
        task: usize,
    }
}

/// Run `a`, `b` and `c` in this task until all three are done (see [`Join3`]).
pub fn join3<A: Future, B: Future, C: Future>(a: A, b: B, c: C) -> Join3<A, B, C> {
    let shared = Arc::new(Shared {
        ready: AtomicU8::new(0b111),
        task: Mutex::new(None),
    });
    let waker = |bit| {
        Waker::from(Arc::new(PartWaker {
            shared: shared.clone(),
            bit,
        }))
    };
    let wakers = [waker(1), waker(2), waker(4)];
    Join3 {
        a: Part::Running { f: a },
        b: Part::Running { f: b },
        c: Part::Running { f: c },
        shared,
        wakers,
        done: 0,
        task: 0,
    }
}

impl<A: Future, B: Future, C: Future> Future for Join3<A, B, C> {
    type Output = (A::Output, B::Output, C::Output);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let task = cx.waker().data() as usize;
        if *this.task != task {
            *this
                .shared
                .task
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(cx.waker().clone());
            *this.task = task;
        }
        let ready = this.shared.ready.swap(0, Ordering::AcqRel) & !*this.done;
        if ready & 1 != 0 && this.a.as_mut().poll_part(&this.wakers[0]) {
            *this.done |= 1;
        }
        if ready & 2 != 0 && this.b.as_mut().poll_part(&this.wakers[1]) {
            *this.done |= 2;
        }
        if ready & 4 != 0 && this.c.as_mut().poll_part(&this.wakers[2]) {
            *this.done |= 4;
        }
        if *this.done != 0b111 {
            return Poll::Pending;
        }
        match (this.a.take(), this.b.take(), this.c.take()) {
            (Some(a), Some(b), Some(c)) => Poll::Ready((a, b, c)),
            // Polled again after it returned Ready: a caller bug, as for any future.
            _ => panic!("Join3 polled after completion"),
        }
    }
}

/// Run `a` and `b` in this task until both are done, each polled only when it woke.
pub async fn join2<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (a, b, ()) = join3(a, b, std::future::ready(())).await;
    (a, b)
}

#[cfg(test)]
#[path = "parts_tests.rs"]
mod tests;
