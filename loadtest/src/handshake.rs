//! HTTP/1.1 upgrade heads: reading one off a stream (bounded), parsing it with
//! `httparse`, and the RFC 6455 accept-key computation. Shared by the mock server
//! and the test client.

use base64::Engine as _;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Largest upgrade head either side accepts.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Failures while reading or parsing an HTTP head.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The peer closed before the blank line ending the head.
    #[error("connection closed before the end of the HTTP head")]
    Eof,
    /// The head exceeded [`MAX_HEAD_BYTES`].
    #[error("HTTP head larger than {MAX_HEAD_BYTES} bytes")]
    TooLarge,
    /// The head is not valid HTTP/1.1 (or has more than 128 headers).
    #[error("malformed HTTP head: {0}")]
    Malformed(#[from] httparse::Error),
    /// A socket error while reading.
    #[error("i/o error reading HTTP head: {0}")]
    Io(#[from] std::io::Error),
}

/// A parsed request or response head. Header names keep their original case;
/// values are decoded lossily as UTF-8.
#[derive(Debug, Clone, Default)]
pub struct Head {
    /// Request method (empty for responses).
    pub method: String,
    /// Request target (empty for responses).
    pub target: String,
    /// Response status (0 for requests).
    pub status: u16,
    /// Headers in wire order.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// First value of header `name` (case-insensitive) in a header list.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
pub fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(WS_GUID);
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// A fresh random `Sec-WebSocket-Key`.
pub fn new_key() -> String {
    let bytes: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Reads up to and including the `\r\n\r\n` ending an HTTP head, leaving any
/// following bytes buffered in `r`.
pub async fn read_head<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(1024);
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Err(HeadError::Eof);
        }
        let scan_from = head.len().saturating_sub(3);
        let old_len = head.len();
        head.extend_from_slice(buf);
        let end = head
            .get(scan_from..)
            .and_then(|tail| tail.windows(4).position(|w| w == b"\r\n\r\n"))
            .map(|p| scan_from + p + 4);
        match end {
            Some(end) => {
                r.consume(end - old_len);
                head.truncate(end);
                if head.len() > MAX_HEAD_BYTES {
                    return Err(HeadError::TooLarge);
                }
                return Ok(head);
            }
            None => {
                let n = buf.len();
                r.consume(n);
                if head.len() > MAX_HEAD_BYTES {
                    return Err(HeadError::TooLarge);
                }
            }
        }
    }
}

fn collect(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

/// Parses a complete request head.
pub fn parse_request(head: &[u8]) -> Result<Head, HeadError> {
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut hs);
    match req.parse(head)? {
        httparse::Status::Partial => Err(HeadError::Eof),
        httparse::Status::Complete(_) => Ok(Head {
            method: req.method.unwrap_or_default().to_string(),
            target: req.path.unwrap_or_default().to_string(),
            status: 0,
            headers: collect(req.headers),
        }),
    }
}

/// Parses a complete response head.
pub fn parse_response(head: &[u8]) -> Result<Head, HeadError> {
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut hs);
    match resp.parse(head)? {
        httparse::Status::Partial => Err(HeadError::Eof),
        httparse::Status::Complete(_) => Ok(Head {
            method: String::new(),
            target: String::new(),
            status: resp.code.unwrap_or_default(),
            headers: collect(resp.headers),
        }),
    }
}

/// Canonical reason phrase for the statuses the mock and client use.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc6455_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[tokio::test]
    async fn read_head_stops_at_blank_line_across_chunks() {
        let data: &[u8] = b"GET /v1/responses?a=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n\x81\x00";
        // BufReader with a tiny capacity splits the terminator across fills.
        let mut r = tokio::io::BufReader::with_capacity(3, data);
        let head = read_head(&mut r).await.expect("head");
        assert!(head.ends_with(b"\r\n\r\n"));
        let parsed = parse_request(&head).expect("parse");
        assert_eq!(parsed.target, "/v1/responses?a=1");
        assert_eq!(parsed.header("x-a"), Some("1"));
        let mut rest = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut r, &mut rest)
            .await
            .expect("rest");
        assert_eq!(rest, b"\x81\x00");
    }

    #[tokio::test]
    async fn read_head_reports_eof_and_oversize() {
        let mut r = tokio::io::BufReader::new(&b"GET / HTTP/1.1\r\n"[..]);
        assert!(matches!(read_head(&mut r).await, Err(HeadError::Eof)));
        let big = vec![b'a'; MAX_HEAD_BYTES + 10];
        let mut r = tokio::io::BufReader::new(&big[..]);
        assert!(matches!(read_head(&mut r).await, Err(HeadError::TooLarge)));
    }

    #[test]
    fn has_token_is_case_insensitive_list_match() {
        assert!(has_token(Some("keep-alive, Upgrade"), "upgrade"));
        assert!(!has_token(Some("upgraded"), "upgrade"));
        assert!(!has_token(None, "upgrade"));
    }
}
