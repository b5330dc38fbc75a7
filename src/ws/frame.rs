//! RFC 6455 §5.2 frame headers: a sans-IO parser over `&[u8]`, an encoder, in-place mask-key
//! rewriting, and message-level sequencing ([`MessageTracker`]).
//!
//! The relay forwards frames in place: [`parse_header`] walks headers in a read buffer without
//! allocating, the payload is unmasked/re-masked with [`crate::ws::mask::apply_mask`], the new
//! key is written back with [`set_mask_key`], and the same bytes go out. Everything a peer can
//! get wrong is rejected from the header alone, before any payload byte is read.

use thiserror::Error;

/// Longest possible frame header: 2 fixed bytes + 8 extended-length bytes + 4 mask-key bytes.
pub const MAX_HEADER_LEN: usize = 14;

/// Largest payload a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: u64 = 125;

/// A frame opcode (RFC 6455 §5.2). Reserved opcodes are rejected by [`parse_header`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Opcode {
    /// `0x0`: continues a fragmented data message.
    Continuation,
    /// `0x1`: first frame of a UTF-8 text message.
    Text,
    /// `0x2`: first frame of a binary message.
    Binary,
    /// `0x8`: connection close (control).
    Close,
    /// `0x9`: ping (control).
    Ping,
    /// `0xA`: pong (control).
    Pong,
}

impl Opcode {
    /// Decodes the low 4 bits of the first header byte; `None` for the reserved opcodes
    /// `0x3..=0x7` and `0xB..=0xF` (and anything above `0xF`).
    pub fn from_u8(v: u8) -> Option<Opcode> {
        match v {
            0x0 => Some(Opcode::Continuation),
            0x1 => Some(Opcode::Text),
            0x2 => Some(Opcode::Binary),
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xA => Some(Opcode::Pong),
            _ => None,
        }
    }

    /// The 4-bit wire value of this opcode.
    pub fn as_u8(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// `true` for Close, Ping and Pong (opcodes with the high bit set).
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// Who sent the frame being parsed. Client frames MUST be masked, server frames MUST NOT
/// (RFC 6455 §5.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// The frame came from a WebSocket client (our downstream leg).
    Client,
    /// The frame came from a WebSocket server (our upstream leg).
    Server,
}

/// A parsed frame header. The payload is `buf[header_len..header_len + payload_len]`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FrameHeader {
    /// FIN bit: last frame of its message.
    pub fin: bool,
    /// The frame's opcode.
    pub opcode: Opcode,
    /// The masking key, present iff the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// Declared payload length (already checked against the frame limit).
    pub payload_len: u64,
    /// Header length in bytes, `2..=14`; the mask key (if any) is its last 4 bytes.
    pub header_len: usize,
}

/// A protocol violation found in a frame header or in the message sequence.
/// [`FrameError::close_code`] is the close code to send to the offending peer.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum FrameError {
    /// RSV1, RSV2 or RSV3 is set; we never negotiate extensions.
    #[error("reserved header bits set without a negotiated extension")]
    ReservedBits,
    /// The opcode is one of the reserved values `0x3..=0x7`, `0xB..=0xF`.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A control frame (close/ping/pong) arrived without FIN.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame declared a payload over 125 bytes. The value is the 7-bit length field
    /// (126 and 127 mean an extended length, which control frames may not use).
    #[error("control frame payload length field {0} exceeds 125")]
    ControlTooLong(u64),
    /// A client sent a frame without the MASK bit.
    #[error("client frame is not masked")]
    UnmaskedClientFrame,
    /// A server sent a frame with the MASK bit.
    #[error("server frame is masked")]
    MaskedServerFrame,
    /// The 64-bit extended payload length has its most significant bit set.
    #[error("64-bit payload length has its most significant bit set")]
    LengthMsbSet,
    /// The declared payload length exceeds the per-frame limit.
    #[error("frame payload of {len} bytes exceeds the limit of {max}")]
    FrameTooBig {
        /// Declared payload length.
        len: u64,
        /// Configured per-frame limit.
        max: u64,
    },
    /// The frames of one data message add up to more than the per-message limit.
    #[error("message exceeds the limit of {max} bytes")]
    MessageTooBig {
        /// Configured per-message limit.
        max: u64,
    },
    /// One data message was split into more frames than allowed.
    #[error("message split into more than {max} frames")]
    TooManyFragments {
        /// Configured frame-count limit per message.
        max: u32,
    },
    /// A continuation frame arrived while no fragmented message was open.
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A new text/binary frame arrived while a fragmented message was still open.
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
}

