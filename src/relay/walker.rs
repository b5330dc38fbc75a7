//! The frame walker: sans-IO, in place, one per direction.
//!
//! A pump reads bytes into its buffer and hands the unprocessed region to [`Walker::walk`].
//! The walker parses frame headers, validates them (RFC 6455 §5), and for payload bytes:
//! - frames sent by the client (masked): unmasks in place, shows text to the tap and the
//!   UTF-8 validator, then re-masks in place with a fresh key per frame (§10.3) whose
//!   bytes overwrite the old key in the header — the frame keeps its size;
//! - frames sent by the upstream (unmasked): shows text to the tap; bytes are untouched.
//!
//! Payload is processed as it arrives (a 64 MiB frame streams through a 64 KiB buffer);
//! only an incomplete header, or an incomplete control frame (≤ 139 bytes, whose close
//! payload must be validated whole), is carried over to the next read.

use crate::tap::{Tap, TapEvent};
use crate::ws::close::validate_close_payload;
use crate::ws::frame::{parse_header, set_mask_key, FrameHeader, MessageTracker, Opcode, Role};
use crate::ws::mask::{apply_mask, fresh_key};
use crate::ws::utf8::Utf8Validator;

/// Why a walk stopped the stream: the close code to send to the leg that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (close {code})")]
pub struct WalkError {
    /// Close code for the offending leg (1002, 1007, 1008, 1009).
    pub code: u16,
    /// Short static reason, also the close reason text.
    pub reason: &'static str,
    /// Bytes before this offset (relative to the walked slice) are complete, valid frames
    /// and may still be forwarded.
    pub valid_upto: usize,
    /// The frame in error began in an earlier read, so part of it is already forwarded
    /// and the receiving leg is mid-frame.
    pub mid_frame: bool,
}

/// A close frame passed through the walker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseSeen {
    /// Status code, if the close had a payload.
    pub code: Option<u16>,
    /// Reason text.
    pub reason: String,
}

/// Result of one walk.
#[derive(Debug, Default)]
pub struct Walked {
    /// Bytes of the walked slice that are processed and ready to forward. The rest (an
    /// incomplete header or control frame) must be carried to the next read.
    pub ready: usize,
    /// Complete frames (headers) seen.
    pub frames: u64,
    /// A close frame was seen; `ready` ends right after it and nothing after it counts.
    pub close: Option<CloseSeen>,
    /// Where that close frame starts (bytes before it may be forwarded without it).
    pub close_start: usize,
    /// Gate mode only: a whole text message was just processed at `start..end`; the walk
    /// stopped right after it so the caller may drop it instead of forwarding it.
    pub message: Option<(usize, usize)>,
    /// Gate mode only: the walk stopped before a text message that is not complete in the
    /// buffer; the caller must read more (growing the buffer if it is full).
    pub need_more: bool,
}

#[derive(Debug, Clone, Copy)]
struct InPayload {
    remaining: u64,
    offset: u64,
    old_key: Option<[u8; 4]>,
    new_key: Option<[u8; 4]>,
    text: bool,
    last_of_message: bool,
}

/// Per-direction frame walker state.
pub struct Walker {
    sender: Role,
    max_frame: u64,
    tracker: MessageTracker,
    utf8: Utf8Validator,
    payload: Option<InPayload>,
    max_message: u64,
    gate: bool,
    gated_start: Option<usize>,
}

/// Whether the text message starting at `buf[0]` is complete in `buf` (all its frames,
/// including interleaved control frames). A message over `max_message` counts as complete
/// so that normal processing rejects it.
fn message_complete(buf: &[u8], sender: Role, max_frame: u64, max_message: u64) -> bool {
    let mut pos = 0usize;
    let mut total = 0u64;
    loop {
        let Some(rest) = buf.get(pos..) else {
            return false;
        };
        let h = match parse_header(rest, sender, max_frame) {
            Ok(Some(h)) => h,
            Ok(None) => return false,
            Err(_) => return true, // let the walk report it
        };
        let end = pos as u64 + h.header_len as u64 + h.payload_len;
        if !h.opcode.is_control() {
            total += h.payload_len;
            if total > max_message {
                return true;
            }
        }
        if end > buf.len() as u64 {
            return false;
        }
        pos = end as usize;
        if h.fin && !h.opcode.is_control() {
            return true;
        }
    }
}

