//! Slow and vanishing peers, slow disks, long responses: nothing waits forever, nothing is
//! lost, one core is never stalled. Both io drivers.
mod common;

use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate::metering::{read_log, RecordStatus, UsageRecord};
use tollgate_loadtest::client::{connect, ClientOpts, Message, WsClient};
use tollgate_loadtest::mock::{MockConfig, MockUpstream};

fn opts() -> ClientOpts {
    ClientOpts {
        headers: vec![("Authorization".into(), format!("Bearer {RELAY_KEY}"))],
        recv_timeout: Some(Duration::from_secs(30)),
        ..ClientOpts::default()
    }
}

fn create(lane: &str) -> String {
    format!(r#"{{"type":"response.create","model":"gpt-5","stream_id":"{lane}","input":"go"}}"#)
}

/// Wait (up to 20 s) until `path` holds at least `n` records.
async fn wait_records(path: &std::path::Path, n: usize) -> Vec<UsageRecord> {
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
async fn raw_session(
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

/// ~100 MB in one response: 10,000 deltas of ~10 KB, unpaced (the terminal event echoes
/// only the first 4 KiB of the text).
fn firehose_mock() -> MockConfig {
    MockConfig {
        deltas: 10_000,
        delta_bytes: 10_000,
        delta_burst: 16,
        echo_text_limit: Some(4096),
        ..MockConfig::default()
    }
}

/// With a plain and with a `wss://` upstream leg (on the data plane, a TLS leg's reading
/// pauses and its plaintext is drained the same way).
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_reads_is_cut_and_its_response_drained_for_usage() {
    let files = TlsFiles::generate();
    for (driver, upstream_tls) in DRIVERS.iter().flat_map(|d| [(*d, false), (*d, true)]) {
        let mock = MockUpstream::start(MockConfig {
            tls: upstream_tls.then(|| files.tls.server_config().unwrap()),
            ..firehose_mock()
        })
        .await
        .unwrap();
        let mut extra = vec![
            "--slow-consumer-timeout",
            "2s",
            "--admin-listen",
            "127.0.0.1:0",
        ];
        if upstream_tls {
            extra.extend(files.upstream_ca_args());
        }
        let label = if upstream_tls {
            format!("{driver} + wss upstream")
        } else {
            driver.to_string()
        };
        let p = RelayProcess::start(driver, &mock.url(), "", &extra);
        let admin: std::net::SocketAddr = p.admin.as_deref().unwrap().parse().unwrap();
        // Two rounds: the first warms the process up (allocator arenas, the log writer's
        // first record); the second must not grow memory with its ~100 MB.
        let mut growth = Vec::new();
        for round in 1..=2u32 {
            let sent0 = mock.frames_sent();
            let _stuck = raw_session(&p.addr, Some(4096), &create("big")).await;
            // The client never reads: the clock starts with the stream.
            while mock.frames_sent() == sent0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let t0 = Instant::now();
            let stalled = metric_at_least_for(
                admin,
                "tollgate_stalled_legs_total{side=\"client\"}",
                f64::from(round),
                Duration::from_secs(5),
            );
            let cut_after = t0.elapsed();
            let rss0 = p.rss_kib();
            assert_eq!(
                stalled,
                f64::from(round),
                "{label}: the client leg was cut\n{}",
                p.log_text()
            );
            assert!(
                cut_after < Duration::from_secs(3),
                "{label}: cut after {cut_after:?} (timeout 2 s)"
            );
            // Upstream is drained (read and discarded) to the terminal event: one exact
            // record per round.
            let n = round as usize;
            let recs = wait_records(&p.usage_log(), n).await;
            let ledger = mock.wait_for_ledger(n, Duration::from_secs(20)).await;
            assert_matches_ledger(&recs, &ledger);
            assert!(recs.iter().all(|r| r.status == RecordStatus::Completed));
            let grew = p.rss_kib().saturating_sub(rss0);
            println!("{label} round {round}: cut {cut_after:?} after the stream started; relay RSS grew {grew} KiB while ~100 MB were drained");
            growth.push(grew);
        }
        assert!(
            growth[1] < 1024,
            "{label}: relay RSS grew {} KiB",
            growth[1]
        );
    }
}

/// Like [`metric_at_least`] with a longer wait.
fn metric_at_least_for(
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

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_a_session_stuck_writing_by_the_drain_deadline() {
    let mock = MockUpstream::start(firehose_mock()).await.unwrap();
    for driver in DRIVERS {
        let mut p = RelayProcess::start(
            driver,
            &mock.url(),
            "",
            &["--slow-consumer-timeout", "60s", "--drain-timeout", "1s"],
        );
        let _stuck = raw_session(&p.addr, Some(4096), &create("big")).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t0 = Instant::now();
        p.signal(libc::SIGTERM);
        let status = p.wait_exit(Duration::from_secs(5));
        let took = t0.elapsed();
        assert!(
            status.is_some(),
            "{driver}: still running 5 s after SIGTERM"
        );
        assert!(
            took < Duration::from_secs(2),
            "{driver}: exited {took:?} after SIGTERM (drain 1 s)"
        );
        assert_eq!(status.unwrap().code(), Some(0), "{}", p.log_text());
        // The cut response is recorded, not lost.
        let recs = read_log(p.usage_log()).unwrap().records;
        assert_eq!(recs.len(), 1, "{driver}: {recs:#?}");
        assert_eq!(recs[0].status, RecordStatus::RelayShutdown);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_silent_longer_than_the_idle_timeout_completes() {
    // Two deltas 2.5 s apart: the session is silent for longer than --idle-timeout.
    let mock = MockUpstream::start(MockConfig {
        deltas: 2,
        token_rate: Some(0.4),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let drivers: Vec<_> = DRIVERS.to_vec();
    let runs = drivers.iter().map(|driver| {
        let mock = &mock;
        async move {
            let relay = start_relay(
                driver,
                &mock.url(),
                &["--idle-timeout", "1s", "--usage-log", "{usage_log}"],
            );
            let mut c = connect(&format!("ws://{}/v1/responses", relay.addr), opts())
                .await
                .unwrap();
            let events = c.turn(&create("think")).await.expect("the whole turn");
            let last = events.last().unwrap();
            assert_eq!(last["type"], "response.completed", "{driver}");
            let (_, recs) = relay.stop_and_read(Duration::from_secs(1));
            assert_eq!(recs.len(), 1);
            assert_eq!(recs[0].status, RecordStatus::Completed, "{driver}");
        }
    });
    futures_join_all(runs).await;
}

async fn futures_join_all<F: std::future::Future<Output = ()>>(fs: impl Iterator<Item = F>) {
    let handles: Vec<_> = fs.collect();
    for h in handles {
        h.await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_past_the_response_timeout_is_cut_and_recorded() {
    let mock = MockUpstream::start(MockConfig {
        deltas: 50,
        token_rate: Some(5.0),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    for driver in DRIVERS {
        let relay = start_relay(
            driver,
            &mock.url(),
            &["--response-timeout", "1s", "--usage-log", "{usage_log}"],
        );
        let mut c = connect(&format!("ws://{}/v1/responses", relay.addr), opts())
            .await
            .unwrap();
        c.send_text(&create("long")).await.unwrap();
        let t0 = Instant::now();
        let (code, texts) = recv_until_close(&mut c).await;
        assert_eq!(code, Some(1001), "{driver}");
        // The mock's response lasts 10 s; cut by the 1 s timeout (margin for a loaded CI).
        assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
        assert!(
            texts.iter().any(|t| t.contains("\"response_timeout\"")),
            "{driver}: {texts:?}"
        );
        let (_, recs) = relay.stop_and_read(Duration::from_secs(1));
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].status, RecordStatus::ResponseTimeout, "{driver}");
    }
}

/// Ping `c` every 10 ms for `dur`; round trips in µs.
async fn ping_loop(c: &mut WsClient, dur: Duration) -> Vec<u64> {
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

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_usage_log_never_stalls_the_worker_and_loses_nothing() {
    let mock = MockUpstream::start(MockConfig {
        deltas: 1,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    for driver in DRIVERS {
        let before = mock.ledger().len();
        let relay = start_relay(
            driver,
            &mock.url(),
            &[
                "--usage-log",
                "{usage_log}",
                "--debug-usage-fsync-delay",
                "500ms",
                "--usage-queue-capacity",
                "64",
            ],
        );
        let url = format!("ws://{}/v1/responses", relay.addr);
        let mut pinger = connect(&url, opts()).await.unwrap();
        let pings =
            tokio::spawn(async move { ping_loop(&mut pinger, Duration::from_secs(3)).await });
        // 2,000 creates over 8 sessions, as fast as answers come.
        let mut workers = Vec::new();
        for w in 0..8 {
            let url = url.clone();
            workers.push(tokio::spawn(async move {
                let mut c = connect(&url, opts()).await.unwrap();
                let (mut done, mut refused) = (0, 0);
                for i in 0..250 {
                    c.send_text(&create(&format!("w{w}"))).await.unwrap();
                    loop {
                        match c.recv().await.unwrap() {
                            Message::Text(t) if t.contains("\"response.completed\"") => {
                                done += 1;
                                break;
                            }
                            Message::Text(t) if t.contains("\"usage_log_unavailable\"") => {
                                refused += 1;
                                break;
                            }
                            Message::Close(code, r) => panic!("closed {code:?} {r} at {i}"),
                            _ => {}
                        }
                    }
                }
                (done, refused)
            }));
        }
        let (mut done, mut refused) = (0, 0);
        for w in workers {
            let (d, r) = w.await.unwrap();
            done += d;
            refused += r;
        }
        let mut rtts = pings.await.unwrap();
        rtts.sort_unstable();
        let p99 = rtts[rtts.len() * 99 / 100];
        println!(
            "{driver}: {done} responses, {refused} creates refused while the log was behind; \
             pings from a session on the same worker: {} samples, p50 {} µs, p99 {p99} µs",
            rtts.len(),
            rtts[rtts.len() / 2]
        );
        assert_eq!(done + refused, 2000);
        assert!(
            refused > 0,
            "{driver}: the queue never filled (no backpressure seen)"
        );
        assert!(
            p99 < 200_000,
            "{driver}: a worker stalled: ping p99 {p99} µs"
        );
        let (clean, recs) = relay.stop_and_read(Duration::from_secs(2));
        assert!(clean, "{driver}: usage log closed cleanly");
        let ledger = mock.ledger();
        assert_eq!(
            ledger.len() - before,
            done,
            "every forwarded create got its response"
        );
        assert_matches_ledger(&recs, &ledger[before..]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn log_rotation_with_sighup_mid_traffic_loses_and_doubles_nothing() {
    let mock = MockUpstream::start(MockConfig {
        deltas: 2,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    for driver in DRIVERS {
        let before = mock.ledger().len();
        let mut p = RelayProcess::start(driver, &mock.url(), "", &["--usage-fsync-ms", "2"]);
        let url = p.url();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut sessions = Vec::new();
        for w in 0..4 {
            let (url, stop) = (url.clone(), stop.clone());
            sessions.push(tokio::spawn(async move {
                let mut c = connect(&url, opts()).await.unwrap();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    c.turn(&create(&format!("r{w}"))).await.expect("turn");
                    n += 1;
                }
                n
            }));
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        let rotated = p.dir.path().join("usage.jsonl.1");
        std::fs::rename(p.usage_log(), &rotated).unwrap();
        p.signal(libc::SIGHUP);
        tokio::time::sleep(Duration::from_millis(400)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut turns = 0;
        for s in sessions {
            turns += s.await.unwrap();
        }
        p.signal(libc::SIGTERM);
        assert_eq!(
            p.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
            Some(0)
        );
        let old = read_log(&rotated).unwrap().records;
        let new = read_log(p.usage_log()).unwrap().records;
        assert!(
            !old.is_empty() && !new.is_empty(),
            "{driver}: {} + {}",
            old.len(),
            new.len()
        );
        let mut all = old;
        all.extend(new);
        let ledger = mock.ledger();
        assert_eq!(ledger.len() - before, turns);
        assert_matches_ledger(&all, &ledger[before..]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_client_resets_mid_stream_give_a_hundred_exact_records() {
    let mock = MockUpstream::start(MockConfig {
        deltas: 8,
        token_rate: Some(100.0),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    for driver in DRIVERS {
        let before = mock.ledger().len();
        let relay = start_relay(driver, &mock.url(), &["--usage-log", "{usage_log}"]);
        let addr = relay.addr.to_string();
        let mut batch = Vec::new();
        for i in 0..100 {
            let addr = addr.clone();
            batch.push(tokio::spawn(async move {
                let mut s = raw_session(&addr, None, &create(&format!("x{i}"))).await;
                // Read until the first delta is through, then reset the connection.
                let mut seen = Vec::new();
                let mut b = [0u8; 4096];
                while !String::from_utf8_lossy(&seen).contains("output_text.delta") {
                    let n = s.read(&mut b).await.unwrap();
                    assert!(n > 0, "closed before the first delta");
                    seen.extend_from_slice(&b[..n]);
                }
                // Zero linger: close sends a RST (and does not block).
                socket2::SockRef::from(&s)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                drop(s); // RST
            }));
            if batch.len() == 20 {
                for h in batch.drain(..) {
                    h.await.unwrap();
                }
            }
        }
        for h in batch {
            h.await.unwrap();
        }
        let ledger = mock
            .wait_for_ledger(before + 100, Duration::from_secs(20))
            .await;
        let recs = wait_records(&relay.usage_log, 100).await;
        assert_matches_ledger(&recs, &ledger[before..]);
        assert!(
            recs.iter().all(|r| r.usage_final),
            "{driver}: drained for real usage"
        );
    }
}

/// A 6 s response of 6,000 deltas of ~2 KB, 2 MB/s: past the ~3 MB the sockets buffer
/// within two seconds when the client reads nothing (the terminal event echoes only the
/// first 4 KiB of the text).
async fn streamed_mock() -> MockUpstream {
    MockUpstream::start(MockConfig {
        deltas: 6_000,
        delta_bytes: 2_000,
        token_rate: Some(1000.0),
        echo_text_limit: Some(4096),
        ..MockConfig::default()
    })
    .await
    .unwrap()
}

/// Clients that stop reading while their responses stream deltas — one ring buffer each,
/// once their socket buffers are full — must not take the worker's receive ring from the
/// other sessions: a session on the same worker keeps its round trips while the stuck ones
/// wait for their slow-consumer timeout (long here), the relay copies what they queue out
/// of the ring instead, and each stuck session's response is still recorded exactly.
#[tokio::test(flavor = "multi_thread")]
async fn stuck_clients_of_streamed_deltas_never_starve_the_other_sessions_of_ring_buffers() {
    const STUCK: usize = 4;
    let mock = streamed_mock().await;
    for driver in DRIVERS {
        let before = mock.ledger().len();
        // A small ring (the default is 512), so the test is quick: 4 stuck legs of 16
        // buffers each would hold all 64.
        let p = RelayProcess::start(
            driver,
            &mock.url(),
            "",
            &[
                "--ring-buffers",
                "64",
                "--slow-consumer-timeout",
                "60s",
                "--admin-listen",
                "127.0.0.1:0",
            ],
        );
        let admin: std::net::SocketAddr = p.admin.as_deref().unwrap().parse().unwrap();
        let url = format!("ws://{}/v1/responses", p.addr);
        let mut pinger = connect(&url, opts()).await.unwrap();
        let sent0 = mock.frames_sent();
        let ring = driver != "epoll-async";
        // 2 MB/s each, one delta per read: past the ~3 MB a socket buffers, then past
        // the 16 ring buffers a leg may hold and on to the 256 KiB high-water mark.
        let mut stuck = vec![raw_session(&p.addr, Some(4096), &create("stuck0")).await];
        while mock.frames_sent() < sent0 + 2_500 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if ring {
            // One stuck leg holds its share of the ring, not all it could take before the
            // ring ran low (48 of 64).
            let copied = metric_at_least(admin, "tollgate_ring_copied_bytes_total", 1.0);
            assert!(
                copied > 0.0,
                "{driver}: the stuck leg never reached its share"
            );
            std::thread::sleep(Duration::from_millis(500));
            let held = metric_at_least(admin, "tollgate_ring_buffers_held", 0.0);
            assert!(
                (8.0..=20.0).contains(&held),
                "{driver}: one stuck leg holds {held} ring buffers"
            );
        }
        for i in 1..STUCK {
            stuck.push(raw_session(&p.addr, Some(4096), &create(&format!("stuck{i}"))).await);
        }
        while mock.frames_sent() < sent0 + 2_500 * STUCK as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut rtts = Vec::new();
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            let t = Instant::now();
            let round = tokio::time::timeout(Duration::from_secs(2), async {
                pinger.send_frame(true, 9, b"rtt").await.unwrap();
                loop {
                    match pinger.recv().await.unwrap() {
                        Message::Pong(_) => break,
                        Message::Close(code, _) => panic!("{driver}: pinger closed {code:?}"),
                        _ => {}
                    }
                }
            })
            .await;
            assert!(
                round.is_ok(),
                "{driver}: a session on the same worker got no pong within 2 s beside \
                 {STUCK} stuck clients"
            );
            rtts.push(t.elapsed().as_micros() as u64);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        rtts.sort_unstable();
        let p99 = rtts[rtts.len() * 99 / 100];
        let copied = metric_at_least_for(
            admin,
            "tollgate_ring_copied_bytes_total",
            1.0,
            Duration::from_secs(1),
        );
        println!(
            "{driver}: pings beside {STUCK} stuck clients: {} samples, p50 {} µs, p99 {p99} µs; \
             {copied} bytes copied out of the ring",
            rtts.len(),
            rtts[rtts.len() / 2]
        );
        assert!(p99 < 200_000, "{driver}: ping p99 {p99} µs");
        if ring {
            let held = metric_at_least(admin, "tollgate_ring_buffers_held", 0.0);
            println!("{driver}: {held} ring buffers held beside {STUCK} stuck legs");
            assert!(held <= 52.0, "{driver}: {held} of 64 ring buffers held");
        }
        // The stuck clients leave: their responses are drained and recorded once, exactly.
        drop(stuck);
        drop(pinger);
        let n = STUCK;
        let ledger = mock
            .wait_for_ledger(before + n, Duration::from_secs(30))
            .await;
        let recs = wait_records(&p.usage_log(), n).await;
        assert_matches_ledger(&recs, &ledger[before..]);
    }
}

/// A client that falls behind and then catches up gets every byte intact when part of its
/// queue was copied out of the ring: every event in order (consecutive sequence numbers),
/// and the deltas add up to the `response.output_text.done` text.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_falls_behind_gets_every_byte_of_its_copied_queue_in_order() {
    let mock = MockUpstream::start(MockConfig {
        deltas: 3_000,
        delta_bytes: 2_000,
        token_rate: Some(1000.0),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    for driver in DRIVERS {
        let p = RelayProcess::start(
            driver,
            &mock.url(),
            "",
            &["--ring-buffers", "64", "--admin-listen", "127.0.0.1:0"],
        );
        let admin: std::net::SocketAddr = p.admin.as_deref().unwrap().parse().unwrap();
        let url = format!("ws://{}/v1/responses", p.addr);
        let mut c = connect(&url, opts()).await.unwrap();
        c.send_text(&create("behind")).await.unwrap();
        // Not reading for 2.5 s at 2 MB/s: the socket buffers fill, then the relay's queue.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        let (mut deltas, mut done, mut last_seq) = (String::new(), None, None::<u64>);
        while done.is_none() {
            let Message::Text(t) = c.recv().await.unwrap() else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(&t)
                .unwrap_or_else(|e| panic!("{driver}: an event that is not JSON ({e})"));
            let seq = v["sequence_number"].as_u64().unwrap();
            if let Some(prev) = last_seq {
                assert_eq!(seq, prev + 1, "{driver}: events out of order or lost");
            }
            last_seq = Some(seq);
            match v["type"].as_str().unwrap() {
                "response.output_text.delta" => deltas.push_str(v["delta"].as_str().unwrap()),
                "response.output_text.done" => done = Some(v["text"].as_str().unwrap().to_string()),
                _ => {}
            }
        }
        let copied = metric_at_least(admin, "tollgate_ring_copied_bytes_total", 1.0);
        println!(
            "{driver}: {} bytes of deltas intact; {copied} bytes copied out of the ring",
            deltas.len()
        );
        assert_eq!(
            Some(deltas),
            done,
            "{driver}: the deltas add up to the text"
        );
        if driver != "epoll-async" {
            assert!(copied > 0.0, "{driver}: the queue was never copied");
        }
    }
}

/// A client that streams a response, stops reading, and floods creates the relay refuses
/// (an invalid `stream_id`): each refusal is an `error` event queued towards that client
/// behind its deltas, written by the relay in answer to the client's own bytes. The relay
/// must stop reading such a client once that queue is full — its socket, not the relay's
/// memory, holds the rest — keep serving the other sessions on the worker, and, once the
/// client reads again, deliver its response and answer every create it sent: none lost,
/// none doubled.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_flooding_refused_creates_without_reading_is_paused_and_loses_no_answer() {
    let mock = streamed_mock().await;
    let refused = create("bad lane!");
    let frame = client_frame(true, 1, refused.as_bytes(), Some([1, 2, 3, 4]));
    let batch = frame.repeat(512);
    for driver in DRIVERS {
        let p = RelayProcess::start(driver, &mock.url(), "", &["--slow-consumer-timeout", "60s"]);
        let url = format!("ws://{}/v1/responses", p.addr);
        let mut pinger = connect(&url, opts()).await.unwrap();
        let rss0 = p.rss_kib();
        // A response streams at 2 MB/s into a client that reads nothing: once ~5 MB went,
        // the sockets are full and the relay's write towards the client is stuck.
        let sent0 = mock.frames_sent();
        let s = raw_session(&p.addr, Some(4096), &create("stream")).await;
        while mock.frames_sent() < sent0 + 2_500 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (mut sent, mut last_progress) = (0usize, Instant::now());
        let start = Instant::now();
        // Until the relay has read nothing for 1.5 s (or 20 s pass: the test fails below).
        while last_progress.elapsed() < Duration::from_millis(1_500)
            && start.elapsed() < Duration::from_secs(20)
        {
            match tokio::time::timeout(Duration::from_millis(50), s.writable()).await {
                Ok(Ok(())) => match s.try_write(&batch[sent % batch.len()..]) {
                    Ok(n) => {
                        sent += n;
                        last_progress = Instant::now();
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{driver}: the flood's write failed: {e}"),
                },
                Ok(Err(e)) => panic!("{driver}: {e}"),
                Err(_) => {}
            }
        }
        let grown_mib = p.rss_kib().saturating_sub(rss0) as f64 / 1024.0;
        println!(
            "{driver}: the relay stopped reading after {:.1} MB of refused creates \
             ({:.1} s); its RSS grew {grown_mib:.1} MiB",
            sent as f64 / 1e6,
            (last_progress - start).as_secs_f64()
        );
        assert!(
            last_progress.elapsed() >= Duration::from_millis(1_500),
            "{driver}: the relay kept reading a client that reads nothing for 20 s \
             ({} MB)",
            sent / 1_000_000
        );
        assert!(
            grown_mib < 48.0,
            "{driver}: the relay's RSS grew {grown_mib:.1} MiB for one flooding client"
        );
        // The worker still serves the other session at once.
        let rtts = ping_loop(&mut pinger, Duration::from_millis(500)).await;
        assert!(!rtts.is_empty(), "{driver}: no round trip beside the flood");
        // The client reads again: its whole response, and one `error` event per complete
        // create it sent (a frame cut by the last write stays unsent, unanswered).
        let creates = sent / frame.len();
        let mut s = s.into_std().unwrap();
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let (mut errors, mut completed) = (0usize, false);
        while errors < creates || !completed {
            let Some(f) = read_frame(&mut s) else {
                panic!(
                    "{driver}: the relay closed after {errors} of {creates} answers \
                     (response completed: {completed})"
                );
            };
            assert_eq!(f.opcode, 1, "{driver}: a frame that is not text: {f:?}");
            let v: serde_json::Value = serde_json::from_slice(&f.payload).unwrap();
            match v["type"].as_str().unwrap() {
                "error" => errors += 1,
                "response.completed" => completed = true,
                _ => {}
            }
        }
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let extra = read_frame(&mut s);
        assert!(
            extra.is_none(),
            "{driver}: more frames than answers and the response: {extra:?}"
        );
        println!("{driver}: {creates} refused creates, {errors} answers, the response whole");
    }
}