impl FrameError {
    /// The RFC 6455 close code for this error: 1009 for size limits, 1008 for the fragment
    /// limit (policy), 1002 for every other protocol violation.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::FrameTooBig { .. } | FrameError::MessageTooBig { .. } => 1009,
            FrameError::TooManyFragments { .. } => 1008,
            _ => 1002,
        }
    }
}

/// Parses one frame header from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` is too short to decide (never allocates). Each check runs
/// as soon as the bytes it needs are present, in wire order: RSV bits, opcode, control-frame
/// rules, mask rule for `sender`, then the extended length (MSB, `max_frame_bytes`).
/// Non-minimal length encodings are accepted.
///
/// `#[inline]`: out of line, its `Result<Option<FrameHeader>, _>` came back through memory
/// once per frame, and the walker's first read of it was its hottest instruction in `cargo
/// bench --bench walker`.
#[inline]
pub fn parse_header(
    buf: &[u8],
    sender: Role,
    max_frame_bytes: u64,
) -> Result<Option<FrameHeader>, FrameError> {
    let (b0, b1) = match buf {
        [b0, b1, ..] => (*b0, *b1),
        _ => return Ok(None),
    };
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let raw_op = b0 & 0x0F;
    let opcode = Opcode::from_u8(raw_op).ok_or(FrameError::ReservedOpcode(raw_op))?;
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7F;
    if opcode.is_control() {
        if !fin {
            return Err(FrameError::FragmentedControl);
        }
        if u64::from(len7) > MAX_CONTROL_PAYLOAD {
            return Err(FrameError::ControlTooLong(u64::from(len7)));
        }
    }
    match (sender, masked) {
        (Role::Client, false) => return Err(FrameError::UnmaskedClientFrame),
        (Role::Server, true) => return Err(FrameError::MaskedServerFrame),
        _ => {}
    }
    let (payload_len, mut pos) = match len7 {
        126 => match buf.get(2..4) {
            Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 4),
            _ => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|s| <[u8; 8]>::try_from(s).ok()) {
            Some(bytes) => {
                let len = u64::from_be_bytes(bytes);
                if len >> 63 != 0 {
                    return Err(FrameError::LengthMsbSet);
                }
                (len, 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if payload_len > max_frame_bytes {
        return Err(FrameError::FrameTooBig {
            len: payload_len,
            max: max_frame_bytes,
        });
    }
    let mask = if masked {
        match buf.get(pos..pos + 4) {
            Some(&[a, b, c, d]) => {
                pos += 4;
                Some([a, b, c, d])
            }
            _ => return Ok(None),
        }
    } else {
        None
    };
    Ok(Some(FrameHeader {
        fin,
        opcode,
        mask,
        payload_len,
        header_len: pos,
    }))
}

/// Writes a minimal-length frame header into `out` and returns its length (`2..=14`).
///
/// RSV bits are always zero. `payload_len` must be below 2^63 (RFC 6455 §5.2); a larger value
/// is written as-is and would be rejected by a conforming peer.
pub fn encode_header(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    opcode: Opcode,
    mask: Option<[u8; 4]>,
    payload_len: u64,
) -> usize {
    debug_assert!(payload_len >> 63 == 0, "payload length MSB set");
    out[0] = (u8::from(fin) << 7) | opcode.as_u8();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut pos = match payload_len {
        0..=125 => {
            out[1] = mask_bit | payload_len as u8;
            2
        }
        126..=0xFFFF => {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
            4
        }
        _ => {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&payload_len.to_be_bytes());
            10
        }
    };
    if let Some(key) = mask {
        out[pos..pos + 4].copy_from_slice(&key);
        pos += 4;
    }
    pos
}

/// Overwrites the 4 mask-key bytes of an already-parsed masked header in place.
///
/// `header` starts at the frame's first byte and `header_len` comes from [`parse_header`];
/// the key occupies `header[header_len - 4..header_len]`. If the range is not inside `header`
/// (a caller bug, never peer data) nothing is written; debug builds assert instead.
pub fn set_mask_key(header: &mut [u8], header_len: usize, key: [u8; 4]) {
    debug_assert!(
        header.get(1).is_some_and(|b| b & 0x80 != 0),
        "set_mask_key on an unmasked header"
    );
    let slot = header_len
        .checked_sub(4)
        .and_then(|start| header.get_mut(start..header_len));
    debug_assert!(slot.is_some(), "mask key range outside the header");
    if let Some(slot) = slot {
        slot.copy_from_slice(&key);
    }
}

/// Appends one complete frame (FIN set) to `out`: the header, then `payload`, masked with
/// `mask` if given. Used for relay-originated frames such as JSON error events.
///
/// Control opcodes must carry at most 125 bytes; that is the caller's responsibility.
pub fn encode_frame(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8], mask: Option<[u8; 4]>) {
    debug_assert!(!opcode.is_control() || payload.len() <= MAX_CONTROL_PAYLOAD as usize);
    let mut hdr = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut hdr, true, opcode, mask, payload.len() as u64);
    out.reserve(n + payload.len());
    out.extend_from_slice(&hdr[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        crate::ws::mask::apply_mask(&mut out[start..], key, 0);
    }
}

/// What [`MessageTracker::on_frame`] learned about a frame's place in its message.
/// Control frames yield all-`false`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MessageStep {
    /// The frame belongs to a text message (its payload must be UTF-8 validated).
    pub is_text: bool,
    /// The frame is the first frame of a data message.
    pub first: bool,
    /// The frame carries FIN of a data message (the message is complete).
    pub last: bool,
}

