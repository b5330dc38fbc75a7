//! Drives the frame walker the way the relay's legs do — bytes arriving in reads cut at
//! arbitrary points, whatever a walk did not hand on carried to the front of the next
//! buffer — and compares that with the same stream walked in one read. Must never panic
//! and must never loop; both ways must agree on every outcome: the close code, the error
//! code, the frames, the messages handed over in hold mode, the tap's events, and (for the
//! upstream's unmasked frames, which the walker leaves untouched) the forwarded bytes
//! exactly. Client frames are re-masked with fresh keys, so there the forwarded *lengths*
//! are compared, and the forwarded bytes must be a valid stream when walked again.
//!
//! Byte 0: bit 0 = sender (0 upstream/server, 1 client), bit 1 = hold mode (client only),
//! bits 2..8 = seed of the cuts. Byte 1: how long cuts may be (1..=256). The rest is the
//! byte stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::relay::walker::Walker;
use tollgate::tap::{Direction, Tap, TapEvent};
use tollgate::ws::frame::Role;

const MAX_FRAME: u64 = 1 << 20;
const MAX_MESSAGE: u64 = 1 << 20;
const MAX_FRAGMENTS: u32 = 64;

#[derive(Debug, Default, PartialEq)]
struct Outcome {
    forwarded: Vec<u8>,
    frames: u64,
    messages: Vec<usize>,
    events: Vec<TapEvent>,
    close: Option<Option<u16>>,
    error: Option<u16>,
}

fn walker(client: bool, hold: bool) -> (Walker, Tap) {
    let (role, dir) = if client {
        (Role::Client, Direction::ClientToUpstream)
    } else {
        (Role::Server, Direction::UpstreamToClient)
    };
    let w = Walker::new(role, MAX_FRAME, MAX_MESSAGE, MAX_FRAGMENTS).with_hold(hold);
    (w, Tap::new(dir, MAX_MESSAGE as usize))
}

/// Walk `reads` in order as one leg would; stop at a close or an error.
fn run(client: bool, hold: bool, reads: &[&[u8]]) -> Outcome {
    let (mut w, mut tap) = walker(client, hold);
    let mut out = Outcome::default();
    let mut buf: Vec<u8> = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        // A walk that hands over a held message stops right after it: walk again while it
        // makes progress on what is left.
        loop {
            let before = buf.len();
            let mut events = Vec::new();
            let r = w.walk(&mut buf, &mut tap, &mut |ev, _| events.push(ev));
            out.events.extend(events);
            let walked = match r {
                Ok(walked) => walked,
                Err(e) => {
                    assert!(e.valid_upto <= buf.len());
                    out.forwarded.extend_from_slice(&buf[..e.valid_upto]);
                    out.error = Some(e.code);
                    return out;
                }
            };
            assert!(walked.ready <= buf.len(), "ready past the buffer");
            out.frames += walked.frames;
            out.forwarded.extend_from_slice(&buf[..walked.ready]);
            if let Some(close) = walked.close {
                assert!(walked.close_start < walked.ready);
                out.close = Some(close.code);
                return out;
            }
            if let Some((start, end)) = walked.message {
                assert!(hold && start <= end && end == walked.ready);
                out.messages.push(end - start);
            }
            assert!(!walked.holding || hold, "holding without hold mode");
            buf.drain(..walked.ready);
            if walked.message.is_none() || buf.is_empty() || buf.len() == before {
                break;
            }
        }
    }
    out
}

/// Cut `data` into reads of 0..limit bytes (0-length reads included).
fn cuts(data: &[u8], seed: u8, limit: usize) -> Vec<&[u8]> {
    let mut x = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rest = data;
    let mut reads = Vec::new();
    while !rest.is_empty() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = usize::try_from(x % (limit as u64 + 1)).unwrap_or(0).min(rest.len());
        let (head, tail) = rest.split_at(n);
        reads.push(head);
        rest = tail;
    }
    reads
}

fuzz_target!(|data: &[u8]| {
    let [ctl, lim, stream @ ..] = data else {
        return;
    };
    let client = ctl & 1 == 1;
    let hold = client && ctl & 2 != 0;
    let limit = usize::from(*lim) + 1;
    let whole = run(client, hold, &[stream]);
    let split = run(client, hold, &cuts(stream, ctl >> 2, limit));
    // A frame found bad after part of it was forwarded (it began in an earlier read) has
    // that part on the wire already; in one read it is not forwarded at all.
    // Likewise the frames counted: a walk that fails reports no count, and in pieces the
    // bad frame's header may have been counted by an earlier, successful walk.
    let (mut whole, mut split) = (whole, split);
    let (w_len, s_len) = (whole.forwarded.len(), split.forwarded.len());
    if whole.error.is_some() {
        assert!(w_len <= s_len, "split forwarded less before the error");
        assert!(whole.frames <= split.frames);
        (whole.frames, split.frames) = (0, 0);
    } else {
        assert_eq!(w_len, s_len);
    }
    if client {
        // Fresh mask keys: compare everything but the bytes.
        assert_eq!(
            (&whole.messages, &whole.events, whole.frames, whole.close, whole.error),
            (&split.messages, &split.events, split.frames, split.close, split.error),
        );
        // What went upstream is itself a valid client stream, with the same outcome.
        let again = run(true, false, &[&split.forwarded]);
        assert_eq!(again.error, None, "forwarded bytes are not a valid stream");
        if hold || split.error.is_some() {
            // A message still held at the end of the stream was never forwarded (and after
            // an error the counts were cleared above).
            assert!(again.frames <= split.frames || split.error.is_some());
        } else {
            assert_eq!(again.frames, split.frames);
        }
    } else {
        assert!(stream.starts_with(&split.forwarded), "upstream bytes changed");
        if whole.error.is_some() {
            assert!(split.forwarded.starts_with(&whole.forwarded));
            let (mut w, mut s) = (whole, split);
            w.forwarded.clear();
            s.forwarded.clear();
            assert_eq!(w, s);
        } else {
            assert_eq!(whole, split);
        }
    }
});