impl Walker {
    /// A walker for frames sent by `sender`.
    pub fn new(sender: Role, max_frame: u64, max_message: u64, max_fragments: u32) -> Walker {
        Walker {
            sender,
            max_frame,
            tracker: MessageTracker::new(max_message, max_fragments),
            utf8: Utf8Validator::default(),
            payload: None,
            max_message,
            gate: false,
            gated_start: None,
        }
    }

    /// Gate mode: hold each new text message until it is complete in the buffer and stop
    /// the walk right after it ([`Walked::message`]), so the caller can refuse it (used
    /// while the usage log is unavailable, to refuse `response.create`).
    pub fn set_gate(&mut self, on: bool) {
        self.gate = on;
    }

    /// True when the bytes forwarded so far end on a frame boundary.
    pub fn at_boundary(&self) -> bool {
        self.payload.is_none()
    }

    /// Walk `buf` (the bytes not yet processed), transforming it in place. Tap events are
    /// passed to `on_event`.
    pub fn walk(
        &mut self,
        buf: &mut [u8],
        tap: &mut Tap,
        on_event: &mut impl FnMut(TapEvent),
    ) -> Result<Walked, WalkError> {
        let mut out = Walked::default();
        let mut pos = 0usize;
        // Where the current data frame's header sits in this slice (None: it began in an
        // earlier read and part of it is already forwarded).
        let mut frame_start: Option<usize> = None;
        loop {
            if let Some(p) = self.payload.as_mut() {
                let avail = buf.len() - pos;
                let take = (p.remaining.min(avail as u64)) as usize;
                let chunk = &mut buf[pos..pos + take];
                if let Some(k) = p.old_key {
                    apply_mask(chunk, k, p.offset as usize);
                }
                let done = take as u64 == p.remaining;
                if p.text {
                    let last = done && p.last_of_message;
                    let utf8 = self.utf8.feed(chunk).and_then(|_| {
                        if last {
                            self.utf8.finish()
                        } else {
                            Ok(())
                        }
                    });
                    if utf8.is_err() {
                        return Err(WalkError {
                            code: 1007,
                            reason: "invalid UTF-8 in text message",
                            valid_upto: frame_start.unwrap_or(0),
                            mid_frame: frame_start.is_none(),
                        });
                    }
                    if let Some(ev) = tap.feed(chunk, last) {
                        on_event(ev);
                    }
                }
                if let Some(k) = p.new_key {
                    apply_mask(chunk, k, p.offset as usize);
                }
                p.remaining -= take as u64;
                p.offset += take as u64;
                let message_end = done && p.last_of_message;
                pos += take;
                if done {
                    self.payload = None;
                    if message_end {
                        if let Some(start) = self.gated_start.take() {
                            out.ready = pos;
                            out.message = Some((start, pos));
                            return Ok(out);
                        }
                    }
                } else {
                    out.ready = pos;
                    return Ok(out);
                }
            }
            // At a frame boundary.
            out.ready = pos;
            if pos == buf.len() {
                return Ok(out);
            }
            let header = match parse_header(&buf[pos..], self.sender, self.max_frame) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(out),
                Err(e) => {
                    return Err(WalkError {
                        code: e.close_code(),
                        reason: frame_reason(&e),
                        valid_upto: pos,
                        mid_frame: false,
                    })
                }
            };
            if self.gate && header.opcode == Opcode::Text {
                if !message_complete(&buf[pos..], self.sender, self.max_frame, self.max_message) {
                    out.need_more = true;
                    return Ok(out);
                }
                self.gated_start = Some(pos);
            }
            let step = self.tracker.on_frame(&header).map_err(|e| WalkError {
                code: e.close_code(),
                reason: frame_reason(&e),
                valid_upto: pos,
                mid_frame: false,
            })?;
            if header.opcode.is_control() {
                // Control frames are handled whole (≤ 125 bytes of payload).
                let total = header.header_len + header.payload_len as usize;
                if buf.len() - pos < total {
                    return Ok(out);
                }
                let new_key = self.rekey(&mut buf[pos..], &header);
                let payload = &mut buf[pos + header.header_len..pos + total];
                if let Some(k) = header.mask {
                    apply_mask(payload, k, 0);
                }
                let mut close = None;
                if header.opcode == Opcode::Close {
                    match validate_close_payload(payload) {
                        Ok(v) => {
                            close = Some(CloseSeen {
                                code: v.map(|(c, _)| c),
                                reason: v.map(|(_, r)| r.to_string()).unwrap_or_default(),
                            })
                        }
                        Err(e) => {
                            return Err(WalkError {
                                code: e.close_code(),
                                reason: "invalid close frame",
                                valid_upto: pos,
                                mid_frame: false,
                            })
                        }
                    }
                }
                if let Some(k) = new_key {
                    apply_mask(payload, k, 0);
                }
                pos += total;
                out.frames += 1;
                if let Some(c) = close {
                    out.close_start = pos - total;
                    out.ready = pos;
                    out.close = Some(c);
                    return Ok(out);
                }
                continue;
            }
            // Data frame: its payload streams.
            let new_key = self.rekey(&mut buf[pos..], &header);
            frame_start = Some(pos);
            if step.first && step.is_text {
                self.utf8 = Utf8Validator::default();
            }
            pos += header.header_len;
            out.frames += 1;
            self.payload = Some(InPayload {
                remaining: header.payload_len,
                offset: 0,
                old_key: header.mask,
                new_key,
                text: step.is_text,
                last_of_message: step.last,
            });
            if header.payload_len == 0 && step.is_text && step.last {
                // An empty final frame still ends the message for the tap and the validator.
                if self.utf8.finish().is_err() {
                    return Err(WalkError {
                        code: 1007,
                        reason: "invalid UTF-8 in text message",
                        valid_upto: pos - header.header_len,
                        mid_frame: false,
                    });
                }
                if let Some(ev) = tap.feed(&[], true) {
                    on_event(ev);
                }
                self.payload = None;
                if let Some(start) = self.gated_start.take() {
                    out.ready = pos;
                    out.message = Some((start, pos));
                    return Ok(out);
                }
            }
        }
    }

    /// Client frames get a fresh mask key written over the old one; returns it.
    fn rekey(&self, frame: &mut [u8], header: &FrameHeader) -> Option<[u8; 4]> {
        header.mask.map(|_| {
            let k = fresh_key();
            set_mask_key(frame, header.header_len, k);
            k
        })
    }
}

fn frame_reason(e: &crate::ws::frame::FrameError) -> &'static str {
    use crate::ws::frame::FrameError as E;
    match e {
        E::ReservedBits => "reserved bits set",
        E::ReservedOpcode(_) => "reserved opcode",
        E::FragmentedControl => "fragmented control frame",
        E::ControlTooLong(_) => "control frame too long",
        E::UnmaskedClientFrame => "unmasked client frame",
        E::MaskedServerFrame => "masked server frame",
        E::LengthMsbSet => "invalid 64-bit length",
        E::FrameTooBig { .. } => "frame too big",
        E::MessageTooBig { .. } => "message too big",
        E::TooManyFragments { .. } => "too many fragments",
        E::UnexpectedContinuation => "unexpected continuation frame",
        E::ExpectedContinuation => "expected continuation frame",
    }
}

#[cfg(test)]
#[path = "walker_tests.rs"]
mod tests;
