//! The client handshake: every refusal happens before any upstream dial.
mod common;

use common::*;
use std::io::Write;
use std::time::{Duration, Instant};

fn assert_json_error(body: &str, code: &str) {
    let start = body.find("\r\n\r\n").map(|i| i + 4).unwrap_or(0);
    let v: serde_json::Value = serde_json::from_str(&body[start..])
        .unwrap_or_else(|e| panic!("JSON body expected ({e}): {body}"));
    assert_eq!(v["error"]["code"], code, "{body}");
    assert!(v["error"]["message"].is_string(), "{body}");
}

#[test]
fn bad_requests_get_the_right_status_and_never_dial() {
    for driver in DRIVERS {
        let up = CountingUpstream::start();
        let relay = start_relay(driver, &up.url(), &[]);
        let auth = auth_line();
        let cases: Vec<(String, u16)> = vec![
            // not GET
            (
                upgrade_request("/v1/responses", &auth).replacen("GET", "POST", 1),
                405,
            ),
            // plain GET on a WS path
            (
                format!("GET /v1/responses HTTP/1.1\r\nHost: x\r\n{auth}\r\n"),
                426,
            ),
            // wrong version
            (
                upgrade_request("/v1/responses", &auth).replace("Version: 13", "Version: 12"),
                426,
            ),
            // bad key
            (
                upgrade_request("/v1/responses", &auth)
                    .replace("dGhlIHNhbXBsZSBub25jZQ==", "short"),
                400,
            ),
            // h2c upgrade
            (
                upgrade_request("/v1/responses", &auth)
                    .replace("Upgrade: websocket", "Upgrade: h2c"),
                400,
            ),
            // body on the upgrade
            (
                upgrade_request("/v1/responses", &format!("{auth}Content-Length: 5\r\n")),
                400,
            ),
            // missing key → 401
            (upgrade_request("/v1/responses", ""), 401),
            // wrong key → 401
            (
                upgrade_request("/v1/responses", "Authorization: Bearer nope\r\n"),
                401,
            ),
            // right key presented as api-key but wrong value
            (
                upgrade_request("/v1/responses", "api-key: tg-test-relay-key-0002\r\n"),
                401,
            ),
        ];
        for (req, want) in cases {
            let (status, resp) = raw_http(relay.addr, req.as_bytes());
            assert_eq!(
                status, want,
                "driver {driver}, request:\n{req}\nresponse:\n{resp}"
            );
            if status == 426 && req.contains("Version: 12") {
                assert!(
                    resp.to_ascii_lowercase()
                        .contains("sec-websocket-version: 13"),
                    "{resp}"
                );
            }
            if status == 401 {
                assert_json_error(
                    &resp,
                    if req.contains("Authorization") || req.contains("api-key") {
                        "invalid_api_key"
                    } else {
                        "missing_api_key"
                    },
                );
                assert!(
                    !resp.contains(PROVIDER_KEY) && !resp.contains("nope"),
                    "no key echoed: {resp}"
                );
            }
        }
        assert_eq!(
            up.count(),
            0,
            "driver {driver}: upstream must see zero connections"
        );
    }
}

#[test]
fn oversized_heads_get_431() {
    for driver in DRIVERS {
        let up = CountingUpstream::start();
        let relay = start_relay(
            driver,
            &up.url(),
            &["--max-headers", "100", "--max-header-bytes", "16KiB"],
        );
        let many: String = (0..10_000).map(|i| format!("X-H{i}: v\r\n")).collect();
        let (status, _) = raw_http(
            relay.addr,
            upgrade_request("/v1/responses", &many).as_bytes(),
        );
        assert_eq!(status, 431, "driver {driver}: 10k headers");
        let big = format!("X-Big: {}\r\n", "a".repeat(20_000));
        let (status, _) = raw_http(
            relay.addr,
            upgrade_request("/v1/responses", &big).as_bytes(),
        );
        assert_eq!(status, 431, "driver {driver}: 20 KB header");
        assert_eq!(up.count(), 0);
    }
}

