//! Responses to the client: the `101 Switching Protocols` and JSON error responses.

use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest as _, Sha1};

use super::fields::write_header;

/// The RFC 6455 GUID appended to the key before hashing.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a key: base64(sha1(key + GUID)).
pub fn accept_key(ws_key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(ws_key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// Headers `response_101` never copies from `extra`: they belong to the handshake itself.
const NOT_IN_101: &[&str] = &[
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-extensions",
    "content-length",
    "transfer-encoding",
    "keep-alive",
];

/// The `101 Switching Protocols` answer to the client: `Upgrade`, `Connection`,
/// `Sec-WebSocket-Accept` computed from `ws_key`, then `extra` (upstream's filtered headers,
/// including its validated `Sec-WebSocket-Protocol` if any). Never `Sec-WebSocket-Extensions`
/// (compression is declined). Headers with invalid names or CR/LF/control bytes are dropped.
pub fn response_101(ws_key: &str, extra: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        160 + extra
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>(),
    );
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    );
    write_header(
        &mut out,
        "Sec-WebSocket-Accept",
        accept_key(ws_key).as_bytes(),
    );
    for (name, value) in extra {
        if NOT_IN_101.iter().any(|n| name.eq_ignore_ascii_case(n)) {
            continue;
        }
        write_header(&mut out, name, value);
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A complete error response with body `{"error":{"type":..,"code":..,"message":..}}`,
/// `Content-Type: application/json`, `Content-Length`, `Connection: close` and `extra` headers
/// (e.g. `Retry-After`, `Sec-WebSocket-Version: 13`). Unsafe extra headers are dropped; the
/// JSON strings are escaped by serde_json.
pub fn error_response(
    status: u16,
    err_type: &str,
    code: &str,
    message: &str,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let body =
        serde_json::json!({ "error": { "type": err_type, "code": code, "message": message } })
            .to_string();
    let mut head = String::with_capacity(128);
    // Writing to a String cannot fail.
    let _ = write!(
        head,
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason_phrase(status),
        body.len()
    );
    let mut out = head.into_bytes();
    for (name, value) in extra {
        let lower = name.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "content-length" | "content-type" | "connection" | "transfer-encoding"
        ) {
            continue;
        }
        write_header(&mut out, name, value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

/// The reason phrase for the statuses the relay sends.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}
