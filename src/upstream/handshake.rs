//! The relay as a WebSocket client of the provider, sans-IO: build the upgrade request from the
//! client's, validate upstream's answer, and map a refusal to what the client is told.
//!
//! Subprotocols: the client's `Sec-WebSocket-Protocol` offer is passed upstream unchanged
//! ([`UpstreamRequest::offered_protocols`]). Upstream's choice is accepted only if it is one of
//! the offered tokens, and is then returned among [`UpstreamReply::Upgraded`]'s headers so the
//! client's 101 names the same protocol. Extensions are never offered (compression declined on
//! both legs), so any `Sec-WebSocket-Extensions` in upstream's 101 fails the handshake.

use crate::server::handshake::{
    accept_key, has_token, list_elements, trim, HeadScanner, Limits, ScanLimit,
};

mod refusal;
mod request;

pub use refusal::{map_refusal, ClientError};
pub use request::{build_request, UpstreamRequest, MANAGED_STRIPPED};

/// Upstream 101 headers not copied into the client's 101.
const NOT_RETURNED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "sec-websocket-accept",
    "sec-websocket-extensions",
    "content-length",
    "date",
    "server",
    // Upstream cookies are the relay's session with the provider, never the tenant's.
    "set-cookie",
];

/// Upstream 101 headers not returned to clients in managed mode: the provider account's
/// organization and project are the operator's, not the tenant's business.
pub const MANAGED_NOT_RETURNED: &[&str] = &["openai-organization", "openai-project"];

fn named_in(list: &[&str], name: &str) -> bool {
    list.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// Whether `name` is listed as a connection option in the `Connection` values.
fn in_connection<'a>(connection: impl Iterator<Item = &'a [u8]>, name: &str) -> bool {
    list_elements(connection).any(|e| e.eq_ignore_ascii_case(name.as_bytes()))
}

/// Upstream's answer to our upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamReply {
    /// A validated 101. `headers` go into our 101 to the client: everything except hop-by-hop,
    /// `Upgrade`, `Connection`, `Sec-WebSocket-Accept/-Extensions`, `Content-Length`,
    /// `Transfer-Encoding`, `Date`, `Server` — a `Sec-WebSocket-Protocol` is kept only because it
    /// was validated against the client's offer. Bytes after `head_len` are already frames.
    Upgraded {
        /// Headers for the client's 101, original order and case.
        headers: Vec<(String, Vec<u8>)>,
        /// Bytes of the buffer taken by the head.
        head_len: usize,
    },
    /// A plain HTTP response (any status other than 1xx); its body follows the head.
    Refused {
        /// Upstream's status.
        status: u16,
        /// `Retry-After`, if present and printable.
        retry_after: Option<String>,
        /// Bytes of the buffer taken by the head.
        head_len: usize,
        /// Body length from `Content-Length`; `None` when absent or chunked.
        content_length: Option<usize>,
    },
}

/// Why upstream's handshake answer is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamHandshakeError {
    /// httparse rejected the response head.
    #[error("malformed upstream response: {0}")]
    Malformed(httparse::Error),
    /// The head ends on a bare `\n\n`, not `\r\n\r\n`.
    #[error("malformed upstream response head")]
    MalformedHead,
    /// The head is over `limit` bytes.
    #[error("upstream response head larger than {limit} bytes")]
    HeadersTooLarge {
        /// The configured `max_header_bytes`.
        limit: usize,
    },
    /// The head has more than `limit` headers.
    #[error("more than {limit} upstream response headers")]
    TooManyHeaders {
        /// The configured `max_headers`.
        limit: usize,
    },
    /// A 101 over something other than HTTP/1.1.
    #[error("upstream 101 is not HTTP/1.1")]
    HttpVersion,
    /// A 1xx other than 101 (we sent no `Expect`).
    #[error("unexpected informational status {0} from upstream")]
    UnexpectedInformational(u16),
    /// The 101 lacks `Upgrade: websocket`.
    #[error("upstream 101 lacks Upgrade: websocket")]
    MissingUpgrade,
    /// The 101 lacks `Connection: upgrade`.
    #[error("upstream 101 lacks Connection: upgrade")]
    MissingConnectionUpgrade,
    /// The 101 has no (or several) `Sec-WebSocket-Accept`.
    #[error("upstream 101 lacks a single Sec-WebSocket-Accept")]
    MissingAccept,
    /// `Sec-WebSocket-Accept` does not match our key.
    #[error("upstream Sec-WebSocket-Accept does not match our key")]
    WrongAccept,
    /// The 101 names an extension; we offered none.
    #[error("upstream 101 selected an extension we did not offer")]
    ExtensionNotOffered,
    /// The 101 names a subprotocol the client did not offer, or several.
    #[error("upstream 101 selected a subprotocol that was not offered")]
    ProtocolNotOffered,
    /// A refusal with an unparsable or conflicting `Content-Length`.
    #[error("invalid Content-Length in upstream response")]
    InvalidContentLength,
}

impl UpstreamHandshakeError {
    /// A stable snake_case code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) | Self::MalformedHead => "malformed_response",
            Self::HeadersTooLarge { .. } => "headers_too_large",
            Self::TooManyHeaders { .. } => "too_many_headers",
            Self::HttpVersion => "bad_http_version",
            Self::UnexpectedInformational(_) => "unexpected_informational",
            Self::MissingUpgrade => "missing_upgrade",
            Self::MissingConnectionUpgrade => "missing_connection_upgrade",
            Self::MissingAccept => "missing_accept",
            Self::WrongAccept => "wrong_accept",
            Self::ExtensionNotOffered => "extension_not_offered",
            Self::ProtocolNotOffered => "protocol_not_offered",
            Self::InvalidContentLength => "invalid_content_length",
        }
    }

    /// What the client is told: 502 `upstream_bad_handshake`.
    pub fn client_error(&self) -> ClientError {
        ClientError {
            status: 502,
            err_type: "upstream_error",
            code: "upstream_bad_handshake",
            message: format!("upstream handshake failed: {self}"),
            retry_after: None,
        }
    }
}

