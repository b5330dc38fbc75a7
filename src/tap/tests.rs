//! Unit tests of the tap: string skip (SIMD and scalar twins), the resumable scanner,
//! lookalike `"type"` keys, escapes, whitespace, malformed input, and properties
//! (no panics; chunked == whole; SIMD == scalar) over random and mutated input.

use super::scan::{Scanner, Step};
#[cfg(target_arch = "x86_64")]
use super::skip::{skip_string_avx2, skip_string_sse2};
use super::skip::{skip_string_memchr, skip_string_scalar, skip_string_simd, Skip};
use super::tests_fixtures::{feed_msg, load, reference, Cut};
use super::*;

pub(super) const BIG: usize = 1 << 30;
const LOCAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/responses-ws");

/// Every cut of `msg` through SIMD and scalar taps gives the same result; returns it.
fn tap_all(dir: Direction, track: bool, msg: &[u8]) -> Option<TapEvent> {
    let mut results = Vec::new();
    for scalar in [false, true] {
        for cut in [
            Cut::Whole,
            Cut::Bytes1,
            Cut::Random {
                seed: msg.len() as u64,
                max: 7,
            },
        ] {
            let mut tap = if scalar {
                Tap::new_scalar(dir, BIG)
            } else {
                Tap::new(dir, BIG)
            };
            tap.set_track_deltas(track);
            let mut rng = fastrand::Rng::with_seed(3);
            results.push((scalar, cut, feed_msg(&mut tap, msg, cut, &mut rng).pop()));
        }
    }
    let first = results[0].2.clone();
    for (scalar, cut, got) in &results {
        assert_eq!(
            got,
            &first,
            "scalar={scalar} {cut:?} on {:?}",
            String::from_utf8_lossy(msg)
        );
    }
    first
}

pub(super) fn up(msg: &str) -> Option<TapEvent> {
    tap_all(Direction::UpstreamToClient, false, msg.as_bytes())
}

fn terminal(id: &str) -> Terminal {
    Terminal {
        event: TerminalKind::Completed,
        response_id: id.into(),
        model: None,
        status: None,
        service_tier: None,
        stream_id: None,
        usage: None,
        usage_raw: None,
    }
}

/// The block skip agrees with `want`: the dispatched one and, on x86_64, the SSE2 kernel and
/// (where the CPU has it) the AVX2 one too (the dispatcher takes AVX-512, else AVX2).
fn assert_block_skips(buf: &[u8], from: usize, want: Skip, ctx: &str) {
    assert_eq!(skip_string_simd(buf, from), want, "simd {ctx}");
    #[cfg(target_arch = "x86_64")]
    assert_eq!(skip_string_sse2(buf, from), want, "sse2 {ctx}");
    #[cfg(target_arch = "x86_64")]
    if let Some(got) = skip_string_avx2(buf, from) {
        assert_eq!(got, want, "avx2 {ctx}");
    }
}

