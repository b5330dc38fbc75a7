//! Protocol violations close the offending leg with the right code and forward nothing.
mod common;

use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;
use tollgate_loadtest::mock::{Fault, MockConfig, MockUpstream};

const KEY: Option<[u8; 4]> = Some([0x11, 0x22, 0x33, 0x44]);

/// Upgrade a raw client through the relay.
fn raw_client(relay: &TestRelay) -> TcpStream {
    let mut s = TcpStream::connect(relay.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(upgrade_request("/v1/responses", &auth_line()).as_bytes())
        .unwrap();
    let (status, head) = read_http_response(&mut s);
    assert_eq!(status, 101, "{head}");
    s
}

fn expect_close(s: &mut TcpStream, want: u16, what: &str) {
    let f = read_until_close(s).unwrap_or_else(|| panic!("{what}: EOF without a close frame"));
    assert!(!f.masked, "{what}: server frames are never masked");
    assert_eq!(f.close_code(), Some(want), "{what}");
}

async fn echo() -> MockUpstream {
    MockUpstream::start(MockConfig {
        echo: true,
        ..MockConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_client_frames_get_the_right_close_code() {
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "unmasked client frame",
            client_frame(true, 1, b"hello", None),
            1002,
        ),
        (
            "RSV1 without extension",
            {
                let mut f = client_frame(true, 1, b"x", KEY);
                f[0] |= 0x40;
                f
            },
            1002,
        ),
        ("reserved opcode 3", client_frame(true, 3, b"x", KEY), 1002),
        (
            "reserved control opcode 0xB",
            client_frame(true, 0xB, b"", KEY),
            1002,
        ),
        ("fragmented ping", client_frame(false, 9, b"p", KEY), 1002),
        (
            "ping over 125 bytes",
            client_frame(true, 9, &[b'p'; 126], KEY),
            1002,
        ),
        (
            "continuation without start",
            client_frame(true, 0, b"x", KEY),
            1002,
        ),
        (
            "new message inside a fragmented one",
            [
                client_frame(false, 1, b"a", KEY),
                client_frame(true, 1, b"b", KEY),
            ]
            .concat(),
            1002,
        ),
        (
            "invalid UTF-8 text",
            client_frame(true, 1, &[0xce, 0xba, 0xed, 0xa0, 0x80], KEY),
            1007,
        ),
        (
            "close with 1-byte payload",
            client_frame(true, 8, &[3], KEY),
            1002,
        ),
        (
            "close with invalid code 1005",
            client_frame(true, 8, &1005u16.to_be_bytes(), KEY),
            1002,
        ),
        (
            "64-bit length with MSB set",
            vec![0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4],
            1002,
        ),
        (
            "frame over --max-frame-bytes (header only)",
            vec![0x82, 0xff, 0, 0, 0, 0x10, 0, 0, 0, 0, 1, 2, 3, 4],
            1009,
        ),
        (
            "message over --max-message-bytes-up",
            (0..8)
                .map(|i| client_frame(i == 7, if i == 0 { 2 } else { 0 }, &[7u8; 1024], KEY))
                .collect::<Vec<_>>()
                .concat(),
            1009,
        ),
    ];
    for driver in DRIVERS {
        let mock = echo().await;
        let relay = start_relay(
            driver,
            &mock.url(),
            &[
                "--max-frame-bytes",
                "64KiB",
                "--max-message-bytes-up",
                "4KiB",
            ],
        );
        for (what, bytes, code) in &cases {
            let before = mock.received().iter().filter(|f| f.opcode != 8).count();
            let mut s = raw_client(&relay);
            s.write_all(bytes).unwrap();
            expect_close(&mut s, *code, &format!("driver {driver}: {what}"));
            std::thread::sleep(Duration::from_millis(50));
            let after: Vec<_> = mock.received();
            // Nothing of the bad frame reached upstream (valid earlier fragments may).
            if !what.starts_with("message over") && !what.starts_with("new message") {
                assert_eq!(
                    after.iter().filter(|f| f.opcode != 8).count(),
                    before,
                    "driver {driver}: {what}: forwarded upstream"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tiny_fragment_flood_is_cut_off() {
    let mock = echo().await;
    let relay = start_relay("auto", &mock.url(), &["--max-fragments", "64"]);
    let mut s = raw_client(&relay);
    let mut flood = client_frame(false, 1, b"a", KEY);
    for _ in 0..200 {
        flood.extend(client_frame(false, 0, b"a", KEY));
    }
    let _ = s.write_all(&flood);
    expect_close(&mut s, 1008, "fragment flood");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_upstream_message_closes_both_legs_1009() {
    let mock = echo().await;
    let relay = start_relay(
        "auto",
        &mock.url(),
        &[
            "--max-message-bytes-down",
            "64KiB",
            "--max-message-bytes-up",
            "1MiB",
        ],
    );
    let mut s = raw_client(&relay);
    // The echo sends it back: too big for the downstream limit.
    s.write_all(&client_frame(true, 2, &vec![1u8; 100_000], KEY))
        .unwrap();
    expect_close(&mut s, 1009, "downstream message limit");
}

#[tokio::test(flavor = "multi_thread")]
async fn masked_upstream_frames_close_upstream_1002_and_client_1014() {
    for driver in DRIVERS {
        let mock = MockUpstream::start(MockConfig {
            fault: Some(Fault::MaskedFrames),
            ..MockConfig::default()
        })
        .await
        .unwrap();
        let relay = start_relay(driver, &mock.url(), &[]);
        let mut s = raw_client(&relay);
        s.write_all(&client_frame(
            true,
            1,
            br#"{"type":"response.create","model":"gpt-5","input":"hi"}"#,
            KEY,
        ))
        .unwrap();
        let first = read_frame(&mut s).expect("a frame");
        assert_eq!(
            first.opcode, 8,
            "driver {driver}: no masked data may be forwarded, got opcode {}",
            first.opcode
        );
        assert_eq!(first.close_code(), Some(1014));
        let close = upstream_close(&mock).expect("upstream told");
        assert_eq!(&close.payload[..2], &1002u16.to_be_bytes());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn vanished_client_makes_relay_close_upstream_1001() {
    let mock = echo().await;
    let relay = start_relay("auto", &mock.url(), &[]);
    let s = raw_client(&relay);
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
    let close = upstream_close(&mock).expect("upstream got a close, not a silent 1006");
    assert_eq!(&close.payload[..2], &1001u16.to_be_bytes());
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_header_and_pings_survive_and_pong_echoes() {
    let mock = echo().await;
    let relay = start_relay("auto", &mock.url(), &[]);
    let mut s = raw_client(&relay);
    // A frame dribbled a byte at a time still arrives whole.
    let frame = client_frame(true, 1, b"dribble", KEY);
    s.set_nodelay(true).unwrap();
    for b in &frame {
        s.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let f = read_frame(&mut s).unwrap();
    assert_eq!((f.opcode, f.payload.as_slice()), (1, &b"dribble"[..]));
    // A ping between fragments of a message is answered and the message still reassembles.
    let mut bytes = client_frame(false, 1, b"frag-", KEY);
    bytes.extend(client_frame(true, 9, b"p1", KEY));
    bytes.extend(client_frame(true, 0, b"ment", KEY));
    s.write_all(&bytes).unwrap();
    let mut got = Vec::new();
    let mut pong = false;
    while got != b"frag-ment" || !pong {
        let f = read_frame(&mut s).expect("frame");
        match f.opcode {
            10 => {
                assert_eq!(f.payload, b"p1");
                pong = true;
            }
            1 | 0 => got.extend(f.payload),
            o => panic!("opcode {o}"),
        }
    }
}
