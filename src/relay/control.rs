//! Relay-originated traffic: close frames and `error` events the relay writes itself, and
//! the lingering close that keeps a just-written close frame from being destroyed.

use std::time::Duration;

use monoio::io::AsyncReadRent;

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

/// A relay-originated `error` event (same shape as the provider's), as one text frame.
pub fn error_event_frame(code: &str, message: &str, to_upstream: bool) -> Vec<u8> {
    let body = serde_json::json!({
        "type": "error",
        "error": {"type": "relay_error", "code": code, "message": message},
    })
    .to_string();
    let mut out = Vec::with_capacity(body.len() + 14);
    crate::ws::close::encode_frame(
        &mut out,
        Opcode::Text,
        body.as_bytes(),
        to_upstream.then(fresh_key),
    );
    out
}
