//! The tap's assembly buffer and its limits: messages over `max_buffer` or the worker's
//! budget are skipped and counted; a split message is sized from its frame header once.

use super::tests::{up, BIG};
use super::*;

#[test]
fn overflow_skips_assembled_messages_only() {
    let term = br#"{"type":"response.completed","response":{"id":"resp_1","output":[]}}"#;
    let (a, b) = term.split_at(20);
    let mut tap = Tap::new(Direction::UpstreamToClient, term.len() - 1);
    assert_eq!(tap.feed(a, false), None);
    assert_eq!(tap.feed(b, true), None);
    assert_eq!(
        (tap.overflows(), tap.last_error()),
        (1, Some(&TapError::Overflow))
    );
    // Whole in one chunk: scanned in place, no copy, no limit.
    assert!(matches!(tap.feed(term, true), Some(TapEvent::Terminal(_))));
    // An uninteresting split message whose type is in the first chunk is never copied.
    let delta = br#"{"type":"response.output_text.delta","delta":"a long delta, longer than the buffer allows for sure"}"#;
    let (a, b) = delta.split_at(40);
    assert_eq!(
        (tap.feed(a, false), tap.feed(b, false), tap.feed(&[], true)),
        (None, None, None)
    );
    assert_eq!(tap.overflows(), 1);
    // Same when the type is not the first key but is found by the scanner in the first chunk.
    let late = br#"{"a":[1,{"type":"x"}],"type":"response.output_text.delta","delta":"a long delta, longer than the buffer allows for sure"}"#;
    let (a, b) = late.split_at(70);
    assert_eq!((tap.feed(a, false), tap.feed(b, true)), (None, None));
    assert_eq!(tap.overflows(), 1);
    // At exactly max_buffer the split message is assembled.
    let mut tap = Tap::new(Direction::UpstreamToClient, term.len());
    assert_eq!(tap.feed(&term[..40], false), None);
    assert!(matches!(
        tap.feed(&term[40..], true),
        Some(TapEvent::Terminal(_))
    ));
    assert_eq!(tap.overflows(), 0);
}

/// A split message sized from its frame header: one allocation of the whole frame, the
/// bytes ahead charged to the budget at once and given back at the message's end; the event
/// is the one an unsized feed gives.
#[test]
fn frame_rest_sizes_the_assembly_buffer_once() {
    let term = br#"{"type":"response.completed","response":{"id":"resp_1","output":[{"text":"a b c d e f"}],"usage":{"input_tokens":3,"output_tokens":5,"total_tokens":8}}}"#;
    let want = up(std::str::from_utf8(term).expect("utf-8"));
    assert!(matches!(want, Some(TapEvent::Terminal(_))));
    let budget = std::rc::Rc::new(Budget::new(1 << 20));
    let mut tap = Tap::new(Direction::UpstreamToClient, BIG).with_budget(budget.clone());
    let cuts = [30, 61, 90, term.len()];
    let mut at = 0;
    let mut got = None;
    for (i, &end) in cuts.iter().enumerate() {
        let rest = (term.len() - end) as u64;
        got = tap.feed_framed(&term[at..end], end == term.len(), rest);
        if i == 0 {
            assert!(
                tap.buf.capacity() >= term.len(),
                "sized from the first chunk"
            );
            assert_eq!(
                budget.used(),
                term.len(),
                "the bytes ahead are charged at once"
            );
        }
        at = end;
    }
    assert_eq!(got, want);
    assert_eq!((budget.used(), budget.refusals()), (0, 0), "all given back");

    // Bytes ahead that do not fit the budget are not reserved (and not a refusal): the buffer
    // grows as bytes arrive, and the message still fits.
    let budget = std::rc::Rc::new(Budget::new(term.len()));
    let hog = budget.try_take(10);
    assert!(hog);
    let mut tap = Tap::new(Direction::UpstreamToClient, BIG).with_budget(budget.clone());
    tap.feed_framed(&term[..30], false, (term.len() - 30) as u64);
    assert_eq!((budget.used(), budget.refusals()), (40, 0));
    budget.give(10);
    assert_eq!(tap.feed_framed(&term[30..], true, 0), want);
    assert_eq!(budget.used(), 0);

    // A frame longer than 256 KiB (or than `max_buffer`) reserves only that much ahead.
    let budget = std::rc::Rc::new(Budget::new(64 << 20));
    let mut tap = Tap::new(Direction::UpstreamToClient, BIG).with_budget(budget.clone());
    tap.feed_framed(&term[..30], false, 1 << 40);
    assert_eq!(budget.used(), RESERVE_AHEAD);
    let mut small = Tap::new(Direction::UpstreamToClient, 100).with_budget(budget.clone());
    small.feed_framed(&term[..30], false, 1 << 40);
    assert_eq!(budget.used(), RESERVE_AHEAD + 100);
    assert_eq!(
        small.feed_framed(&term[30..], true, 0),
        None,
        "over max_buffer"
    );
    assert_eq!(small.overflows(), 1);
    assert_eq!(
        budget.used(),
        RESERVE_AHEAD,
        "the overflowed message gave its bytes back"
    );
}

