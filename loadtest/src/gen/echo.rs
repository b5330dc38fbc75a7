//! The echo workload: frames carrying their scheduled send time go through an
//! echoing upstream. Open loop (`--rate`): a `timerfd`-driven scheduler releases
//! frames round-robin over the connections; latency = receive − scheduled.
//! Closed loop: each connection keeps `window` frames outstanding (bulk).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::{WsReader, WsWriter};
use super::run::{LocalRef, Shared};
use super::stats::Metric;
use super::stream::{close_gracefully, connect};
use super::timer::PreciseTimer;
use super::wire::{self, op};
use super::GenError;

const PREFIX: &[u8] = br#"{"type":"bench.echo","t":""#;

/// An echo payload of `bytes` bytes whose stamp sits right after [`PREFIX`].
fn template(bytes: usize) -> Vec<u8> {
    let mut v = PREFIX.to_vec();
    v.extend_from_slice(&wire::stamp(0));
    v.extend_from_slice(br#"","pad":""#);
    while v.len() + 2 < bytes {
        v.push(b'x');
    }
    v.extend_from_slice(b"\"}");
    v
}

fn set_stamp(t: &mut [u8], ns: u64) {
    if let Some(dst) = t.get_mut(PREFIX.len()..PREFIX.len() + wire::STAMP_DIGITS) {
        dst.copy_from_slice(&wire::stamp(ns));
    }
}

fn ns_between(a: Instant, b: Instant) -> u64 {
    b.saturating_duration_since(a).as_nanos() as u64
}

fn read_stamp(p: &[u8]) -> Option<u64> {
    wire::read_stamp(p.get(PREFIX.len()..)?)
}

/// Handles one received frame: `Some(latency_ns)` for an echoed data frame.
fn on_frame(sh: &Shared, reader: &WsReader, h: &wire::FrameHead, l: &LocalRef) -> Option<u64> {
    if !matches!(h.opcode, op::TEXT | op::BINARY) {
        return None;
    }
    let now = sh.ns(Instant::now());
    let mut lb = l.borrow_mut();
    lb.frames(0, 1);
    lb.counts.bytes_received += h.payload_len as u64;
    let lat = now.saturating_sub(read_stamp(reader.payload(h))?);
    lb.hists.record(Metric::Echo, lat);
    lb.counts.completed += 1;
    Some(lat)
}

/// Runs this thread's echo connections.
pub(crate) async fn run_thread(sh: Arc<Shared>, index: usize, l: LocalRef) -> Result<(), GenError> {
    let mut conns = Vec::new();
    for i in (index..sh.cfg.sessions).step_by(sh.cfg.threads.max(1)) {
        if let Some(c) = connect(&sh, i, &l).await {
            conns.push(c);
        }
    }
    match sh.cfg.rate {
        Some(rate) => {
            let threads = sh.cfg.threads.min(sh.cfg.sessions).max(1) as f64;
            let (readers, writers) = conns.into_iter().map(|c| (c.reader, c.writer)).unzip();
            open_loop(&sh, rate / threads, readers, writers, &l).await
        }
        None => {
            let tasks: Vec<_> = conns
                .into_iter()
                .map(|mut c| {
                    let (sh, l) = (sh.clone(), l.clone());
                    tokio::task::spawn_local(async move {
                        if let Err(e) = closed_loop(&sh, &mut c.reader, &mut c.writer, &l).await {
                            l.borrow_mut().error(&e);
                        }
                        close_gracefully(&mut c).await;
                    })
                })
                .collect();
            for t in tasks {
                let _ = t.await;
            }
            Ok(())
        }
    }
}

async fn open_loop(
    sh: &Arc<Shared>,
    rate: f64,
    readers: Vec<WsReader>,
    mut writers: Vec<WsWriter>,
    l: &LocalRef,
) -> Result<(), GenError> {
    if writers.is_empty() {
        return Ok(());
    }
    let received = Rc::new(Cell::new(0u64));
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|mut r| {
            let (received, l, sh) = (received.clone(), l.clone(), sh.clone());
            tokio::task::spawn_local(async move {
                while let Ok(h) = r.next_frame().await {
                    if matches!(h.opcode, op::TEXT | op::BINARY) {
                        on_frame(&sh, &r, &h, &l);
                        received.set(received.get() + 1);
                    }
                }
            })
        })
        .collect();
    let mut timer = PreciseTimer::new().map_err(GenError::Runtime)?;
    let mut payload = template(sh.cfg.frame_bytes);
    let period_ns = (1e9 / rate).max(1.0) as u64;
    let t0 = Instant::now() + Duration::from_millis(10);
    let n = writers.len() as u64;
    let mut k = 0u64;
    let mut sent = 0u64;
    loop {
        let due = t0 + Duration::from_nanos(period_ns * k);
        if due >= sh.deadline {
            break;
        }
        timer.sleep_until(due).await.map_err(GenError::Runtime)?;
        let now = Instant::now();
        let mut batch = 0u64;
        loop {
            let due = t0 + Duration::from_nanos(period_ns * k);
            if due > now || due >= sh.deadline {
                break;
            }
            set_stamp(&mut payload, sh.ns(due));
            if let Some(w) = writers.get_mut((k % n) as usize) {
                w.queue(op::TEXT, &payload);
            }
            k += 1;
            batch += 1;
        }
        for w in writers.iter_mut().filter(|w| w.pending() > 0) {
            w.flush().await?;
        }
        sent += batch;
        {
            let mut lb = l.borrow_mut();
            lb.frames(batch, 0);
            lb.counts.bytes_sent += batch * payload.len() as u64;
        }
        sh.progress.fetch_add(batch, Ordering::Relaxed);
    }
    {
        let mut lb = l.borrow_mut();
        lb.counts.in_window += received.get();
        lb.counts.window_ns = lb.counts.window_ns.max(ns_between(t0, sh.deadline));
    }
    let drain_end = Instant::now() + sh.cfg.drain_timeout;
    while received.get() < sent && Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if received.get() < sent {
        let mut lb = l.borrow_mut();
        lb.counts.errors += sent - received.get();
        lb.errors
            .push(format!("{} echoes not received", sent - received.get()));
    }
    for t in &tasks {
        t.abort();
    }
    for w in writers.iter_mut() {
        let _ = w.close().await;
    }
    Ok(())
}

