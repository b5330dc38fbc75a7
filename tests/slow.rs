//! Slow and vanishing peers, slow disks, long responses: nothing waits forever, nothing is
//! lost, one core is never stalled. All three drivers.
mod common;

use common::slow_peers::*;
use common::*;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tollgate::metering::{read_log, RecordStatus};
use tollgate_loadtest::client::{connect, Message};
use tollgate_loadtest::mock::{MockConfig, MockUpstream};

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
