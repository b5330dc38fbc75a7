use super::*;
use crate::ledger::LedgerEntry;
use serde_json::json;

fn resp<'a>(tools: &'a Value, stream_id: Option<&'a str>) -> Resp<'a> {
    Resp {
        id: "resp_1",
        item_id: "msg_1",
        model: "gpt-5",
        stream_id,
        created_at: 1,
        service_tier: "default",
        store: false,
        tools,
    }
}

#[test]
fn delta_frames_are_about_the_requested_size() {
    let tools = json!([]);
    let r = resp(&tools, Some("lane_a"));
    for target in [150usize, 190, 400, 2000] {
        for (i, t) in delta_texts(&r, 20, target).iter().enumerate() {
            let len = r.delta(t, i as u64).len();
            assert!(
                len >= target && len < target + 20,
                "target {target}: frame {len} bytes"
            );
        }
    }
}

#[test]
fn events_put_type_first_and_lane_then_sequence_last() {
    let tools = json!([]);
    let r = resp(&tools, Some("lane_a"));
    let d = r.delta(" x", 7);
    assert!(
        d.starts_with(r#"{"type":"response.output_text.delta","#),
        "{d}"
    );
    assert!(
        d.ends_with(r#""stream_id":"lane_a","sequence_number":7}"#),
        "{d}"
    );
    let default_lane = resp(&tools, None).lifecycle("response.created", 0);
    assert!(!default_lane.contains("stream_id"));
}

#[test]
fn terminal_usage_round_trips_through_the_ledger_extractor() {
    let tools = json!([{"type": "function", "name": "f"}]);
    let r = resp(&tools, Some("b"));
    let usage = Usage {
        input: 40,
        cached: 20,
        output: 8,
        reasoning: 4,
    };
    let t = r.terminal("incomplete", Some("hi"), Some("pad"), usage, 12);
    let v: Value = serde_json::from_str(&t).expect("json");
    assert_eq!(v["type"], "response.incomplete");
    assert_eq!(v["response"]["usage"]["total_tokens"], 48);
    assert_eq!(
        v["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    assert_eq!(v["response"]["tools"], tools);
    let e = LedgerEntry::from_terminal(&v).expect("entry");
    assert_eq!(
        (
            e.input_tokens,
            e.cached_tokens,
            e.output_tokens,
            e.reasoning_tokens
        ),
        (40, 20, 8, 4)
    );
    assert_eq!(e.stream_id.as_deref(), Some("b"));
    assert_eq!(e.status, "incomplete");
}

#[test]
fn error_event_matches_the_protocol_shape() {
    let e = error_event(
        400,
        "invalid_request_error",
        "previous_response_not_found",
        "Previous response with id 'resp_x' not found.",
        Some("previous_response_id"),
        Some("main"),
        3,
    );
    let v: Value = serde_json::from_str(&e).expect("json");
    assert_eq!(
        v,
        json!({"type":"error","status":400,"stream_id":"main","sequence_number":3,"error":{
            "type":"invalid_request_error","code":"previous_response_not_found",
            "message":"Previous response with id 'resp_x' not found.","param":"previous_response_id"}})
    );
}

#[test]
fn padding_is_exactly_sized_ascii() {
    for n in [0usize, 1, 59, 60, 61, 2048] {
        let p = padding(n);
        assert_eq!(p.len(), n);
        assert!(p.is_ascii());
    }
}

#[test]
fn argument_deltas_join_into_one_json_object() {
    assert!(argument_deltas(0).is_empty());
    for n in [1usize, 2, 7] {
        let joined = argument_deltas(n).concat();
        let v: Value = serde_json::from_str(&joined).expect("json");
        assert_eq!(
            v["query"].as_str().map(|q| q.split(' ').count()),
            Some(n),
            "{joined}"
        );
    }
}

#[test]
fn a_pending_steer_names_the_call_the_response_waits_for() {
    let call = Call {
        name: "lookup",
        call_id: "call_1",
    };
    let answer = SteerAnswer::Pending {
        id: "steer_1",
        call: &call,
    };
    let t = steer_answer(answer, Some("resp_1"), Some("a"), 9);
    let v: Value = serde_json::from_str(&t).expect("json");
    assert_eq!(v["type"], "response.steer.pending");
    assert_eq!(v["reason"], "waiting_for_required_input");
    assert_eq!(
        v["required_input"],
        json!([{"type": "function_call_output", "call_id": "call_1", "name": "lookup"}])
    );
    assert_eq!(
        v["steer"],
        json!({"id": "steer_1", "previous_response_id": "resp_1"})
    );
    assert!(
        t.ends_with(r#""stream_id":"a","sequence_number":9}"#),
        "{t}"
    );
}
