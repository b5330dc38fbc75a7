//! The idle workload: open every session (bounded concurrency, spread over the
//! source addresses), let the orchestrator sample the SUT's memory, then ping
//! from each session every `ping_interval` until the phase ends.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::conn::WsConn;
use super::run::{LocalRef, Shared};
use super::stats::Metric;
use super::stream::{close_gracefully, connect};
use super::wire::{self, op};
use super::{procfs, GenError};

/// Connects in flight per generator thread.
const CONNECT_CONCURRENCY: usize = 64;
/// Longest the orchestrator waits for every session to open.
const OPEN_BUDGET: Duration = Duration::from_secs(180);
/// Pause between the last session opening and the memory sample.
const SETTLE: Duration = Duration::from_millis(1000);

/// Blocks until every session is open or failed, lets the SUT settle, and returns
/// its summed RSS in KiB.
pub(crate) fn await_sessions(sh: &Shared, pids: &[u32]) -> u64 {
    let end = Instant::now() + OPEN_BUDGET;
    let want = sh.cfg.sessions as u64;
    while Instant::now() < end
        && sh.connected.load(Ordering::Relaxed) + sh.connect_failed.load(Ordering::Relaxed) < want
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(SETTLE);
    procfs::rss_kib_sum(pids)
}

async fn pinger(sh: Arc<Shared>, mut conn: WsConn, l: LocalRef) {
    let mut rx = sh.idle_until.clone();
    let until = loop {
        if let Some(t) = *rx.borrow_and_update() {
            break t;
        }
        if rx.changed().await.is_err() {
            return;
        }
    };
    let iv = sh.cfg.ping_interval.max(Duration::from_millis(1));
    let mut next = Instant::now() + iv.mul_f64(fastrand::f64());
    let mut outstanding = 0u32;
    loop {
        if next >= until && outstanding == 0 {
            break;
        }
        let wait = if next < until {
            next
        } else {
            until + Duration::from_secs(2)
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wait.into()) => {
                if next >= until {
                    l.borrow_mut().error(&GenError::Timeout);
                    break;
                }
                conn.writer.queue(op::PING, &wire::stamp(sh.ns(next)));
                if let Err(e) = conn.writer.flush().await {
                    return l.borrow_mut().error(&e);
                }
                outstanding += 1;
                next += iv;
            }
            r = conn.reader.next_frame() => match r {
                Ok(h) if h.opcode == op::PONG => {
                    let now = sh.ns(Instant::now());
                    if let Some(s) = wire::read_stamp(conn.reader.payload(&h)) {
                        let mut lb = l.borrow_mut();
                        lb.hists.record(Metric::Ping, now.saturating_sub(s));
                        lb.counts.completed += 1;
                    }
                    outstanding = outstanding.saturating_sub(1);
                }
                Ok(h) if h.opcode == op::CLOSE => return l.borrow_mut().error(&GenError::Closed),
                Ok(_) => {}
                Err(e) => return l.borrow_mut().error(&e),
            }
        }
    }
    close_gracefully(&mut conn).await;
}

/// Runs this thread's idle sessions.
pub(crate) async fn run_thread(sh: Arc<Shared>, index: usize, l: LocalRef) -> Result<(), GenError> {
    let gate = Rc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let tasks: Vec<_> = (index..sh.cfg.sessions)
        .step_by(sh.cfg.threads.max(1))
        .map(|i| {
            let (sh, l, gate) = (sh.clone(), l.clone(), gate.clone());
            tokio::task::spawn_local(async move {
                let permit = gate.acquire().await;
                let conn = connect(&sh, i, &l).await;
                drop(permit);
                if let Some(c) = conn {
                    pinger(sh, c, l).await;
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
