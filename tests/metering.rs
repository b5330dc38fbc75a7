//! Metering through the real relay: one durable record per response, equal to what the
//! upstream billed, even when a peer vanishes.
mod common;

use common::*;
use std::time::Duration;
use tollgate::metering::{read_log, RecordStatus, UsageRecord};
use tollgate_loadtest::client::{connect, ClientOpts, Message, WsClient};
use tollgate_loadtest::mock::{Fault, MockConfig, MockUpstream};

fn opts() -> ClientOpts {
    ClientOpts {
        headers: vec![("Authorization".into(), format!("Bearer {RELAY_KEY}"))],
        recv_timeout: Some(Duration::from_secs(20)),
        ..ClientOpts::default()
    }
}

async fn client(relay: &TestRelay) -> WsClient {
    connect(&format!("ws://{}/v1/responses", relay.addr), opts())
        .await
        .expect("upgrade")
}

fn create(lane: Option<&str>, meta: &str) -> String {
    let lane = lane
        .map(|l| format!(r#","stream_id":"{l}""#))
        .unwrap_or_default();
    format!(
        r#"{{"type":"response.create","model":"gpt-5-mini","input":"count to ten"{lane}{meta}}}"#
    )
}

/// Wait until the log holds `n` records (group commit is asynchronous).
async fn records(relay: &TestRelay, n: usize) -> Vec<UsageRecord> {
    for _ in 0..100 {
        if let Ok(r) = read_log(&relay.usage_log) {
            if r.records.len() >= n {
                return r.records;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    read_log(&relay.usage_log)
        .map(|r| r.records)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_response_gets_exactly_one_record_across_lanes_and_reconnects() {
    for driver in DRIVERS {
        let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
        let relay = start_relay(
            driver,
            &mock.url(),
            &[
                "--usage-log",
                "{usage_log}",
                "--admin-listen",
                "127.0.0.1:0",
            ],
        );
        for _session in 0..2 {
            let mut c = client(&relay).await;
            // Two lanes at once: both creates go out before either finishes.
            c.send_text(&create(Some("agent_a"), "")).await.unwrap();
            c.send_text(&create(Some("agent.b-2"), "")).await.unwrap();
            let mut terminals = 0;
            while terminals < 2 {
                if let Message::Text(t) = c.recv().await.unwrap() {
                    terminals += t.contains("\"response.completed\"") as usize;
                }
            }
            c.turn(&create(None, "")).await.unwrap();
            c.close(1000, "").await.unwrap();
        }
        let recs = records(&relay, 6).await;
        assert_matches_ledger(&recs, &mock.ledger());
        assert!(
            recs.iter()
                .all(|r| r.status == RecordStatus::Completed && r.usage_final),
            "{recs:#?}"
        );
        assert!(recs
            .iter()
            .all(|r| r.requested_model.as_deref() == Some("gpt-5-mini")));

        // The admin endpoint counts what happened.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let body = http_get(relay.admin(), "/metrics");
        let total_in: u64 = recs.iter().map(|r| r.input_tokens).sum();
        assert!(body.contains("tollgate_sessions_opened_total 2"), "{body}");
        let line = body
            .lines()
            .find(|l| l.starts_with("tollgate_tokens_total") && l.contains("kind=\"input\""))
            .unwrap_or_else(|| panic!("no input tokens line:\n{body}"));
        assert!(
            line.ends_with(&format!(" {total_in}")),
            "{line} vs {total_in}"
        );
        assert!(http_get(relay.admin(), "/readyz").contains("200"), "ready");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn client_vanishing_mid_response_still_gets_the_real_usage() {
    for driver in DRIVERS {
        let mock = MockUpstream::start(MockConfig {
            token_rate: Some(100.0),
            deltas: 10,
            ..MockConfig::default()
        })
        .await
        .unwrap();
        let relay = start_relay(driver, &mock.url(), &["--usage-log", "{usage_log}"]);
        // 1) vanish (TCP close without a close frame) after two deltas
        // 2) send a close frame after two deltas
        for graceful in [false, true] {
            let mut c = client(&relay).await;
            c.send_text(&create(None, "")).await.unwrap();
            let mut deltas = 0;
            while deltas < 2 {
                if let Message::Text(t) = c.recv().await.unwrap() {
                    deltas += t.contains("output_text.delta") as usize;
                }
            }
            if graceful {
                c.close(1000, "bye").await.unwrap();
            }
            drop(c);
        }
        let recs = records(&relay, 2).await;
        assert_matches_ledger(&recs, &mock.ledger());
        assert!(
            recs.iter()
                .all(|r| r.status == RecordStatus::Completed && r.usage_final),
            "driver {driver}: {recs:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_abort_is_recorded_as_upstream_disconnected() {
    let mock = MockUpstream::start(MockConfig {
        fault: Some(Fault::AbortFin { after_deltas: 1 }),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let relay = start_relay("auto", &mock.url(), &["--usage-log", "{usage_log}"]);
    let mut c = client(&relay).await;
    let events = c.turn(&create(None, "")).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["error"]["code"].as_str()),
        (Some("error"), Some("upstream_disconnected")),
        "{last}"
    );
    let recs = records(&relay, 1).await;
    assert_eq!(recs.len(), 1, "{recs:#?}");
    assert_eq!(recs[0].status, RecordStatus::UpstreamDisconnected);
    assert!(!recs[0].usage_final);
    assert!(mock.ledger().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn unwritable_usage_log_fails_closed() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let relay = start_relay("auto", &mock.url(), &["--usage-log", "/dev/full"]);
    let mut c = client(&relay).await;
    // The first response is forwarded; its record cannot be written.
    c.turn(&create(None, "")).await.unwrap();
    // Wait for the sink to fail on its first write (asynchronous, on its own thread).
    for _ in 0..500 {
        if !relay.relay().shared().sink.healthy() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !relay.relay().shared().sink.healthy(),
        "writing to /dev/full must fail the sink"
    );
    // The next create is refused with a relay error event and never reaches upstream.
    let events = c.turn(&create(None, "")).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(last["type"], "error", "{last}");
    assert_eq!(last["error"]["code"], "usage_log_unavailable");
    assert_eq!(mock.received().iter().filter(|f| f.opcode == 1).count(), 1);
    // New sessions get 503.
    match connect(&format!("ws://{}/v1/responses", relay.addr), opts()).await {
        Err(tollgate_loadtest::client::ConnectError::Refused { status, .. }) => {
            assert_eq!(status, 503)
        }
        Ok(_) => panic!("a new session must be refused"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn kill_9_leaves_a_readable_log_with_every_forwarded_record() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mock = rt
        .block_on(MockUpstream::start(MockConfig::default()))
        .unwrap();
    // A group commit of 5 s: the writer is still gathering when the relay is killed, so the
    // records exist only in the relay's memory and in its journal.
    let slow_commit = ["--usage-fsync-ms", "5000"];
    let mut turns = 0;
    for driver in DRIVERS {
        let mut p = RelayProcess::start(driver, &mock.url(), "", &slow_commit);
        let log = p.usage_log();
        let n = 5;
        rt.block_on(async {
            let mut c = connect(&p.url(), opts()).await.unwrap();
            for _ in 0..n {
                c.turn(&create(None, "")).await.unwrap();
            }
        });
        turns += n;
        // The last terminal event has just reached the client.
        p.signal(libc::SIGKILL);
        p.wait_exit(Duration::from_secs(5)).expect("killed");
        let before = read_log(&log).expect("log parses after kill -9");
        assert!(
            before.records.len() < n,
            "{driver}: the writer had already written {} of {n}: this would not test the journal",
            before.records.len()
        );
        // The next start appends what the journal holds before it listens.
        let dir = std::mem::replace(&mut p.dir, tempfile::tempdir().unwrap());
        let p = RelayProcess::start_in(dir, driver, &mock.url(), "", &slow_commit);
        let read = read_log(&log).expect("log parses after the restart");
        assert_eq!(
            read.records.len(),
            n,
            "{driver}: every forwarded record, once"
        );
        assert!(
            p.log_text().contains("usage journal held records"),
            "{driver}: {}",
            p.log_text()
        );
        let ledger = mock.ledger();
        assert_eq!(ledger.len(), turns);
        assert_matches_ledger(&read.records, &ledger[turns - n..]);
    }
}

#[test]
fn a_running_relay_appends_the_records_of_a_relay_killed_beside_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mock = rt
        .block_on(MockUpstream::start(MockConfig::default()))
        .unwrap();
    let driver = DRIVERS[0];
    // An overlapping restart: the new relay runs on the same log while the old one still
    // serves (here: five turns, its writer still gathering them), then the old one is killed.
    let slow_commit = ["--usage-fsync-ms", "5000"];
    let mut old = RelayProcess::start(driver, &mock.url(), "", &slow_commit);
    let mut new = old.start_beside(driver, &mock.url(), &[]);
    let log = old.usage_log();
    // `<log>.journal.<pid>-<random>`
    let journal = std::fs::read_dir(log.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("usage.jsonl.journal.{}-", old.child.id())))
        })
        .expect("the old relay's journal");
    let n = 5;
    rt.block_on(async {
        let mut c = connect(&old.url(), opts()).await.unwrap();
        for _ in 0..n {
            c.turn(&create(None, "")).await.unwrap();
        }
    });
    old.signal(libc::SIGKILL);
    old.wait_exit(Duration::from_secs(5)).expect("killed");
    let t0 = std::time::Instant::now();
    assert!(
        read_log(&log).expect("log parses").records.len() < n,
        "the old writer had already written them: this would not test adoption"
    );
    assert!(journal.exists());
    // No restart: the running relay takes the dead one's journal within about a second.
    let read = loop {
        let read = read_log(&log).expect("log parses");
        if read.records.len() >= n || t0.elapsed() > Duration::from_secs(10) {
            break read;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(read.records.len(), n, "every forwarded record, once");
    assert!(
        !std::path::Path::new(&journal).exists(),
        "adopted journals are deleted"
    );
    assert!(
        new.log_text().contains("died beside this one"),
        "{}",
        new.log_text()
    );
    assert_matches_ledger(&read.records, &mock.ledger());
    // The new relay's own records follow, once each.
    rt.block_on(async {
        let mut c = connect(&new.url(), opts()).await.unwrap();
        c.turn(&create(None, "")).await.unwrap();
    });
    new.signal(libc::SIGTERM);
    new.wait_exit(Duration::from_secs(10)).expect("stopped");
    let read = read_log(&log).expect("log parses");
    assert_eq!(read.records.len(), n + 1);
    assert_matches_ledger(&read.records, &mock.ledger());
}

/// A mock streaming one delta a second: a response is still running seconds later.
async fn slow_mock() -> MockUpstream {
    MockUpstream::start(MockConfig {
        token_rate: Some(1.0),
        deltas: 30,
        ..MockConfig::default()
    })
    .await
    .unwrap()
}

/// A client whose response has been created upstream and is still streaming.
async fn response_under_way(relay: &TestRelay) -> WsClient {
    let mut c = client(relay).await;
    c.send_text(&create(None, "")).await.unwrap();
    loop {
        if let Message::Text(t) = c.recv().await.unwrap() {
            if t.contains("\"response.created\"") {
                return c;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn orphan_drain_gives_up_at_its_timeout_and_records_the_open_response() {
    // One delta a second: the response is still running when the drain gives up.
    let mock = slow_mock().await;
    let relay = start_relay(
        "auto",
        &mock.url(),
        &[
            "--usage-log",
            "{usage_log}",
            "--orphan-drain-timeout",
            "400ms",
        ],
    );
    let c = response_under_way(&relay).await;
    drop(c); // vanish with a response in flight
    let recs = records(&relay, 1).await;
    assert_eq!(recs.len(), 1, "{recs:#?}");
    assert_eq!(recs[0].status, RecordStatus::ClientDisconnected);
    assert!(!recs[0].usage_final);
    // Upstream was closed with 1001 once the drain gave up.
    let close = upstream_close(&mock).expect("upstream closed");
    assert_eq!(&close.payload[..2], &1001u16.to_be_bytes());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_orphan_drain_slot_the_open_response_is_recorded_at_once() {
    let mock = slow_mock().await;
    let relay = start_relay(
        "auto",
        &mock.url(),
        &["--usage-log", "{usage_log}", "--max-orphan-drains", "0"],
    );
    let c = response_under_way(&relay).await;
    let t0 = std::time::Instant::now();
    drop(c);
    let recs = records(&relay, 1).await;
    assert_eq!(recs.len(), 1, "{recs:#?}");
    assert_eq!(recs[0].status, RecordStatus::ClientDisconnected);
    assert!(!recs[0].usage_final);
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "no drain: recorded at once ({:?})",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_leaving_after_the_last_delta_before_the_terminal_event_is_billed_exactly() {
    for driver in DRIVERS {
        // Paced at 5/s: the terminal event follows the last delta by 200 ms.
        let mock = MockUpstream::start(MockConfig {
            token_rate: Some(5.0),
            deltas: 4,
            ..MockConfig::default()
        })
        .await
        .unwrap();
        let relay = start_relay(driver, &mock.url(), &["--usage-log", "{usage_log}"]);
        for graceful in [false, true] {
            let mut c = client(&relay).await;
            c.send_text(&create(None, "")).await.unwrap();
            let mut deltas = 0;
            while deltas < 4 {
                match c.recv().await.unwrap() {
                    Message::Text(t) => {
                        assert!(
                            !t.contains("\"response.completed\""),
                            "terminal came before the last delta was read"
                        );
                        deltas += t.contains("output_text.delta") as usize;
                    }
                    other => panic!("{other:?}"),
                }
            }
            if graceful {
                c.close(1000, "").await.unwrap();
            }
            drop(c); // every delta read, the terminal event not yet sent
        }
        let recs = records(&relay, 2).await;
        assert_matches_ledger(&recs, &mock.ledger());
        assert!(
            recs.iter()
                .all(|r| r.status == RecordStatus::Completed && r.usage_final),
            "driver {driver}: {recs:#?}"
        );
    }
}
