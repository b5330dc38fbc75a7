//! What the runtime costs per wake-up of a worker, without the kernel's sleep and wake: one
//! completion's round trip from the ring to the code that handles it.
//!
//! - `raw`: the floor's loop (`tollgate-floor`) — queue a NOP, `submit_and_wait(1)`, reap.
//! - `monoio/ext`: the data plane's path until commit ad86ea5 — a task queues a NOP with `monoio::ext::uring_push`
//!   and waits in `monoio::ext::poll_events`; monoio parks (submit and wait), reaps the
//!   completion into the ext queue, wakes the task and polls it. With the timer driver on
//!   and a timer armed (as in a worker, whose ticker always has one), and without.
//! - `monoio/ext_handler`: the data plane's path today — the completion goes from the
//!   park straight to a handler (`monoio::ext::set_handler`), which queues the next NOP; no
//!   task is woken or polled. With a timer armed.
//!
//! The difference between `raw` and `monoio/ext_handler` is the runtime's part of the
//! relay's hop (`loadtest bench --only hop`: tunnel against floor).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use io_uring::{opcode, IoUring};

const NOP: u64 = monoio::ext::EXT_BIT | 7;

fn ring_builder() -> io_uring::Builder {
    let mut b = IoUring::builder();
    b.setup_single_issuer().setup_defer_taskrun();
    b
}

fn raw(c: &mut Criterion) {
    let Ok(mut ring) = ring_builder().build(64) else {
        eprintln!("wakeup/raw: io_uring unavailable; skipped");
        return;
    };
    c.bench_function("wakeup/raw", |b| {
        b.iter(|| {
            let nop = opcode::Nop::new().build().user_data(NOP);
            // SAFETY: a NOP names no memory.
            unsafe { ring.submission().push(&nop) }.expect("sq has room");
            ring.submit_and_wait(1).expect("submit");
            let n = ring.completion().count();
            assert_eq!(n, 1);
        })
    });
}

/// `iters` round trips through monoio's driver, timed inside a spawned task (as the data
/// plane's dispatcher is one).
async fn round_trips(iters: u64) -> Duration {
    monoio::spawn(async move {
        let mut events = Vec::with_capacity(16);
        let start = Instant::now();
        for _ in 0..iters {
            let nop = opcode::Nop::new().build().user_data(NOP);
            // SAFETY: a NOP names no memory.
            unsafe { monoio::ext::uring_push(&nop) }.expect("push");
            poll_fn(|cx| monoio::ext::poll_events(cx, &mut events)).await;
            assert_eq!(events.len(), 1);
            events.clear();
        }
        start.elapsed()
    })
    .await
}

/// A chain of `iters` NOPs, each queued by the handler that got the last one's completion.
struct Chain {
    left: Cell<u64>,
    done: RefCell<Option<Waker>>,
}

fn push_nop() {
    let nop = opcode::Nop::new().build().user_data(NOP);
    // SAFETY: a NOP names no memory.
    unsafe { monoio::ext::uring_push(&nop) }.expect("push");
}

async fn handled_round_trips(iters: u64) -> Duration {
    let chain = Rc::new(Chain {
        left: Cell::new(iters),
        done: RefCell::new(None),
    });
    let handler: monoio::ext::Handler = {
        let chain = chain.clone();
        Rc::new(move |events: &mut Vec<monoio::ext::ExtEvent>| {
            let left = chain.left.get() - events.len() as u64;
            chain.left.set(left);
            if left > 0 {
                push_nop();
            } else if let Some(w) = chain.done.borrow_mut().take() {
                w.wake();
            }
        })
    };
    assert!(monoio::ext::set_handler(Some(handler)));
    let start = Instant::now();
    push_nop();
    poll_fn(|cx| {
        if chain.left.get() == 0 {
            Poll::Ready(())
        } else {
            *chain.done.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        }
    })
    .await;
    let took = start.elapsed();
    monoio::ext::set_handler(None);
    took
}

fn through_monoio(c: &mut Criterion) {
    let timed = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .uring_builder(ring_builder())
        .build();
    let untimed = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .uring_builder(ring_builder())
        .build();
    let (Ok(mut timed), Ok(mut untimed)) = (timed, untimed) else {
        eprintln!("wakeup/monoio: io_uring unavailable; skipped");
        return;
    };
    // A worker always has a timer armed (its 200 ms ticker, session deadlines).
    timed.block_on(async {
        monoio::spawn(monoio::time::sleep(Duration::from_secs(3600)));
    });
    c.bench_function("wakeup/monoio_ext_timer_armed", |b| {
        b.iter_custom(|iters| timed.block_on(round_trips(iters)))
    });
    c.bench_function("wakeup/monoio_ext_handler_timer_armed", |b| {
        b.iter_custom(|iters| timed.block_on(handled_round_trips(iters)))
    });
    c.bench_function("wakeup/monoio_ext_no_timer", |b| {
        b.iter_custom(|iters| untimed.block_on(round_trips(iters)))
    });
}

criterion_group!(benches, raw, through_monoio);
criterion_main!(benches);
