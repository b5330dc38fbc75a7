//! The frame walker: sans-IO, in place, one per direction.
//!
//! A pump reads bytes into its buffer and hands the unprocessed region to [`Walker::walk`].
//! The walker parses frame headers, validates them (RFC 6455 §5), and for payload bytes:
//! - frames sent by the client (masked): unmasks in place, shows the payload to the tap (and
//!   text to the UTF-8 validator), then re-masks in place with a fresh key per frame (§10.3)
//!   whose bytes overwrite the old key in the header — the frame keeps its size;
//! - frames sent by the upstream (unmasked): shows text to the tap; bytes are untouched.
//!
//! An upstream frame that is a whole text message, all in the buffer, takes one short step
//! (`Walker::whole_texts`); every other frame goes the general way below.
//!
//! Payload is processed as it arrives (a 64 MiB frame streams through a 64 KiB buffer);
//! only an incomplete header, or an incomplete control frame (≤ 139 bytes, whose close
//! payload must be validated whole), is carried over to the next read.
//!
//! **Hold mode** (the client → upstream direction): every data message is held until it is
//! complete, so the session can decide what to do with it *before* its first byte leaves —
//! forward it, refuse it (a `response.create` while the usage log is down or over a limit)
//! or rewrite it. The walker still processes the held frames as they arrive (nothing is
//! walked twice); [`Walked::holding`] tells the caller to keep the held bytes at the front
//! of its next buffer, and [`Walked::message`] hands over a complete message. Client events
//! are small and rare next to the upstream's stream, so holding them costs little; the held
//! bytes are bounded by the message limits, `--max-fragments` and [`MAX_HELD_CONTROLS`].

use crate::tap::{Tap, TapEvent};
use crate::ws::close::validate_close_payload;
use crate::ws::frame::{parse_header, set_mask_key, FrameHeader, MessageTracker, Opcode, Role};
use crate::ws::mask::{apply_mask, fresh_key};
use crate::ws::utf8::Utf8Validator;

/// Most control frames (pings) a peer may interleave into one held message (close 1008
/// above it): a ping flood inside a fragmented message must not grow the hold without bound.
pub const MAX_HELD_CONTROLS: u32 = 1024;

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
    /// Bytes of the walked slice the caller is done with: forward them (minus a
    /// [`Walked::message`] it refuses). The rest must be kept at the front of the next
    /// buffer: an incomplete header or control frame, or a held message.
    pub ready: usize,
    /// Complete frames (headers) seen.
    pub frames: u64,
    /// A close frame was seen; `ready` ends right after it and nothing after it counts.
    pub close: Option<CloseSeen>,
    /// Where that close frame starts (bytes before it may be forwarded without it).
    pub close_start: usize,
    /// Hold mode: a whole data message sits at `start..end` (`end == ready`); the walk
    /// stopped right after it so the caller can forward, drop or replace it.
    pub message: Option<(usize, usize)>,
    /// Hold mode: an incomplete message starts at this offset (`== ready`); the caller keeps
    /// everything from here and calls again once more bytes arrived.
    pub holding: bool,
    /// Whether the bytes up to `ready` end on a frame boundary (relay-originated frames may
    /// then be written behind them).
    pub boundary: bool,
}

#[derive(Debug, Clone, Copy)]
struct InPayload {
    remaining: u64,
    offset: u64,
    old_key: Option<[u8; 4]>,
    new_key: Option<[u8; 4]>,
    text: bool,
    tapped: bool,
    last_of_message: bool,
}

/// A message being held (hold mode): its bytes already walked sit at the front of the
/// caller's buffer.
#[derive(Debug, Clone, Copy, Default)]
struct Held {
    /// Walked bytes of the message at the start of the next buffer.
    walked: usize,
    /// Control frames inside it so far.
    controls: u32,
}

/// Per-direction frame walker state.
pub struct Walker {
    sender: Role,
    max_frame: u64,
    tracker: MessageTracker,
    utf8: Utf8Validator,
    payload: Option<InPayload>,
    hold: bool,
    held: Option<Held>,
}

impl Walker {
    /// A walker for frames sent by `sender`. Frames from the client are held whole (hold
    /// mode) and their binary messages are tapped too; upstream frames stream.
    pub fn new(sender: Role, max_frame: u64, max_message: u64, max_fragments: u32) -> Walker {
        Walker {
            sender,
            max_frame,
            tracker: MessageTracker::new(max_message, max_fragments),
            utf8: Utf8Validator::default(),
            payload: None,
            hold: false,
            held: None,
        }
    }

    /// Hold mode on or off (see the module docs); set before the first walk.
    pub fn with_hold(mut self, hold: bool) -> Walker {
        self.hold = hold;
        self
    }

    /// True when the bytes forwarded so far end on a frame boundary.
    pub fn at_boundary(&self) -> bool {
        self.payload.is_none() || self.held.is_some()
    }

