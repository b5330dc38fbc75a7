//! Relay-originated traffic: close frames and `error` events the relay writes itself, and
//! the lingering close that keeps a just-written close frame from being destroyed.

use std::time::Duration;

use monoio::io::AsyncReadRent;

use super::lifecycle::Outgoing;
use crate::ws::close::encode_close_frame;
use crate::ws::frame::Opcode;
use crate::ws::mask::fresh_key;

/// After its last write to a leg the relay reads (and discards) what the peer still sends,
/// for at most this long, before closing the socket: closing with unread data makes the
/// kernel send a RST, which can destroy the close frame just written before the peer reads
/// it (the "lingering close" of nginx and Apache).
pub const LINGER: Duration = Duration::from_secs(2);

/// Read and discard until EOF or error (bounded by the caller's timeout).
pub async fn linger<R: AsyncReadRent>(r: &mut R) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        buf.clear();
        let (res, b) = r.read(buf).await;
        buf = b;
        if !matches!(res, Ok(n) if n > 0) {
            return;
        }
    }
}

/// A close frame with `code` and `reason`, masked when it goes to the upstream (where the
/// relay is the client). Returns the buffer and the frame's length.
pub fn close_frame(code: u16, reason: &str, to_upstream: bool) -> ([u8; 131], usize) {
    let mut out = [0u8; 131];
    let mask = to_upstream.then(fresh_key);
    let n = encode_close_frame(&mut out, code, reason, mask);
    (out, n)
}

/// An `error` event written by the relay itself, in the protocol's shape:
/// `{"type":"error","status":…,"stream_id":…,"error":{"type","code","message"}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorEvent<'a> {
    /// HTTP-like status (400, 429, 503, …).
    pub status: u16,
    /// `error.type`, e.g. `invalid_request_error`, `rate_limit_error`, `server_error`.
    pub kind: &'static str,
    /// `error.code`: what a client matches on.
    pub code: &'static str,
    /// `error.message`.
    pub message: &'a str,
    /// The lane of the request it answers (omitted for the default lane).
    pub stream_id: Option<&'a str>,
}

impl ErrorEvent<'_> {
    /// The event as one text frame to the client (unmasked).
    pub fn frame(&self) -> Vec<u8> {
        let mut body = serde_json::json!({
            "type": "error",
            "status": self.status,
            "error": {"type": self.kind, "code": self.code, "message": self.message},
        });
        if let (Some(id), Some(o)) = (self.stream_id, body.as_object_mut()) {
            o.insert("stream_id".into(), serde_json::Value::from(id));
        }
        let body = body.to_string();
        let mut out = Vec::with_capacity(body.len() + 14);
        crate::ws::close::encode_frame(&mut out, Opcode::Text, body.as_bytes(), None);
        out
    }
}

/// The bytes of an [`Outgoing`] for a side (`to_upstream`: masked).
pub fn outgoing_bytes(o: Outgoing, to_upstream: bool) -> Vec<u8> {
    match o {
        Outgoing::Close { code, reason } => {
            let (f, n) = close_frame(code, reason, to_upstream);
            f[..n].to_vec()
        }
        Outgoing::ErrorThenClose {
            error,
            code,
            reason,
        } => {
            let mut out = ErrorEvent {
                status: 502,
                kind: "relay_error",
                code: error.code(),
                message: error.message(),
                stream_id: None,
            }
            .frame();
            let (f, n) = close_frame(code, reason, to_upstream);
            out.extend_from_slice(&f[..n]);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::lifecycle::RelayError;

    fn text_of(frame: &[u8]) -> serde_json::Value {
        assert_eq!(frame[0], 0x81, "one unmasked final text frame");
        let (len, at) = match frame[1] {
            126 => (usize::from(u16::from_be_bytes([frame[2], frame[3]])), 4),
            n => (usize::from(n), 2),
        };
        serde_json::from_slice(&frame[at..at + len]).expect("json")
    }

    #[test]
    fn error_events_have_the_protocols_shape() {
        let f = ErrorEvent {
            status: 429,
            kind: "rate_limit_error",
            code: "rate_limit_exceeded",
            message: "slow down",
            stream_id: Some("lane-1"),
        }
        .frame();
        let v = text_of(&f);
        assert_eq!(v["type"], "error");
        assert_eq!(v["status"], 429);
        assert_eq!(v["stream_id"], "lane-1");
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        let f = ErrorEvent {
            stream_id: None,
            ..ErrorEvent {
                status: 503,
                kind: "server_error",
                code: "usage_log_unavailable",
                message: "m",
                stream_id: None,
            }
        }
        .frame();
        assert!(
            text_of(&f).get("stream_id").is_none(),
            "default lane: no stream_id"
        );
    }

    #[test]
    fn error_then_close_is_an_event_followed_by_the_close() {
        let b = outgoing_bytes(
            Outgoing::ErrorThenClose {
                error: RelayError::UpstreamDisconnected,
                code: 1011,
                reason: "upstream disconnected",
            },
            false,
        );
        let v = text_of(&b);
        assert_eq!(v["error"]["code"], "upstream_disconnected");
        let close_at = b.len() - (2 + 2 + "upstream disconnected".len());
        assert_eq!(b[close_at], 0x88);
        assert_eq!(u16::from_be_bytes([b[close_at + 2], b[close_at + 3]]), 1011);
    }
}