#[test]
fn dribbled_head_is_refused_at_the_limit() {
    // The head crosses the limit one byte at a time and never ends. A relay that refuses at
    // the limit answers 431 now; one that waits for the blank line (or reads without bound)
    // says nothing until the handshake timeout, which is set far beyond the read timeout.
    // (Counting the bytes the client managed to write is no measure: the kernel's socket
    // buffers take them whether or not the relay reads.)
    let up = CountingUpstream::start();
    let relay = start_relay(
        "auto",
        &up.url(),
        &["--max-header-bytes", "4KiB", "--handshake-timeout", "60s"],
    );
    let mut s = std::net::TcpStream::connect(relay.addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!("GET /v1/responses HTTP/1.1\r\nX-Pad: {}", "b".repeat(4096));
    for (i, b) in head.as_bytes().iter().enumerate() {
        if s.write_all(&[*b]).is_err() {
            break; // the relay answered and closed
        }
        if i % 512 == 0 {
            std::thread::sleep(Duration::from_millis(2)); // several reads on the relay side
        }
    }
    let (status, _) = read_http_response(&mut s);
    assert_eq!(
        status, 431,
        "a head past the limit is refused without its end"
    );
    assert_eq!(up.count(), 0);
}

#[test]
fn handshake_timeout_closes_idle_half_handshakes() {
    let up = CountingUpstream::start();
    let relay = start_relay("auto", &up.url(), &["--handshake-timeout", "300ms"]);
    let started = Instant::now();
    let mut conns: Vec<_> = (0..50)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(relay.addr).unwrap();
            s.write_all(b"GET /v1/responses HTTP/1.1\r\n").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        })
        .collect();
    for s in conns.iter_mut() {
        let mut b = [0u8; 16];
        // EOF (Ok(0)) once the relay drops the half-handshake.
        assert_eq!(std::io::Read::read(s, &mut b).unwrap_or(0), 0);
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed at the timeout, took {:?}",
        started.elapsed()
    );
    assert_eq!(up.count(), 0);
}

#[test]
fn disallowed_origin_is_403_exact_match_only() {
    let up = CountingUpstream::start();
    let relay = start_relay(
        "auto",
        &up.url(),
        &["--allowed-origin", "https://app.example.com"],
    );
    let auth = auth_line();
    for origin in [
        "https://app.example.com.evil.com",
        "https://evil.com/https://app.example.com",
        "https://app.example.co",
    ] {
        let (status, _) = raw_http(
            relay.addr,
            upgrade_request("/v1/responses", &format!("{auth}Origin: {origin}\r\n")).as_bytes(),
        );
        assert_eq!(status, 403, "{origin}");
    }
    assert_eq!(up.count(), 0);
}

#[test]
fn bad_flags_exit_64_naming_the_flag() {
    let bin = env!("CARGO_BIN_EXE_tollgate");
    for (args, flag) in [
        (vec!["--workers", "zero"], "--workers"),
        (
            vec!["--passthrough-auth", "--buffer-bytes", "1"],
            "--buffer-bytes",
        ),
        (vec!["--upstream", "ftp://x"], "--client-keys"),
        (
            vec!["--passthrough-auth", "--upstream", "ftp://x"],
            "--upstream",
        ),
        (
            vec![
                "--client-keys",
                "/dev/null",
                "--upstream-header",
                "X: ${TOLLGATE_SURELY_UNSET_VAR}",
            ],
            "TOLLGATE_SURELY_UNSET_VAR",
        ),
        (
            vec!["--passthrough-auth", "--listen", "not-an-addr"],
            "--listen",
        ),
    ] {
        let out = std::process::Command::new(bin)
            .args(&args)
            .env_remove("OPENAI_API_KEY")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}
