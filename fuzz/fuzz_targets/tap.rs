//! Feeds arbitrary bytes to the tap as one text message, the way the relay's pumps do: whole,
//! and cut at split points derived from the input (0-length chunks included), through the
//! SIMD and the scalar-string taps. Must never panic; every way must report the same event
//! (at most one); the tap must still understand the next message afterwards.
//!
//! Byte 0: bit 0 = direction (0 client→upstream, 1 upstream→client), bit 1 = track deltas,
//! bits 2..8 = seed of the cut. The rest is the message payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::tap::{Direction, Tap, TapEvent};

/// No overflow: the cut and whole paths must agree on every input.
const MAX: usize = usize::MAX;

fn cut_feed(tap: &mut Tap, msg: &[u8], seed: u8) -> Option<TapEvent> {
    let mut x = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rest = msg;
    let mut events = Vec::new();
    loop {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = usize::try_from(x % 24).unwrap_or(0).min(rest.len());
        let (head, tail) = rest.split_at(n);
        rest = tail;
        events.extend(tap.feed(head, rest.is_empty()));
        if rest.is_empty() {
            break;
        }
    }
    assert!(events.len() <= 1, "{events:?}");
    events.pop()
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, msg)) = data.split_first() else {
        return;
    };
    let dir = if ctl & 1 == 0 {
        Direction::ClientToUpstream
    } else {
        Direction::UpstreamToClient
    };
    let mut results = Vec::new();
    for scalar in [false, true] {
        let mut whole = if scalar {
            Tap::new_scalar(dir, MAX)
        } else {
            Tap::new(dir, MAX)
        };
        let mut cut = if scalar {
            Tap::new_scalar(dir, MAX)
        } else {
            Tap::new(dir, MAX)
        };
        whole.set_track_deltas(ctl & 2 != 0);
        cut.set_track_deltas(ctl & 2 != 0);
        results.push(whole.feed(msg, true));
        results.push(cut_feed(&mut cut, msg, ctl >> 2));
        // Whatever came before, the next message is understood.
        let next: &[u8] = match dir {
            Direction::ClientToUpstream => br#"{"type":"response.create","model":"m"}"#,
            Direction::UpstreamToClient => br#"{"type":"error","status":500}"#,
        };
        assert!(cut.feed(next, true).is_some());
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
});
