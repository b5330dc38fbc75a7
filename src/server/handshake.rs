//! The client's HTTP/1.1 upgrade request: a bounded, sans-IO parser plus the RFC 6455 checks,
//! and the builders for the responses we send back (`101` or a JSON error).
//!
//! The caller owns the socket and the timeout. It appends what it reads to one buffer and calls
//! [`parse_request_with`] with the same [`HeadScanner`] after every read: the scanner only looks
//! at bytes it has not seen, so a client dribbling its head one byte at a time costs linear work.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

mod fields;
mod response;
mod scan;

pub(crate) use fields::{has_token, list_elements, trim, write_header};
pub use response::{accept_key, error_response, response_101};
pub use scan::HeadScanner;
pub(crate) use scan::ScanLimit;

/// Size limits on an HTTP head (request or response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum bytes of the head including the final blank line (default 16 KiB).
    pub max_header_bytes: usize,
    /// Maximum number of header fields (default 100).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
        }
    }
}

/// Why an upgrade request was refused. [`status`](Self::status) and [`code`](Self::code) give
/// the HTTP status and the snake_case code used in the JSON body and in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// httparse rejected the head (bad request line, bad header syntax, bad characters).
    #[error("malformed HTTP request: {0}")]
    Malformed(httparse::Error),
    /// The head ends before its `\r\n\r\n` (a bare `\n\n`), or the request target is not origin-form.
    #[error("malformed HTTP request head")]
    MalformedHead,
    /// The head is longer than `limit` bytes (or the buffer is, with no end of head in sight).
    #[error("request head larger than {limit} bytes")]
    HeadersTooLarge {
        /// The configured `max_header_bytes`.
        limit: usize,
    },
    /// The head carries more than `limit` header fields.
    #[error("more than {limit} request headers")]
    TooManyHeaders {
        /// The configured `max_headers`.
        limit: usize,
    },
    /// The request is not HTTP/1.1 (HTTP/1.0 cannot upgrade).
    #[error("HTTP/1.1 is required for a WebSocket upgrade")]
    HttpVersion,
    /// The method is not GET.
    #[error("only GET can open a WebSocket")]
    MethodNotAllowed,
    /// The request has a body (`Content-Length` > 0 or any `Transfer-Encoding`).
    #[error("an upgrade request must not have a body")]
    BodyNotAllowed,
    /// `Content-Length` is not a decimal number.
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// No `Host` header (required by HTTP/1.1 and RFC 6455).
    #[error("missing Host header")]
    MissingHost,
    /// A header that must appear once appears several times.
    #[error("duplicate {name} header")]
    DuplicateHeader {
        /// The header's name.
        name: &'static str,
    },
    /// No `Upgrade` header: a plain GET on a WebSocket endpoint.
    #[error("this endpoint only speaks WebSocket: send Upgrade: websocket")]
    UpgradeRequired,
    /// `Upgrade` names another protocol (e.g. `h2c`).
    #[error("unsupported Upgrade protocol: only websocket is supported")]
    UnsupportedUpgrade,
    /// `Connection` lacks the `upgrade` token.
    #[error("Connection header must contain the upgrade token")]
    ConnectionNotUpgrade,
    /// `Sec-WebSocket-Version` is missing or not 13.
    #[error("unsupported Sec-WebSocket-Version: only 13 is supported")]
    WebSocketVersion,
    /// `Sec-WebSocket-Key` is missing.
    #[error("missing Sec-WebSocket-Key header")]
    MissingKey,
    /// `Sec-WebSocket-Key` is not the base64 encoding of 16 bytes.
    #[error("Sec-WebSocket-Key must be base64 of 16 bytes")]
    InvalidKey,
}