#[test]
fn string_skip_twins_agree_on_cases() {
    // (buffer, start just after the opening quote, expected)
    let cases: [(&[u8], usize, Skip); 8] = [
        (br#""abc" rest"#, 1, Skip::Done(5)),
        (br#""a\"b""#, 1, Skip::Done(6)),
        (br#""a\\"b"#, 1, Skip::Done(5)),
        (br#""\\\"""#, 1, Skip::Done(6)),
        (br#""abc"#, 1, Skip::More(4)),
        (br#""abc\"#, 1, Skip::More(4)),
        (br#""\u0022x""#, 1, Skip::Done(9)),
        (b"\"", 1, Skip::More(1)),
    ];
    for (buf, from, want) in cases {
        assert_block_skips(buf, from, want, &format!("{buf:?}"));
        assert_eq!(skip_string_memchr(buf, from), want, "memchr {buf:?}");
        assert_eq!(skip_string_scalar(buf, from), want, "scalar {buf:?}");
    }
}

#[test]
fn string_skip_twins_agree_on_random_bytes() {
    // Dense and sparse stops, lengths around the 32-byte blocks, escapes across block edges.
    let mut rng = fastrand::Rng::with_seed(11);
    for i in 0..40_000 {
        let len = rng.usize(0..[40, 100, 300, 700][i % 4]);
        let alphabet: &[u8] = if (i / 4) % 2 == 0 {
            b"ab\"\\x "
        } else {
            b"abcdefghijklmnopqrstuvwxyz\\\""
        };
        let buf: Vec<u8> = (0..len)
            .map(|_| *rng.choice(alphabet).unwrap_or(&b'a'))
            .collect();
        let from = rng.usize(0..=len);
        let want = skip_string_scalar(&buf, from);
        assert_block_skips(&buf, from, want, &format!("{buf:?} {from}"));
        assert_eq!(
            skip_string_memchr(&buf, from),
            want,
            "memchr {buf:?} {from}"
        );
    }
    // A backslash at every position of a 128-byte run, with and without a closing quote.
    for at in 0..128 {
        for close in [false, true] {
            let mut buf = vec![b'a'; 128];
            buf[at] = b'\\';
            if close {
                buf.push(b'"');
            }
            let want = skip_string_scalar(&buf, 0);
            assert_block_skips(&buf, 0, want, &format!("{at} {close}"));
            assert_eq!(skip_string_memchr(&buf, 0), want, "memchr {at} {close}");
        }
    }
    // Backslash runs of every length up to 140 at every offset of two 64-byte blocks, so odd
    // and even runs start and end on both sides of a block edge (and span whole blocks);
    // followed by a quote, by `x"`, or by the buffer's end.
    for run in 1..=140 {
        for at in 0..128 {
            for tail in [&b"\""[..], b"x\"", b""] {
                let mut buf = vec![b'a'; at];
                buf.resize(at + run, b'\\');
                buf.extend_from_slice(tail);
                buf.extend_from_slice(b"bbbb\"");
                let want = skip_string_scalar(&buf, 0);
                assert_block_skips(&buf, 0, want, &format!("{run} {at} {tail:?}"));
                let cut = &buf[..at + run];
                let want = skip_string_scalar(cut, 0);
                assert_block_skips(cut, 0, want, &format!("cut {run} {at}"));
            }
        }
    }
}

fn members<const SIMD: bool>(buf: &[u8], grow_by: usize) -> Vec<(String, String)> {
    let mut scan = Scanner::new();
    let mut out = Vec::new();
    let mut end = 0;
    loop {
        end = (end + grow_by).min(buf.len());
        let avail = &buf[..end];
        match scan.next::<SIMD>(avail) {
            Ok(Step::Member { key, value }) => {
                let s = |r: std::ops::Range<usize>| String::from_utf8_lossy(&avail[r]).into_owned();
                out.push((s(key), s(value)));
                end = end.saturating_sub(grow_by); // do not grow until More
            }
            Ok(Step::More) if end < buf.len() => {}
            Ok(Step::More) => panic!("truncated"),
            Ok(Step::End) => return out,
            Ok(Step::Enter { at }) => panic!("a plain scanner descended at {at}"),
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn scanner_reports_top_level_members_resumably() {
    let msg = br#" { "a" : {"type":"x","b":[1,{"c":"}]"}]} , "k\"q":"v\\\"" ,"n": -1.5e3,"t":true,"z":null, "s":"\u00e9{" } "#;
    let want: Vec<(String, String)> = [
        (r#""a""#, r#"{"type":"x","b":[1,{"c":"}]"}]}"#),
        (r#""k\"q""#, r#""v\\\"""#),
        (r#""n""#, "-1.5e3"),
        (r#""t""#, "true"),
        (r#""z""#, "null"),
        (r#""s""#, r#""\u00e9{""#),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for grow in [1, 2, 5, msg.len()] {
        assert_eq!(members::<true>(msg, grow), want, "simd grow={grow}");
        assert_eq!(members::<false>(msg, grow), want, "scalar grow={grow}");
    }
}

#[test]
fn lookalike_type_keys_are_never_the_event_type() {
    // Nested objects, arrays and strings full of terminal-looking "type"s; the real type is
    // an in-progress event, last.
    let msg = r#"{"response":{"type":"response.completed","id":"r"},"items":[{"type":"response.completed"},["type","response.completed"]],"note":"\"type\":\"response.completed\"","type":"response.in_progress"}"#;
    assert_eq!(up(msg), None);
    let delta = r#"{"item":{"type":"response.completed"},"delta":"{\"type\":\"error\"}","type":"response.output_text.delta","stream_id":"s1"}"#;
    assert_eq!(up(delta), None);
    assert_eq!(
        tap_all(Direction::UpstreamToClient, true, delta.as_bytes()),
        Some(TapEvent::Delta {
            stream_id: Some("s1".into())
        })
    );
    // A "type" key inside a key-like string value at top level.
    assert_eq!(up(r#"{"x":"\"type\":","type":"response.queued"}"#), None);
}

#[test]
fn escapes_before_the_real_type_and_in_values() {
    let msg = r#"{"a":"x\\\"y\\\\","b":"\\","c":["\"]}"],"type":"response.completed","response":{"usage":null,"model":"gpt-\u00e9\n\"q\"","id":"r\\1"}}"#;
    let mut want = terminal("r\\1");
    want.model = Some("gpt-é\n\"q\"".into());
    assert_eq!(up(msg), Some(TapEvent::Terminal(Box::new(want))));
}

#[test]
fn whitespace_between_every_token() {
    let msg = " \r\n{ \"type\" :\t\"response.completed\" ,\n \"response\" : { \"id\" : \"r\" , \"usage\" : { \"input_tokens\" : 3 , \"output_tokens\" : 4 } } , \"stream_id\" : \"l\" } \n";
    let mut want = terminal("r");
    want.stream_id = Some("l".into());
    want.usage = Some(Usage {
        input_tokens: 3,
        output_tokens: 4,
        total_tokens: 7,
        ..Usage::default()
    });
    // The raw usage object is kept byte for byte, whitespace included.
    want.usage_raw = Some("{ \"input_tokens\" : 3 , \"output_tokens\" : 4 }".into());
    assert_eq!(up(msg), Some(TapEvent::Terminal(Box::new(want))));
}

#[test]
fn escaped_keys_and_escaped_type_are_decoded() {
    assert_eq!(
        up(
            r#"{"typ\u0065":"error","st\u0061tus":429,"error":{"c\u006fde":"rate_limit_exceeded"}}"#
        ),
        Some(TapEvent::Error {
            status: Some(429),
            code: Some("rate_limit_exceeded".into()),
            stream_id: None
        })
    );
    assert_eq!(
        up(r#"{"type":"response\u002ecompleted","response":{"id":"r"}}"#),
        Some(TapEvent::Terminal(Box::new(terminal("r"))))
    );
}

#[test]
fn response_with_escaped_key_is_walked_after_the_pass() {
    // The single-pass descent only matches the plain key; an escaped one takes the fallback.
    let msg =
        r#"{"type":"response.completed","respons\u0065":{"id":"r","usage":{"input_tokens":2}}}"#;
    let mut want = terminal("r");
    want.usage = Some(Usage {
        input_tokens: 2,
        total_tokens: 2,
        ..Usage::default()
    });
    want.usage_raw = Some(r#"{"input_tokens":2}"#.into());
    assert_eq!(up(msg), Some(TapEvent::Terminal(Box::new(want))));
}

#[test]
fn usage_fields_the_relay_does_not_know_are_kept_raw() {
    let msg = r#"{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":5,"compute_units":1.5,"input_tokens_details":{"cached_tokens":1,"cache_write_tokens":4},"output_tokens":2}}}"#;
    let Some(TapEvent::Terminal(t)) = up(msg) else {
        panic!("no terminal event");
    };
    assert_eq!(
        t.usage.map(|u| (u.input_tokens, u.cached_tokens)),
        Some((5, 1))
    );
    assert_eq!(
        t.usage_raw.as_deref(),
        Some(
            r#"{"input_tokens":5,"compute_units":1.5,"input_tokens_details":{"cached_tokens":1,"cache_write_tokens":4},"output_tokens":2}"#
        )
    );
    // `null` or a non-object usage keeps nothing.
    let msg = r#"{"type":"response.completed","response":{"id":"r","usage":null}}"#;
    let Some(TapEvent::Terminal(t)) = up(msg) else {
        panic!("no terminal event");
    };
    assert_eq!((t.usage, t.usage_raw), (None, None));
}

#[test]
fn first_type_wins_and_non_string_type_is_ignored() {
    assert_eq!(
        up(r#"{"type":"response.in_progress","type":"response.completed","response":{"id":"r"}}"#),
        None
    );
    assert_eq!(up(r#"{"type":7,"response":{"id":"r"}}"#), None);
    assert_eq!(
        up(r#"{"type":"response.completed","response":{"id":"r"},"type":"x"}"#),
        Some(TapEvent::Terminal(Box::new(terminal("r"))))
    );
}

#[test]
fn first_occurrence_of_every_member_wins() {
    assert_eq!(
        up(
            r#"{"type":"error","status":400,"status":500,"stream_id":"a","stream_id":"b","error":{"code":"c1","code":"c2"},"error":{"code":"c3"}}"#
        ),
        Some(TapEvent::Error {
            status: Some(400),
            code: Some("c1".into()),
            stream_id: Some("a".into())
        })
    );
    let msg =
        r#"{"type":"response.completed","response":{"id":"r","id":"q"},"response":{"id":"z"}}"#;
    assert_eq!(up(msg), Some(TapEvent::Terminal(Box::new(terminal("r")))));
}

#[test]
fn usage_details_missing_or_partial() {
    let msg = r#"{"type":"response.incomplete","response":{"id":"r","usage":{"input_tokens":5,"output_tokens":1,"total_tokens":9,"output_tokens_details":{"reasoning_tokens":1}}}}"#;
    let Some(TapEvent::Terminal(t)) = up(msg) else {
        panic!("no terminal")
    };
    assert_eq!(t.event, TerminalKind::Incomplete);
    assert_eq!(
        t.usage,
        Some(Usage {
            input_tokens: 5,
            cached_tokens: 0,
            output_tokens: 1,
            reasoning_tokens: 1,
            total_tokens: 9
        })
    );
}

#[test]
fn malformed_interesting_messages_give_none_and_are_counted() {
    let bad = [
        r#"{"type":"response.completed","response":{"id":"r"}"#, // truncated
        r#"{"type":"response.completed","response":{"id":"r"}} x"#, // trailing bytes
        r#"{"type":"response.completed","response":{"id":"r"},}"#, // trailing comma
        r#"{"type":"response.completed","response":{"model":"m"}}"#, // no id
        r#"{"type":"response.completed","response":"r"}"#,       // response not an object
        r#"{"type":"response.completed","response":{"id":"\q"}}"#, // bad escape
        r#"{"type":"response.created" "response":{"id":"r"}}"#,  // missing comma
        "[{\"type\":\"error\"}]",
    ];
    for msg in bad {
        assert_eq!(up(msg), None, "{msg}");
        let mut tap = Tap::new(Direction::UpstreamToClient, BIG);
        assert_eq!(tap.feed(msg.as_bytes(), true), None);
        assert_eq!(tap.malformed(), 1, "{msg}");
        assert!(tap.last_error().is_some());
        // The tap recovers: the next message is understood.
        assert!(
            tap.feed(br#"{"type":"error","status":500}"#, true)
                .is_some(),
            "{msg}"
        );
    }
}

#[test]
fn directions_report_only_their_events() {
    let create = br#"{"type":"response.create","model":"m","generate":true}"#;
    let mut up_tap = Tap::new(Direction::UpstreamToClient, BIG);
    assert_eq!(up_tap.feed(create, true), None);
    let mut client = Tap::new(Direction::ClientToUpstream, BIG);
    client.set_track_deltas(true);
    assert_eq!(client.feed(br#"{"type":"error","status":400}"#, true), None);
    assert_eq!(
        client.feed(br#"{"type":"response.output_text.delta"}"#, true),
        None
    );
    assert_eq!(
        client.feed(create, true),
        Some(TapEvent::Create {
            model: Some("m".into()),
            stream_id: None,
            generate: Some(true)
        })
    );
}

/// Random bytes, truncations and byte mutations of fixture lines: no panic, every cut and
/// both string skips agree, and well-formed results match the serde_json reference.
#[test]
fn property_no_panic_and_cuts_agree() {
    let fx = load(LOCAL, "reasoning-cached");
    let lines: Vec<&Vec<u8>> = fx.upstream.iter().chain(&fx.client).collect();
    let mut rng = fastrand::Rng::with_seed(42);
    let alphabet = b"{}[]\":,\\ tfn01-typeresponse.completed";
    for i in 0..3000 {
        let dir = if rng.bool() {
            Direction::UpstreamToClient
        } else {
            Direction::ClientToUpstream
        };
        let track = rng.bool();
        let msg: Vec<u8> = match i % 3 {
            0 => (0..rng.usize(0..200))
                .map(|_| *rng.choice(alphabet).unwrap_or(&b'x'))
                .collect(),
            1 => {
                let line = lines[rng.usize(..lines.len())];
                line[..rng.usize(..=line.len())].to_vec()
            }
            _ => {
                let mut line = lines[rng.usize(..lines.len())].clone();
                for _ in 0..rng.usize(1..4) {
                    let at = rng.usize(..line.len());
                    line[at] = *rng.choice(alphabet).unwrap_or(&b'x');
                }
                line
            }
        };
        let got = tap_all(dir, track, &msg);
        if serde_json::from_slice::<serde_json::Value>(&msg).is_ok() {
            assert_eq!(
                got,
                reference(dir, track, &msg),
                "{:?}",
                String::from_utf8_lossy(&msg)
            );
        }
    }
}

/// Every tapped chunk returns an `Option<TapEvent>`; kept small (the terminal event is
/// boxed), moving it is a few register moves, not a `memcpy` call per frame.
#[test]
fn the_tap_result_moved_per_frame_stays_small() {
    assert!(
        std::mem::size_of::<Option<TapEvent>>() <= 80,
        "{} bytes",
        std::mem::size_of::<Option<TapEvent>>()
    );
}

/// The fast path (a whole message of an uninteresting type returns before `step`) is taken
/// only between messages, and leaves the tap as a finished message would: a split event
/// after it (whose last chunk looks like a whole `message`) assembles and yields its event,
/// a delta split across chunks after that is skipped, and nothing is counted as malformed
/// or held. With delta tracking on, the same whole delta is an event, not skipped.
#[test]
fn whole_uninteresting_messages_leave_the_tap_ready_for_the_next() {
    let delta = br#"{"type":"response.output_text.delta","delta":"hi","item_id":"m"}"#;
    // Split so that its second chunk itself starts like a whole uninteresting message.
    let created = br#"{"type":"response.created","response":{"id":"r1","output":[{"type":"message","content":[]}]}}"#;
    let cut = created
        .windows(9)
        .rposition(|w| w == br#"{"type":""#)
        .unwrap_or(0);
    let done = br#"{"type":"response.completed","response":{"id":"r1","usage":{"input_tokens":1,"output_tokens":2}}}"#;
    for scalar in [false, true] {
        let mut tap = if scalar {
            Tap::new_scalar(Direction::UpstreamToClient, BIG)
        } else {
            Tap::new(Direction::UpstreamToClient, BIG)
        };
        assert_eq!(tap.feed(delta, true), None);
        let (a, b) = created.split_at(cut);
        assert_eq!(tap.feed(a, false), None);
        assert!(matches!(
            tap.feed(b, true),
            Some(TapEvent::Created { ref response_id, .. }) if response_id == "r1"
        ));
        let (a, b) = delta.split_at(30);
        assert_eq!(tap.feed(a, false), None);
        assert_eq!(tap.feed(b, true), None);
        assert_eq!(tap.feed(delta, true), None);
        match tap.feed(done, true) {
            Some(TapEvent::Terminal(t)) => {
                assert_eq!(t.response_id, "r1");
                assert_eq!(t.usage.map(|u| u.output_tokens), Some(2));
            }
            other => panic!("scalar={scalar}: expected the terminal, got {other:?}"),
        }
        assert_eq!(
            (tap.malformed(), tap.overflows()),
            (0, 0),
            "scalar={scalar}"
        );
        tap.set_track_deltas(true);
        assert!(
            matches!(tap.feed(delta, true), Some(TapEvent::Delta { .. })),
            "scalar={scalar}"
        );
    }
}
