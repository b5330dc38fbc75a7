//! The one client message the relay rewrites: a `response.create` whose `model` carries the
//! route's prefix (`"openai/gpt-5"` → `"gpt-5"`). Sans-IO.
//!
//! The message arrives held (hold mode, see [`super::walker`]): its frames, already walked
//! and re-masked with fresh keys, sit whole in the caller's buffer. The rewrite unmasks
//! their payloads into one, replaces the bytes of the top-level `model` value (found the way
//! the tap finds it), and builds **one** masked text frame with a fresh key and the new
//! length — every other payload byte unchanged. Control frames that were interleaved in a
//! fragmented message (pings) go out first, unchanged. Rare (once per prefixed create) and
//! small next to the stream it precedes, so it allocates freely.

use crate::tap::top_level_value;
use crate::ws::frame::{encode_header, parse_header, Opcode, Role, MAX_HEADER_LEN};
use crate::ws::mask::{apply_mask, fresh_key};

/// Why a held message could not be rewritten (a bug or a message that is not the create
/// the tap said it was; the caller refuses it rather than forward it unrewritten).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// The held bytes are not a sequence of complete, masked client frames.
    #[error("held bytes are not complete client frames")]
    Frames,
    /// The payload has no top-level string `model`.
    #[error("no top-level string `model` in the message")]
    NoModel,
}

