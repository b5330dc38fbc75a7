//! Steering successors through the real relay: a client that leaves between a steered
//! response's terminal event and its successor's `response.created` does not take the
//! successor's record with it — the orphan drain waits for the successor.
mod common;

use common::*;
use std::time::Duration;
use tollgate::metering::{read_log, RecordStatus, UsageRecord};
use tollgate_loadtest::client::{connect, ClientOpts, Message, WsClient};
use tollgate_loadtest::mock::{MockConfig, MockUpstream};

async fn client(relay: &TestRelay) -> WsClient {
    let opts = ClientOpts {
        headers: vec![("Authorization".into(), format!("Bearer {RELAY_KEY}"))],
        recv_timeout: Some(Duration::from_secs(20)),
        ..ClientOpts::default()
    };
    connect(&format!("ws://{}/v1/responses", relay.addr), opts)
        .await
        .expect("upgrade")
}

const CREATE: &str = r#"{"type":"response.create","model":"gpt-5-mini","input":"count to ten"}"#;

fn steer(previous: &str) -> String {
    format!(
        r#"{{"type":"response.steer","previous_response_id":"{previous}","input":"actually, stop"}}"#
    )
}

/// Events up to and including the first of type `ty`; returns the first response id seen.
async fn until(c: &mut WsClient, ty: &str, id: &mut Option<String>) -> serde_json::Value {
    loop {
        let Message::Text(t) = c.recv().await.expect("event") else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&t).expect("json");
        if id.is_none() {
            *id = v["response"]["id"].as_str().map(str::to_string);
        }
        if v["type"] == ty {
            return v;
        }
    }
}

/// Waits (up to 10 s) until the log holds `n` records, then 300 ms more for any extra.
async fn records(relay: &TestRelay, n: usize) -> Vec<UsageRecord> {
    let read = || {
        read_log(&relay.usage_log)
            .map(|r| r.records)
            .unwrap_or_default()
    };
    for _ in 0..200 {
        if read().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    read()
}

/// The client leaves (vanishing, or with a close frame) right after `leave_after`; the
/// successor starts 300 ms later.
async fn leave_in_the_gap(
    steer_at: &str,
    leave_after: &str,
    mock: MockConfig,
    want: [RecordStatus; 2],
) {
    for driver in DRIVERS {
        for graceful in [false, true] {
            let mock = MockUpstream::start(MockConfig {
                successor_delay: Duration::from_millis(300),
                ..mock.clone()
            })
            .await
            .expect("mock");
            let relay = start_relay(driver, &mock.url(), &["--usage-log", "{usage_log}"]);
            let mut c = client(&relay).await;
            c.send_text(CREATE).await.expect("create");
            let mut first = None;
            until(&mut c, steer_at, &mut first).await;
            let first = first.expect("response id");
            c.send_text(&steer(&first)).await.expect("steer");
            let mut id = None;
            let end = until(&mut c, leave_after, &mut id).await;
            assert_eq!(end["response"]["id"], first.as_str(), "{driver}");
            if graceful {
                c.close(1000, "bye").await.expect("close");
            }
            drop(c);
            let recs = records(&relay, 2).await;
            let ledger = mock.ledger();
            assert_eq!(
                ledger.len(),
                2,
                "{driver} graceful={graceful}: the upstream was kept open for the successor \
                 (records {recs:#?})"
            );
            assert_matches_ledger(&recs, &ledger);
            let got: Vec<_> = ledger
                .iter()
                .map(|l| {
                    let r = recs.iter().find(|r| r.response_id == l.response_id);
                    r.map(|r| (r.status, r.usage_final))
                })
                .collect();
            assert_eq!(
                got,
                [Some((want[0], true)), Some((want[1], true))],
                "{driver} graceful={graceful}: in billing order, each with the real usage"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_leaving_after_a_steered_response_ends_does_not_lose_its_successor() {
    leave_in_the_gap(
        "response.output_text.delta",
        "response.incomplete",
        MockConfig {
            deltas: 30,
            token_rate: Some(50.0),
            ..MockConfig::default()
        },
        [RecordStatus::Incomplete, RecordStatus::Completed],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_leaving_after_a_normal_completion_does_not_lose_its_automatic_successor() {
    // 5 deltas a second: the steer sent at the last delta is accepted before the terminal
    // event, the response completes normally, and an automatic successor follows.
    leave_in_the_gap(
        "response.output_text.delta",
        "response.completed",
        MockConfig {
            deltas: 1,
            token_rate: Some(5.0),
            ..MockConfig::default()
        },
        [RecordStatus::Completed, RecordStatus::Completed],
    )
    .await;
}
