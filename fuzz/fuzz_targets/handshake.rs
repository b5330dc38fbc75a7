//! Arbitrary bytes as a client's upgrade request and as upstream's handshake answer. Nothing
//! may panic, and:
//! - parsing the head fed in chunks (with one `HeadScanner`) agrees with parsing it at once;
//! - a request we accept rewrites to an upstream request that our own parser accepts, with the
//!   same path, and whose key our `response_101` answers in a way `parse_response` validates;
//! - header values never smuggle a line break into what we write.
//!
//! Byte 0 picks the chunk size for the incremental parse and small or default limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::server::handshake::{
    parse_request, parse_request_with, response_101, HeadScanner, Limits,
};
use tollgate::upstream::handshake::{build_request, parse_response, UpstreamReply};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let limits = if ctl & 0x80 == 0 {
        Limits::default()
    } else {
        Limits {
            max_header_bytes: 512,
            max_headers: 8,
        }
    };
    let chunk = usize::from(ctl & 0x7f) + 1;

    let whole = parse_request(input, &limits);
    let mut scanner = HeadScanner::new();
    let mut incremental = Ok(None);
    let mut end = 0;
    while end < input.len() {
        end = (end + chunk).min(input.len());
        incremental = parse_request_with(&input[..end], &limits, &mut scanner);
        if !matches!(incremental, Ok(None)) {
            break;
        }
    }
    match (&incremental, &whole) {
        (Ok(Some(a)), Ok(Some(b))) => assert_eq!(a, b),
        (Ok(None), Ok(None)) | (Err(_), Err(_)) => {}
        (a, b) => panic!("incremental {a:?} != whole {b:?}"),
    }
    assert!(scanner.examined() <= 4 * input.len() + 4);

    if let Ok(Some(req)) = whole {
        let inject = vec![(
            "Authorization".to_string(),
            "Bearer sk-provider".to_string(),
        )];
        let up = build_request(&req, "upstream.example:8443", "/base", &inject, true);
        let again = parse_request(
            &up.bytes,
            &Limits {
                max_header_bytes: 1 << 20,
                max_headers: 1 << 12,
            },
        )
        .expect("our upstream request must parse")
        .expect("our upstream request must be complete");
        assert_eq!(again.path_and_query, format!("/base{}", req.path_and_query));
        assert_eq!(again.head_len, up.bytes.len());

        let reply = response_101(&up.ws_key, &req.headers);
        assert_eq!(reply.windows(4).filter(|w| w == b"\r\n\r\n").count(), 1);
        match parse_response(
            &reply,
            &up.ws_key,
            up.offered_protocols.as_deref(),
            &Limits {
                max_header_bytes: 1 << 20,
                max_headers: 1 << 12,
            },
        ) {
            Ok(Some(UpstreamReply::Upgraded { head_len, .. })) => assert_eq!(head_len, reply.len()),
            // The client's own headers may carry a Sec-WebSocket-Protocol or -Extensions.
            Err(_) => {}
            other => panic!("our 101 parsed as {other:?}"),
        }
    }

    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let _ = parse_response(input, key, Some(b"a, b"), &limits);
});
