//! The load generator's own minimal WebSocket framing over `&[u8]`: masked
//! client frames out, unmasked server frames in. Kept apart from fastwebsockets so
//! the generator's per-frame cost is a header walk and nothing else.

/// Opcodes the generator uses.
pub mod op {
    /// Continuation frame.
    pub const CONT: u8 = 0;
    /// Text frame.
    pub const TEXT: u8 = 1;
    /// Binary frame.
    pub const BINARY: u8 = 2;
    /// Close frame.
    pub const CLOSE: u8 = 8;
    /// Ping frame.
    pub const PING: u8 = 9;
    /// Pong frame.
    pub const PONG: u8 = 10;
}

/// Why a server frame header is unacceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The server set the MASK bit (RFC 6455 §5.1 forbids it).
    #[error("server frame is masked")]
    Masked,
    /// RSV bits set without a negotiated extension.
    #[error("reserved bits set")]
    Reserved,
    /// The frame's payload is larger than the generator's limit.
    #[error("frame payload of {0} bytes exceeds the limit")]
    TooLarge(u64),
}

/// One complete server frame found in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// FIN bit.
    pub fin: bool,
    /// Opcode.
    pub opcode: u8,
    /// Offset of the payload from the start of the frame.
    pub header_len: usize,
    /// Payload length.
    pub payload_len: usize,
}

impl FrameHead {
    /// Header plus payload.
    pub fn total(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// Parses the server frame at the start of `buf`. `Ok(None)` when the header or
/// payload is not complete yet.
pub fn parse_server(buf: &[u8], max_payload: usize) -> Result<Option<FrameHead>, WireError> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if b1 & 0x80 != 0 {
        return Err(WireError::Masked);
    }
    if b0 & 0x70 != 0 {
        return Err(WireError::Reserved);
    }
    let (len, header_len) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(b) => (u64::from_be_bytes(b), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let payload_len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= max_payload)
        .ok_or(WireError::TooLarge(len))?;
    let head = FrameHead {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        header_len,
        payload_len,
    };
    Ok((buf.len() >= head.total()).then_some(head))
}

/// Appends one masked client frame (FIN set) carrying `payload` to `out`.
pub fn encode_masked(out: &mut Vec<u8>, opcode: u8, payload: &[u8], key: [u8; 4]) {
    out.push(0x80 | (opcode & 0x0f));
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(l) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&l.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(p) = out.get_mut(start..) {
        fastwebsockets::unmask(p, key);
    }
}

/// Bytes of the 16-digit decimal timestamp field in generator payloads.
pub const STAMP_DIGITS: usize = 16;

/// Writes `ns` as [`STAMP_DIGITS`] zero-padded decimal digits.
pub fn stamp(ns: u64) -> [u8; STAMP_DIGITS] {
    let mut out = [b'0'; STAMP_DIGITS];
    let mut v = ns;
    for d in out.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out
}

/// Reads a [`stamp`] back; `None` if the bytes are not all digits.
pub fn read_stamp(b: &[u8]) -> Option<u64> {
    let digits = b.get(..STAMP_DIGITS)?;
    digits.iter().try_fold(0u64, |acc, &c| {
        c.is_ascii_digit()
            .then(|| acc.wrapping_mul(10).wrapping_add(u64::from(c - b'0')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_frames_round_trip_through_the_unmasked_parser_shape() {
        for len in [0usize, 5, 125, 126, 300, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            encode_masked(&mut out, op::BINARY, &payload, [1, 2, 3, 4]);
            assert_eq!(out[1] & 0x80, 0x80, "mask bit");
            // Strip the mask to make it a server frame and parse it back.
            let hl = match len {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            };
            let mut server = out[..hl].to_vec();
            server[1] &= 0x7f;
            let mut body = out[hl + 4..].to_vec();
            fastwebsockets::unmask(&mut body, [1, 2, 3, 4]);
            assert_eq!(body, payload);
            server.extend_from_slice(&body);
            let h = parse_server(&server, 1 << 20).unwrap().unwrap();
            assert_eq!(
                (h.fin, h.opcode, h.header_len, h.payload_len),
                (true, 2, hl, len)
            );
            assert_eq!(parse_server(&server[..server.len() - 1], 1 << 20), Ok(None));
        }
    }

    #[test]
    fn bad_server_headers_are_rejected() {
        assert_eq!(
            parse_server(&[0x81, 0x85, 0, 0, 0, 0], 10),
            Err(WireError::Masked)
        );
        assert_eq!(parse_server(&[0xc1, 0x01, 0], 10), Err(WireError::Reserved));
        assert_eq!(
            parse_server(&[0x82, 126, 0x01, 0x00], 10),
            Err(WireError::TooLarge(256))
        );
        assert_eq!(parse_server(&[0x82], 10), Ok(None));
        assert_eq!(parse_server(&[0x82, 127, 0, 0], 10), Ok(None));
    }

    #[test]
    fn stamps_round_trip_and_reject_non_digits() {
        for v in [0u64, 1, 123_456_789, 9_999_999_999_999_999] {
            assert_eq!(read_stamp(&stamp(v)), Some(v));
        }
        assert_eq!(read_stamp(b"12345678901234x6"), None);
        assert_eq!(read_stamp(b"123"), None);
    }
}