impl HandshakeError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::HeadersTooLarge { .. } | HandshakeError::TooManyHeaders { .. } => 431,
            HandshakeError::MethodNotAllowed => 405,
            HandshakeError::UpgradeRequired | HandshakeError::WebSocketVersion => 426,
            _ => 400,
        }
    }

    /// A stable snake_case code for the JSON body and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            HandshakeError::Malformed(_) | HandshakeError::MalformedHead => "malformed_request",
            HandshakeError::HeadersTooLarge { .. } => "headers_too_large",
            HandshakeError::TooManyHeaders { .. } => "too_many_headers",
            HandshakeError::HttpVersion => "unsupported_http_version",
            HandshakeError::MethodNotAllowed => "method_not_allowed",
            HandshakeError::BodyNotAllowed => "body_not_allowed",
            HandshakeError::InvalidContentLength => "invalid_content_length",
            HandshakeError::MissingHost => "missing_host",
            HandshakeError::DuplicateHeader { .. } => "duplicate_header",
            HandshakeError::UpgradeRequired => "upgrade_required",
            HandshakeError::UnsupportedUpgrade => "unsupported_upgrade",
            HandshakeError::ConnectionNotUpgrade => "missing_connection_upgrade",
            HandshakeError::WebSocketVersion => "unsupported_websocket_version",
            HandshakeError::MissingKey => "missing_websocket_key",
            HandshakeError::InvalidKey => "invalid_websocket_key",
        }
    }

    /// Headers the error response must carry (RFC 6455 §4.2.2: `Sec-WebSocket-Version: 13` on
    /// a version mismatch; RFC 9110: `Upgrade` on 426, `Allow` on 405).
    pub fn extra_headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            HandshakeError::UpgradeRequired => {
                &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")]
            }
            HandshakeError::WebSocketVersion => &[("Sec-WebSocket-Version", "13")],
            HandshakeError::MethodNotAllowed => &[("Allow", "GET")],
            _ => &[],
        }
    }

    /// The complete HTTP error response for this refusal.
    pub fn to_response(&self) -> Vec<u8> {
        let message = self.to_string();
        error_response(
            self.status(),
            "invalid_request_error",
            self.code(),
            &message,
            self.extra_headers(),
        )
    }
}

/// A parsed and validated WebSocket upgrade request. Its `Debug` output redacts credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The request method (always `GET` once validated).
    pub method: String,
    /// The origin-form request target, e.g. `/v1/responses?x=1`.
    pub path_and_query: String,
    /// Every header in original order, names in their original case.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Bytes of the buffer taken by the head; anything after it is pipelined WebSocket data.
    pub head_len: usize,
    /// The validated `Sec-WebSocket-Key` (base64 of 16 bytes), trimmed.
    pub ws_key: String,
}

impl std::fmt::Debug for UpgradeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, std::borrow::Cow<'_, str>)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), fields::redacted(n, v)))
            .collect();
        f.debug_struct("UpgradeRequest")
            .field("method", &self.method)
            .field("path_and_query", &self.path_and_query)
            .field("headers", &headers)
            .field("head_len", &self.head_len)
            .field("ws_key", &self.ws_key)
            .finish()
    }
}

impl UpgradeRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// Parse the upgrade request at the start of `buf` in one go (a fresh [`HeadScanner`]).
///
/// `Ok(None)` means incomplete. Fine for a complete buffer; a read loop should use
/// [`parse_request_with`] so repeated calls stay linear.
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<UpgradeRequest>, HandshakeError> {
    parse_request_with(buf, limits, &mut HeadScanner::new())
}

