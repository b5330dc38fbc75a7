//! The vendored monoio's ext handler (vendor/monoio/TOLLGATE-PATCH.md): with a handler set,
//! the runtime hands each batch of caller-owned completions (io_uring) or readiness events
//! (epoll) straight to it after the park or submit that reaped them — no task is woken — and
//! never parks while events wait for it. Without one, events go to `poll_events` as before.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use io_uring::opcode;
use monoio::ext::{ExtEvent, Handler, EXT_BIT};

#[path = "common/monoio_rt.rs"]
mod monoio_rt;
use monoio_rt::{epoll_runtime, uring_runtime};

const LIMIT: Duration = Duration::from_secs(10);

fn push_nop(tag: u64) {
    let nop = opcode::Nop::new().build().user_data(EXT_BIT | tag);
    // SAFETY: a NOP names no memory.
    unsafe { monoio::ext::uring_push(&nop) }.expect("push");
}

/// What a handler saw, and the task to wake once it saw `want` events.
#[derive(Default)]
struct Seen {
    events: RefCell<Vec<ExtEvent>>,
    batches: Cell<usize>,
    want: Cell<usize>,
    waiter: RefCell<Option<Waker>>,
}

impl Seen {
    fn handler(self: &Rc<Self>, then: impl Fn(&Seen) + 'static) -> Handler {
        let seen = self.clone();
        Rc::new(move |batch: &mut Vec<ExtEvent>| {
            seen.batches.set(seen.batches.get() + 1);
            seen.events.borrow_mut().extend(batch.iter().copied());
            then(&seen);
            if seen.events.borrow().len() >= seen.want.get() {
                if let Some(w) = seen.waiter.borrow_mut().take() {
                    w.wake();
                }
            }
        })
    }

    /// The tags (user data without [`EXT_BIT`]) of the events seen, in order.
    fn tags(&self) -> Vec<u64> {
        self.events
            .borrow()
            .iter()
            .map(|e| e.user_data & !EXT_BIT)
            .collect()
    }

    /// Wait until the handler saw `want` events.
    async fn wait_for(&self, want: usize) {
        self.want.set(want);
        let seen = poll_fn(|cx| {
            if self.events.borrow().len() >= want {
                Poll::Ready(())
            } else {
                *self.waiter.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        });
        monoio::time::timeout(LIMIT, seen)
            .await
            .expect("the handler saw every event");
    }
}

#[test]
fn completions_go_to_the_handler_and_wake_no_task() {
    let Some(mut rt) = uring_runtime() else {
        return;
    };
    rt.block_on(async {
        let seen = Rc::new(Seen::default());
        assert!(monoio::ext::set_handler(Some(seen.handler(|_| {}))));
        // A task waiting in poll_events is not woken while the handler is set.
        let polls = Rc::new(Cell::new(0u32));
        let waiting = {
            let polls = polls.clone();
            monoio::spawn(async move {
                let mut events = Vec::new();
                poll_fn(|cx| {
                    polls.set(polls.get() + 1);
                    monoio::ext::poll_events(cx, &mut events)
                })
                .await;
                events
            })
        };
        monoio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(polls.get(), 1);
        for tag in 1..=3 {
            push_nop(tag);
        }
        seen.wait_for(3).await;
        let tags = seen.tags();
        assert_eq!(tags, [1, 2, 3]);
        assert!(seen.events.borrow().iter().all(|e| e.result == 0));
        monoio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            polls.get(),
            1,
            "a task in poll_events was woken for handled events"
        );

        // Without the handler, events go to poll_events again.
        assert!(monoio::ext::set_handler(None));
        push_nop(4);
        let events = monoio::time::timeout(LIMIT, waiting)
            .await
            .expect("poll_events got the event");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].user_data, EXT_BIT | 4);
        assert_eq!(
            seen.events.borrow().len(),
            3,
            "the removed handler still ran"
        );
    });
}