/// `held` (one whole client message: masked frames, possibly fragmented, possibly with
/// control frames between its fragments) with its top-level `model` string replaced by
/// `model`, as bytes to send upstream.
pub fn rewrite_model(held: &[u8], model: &str) -> Result<Vec<u8>, RewriteError> {
    let mut controls = Vec::new();
    let mut payload = Vec::with_capacity(held.len());
    let mut opcode = None;
    let mut pos = 0;
    while pos < held.len() {
        let h = parse_header(&held[pos..], Role::Client, u64::MAX >> 1)
            .map_err(|_| RewriteError::Frames)?
            .ok_or(RewriteError::Frames)?;
        let len = usize::try_from(h.payload_len).map_err(|_| RewriteError::Frames)?;
        let end = pos
            .checked_add(h.header_len)
            .and_then(|p| p.checked_add(len))
            .filter(|&e| e <= held.len())
            .ok_or(RewriteError::Frames)?;
        let key = h.mask.ok_or(RewriteError::Frames)?;
        if h.opcode.is_control() {
            controls.extend_from_slice(&held[pos..end]);
        } else {
            if opcode.is_none() {
                opcode = Some(h.opcode);
            }
            let start = payload.len();
            payload.extend_from_slice(&held[pos + h.header_len..end]);
            apply_mask(&mut payload[start..], key, 0);
        }
        pos = end;
    }
    let opcode = opcode.ok_or(RewriteError::Frames)?;
    let span = top_level_value(&payload, "model")
        .ok()
        .flatten()
        .filter(|r| payload.get(r.start) == Some(&b'"'))
        .ok_or(RewriteError::NoModel)?;
    let value = serde_json::to_string(model).map_err(|_| RewriteError::NoModel)?;
    payload.splice(span, value.into_bytes());
    let key = fresh_key();
    let mut hdr = [0u8; MAX_HEADER_LEN];
    let opcode = if opcode == Opcode::Continuation {
        Opcode::Text
    } else {
        opcode
    };
    let n = encode_header(&mut hdr, true, opcode, Some(key), payload.len() as u64);
    let mut out = Vec::with_capacity(controls.len() + n + payload.len());
    out.extend_from_slice(&controls);
    out.extend_from_slice(&hdr[..n]);
    let start = out.len();
    out.extend_from_slice(&payload);
    apply_mask(&mut out[start..], key, 0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::encode_frame;

    /// Frames of `msg` as a client would send them: `cuts` fragment sizes, masked.
    fn client_frames(msg: &[u8], cuts: &[usize], ping_after_first: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = msg;
        let mut first = true;
        for (i, &n) in cuts.iter().enumerate() {
            let last = i + 1 == cuts.len();
            let n = if last { rest.len() } else { n.min(rest.len()) };
            let (part, tail) = rest.split_at(n);
            rest = tail;
            let op = if first {
                Opcode::Text
            } else {
                Opcode::Continuation
            };
            let key = fresh_key();
            let mut hdr = [0u8; MAX_HEADER_LEN];
            let h = encode_header(&mut hdr, last, op, Some(key), part.len() as u64);
            out.extend_from_slice(&hdr[..h]);
            let s = out.len();
            out.extend_from_slice(part);
            apply_mask(&mut out[s..], key, 0);
            if first && ping_after_first {
                encode_frame(&mut out, Opcode::Ping, b"p", Some(fresh_key()));
            }
            first = false;
        }
        out
    }

    /// The frames of `bytes` as (opcode, fin, unmasked payload).
    fn decode(bytes: &[u8]) -> Vec<(Opcode, bool, Vec<u8>)> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            let h = parse_header(&bytes[pos..], Role::Client, u64::MAX >> 1)
                .expect("valid")
                .expect("complete");
            let s = pos + h.header_len;
            let e = s + h.payload_len as usize;
            let mut p = bytes[s..e].to_vec();
            apply_mask(&mut p, h.mask.expect("masked"), 0);
            out.push((h.opcode, h.fin, p));
            pos = e;
        }
        out
    }

    const MSG: &str = r#"{"type":"response.create","model":"openai/gpt-5","input":[{"role":"user","content":"héllo \"model\": x"}],"stream_id":"a"}"#;
    const WANT: &str = r#"{"type":"response.create","model":"gpt-5","input":[{"role":"user","content":"héllo \"model\": x"}],"stream_id":"a"}"#;

    #[test]
    fn one_frame_keeps_every_other_byte() {
        let out = rewrite_model(&client_frames(MSG.as_bytes(), &[MSG.len()], false), "gpt-5")
            .expect("rewrite");
        assert_eq!(
            decode(&out),
            vec![(Opcode::Text, true, WANT.as_bytes().to_vec())]
        );
    }

    #[test]
    fn a_fragmented_message_becomes_one_frame_after_its_pings() {
        let held = client_frames(MSG.as_bytes(), &[10, 30, 7, 1], true);
        let out = rewrite_model(&held, "gpt-5").expect("rewrite");
        assert_eq!(
            decode(&out),
            vec![
                (Opcode::Ping, true, b"p".to_vec()),
                (Opcode::Text, true, WANT.as_bytes().to_vec()),
            ]
        );
    }

    #[test]
    fn lengths_across_the_16_bit_boundary_are_re_encoded() {
        // 126+ and 65536+ byte payloads change the header's length encoding.
        for pad in [120usize, 65_530] {
            let msg = format!(
                r#"{{"type":"response.create","input":"{}","model":"xai/grok-4"}}"#,
                "x".repeat(pad)
            );
            let want = msg.replace("xai/grok-4", "grok-4");
            let out = rewrite_model(
                &client_frames(msg.as_bytes(), &[msg.len()], false),
                "grok-4",
            )
            .expect("rewrite");
            assert_eq!(decode(&out), vec![(Opcode::Text, true, want.into_bytes())]);
        }
    }

    #[test]
    fn escapes_are_written_as_json() {
        let msg = r#"{"model":"r/a\u0022b","type":"response.create"}"#;
        let out = rewrite_model(&client_frames(msg.as_bytes(), &[msg.len()], false), "a\"b")
            .expect("rewrite");
        assert_eq!(
            decode(&out)[0].2,
            br#"{"model":"a\"b","type":"response.create"}"#
        );
    }

    #[test]
    fn no_model_or_broken_frames_are_errors() {
        let msg = r#"{"type":"response.create","model":5}"#;
        let held = client_frames(msg.as_bytes(), &[msg.len()], false);
        assert_eq!(rewrite_model(&held, "m"), Err(RewriteError::NoModel));
        assert_eq!(
            rewrite_model(&held[..held.len() - 1], "m"),
            Err(RewriteError::Frames)
        );
        assert_eq!(rewrite_model(&[], "m"), Err(RewriteError::Frames));
    }
}
