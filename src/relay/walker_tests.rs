use super::*;
use crate::tap::Direction;
use crate::ws::frame::{encode_frame, Opcode, Role};

fn frames(mask: bool, msgs: &[(&[u8], Opcode)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (p, op)) in msgs.iter().enumerate() {
        encode_frame(
            &mut out,
            *op,
            p,
            mask.then_some([i as u8, 0x5a, 0xa5, 0x3c]),
        );
    }
    out
}

/// Decode a stream of frames (unmasking), returning (opcode, fin, payload, key).
/// (opcode, fin, unmasked payload, mask key) of one frame.
type Decoded = (Opcode, bool, Vec<u8>, Option<[u8; 4]>);

fn decode(mut b: &[u8], sender: Role) -> Vec<Decoded> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let h = parse_header(b, sender, u64::MAX >> 1).unwrap().unwrap();
        let end = h.header_len + h.payload_len as usize;
        let mut p = b[h.header_len..end].to_vec();
        if let Some(k) = h.mask {
            apply_mask(&mut p, k, 0);
        }
        out.push((h.opcode, h.fin, p, h.mask));
        b = &b[end..];
    }
    out
}

/// Walk `input` delivered in chunks of the given sizes, as the pump does (carrying the
/// unprocessed tail); returns the forwarded bytes and the tap events.
fn run(
    input: &[u8],
    sender: Role,
    chunks: &[usize],
) -> (Vec<u8>, Vec<TapEvent>, Option<CloseSeen>) {
    let (out, events, close, _) = run_counting(input, sender, chunks);
    (out, events, close)
}

/// [`run`], also returning the frames the walks counted.
fn run_counting(
    input: &[u8],
    sender: Role,
    chunks: &[usize],
) -> (Vec<u8>, Vec<TapEvent>, Option<CloseSeen>, u64) {
    let mut w = Walker::new(sender, 1 << 20, 1 << 22, 64).with_hold(sender == Role::Client);
    let dir = if sender == Role::Client {
        Direction::ClientToUpstream
    } else {
        Direction::UpstreamToClient
    };
    let mut tap = Tap::new(dir, 1 << 22);
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut events = Vec::new();
    let mut pos = 0;
    let mut frames = 0;
    let mut ci = 0;
    while pos < input.len() {
        let n = chunks[ci % chunks.len()].max(1).min(input.len() - pos);
        ci += 1;
        buf.extend_from_slice(&input[pos..pos + n]);
        pos += n;
        loop {
            let walked = w
                .walk(&mut buf, &mut tap, &mut |e, _| events.push(e))
                .unwrap();
            frames += walked.frames;
            out.extend_from_slice(&buf[..walked.ready]);
            if walked.close.is_some() {
                return (out, events, walked.close, frames);
            }
            buf.drain(..walked.ready);
            // A held message was handed over: walk what follows it before reading more.
            if walked.message.is_none() || buf.is_empty() {
                break;
            }
        }
    }
    assert!(buf.is_empty(), "nothing left over at the end");
    (out, events, None, frames)
}

const CREATE: &[u8] = br#"{"type":"response.create","model":"gpt-5","stream_id":"a"}"#;

#[test]
fn client_frames_are_remasked_with_fresh_keys_and_payload_kept() {
    let input = frames(
        true,
        &[
            (CREATE, Opcode::Text),
            (b"ping!", Opcode::Ping),
            (&[0u8, 1, 2, 255], Opcode::Binary),
        ],
    );
    for chunks in [vec![1], vec![2, 3], vec![7], vec![1000]] {
        let (out, events, _) = run(&input, Role::Client, &chunks);
        assert_eq!(out.len(), input.len(), "same size: keys replaced in place");
        let before = decode(&input, Role::Client);
        let after = decode(&out, Role::Client);
        for (b, a) in before.iter().zip(&after) {
            assert_eq!((b.0, b.1, &b.2), (a.0, a.1, &a.2));
            assert_ne!(b.3, a.3, "a fresh mask key per frame");
        }
        assert_eq!(
            events,
            vec![TapEvent::Create {
                model: Some("gpt-5".into()),
                stream_id: Some("a".into()),
                generate: None
            }]
        );
    }
}

