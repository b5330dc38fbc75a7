//! Walks arbitrary bytes as a stream of WebSocket frames, the way the relay's pumps do:
//! `parse_header` + `MessageTracker` (+ unmask and UTF-8 validation of text payloads) must
//! never panic, and every accepted header must re-encode to an equivalent header.
//!
//! Byte 0 picks the sender role and the limits; the rest is the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::ws::frame::{encode_header, parse_header, MessageTracker, Role, MAX_HEADER_LEN};
use tollgate::ws::mask::apply_mask;
use tollgate::ws::utf8::Utf8Validator;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let sender = if ctl & 1 == 0 {
        Role::Client
    } else {
        Role::Server
    };
    let max_frame = if ctl & 2 == 0 { 1 << 16 } else { u64::MAX >> 1 };
    let max_fragments = u32::from(ctl >> 4) + 1;
    let mut tracker = MessageTracker::new(1 << 20, max_fragments);
    let mut utf8 = Utf8Validator::new();
    let mut buf = stream.to_vec();
    let mut pos = 0usize;
    loop {
        let Some(rest) = buf.get_mut(pos..) else {
            return;
        };
        let h = match parse_header(rest, sender, max_frame) {
            Ok(Some(h)) => h,
            Ok(None) | Err(_) => return,
        };
        assert!((2..=MAX_HEADER_LEN).contains(&h.header_len));
        assert!(h.payload_len <= max_frame);
        assert_eq!(h.mask.is_some(), sender == Role::Client);

        let mut enc = [0u8; MAX_HEADER_LEN];
        let n = encode_header(&mut enc, h.fin, h.opcode, h.mask, h.payload_len);
        assert!(n <= h.header_len, "encoder is minimal, the parser lenient");
        let again = parse_header(&enc[..n], sender, max_frame);
        assert_eq!(
            again
                .ok()
                .flatten()
                .map(|g| (g.fin, g.opcode, g.mask, g.payload_len)),
            Some((h.fin, h.opcode, h.mask, h.payload_len))
        );

        let Ok(step) = tracker.on_frame(&h) else {
            return;
        };
        let start = h.header_len;
        let Ok(len) = usize::try_from(h.payload_len) else {
            return;
        };
        let end = start.saturating_add(len).min(rest.len());
        let Some(payload) = rest.get_mut(start..end) else {
            return;
        };
        if let Some(key) = h.mask {
            apply_mask(payload, key, 0);
        }
        if step.is_text {
            if utf8.feed(payload).is_err() {
                return;
            }
            if step.last && utf8.finish().is_err() {
                return;
            }
        }
        if end - start < len {
            return;
        }
        pos += end;
    }
});
