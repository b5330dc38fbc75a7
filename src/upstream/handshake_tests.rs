use super::*;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::server::handshake::{parse_request, UpgradeRequest};

fn client(extra: &[&str]) -> UpgradeRequest {
    let mut s = String::from(
        "GET /v1/responses?trace=1&x=%20y HTTP/1.1\r\nHost: relay:8080\r\nUpgrade: websocket\r\n\
         Connection: keep-alive, Upgrade, X-Hop\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
    );
    for l in extra {
        s.push_str(l);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    parse_request(s.as_bytes(), &Limits::default())
        .unwrap()
        .unwrap()
}

const CODEX: &[&str] = &[
    "OpenAI-Beta: responses_websockets=2026-02-06",
    "session_id: 0199-abc",
    "originator: codex_cli_rs",
    "x-client-request-id: req-42",
    "User-Agent: codex_cli_rs/0.169",
    "Authorization: Bearer sk-client-secret",
    "api-key: az-client-secret",
    "Keep-Alive: timeout=5",
    "X-Hop: hop-value",
    "Proxy-Authorization: Basic cHJveHk=",
    "TE: trailers",
];

fn text(r: &UpstreamRequest) -> String {
    String::from_utf8(r.bytes.clone()).unwrap()
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack
        .to_ascii_lowercase()
        .matches(&needle.to_ascii_lowercase())
        .count()
}

#[test]
fn request_line_host_and_handshake_headers() {
    let r = build_request(&client(CODEX), "api.openai.com", "/openai/", &[], false);
    let t = text(&r);
    assert!(
        t.starts_with(
            "GET /openai/v1/responses?trace=1&x=%20y HTTP/1.1\r\nHost: api.openai.com\r\n"
        ),
        "{t}"
    );
    assert_eq!(BASE64.decode(&r.ws_key).unwrap().len(), 16);
    assert!(t.contains(&format!("\r\nSec-WebSocket-Key: {}\r\n", r.ws_key)));
    assert_ne!(r.ws_key, "dGhlIHNhbXBsZSBub25jZQ==");
    assert_ne!(
        r.ws_key,
        build_request(&client(CODEX), "h", "", &[], false).ws_key
    );
    // Our own server-side parser accepts it: a well-formed RFC 6455 client request.
    let parsed = parse_request(&r.bytes, &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(parsed.head_len, r.bytes.len());
    assert_eq!(parsed.ws_key, r.ws_key);
    assert_eq!(parsed.header("host"), Some(&b"api.openai.com"[..]));
}

#[test]
fn client_headers_reach_upstream_unchanged_hop_by_hop_do_not() {
    let t = text(&build_request(
        &client(CODEX),
        "api.openai.com",
        "",
        &[],
        false,
    ));
    for h in &CODEX[..7] {
        assert!(t.contains(&format!("\r\n{h}\r\n")), "{h} missing in {t}");
    }
    for gone in [
        "keep-alive",
        "x-hop",
        "proxy-authorization",
        "\r\nte:",
        "relay:8080",
        "permessage-deflate",
        "dGhlIHNhbXBsZSBub25jZQ==",
    ] {
        assert_eq!(count(&t, gone), 0, "{gone} leaked into {t}");
    }
    assert_eq!(count(&t, "\r\nUpgrade:"), 1);
    assert_eq!(count(&t, "\r\nConnection:"), 1);
    assert_eq!(count(&t, "\r\nSec-WebSocket-Version:"), 1);
    assert_eq!(count(&t, "\r\nHost:"), 1);
}

#[test]
fn credentials_stripped_and_injected_exactly_once() {
    let inject = vec![(
        "Authorization".to_string(),
        "Bearer sk-provider".to_string(),
    )];
    let t = text(&build_request(&client(CODEX), "h", "", &inject, true));
    assert_eq!(count(&t, "sk-client-secret"), 0);
    assert_eq!(count(&t, "az-client-secret"), 0);
    assert_eq!(count(&t, "\r\nAuthorization:"), 1);
    assert!(t.contains("\r\nAuthorization: Bearer sk-provider\r\n"));
    // Without stripping, the client's credentials pass (passthrough mode)...
    let t = text(&build_request(&client(CODEX), "h", "", &[], false));
    assert!(
        t.contains("\r\nAuthorization: Bearer sk-client-secret\r\n")
            && t.contains("\r\napi-key: az-client-secret\r\n")
    );
    // ...but an injected header still replaces the same-named client header.
    let inject = vec![("API-KEY".to_string(), "az-provider".to_string())];
    let t = text(&build_request(&client(CODEX), "h", "", &inject, false));
    assert_eq!(count(&t, "\r\napi-key:"), 1);
    assert!(t.contains("\r\nAPI-KEY: az-provider\r\n"));
}

#[test]
fn injected_header_with_crlf_is_dropped() {
    let inject = vec![("X-Evil".to_string(), "a\r\nX-Smuggled: 1".to_string())];
    let t = text(&build_request(&client(&[]), "h", "", &inject, true));
    assert!(!t.contains("X-Smuggled") && !t.contains("X-Evil"));
    let t = text(&build_request(
        &client(&[]),
        "h\r\nX-Smuggled: 1",
        "",
        &[],
        true,
    ));
    assert!(!t.contains("X-Smuggled"));
    let t = text(&build_request(
        &client(&[]),
        "h",
        "/v1 HTTP/1.1\r\nX-Smuggled: 1\r\n",
        &[],
        true,
    ));
    assert!(
        !t.contains("\r\nX-Smuggled") && t.starts_with("GET /v1HTTP/1.1X-Smuggled:1/v1/responses?"),
        "{t}"
    );
}

#[test]
fn subprotocol_offer_is_forwarded_and_reported() {
    let r = build_request(
        &client(&["Sec-WebSocket-Protocol: a, b", "Sec-WebSocket-Protocol: c"]),
        "h",
        "",
        &[],
        true,
    );
    assert_eq!(r.offered_protocols.as_deref(), Some(&b"a, b, c"[..]));
    assert!(text(&r).contains("\r\nSec-WebSocket-Protocol: a, b\r\n"));
    assert_eq!(
        build_request(&client(&[]), "h", "", &[], true).offered_protocols,
        None
    );
}

fn reply_101(key: &str, extra: &[&str]) -> Vec<u8> {
    let mut s = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_key(key)
    );
    for l in extra {
        s.push_str(l);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

const KEY: &str = "x3JJHMbDL1EzLkh9GBhXDw==";

fn parse(
    buf: &[u8],
    offered: Option<&[u8]>,
) -> Result<Option<UpstreamReply>, UpstreamHandshakeError> {
    parse_response(buf, KEY, offered, &Limits::default())
}

#[test]
fn upgraded_reply_keeps_client_facing_headers() {
    let mut buf = reply_101(
        KEY,
        &[
            "x-codex-turn-state: ts-1",
            "openai-model: gpt-5.1",
            "x-request-id: req_9",
            "x-ratelimit-remaining-requests: 99",
            "x-ratelimit-reset-tokens: 1s",
            "Date: Tue, 01 Jan 2030 00:00:00 GMT",
            "Server: cloudflare",
            "Content-Length: 0",
        ],
    );
    let head = buf.len();
    buf.extend_from_slice(b"\x81\x02hi");
    let Some(UpstreamReply::Upgraded { headers, head_len }) = parse(&buf, None).unwrap() else {
        panic!()
    };
    assert_eq!(head_len, head);
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "x-codex-turn-state",
            "openai-model",
            "x-request-id",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-tokens"
        ]
    );
    assert_eq!(headers[0].1, b"ts-1");
}

#[test]
fn incomplete_reply_is_none() {
    let buf = reply_101(KEY, &[]);
    let mut scanner = HeadScanner::new();
    for n in 0..buf.len() {
        assert_eq!(
            parse_response_with(&buf[..n], KEY, None, &Limits::default(), &mut scanner),
            Ok(None)
        );
    }
    assert!(
        parse_response_with(&buf, KEY, None, &Limits::default(), &mut scanner)
            .unwrap()
            .is_some()
    );
    assert!(scanner.examined() <= 4 * buf.len());
}

#[test]
fn invalid_101_is_rejected() {
    use UpstreamHandshakeError as E;
    let wrong = reply_101("dGhlIHNhbXBsZSBub25jZQ==", &[]);
    assert_eq!(parse(&wrong, None), Err(E::WrongAccept));
    let no_accept = b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    assert_eq!(parse(no_accept, None), Err(E::MissingAccept));
    let two = reply_101(
        KEY,
        &[&format!("Sec-WebSocket-Accept: {}", accept_key(KEY))],
    );
    assert_eq!(parse(&two, None), Err(E::MissingAccept));
    let ext = reply_101(KEY, &["Sec-WebSocket-Extensions: permessage-deflate"]);
    assert_eq!(parse(&ext, None), Err(E::ExtensionNotOffered));
    let s = String::from_utf8(reply_101(KEY, &[])).unwrap();
    let no_upgrade = s.replace("Upgrade: websocket\r\n", "");
    assert_eq!(parse(no_upgrade.as_bytes(), None), Err(E::MissingUpgrade));
    let no_conn = s.replace("Connection: Upgrade\r\n", "Connection: keep-alive\r\n");
    assert_eq!(
        parse(no_conn.as_bytes(), None),
        Err(E::MissingConnectionUpgrade)
    );
    let http10 = s.replace("HTTP/1.1", "HTTP/1.0");
    assert_eq!(parse(http10.as_bytes(), None), Err(E::HttpVersion));
    assert_eq!(
        parse(b"HTTP/1.1 100 Continue\r\n\r\n", None),
        Err(E::UnexpectedInformational(100))
    );
    assert!(matches!(
        parse(b"HTTP/1.1 abc\r\n\r\n", None),
        Err(E::Malformed(_))
    ));
    assert_eq!(E::WrongAccept.client_error().status, 502);
    assert_eq!(E::WrongAccept.client_error().code, "upstream_bad_handshake");
}

#[test]
fn subprotocol_accepted_only_if_offered() {
    use UpstreamHandshakeError as E;
    let chose_b = reply_101(KEY, &["Sec-WebSocket-Protocol: b"]);
    assert_eq!(parse(&chose_b, None), Err(E::ProtocolNotOffered));
    assert_eq!(parse(&chose_b, Some(b"a, c")), Err(E::ProtocolNotOffered));
    assert_eq!(
        parse(
            &reply_101(KEY, &["Sec-WebSocket-Protocol: a, b"]),
            Some(b"a, b")
        ),
        Err(E::ProtocolNotOffered)
    );
    let Some(UpstreamReply::Upgraded { headers, .. }) = parse(&chose_b, Some(b"a, b")).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        headers,
        vec![("Sec-WebSocket-Protocol".to_string(), b"b".to_vec())]
    );
}

