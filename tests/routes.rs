//! Routes from a config file, through the real relay under both io drivers: the route is
//! chosen by path prefix or by the key's tenant, each route injects its own credential, a
//! model's route prefix is removed from the one frame the relay rewrites (checked byte for
//! byte at the upstream), other routes' prefixes and models off a route's allowlist get
//! error events with the request's `stream_id` while the session stays open, client events
//! the relay does not know pass untouched, and every record carries its route and the
//! provider's whole usage object.
mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;
use tollgate_loadtest::client::{connect, ClientOpts, Message, WsClient};
use tollgate_loadtest::mock::{compute_units, MockConfig, MockUpstream};

const BETA_KEY: &str = "tg-test-beta-key-0002";

/// Two routes: `openai` (default, any model) and `xai` (models grok-4 and grok-4-fast).
fn config(openai: &str, xai: &str) -> String {
    format!(
        r#"
client-keys = "{{dir}}/keys"
usage-log = "{{usage_log}}"
usage-fsync-ms = 5
admin-listen = "127.0.0.1:0"

[[route]]
name = "openai"
upstream = "{openai}"
headers = ["Authorization: Bearer sk-openai-provider"]

[[route]]
name = "xai"
upstream = "{xai}"
headers = ["Authorization: Bearer xai-provider"]
models = ["grok-4", "grok-4-fast"]
"#
    )
}

fn keys() -> String {
    format!("acme {RELAY_KEY}\nbeta {BETA_KEY} route=xai\n")
}

async fn client(addr: std::net::SocketAddr, path: &str, key: &str) -> WsClient {
    let opts = ClientOpts {
        headers: vec![("Authorization".into(), format!("Bearer {key}"))],
        recv_timeout: Some(Duration::from_secs(20)),
        ..ClientOpts::default()
    };
    connect(&format!("ws://{addr}{path}"), opts)
        .await
        .expect("upgrade")
}

async fn mock() -> MockUpstream {
    MockUpstream::start(MockConfig {
        deltas: 2,
        ..MockConfig::default()
    })
    .await
    .expect("mock")
}

/// The next text message, parsed (skipping nothing: the relay's answers come in order).
async fn next_event(c: &mut WsClient) -> Value {
    loop {
        match c.recv().await.expect("recv") {
            Message::Text(t) => return serde_json::from_str(&t).expect("json"),
            Message::Close(code, reason) => panic!("closed {code:?} {reason}"),
            _ => {}
        }
    }
}

