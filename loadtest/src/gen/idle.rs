//! The idle workload: open every session (bounded concurrency, spread over the
//! source addresses) and complete `idle_turns` turns on it, let the orchestrator sample the
//! SUT's memory, then ping from each session every `ping_interval` until the phase ends.
//!
//! Why turns first: a session a relay holds in production is one between turns, and what
//! a turn leaves behind is part of its cost. Measured (`loadtest bench --full --only idle
//! --reps 2`, 2026-11-30): tollgate before commit "idle sessions give back what their turns
//! grew" held 4.44–4.77 KiB per session at 4,000 and 9,000 sessions after one turn each
//! (send headers and metering state kept from that turn; HAProxy 4.52–4.60), where the
//! bench of fresh sessions had measured 2.1 (bfull15) — it did not see that cost. The
//! warm-up before the memory sample keeps one-time growth out of the per-session figure:
//! the first records through a usage log grow the relay by a few MB once (its writer
//! thread's heap), and the high-water mark of the turns in flight is reached then too.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::conn::WsConn;
use super::run::{LocalRef, Shared};
use super::stats::Metric;
use super::stream::{close_gracefully, connect, create_json, turn};
use super::wire::{self, op};
use super::{procfs, GenError};

/// Connects in flight per generator thread.
const CONNECT_CONCURRENCY: usize = 64;
/// Longest the orchestrator waits for every session to open.
const OPEN_BUDGET: Duration = Duration::from_secs(180);
/// Pause between the last session opening and the memory sample.
const SETTLE: Duration = Duration::from_millis(1000);
/// Bound on one turn before a session idles.
const TURN_TIMEOUT: Duration = Duration::from_secs(30);

/// Blocks until every session is idling (its turns done) or failed, lets the SUT settle,
/// and returns its summed RSS in KiB.
pub(crate) fn await_sessions(sh: &Shared, pids: &[u32]) -> u64 {
    let end = Instant::now() + OPEN_BUDGET;
    let want = sh.cfg.sessions as u64;
    while Instant::now() < end && sh.settled.load(Ordering::Relaxed) < want {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(SETTLE);
    procfs::rss_kib_sum(pids)
}

/// As many sessions as the run opens at once (`CONNECT_CONCURRENCY` per generator thread,
/// at most `sessions`), each completing `idle_turns` turns and closing, then a pause: run
/// before the SUT's memory is sampled, so that what the SUT grows once — for the first
/// records through a usage log, or to the high-water mark of that many turns in flight —
/// is in the baseline, not in the sessions' share. Nothing it does is counted in the run.
pub(crate) fn warm_up(sh: &Arc<Shared>) -> Result<(), GenError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(GenError::Runtime)?;
    let n = (CONNECT_CONCURRENCY * sh.cfg.threads.max(1)).min(sh.cfg.sessions);
    let l: LocalRef = Default::default();
    let set = tokio::task::LocalSet::new();
    let results = set.block_on(&rt, async {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let (sh, l) = (sh.clone(), l.clone());
                tokio::task::spawn_local(async move {
                    let mut conn = WsConn::connect(
                        &sh.target,
                        sh.cfg.key.as_deref(),
                        None,
                        sh.cfg.connect_timeout,
                    )
                    .await?;
                    settle_turns(&sh, &mut conn, usize::MAX - i, &l).await?;
                    close_gracefully(&mut conn).await;
                    Ok::<(), GenError>(())
                })
            })
            .collect();
        let mut results = Vec::with_capacity(n);
        for t in tasks {
            results.push(match t.await {
                Ok(r) => r,
                // A panic in the generator is a bug: let it surface as one.
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            });
        }
        results
    });
    results
        .into_iter()
        .collect::<Result<Vec<()>, _>>()
        .map_err(|e| GenError::WarmUp(Box::new(e)))?;
    std::thread::sleep(SETTLE);
    Ok(())
}

/// Completes the session's `idle_turns` turns (their frames are counted, not as
/// completions: the idle run completes pings).
async fn settle_turns(
    sh: &Shared,
    conn: &mut WsConn,
    idx: usize,
    l: &LocalRef,
) -> Result<(), GenError> {
    let create = create_json(sh.cfg.create_bytes, idx);
    for _ in 0..sh.cfg.idle_turns {
        tokio::time::timeout(
            TURN_TIMEOUT,
            turn(conn, create.as_bytes(), Instant::now(), l),
        )
        .await
        .map_err(|_| GenError::Timeout)??;
    }
    Ok(())
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
                let mut conn = connect(&sh, i, &l).await;
                if let Some(c) = conn.as_mut() {
                    if let Err(e) = settle_turns(&sh, c, i, &l).await {
                        l.borrow_mut().error(&e);
                        conn = None;
                    }
                }
                drop(permit);
                sh.settled.fetch_add(1, Ordering::Relaxed);
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
