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
//!
//! `…_cold_2MiB` and `…_cold_64MiB`: the same round trips, each after the thread has
//! written over a buffer of that size (not timed) — more than this VM's L2 (512 KiB a core)
//! and more than its L3 (32 MiB) — as after a relay's thread slept while something else ran
//! on its core. The traced hop's user time grows with the time the relay slept, and the
//! floor's does not (loadtest/BENCH-history.md "The relays' own hop across nine runs"); these say
//! how much of that the runtime's own memory is.

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

impl Chain {
    /// Until the handler has had the last completion.
    async fn finished(&self) {
        poll_fn(|cx| {
            if self.left.get() == 0 {
                Poll::Ready(())
            } else {
                *self.done.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
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
    chain.finished().await;
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

/// Write over `buf` so the caches hold it instead of what the round trip touches.
fn evict(buf: &mut [u8], round: u64) {
    let v = round as u8;
    for line in buf.chunks_mut(64) {
        line[0] = v;
    }
    std::hint::black_box(&buf[..]);
}

const COLD: [(&str, usize); 2] = [("2MiB", 2 << 20), ("64MiB", 64 << 20)];

fn raw_cold(c: &mut Criterion) {
    let Ok(mut ring) = ring_builder().build(64) else {
        eprintln!("wakeup/raw_cold: io_uring unavailable; skipped");
        return;
    };
    let mut g = c.benchmark_group("wakeup");
    g.sample_size(20);
    for (name, size) in COLD {
        let mut buf = vec![0u8; size];
        g.bench_function(format!("raw_cold_{name}"), |b| {
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                for i in 0..iters {
                    evict(&mut buf, i);
                    let start = Instant::now();
                    let nop = opcode::Nop::new().build().user_data(NOP);
                    // SAFETY: a NOP names no memory.
                    unsafe { ring.submission().push(&nop) }.expect("sq has room");
                    ring.submit_and_wait(1).expect("submit");
                    assert_eq!(ring.completion().count(), 1);
                    took += start.elapsed();
                }
                took
            })
        });
    }
    g.finish();
}

/// Like [`handled_round_trips`], each round trip after [`evict`] (not timed): the handler
/// stops the clock on entry, evicts, starts it and queues the next NOP.
async fn handled_cold_round_trips(iters: u64, buf: Rc<RefCell<Vec<u8>>>) -> Duration {
    let chain = Rc::new(Chain {
        left: Cell::new(iters),
        done: RefCell::new(None),
    });
    let timing = Rc::new(Cell::new((Instant::now(), Duration::ZERO)));
    let handler: monoio::ext::Handler = {
        let (chain, timing) = (chain.clone(), timing.clone());
        Rc::new(move |events: &mut Vec<monoio::ext::ExtEvent>| {
            let (start, took) = timing.get();
            let took = took + start.elapsed();
            let left = chain.left.get() - events.len() as u64;
            chain.left.set(left);
            if left > 0 {
                evict(&mut buf.borrow_mut(), left);
                timing.set((Instant::now(), took));
                push_nop();
            } else {
                timing.set((start, took));
                if let Some(w) = chain.done.borrow_mut().take() {
                    w.wake();
                }
            }
        })
    };
    assert!(monoio::ext::set_handler(Some(handler)));
    timing.set((Instant::now(), Duration::ZERO));
    push_nop();
    chain.finished().await;
    monoio::ext::set_handler(None);
    timing.get().1
}

fn through_monoio_cold(c: &mut Criterion) {
    let Ok(mut timed) = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .uring_builder(ring_builder())
        .build()
    else {
        eprintln!("wakeup/monoio_cold: io_uring unavailable; skipped");
        return;
    };
    timed.block_on(async {
        monoio::spawn(monoio::time::sleep(Duration::from_secs(3600)));
    });
    let Ok(mut untimed) = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .uring_builder(ring_builder())
        .build()
    else {
        eprintln!("wakeup/monoio_cold: io_uring unavailable; skipped");
        return;
    };
    let mut g = c.benchmark_group("wakeup");
    g.sample_size(20);
    for (name, size) in COLD {
        let buf = Rc::new(RefCell::new(vec![0u8; size]));
        g.bench_function(format!("monoio_ext_handler_timer_armed_cold_{name}"), |b| {
            b.iter_custom(|iters| timed.block_on(handled_cold_round_trips(iters, buf.clone())))
        });
        g.bench_function(format!("monoio_ext_handler_no_timer_cold_{name}"), |b| {
            b.iter_custom(|iters| untimed.block_on(handled_cold_round_trips(iters, buf.clone())))
        });
    }
    g.finish();
}

criterion_group!(benches, raw, through_monoio, raw_cold, through_monoio_cold);
criterion_main!(benches);
