//! Turn-based workloads: `stream` / `firehose` sessions (many turns per
//! connection) and `churn` (one turn per connection).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::WsConn;
use super::run::{LocalRef, Shared};
use super::stats::Metric;
use super::wire::op;
use super::GenError;

const DELTA: &[u8] = br#"{"type":"response.output_text.delta""#;
const TERMINALS: [&[u8]; 3] = [
    br#"{"type":"response.completed""#,
    br#"{"type":"response.incomplete""#,
    br#"{"type":"response.failed""#,
];
const ERROR: &[u8] = br#"{"type":"error""#;
/// Bound on one whole turn.
const TURN_TIMEOUT: Duration = Duration::from_secs(60);
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A `response.create` of about `bytes` bytes.
pub(crate) fn create_json(bytes: usize, session: usize) -> String {
    let mut s = format!(
        r#"{{"type":"response.create","model":"gpt-5-mini","store":false,"metadata":{{"session":"{session}"}},"input":""#
    );
    const FILL: &str = "Summarise the relay benchmark in one line. ";
    while s.len() + 2 < bytes {
        let room = bytes - 2 - s.len();
        s.push_str(FILL.get(..room.min(FILL.len())).unwrap_or(FILL));
    }
    s.push_str("\"}");
    s
}

pub(crate) fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

/// Sends one create and reads to its terminal event, recording latencies from
/// `scheduled`.
pub(crate) async fn turn(
    conn: &mut WsConn,
    create: &[u8],
    scheduled: Instant,
    l: &LocalRef,
) -> Result<(), GenError> {
    conn.writer.queue(op::TEXT, create);
    conn.writer.flush().await?;
    {
        let mut l = l.borrow_mut();
        l.frames(1, 0);
        l.counts.bytes_sent += create.len() as u64;
    }
    let mut last_delta: Option<Instant> = None;
    loop {
        let h = conn.reader.next_frame().await?;
        let now = Instant::now();
        match h.opcode {
            op::TEXT | op::BINARY | op::CONT => {
                let p = conn.reader.payload(&h);
                let mut l = l.borrow_mut();
                l.frames(0, 1);
                l.counts.bytes_received += h.payload_len as u64;
                if p.starts_with(DELTA) {
                    match last_delta {
                        None => l.hists.record(Metric::FirstDelta, ns(now - scheduled)),
                        Some(t) => l.hists.record(Metric::InterDelta, ns(now - t)),
                    }
                    last_delta = Some(now);
                } else if TERMINALS.iter().any(|t| p.starts_with(t)) {
                    l.hists
                        .record(Metric::Turn, ns(now.saturating_duration_since(scheduled)));
                    return Ok(());
                } else if p.starts_with(ERROR) {
                    return Err(GenError::ErrorEvent);
                }
            }
            op::PING => {
                let p = conn.reader.payload(&h).to_vec();
                conn.writer.queue(op::PONG, &p);
                conn.writer.flush().await?;
            }
            op::CLOSE => return Err(GenError::Closed),
            _ => {}
        }
    }
}

/// Sends close 1000 and waits (bounded) for the server's close or EOF.
pub(crate) async fn close_gracefully(conn: &mut WsConn) {
    if conn.writer.close().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Ok(h) = conn.reader.next_frame().await {
            if h.opcode == op::CLOSE {
                break;
            }
        }
    })
    .await;
}

fn source(sh: &Shared, idx: usize) -> Option<std::net::IpAddr> {
    let a = &sh.cfg.source_addrs;
    a.get(idx % a.len().max(1)).copied()
}

