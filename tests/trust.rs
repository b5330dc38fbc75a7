//! The trust boundary, through the real relay under both io drivers: only allowed paths are
//! dialled, no client header can steer billing or carry a credential upstream, admission
//! limits hold, client strings are bounded, and a panic in one session stays in it.
mod common;

use common::*;
use std::time::Duration;
use tollgate::metering::{read_log, RecordStatus};
use tollgate_loadtest::client::{connect, ClientOpts, ConnectError, Message, WsClient};
use tollgate_loadtest::mock::{MockConfig, MockUpstream};

fn opts_with(headers: &[(&str, &str)]) -> ClientOpts {
    let mut h = vec![("Authorization".to_string(), format!("Bearer {RELAY_KEY}"))];
    h.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    ClientOpts {
        headers: h,
        recv_timeout: Some(Duration::from_secs(20)),
        ..ClientOpts::default()
    }
}

async fn client(addr: std::net::SocketAddr) -> WsClient {
    connect(&format!("ws://{addr}/v1/responses"), opts_with(&[]))
        .await
        .expect("upgrade")
}

fn create(model: &str, lane: &str) -> String {
    format!(r#"{{"type":"response.create","model":"{model}","stream_id":"{lane}","input":"hi"}}"#)
}

/// Text messages until one contains `needle` (returns it), failing on a close.
async fn until(c: &mut WsClient, needle: &str) -> String {
    loop {
        match c.recv().await.expect("recv") {
            Message::Text(t) if t.contains(needle) => return t,
            Message::Close(code, reason) => panic!("closed {code:?} {reason} waiting for {needle}"),
            _ => {}
        }
    }
}

#[test]
fn paths_outside_the_allowlist_get_404_and_are_never_dialled() {
    let up = CountingUpstream::start();
    for driver in DRIVERS {
        let relay = start_relay(driver, &up.url(), &["--admin-listen", "127.0.0.1:0"]);
        for path in [
            "/v1/realtime?model=gpt-realtime",
            "/v1/responses/",
            "/v1/Responses",
            "/",
            "/openai/v1/responses",
        ] {
            let (status, body) =
                raw_http(relay.addr, upgrade_request(path, &auth_line()).as_bytes());
            assert_eq!(status, 404, "{driver} {path}: {body}");
            assert!(body.contains("\"path_not_allowed\""), "{body}");
            assert!(body.contains("application/json"), "{body}");
        }
        let n = metric_at_least(
            relay.admin(),
            "tollgate_handshake_failures_total{reason=\"path_not_allowed\"}",
            5.0,
        );
        assert_eq!(n, 5.0, "{driver}: refusals counted by reason");
    }
    assert_eq!(up.count(), 0, "no upstream connection for a refused path");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allowed_path_is_dialled_with_its_query() {
    let mock = MockUpstream::start(MockConfig {
        echo: true,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    for driver in DRIVERS {
        let relay = start_relay(driver, &mock.url(), &["--allow-path", "/custom/ws"]);
        let url = format!("ws://{}/custom/ws?x=1", relay.addr);
        let mut c = connect(&url, opts_with(&[])).await.expect("allowed");
        c.send_text("hi").await.unwrap();
        assert_eq!(c.recv().await.unwrap(), Message::Text("hi".into()));
        // The default path is no longer served when the operator lists others.
        match connect(&format!("ws://{}/v1/responses", relay.addr), opts_with(&[])).await {
            Err(ConnectError::Refused { status: 404, .. }) => {}
            other => panic!("{driver}: {:?}", other.map(|_| ())),
        }
    }
    assert!(mock
        .requests()
        .iter()
        .all(|r| r.path_and_query == "/custom/ws?x=1"));
}

/// Client headers that must never reach upstream in managed mode.
const STEERING: &[(&str, &str)] = &[
    ("OpenAI-Organization", "org-victim"),
    ("OpenAI-Project", "proj-victim"),
    ("Cookie", "session=tenant"),
    ("x-api-key", "sk-tenant-x"),
    ("api-key", "sk-tenant-azure"),
    ("Proxy-Authorization", "Basic dGVuYW50"),
];

#[tokio::test(flavor = "multi_thread")]
async fn managed_mode_forwards_no_credential_or_billing_header_either_way() {
    let mock = MockUpstream::start(MockConfig {
        echo: true,
        extra_101_headers: vec![
            ("Set-Cookie".into(), "__cf_bm=provider; HttpOnly".into()),
            ("OpenAI-Organization".into(), "org-provider".into()),
            ("OpenAI-Project".into(), "proj-provider".into()),
            ("x-request-id".into(), "req_123".into()),
        ],
        ..MockConfig::default()
    })
    .await
    .unwrap();
    for driver in DRIVERS {
        let relay = start_relay(
            driver,
            &mock.url(),
            &["--upstream-header", "OpenAI-Organization: org-operator"],
        );
        let mut headers: Vec<(&str, &str)> = STEERING.to_vec();
        headers.push(("OpenAI-Beta", "responses_websockets=2026-02-06"));
        let c = connect(
            &format!("ws://{}/v1/responses", relay.addr),
            opts_with(&headers),
        )
        .await
        .expect("upgrade");
        // Upstream → client: the provider's cookies and account are not the tenant's.
        assert_eq!(c.response_header("set-cookie"), None, "{driver}");
        assert_eq!(c.response_header("openai-organization"), None);
        assert_eq!(c.response_header("openai-project"), None);
        assert_eq!(c.response_header("x-request-id"), Some("req_123"));
    }
    let reqs = mock.requests();
    assert_eq!(reqs.len(), DRIVERS.len());
    for r in &reqs {
        for (name, value) in STEERING {
            let seen: Vec<_> = r
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect();
            assert!(
                !seen.contains(value),
                "{name}: {value} reached upstream: {:?}",
                r.headers
            );
        }
        assert_eq!(r.header("cookie"), None);
        assert_eq!(r.header("x-api-key"), None);
        assert_eq!(r.header("api-key"), None);
        assert_eq!(r.header("proxy-authorization"), None);
        assert_eq!(r.header("openai-project"), None);
        assert_eq!(r.header("openai-organization"), Some("org-operator"));
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {PROVIDER_KEY}").as_str())
        );
        assert_eq!(
            r.header("openai-beta"),
            Some("responses_websockets=2026-02-06")
        );
    }
}

#[test]
fn passthrough_with_two_different_credentials_is_400_and_not_dialled() {
    let up = CountingUpstream::start();
    for driver in DRIVERS {
        let relay = start_relay_passthrough(driver, &up.url());
        for extra in [
            "Authorization: Bearer sk-one\r\napi-key: sk-two\r\n",
            "Authorization: Bearer sk-one\r\nx-api-key: sk-two\r\n",
            "Authorization: Bearer sk-one\r\nAuthorization: Bearer sk-two\r\n",
        ] {
            let (status, body) = raw_http(
                relay.local_addr(),
                upgrade_request("/v1/responses", extra).as_bytes(),
            );
            assert_eq!(status, 400, "{driver}: {body}");
            assert!(body.contains("conflicting_credentials"), "{body}");
            assert!(!body.contains("sk-one") && !body.contains("sk-two"));
        }
    }
    assert_eq!(up.count(), 0);
}

/// A passthrough relay (no keys file) on one worker.
fn start_relay_passthrough(driver: &str, upstream: &str) -> tollgate::runtime::Relay {
    use clap::Parser;
    let mut args: Vec<String> = [
        "tollgate",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--no-pin",
        "--upstream",
        upstream,
        "--passthrough-auth",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(common::driver_args(driver));
    let cli = tollgate::config::Cli::try_parse_from(args).expect("cli");
    tollgate::runtime::Relay::start(cli.into_config().expect("config")).expect("start")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_credential_twice_in_passthrough_is_fine() {
    let mock = MockUpstream::start(MockConfig {
        echo: true,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let relay = start_relay_passthrough("auto", &mock.url());
    let opts = ClientOpts {
        headers: vec![
            ("Authorization".into(), "Bearer sk-tenant-own".into()),
            ("api-key".into(), "sk-tenant-own".into()),
        ],
        ..ClientOpts::default()
    };
    let url = format!("ws://{}/v1/responses", relay.local_addr());
    connect(&url, opts)
        .await
        .expect("one credential, sent twice");
    let reqs = mock.requests();
    assert_eq!(
        reqs[0].header("authorization"),
        Some("Bearer sk-tenant-own")
    );
    relay.shutdown(Duration::from_millis(200));
}

fn refused(r: Result<WsClient, ConnectError>) -> (u16, Vec<(String, String)>, String) {
    match r {
        Err(ConnectError::Refused {
            status,
            headers,
            body,
        }) => (status, headers, body),
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, got a session"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_and_tenant_session_caps_answer_429_with_retry_after() {
    let mock = MockUpstream::start(MockConfig {
        echo: true,
        ..MockConfig::default()
    })
    .await
    .unwrap();
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
