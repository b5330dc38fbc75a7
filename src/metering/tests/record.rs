use std::time::{Duration, UNIX_EPOCH};

use super::rec;
use crate::metering::record::{format_rfc3339_ms, RawUsage, RecordStatus, UsageRecord};

fn at(secs: u64, ms: u64) -> String {
    format_rfc3339_ms(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms))
}

#[test]
fn rfc3339_known_instants() {
    assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
    assert_eq!(at(951_782_400, 123), "2000-02-29T00:00:00.123Z");
    assert_eq!(at(1_709_251_199, 999), "2024-02-29T23:59:59.999Z");
    assert_eq!(at(1_709_251_200, 0), "2024-03-01T00:00:00.000Z");
    assert_eq!(at(4_102_444_800, 7), "2100-01-01T00:00:00.007Z");
    assert_eq!(at(253_402_300_799, 0), "9999-12-31T23:59:59.000Z");
    // Past year 9999 the year takes five digits.
    assert_eq!(at(253_402_300_800, 5), "10000-01-01T00:00:00.005Z");
    assert_eq!(at(1_795_824_000 + 45_296, 789), "2026-11-28T12:34:56.789Z");
}

#[test]
fn rfc3339_every_day_of_four_centuries_round_trips() {
    // Day-by-day walk checked against a simple incrementing calendar.
    let (mut y, mut m, mut d) = (1970u64, 1u64, 1u64);
    for day in 0..(400 * 366) {
        let s = at(day * 86_400, 0);
        assert_eq!(
            s,
            format!("{y:04}-{m:02}-{d:02}T00:00:00.000Z"),
            "day {day}"
        );
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let len = match m {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        d += 1;
        if d > len {
            d = 1;
            m += 1;
            if m > 12 {
                m = 1;
                y += 1;
            }
        }
    }
}

#[test]
fn record_json_shape_is_stable() {
    let mut r = rec("resp_1");
    r.status = RecordStatus::ClientDisconnected;
    r.stream_id = None;
    r.ttft_ms = None;
    let s = serde_json::to_string(&r).expect("serialize");
    assert_eq!(
        s,
        r#"{"ts":"2026-03-01T12:34:56.789Z","session":7,"tenant":"acme","route":"openai","upstream":"wss://api.openai.com","stream_id":null,"response_id":"resp_1","model":"gpt-5","requested_model":"gpt-5","status":"client_disconnected","input_tokens":10,"cached_tokens":2,"output_tokens":5,"reasoning_tokens":1,"total_tokens":15,"service_tier":"default","ttft_ms":null,"duration_ms":345,"usage_final":true,"usage":{"input_tokens":10,"compute_units":3}}"#
    );
    let back: UsageRecord = serde_json::from_str(&s).expect("parse");
    assert_eq!(back, r);
}

#[test]
fn usage_object_is_kept_as_sent_on_one_line() {
    // As the provider sent it: key order and spacing kept, nothing parsed into a tree.
    let sent = r#"{"output_tokens": 5, "input_tokens": 7, "x": {"y": [1, 2]}}"#;
    let u = RawUsage::from_provider(sent).expect("valid JSON");
    assert_eq!(u.get(), sent);
    assert_eq!(u.value()["x"]["y"][1], 2);
    // Line breaks between members would split the JSON Lines record: compacted.
    let pretty = "{\n  \"input_tokens\": 7,\r\n  \"output_tokens\": 5\n}";
    let u = RawUsage::from_provider(pretty).expect("valid JSON");
    assert!(!u.get().contains(['\n', '\r']), "{}", u.get());
    assert_eq!(
        u.value(),
        serde_json::json!({"input_tokens": 7, "output_tokens": 5})
    );
    let mut r = rec("resp_2");
    r.usage = Some(u);
    let line = serde_json::to_string(&r).expect("serialize");
    assert!(!line.contains('\n'));
    // Not JSON: no usage object in the record (the token fields still are).
    assert_eq!(RawUsage::from_provider(r#"{"input_tokens": 7,"#), None);
    assert_eq!(RawUsage::from_provider("{\n\"a\": }"), None);
}

#[test]
fn status_names_match_serde() {
    for st in [
        RecordStatus::Completed,
        RecordStatus::Incomplete,
        RecordStatus::Failed,
        RecordStatus::ClientDisconnected,
        RecordStatus::UpstreamDisconnected,
        RecordStatus::RelayShutdown,
    ] {
        let json = serde_json::to_string(&st).expect("serialize");
        assert_eq!(json, format!("\"{}\"", st.as_str()));
    }
}
