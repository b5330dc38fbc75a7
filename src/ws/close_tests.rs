use super::*;
use crate::ws::frame::{parse_header, Role};
use crate::ws::mask::apply_mask;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

#[test]
fn close_code_table() {
    let valid: Vec<u16> = (0..=u16::MAX).filter(|c| is_valid_close_code(*c)).collect();
    assert_eq!(valid.len(), 4 + 8 + 2000);
    for c in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999,
    ] {
        assert!(is_valid_close_code(c), "{c}");
    }
    for c in [
        0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        assert!(!is_valid_close_code(c), "{c}");
    }
}

#[test]
fn validate_payloads() {
    assert_eq!(validate_close_payload(&[]), Ok(None));
    assert_eq!(validate_close_payload(&[0x03]), Err(CloseError::OneByte));
    assert_eq!(validate_close_payload(&[0x03, 0xE8]), Ok(Some((1000, ""))));
    assert_eq!(
        validate_close_payload(b"\x03\xe9bye \xce\xba"),
        Ok(Some((1001, "bye κ")))
    );
    assert_eq!(
        validate_close_payload(&[0x03, 0xED]),
        Err(CloseError::InvalidCode(1005))
    );
    assert_eq!(validate_close_payload(&[0x0B, 0xB8]), Ok(Some((3000, ""))));
    assert_eq!(
        validate_close_payload(&[0x13, 0x88]),
        Err(CloseError::InvalidCode(5000))
    );
    // Reason with a lone surrogate encoding and with a truncated sequence.
    assert_eq!(
        validate_close_payload(b"\x03\xe8\xed\xa0\x80"),
        Err(CloseError::InvalidUtf8)
    );
    assert_eq!(
        validate_close_payload(b"\x03\xe8ok\xce"),
        Err(CloseError::InvalidUtf8)
    );
    let long = [b'a'; 126];
    assert_eq!(validate_close_payload(&long), Err(CloseError::TooLong(126)));
    let mut max = vec![0x03, 0xE8];
    max.extend_from_slice(&[b'a'; 123]);
    assert!(validate_close_payload(&max).unwrap().is_some());
}

#[test]
fn close_error_codes() {
    assert_eq!(CloseError::InvalidUtf8.close_code(), 1007);
    assert_eq!(CloseError::OneByte.close_code(), 1002);
    assert_eq!(CloseError::InvalidCode(1005).close_code(), 1002);
    assert_eq!(CloseError::TooLong(200).close_code(), 1002);
}

fn decode(frame: &[u8], role: Role) -> (u16, String) {
    let h = parse_header(frame, role, 125).unwrap().unwrap();
    assert!(h.fin && h.opcode == Opcode::Close);
    assert_eq!(frame.len(), h.header_len + h.payload_len as usize);
    let mut payload = frame[h.header_len..].to_vec();
    if let Some(key) = h.mask {
        apply_mask(&mut payload, key, 0);
    }
    match validate_close_payload(&payload).unwrap() {
        Some((code, reason)) => (code, reason.to_owned()),
        None => (codes::NO_STATUS, String::new()),
    }
}

#[test]
fn encode_close_roundtrips_masked_and_unmasked() {
    let mut out = [0u8; MAX_CLOSE_FRAME_LEN];
    let n = encode_close_frame(&mut out, codes::TOO_BIG, "message too big", None);
    assert_eq!(&out[..4], &[0x88, 17, 0x03, 0xF1]);
    assert_eq!(
        decode(&out[..n], Role::Server),
        (1009, "message too big".to_owned())
    );
    let n = encode_close_frame(&mut out, codes::GOING_AWAY, "", Some(KEY));
    assert_eq!(n, 2 + 4 + 2);
    assert_eq!(decode(&out[..n], Role::Client), (1001, String::new()));
}

#[test]
fn encode_close_truncates_reason_at_char_boundary() {
    let mut out = [0u8; MAX_CLOSE_FRAME_LEN];
    // 122 ASCII bytes + a 2-byte char would be 124 > 123: the char must be dropped whole.
    let reason = format!("{}κ", "a".repeat(122));
    let n = encode_close_frame(&mut out, codes::POLICY, &reason, Some(KEY));
    assert_eq!(decode(&out[..n], Role::Client), (1008, "a".repeat(122)));
    // 4-byte chars: 30 fit (120 bytes), the 31st does not.
    let reason = "😀".repeat(40);
    let n = encode_close_frame(&mut out, codes::NORMAL, &reason, None);
    assert_eq!(decode(&out[..n], Role::Server), (1000, "😀".repeat(30)));
    // Exactly 123 bytes fits a 125-byte payload behind a 6-byte masked header.
    let reason = "b".repeat(200);
    let n = encode_close_frame(&mut out, codes::NORMAL, &reason, Some(KEY));
    assert_eq!(n, MAX_CLOSE_FRAME_LEN);
    assert_eq!(decode(&out[..n], Role::Client).1.len(), 123);
}

#[test]
fn encode_close_with_unsendable_code_sends_empty_payload() {
    let mut out = [0u8; MAX_CLOSE_FRAME_LEN];
    for code in [codes::NO_STATUS, codes::ABNORMAL, 1015, 0] {
        let n = encode_close_frame(&mut out, code, "ignored", None);
        assert_eq!(&out[..n], &[0x88, 0x00], "{code}");
    }
}
