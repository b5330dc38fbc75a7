use super::*;
use crate::ws::mask::apply_mask;

const MAX: u64 = 1 << 20;
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn parse(buf: &[u8], role: Role) -> Result<Option<FrameHeader>, FrameError> {
    parse_header(buf, role, MAX)
}

fn enc(fin: bool, op: Opcode, mask: Option<[u8; 4]>, len: u64) -> Vec<u8> {
    let mut out = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut out, fin, op, mask, len);
    out[..n].to_vec()
}

#[test]
fn rfc_examples_parse() {
    // RFC 6455 §5.7: unmasked "Hello" from a server, masked "Hello" from a client.
    let h = parse(&[0x81, 0x05, b'H'], Role::Server).unwrap().unwrap();
    assert_eq!(
        h,
        FrameHeader {
            fin: true,
            opcode: Opcode::Text,
            mask: None,
            payload_len: 5,
            header_len: 2
        }
    );
    let h = parse(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f], Role::Client)
        .unwrap()
        .unwrap();
    assert_eq!(h.mask, Some(KEY));
    assert_eq!((h.payload_len, h.header_len), (5, 6));
    // Fragmented "Hel" + "lo".
    let h = parse(&[0x01, 0x03], Role::Server).unwrap().unwrap();
    assert!(!h.fin && h.opcode == Opcode::Text);
    let h = parse(&[0x80, 0x02], Role::Server).unwrap().unwrap();
    assert!(h.fin && h.opcode == Opcode::Continuation);
    // 256-byte and 64 KiB binary, unmasked.
    let h = parse(&[0x82, 0x7E, 0x01, 0x00], Role::Server)
        .unwrap()
        .unwrap();
    assert_eq!((h.payload_len, h.header_len), (256, 4));
    let h = parse(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0], Role::Server)
        .unwrap()
        .unwrap();
    assert_eq!((h.payload_len, h.header_len), (65536, 10));
}

#[test]
fn every_strict_prefix_needs_more_bytes() {
    let cases = [
        enc(true, Opcode::Text, Some(KEY), 5),
        enc(true, Opcode::Binary, Some(KEY), 300),
        enc(false, Opcode::Binary, Some(KEY), 70_000),
        enc(true, Opcode::Binary, None, 70_000),
        enc(true, Opcode::Ping, None, 0),
    ];
    for full in cases {
        let role = if full[1] & 0x80 != 0 {
            Role::Client
        } else {
            Role::Server
        };
        for cut in 0..full.len() {
            assert_eq!(
                parse(&full[..cut], role),
                Ok(None),
                "{full:x?} cut at {cut}"
            );
        }
        assert!(parse(&full, role).unwrap().is_some());
    }
}

#[test]
fn encode_roundtrips_through_parse_at_every_length_boundary() {
    let ops = [Opcode::Continuation, Opcode::Text, Opcode::Binary];
    for len in [0, 1, 125, 126, 127, 0xFFFF, 0x1_0000, MAX] {
        for op in ops {
            for fin in [false, true] {
                for (mask, role) in [(Some(KEY), Role::Client), (None, Role::Server)] {
                    let bytes = enc(fin, op, mask, len);
                    let h = parse(&bytes, role).unwrap().unwrap();
                    let expect = FrameHeader {
                        fin,
                        opcode: op,
                        mask,
                        payload_len: len,
                        header_len: bytes.len(),
                    };
                    assert_eq!(h, expect);
                }
            }
        }
    }
    assert_eq!(enc(true, Opcode::Text, None, 125).len(), 2);
    assert_eq!(enc(true, Opcode::Text, None, 126).len(), 4);
    assert_eq!(
        enc(true, Opcode::Text, Some(KEY), 0x1_0000).len(),
        MAX_HEADER_LEN
    );
}

#[test]
fn header_errors() {
    let s = Role::Server;
    for rsv in [0x40, 0x20, 0x10] {
        assert_eq!(parse(&[0x81 | rsv, 0x00], s), Err(FrameError::ReservedBits));
    }
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        assert_eq!(
            parse(&[0x80 | op, 0x00], s),
            Err(FrameError::ReservedOpcode(op))
        );
    }
    assert_eq!(parse(&[0x09, 0x00], s), Err(FrameError::FragmentedControl));
    assert_eq!(parse(&[0x88, 126], s), Err(FrameError::ControlTooLong(126)));
    assert_eq!(parse(&[0x8A, 127], s), Err(FrameError::ControlTooLong(127)));
    assert!(parse(&[0x89, 125], s).unwrap().is_some());
    assert_eq!(
        parse(&[0x81, 0x00], Role::Client),
        Err(FrameError::UnmaskedClientFrame)
    );
    assert_eq!(parse(&[0x81, 0x80], s), Err(FrameError::MaskedServerFrame));
}

