use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use super::{join2, join3, WakerSet};

/// A waker that counts its wake-ups.
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counter() -> (Arc<Counter>, Waker) {
    let c = Arc::new(Counter(AtomicUsize::new(0)));
    (c.clone(), Waker::from(c))
}

/// A part that counts its polls, keeps the waker it was last polled with, and finishes
/// with `out` once `finish` is set.
struct Probe {
    polls: Cell<usize>,
    waker: RefCell<Option<Waker>>,
    finish: Cell<bool>,
    wake_self: Cell<bool>,
}

impl Probe {
    fn new() -> Rc<Probe> {
        Rc::new(Probe {
            polls: Cell::new(0),
            waker: RefCell::new(None),
            finish: Cell::new(false),
            wake_self: Cell::new(false),
        })
    }

    fn run(self: &Rc<Self>, out: u32) -> impl Future<Output = u32> {
        let p = self.clone();
        poll_fn(move |cx| {
            p.polls.set(p.polls.get() + 1);
            *p.waker.borrow_mut() = Some(cx.waker().clone());
            if p.wake_self.replace(false) {
                cx.waker().wake_by_ref();
            }
            if p.finish.get() {
                Poll::Ready(out)
            } else {
                Poll::Pending
            }
        })
    }

    fn wake(&self) {
        if let Some(w) = self.waker.borrow().as_ref() {
            w.wake_by_ref();
        }
    }
}

fn polls(p: &[&Rc<Probe>; 3]) -> [usize; 3] {
    p.map(|p| p.polls.get())
}

#[test]
fn only_the_part_that_woke_is_polled() {
    let (a, b, c) = (Probe::new(), Probe::new(), Probe::new());
    let (task, waker) = counter();
    let mut cx = Context::from_waker(&waker);
    let mut j = pin!(join3(a.run(1), b.run(2), c.run(3)));
    assert!(j.as_mut().poll(&mut cx).is_pending());
    assert_eq!(
        polls(&[&a, &b, &c]),
        [1, 1, 1],
        "every part runs once at the start"
    );
    // Spurious wake-ups of the task poll nothing.
    assert!(j.as_mut().poll(&mut cx).is_pending());
    assert_eq!(polls(&[&a, &b, &c]), [1, 1, 1]);
    // The middle part's own waker: the task is woken and only that part is polled.
    b.wake();
    assert_eq!(task.0.load(Ordering::SeqCst), 1);
    assert!(j.as_mut().poll(&mut cx).is_pending());
    assert_eq!(polls(&[&a, &b, &c]), [1, 2, 1]);
    // Each part got a waker of its own, distinct from the task's and from each other's.
    let data = |p: &Rc<Probe>| p.waker.borrow().as_ref().map(|w| w.data());
    assert_ne!(data(&a), data(&b));
    assert_ne!(data(&b), data(&c));
    assert_ne!(data(&a), Some(waker.data()));
    c.wake();
    a.wake();
    assert!(j.as_mut().poll(&mut cx).is_pending());
    assert_eq!(polls(&[&a, &b, &c]), [2, 2, 2]);
}

#[test]
fn finishes_with_every_output_once_all_parts_are_done() {
    let (a, b, c) = (Probe::new(), Probe::new(), Probe::new());
    let (_task, waker) = counter();
    let mut cx = Context::from_waker(&waker);
    let mut j = pin!(join3(a.run(1), b.run(2), c.run(3)));
    c.finish.set(true);
    assert!(j.as_mut().poll(&mut cx).is_pending());
    a.finish.set(true);
    a.wake();
    // A finished part is never polled again, even if its old waker fires.
    c.wake();
    assert!(j.as_mut().poll(&mut cx).is_pending());
    assert_eq!(polls(&[&a, &b, &c]), [2, 1, 1]);
    b.finish.set(true);
    b.wake();
    assert_eq!(j.as_mut().poll(&mut cx), Poll::Ready((1, 2, 3)));
    assert_eq!(polls(&[&a, &b, &c]), [2, 2, 1]);
}

#[test]
fn a_part_that_wakes_itself_while_polled_runs_again() {
    let (a, b, c) = (Probe::new(), Probe::new(), Probe::new());
    let (task, waker) = counter();
    let mut cx = Context::from_waker(&waker);
    let mut j = pin!(join3(a.run(1), b.run(2), c.run(3)));
    a.wake_self.set(true);
    assert!(j.as_mut().poll(&mut cx).is_pending());
    assert_eq!(
        task.0.load(Ordering::SeqCst),
        1,
        "the task is scheduled again"
    );
    assert!(j.as_mut().poll(&mut cx).is_pending());
    assert_eq!(polls(&[&a, &b, &c]), [2, 1, 1]);
}

#[test]
fn join2_runs_both_to_completion() {
    let (a, b) = (Probe::new(), Probe::new());
    let (_task, waker) = counter();
    let mut cx = Context::from_waker(&waker);
    let mut j = pin!(join2(a.run(7), b.run(8)));
    assert!(j.as_mut().poll(&mut cx).is_pending());
    b.finish.set(true);
    b.wake();
    assert!(j.as_mut().poll(&mut cx).is_pending());
    a.finish.set(true);
    a.wake();
    assert_eq!(j.as_mut().poll(&mut cx), Poll::Ready((7, 8)));
}

#[test]
fn waker_set_keeps_each_waiter_once() {
    let set = WakerSet::default();
    let (x, wx) = counter();
    let (y, wy) = counter();
    set.register(&wx);
    set.register(&wx.clone());
    assert_eq!(set.len(), 1, "the same waker twice is kept once");
    set.register(&wy);
    assert_eq!(set.len(), 2, "a second waiter does not replace the first");
    set.wake_all();
    set.wake_all();
    assert_eq!(x.0.load(Ordering::SeqCst), 2);
    assert_eq!(y.0.load(Ordering::SeqCst), 2);
    assert_eq!(set.len(), 2, "wake_all keeps the waiters");
    set.take_all();
    assert!(set.is_empty());
    assert_eq!(x.0.load(Ordering::SeqCst), 3);
    set.take_all();
    assert_eq!(x.0.load(Ordering::SeqCst), 3, "nothing left to wake");
}

#[test]
fn a_full_waker_set_wakes_the_waiter_it_evicts() {
    let set = WakerSet::default();
    let ws: Vec<_> = (0..super::SET_SLOTS + 1).map(|_| counter()).collect();
    for (_, w) in &ws {
        set.register(w);
    }
    assert_eq!(set.len(), super::SET_SLOTS);
    assert_eq!(
        ws[0].0 .0.load(Ordering::SeqCst),
        1,
        "the oldest is woken to re-register"
    );
    assert!(ws[1..].iter().all(|(c, _)| c.0.load(Ordering::SeqCst) == 0));
    set.take_all();
    assert!(ws[1..].iter().all(|(c, _)| c.0.load(Ordering::SeqCst) == 1));
    assert_eq!(ws[0].0 .0.load(Ordering::SeqCst), 1);
}