/// Connects session `idx`, recording the connect latency.
pub(crate) async fn connect(sh: &Shared, idx: usize, l: &LocalRef) -> Option<WsConn> {
    let t0 = Instant::now();
    let key = sh.cfg.key.as_deref();
    match WsConn::connect(&sh.target, key, source(sh, idx), sh.cfg.connect_timeout).await {
        Ok(c) => {
            let mut l = l.borrow_mut();
            l.hists.record(Metric::Connect, ns(t0.elapsed()));
            l.counts.sessions += 1;
            sh.connected.fetch_add(1, Ordering::Relaxed);
            Some(c)
        }
        Err(e) => {
            l.borrow_mut().error(&e);
            sh.connect_failed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

async fn session(sh: Arc<Shared>, idx: usize, l: LocalRef) {
    let Some(mut conn) = connect(&sh, idx, &l).await else {
        return;
    };
    let sessions = sh.cfg.sessions as f64;
    let interval = sh.cfg.rate.map(|r| Duration::from_secs_f64(sessions / r));
    // Spread the sessions' schedules evenly over one interval.
    let start =
        Instant::now() + interval.map_or(Duration::ZERO, |iv| iv.mul_f64(idx as f64 / sessions));
    let create = create_json(sh.cfg.create_bytes, idx);
    let mut k = 0u32;
    loop {
        if sh.cfg.turns.is_some_and(|t| u64::from(k) >= t) {
            break;
        }
        let scheduled = match interval {
            Some(iv) => start + iv * k,
            None => Instant::now(),
        };
        if scheduled >= sh.deadline {
            break;
        }
        tokio::time::sleep_until(scheduled.into()).await;
        match tokio::time::timeout(
            TURN_TIMEOUT,
            turn(&mut conn, create.as_bytes(), scheduled, &l),
        )
        .await
        {
            Ok(Ok(())) => {
                l.borrow_mut().counts.completed += 1;
                sh.progress.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) => return l.borrow_mut().error(&e),
            Err(_) => return l.borrow_mut().error(&GenError::Timeout),
        }
        k += 1;
    }
    close_gracefully(&mut conn).await;
}

fn my_sessions(sh: &Shared, index: usize) -> impl Iterator<Item = usize> {
    (index..sh.cfg.sessions).step_by(sh.cfg.threads.max(1))
}

/// Runs this thread's `stream`/`firehose` sessions to the end.
pub(crate) async fn run_thread(sh: Arc<Shared>, index: usize, l: LocalRef) -> Result<(), GenError> {
    let tasks: Vec<_> = my_sessions(&sh, index)
        .map(|i| tokio::task::spawn_local(session(sh.clone(), i, l.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

async fn churn_worker(sh: Arc<Shared>, idx: usize, l: LocalRef) {
    let create = create_json(sh.cfg.create_bytes, idx);
    let mut k = 0u64;
    while Instant::now() < sh.deadline && sh.cfg.turns.is_none_or(|t| k < t) {
        k += 1;
        let t0 = Instant::now();
        let Some(mut conn) = connect(&sh, idx, &l).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        match tokio::time::timeout(TURN_TIMEOUT, turn(&mut conn, create.as_bytes(), t0, &l)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                l.borrow_mut().error(&e);
                continue;
            }
            Err(_) => {
                l.borrow_mut().error(&GenError::Timeout);
                continue;
            }
        }
        close_gracefully(&mut conn).await;
        let mut lb = l.borrow_mut();
        lb.hists.record(Metric::Churn, ns(t0.elapsed()));
        lb.counts.completed += 1;
        sh.progress.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs this thread's churn workers (one per session slot) to the end.
pub(crate) async fn churn_thread(
    sh: Arc<Shared>,
    index: usize,
    l: LocalRef,
) -> Result<(), GenError> {
    let tasks: Vec<_> = my_sessions(&sh, index)
        .map(|i| tokio::task::spawn_local(churn_worker(sh.clone(), i, l.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_have_the_requested_size_and_are_json() {
        for n in [200usize, 1500, 2000] {
            let c = create_json(n, 7);
            assert!(c.len().abs_diff(n) <= 2, "{} vs {n}", c.len());
            let v: serde_json::Value = serde_json::from_str(&c).unwrap();
            assert_eq!(v["type"], "response.create");
        }
    }
}