#[test]
fn server_frames_pass_byte_for_byte_and_are_tapped() {
    let line = br#"{"type":"response.completed","response":{"id":"resp_1","model":"m","status":"completed","usage":{"input_tokens":3,"output_tokens":4,"total_tokens":7}}}"#;
    let mut input = frames(
        false,
        &[(
            b"{\"type\":\"response.output_text.delta\",\"delta\":\"x\"}",
            Opcode::Text,
        )],
    );
    // A fragmented terminal event with a ping in the middle.
    let (a, b) = line.split_at(40);
    encode_frame(&mut input, Opcode::Text, a, None);
    let fin_at = input.len() - a.len() - 2;
    input[fin_at] &= 0x7f; // clear FIN on that frame
    encode_frame(&mut input, Opcode::Ping, b"", None);
    encode_frame(&mut input, Opcode::Continuation, b, None);
    for chunks in [vec![1], vec![3, 5], vec![64]] {
        let (out, events, _) = run(&input, Role::Server, &chunks);
        assert_eq!(out, input);
        assert_eq!(events.len(), 1, "{events:?}");
        match &events[0] {
            TapEvent::Terminal(t) => assert_eq!(t.usage.map(|u| u.output_tokens), Some(4)),
            e => panic!("{e:?}"),
        }
    }
}

#[test]
fn close_stops_the_walk_right_after_it() {
    let mut input = frames(false, &[(b"hi", Opcode::Text)]);
    let mut close = [0u8; 131];
    let n = crate::ws::close::encode_close_frame(&mut close, 4001, "bye", None);
    input.extend_from_slice(&close[..n]);
    input.extend_from_slice(b"garbage after close");
    let (out, _, seen) = run(&input, Role::Server, &[5]);
    assert_eq!(
        seen,
        Some(CloseSeen {
            code: Some(4001),
            reason: "bye".into()
        })
    );
    assert!(out.len() <= input.len() - "garbage after close".len());
}

#[test]
fn errors_carry_the_right_code_and_valid_prefix() {
    let mut w = Walker::new(Role::Client, 1 << 20, 1 << 20, 8);
    let mut tap = Tap::new(Direction::ClientToUpstream, 1 << 20);
    let mut buf = frames(true, &[(b"ok", Opcode::Text)]);
    let good = buf.len();
    buf.extend(frames(false, &[(b"unmasked", Opcode::Text)]));
    let e = w.walk(&mut buf, &mut tap, &mut |_, _| {}).unwrap_err();
    assert_eq!((e.code, e.valid_upto, e.mid_frame), (1002, good, false));

    let mut w = Walker::new(Role::Client, 1 << 20, 1 << 20, 8);
    let mut buf = frames(true, &[(&[0xff, 0xfe], Opcode::Text)]);
    assert_eq!(
        w.walk(&mut buf, &mut tap, &mut |_, _| {}).unwrap_err().code,
        1007
    );
}

/// What [`hold_walk`] saw: messages handed over (absolute ranges), bytes forwarded after
/// each input byte, tap events, and the forwarded bytes.
type HoldWalk = (Vec<(usize, usize)>, Vec<usize>, Vec<TapEvent>, Vec<u8>);

/// Feeds `input` one byte at a time to a hold-mode client walker.
fn hold_walk(input: &[u8]) -> HoldWalk {
    let mut w = Walker::new(Role::Client, 1 << 20, 1 << 20, 8).with_hold(true);
    let mut tap = Tap::new(Direction::ClientToUpstream, 1 << 20);
    let (mut buf, mut out, mut events) = (Vec::new(), Vec::new(), Vec::new());
    let (mut messages, mut forwarded_after) = (Vec::new(), Vec::new());
    for &b in input {
        buf.push(b);
        loop {
            let walked = w
                .walk(&mut buf, &mut tap, &mut |e, _| events.push(e))
                .unwrap();
            if let Some((s, e)) = walked.message {
                messages.push((out.len() + s, out.len() + e));
            }
            if walked.holding {
                assert_eq!(walked.ready, 0, "a held message starts the buffer");
                assert!(w.held_bytes() <= buf.len());
            }
            out.extend_from_slice(&buf[..walked.ready]);
            buf.drain(..walked.ready);
            if walked.message.is_none() || buf.is_empty() {
                break;
            }
        }
        forwarded_after.push(out.len());
    }
    assert!(buf.is_empty());
    (messages, forwarded_after, events, out)
}

