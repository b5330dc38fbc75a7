//! Fault modes, echo mode, TLS and the CLI, observed from the client side.

mod common;

use std::time::Duration;

use common::{create, mock_and_client, types};
use serde_json::{json, Value};
use tollgate_loadtest::client::{self, ClientError, ClientOpts, ConnectError, Message};
use tollgate_loadtest::mock::{Fault, MockConfig, MockUpstream, Refusal};
use tollgate_loadtest::test_tls;

fn interrupted(r: Result<Vec<Value>, ClientError>) -> (Vec<Value>, ClientError) {
    match r {
        Err(ClientError::TurnInterrupted { events, cause }) => (events, *cause),
        other => panic!("expected an interrupted turn, got {other:?}"),
    }
}

#[tokio::test]
async fn abort_fin_ends_the_stream_with_eof_after_n_deltas() {
    let (mock, mut c) = mock_and_client(MockConfig::default()).await;
    let meta = json!({"metadata": {"mock_fault": "abort_fin", "mock_after_deltas": "3"}});
    let (events, cause) = interrupted(c.turn(&create(meta)).await);
    assert!(matches!(cause, ClientError::Eof), "{cause:?}");
    assert_eq!(events.len(), 4 + 3, "{:?}", types(&events));
    assert!(mock.ledger().is_empty());
}

#[tokio::test]
async fn abort_fin_cuts_a_function_call_after_n_argument_deltas() {
    let (mock, mut c) = mock_and_client(MockConfig::default()).await;
    let tools = json!([{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]);
    let call = json!({"tools": tools, "tool_choice": "required",
        "metadata": {"mock_fault": "abort_fin", "mock_after_deltas": "3"}});
    let (events, cause) = interrupted(c.turn(&create(call)).await);
    assert!(matches!(cause, ClientError::Eof), "{cause:?}");
    let mut want = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
    ];
    want.extend(["response.function_call_arguments.delta"; 3]);
    assert_eq!(types(&events), want);
    assert_eq!(events[2]["item"]["type"], "function_call");
    assert!(mock.ledger().is_empty());
}

#[tokio::test]
async fn abort_rst_resets_the_connection() {
    let cfg = MockConfig {
        fault: Some(Fault::AbortRst { after_deltas: 1 }),
        ..MockConfig::default()
    };
    let (mock, mut c) = mock_and_client(cfg).await;
    let (events, cause) = interrupted(c.turn(&create(json!({}))).await);
    assert!(matches!(cause, ClientError::Reset), "{cause:?}");
    assert!(events.len() <= 5);
    assert!(mock.ledger().is_empty());
}

#[tokio::test]
async fn refusal_returns_status_retry_after_and_body_without_upgrading() {
    let cfg = MockConfig {
        refuse: Some(Refusal::new(429).with_retry_after("3")),
        ..MockConfig::default()
    };
    let mock = MockUpstream::start(cfg).await.expect("mock");
    match client::connect(&mock.url(), ClientOpts::default()).await {
        Err(ConnectError::Refused {
            status,
            headers,
            body,
        }) => {
            assert_eq!(status, 429);
            assert!(headers
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case("retry-after") && v == "3"));
            let v: Value = serde_json::from_str(&body).expect("json body");
            assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        (mock.connections(), mock.upgrades(), mock.requests().len()),
        (1, 0, 1)
    );
}

#[tokio::test]
async fn bad_accept_and_unoffered_extension_fail_the_client_handshake() {
    for (fault, want) in [
        (Fault::BadAccept, "accept"),
        (Fault::OfferExtension, "extension"),
    ] {
        let mock = MockUpstream::start(MockConfig {
            fault: Some(fault),
            ..MockConfig::default()
        })
        .await
        .expect("mock");
        let err = client::connect(&mock.url(), ClientOpts::default())
            .await
            .expect_err("must fail");
        let ok = match want {
            "accept" => matches!(err, ConnectError::BadAccept { got: Some(_), .. }),
            _ => {
                matches!(&err, ConnectError::UnexpectedExtension { value } if value == "permessage-deflate")
            }
        };
        assert!(ok, "{want}: {err:?}");
        assert_eq!(mock.upgrades(), 1);
    }
}