#[test]
fn oversized_lengths_rejected_from_the_header_alone() {
    // MSB set: rejected with no payload and no mask key present.
    let msb = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(parse(&msb, Role::Client), Err(FrameError::LengthMsbSet));
    let huge = [0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
    assert_eq!(
        parse(&huge, Role::Server),
        Err(FrameError::FrameTooBig {
            len: i64::MAX as u64,
            max: MAX
        })
    );
    // Just over the limit with a 16-bit length and a small limit, before the mask key arrives.
    assert_eq!(
        parse_header(&[0x82, 0xFE, 0x01, 0x00], Role::Client, 255),
        Err(FrameError::FrameTooBig { len: 256, max: 255 })
    );
    assert!(parse_header(&[0x82, 0x7E, 0x00, 0xFF], Role::Server, 255)
        .unwrap()
        .is_some());
    assert!(parse_header(&[0x82, 0x7E, 0x01, 0x00], Role::Server, 255).is_err());
    assert_eq!(
        parse_header(&[0x82, 6], Role::Server, 5),
        Err(FrameError::FrameTooBig { len: 6, max: 5 })
    );
}

#[test]
fn non_minimal_lengths_are_accepted() {
    let h = parse(&[0x82, 0x7E, 0x00, 0x05], Role::Server)
        .unwrap()
        .unwrap();
    assert_eq!((h.payload_len, h.header_len), (5, 4));
    let h = parse(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0, 5], Role::Server)
        .unwrap()
        .unwrap();
    assert_eq!((h.payload_len, h.header_len), (5, 10));
}

#[test]
fn close_codes_for_errors() {
    assert_eq!(
        FrameError::FrameTooBig { len: 2, max: 1 }.close_code(),
        1009
    );
    assert_eq!(FrameError::MessageTooBig { max: 1 }.close_code(), 1009);
    assert_eq!(FrameError::TooManyFragments { max: 1 }.close_code(), 1008);
    for e in [
        FrameError::ReservedBits,
        FrameError::ReservedOpcode(3),
        FrameError::FragmentedControl,
        FrameError::ControlTooLong(126),
        FrameError::UnmaskedClientFrame,
        FrameError::MaskedServerFrame,
        FrameError::LengthMsbSet,
        FrameError::UnexpectedContinuation,
        FrameError::ExpectedContinuation,
    ] {
        assert_eq!(e.close_code(), 1002, "{e}");
    }
}

#[test]
fn set_mask_key_rewrites_only_the_key() {
    let mut buf = enc(true, Opcode::Binary, Some(KEY), 300);
    buf.extend_from_slice(b"payload");
    let h = parse(&buf, Role::Client).unwrap().unwrap();
    set_mask_key(&mut buf, h.header_len, [9, 8, 7, 6]);
    let h2 = parse(&buf, Role::Client).unwrap().unwrap();
    assert_eq!(h2.mask, Some([9, 8, 7, 6]));
    assert_eq!((h2.payload_len, h2.header_len), (300, 8));
    assert_eq!(&buf[8..], b"payload");
}