impl From<ScanLimit> for UpstreamHandshakeError {
    fn from(e: ScanLimit) -> Self {
        match e {
            ScanLimit::TooLarge(limit) => Self::HeadersTooLarge { limit },
            ScanLimit::TooManyLines(limit) => Self::TooManyHeaders { limit },
        }
    }
}

/// Parse upstream's answer at the start of `buf` in one go; see [`parse_response_with`].
pub fn parse_response(
    buf: &[u8],
    ws_key: &str,
    offered_protocols: Option<&[u8]>,
    limits: &Limits,
) -> Result<Option<UpstreamReply>, UpstreamHandshakeError> {
    parse_response_with(
        buf,
        ws_key,
        offered_protocols,
        limits,
        &mut HeadScanner::new(),
    )
}

/// Parse upstream's answer, resuming the head search where `scanner` left off (linear over
/// repeated calls on a growing buffer). `Ok(None)` = incomplete. A 101 is validated against
/// `ws_key` and `offered_protocols` (what [`build_request`] returned).
pub fn parse_response_with(
    buf: &[u8],
    ws_key: &str,
    offered_protocols: Option<&[u8]>,
    limits: &Limits,
    scanner: &mut HeadScanner,
) -> Result<Option<UpstreamReply>, UpstreamHandshakeError> {
    let Some(head_len) = scanner.scan(buf, limits)? else {
        return Ok(None);
    };
    let head = buf.get(..head_len).unwrap_or_default();
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut resp = httparse::Response::new(&mut slots);
    match resp.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head_len => {}
        Ok(_) => return Err(UpstreamHandshakeError::MalformedHead),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(UpstreamHandshakeError::TooManyHeaders {
                limit: limits.max_headers,
            })
        }
        Err(e) => return Err(UpstreamHandshakeError::Malformed(e)),
    }
    let status = resp.code.unwrap_or_default();
    let headers: Vec<(&str, &[u8])> = resp.headers.iter().map(|h| (h.name, h.value)).collect();
    let all = |name: &'static str| {
        headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    match status {
        101 => {}
        100..=199 => return Err(UpstreamHandshakeError::UnexpectedInformational(status)),
        _ => {
            let retry_after = all("retry-after")
                .next()
                .map(trim)
                .filter(|v| {
                    !v.is_empty()
                        && v.len() <= 64
                        && v.iter().all(|b| b.is_ascii_graphic() || *b == b' ')
                })
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned);
            let content_length = if all("transfer-encoding").next().is_some() {
                None
            } else {
                content_length(all("content-length"))?
            };
            return Ok(Some(UpstreamReply::Refused {
                status,
                retry_after,
                head_len,
                content_length,
            }));
        }
    }
    if resp.version != Some(1) {
        return Err(UpstreamHandshakeError::HttpVersion);
    }
    if !has_token(all("upgrade"), "websocket") {
        return Err(UpstreamHandshakeError::MissingUpgrade);
    }
    if !has_token(all("connection"), "upgrade") {
        return Err(UpstreamHandshakeError::MissingConnectionUpgrade);
    }
    let mut accepts = all("sec-websocket-accept");
    let (Some(accept), None) = (accepts.next(), accepts.next()) else {
        return Err(UpstreamHandshakeError::MissingAccept);
    };
    if trim(accept) != accept_key(ws_key).as_bytes() {
        return Err(UpstreamHandshakeError::WrongAccept);
    }
    if all("sec-websocket-extensions").next().is_some() {
        return Err(UpstreamHandshakeError::ExtensionNotOffered);
    }
    let mut selected = all("sec-websocket-protocol");
    match (selected.next(), selected.next()) {
        (None, _) => {}
        (Some(p), None) if protocol_offered(trim(p), offered_protocols) => {}
        _ => return Err(UpstreamHandshakeError::ProtocolNotOffered),
    }
    let connection: Vec<&[u8]> = all("connection").collect();
    let copied = headers
        .iter()
        .filter(|(n, _)| {
            !named_in(NOT_RETURNED, n) && !in_connection(connection.iter().copied(), n)
        })
        .map(|(n, v)| ((*n).to_owned(), v.to_vec()))
        .collect();
    Ok(Some(UpstreamReply::Upgraded {
        headers: copied,
        head_len,
    }))
}

fn protocol_offered(selected: &[u8], offered: Option<&[u8]>) -> bool {
    !selected.is_empty()
        && !selected.contains(&b',')
        && offered.is_some_and(|o| list_elements(std::iter::once(o)).any(|p| p == selected))
}

/// The single body length named by `Content-Length` values (repeats must agree).
fn content_length<'a>(
    values: impl Iterator<Item = &'a [u8]>,
) -> Result<Option<usize>, UpstreamHandshakeError> {
    let mut length = None;
    for v in list_elements(values) {
        let n = std::str::from_utf8(v)
            .ok()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or(UpstreamHandshakeError::InvalidContentLength)?;
        if length.is_some_and(|l| l != n) {
            return Err(UpstreamHandshakeError::InvalidContentLength);
        }
        length = Some(n);
    }
    Ok(length)
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