fn text_payloads(mock: &MockUpstream, conn: usize) -> Vec<String> {
    mock.received()
        .into_iter()
        .filter(|f| f.conn == conn && f.opcode == 1)
        .map(|f| String::from_utf8(f.payload).expect("utf-8"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_path_prefix_or_the_keys_route_picks_the_upstream_and_its_credential() {
    for driver in DRIVERS {
        let (a, x) = (mock().await, mock().await);
        let relay = start_relay_config(driver, &config(&a.url(), &x.url()), &keys(), &[]);
        // acme, no prefix: the default route.
        let mut c1 = client(relay.addr, "/v1/responses?trace=1", RELAY_KEY).await;
        c1.turn(r#"{"type":"response.create","model":"gpt-5"}"#)
            .await
            .expect("turn");
        // acme, /xai prefix: the xai route, forwarded without the prefix.
        let mut c2 = client(relay.addr, "/xai/v1/responses?trace=2", RELAY_KEY).await;
        c2.turn(r#"{"type":"response.create","model":"grok-4"}"#)
            .await
            .expect("turn");
        // beta's key names route xai.
        let mut c3 = client(relay.addr, "/v1/responses", BETA_KEY).await;
        c3.turn(r#"{"type":"response.create","model":"grok-4-fast"}"#)
            .await
            .expect("turn");
        for c in [&mut c1, &mut c2, &mut c3] {
            c.close(1000, "done").await.expect("close");
        }
        // A prefix no route has, or a path the route does not serve: 404.
        for path in ["/anthropic/v1/responses", "/xai/v1/realtime"] {
            let opts = ClientOpts {
                headers: vec![("Authorization".into(), format!("Bearer {RELAY_KEY}"))],
                ..ClientOpts::default()
            };
            match connect(&format!("ws://{}{path}", relay.addr), opts).await {
                Err(tollgate_loadtest::client::ConnectError::Refused { status: 404, .. }) => {}
                other => panic!("{driver} {path}: {:?}", other.map(|_| ())),
            }
        }
        let (ra, rx) = (a.requests(), x.requests());
        assert_eq!(ra.len(), 1, "{driver}: one session on openai");
        assert_eq!(rx.len(), 2, "{driver}: two on xai");
        assert_eq!(ra[0].path_and_query, "/v1/responses?trace=1");
        assert_eq!(rx[0].path_and_query, "/v1/responses?trace=2");
        assert_eq!(rx[1].path_and_query, "/v1/responses");
        assert_eq!(
            ra[0].header("authorization"),
            Some("Bearer sk-openai-provider")
        );
        for r in &rx {
            assert_eq!(r.header("authorization"), Some("Bearer xai-provider"));
        }
        for (route, n) in [("openai", 1.0), ("xai", 2.0)] {
            let sample = format!("tollgate_route_sessions_total{{route=\"{route}\"}}");
            assert_eq!(
                metric_at_least(relay.admin(), &sample, n),
                n,
                "{driver} {route}"
            );
        }
        let sample = "tollgate_responses_total{status=\"completed\",route=\"xai\"}";
        assert_eq!(metric_at_least(relay.admin(), sample, 2.0), 2.0);
        // Traffic metrics carry the route too (counted when each session ends).
        let sample = "tollgate_closes_total{code=\"1000\",side=\"client\",route=\"xai\"}";
        assert_eq!(metric_at_least(relay.admin(), sample, 2.0), 2.0, "{driver}");
        let sample = "tollgate_closes_total{code=\"1000\",side=\"client\",route=\"openai\"}";
        assert_eq!(metric_at_least(relay.admin(), sample, 1.0), 1.0, "{driver}");
        for (route, sessions) in [("openai", 1.0), ("xai", 2.0)] {
            for dir in ["client_to_upstream", "upstream_to_client"] {
                let sample = format!("tollgate_frames_total{{route=\"{route}\",dir=\"{dir}\"}}");
                // At least the create (and close) up, the turn's events down, per session.
                let n = metric_at_least(relay.admin(), &sample, 2.0 * sessions);
                assert!(n >= 2.0 * sessions, "{driver} {sample} = {n}");
            }
        }
        let (clean, recs) = relay.stop_and_read(Duration::from_secs(5));
        assert!(clean);
        let mut routes: Vec<(&str, &str, &str)> = recs
            .iter()
            .map(|r| {
                (
                    r.tenant.as_str(),
                    r.route.as_str(),
                    r.requested_model.as_deref().unwrap_or(""),
                )
            })
            .collect();
        routes.sort_unstable();
        assert_eq!(
            routes,
            [
                ("acme", "openai", "gpt-5"),
                ("acme", "xai", "grok-4"),
                ("beta", "xai", "grok-4-fast"),
            ],
            "{driver}"
        );
        assert!(recs.iter().any(|r| r.upstream == x.url()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_routes_model_prefix_is_removed_byte_for_byte_whole_or_fragmented() {
    for driver in DRIVERS {
        let (a, x) = (mock().await, mock().await);
        let relay = start_relay_config(driver, &config(&a.url(), &x.url()), &keys(), &[]);
        let mut c = client(relay.addr, "/v1/responses", RELAY_KEY).await;
        let sent = r#"{"type":"response.create","model":"openai/gpt-5","instructions":"keep \"openai/gpt-5\" here","input":[{"role":"user","content":"héllo"}],"stream_id":"a"}"#;
        let want = r#"{"type":"response.create","model":"gpt-5","instructions":"keep \"openai/gpt-5\" here","input":[{"role":"user","content":"héllo"}],"stream_id":"a"}"#;
        c.turn(sent).await.expect("whole");
        // The same message in four fragments with a ping between two of them.
        let b = sent.replace("\"a\"", "\"b\"");
        let bytes = b.as_bytes();
        c.send_frame(false, 1, &bytes[..9]).await.unwrap();
        c.send_frame(false, 0, &bytes[9..40]).await.unwrap();
        c.send_frame(true, 9, b"ping").await.unwrap();
        c.send_frame(false, 0, &bytes[40..41]).await.unwrap();
        c.send_frame(true, 0, &bytes[41..]).await.unwrap();
        loop {
            let v = next_event(&mut c).await;
            if v["type"] == "response.completed" && v["stream_id"] == "b" {
                break;
            }
        }
        let got = text_payloads(&a, 0);
        assert_eq!(
            got,
            [want.to_string(), want.replace("\"a\"", "\"b\"")],
            "{driver}"
        );
        let frames: Vec<(u8, bool)> = a
            .received()
            .iter()
            .filter(|f| f.opcode == 1 || f.opcode == 0)
            .map(|f| (f.opcode, f.fin))
            .collect();
        assert_eq!(
            frames,
            [(1, true), (1, true)],
            "{driver}: each rewritten message is one frame"
        );
        let (_, recs) = relay.stop_and_read(Duration::from_secs(5));
        assert_eq!(recs.len(), 2);
        for r in &recs {
            assert_eq!(
                r.requested_model.as_deref(),
                Some("openai/gpt-5"),
                "what the client asked"
            );
            assert_eq!(r.route, "openai");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn another_routes_prefix_and_a_model_off_the_allowlist_get_error_events_and_the_session_stays(
) {
    for driver in DRIVERS {
        let (a, x) = (mock().await, mock().await);
        let relay = start_relay_config(driver, &config(&a.url(), &x.url()), &keys(), &[]);
        let mut c = client(relay.addr, "/v1/responses", RELAY_KEY).await;
        c.send_text(r#"{"type":"response.create","model":"xai/grok-4","stream_id":"lane-1"}"#)
            .await
            .unwrap();
        let e = next_event(&mut c).await;
        assert_eq!(e["type"], "error", "{e}");
        assert_eq!(e["status"], 400);
        assert_eq!(e["stream_id"], "lane-1");
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert_eq!(e["error"]["code"], "model_route_mismatch");
        let mut cx = client(relay.addr, "/xai/v1/responses", RELAY_KEY).await;
        cx.send_text(r#"{"type":"response.create","model":"xai/grok-3","stream_id":"lane-2"}"#)
            .await
            .unwrap();
        let e = next_event(&mut cx).await;
        assert_eq!(e["error"]["code"], "model_not_allowed", "{e}");
        assert_eq!(e["stream_id"], "lane-2");
        // Both sessions stay open and serve the next create.
        let ev = c
            .turn(r#"{"type":"response.create","model":"gpt-5","stream_id":"lane-1"}"#)
            .await
            .expect("turn after a refusal");
        assert_eq!(
            ev.last().map(|v| v["type"].clone()),
            Some("response.completed".into())
        );
        cx.turn(r#"{"type":"response.create","model":"xai/grok-4"}"#)
            .await
            .expect("turn after a refusal");
        assert_eq!(
            text_payloads(&a, 0),
            [r#"{"type":"response.create","model":"gpt-5","stream_id":"lane-1"}"#],
            "{driver}: the refused create never left"
        );
        assert_eq!(
            text_payloads(&x, 0),
            [r#"{"type":"response.create","model":"grok-4"}"#]
        );
        let n = metric_at_least(
            relay.admin(),
            "tollgate_creates_refused_total{code=\"model_route_mismatch\"}",
            1.0,
        );
        assert_eq!(n, 1.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_client_events_pass_untouched_and_records_keep_the_whole_usage() {
    for driver in DRIVERS {
        let (a, x) = (mock().await, mock().await);
        let relay = start_relay_config(driver, &config(&a.url(), &x.url()), &keys(), &[]);
        let mut c = client(relay.addr, "/v1/responses", RELAY_KEY).await;
        let steer = r#"{"type":"response.steer","previous_response_id":"resp_x","input":[{"role":"user","content":"openai/gpt-5 stop"}],"model":"openai/gpt-5"}"#;
        let future = r#"{ "type" : "response.future_thing", "model":"xai/whatever", "x": [1, 2, {"y": null}] }"#;
        c.send_text(steer).await.unwrap();
        c.send_text(future).await.unwrap();
        let ev = c
            .turn(r#"{"type":"response.create","model":"gpt-5"}"#)
            .await
            .expect("turn");
        let usage = ev.last().expect("terminal")["response"]["usage"].clone();
        assert_eq!(
            text_payloads(&a, 0)[..2],
            [steer.to_string(), future.to_string()],
            "{driver}"
        );
        let (_, recs) = relay.stop_and_read(Duration::from_secs(5));
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        let kept = r.usage.as_ref().expect("usage object kept").value();
        assert_eq!(kept, usage, "{driver}: the provider's object, every field");
        assert_eq!(
            kept["compute_units"].as_f64(),
            Some(compute_units(r.input_tokens + r.output_tokens))
        );
        assert!(kept["input_tokens_details"]["cache_write_tokens"].is_u64());
    }
}
