//! The relay doing its job: real sockets, the mock upstream (which speaks the Responses
//! protocol), both io drivers. The TLS legs' suite is tests/relay_tls.rs.
mod common;

use common::relay_client::*;
use common::*;
use std::time::Duration;
use tollgate_loadtest::client::Message;
use tollgate_loadtest::mock::{Fault, MockConfig, MockUpstream, Refusal};

#[tokio::test(flavor = "multi_thread")]
async fn multi_turn_is_byte_exact_with_credential_swap_and_header_copy() {
    for driver in DRIVERS {
        let mock = MockUpstream::start(MockConfig {
            extra_101_headers: vec![
                ("x-codex-turn-state".into(), "ts-abc".into()),
                ("openai-model".into(), "gpt-5-2026-08-07".into()),
                ("x-request-id".into(), "req_up_1".into()),
                ("x-ratelimit-remaining-requests".into(), "99".into()),
            ],
            ..MockConfig::default()
        })
        .await
        .unwrap();
        let relay = start_relay(driver, &mock.url(), &[]);
        let mut c = client(&relay).await;
        for h in [
            "x-codex-turn-state",
            "openai-model",
            "x-request-id",
            "x-ratelimit-remaining-requests",
        ] {
            assert!(
                c.response_header(h).is_some(),
                "driver {driver}: 101 lacks {h}: {:?}",
                c.response_headers
            );
        }
        assert_eq!(c.response_header("x-codex-turn-state"), Some("ts-abc"));
        assert!(c.response_header("sec-websocket-extensions").is_none());

        let mut sent = Vec::new();
        let mut prev: Option<String> = None;
        for turn in 0..3 {
            let extra = prev
                .as_ref()
                .map(|p| format!(r#","previous_response_id":"{p}""#))
                .unwrap_or_default();
            let msg = create("gpt-5", &extra);
            sent.push(msg.clone());
            let events = c
                .turn(&msg)
                .await
                .unwrap_or_else(|e| panic!("driver {driver} turn {turn}: {e}"));
            let last = events.last().unwrap();
            assert_eq!(last["type"], "response.completed", "{last}");
            assert!(
                events
                    .iter()
                    .filter(|e| e["type"] == "response.output_text.delta")
                    .count()
                    >= 8
            );
            prev = last["response"]["id"].as_str().map(str::to_string);
        }
        c.close(1000, "done").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;

        // Byte-exact at the upstream, every frame masked by the relay.
        let got: Vec<_> = mock
            .received()
            .into_iter()
            .filter(|f| f.opcode == 1)
            .collect();
        assert_eq!(got.len(), 3);
        for (f, s) in got.iter().zip(&sent) {
            assert_eq!(f.payload, s.as_bytes());
            assert!(f.was_masked);
        }
        // Credential swap and header pass-through.
        let req = &mock.requests()[0];
        assert_eq!(req.path_and_query, "/v1/responses?trace=1");
        assert_eq!(
            req.header("authorization"),
            Some(format!("Bearer {PROVIDER_KEY}").as_str())
        );
        assert_eq!(
            req.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"))
                .count(),
            1
        );
        assert!(
            req.headers.iter().all(|(_, v)| !v.contains(RELAY_KEY)),
            "relay key leaked upstream: {:?}",
            req.headers
        );
        assert_eq!(
            req.header("openai-beta"),
            Some("responses_websockets=2026-02-06")
        );
        assert_eq!(req.header("session_id"), Some("sess-42"));
        assert_eq!(req.header("x-client-request-id"), Some("req-7"));
        assert_eq!(req.header("originator"), Some("codex_cli_rs"));
        assert!(req.header("sec-websocket-extensions").is_none());
        assert_eq!(mock.ledger().len(), 3);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn large_fragmented_binary_and_ping_through_echo() {
    for driver in DRIVERS {
        let mock = echo_mock().await;
        let relay = start_relay(driver, &mock.url(), &[]);
        let mut c = client(&relay).await;
        let big: String = (0..(3 << 20))
            .map(|i| (b'a' + (i % 26) as u8) as char)
            .collect();
        for msg in [&big[..1 << 20], &big[..]] {
            c.send_text(msg).await.unwrap();
            match c.recv().await.unwrap() {
                Message::Text(t) => assert!(
                    t == msg,
                    "driver {driver}: {} bytes back for {}",
                    t.len(),
                    msg.len()
                ),
                other => panic!("{other:?}"),
            }
        }
        let bin: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        c.send_fragmented(2, &bin, 7).await.unwrap();
        assert_eq!(c.recv().await.unwrap(), Message::Binary(bin.clone()));
        c.send_fragmented(1, &big.as_bytes()[..100_000], 50)
            .await
            .unwrap();
        assert_eq!(
            c.recv().await.unwrap(),
            Message::Text(big[..100_000].to_string())
        );
        c.send_frame(true, 9, b"ping-payload").await.unwrap();
        loop {
            match c.recv().await.unwrap() {
                Message::Pong(p) => {
                    assert_eq!(p, b"ping-payload");
                    break;
                }
                Message::Ping(_) => continue,
                other => panic!("expected pong, got {other:?}"),
            }
        }
        c.close(1000, "").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn close_codes_propagate_both_ways() {
    for driver in DRIVERS {
        // Client closes with 4001 "bye": upstream sees exactly that.
        let mock = echo_mock().await;
        let relay = start_relay(driver, &mock.url(), &[]);
        let mut c = client(&relay).await;
        c.close(4001, "bye").await.unwrap();
        assert_eq!(
            recv_until_close(&mut c).await.0,
            Some(4001),
            "driver {driver}"
        );
        let close = upstream_close(&mock).expect("upstream got a close");
        assert_eq!(&close.payload[..2], &4001u16.to_be_bytes());
        assert_eq!(&close.payload[2..], b"bye");

        // Upstream sends an error event then closes 4002: the client gets both verbatim.
        let mock = MockUpstream::start(MockConfig {
            fault: Some(Fault::CloseAfterError {
                code: 4002,
                error_code: "websocket_connection_limit_reached".into(),
            }),
            ..MockConfig::default()
        })
        .await
        .unwrap();
        let relay = start_relay(driver, &mock.url(), &[]);
        let mut c = client(&relay).await;
        c.send_text(&create("gpt-5", "")).await.unwrap();
        let (code, texts) = recv_until_close(&mut c).await;
        assert!(texts
            .iter()
            .any(|t| t.contains("websocket_connection_limit_reached")));
        assert_eq!(code, Some(4002));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_refusals_map_to_client_statuses() {
    for driver in DRIVERS {
        for (up, want, code) in [
            (401, 502, "upstream_auth_failed"),
            (403, 502, "upstream_auth_failed"),
            (404, 404, "upstream_refused"),
            (500, 502, "upstream_error"),
            (503, 502, "upstream_error"),
        ] {
            let mock = MockUpstream::start(MockConfig {
                refuse: Some(Refusal::new(up)),
                ..MockConfig::default()
            })
            .await
            .unwrap();
            let (status, _, body) = refused_status(driver, &mock.url(), &[]).await;
            assert_eq!(status, want, "driver {driver}: upstream {up}");
            let v: serde_json::Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
            assert_eq!(v["error"]["code"], code, "{body}");
            assert!(!body.contains(PROVIDER_KEY) && !body.contains(RELAY_KEY));
        }
        let mock = MockUpstream::start(MockConfig {
            refuse: Some(Refusal::new(429).with_retry_after("7")),
            ..MockConfig::default()
        })
        .await
        .unwrap();
        let (status, headers, _) = refused_status(driver, &mock.url(), &[]).await;
        assert_eq!(status, 429);
        assert!(
            headers
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case("retry-after") && v == "7"),
            "{headers:?}"
        );

        for fault in [Fault::BadAccept, Fault::OfferExtension] {
            let mock = MockUpstream::start(MockConfig {
                fault: Some(fault.clone()),
                ..MockConfig::default()
            })
            .await
            .unwrap();
            let (status, _, _) = refused_status(driver, &mock.url(), &[]).await;
            assert_eq!(status, 502, "driver {driver}: {fault:?}");
        }
        // Nothing listening → 502.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://{}", closed.local_addr().unwrap());
        drop(closed);
        let (status, _, body) = refused_status(driver, &url, &[]).await;
        assert_eq!(status, 502, "{body}");
        // Accepts TCP, never answers the upgrade → 504 at the handshake timeout.
        let silent = CountingUpstream::start_silent();
        let (status, _, body) = refused_status(
            driver,
            &silent.url(),
            &["--upstream-handshake-timeout", "300ms"],
        )
        .await;
        assert_eq!(status, 504, "{body}");
        // A listener whose accept queue is full drops further SYNs: the TCP connect never
        // completes → 504 at the connect timeout.
        let (full, _fillers) = listener_with_full_backlog();
        let t0 = std::time::Instant::now();
        let (status, _, body) = refused_status(
            driver,
            &format!("ws://{full}"),
            &["--upstream-connect-timeout", "300ms"],
        )
        .await;
        assert_eq!(status, 504, "{body}");
        assert!(body.contains("\"upstream_connect_timeout\""), "{body}");
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    }
}

/// A loopback listener (backlog 0) whose accept queue is already full: its address, and
/// the sockets that fill it (keep them alive).
fn listener_with_full_backlog() -> (std::net::SocketAddr, Vec<socket2::Socket>) {
    use socket2::{Domain, Socket, Type};
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    l.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = vec![l];
    // Non-blocking connects until one stays pending: the queue is full.
    for _ in 0..8 {
        let c = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        c.set_nonblocking(true).unwrap();
        let _ = c.connect(&addr.into());
        fillers.push(c);
    }
    std::thread::sleep(Duration::from_millis(100));
    (addr, fillers)
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_frames_never_reach_a_refusing_upstream() {
    let rec = RecordingRefuser::start();
    let relay = start_relay("auto", &rec.url(), &[]);
    let mut req = upgrade_request("/v1/responses", &auth_line()).into_bytes();
    req.extend(client_frame(
        true,
        1,
        br#"{"type":"response.create","model":"gpt-5"}"#,
        Some([1, 2, 3, 4]),
    ));
    let (status, _) = raw_http(relay.addr, &req);
    assert_eq!(status, 429);
    std::thread::sleep(Duration::from_millis(100));
    let got = rec.received();
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.ends_with("\r\n\r\n"),
        "upstream got more than the request head: {text:?}"
    );
    assert!(!text.contains("response.create"));
}

/// The upstream cut mid-response (FIN, or RST), over plain TCP and over TLS (on the data
/// plane a TLS stream cut without `close_notify` reads as a read error): the client gets
/// the error event and 1011.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_dying_mid_response_gets_error_event_and_1011() {
    let files = TlsFiles::generate();
    for driver in DRIVERS {
        for (fault, upstream_tls) in [
            Fault::AbortFin { after_deltas: 2 },
            Fault::AbortRst { after_deltas: 2 },
        ]
        .into_iter()
        .flat_map(|f| [(f.clone(), false), (f, true)])
        {
            let mock = MockUpstream::start(MockConfig {
                fault: Some(fault.clone()),
                tls: upstream_tls.then(|| files.tls.server_config().unwrap()),
                ..MockConfig::default()
            })
            .await
            .unwrap();
            let ca = files.upstream_ca_args();
            let extra: &[&str] = if upstream_tls { &ca } else { &[] };
            let relay = start_relay(driver, &mock.url(), extra);
            let mut c = client(&relay).await;
            c.send_text(&create("gpt-5", "")).await.unwrap();
            let (code, texts) = recv_until_close(&mut c).await;
            let deltas = texts
                .iter()
                .filter(|t| t.contains("response.output_text.delta"))
                .count();
            let what = format!("driver {driver}, tls {upstream_tls}: {fault:?}");
            assert_eq!(deltas, 2, "{what}");
            assert!(
                texts.iter().any(|t| t.contains("upstream_disconnected")),
                "{what}: error event expected"
            );
            assert_eq!(code, Some(1011), "{what}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tunnel_mode_copies_bytes_both_ways_and_meters_nothing() {
    let mock = echo_mock().await;
    for driver in DRIVERS {
        let relay = start_relay(
            driver,
            &mock.url(),
            &["--tunnel", "--usage-log", "{usage_log}"],
        );
        let mut c = client(&relay).await;
        let big: Vec<u8> = (0..(2 << 20)).map(|i: u32| (i % 251) as u8).collect();
        c.send_binary(&big).await.unwrap();
        assert_eq!(
            c.recv().await.unwrap(),
            Message::Binary(big.clone()),
            "{driver}"
        );
        c.send_text(r#"{"type":"response.create","model":"m"}"#)
            .await
            .unwrap();
        assert!(matches!(c.recv().await.unwrap(), Message::Text(_)));
        c.close(1000, "bye").await.unwrap();
        let (code, _) = recv_until_close(&mut c).await;
        assert_eq!(code, Some(1000), "{driver}: the echo's close, tunnelled");
        let log = relay.usage_log.clone();
        assert!(log.exists(), "the usage log was opened");
        let (clean, recs) = relay.stop_and_read(Duration::from_secs(1));
        assert!(clean);
        assert!(recs.is_empty(), "{driver}: a tunnel meters nothing");
    }
}