#[test]
fn a_handler_that_queues_the_next_operation_never_stalls() {
    let Some(mut rt) = uring_runtime() else {
        return;
    };
    const CHAIN: usize = 2_000;
    rt.block_on(async {
        let seen = Rc::new(Seen::default());
        // Each completion queues the next NOP from inside the handler: the runtime must
        // submit it with its next park (and not park first with nothing in flight).
        let handler = seen.handler(|s| {
            let n = s.events.borrow().len();
            if n < CHAIN {
                push_nop(n as u64);
            }
        });
        monoio::ext::set_handler(Some(handler));
        push_nop(0);
        seen.wait_for(CHAIN).await;
        assert_eq!(seen.events.borrow().len(), CHAIN);
        let tags = seen.tags();
        let expected: Vec<u64> = (0..CHAIN as u64).collect();
        assert_eq!(tags, expected, "the chain's completions came out of order");
        monoio::ext::set_handler(None);
    });
}

#[test]
fn completions_reaped_while_tasks_keep_the_runtime_busy_reach_the_handler_at_once() {
    let Some(mut rt) = uring_runtime() else {
        return;
    };
    const SPINS: u32 = 200_000;
    rt.block_on(async {
        let seen = Rc::new(Seen::default());
        let spins = Rc::new(Cell::new(0u32));
        let at = Rc::new(Cell::new(None));
        {
            let (at, spins) = (at.clone(), spins.clone());
            monoio::ext::set_handler(Some(seen.handler(move |_| {
                if at.get().is_none() {
                    at.set(Some(spins.get()));
                }
            })));
        }
        // A task that wakes itself keeps the runtime from parking: completions are then
        // reaped by the submit of its busy path, and must go to the handler right there,
        // not wait for the park that comes once the task is done.
        let spinner = {
            let spins = spins.clone();
            monoio::spawn(async move {
                for _ in 0..SPINS {
                    spins.set(spins.get() + 1);
                    let mut yielded = false;
                    poll_fn(|cx| {
                        if yielded {
                            Poll::Ready(())
                        } else {
                            yielded = true;
                            cx.waker().wake_by_ref();
                            Poll::Pending
                        }
                    })
                    .await;
                }
            })
        };
        push_nop(9);
        seen.wait_for(1).await;
        let handled_at = at.get().expect("the handler ran");
        assert!(
            handled_at < SPINS,
            "the completion waited for the busy task to finish ({handled_at} spins)"
        );
        spinner.await;
        monoio::ext::set_handler(None);
    });
}

#[test]
fn readiness_events_go_to_the_handler_on_epoll() {
    let mut rt = epoll_runtime();
    rt.block_on(async {
        let seen = Rc::new(Seen::default());
        assert!(monoio::ext::set_handler(Some(seen.handler(|_| {}))));
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        a.set_nonblocking(true).expect("nonblocking");
        let token = EXT_BIT | 77;
        monoio::ext::legacy_register(a.as_raw_fd(), token).expect("register");
        // Writable at once; readable once the peer writes.
        seen.wait_for(1).await;
        std::io::Write::write_all(&mut &b, b"x").expect("write");
        let readable = poll_fn(|cx| {
            let ready = seen
                .events
                .borrow()
                .iter()
                .any(|e| e.result & monoio::ext::ready::READABLE != 0);
            if ready {
                Poll::Ready(())
            } else {
                seen.want.set(seen.events.borrow().len() + 1);
                *seen.waiter.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        });
        monoio::time::timeout(LIMIT, readable)
            .await
            .expect("the handler saw the socket readable");
        assert!(seen.events.borrow().iter().all(|e| e.user_data == token));
        monoio::ext::legacy_deregister(a.as_raw_fd()).expect("deregister");
        monoio::ext::set_handler(None);
    });
}

#[test]
fn no_handler_can_be_set_outside_a_runtime() {
    let handler: Handler = Rc::new(|_: &mut Vec<ExtEvent>| {});
    assert!(!monoio::ext::set_handler(Some(handler)));
}
