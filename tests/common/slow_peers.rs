//! The peers the slow-peer suites (tests/slow.rs, tests/backpressure.rs) share: a client
//! with the relay's key, a create on a lane, a raw session that reads nothing after the
//! 101, a pinger, and waits for records and metrics.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate::metering::{read_log, UsageRecord};
use tollgate_loadtest::client::{ClientOpts, Message, WsClient};

use super::{auth_line, client_frame, metric_at_least, upgrade_request, RELAY_KEY};

/// The relay's key; a 30 s receive timeout.
pub fn opts() -> ClientOpts {
    ClientOpts {
        headers: vec![("Authorization".into(), format!("Bearer {RELAY_KEY}"))],
        recv_timeout: Some(Duration::from_secs(30)),
        ..ClientOpts::default()
    }
}

/// A `response.create` on lane `lane` (`stream_id`).
pub fn create(lane: &str) -> String {
    format!(r#"{{"type":"response.create","model":"gpt-5","stream_id":"{lane}","input":"go"}}"#)
}

/// Wait (up to 20 s) until `path` holds at least `n` records.
pub async fn wait_records(path: &std::path::Path, n: usize) -> Vec<UsageRecord> {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let recs = read_log(path).map(|r| r.records).unwrap_or_default();
        if recs.len() >= n || Instant::now() > end {
            return recs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A raw client: TCP with the given receive buffer, upgrade, one masked create, no reads
/// after the 101.
pub async fn raw_session(
    addr: &str,
    rcvbuf: Option<usize>,
    create_json: &str,
) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(n) = rcvbuf {
        sock.set_recv_buffer_size(n as u32).unwrap();
    }
    let mut s = sock.connect(addr.parse().unwrap()).await.unwrap();
    s.write_all(upgrade_request("/v1/responses", &auth_line()).as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s.write_all(&client_frame(
        true,
        1,
        create_json.as_bytes(),
        Some([9, 8, 7, 6]),
    ))
    .await
    .unwrap();
    s
}

/// Like [`metric_at_least`] with a longer wait.
pub fn metric_at_least_for(
    admin: std::net::SocketAddr,
    sample: &str,
    at_least: f64,
    limit: Duration,
) -> f64 {
    let end = Instant::now() + limit;
    loop {
        let v = metric_at_least(admin, sample, at_least);
        if v >= at_least || Instant::now() > end {
            return v;
        }
    }
}

/// Ping `c` every 10 ms for `dur`; round trips in µs.
pub async fn ping_loop(c: &mut WsClient, dur: Duration) -> Vec<u64> {
    let end = Instant::now() + dur;
    let mut rtts = Vec::new();
    while Instant::now() < end {
        let t = Instant::now();
        c.send_frame(true, 9, b"rtt").await.unwrap();
        loop {
            match c.recv().await.unwrap() {
                Message::Pong(_) => break,
                Message::Close(code, _) => panic!("pinger closed {code:?}"),
                _ => {}
            }
        }
        rtts.push(t.elapsed().as_micros() as u64);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rtts
}
