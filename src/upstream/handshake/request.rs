//! The upgrade request the relay sends upstream, rewritten from the client's.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::{in_connection, named_in};
use crate::server::handshake::{trim, write_header, UpgradeRequest};

/// The upgrade request to write to upstream.
/// Its `Debug` output shows the request line and header names only (the head carries the
/// provider credential).
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamRequest {
    /// The complete request head.
    pub bytes: Vec<u8>,
    /// The fresh `Sec-WebSocket-Key` sent (pass it to [`parse_response`](crate::upstream::handshake::parse_response)).
    pub ws_key: String,
    /// The client's `Sec-WebSocket-Protocol` offer as sent upstream (all values joined with
    /// `, `), if any (pass it to [`parse_response`](crate::upstream::handshake::parse_response)).
    pub offered_protocols: Option<Vec<u8>>,
}

impl std::fmt::Debug for UpstreamRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut lines = self.bytes.split(|&b| b == b'\n').map(trim_cr);
        let request_line = lines.next().map(String::from_utf8_lossy);
        let names: Vec<_> = lines
            .filter_map(|l| l.split(|&b| b == b':').next())
            .filter(|n| !n.is_empty())
            .map(String::from_utf8_lossy)
            .collect();
        f.debug_struct("UpstreamRequest")
            .field("request_line", &request_line)
            .field("header_names", &names)
            .field("ws_key", &self.ws_key)
            .field(
                "offered_protocols",
                &self
                    .offered_protocols
                    .as_deref()
                    .map(String::from_utf8_lossy),
            )
            .finish()
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Hop-by-hop and handshake headers never copied from the client to upstream.
const NOT_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "sec-websocket-key",
    "sec-websocket-accept",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "proxy-authorization",
];

/// Client headers that carry a credential or choose whose account pays. In managed mode the
/// relay injects the provider's credential, so none of these may come from the client: the
/// operator sets them with `--upstream-header`.
pub const MANAGED_STRIPPED: &[&str] = &[
    "authorization",
    "api-key",
    "x-api-key",
    "cookie",
    "openai-organization",
    "openai-project",
];

/// Build the GET upgrade for upstream.
///
/// Request target = `upstream_base_path` (no trailing `/`) + the client's path and query. `Host`
/// is `upstream_host_header`; a fresh random key is sent per dial. The client's headers are copied
/// in order except hop-by-hop ones (and any named in its `Connection`), `Host`, `Content-Length`,
/// `Sec-WebSocket-Key/-Accept/-Version/-Extensions`, `Proxy-Authorization`, and — when
/// `strip_credentials` (managed mode) — every header of [`MANAGED_STRIPPED`]. Then `inject`
/// headers are appended, replacing client headers of the same name. Headers that would break
/// the framing are dropped.
pub fn build_request(
    client: &UpgradeRequest,
    upstream_host_header: &str,
    upstream_base_path: &str,
    inject: &[(String, String)],
    strip_credentials: bool,
) -> UpstreamRequest {
    let ws_key = BASE64.encode(fastrand::u128(..).to_le_bytes());
    let base = upstream_base_path.trim_end_matches('/');
    let mut out = Vec::with_capacity(
        512 + client
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>(),
    );
    out.extend_from_slice(b"GET ");
    // No spaces or control bytes in a request target (UpstreamUrl and httparse ensure it).
    let target = base.bytes().chain(client.path_and_query.bytes());
    out.extend(target.filter(|&b| b > b' ' && b != 0x7f));
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_header(&mut out, "Host", upstream_host_header.as_bytes());
    out.extend_from_slice(
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
    );
    write_header(&mut out, "Sec-WebSocket-Key", ws_key.as_bytes());
    let connection = || client.header_all("connection");
    for (name, value) in &client.headers {
        let dropped = named_in(NOT_FORWARDED, name)
            || in_connection(connection(), name)
            || (strip_credentials && named_in(MANAGED_STRIPPED, name))
            || inject.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        if !dropped {
            write_header(&mut out, name, value);
        }
    }
    for (name, value) in inject {
        write_header(&mut out, name, value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    let protocols: Vec<&[u8]> = client
        .header_all("sec-websocket-protocol")
        .map(trim)
        .collect();
    let offered_protocols = (!protocols.is_empty()).then(|| protocols.join(&b", "[..]));
    UpstreamRequest {
        bytes: out,
        ws_key,
        offered_protocols,
    }
}
