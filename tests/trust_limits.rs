//! The relay's limits at the trust boundary, through the real relay under both io drivers:
//! session caps answer 429 with Retry-After, turns over the tenant's rate get an error
//! event, client strings are bounded, a panic in one session stays in it, and passthrough
//! tenants get a bounded label set.
mod common;
#[path = "trust/support.rs"]
mod support;

use common::relay_client::refused;
use common::*;
use std::time::Duration;
use support::*;
use tollgate::metering::{read_log, RecordStatus};
use tollgate_loadtest::client::{connect, ClientOpts, Message};
use tollgate_loadtest::mock::{MockConfig, MockUpstream};

#[tokio::test(flavor = "multi_thread")]
async fn worker_and_tenant_session_caps_answer_429_with_retry_after() {
    let mock = echo_mock().await;
    for driver in DRIVERS {
        // Worker capacity: two sessions, the third is refused.
        let relay = start_relay(driver, &mock.url(), &["--max-sessions", "2"]);
        let url = format!("ws://{}/v1/responses", relay.addr);
        let a = connect(&url, opts_with(&[])).await.expect("1st");
        let _b = connect(&url, opts_with(&[])).await.expect("2nd");
        let (status, headers, body) = refused(connect(&url, opts_with(&[])).await);
        assert_eq!(status, 429, "{driver}");
        assert!(headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("retry-after") && v == "1"));
        assert!(body.contains("\"relay_at_capacity\""), "{body}");
        drop(a);
        let mut ok = false;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if connect(&url, opts_with(&[])).await.is_ok() {
                ok = true;
                break;
            }
        }
        assert!(ok, "{driver}: a slot came back when a session closed");
    }
    // Tenant cap from the keys file: `capped` may hold one session; `acme` is unaffected.
    let mut p = RelayProcess::start(
        "auto",
        &mock.url(),
        "capped tg-capped-key max_sessions=1\n",
        &[],
    );
    let capped = || ClientOpts {
        headers: vec![("Authorization".into(), "Bearer tg-capped-key".into())],
        ..ClientOpts::default()
    };
    let first = connect(&p.url(), capped()).await.expect("capped 1st");
    let (status, headers, body) = refused(connect(&p.url(), capped()).await);
    assert_eq!(status, 429);
    assert!(headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("retry-after")));
    assert!(body.contains("\"session_limit_reached\""), "{body}");
    connect(&p.url(), opts_with(&[]))
        .await
        .expect("another tenant");
    drop(first);
    p.signal(libc::SIGTERM);
    assert!(p.wait_exit(Duration::from_secs(10)).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn turns_over_the_tenant_rate_get_an_error_event_and_the_session_stays() {
    let mock = MockUpstream::start(MockConfig {
        deltas: 1,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    for driver in DRIVERS {
        let before = mock.requests().len();
        let relay = start_relay(driver, &mock.url(), &["--tenant-turns-per-minute", "2"]);
        let mut c = client(relay.addr).await;
        for _ in 0..2 {
            c.send_text(&create("gpt-5", "l1")).await.unwrap();
            until(&mut c, "\"response.completed\"").await;
        }
        c.send_text(&create("gpt-5", "l1")).await.unwrap();
        let ev = until(&mut c, "\"error\"").await;
        let v: serde_json::Value = serde_json::from_str(&ev).unwrap();
        assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{driver}");
        assert_eq!(v["status"], 429);
        assert_eq!(v["stream_id"], "l1");
        // Still open: a ping is answered.
        c.send_frame(true, 9, b"still?").await.unwrap();
        loop {
            match c.recv().await.unwrap() {
                Message::Pong(p) => {
                    assert_eq!(p, b"still?");
                    break;
                }
                Message::Close(code, _) => panic!("closed {code:?}"),
                _ => {}
            }
        }
        assert_eq!(mock.requests().len(), before + 1, "one upstream session");
        let creates = mock
            .received()
            .iter()
            .filter(|f| String::from_utf8_lossy(&f.payload).contains("response.create"))
            .count();
        assert_eq!(creates % 2, 0, "the refused create never went upstream");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn megabyte_stream_ids_are_refused_and_memory_stays_bounded() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    for driver in DRIVERS {
        let relay = start_relay(driver, &mock.url(), &[]);
        let mut c = client(relay.addr).await;
        let huge = "x".repeat(1 << 20);
        for _ in 0..64 {
            c.send_text(&create("gpt-5", &huge)).await.unwrap();
        }
        for _ in 0..64 {
            let ev = until(&mut c, "\"error\"").await;
            assert!(ev.contains("invalid_stream_id"), "{ev}");
            assert!(ev.len() < 1024, "the lane is not echoed back");
        }
        let huge_model = format!(
            r#"{{"type":"response.create","model":"{}"}}"#,
            "m".repeat(1 << 20)
        );
        c.send_text(&huge_model).await.unwrap();
        assert!(until(&mut c, "\"error\"").await.contains("invalid_model"));
        // The session stays open.
        c.send_frame(true, 9, b"p").await.unwrap();
        loop {
            match c.recv().await.unwrap() {
                Message::Pong(_) => break,
                Message::Close(code, _) => panic!("{driver}: closed {code:?}"),
                _ => {}
            }
        }
    }
    let creates = mock
        .received()
        .iter()
        .filter(|f| String::from_utf8_lossy(&f.payload).contains("response.create"))
        .count();
    assert_eq!(creates, 0, "none reached upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_in_one_session_closes_it_1011_records_it_and_spares_the_rest() {
    let mock = MockUpstream::start(MockConfig {
        token_rate: Some(5.0),
        deltas: 20,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    for driver in DRIVERS {
        let relay = start_relay(
            driver,
            &mock.url(),
            &[
                "--usage-log",
                "{usage_log}",
                "--debug-panic-on-model",
                "boom",
                "--admin-listen",
                "127.0.0.1:0",
            ],
        );
        let mut victim = client(relay.addr).await;
        let mut bystander = client(relay.addr).await;
        victim.send_text(&create("gpt-5", "a")).await.unwrap();
        until(&mut victim, "\"response.created\"").await;
        victim.send_text(&create("boom", "b")).await.unwrap();
        let (code, _) = recv_until_close(&mut victim).await;
        assert_eq!(code, Some(1011), "{driver}");
        // The other session on the same worker finishes a whole turn.
        bystander.send_text(&create("gpt-5", "c")).await.unwrap();
        until(&mut bystander, "\"response.completed\"").await;
        assert_eq!(
            metric_at_least(relay.admin(), "tollgate_panics_total", 1.0),
            1.0
        );
        assert!(http_get(relay.admin(), "/readyz").starts_with("HTTP/1.1 200"));
        drop(bystander);
        assert!(relay.stop(Duration::from_secs(2)));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicked_sessions_open_response_is_recorded_relay_error() {
    let mock = MockUpstream::start(MockConfig {
        token_rate: Some(5.0),
        deltas: 20,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let relay = start_relay(
        "auto",
        &mock.url(),
        &[
            "--usage-log",
            "{usage_log}",
            "--debug-panic-on-model",
            "boom",
        ],
    );
    let log = relay.usage_log.clone();
    let mut c = client(relay.addr).await;
    c.send_text(&create("gpt-5", "a")).await.unwrap();
    let created = until(&mut c, "\"response.created\"").await;
    let v: serde_json::Value = serde_json::from_str(&created).unwrap();
    let id = v["response"]["id"].as_str().unwrap().to_string();
    c.send_text(&create("boom", "b")).await.unwrap();
    recv_until_close(&mut c).await;
    let mut recs = Vec::new();
    for _ in 0..100 {
        recs = read_log(&log).map(|r| r.records).unwrap_or_default();
        if !recs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(recs.len(), 1, "{recs:#?}");
    assert_eq!(recs[0].response_id, id);
    assert_eq!(recs[0].status, RecordStatus::RelayError);
}

#[tokio::test(flavor = "multi_thread")]
async fn passthrough_tenants_get_a_bounded_label_set_in_metrics() {
    use clap::Parser;
    let mock = MockUpstream::start(MockConfig {
        deltas: 1,
        record: false,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let cli = tollgate::config::Cli::try_parse_from([
        "tollgate",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--no-pin",
        "--upstream",
        &mock.url(),
        "--passthrough-auth",
        "--admin-listen",
        "127.0.0.1:0",
    ])
    .unwrap();
    let relay = tollgate::runtime::Relay::start(cli.into_config().unwrap()).unwrap();
    let url = format!("ws://{}/v1/responses", relay.local_addr());
    let keys = tollgate::metrics::MAX_TENANT_LABELS + 44;
    for i in 0..keys {
        let opts = ClientOpts {
            headers: vec![("Authorization".into(), format!("Bearer sk-tenant-{i}"))],
            ..ClientOpts::default()
        };
        let mut c = connect(&url, opts).await.unwrap();
        c.turn(r#"{"type":"response.create","model":"gpt-5","input":"x"}"#)
            .await
            .unwrap();
    }
    let admin = relay.admin_addr().unwrap();
    let body = {
        let mut body = String::new();
        for _ in 0..60 {
            body = http_get(admin, "/metrics");
            if body.contains("tenant=\"_other\"") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        body
    };
    let tenants: std::collections::BTreeSet<&str> = body
        .lines()
        .filter(|l| l.starts_with("tollgate_tokens_total{"))
        .filter_map(|l| l.split("tenant=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(
        tenants.len(),
        tollgate::metrics::MAX_TENANT_LABELS + 1,
        "{keys} passthrough tenants, a bounded label set"
    );
    assert!(tenants.contains("_other"));
    assert!(tenants
        .iter()
        .all(|t| t.starts_with("fp-") || *t == "_other"));
    relay.shutdown(Duration::from_millis(200));
}
