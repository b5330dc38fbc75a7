use super::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn req_with(lines: &[&str]) -> Vec<u8> {
    let mut s = String::from("GET /v1/responses?a=1 HTTP/1.1\r\n");
    for l in lines {
        s.push_str(l);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

const GOOD: &[&str] = &[
    "Host: relay:8080",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
];

fn good_with(replace: &str, with: Option<&str>) -> Vec<u8> {
    let mut lines: Vec<&str> = GOOD
        .iter()
        .copied()
        .filter(|l| !l.starts_with(replace))
        .collect();
    if let Some(w) = with {
        lines.push(w);
    }
    req_with(&lines)
}

fn err_of(buf: &[u8]) -> HandshakeError {
    match parse_request(buf, &Limits::default()) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn rfc6455_accept_key_example() {
    assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn valid_request_parses_and_keeps_pipelined_bytes() {
    let mut buf = req_with(&[GOOD, &["OpenAI-Beta: responses_websockets=2026-02-06"]].concat());
    let head = buf.len();
    buf.extend_from_slice(b"\x81\x85rest");
    let req = parse_request(&buf, &Limits::default()).unwrap().unwrap();
    assert_eq!(req.method, "GET");
    assert_eq!(req.path_and_query, "/v1/responses?a=1");
    assert_eq!(req.head_len, head);
    assert_eq!(req.ws_key, KEY);
    assert_eq!(req.headers[0].0, "Host");
    assert_eq!(
        req.header("openai-beta"),
        Some(&b"responses_websockets=2026-02-06"[..])
    );
    assert_eq!(req.header("OPENAI-BETA"), req.header("openai-beta"));
    assert_eq!(req.header("missing"), None);
}

#[test]
fn incomplete_head_is_none_at_every_prefix() {
    let buf = req_with(GOOD);
    let mut scanner = HeadScanner::new();
    for n in 0..buf.len() {
        assert_eq!(
            parse_request_with(&buf[..n], &Limits::default(), &mut scanner),
            Ok(None),
            "prefix {n}"
        );
    }
    assert!(parse_request_with(&buf, &Limits::default(), &mut scanner)
        .unwrap()
        .is_some());
}

#[test]
fn status_mapping() {
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            b"POST /v1/responses HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            405,
            "method_not_allowed",
        ),
        (
            b"GET /v1/responses HTTP/1.0\r\nHost: a\r\n\r\n".to_vec(),
            400,
            "unsupported_http_version",
        ),
        (good_with("Upgrade", None), 426, "upgrade_required"),
        (req_with(&["Host: a"]), 426, "upgrade_required"),
        (
            good_with("Upgrade", Some("Upgrade: h2c")),
            400,
            "unsupported_upgrade",
        ),
        (
            good_with("Connection", Some("Connection: keep-alive")),
            400,
            "missing_connection_upgrade",
        ),
        (
            good_with("Connection", None),
            400,
            "missing_connection_upgrade",
        ),
        (
            good_with("Sec-WebSocket-Version", Some("Sec-WebSocket-Version: 8")),
            426,
            "unsupported_websocket_version",
        ),
        (
            good_with("Sec-WebSocket-Version", None),
            426,
            "unsupported_websocket_version",
        ),
        (
            good_with("Sec-WebSocket-Key", None),
            400,
            "missing_websocket_key",
        ),
        (
            good_with("Sec-WebSocket-Key", Some("Sec-WebSocket-Key: c2hvcnQ=")),
            400,
            "invalid_websocket_key",
        ),
        (
            good_with(
                "Sec-WebSocket-Key",
                Some("Sec-WebSocket-Key: !!!notbase64!!!!!!!!!=="),
            ),
            400,
            "invalid_websocket_key",
        ),
        (
            good_with("Host", Some("Content-Length: 5")),
            400,
            "body_not_allowed",
        ),
        (
            good_with("Host", Some("Transfer-Encoding: chunked")),
            400,
            "body_not_allowed",
        ),
        (good_with("Host", None), 400, "missing_host"),
        (
            good_with("Host", Some("Host: a\r\nHost: b")),
            400,
            "duplicate_header",
        ),
        (
            b"GET /x HTTP/1.1\r\nBad Header: x\r\n\r\n".to_vec(),
            400,
            "malformed_request",
        ),
        (
            b"GET http://evil/ HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            400,
            "malformed_request",
        ),
        (
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            400,
            "malformed_request",
        ),
    ];
    for (buf, status, code) in cases {
        let e = err_of(&buf);
        assert_eq!(
            (e.status(), e.code()),
            (status, code),
            "{}",
            String::from_utf8_lossy(&buf)
        );
    }
}

#[test]
fn tolerant_token_lists_and_zero_content_length() {
    let buf = req_with(&[
        "Host: a",
        "Upgrade: WebSocket",
        "Connection: keep-alive, Upgrade",
        "Sec-WebSocket-Version:  13 ",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Content-Length: 0",
    ]);
    assert!(parse_request(&buf, &Limits::default()).unwrap().is_some());
    // A token that merely contains "upgrade" is not the token.
    let bad = good_with("Connection", Some("Connection: upgraded"));
    assert_eq!(err_of(&bad), HandshakeError::ConnectionNotUpgrade);
}

#[test]
fn errors_early_on_bad_request_line_before_head_ends() {
    let limits = Limits::default();
    assert_eq!(
        parse_request(b"POST / HTTP/1.1\r\nHost: a\r\n", &limits),
        Err(HandshakeError::MethodNotAllowed)
    );
    assert_eq!(
        parse_request(b"GET / HTTP/1.0\r\n", &limits),
        Err(HandshakeError::HttpVersion)
    );
    assert!(matches!(
        parse_request(b"\x16\x03\x01\x02\x00\x01\r\n", &limits),
        Err(HandshakeError::Malformed(_))
    ));
    assert_eq!(
        parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n", &limits),
        Ok(None)
    );
}

#[test]
fn oversized_head_without_end_is_431_even_when_incomplete() {
    let limits = Limits::default();
    let mut buf = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    buf.resize(limits.max_header_bytes, b'a');
    let e = parse_request(&buf, &limits).unwrap_err();
    assert_eq!((e.status(), e.code()), (431, "headers_too_large"));
    // One byte under the limit is still just incomplete.
    assert_eq!(
        parse_request(&buf[..limits.max_header_bytes - 1], &limits),
        Ok(None)
    );
}

#[test]
fn head_of_exactly_the_limit_is_accepted() {
    let small = req_with(GOOD);
    let limits = Limits {
        max_header_bytes: small.len(),
        max_headers: 100,
    };
    assert!(parse_request(&small, &limits).unwrap().is_some());
    let tight = Limits {
        max_header_bytes: small.len() - 1,
        max_headers: 100,
    };
    assert_eq!(err_of_with(&small, &tight).status(), 431);
}

fn err_of_with(buf: &[u8], limits: &Limits) -> HandshakeError {
    parse_request(buf, limits).unwrap_err()
}

#[test]
fn ten_thousand_headers_is_431() {
    let mut lines: Vec<String> = GOOD.iter().map(|s| s.to_string()).collect();
    lines.extend((0..10_000).map(|i| format!("x{i}: y")));
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let buf = req_with(&refs);
    let big = Limits {
        max_header_bytes: 1 << 20,
        max_headers: 100,
    };
    assert_eq!(
        err_of_with(&buf, &big),
        HandshakeError::TooManyHeaders { limit: 100 }
    );
    assert_eq!(err_of_with(&buf, &Limits::default()).status(), 431);
}

#[test]
fn too_many_headers_detected_once_complete_and_while_incomplete() {
    let limits = Limits {
        max_header_bytes: 1 << 20,
        max_headers: 10,
    };
    let mut lines: Vec<String> = GOOD.iter().map(|s| s.to_string()).collect();
    lines.extend((0..6).map(|i| format!("x{i}: y")));
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let buf = req_with(&refs);
    assert_eq!(
        err_of_with(&buf, &limits),
        HandshakeError::TooManyHeaders { limit: 10 }
    );
    // Exactly at the limit passes.
    let ok = req_with(&refs[..10]);
    assert!(parse_request(&ok, &limits).unwrap().is_some());
    // Incomplete head with too many lines fails before its end arrives.
    let partial = &buf[..buf.len() - 2];
    assert_eq!(parse_request(&ok[..ok.len() - 2], &limits), Ok(None));
    assert_eq!(
        err_of_with(partial, &limits),
        HandshakeError::TooManyHeaders { limit: 10 }
    );
}

#[test]
fn one_byte_dribble_is_linear() {
    let mut lines: Vec<String> = GOOD.iter().map(|s| s.to_string()).collect();
    lines.push(format!("X-Pad: {}", "p".repeat(16 * 1024 - 300)));
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let buf = req_with(&refs);
    assert!(buf.len() > 15 * 1024 && buf.len() <= 16 * 1024);
    let limits = Limits::default();
    let mut scanner = HeadScanner::new();
    let start = std::time::Instant::now();
    let mut done = None;
    for n in 1..=buf.len() {
        if let Some(r) = parse_request_with(&buf[..n], &limits, &mut scanner).unwrap() {
            done = Some((n, r));
        }
    }
    let (n, req) = done.unwrap();
    assert_eq!((n, req.head_len), (buf.len(), buf.len()));
    // Each call re-examines at most 3 old bytes plus the new one.
    assert!(
        scanner.examined() <= 4 * buf.len(),
        "examined {}",
        scanner.examined()
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn bare_lf_head_is_rejected_not_confused() {
    // httparse would end this head at "\n\n"; the relay insists on one CRLF CRLF boundary.
    let buf = b"GET / HTTP/1.1\nHost: a\n\nX: y\r\n\r\n";
    assert_eq!(err_of(buf), HandshakeError::MalformedHead);
}

#[test]
fn response_101_has_accept_and_extras_but_no_extensions() {
    let extra = vec![
        ("x-codex-turn-state".to_string(), b"abc".to_vec()),
        ("openai-model".to_string(), b"gpt-5".to_vec()),
        (
            "Sec-WebSocket-Extensions".to_string(),
            b"permessage-deflate".to_vec(),
        ),
        ("Connection".to_string(), b"close".to_vec()),
    ];
    let out = String::from_utf8(response_101(KEY, &extra)).unwrap();
    assert!(out.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(out.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(out.contains("\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"));
    assert!(out.contains("\r\nx-codex-turn-state: abc\r\n"));
    assert!(out.contains("\r\nopenai-model: gpt-5\r\n"));
    assert!(!out.to_ascii_lowercase().contains("extensions"));
    assert_eq!(out.matches("Connection").count(), 1);
    assert!(out.ends_with("\r\n\r\n"));
}

#[test]
fn crlf_injection_is_impossible() {
    let extra = vec![
        ("x-evil".to_string(), b"a\r\nSet-Cookie: pwned".to_vec()),
        ("x-lf".to_string(), b"a\nb".to_vec()),
        ("x-nul".to_string(), b"a\0b".to_vec()),
        ("Bad\r\nName".to_string(), b"v".to_vec()),
        ("x-ok".to_string(), b"fine\tvalue".to_vec()),
    ];
    let out = response_101(KEY, &extra);
    let text = String::from_utf8_lossy(&out);
    assert!(!text.contains("pwned") && !text.contains("x-evil") && !text.contains("x-lf"));
    assert!(!text.contains("x-nul") && !text.contains("Bad"));
    assert!(text.contains("x-ok: fine\tvalue\r\n"));
    let err = error_response(
        429,
        "t",
        "c",
        "m\r\nX-Injected: 1",
        &[("Retry-After", "1\r\nX-Injected: 2")],
    );
    let text = String::from_utf8(err).unwrap();
    assert!(!text.contains("\r\nX-Injected"));
    assert!(!text.contains("Retry-After"));
}

#[test]
fn error_response_is_complete_json() {
    let out = error_response(
        426,
        "invalid_request_error",
        "upgrade_required",
        "say \"hi\"",
        &[("Sec-WebSocket-Version", "13")],
    );
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
    assert!(head.contains("\r\nContent-Type: application/json"));
    assert!(head.contains("\r\nConnection: close"));
    assert!(head.contains("\r\nSec-WebSocket-Version: 13"));
    assert!(head.contains(&format!("\r\nContent-Length: {}", body.len())));
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["error"]["code"], "upgrade_required");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["message"], "say \"hi\"");
}

#[test]
fn handshake_error_response_carries_required_headers() {
    let text = String::from_utf8(HandshakeError::WebSocketVersion.to_response()).unwrap();
    assert!(text.starts_with("HTTP/1.1 426 "));
    assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
    let text = String::from_utf8(HandshakeError::MethodNotAllowed.to_response()).unwrap();
    assert!(text.starts_with("HTTP/1.1 405 ") && text.contains("\r\nAllow: GET\r\n"));
    let text = String::from_utf8(HandshakeError::UpgradeRequired.to_response()).unwrap();
    assert!(text.contains("\r\nUpgrade: websocket\r\n"));
}

#[test]
fn debug_output_redacts_credentials() {
    let buf = req_with(
        &[
            GOOD,
            &[
                "Authorization: Bearer sk-secret-1",
                "api-key: az-secret-2",
                "X-Seen: visible",
            ],
        ]
        .concat(),
    );
    let req = parse_request(&buf, &Limits::default()).unwrap().unwrap();
    let dbg = format!("{req:?}");
    assert!(
        !dbg.contains("sk-secret-1") && !dbg.contains("az-secret-2"),
        "{dbg}"
    );
    assert!(
        dbg.contains("<redacted>") && dbg.contains("visible"),
        "{dbg}"
    );
}
