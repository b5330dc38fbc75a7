//! The vendored monoio's timer driver as tollgate patches it (vendor/monoio/TOLLGATE-PATCH.md):
//! the coarse clock that skips timer processing on wake-ups far from the next timer, and the
//! io_uring driver's standing absolute timeout. Timers must fire when due — never early,
//! never held up by a timeout armed for a later timer, never starved by a ring that always
//! has completions.

use std::future::poll_fn;
use std::time::{Duration, Instant};

use io_uring::opcode;

#[path = "common/monoio_rt.rs"]
mod monoio_rt;
use monoio_rt::{epoll_runtime, uring_runtime};

const NOP: u64 = monoio::ext::EXT_BIT | 11;

/// One completion through the ring: the driver parks once (with whatever timer is next).
async fn nop_round_trip() {
    let nop = opcode::Nop::new().build().user_data(NOP);
    // SAFETY: a NOP names no memory.
    unsafe { monoio::ext::uring_push(&nop) }.expect("push");
    let mut events = Vec::new();
    poll_fn(|cx| monoio::ext::poll_events(cx, &mut events)).await;
    assert_eq!(events.len(), 1);
}

async fn timed_sleep(d: Duration) -> Duration {
    let start = Instant::now();
    monoio::time::sleep(d).await;
    start.elapsed()
}

/// A timer due after `due` fired after `took`: never early, and before `limit` (`late`
/// says what a later firing would mean).
fn assert_fired(took: Duration, due: Duration, limit: Duration, late: &str) {
    assert!(took >= due, "a {due:?} timer fired early, at {took:?}");
    assert!(took < limit, "a {due:?} timer fired at {took:?}: {late}");
}

#[test]
fn an_earlier_timer_moves_the_standing_timeout_forward() {
    let Some(mut rt) = uring_runtime() else {
        return;
    };
    let took = rt.block_on(async {
        monoio::spawn(monoio::time::sleep(Duration::from_secs(3)));
        // A park while only the 3 s timer is pending leaves a kernel timeout for it in the
        // ring; the 60 ms timer must move it, or the sleep lasts ~3 s.
        nop_round_trip().await;
        nop_round_trip().await;
        timed_sleep(Duration::from_millis(60)).await
    });
    let (due, limit) = (Duration::from_millis(60), Duration::from_millis(1500));
    assert_fired(took, due, limit, "held up by the later timer");
}

#[test]
fn an_earlier_timer_is_not_held_up_by_a_later_one_on_epoll() {
    let mut rt = epoll_runtime();
    let took = rt.block_on(async {
        monoio::spawn(monoio::time::sleep(Duration::from_secs(3)));
        // After this fires, the driver's next wake-up is the 3 s timer; inserting the
        // 60 ms one must bring it forward.
        monoio::time::sleep(Duration::from_millis(1)).await;
        timed_sleep(Duration::from_millis(60)).await
    });
    let (due, limit) = (Duration::from_millis(60), Duration::from_millis(1500));
    assert_fired(took, due, limit, "held up by the later timer");
}

#[test]
fn a_timer_fires_while_completions_keep_the_ring_busy() {
    let Some(mut rt) = uring_runtime() else {
        return;
    };
    let (took, spins) = rt.block_on(async {
        let stop = std::rc::Rc::new(std::cell::Cell::new(false));
        let busy = {
            let stop = stop.clone();
            monoio::spawn(async move {
                let mut n = 0u64;
                while !stop.get() {
                    nop_round_trip().await;
                    n += 1;
                }
                n
            })
        };
        let took = timed_sleep(Duration::from_millis(40)).await;
        stop.set(true);
        (took, busy.await)
    });
    assert!(
        spins > 100,
        "the ring was not kept busy: {spins} round trips"
    );
    let (due, limit) = (Duration::from_millis(40), Duration::from_secs(2));
    assert_fired(took, due, limit, "starved by completions");
}

#[test]
fn timers_far_and_near_fire_on_time() {
    fn run<D: monoio::Driver>(rt: &mut monoio::Runtime<D>) {
        let fired = rt.block_on(async {
            let start = Instant::now();
            // Far ones are waited for with the coarse clock, near ones with the precise one.
            let handles: Vec<_> = [250u64, 5, 120, 30, 1]
                .into_iter()
                .map(|ms| {
                    monoio::spawn(async move {
                        monoio::time::sleep(Duration::from_millis(ms)).await;
                        (ms, start.elapsed())
                    })
                })
                .collect();
            let mut fired = Vec::new();
            for h in handles {
                fired.push(h.await);
            }
            fired
        });
        for (ms, at) in fired {
            let due = Duration::from_millis(ms);
            assert_fired(at, due, due + Duration::from_secs(1), "over a second late");
        }
    }
    if let Some(mut rt) = uring_runtime() {
        run(&mut rt);
    }
    run(&mut epoll_runtime());
}