/// Parse the upgrade request at the start of `buf`, resuming the search where `scanner` left off.
///
/// `Ok(None)`: incomplete, read more (the caller enforces the timeout). `Err` as soon as the head
/// is known bad, even when incomplete: over `max_header_bytes` without an end, too many header
/// lines, or a request line that is malformed, not GET, or not HTTP/1.1.
pub fn parse_request_with(
    buf: &[u8],
    limits: &Limits,
    scanner: &mut HeadScanner,
) -> Result<Option<UpgradeRequest>, HandshakeError> {
    let head_len = match scanner.scan(buf, limits)? {
        Some(n) => n,
        None => {
            if let Some(lf) = scanner.take_first_line_end() {
                check_request_line(buf.get(..=lf).unwrap_or_default())?;
            }
            return Ok(None);
        }
    };
    let head = buf.get(..head_len).unwrap_or_default();
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut slots);
    let parsed = match req.parse(head) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(HandshakeError::MalformedHead),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HandshakeError::TooManyHeaders {
                limit: limits.max_headers,
            })
        }
        Err(e) => return Err(HandshakeError::Malformed(e)),
    };
    if parsed != head_len {
        return Err(HandshakeError::MalformedHead);
    }
    let method = req.method.unwrap_or_default();
    let path = req.path.unwrap_or_default();
    check_method_version(method, req.version)?;
    if !path.starts_with('/') {
        return Err(HandshakeError::MalformedHead);
    }
    let headers: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_owned()))
        .collect();
    let request = UpgradeRequest {
        method: method.to_owned(),
        path_and_query: path.to_owned(),
        headers,
        head_len,
        ws_key: String::new(),
    };
    let ws_key = validate(&request)?;
    Ok(Some(UpgradeRequest { ws_key, ..request }))
}

/// Early check of a complete request line (`buf` ends with its `\n`).
fn check_request_line(line: &[u8]) -> Result<(), HandshakeError> {
    let mut req = httparse::Request::new(&mut []);
    match req.parse(line) {
        // A valid request line with no headers yet is "partial"; the fields are filled in.
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            check_method_version(req.method.unwrap_or_default(), req.version)
        }
        Err(e) => Err(HandshakeError::Malformed(e)),
    }
}

fn check_method_version(method: &str, version: Option<u8>) -> Result<(), HandshakeError> {
    if version != Some(1) {
        return Err(HandshakeError::HttpVersion);
    }
    if method != "GET" {
        return Err(HandshakeError::MethodNotAllowed);
    }
    Ok(())
}

/// The RFC 6455 §4.2.1 checks. Returns the trimmed key.
fn validate(req: &UpgradeRequest) -> Result<String, HandshakeError> {
    if req.header("transfer-encoding").is_some() {
        return Err(HandshakeError::BodyNotAllowed);
    }
    if let Some(cl) = single(req, "content-length", "Content-Length")? {
        let text =
            std::str::from_utf8(trim(cl)).map_err(|_| HandshakeError::InvalidContentLength)?;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HandshakeError::InvalidContentLength);
        }
        if text.bytes().any(|b| b != b'0') {
            return Err(HandshakeError::BodyNotAllowed);
        }
    }
    if single(req, "host", "Host")?.is_none() {
        return Err(HandshakeError::MissingHost);
    }
    let upgrade: Vec<&[u8]> = req.header_all("upgrade").collect();
    if upgrade.iter().all(|v| trim(v).is_empty()) {
        return Err(HandshakeError::UpgradeRequired);
    }
    if !has_token(upgrade.iter().copied(), "websocket") {
        return Err(HandshakeError::UnsupportedUpgrade);
    }
    if !has_token(req.header_all("connection"), "upgrade") {
        return Err(HandshakeError::ConnectionNotUpgrade);
    }
    match single(req, "sec-websocket-version", "Sec-WebSocket-Version")? {
        Some(v) if trim(v) == b"13" => {}
        _ => return Err(HandshakeError::WebSocketVersion),
    }
    let key =
        single(req, "sec-websocket-key", "Sec-WebSocket-Key")?.ok_or(HandshakeError::MissingKey)?;
    let key = trim(key);
    match BASE64.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(HandshakeError::InvalidKey),
    }
    // Base64 decoded successfully, so the key is ASCII.
    String::from_utf8(key.to_vec()).map_err(|_| HandshakeError::InvalidKey)
}

/// The value of a header that must appear at most once.
fn single<'a>(
    req: &'a UpgradeRequest,
    lower: &'a str,
    name: &'static str,
) -> Result<Option<&'a [u8]>, HandshakeError> {
    let mut values = req.header_all(lower);
    let first = values.next();
    if values.next().is_some() {
        return Err(HandshakeError::DuplicateHeader { name });
    }
    Ok(first)
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