async fn closed_loop(
    sh: &Shared,
    reader: &mut WsReader,
    writer: &mut WsWriter,
    l: &LocalRef,
) -> Result<(), GenError> {
    let mut payload = template(sh.cfg.frame_bytes);
    let mut send = |w: &mut WsWriter, n: usize| {
        set_stamp(&mut payload, sh.ns(Instant::now()));
        for _ in 0..n {
            w.queue(op::TEXT, &payload);
        }
        let mut lb = l.borrow_mut();
        lb.frames(n as u64, 0);
        lb.counts.bytes_sent += (n * payload.len()) as u64;
    };
    let window = sh.cfg.window.max(1);
    send(writer, window);
    writer.flush().await?;
    let mut outstanding = window;
    while outstanding > 0 {
        let h = reader.next_frame().await?;
        if h.opcode == op::CLOSE {
            return Err(GenError::Closed);
        }
        if on_frame(sh, reader, &h, l).is_none() {
            continue;
        }
        outstanding -= 1;
        sh.progress.fetch_add(1, Ordering::Relaxed);
        if Instant::now() < sh.deadline {
            send(writer, 1);
            writer.flush().await?;
            outstanding += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_json_of_the_requested_size_and_carries_the_stamp() {
        let mut t = template(200);
        assert_eq!(t.len(), 200);
        set_stamp(&mut t, 42_000_123);
        let v: serde_json::Value = serde_json::from_slice(&t).unwrap();
        assert_eq!(v["t"], "0000000042000123");
        assert_eq!(read_stamp(&t), Some(42_000_123));
        assert!(template(10).len() >= PREFIX.len() + wire::STAMP_DIGITS);
    }
}