#[test]
fn hold_mode_hands_over_each_message_only_when_whole() {
    let input = frames(true, &[(CREATE, Opcode::Text), (b"next", Opcode::Text)]);
    let first_len = CREATE.len() + 6;
    let (messages, forwarded_after, events, out) = hold_walk(&input);
    assert_eq!(messages, vec![(0, first_len), (first_len, input.len())]);
    // Nothing of a message leaves before its last byte arrived.
    for (i, &n) in forwarded_after.iter().enumerate() {
        let arrived = i + 1;
        let expect = if arrived >= input.len() {
            input.len()
        } else if arrived >= first_len {
            first_len
        } else {
            0
        };
        assert_eq!(n, expect, "after {arrived} bytes");
    }
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(decode(&out, Role::Client).len(), 2);
}

#[test]
fn hold_mode_taps_binary_messages_and_holds_fragments_with_pings() {
    // A create sent as a binary message, fragmented, with a ping between the fragments.
    let (a, b) = CREATE.split_at(20);
    let mut input = Vec::new();
    encode_frame(&mut input, Opcode::Binary, a, Some([1, 2, 3, 4]));
    input[0] &= 0x7f; // not FIN
    encode_frame(&mut input, Opcode::Ping, b"p", Some([5, 6, 7, 8]));
    encode_frame(&mut input, Opcode::Continuation, b, Some([9, 9, 9, 9]));
    let (messages, forwarded_after, events, out) = hold_walk(&input);
    assert_eq!(
        messages,
        vec![(0, input.len())],
        "the ping is held inside the message"
    );
    assert!(forwarded_after[..input.len() - 1].iter().all(|&n| n == 0));
    assert!(
        matches!(events.as_slice(), [TapEvent::Create { .. }]),
        "{events:?}"
    );
    let d = decode(&out, Role::Client);
    assert_eq!(
        d.iter().map(|f| f.0).collect::<Vec<_>>(),
        [Opcode::Binary, Opcode::Ping, Opcode::Continuation]
    );
}

#[test]
fn a_ping_flood_inside_a_held_message_is_bounded() {
    let mut input = Vec::new();
    encode_frame(&mut input, Opcode::Text, b"{", Some([1, 2, 3, 4]));
    input[0] &= 0x7f;
    for _ in 0..=MAX_HELD_CONTROLS {
        encode_frame(&mut input, Opcode::Ping, b"", Some([1, 2, 3, 4]));
    }
    let mut w = Walker::new(Role::Client, 1 << 20, 1 << 20, 8).with_hold(true);
    let mut tap = Tap::new(Direction::ClientToUpstream, 1 << 20);
    let e = w.walk(&mut input, &mut tap, &mut |_, _| {}).unwrap_err();
    assert_eq!((e.code, e.valid_upto, e.mid_frame), (1008, 0, false));
}

#[test]
fn a_close_inside_a_held_message_releases_it() {
    let mut input = Vec::new();
    encode_frame(&mut input, Opcode::Text, b"{\"type\"", Some([1, 2, 3, 4]));
    input[0] &= 0x7f;
    let at = input.len();
    let mut close = [0u8; 131];
    let n = crate::ws::close::encode_close_frame(&mut close, 1000, "", Some([4, 3, 2, 1]));
    input.extend_from_slice(&close[..n]);
    let mut w = Walker::new(Role::Client, 1 << 20, 1 << 20, 8).with_hold(true);
    let mut tap = Tap::new(Direction::ClientToUpstream, 1 << 20);
    // First only the fragment: held.
    let mut buf = input[..at].to_vec();
    let walked = w.walk(&mut buf, &mut tap, &mut |_, _| {}).unwrap();
    assert!(walked.holding && walked.ready == 0);
    buf.extend_from_slice(&input[at..]);
    let walked = w.walk(&mut buf, &mut tap, &mut |_, _| {}).unwrap();
    assert_eq!((walked.close_start, walked.ready), (at, input.len()));
    assert!(walked.close.is_some() && !walked.holding);
}