#[tokio::test]
async fn masked_server_frames_are_rejected_with_1002() {
    let cfg = MockConfig {
        fault: Some(Fault::MaskedFrames),
        ..MockConfig::default()
    };
    let (mock, mut c) = mock_and_client(cfg).await;
    let (events, cause) = interrupted(c.turn(&create(json!({}))).await);
    assert!(events.is_empty());
    assert!(matches!(cause, ClientError::MaskedFrame), "{cause:?}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let close = mock
        .received()
        .into_iter()
        .find(|f| f.opcode == 8)
        .expect("client close recorded");
    assert_eq!(close.payload.get(..2), Some(&1002u16.to_be_bytes()[..]));
    assert!(close.was_masked);
}

#[tokio::test]
async fn fragmented_messages_use_continuations_and_reassemble() {
    let cfg = MockConfig {
        fault: Some(Fault::Fragmented { pieces: 3 }),
        deltas: 2,
        ..MockConfig::default()
    };
    let (_mock, mut c) = mock_and_client(cfg).await;
    c.send_text(&create(json!({}))).await.expect("send");
    let shape: Vec<(bool, u8)> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let f = c.recv_frame().await.expect("frame");
            assert!(!f.masked);
            v.push((f.fin, f.opcode));
        }
        v
    };
    assert_eq!(shape, vec![(false, 1), (false, 0), (true, 0)]);
    loop {
        match c.recv().await.expect("reassembled event") {
            Message::Text(t) if t.contains("\"type\":\"response.completed\"") => break,
            Message::Text(t) => assert!(serde_json::from_str::<Value>(&t).is_ok(), "{t}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    let events = c
        .turn(&create(json!({})))
        .await
        .expect("turn over fragments");
    assert_eq!(
        types(&events),
        common::expected_types(2, "response.completed")
    );
}

#[tokio::test]
async fn huge_terminal_and_close_after_error() {
    let (mock, mut c) = mock_and_client(MockConfig::default()).await;
    let huge = json!({"metadata": {"mock_fault": "huge_terminal", "mock_bytes": 3_000_000}});
    let events = c.turn(&create(huge)).await.expect("huge turn");
    let instr = events.last().expect("terminal")["response"]["instructions"]
        .as_str()
        .map(str::len);
    assert_eq!(instr, Some(3_000_000));
    assert_eq!(mock.ledger().len(), 1);

    let cae = json!({"metadata": {"mock_fault": "close_after_error", "mock_close_code": 1013, "mock_error_code": "overloaded"}});
    let events = c
        .turn(&create(cae))
        .await
        .expect("turn ends at the error event");
    assert_eq!(
        types(&events),
        ["response.created", "response.in_progress", "error"]
    );
    assert_eq!(events[2]["error"]["code"], "overloaded");
    assert!(matches!(
        c.recv().await.expect("close"),
        Message::Close(Some(1013), _)
    ));
    assert_eq!(mock.ledger().len(), 1);
}

#[tokio::test]
async fn a_stalled_lane_blocks_only_itself() {
    let mock = MockUpstream::start(MockConfig::default())
        .await
        .expect("mock");
    let opts = ClientOpts {
        recv_timeout: Some(Duration::from_millis(300)),
        ..ClientOpts::default()
    };
    let mut c = client::connect(&mock.url(), opts).await.expect("connect");
    let stall = json!({"stream_id": "stuck", "metadata": {"mock_fault": "stall"}});
    c.send_text(&create(stall)).await.expect("send");
    assert!(matches!(c.recv().await, Err(ClientError::Timeout)));
    let other = c
        .turn(&create(json!({"stream_id": "free"})))
        .await
        .expect("other lane");
    assert!(other.iter().all(|e| e["stream_id"] == "free"));
}

#[tokio::test]
async fn echo_mode_is_byte_exact_for_2_mib_messages() {
    let (mock, mut c) = mock_and_client(MockConfig {
        echo: true,
        ..MockConfig::default()
    })
    .await;
    let text: String = "ab☃\"\\\n".chars().cycle().take(1_600_000).collect();
    assert!(text.len() > 2 << 20);
    c.send_fragmented(1, text.as_bytes(), 4)
        .await
        .expect("send fragmented text");
    let mut got = Vec::new();
    while got.len() < text.len() {
        got.extend(c.recv_frame().await.expect("echoed frame").payload);
    }
    assert_eq!(got, text.as_bytes(), "frames echoed verbatim");
    let bin: Vec<u8> = (0..(2usize << 20)).map(|i| (i * 31 % 251) as u8).collect();
    c.send_binary(&bin).await.expect("send binary");
    assert_eq!(c.recv().await.expect("binary echo"), Message::Binary(bin));
    c.send_fragmented(1, text.as_bytes(), 5)
        .await
        .expect("again");
    assert_eq!(c.recv().await.expect("reassembled"), Message::Text(text));
    assert!(mock.received().iter().all(|f| f.was_masked));
}

#[tokio::test]
async fn wss_with_generated_certificates() {
    let tls = test_tls().expect("test tls");
    let cfg = MockConfig {
        tls: Some(tls.server_config().expect("server config")),
        ..MockConfig::default()
    };
    let mock = MockUpstream::start(cfg).await.expect("mock");
    assert!(mock.url().starts_with("wss://localhost:"));
    let opts = ClientOpts {
        tls_ca_pem: Some(tls.ca_pem.clone().into_bytes()),
        ..ClientOpts::default()
    };
    let mut c = client::connect(&mock.url(), opts)
        .await
        .expect("wss connect");
    let events = c.turn(&create(json!({}))).await.expect("turn");
    assert_eq!(
        events.last().expect("terminal")["type"],
        "response.completed"
    );

    let other_ca = test_tls().expect("other tls");
    let opts = ClientOpts {
        tls_ca_pem: Some(other_ca.ca_pem.into_bytes()),
        ..ClientOpts::default()
    };
    let err = client::connect(&mock.url(), opts)
        .await
        .expect_err("untrusted");
    assert!(matches!(err, ConnectError::Tls(_)), "{err:?}");
}

#[tokio::test]
async fn cli_serves_and_maps_usage_errors_to_64() {
    use std::io::BufRead;
    let bin = env!("CARGO_BIN_EXE_loadtest");
    let out = std::process::Command::new(bin)
        .args(["mock-upstream", "--deltas", "many"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--deltas"));
    // Without a relay binary the bench stops before running anything.
    let out = std::process::Command::new(bin)
        .args(["bench", "--tollgate", "/nonexistent/tollgate"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cargo build --release"));

    let mut child = std::process::Command::new(bin)
        .args(["mock-upstream", "--listen", "127.0.0.1:0", "--deltas", "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("listening line");
    let url = line.trim().rsplit(' ').next().expect("url").to_string();
    let result = async {
        let mut c = client::connect(&url, ClientOpts::default())
            .await
            .expect("connect to CLI mock");
        c.turn(&create(json!({}))).await
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(types(&result.expect("turn")).len(), 4 + 2 + 4);
}

#[tokio::test]
async fn client_protocol_violations_are_closed_with_the_right_code() {
    // (raw bytes, expected close code): unmasked text, masked invalid UTF-8 text,
    // masked continuation without a start.
    let cases: [(&[u8], u16); 3] = [
        (b"\x81\x02hi", 1002),
        (b"\x81\x82\x00\x00\x00\x00\xff\xfe", 1007),
        (b"\x80\x82\x00\x00\x00\x00hi", 1002),
    ];
    for (raw, code) in cases {
        let (mock, mut c) = mock_and_client(MockConfig::default()).await;
        c.send_raw(raw).await.expect("send raw");
        match c.recv().await {
            Ok(Message::Close(got, _)) => assert_eq!(got, Some(code), "{raw:?}"),
            other => panic!("{raw:?}: expected close {code}, got {other:?}"),
        }
        let unmasked = mock.received().iter().any(|f| !f.was_masked);
        assert_eq!(unmasked, code == 1002 && raw[1] & 0x80 == 0, "{raw:?}");
    }
}