/// Message-level sequencing of data frames on one direction of one connection
/// (RFC 6455 §5.4), with size and fragment-count limits.
///
/// Control frames may be interleaved anywhere and do not affect the state. After an error the
/// connection must be closed; the tracker is reset so it never reports a stale message.
#[derive(Clone, Debug)]
pub struct MessageTracker {
    max_message_bytes: u64,
    max_fragments: u32,
    open: bool,
    is_text: bool,
    bytes: u64,
    frames: u32,
}

impl MessageTracker {
    /// A tracker allowing messages of at most `max_message_bytes` payload bytes split into at
    /// most `max_fragments` frames (an unfragmented message is 1 frame).
    pub fn new(max_message_bytes: u64, max_fragments: u32) -> Self {
        MessageTracker {
            max_message_bytes,
            max_fragments,
            open: false,
            is_text: false,
            bytes: 0,
            frames: 0,
        }
    }

    /// Accounts for one frame header (call it right after [`parse_header`], before the
    /// payload arrives). Errors: [`FrameError::UnexpectedContinuation`],
    /// [`FrameError::ExpectedContinuation`], [`FrameError::MessageTooBig`],
    /// [`FrameError::TooManyFragments`].
    pub fn on_frame(&mut self, h: &FrameHeader) -> Result<MessageStep, FrameError> {
        let first = match h.opcode {
            Opcode::Close | Opcode::Ping | Opcode::Pong => {
                return Ok(MessageStep {
                    is_text: false,
                    first: false,
                    last: false,
                });
            }
            Opcode::Continuation if !self.open => {
                return self.fail(FrameError::UnexpectedContinuation)
            }
            Opcode::Continuation => false,
            Opcode::Text | Opcode::Binary if self.open => {
                return self.fail(FrameError::ExpectedContinuation)
            }
            Opcode::Text | Opcode::Binary => {
                self.open = true;
                self.is_text = h.opcode == Opcode::Text;
                self.bytes = 0;
                self.frames = 0;
                true
            }
        };
        self.frames = self.frames.saturating_add(1);
        if self.frames > self.max_fragments {
            return self.fail(FrameError::TooManyFragments {
                max: self.max_fragments,
            });
        }
        self.bytes = self.bytes.saturating_add(h.payload_len);
        if self.bytes > self.max_message_bytes {
            return self.fail(FrameError::MessageTooBig {
                max: self.max_message_bytes,
            });
        }
        let step = MessageStep {
            is_text: self.is_text,
            first,
            last: h.fin,
        };
        if h.fin {
            self.open = false;
        }
        Ok(step)
    }

    /// `true` while a data message has started and its FIN frame has not been seen.
    pub fn in_message(&self) -> bool {
        self.open
    }

    /// A whole unfragmented text message of `len` payload bytes (one FIN text frame, no
    /// message open): the state [`MessageTracker::on_frame`] leaves for it, and `true`;
    /// `false`, with nothing changed, when `on_frame` would refuse it (a message open, or
    /// over a limit).
    #[inline]
    pub fn on_whole_text(&mut self, len: u64) -> bool {
        if self.open || self.max_fragments == 0 || len > self.max_message_bytes {
            return false;
        }
        self.is_text = true;
        self.bytes = len;
        self.frames = 1;
        true
    }

    /// `true` while a text message is open (a data message whose FIN has not been seen).
    pub fn current_is_text(&self) -> bool {
        self.open && self.is_text
    }

    fn fail(&mut self, e: FrameError) -> Result<MessageStep, FrameError> {
        self.open = false;
        self.bytes = 0;
        self.frames = 0;
        Err(e)
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
