//! Clients that stop reading while the relay has something to send them — streamed deltas,
//! answers to their own refused creates — must not take the worker's receive ring or the
//! relay's memory from the other sessions, and must get every byte once they read again.
//! The data plane's ring and backpressure limits (`src/dataplane/conn.rs`: the ring pieces
//! one leg may hold, the ring's low water, `paused_own`) and the async path's
//! (`Leg::inject`). All three drivers.
mod common;

use common::slow_peers::*;
use common::*;
use std::time::{Duration, Instant};
use tollgate_loadtest::client::{connect, Message};
use tollgate_loadtest::mock::{MockConfig, MockUpstream};

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
