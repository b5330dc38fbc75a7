//! RFC 6455 §5.5.1 / §7.4 close frames: code validation, payload validation and encoding.

use thiserror::Error;

use super::frame::{encode_header, Opcode, MAX_HEADER_LEN};

/// Re-exported here because relay-originated frames (error events, close frames) are built
/// side by side; the definition lives in [`super::frame`].
pub use super::frame::encode_frame;

/// Registered close status codes (RFC 6455 §7.4.1 and the IANA registry).
pub mod codes {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Endpoint going away (server shutdown, browser navigating away).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error.
    pub const PROTOCOL: u16 = 1002;
    /// Received a data type it cannot accept.
    pub const UNSUPPORTED: u16 = 1003;
    /// No status code was present. Never sent on the wire.
    pub const NO_STATUS: u16 = 1005;
    /// Connection closed without a close frame. Never sent on the wire.
    pub const ABNORMAL: u16 = 1006;
    /// Message data inconsistent with its type (e.g. non-UTF-8 text).
    pub const INVALID_DATA: u16 = 1007;
    /// Policy violation.
    pub const POLICY: u16 = 1008;
    /// Message too big to process.
    pub const TOO_BIG: u16 = 1009;
    /// Unexpected condition in the server.
    pub const INTERNAL: u16 = 1011;
    /// Service is restarting.
    pub const SERVICE_RESTART: u16 = 1012;
    /// Try again later (temporary overload).
    pub const TRY_AGAIN: u16 = 1013;
    /// A gateway or proxy got an invalid response from upstream.
    pub const BAD_GATEWAY: u16 = 1014;
}

/// Largest close reason that fits a control frame: 125 bytes minus the 2-byte code.
pub const MAX_CLOSE_REASON: usize = 123;

/// Size of the buffer [`encode_close_frame`] writes into: a 2-byte header, a 4-byte mask key
/// and a 125-byte payload.
pub const MAX_CLOSE_FRAME_LEN: usize = 2 + 4 + 125;

/// Why a received close payload is invalid. [`CloseError::close_code`] is the code to answer with.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum CloseError {
    /// The payload is exactly one byte (a code needs two).
    #[error("close payload of 1 byte")]
    OneByte,
    /// The payload is longer than the 125 bytes a control frame may carry.
    #[error("close payload of {0} bytes exceeds 125")]
    TooLong(usize),
    /// The code is reserved, unassigned or not allowed on the wire (e.g. 1005, 1006).
    #[error("invalid close code {0}")]
    InvalidCode(u16),
    /// The reason is not valid UTF-8.
    #[error("close reason is not valid UTF-8")]
    InvalidUtf8,
}

impl CloseError {
    /// 1007 for a non-UTF-8 reason, 1002 otherwise.
    pub fn close_code(&self) -> u16 {
        match self {
            CloseError::InvalidUtf8 => codes::INVALID_DATA,
            _ => codes::PROTOCOL,
        }
    }
}

/// Whether `code` may appear in a close frame on the wire (RFC 6455 §7.4 + IANA registry):
/// 1000–1003, 1007–1014 and the application/library range 3000–4999. Everything else —
/// 0–999, 1004–1006, 1015, unregistered 1016–2999, and 5000 and up — is invalid.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Validates a received close payload. `Ok(None)` for an empty payload (no status),
/// otherwise the code and the UTF-8 reason.
pub fn validate_close_payload(p: &[u8]) -> Result<Option<(u16, &str)>, CloseError> {
    if p.len() > 125 {
        return Err(CloseError::TooLong(p.len()));
    }
    let (code, reason) = match p {
        [] => return Ok(None),
        [_] => return Err(CloseError::OneByte),
        [hi, lo, reason @ ..] => (u16::from_be_bytes([*hi, *lo]), reason),
    };
    if !is_valid_close_code(code) {
        return Err(CloseError::InvalidCode(code));
    }
    let reason = std::str::from_utf8(reason).map_err(|_| CloseError::InvalidUtf8)?;
    Ok(Some((code, reason)))
}

/// The longest prefix of `s` that is at most `max` bytes and ends on a char boundary.
fn truncate_at_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Builds a complete close frame (FIN, opcode 0x8) into `out` and returns its length.
///
/// The payload is `code` (big-endian) then `reason`, truncated at a char boundary to
/// [`MAX_CLOSE_REASON`] bytes. A `code` that may not be sent (see [`is_valid_close_code`];
/// e.g. [`codes::NO_STATUS`] when propagating a peer's status-less close) yields an empty
/// payload and the reason is dropped. With `Some(mask)` the frame is masked (client role).
pub fn encode_close_frame(
    out: &mut [u8; MAX_CLOSE_FRAME_LEN],
    code: u16,
    reason: &str,
    mask: Option<[u8; 4]>,
) -> usize {
    let reason = if is_valid_close_code(code) {
        truncate_at_char_boundary(reason, MAX_CLOSE_REASON)
    } else {
        ""
    };
    let payload_len = if is_valid_close_code(code) {
        2 + reason.len()
    } else {
        0
    };
    let mut hdr = [0u8; MAX_HEADER_LEN];
    let h = encode_header(&mut hdr, true, Opcode::Close, mask, payload_len as u64);
    out[..h].copy_from_slice(&hdr[..h]);
    let payload = &mut out[h..h + payload_len];
    if let [hi, lo, rest @ ..] = payload {
        [*hi, *lo] = code.to_be_bytes();
        rest.copy_from_slice(reason.as_bytes());
    }
    if let Some(key) = mask {
        super::mask::apply_mask(payload, key, 0);
    }
    h + payload_len
}

#[cfg(test)]
#[path = "close_tests.rs"]
mod tests;
