//! The trust boundary, through the real relay under both io drivers: only allowed paths are
//! dialled, and no client header can steer billing or carry a credential upstream (the
//! limits at the boundary are in `trust_limits.rs`).
mod common;
#[path = "trust/support.rs"]
mod support;

use common::*;
use std::time::Duration;
use support::*;
use tollgate_loadtest::client::{connect, ClientOpts, ConnectError, Message};
use tollgate_loadtest::mock::{MockConfig, MockUpstream};

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
    let mock = echo_mock().await;
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
    let mock = echo_mock().await;
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