#[test]
fn refusals_are_reported_with_retry_after_and_length() {
    let buf = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 12\r\n\r\n{\"error\":{}}";
    let reply = parse(buf, None).unwrap().unwrap();
    let head_len = buf.len() - 12;
    assert_eq!(
        reply,
        UpstreamReply::Refused {
            status: 429,
            retry_after: Some("7".into()),
            head_len,
            content_length: Some(12)
        }
    );
    let chunked = b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
    assert!(matches!(
        parse(chunked, None),
        Ok(Some(UpstreamReply::Refused {
            status: 500,
            content_length: None,
            ..
        }))
    ));
    let bad_cl = b"HTTP/1.1 404 Nope\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
    assert_eq!(
        parse(bad_cl, None),
        Err(UpstreamHandshakeError::InvalidContentLength)
    );
    let long_retry = format!(
        "HTTP/1.1 503 Busy\r\nRetry-After: {}\r\n\r\n",
        "9".repeat(65)
    );
    assert!(matches!(
        parse(long_retry.as_bytes(), None),
        Ok(Some(UpstreamReply::Refused {
            retry_after: None,
            ..
        }))
    ));
}

#[test]
fn reply_head_limits() {
    let limits = Limits {
        max_header_bytes: 256,
        max_headers: 4,
    };
    let big = reply_101(KEY, &[&format!("x-pad: {}", "p".repeat(300))]);
    assert_eq!(
        parse_response(&big, KEY, None, &limits),
        Err(UpstreamHandshakeError::HeadersTooLarge { limit: 256 })
    );
    let many = reply_101(KEY, &["a: 1", "b: 2"]);
    assert_eq!(
        parse_response(&many, KEY, None, &limits),
        Err(UpstreamHandshakeError::TooManyHeaders { limit: 4 })
    );
}

/// (upstream status, upstream Retry-After, client status, code, client Retry-After)
type RefusalCase = (
    u16,
    Option<&'static str>,
    u16,
    &'static str,
    Option<&'static str>,
);

#[test]
fn refusal_status_mapping() {
    let cases: [RefusalCase; 10] = [
        (401, None, 502, "upstream_auth_failed", None),
        (403, None, 502, "upstream_auth_failed", None),
        (429, Some("30"), 429, "upstream_rate_limited", Some("30")),
        (429, None, 429, "upstream_rate_limited", None),
        (404, Some("5"), 404, "upstream_refused", None),
        (400, None, 400, "upstream_refused", None),
        (500, None, 502, "upstream_error", None),
        (503, Some("2"), 502, "upstream_error", Some("2")),
        (200, None, 502, "upstream_not_upgraded", None),
        (302, None, 502, "upstream_not_upgraded", None),
    ];
    for (status, retry, want_status, want_code, want_retry) in cases {
        let e = map_refusal(status, retry);
        assert_eq!(
            (e.status, e.code, e.retry_after.as_deref()),
            (want_status, want_code, want_retry),
            "{status}"
        );
        assert!(e.message.contains(&status.to_string()));
    }
    let resp = String::from_utf8(map_refusal(429, Some("30")).to_response()).unwrap();
    assert!(resp.starts_with("HTTP/1.1 429 ") && resp.contains("\r\nRetry-After: 30\r\n"));
    assert!(resp.contains("\"code\":\"upstream_rate_limited\""));
}

#[test]
fn debug_output_hides_the_injected_credential() {
    let inject = vec![(
        "Authorization".to_string(),
        "Bearer sk-provider-secret".to_string(),
    )];
    let r = build_request(&client(CODEX), "h", "", &inject, true);
    let dbg = format!("{r:?}");
    assert!(!dbg.contains("sk-provider-secret"), "{dbg}");
    assert!(
        dbg.contains("GET /v1/responses?trace=1") && dbg.contains("\"Authorization\""),
        "{dbg}"
    );
}