    /// Bytes of a held message currently kept by the caller (0 when none).
    pub fn held_bytes(&self) -> usize {
        self.held.map_or(0, |h| h.walked)
    }

    /// Walk `buf` (the bytes not yet handed on: a held message and carried bytes first, as
    /// the last walk left them), transforming it in place. Tap events go to `on_event`, with
    /// the tap, so the caller can change how it reads the rest of these bytes (delta
    /// tracking) from the next frame on.
    pub fn walk(
        &mut self,
        buf: &mut [u8],
        tap: &mut Tap,
        on_event: &mut impl FnMut(TapEvent, &mut Tap),
    ) -> Result<Walked, WalkError> {
        let mut out = Walked::default();
        // Resume behind the part of a held message already walked.
        let mut held_start: Option<usize> = self.held.map(|_| 0);
        let mut pos = self.held.map_or(0, |h| h.walked);
        // Where the current data frame's header sits in this slice (None: it began in an
        // earlier read).
        let mut frame_start: Option<usize> = None;
        let err =
            |code: u16, reason: &'static str, at: usize, mid: bool, hs: Option<usize>| WalkError {
                code,
                reason,
                valid_upto: hs.map_or(at, |h| h.min(at)),
                mid_frame: mid && hs.is_none(),
            };
        loop {
            if let Some(p) = self.payload.as_mut() {
                let avail = buf.len() - pos;
                let take = (p.remaining.min(avail as u64)) as usize;
                let chunk = &mut buf[pos..pos + take];
                if let Some(k) = p.old_key {
                    apply_mask(chunk, k, p.offset as usize);
                }
                let done = take as u64 == p.remaining;
                let last = done && p.last_of_message;
                if p.text {
                    let utf8 = self.utf8.feed(chunk).and_then(|_| {
                        if last {
                            self.utf8.finish()
                        } else {
                            Ok(())
                        }
                    });
                    if utf8.is_err() {
                        return Err(err(
                            1007,
                            "invalid UTF-8 in text message",
                            frame_start.unwrap_or(0),
                            frame_start.is_none(),
                            held_start,
                        ));
                    }
                }
                if p.tapped {
                    if let Some(ev) = tap.feed_framed(chunk, last, p.remaining - take as u64) {
                        on_event(ev, tap);
                    }
                }
                if let Some(k) = p.new_key {
                    apply_mask(chunk, k, p.offset as usize);
                }
                p.remaining -= take as u64;
                p.offset += take as u64;
                pos += take;
                if !done {
                    // The buffer ends inside this frame's payload.
                    return Ok(self.stop_inside(out, pos, held_start));
                }
                self.payload = None;
                if last {
                    if let Some(start) = held_start.take() {
                        self.held = None;
                        out.ready = pos;
                        out.message = Some((start, pos));
                        out.boundary = true;
                        return Ok(out);
                    }
                }
            }
            // At a frame boundary. Upstream frames that are whole text messages take the
            // short way.
            if self.sender == Role::Server && !self.hold {
                pos = self.whole_texts(buf, pos, &mut out, tap, on_event);
            }
            if pos == buf.len() {
                return Ok(self.stop_at_boundary(out, pos, held_start));
            }
            let header = match parse_header(&buf[pos..], self.sender, self.max_frame) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(self.stop_at_boundary(out, pos, held_start)),
                Err(e) => {
                    return Err(err(
                        e.close_code(),
                        frame_reason(&e),
                        pos,
                        false,
                        held_start,
                    ))
                }
            };
            let step = self
                .tracker
                .on_frame(&header)
                .map_err(|e| err(e.close_code(), frame_reason(&e), pos, false, held_start))?;
            if header.opcode.is_control() {
                // Control frames are handled whole (≤ 125 bytes of payload).
                let total = header.header_len + header.payload_len as usize;
                if buf.len() - pos < total {
                    return Ok(self.stop_at_boundary(out, pos, held_start));
                }
                if held_start.is_some() {
                    let h = self.held.get_or_insert_with(Held::default);
                    h.controls += 1;
                    if h.controls > MAX_HELD_CONTROLS {
                        return Err(err(
                            1008,
                            "too many control frames inside a message",
                            pos,
                            false,
                            held_start,
                        ));
                    }
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
                            return Err(err(
                                e.close_code(),
                                "invalid close frame",
                                pos,
                                false,
                                held_start,
                            ))
                        }
                    }
                }
                if let Some(k) = new_key {
                    apply_mask(payload, k, 0);
                }
                pos += total;
                out.frames += 1;
                if let Some(c) = close {
                    // A close ends the stream; an unfinished held message goes out before it.
                    self.held = None;
                    out.close_start = pos - total;
                    out.ready = pos;
                    out.boundary = true;
                    out.close = Some(c);
                    return Ok(out);
                }
                continue;
            }
            // Data frame: its payload streams.
            if step.first && self.hold {
                held_start = Some(pos);
                self.held = Some(Held::default());
            }
            let new_key = self.rekey(&mut buf[pos..], &header);
            frame_start = Some(pos);
            if step.first && step.is_text {
                self.utf8 = Utf8Validator::default();
            }
            // Text is always tapped; in hold mode binary messages too (a JSON
            // `response.create` sent as a binary frame is still a create).
            let tapped = step.is_text || self.hold;
            pos += header.header_len;
            out.frames += 1;
            self.payload = Some(InPayload {
                remaining: header.payload_len,
                offset: 0,
                old_key: header.mask,
                new_key,
                text: step.is_text,
                tapped,
                last_of_message: step.last,
            });
            if header.payload_len == 0 && step.last {
                // An empty final frame still ends the message for the tap and the validator.
                if step.is_text && self.utf8.finish().is_err() {
                    return Err(err(
                        1007,
                        "invalid UTF-8 in text message",
                        pos - header.header_len,
                        false,
                        held_start,
                    ));
                }
                if tapped {
                    if let Some(ev) = tap.feed(&[], true) {
                        on_event(ev, tap);
                    }
                }
                self.payload = None;
                if let Some(start) = held_start.take() {
                    self.held = None;
                    out.ready = pos;
                    out.message = Some((start, pos));
                    out.boundary = true;
                    return Ok(out);
                }
            }
        }
    }

    /// The upstream's usual frames, one step each, from `pos` on: whole text messages in one
    /// frame (FIN, no reserved bits, unmasked, a 7- or 16-bit length, 1 byte or more) whose
    /// payload is all in `buf` and valid UTF-8, outside any message and within the limits.
    /// Each is checked and tapped exactly as the general path would, and leaves the state
    /// that path leaves after it (no payload pending). Returns the offset after the last; it
    /// stops, having changed nothing for it, at any other frame, which the general path then
    /// decides from that offset (and reports what is wrong with it, if anything).
    ///
    /// Why: under the firehose, bookkeeping the general path does per frame (the header as
    /// an enum, the pending-payload record written and read back, the mask and hold checks)
    /// cost more than the frame's UTF-8 check; see `loadtest/BENCH.md`.
    ///
    /// Out of line, one call per run of such frames: inlined into [`Walker::walk`] it made
    /// the general path (all the client's frames) slower, `cargo bench --bench walker`.
    #[inline(never)]
    fn whole_texts(
        &mut self,
        buf: &[u8],
        mut pos: usize,
        out: &mut Walked,
        tap: &mut Tap,
        on_event: &mut impl FnMut(TapEvent, &mut Tap),
    ) -> usize {
        while let Some(next) = self.whole_text(buf, pos, tap, on_event) {
            pos = next;
            out.frames += 1;
        }
        pos
    }

    /// One frame of [`Walker::whole_texts`].
    #[inline(always)]
    fn whole_text(
        &mut self,
        buf: &[u8],
        pos: usize,
        tap: &mut Tap,
        on_event: &mut impl FnMut(TapEvent, &mut Tap),
    ) -> Option<usize> {
        let rest = buf.get(pos..)?;
        // FIN | text, no RSV bits; unmasked.
        if *rest.first()? != 0x81 {
            return None;
        }
        let (len, header) = match *rest.get(1)? {
            0 | 127.. => return None,
            126 => (
                usize::from(u16::from_be_bytes([*rest.get(2)?, *rest.get(3)?])),
                4,
            ),
            n => (usize::from(n), 2),
        };
        let payload = rest.get(header..header + len)?;
        if len as u64 > self.max_frame || !crate::ws::utf8_simd::is_valid(payload) {
            return None;
        }
        if !self.tracker.on_whole_text(len as u64) {
            return None;
        }
        self.utf8.reset();
        if let Some(ev) = tap.feed_framed(payload, true, 0) {
            on_event(ev, tap);
        }
        Some(pos + header + len)
    }

    /// The buffer ended inside a payload at `pos` (== its end).
    fn stop_inside(&mut self, mut out: Walked, pos: usize, held_start: Option<usize>) -> Walked {
        match held_start {
            Some(start) => self.keep_held(out, start, pos),
            None => {
                out.ready = pos;
                out.boundary = false;
                out
            }
        }
    }

    /// The walk stopped at a frame boundary `pos` (the rest is an incomplete header or
    /// control frame, or nothing).
    fn stop_at_boundary(
        &mut self,
        mut out: Walked,
        pos: usize,
        held_start: Option<usize>,
    ) -> Walked {
        match held_start {
            Some(start) => self.keep_held(out, start, pos),
            None => {
                out.ready = pos;
                out.boundary = true;
                out
            }
        }
    }

    fn keep_held(&mut self, mut out: Walked, start: usize, walked_to: usize) -> Walked {
        let h = self.held.get_or_insert_with(Held::default);
        h.walked = walked_to - start;
        out.ready = start;
        out.holding = true;
        out.boundary = true;
        out
    }

    /// Client frames get a fresh mask key written over the old one; returns it.
    #[inline]
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