/// A split terminal event keeps only what extraction needs: the bytes of values nothing
/// records (`output`, `instructions`, an unknown top-level member — escapes and backslash
/// runs landing on every chunk edge) are skipped where they arrive, not copied. So the
/// event comes out with a `max_buffer` far below the message's size, wherever the cuts fall,
/// and with the type before or after the `response` object.
#[test]
fn split_terminal_keeps_only_what_extraction_needs() {
    let text: String = (0..300)
        .map(|i| match i % 7 {
            0 => r"\\",
            1 => r#"\""#,
            2 => r"\\\\",
            _ => "ab",
        })
        .collect();
    let response = format!(
        r#"{{"id":"resp_w","model":"gpt-x","output":[{{"type":"message","content":[{{"type":"output_text","text":"{text}"}}]}}],"instructions":"{text}","usage":{{"input_tokens":3,"output_tokens":5,"total_tokens":8}}}}"#
    );
    for term in [
        format!(
            r#"{{"type":"response.completed","sequence_number":9,"response":{response},"trailer":"{text}"}}"#
        ),
        format!(r#"{{"extra":["{text}"],"response":{response},"type":"response.completed"}}"#),
    ] {
        let want = up(&term);
        let Some(TapEvent::Terminal(t)) = &want else {
            panic!("a terminal event: {want:?}");
        };
        assert_eq!(
            (t.response_id.as_str(), t.usage.is_some()),
            ("resp_w", true)
        );
        for chunk_len in [1, 2, 3, 5, 7, 16, 64, 100, 333] {
            // Room for one chunk and the few members extraction reads: a copy of any of
            // the skipped values would overflow it.
            let max_buffer = 300 + chunk_len;
            assert!(max_buffer * 3 < term.len());
            for scalar in [false, true] {
                let mut tap = if scalar {
                    Tap::new_scalar(Direction::UpstreamToClient, max_buffer)
                } else {
                    Tap::new(Direction::UpstreamToClient, max_buffer)
                };
                let chunks: Vec<&[u8]> = term.as_bytes().chunks(chunk_len).collect();
                let (mut got, mut peak) = (None, 0);
                for (i, c) in chunks.iter().enumerate() {
                    got = tap.feed(c, i + 1 == chunks.len());
                    peak = peak.max(tap.buf.len());
                }
                assert_eq!(got, want, "chunks of {chunk_len}, scalar={scalar}");
                // Between chunks the buffer holds the members read and a few bytes to read
                // again, never a skipped value's bytes that came in with them.
                assert!(peak <= 240, "chunks of {chunk_len}: {peak} bytes held");
                assert_eq!(tap.overflows(), 0);
            }
        }
    }
}