#[test]
fn encode_frame_appends_masked_and_unmasked_frames() {
    let mut out = vec![0xAA];
    encode_frame(&mut out, Opcode::Text, b"Hello", Some(KEY));
    assert_eq!(
        out,
        [0xAA, 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
    );
    let mut out = Vec::new();
    let payload = vec![b'x'; 300];
    encode_frame(&mut out, Opcode::Binary, &payload, None);
    let h = parse(&out, Role::Server).unwrap().unwrap();
    assert_eq!(
        (h.opcode, h.payload_len, h.header_len),
        (Opcode::Binary, 300, 4)
    );
    assert_eq!(&out[4..], &payload[..]);
    let mut masked = Vec::new();
    encode_frame(&mut masked, Opcode::Binary, &payload, Some(KEY));
    let h = parse(&masked, Role::Client).unwrap().unwrap();
    let body = &mut masked[h.header_len..];
    apply_mask(body, KEY, 0);
    assert_eq!(body, &payload[..]);
}

fn hdr(fin: bool, opcode: Opcode, len: u64) -> FrameHeader {
    FrameHeader {
        fin,
        opcode,
        mask: None,
        payload_len: len,
        header_len: 2,
    }
}

#[test]
fn tracker_sequences_fragmented_messages_with_interleaved_control() {
    let mut t = MessageTracker::new(100, 4);
    let s = t.on_frame(&hdr(false, Opcode::Text, 10)).unwrap();
    assert_eq!(
        s,
        MessageStep {
            is_text: true,
            first: true,
            last: false
        }
    );
    assert!(t.in_message() && t.current_is_text());
    let s = t.on_frame(&hdr(true, Opcode::Ping, 3)).unwrap();
    assert_eq!(
        s,
        MessageStep {
            is_text: false,
            first: false,
            last: false
        }
    );
    let s = t.on_frame(&hdr(false, Opcode::Continuation, 10)).unwrap();
    assert_eq!(
        s,
        MessageStep {
            is_text: true,
            first: false,
            last: false
        }
    );
    let s = t.on_frame(&hdr(true, Opcode::Continuation, 80)).unwrap();
    assert_eq!(
        s,
        MessageStep {
            is_text: true,
            first: false,
            last: true
        }
    );
    assert!(!t.in_message() && !t.current_is_text());
    let s = t.on_frame(&hdr(true, Opcode::Binary, 100)).unwrap();
    assert_eq!(
        s,
        MessageStep {
            is_text: false,
            first: true,
            last: true
        }
    );
}

#[test]
fn tracker_rejects_bad_sequences() {
    let mut t = MessageTracker::new(100, 4);
    assert_eq!(
        t.on_frame(&hdr(true, Opcode::Continuation, 1)),
        Err(FrameError::UnexpectedContinuation)
    );
    t.on_frame(&hdr(false, Opcode::Binary, 1)).unwrap();
    assert_eq!(
        t.on_frame(&hdr(true, Opcode::Text, 1)),
        Err(FrameError::ExpectedContinuation)
    );
    assert!(!t.in_message(), "state is reset after an error");
}

#[test]
fn tracker_enforces_message_size_and_fragment_count() {
    let mut t = MessageTracker::new(100, 3);
    t.on_frame(&hdr(false, Opcode::Binary, 60)).unwrap();
    assert_eq!(
        t.on_frame(&hdr(true, Opcode::Continuation, 41)),
        Err(FrameError::MessageTooBig { max: 100 })
    );
    // A new message starts the byte count from zero.
    t.on_frame(&hdr(false, Opcode::Binary, 60)).unwrap();
    t.on_frame(&hdr(true, Opcode::Continuation, 40)).unwrap();
    t.on_frame(&hdr(true, Opcode::Binary, 100)).unwrap();
    // Three frames allowed, the fourth rejected.
    t.on_frame(&hdr(false, Opcode::Text, 0)).unwrap();
    t.on_frame(&hdr(false, Opcode::Continuation, 0)).unwrap();
    t.on_frame(&hdr(false, Opcode::Continuation, 0)).unwrap();
    assert_eq!(
        t.on_frame(&hdr(true, Opcode::Continuation, 0)),
        Err(FrameError::TooManyFragments { max: 3 })
    );
    // Sizes near u64::MAX saturate instead of wrapping.
    let mut t = MessageTracker::new(u64::MAX - 1, 10);
    t.on_frame(&hdr(false, Opcode::Binary, u64::MAX - 1))
        .unwrap();
    assert!(t
        .on_frame(&hdr(true, Opcode::Continuation, u64::MAX - 1))
        .is_err());
}

#[test]
fn opcode_wire_values_roundtrip() {
    for v in 0u8..=0xFF {
        if let Some(op) = Opcode::from_u8(v) {
            assert_eq!(op.as_u8(), v);
            assert_eq!(op.is_control(), v >= 8);
        }
    }
    assert_eq!(
        (0u8..=0xFF)
            .filter(|v| Opcode::from_u8(*v).is_some())
            .count(),
        6
    );
}