#[test]
fn whole_text_frames_are_walked_as_the_general_path_walks_them() {
    // Whole text frames (7- and 16-bit lengths, ASCII and not) take `Walker::whole_text`
    // when read whole; read a byte at a time, every one of them goes the general way.
    let delta = |s: &str| format!(r#"{{"type":"response.output_text.delta","delta":"{s}"}}"#);
    let long = delta(&"café ☃ 🚀 ".repeat(40));
    let big = delta(&"x".repeat(70_000));
    let done = r#"{"type":"response.completed","response":{"id":"resp_9","model":"m","status":"completed","usage":{"input_tokens":5,"output_tokens":6,"total_tokens":11}}}"#;
    let created = r#"{"type":"response.created","response":{"id":"resp_9","model":"m"}}"#;
    let (d1, d2) = (delta("a"), delta("naïve"));
    let mut input = frames(
        false,
        &[
            (created.as_bytes(), Opcode::Text),
            (d1.as_bytes(), Opcode::Text),
            (long.as_bytes(), Opcode::Text),
            (b"", Opcode::Text),
            (b"ping", Opcode::Ping),
            (&[1, 2, 3], Opcode::Binary),
            (big.as_bytes(), Opcode::Text),
            (d2.as_bytes(), Opcode::Text),
        ],
    );
    // The terminal event fragmented, then a whole one of another response.
    let (a, b) = done.split_at(30);
    encode_frame(&mut input, Opcode::Text, a.as_bytes(), None);
    let fin_at = input.len() - a.len() - 2;
    input[fin_at] &= 0x7f;
    encode_frame(&mut input, Opcode::Continuation, b.as_bytes(), None);
    let done2 = done.replace("resp_9", "resp_10");
    input.extend(frames(false, &[(done2.as_bytes(), Opcode::Text)]));
    let (out, events, close, frames_seen) = run_counting(&input, Role::Server, &[1]);
    assert_eq!(close, None);
    assert_eq!(out, input, "upstream bytes pass untouched");
    assert_eq!(frames_seen, 11);
    let terminals = events
        .iter()
        .filter(|e| matches!(e, TapEvent::Terminal(_)))
        .count();
    assert_eq!(terminals, 2, "{events:?}");
    for chunk in [7, 64, 1000, input.len()] {
        assert_eq!(
            run_counting(&input, Role::Server, &[chunk]),
            (out.clone(), events.clone(), None, frames_seen),
            "reads of {chunk} bytes"
        );
    }
}

#[test]
fn a_whole_text_frame_the_short_way_refuses_gets_the_general_paths_verdict() {
    let walk = |w: &mut Walker, buf: &mut Vec<u8>| {
        let mut tap = Tap::new(Direction::UpstreamToClient, 1 << 20);
        w.walk(buf, &mut tap, &mut |_, _| {})
            .map(|r| r.ready)
            .map_err(|e| (e.code, e.valid_upto, e.mid_frame))
    };
    let server = || Walker::new(Role::Server, 1 << 20, 1 << 20, 8);
    let good = frames(false, &[(b"{}", Opcode::Text), (b"[1]", Opcode::Text)]);
    let cases: [(&str, Walker, Vec<u8>, u16); 6] = [
        (
            "invalid UTF-8",
            server(),
            frames(false, &[(&[b'a', 0xff], Opcode::Text)]),
            1007,
        ),
        (
            "ends inside a character",
            server(),
            frames(false, &[(&[b'a', 0xc3], Opcode::Text)]),
            1007,
        ),
        (
            "over the message limit",
            Walker::new(Role::Server, 1 << 20, 4, 8),
            frames(false, &[(b"12345", Opcode::Text)]),
            1009,
        ),
        (
            "over the frame limit",
            Walker::new(Role::Server, 4, 1 << 20, 8),
            frames(false, &[(b"12345", Opcode::Text)]),
            1009,
        ),
        ("reserved bit", server(), vec![0xc1, 1, b'x'], 1002),
        (
            "masked",
            server(),
            frames(true, &[(b"x", Opcode::Text)]),
            1002,
        ),
    ];
    for (what, mut w, bad, code) in cases {
        let mut buf = [good.clone(), bad].concat();
        assert_eq!(
            walk(&mut w, &mut buf),
            Err((code, good.len(), false)),
            "{what}"
        );
    }
    // A whole text frame while a fragmented message is open.
    let mut w = server();
    let mut buf = frames(false, &[(b"part", Opcode::Text)]);
    buf[0] &= 0x7f;
    let open = buf.len();
    buf.extend(frames(false, &[(b"whole", Opcode::Text)]));
    assert_eq!(walk(&mut w, &mut buf), Err((1002, open, false)));
}
