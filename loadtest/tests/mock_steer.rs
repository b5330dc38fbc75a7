//! The mock upstream's steering: a steer is accepted at once and ends the running response
//! (`incomplete`, reason `steered`) — or, after its last delta, lets it complete — and an
//! automatic successor follows with no `response.create`; both are billed. A steer of a
//! client-owned function call is answered `pending` after it completes, and only the
//! client's continuation follows.

mod common;

use std::time::Duration;

use common::{create, mock_and_client};
use serde_json::{json, Value};
use tollgate_loadtest::client::{Message, WsClient};
use tollgate_loadtest::mock::MockConfig;

async fn next_event(c: &mut WsClient) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), c.recv())
            .await
            .expect("an event within 10 s")
            .expect("recv");
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).expect("json");
        }
    }
}

/// Events up to and including the first of type `ty`.
async fn until(c: &mut WsClient, ty: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let v = next_event(c).await;
        let done = v["type"] == ty;
        out.push(v);
        if done {
            return out;
        }
    }
}

/// The `response.steer.accepted` among `events`, for a steer of `first`: it carries the
/// submission's id.
fn accepted_in(events: &[Value], first: &str) {
    let a: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "response.steer.accepted")
        .collect();
    assert_eq!(a.len(), 1, "{events:?}");
    assert_eq!(a[0]["steer"]["previous_response_id"], first);
    assert!(a[0]["steer"]["id"]
        .as_str()
        .is_some_and(|s| s.starts_with("steer_")));
}

/// The successor's events, which open with its `response.created`.
async fn successor(c: &mut WsClient) -> Vec<Value> {
    let events = until(c, "response.completed").await;
    assert_eq!(events[0]["type"], "response.created");
    events
}

fn steer(previous: &str) -> String {
    json!({"type": "response.steer", "previous_response_id": previous,
        "input": [{"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "actually, stop"}]}]})
    .to_string()
}

fn paced(rate: f64) -> MockConfig {
    MockConfig {
        deltas: 30,
        token_rate: Some(rate),
        successor_delay: Duration::from_millis(50),
        ..MockConfig::default()
    }
}

#[tokio::test]
async fn a_steer_ends_the_running_response_and_a_successor_follows() {
    let (mock, mut c) = mock_and_client(paced(50.0)).await;
    c.send_text(&create(json!({}))).await.expect("create");
    let created = until(&mut c, "response.output_text.delta").await;
    let first = created[0]["response"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    c.send_text(&steer(&first)).await.expect("steer");
    let ended = until(&mut c, "response.incomplete").await;
    let incomplete = ended.last().expect("terminal");
    assert_eq!(incomplete["response"]["id"], first.as_str());
    assert_eq!(
        incomplete["response"]["incomplete_details"]["reason"],
        "steered"
    );
    let output = incomplete["response"]["usage"]["output_tokens"]
        .as_u64()
        .expect("usage");
    assert!(output < 30, "ended early: {output} deltas billed");
    accepted_in(&ended, &first);
    let successor = successor(&mut c).await;
    let second = successor[0]["response"]["id"].as_str().expect("id");
    assert_ne!(second, first);
    let ledger = mock.ledger();
    let billed: Vec<(&str, &str, u64)> = ledger
        .iter()
        .map(|e| (e.response_id.as_str(), e.status.as_str(), e.output_tokens))
        .collect();
    assert_eq!(
        billed,
        [
            (first.as_str(), "incomplete", output),
            (second, "completed", 30)
        ]
    );
    assert!(
        ledger[1].cached_tokens > 0,
        "the successor continues the chain"
    );
    // The first response is over: a steer for it now fails.
    c.send_text(&steer(&first)).await.expect("steer");
    let failed = next_event(&mut c).await;
    assert_eq!(
        (
            failed["type"].as_str(),
            failed["error"]["code"].as_str(),
            failed["steer"]["previous_response_id"].as_str()
        ),
        (
            Some("response.steer.failed"),
            Some("response_already_completed"),
            Some(first.as_str())
        )
    );
    assert!(failed["steer"].get("id").is_none(), "no id was allocated");
}

#[tokio::test]
async fn a_steer_after_the_last_delta_lets_the_response_complete_and_a_successor_follows() {
    // 5 deltas a second: 200 ms between the last delta and the `.done` events.
    let (mock, mut c) = mock_and_client(MockConfig {
        deltas: 3,
        ..paced(5.0)
    })
    .await;
    c.send_text(&create(json!({}))).await.expect("create");
    let mut seen = Vec::new();
    let mut deltas = 0;
    while deltas < 3 {
        let v = next_event(&mut c).await;
        deltas += usize::from(v["type"] == "response.output_text.delta");
        seen.push(v);
    }
    let first = seen[0]["response"]["id"].as_str().expect("id").to_string();
    c.send_text(&steer(&first)).await.expect("steer");
    let ended = until(&mut c, "response.completed").await;
    assert_eq!(
        ended.last().expect("terminal")["response"]["id"],
        first.as_str()
    );
    accepted_in(&ended, &first);
    successor(&mut c).await;
    let statuses: Vec<String> = mock.ledger().iter().map(|e| e.status.clone()).collect();
    assert_eq!(statuses, ["completed", "completed"]);
}

#[tokio::test]
async fn a_steered_function_call_completes_then_the_steer_is_pending_until_the_client_continues() {
    let (mock, mut c) = mock_and_client(paced(50.0)).await;
    let tools = json!([{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]);
    let call = json!({"tools": tools, "tool_choice": "required"});
    c.send_text(&create(call)).await.expect("create");
    let started = until(&mut c, "response.function_call_arguments.delta").await;
    let first = started[0]["response"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(started[2]["item"]["type"], "function_call", "{started:?}");
    c.send_text(&steer(&first)).await.expect("steer");
    // The steer does not cut a function call short: all 30 argument deltas, then completed.
    let ended = until(&mut c, "response.completed").await;
    accepted_in(&ended, &first);
    let done = ended.last().expect("terminal");
    assert_eq!(done["response"]["usage"]["output_tokens"], 30);
    let item = &done["response"]["output"][0];
    assert_eq!(
        (item["type"].as_str(), item["name"].as_str()),
        (Some("function_call"), Some("lookup"))
    );
    let args: Value = serde_json::from_str(item["arguments"].as_str().expect("arguments"))
        .expect("the argument deltas join into JSON");
    assert!(args["query"].is_string(), "{args}");
    let deltas: String = started
        .iter()
        .chain(&ended)
        .filter(|e| e["type"] == "response.function_call_arguments.delta")
        .map(|e| e["delta"].as_str().expect("delta"))
        .collect();
    assert_eq!(deltas, item["arguments"].as_str().expect("arguments"));

    let pending = next_event(&mut c).await;
    let accepted_id = ended
        .iter()
        .find(|e| e["type"] == "response.steer.accepted")
        .map(|e| e["steer"]["id"].clone());
    assert_eq!(pending["type"], "response.steer.pending", "{pending}");
    assert_eq!(pending["reason"], "waiting_for_required_input");
    assert_eq!(Some(pending["steer"]["id"].clone()), accepted_id);
    assert_eq!(pending["steer"]["previous_response_id"], first.as_str());
    let required = &pending["required_input"][0];
    assert_eq!(required["type"], "function_call_output");
    assert_eq!(required["call_id"], item["call_id"]);
    // No successor starts on its own: only the client's continuation.
    let quiet = tokio::time::timeout(Duration::from_millis(300), c.recv()).await;
    assert!(quiet.is_err(), "nothing follows `pending`: {quiet:?}");
    let output =
        json!({"type": "function_call_output", "call_id": required["call_id"], "output": "42"});
    let next = json!({"previous_response_id": first, "input": [output]});
    c.send_text(&create(next)).await.expect("continuation");
    let cont = until(&mut c, "response.completed").await;
    assert_eq!(cont[0]["type"], "response.created");
    let statuses: Vec<(String, String)> = mock
        .ledger()
        .iter()
        .map(|e| (e.response_id.clone(), e.status.clone()))
        .collect();
    let second = cont[0]["response"]["id"].as_str().expect("id");
    assert_eq!(
        statuses,
        [
            (first.clone(), "completed".to_string()),
            (second.to_string(), "completed".to_string())
        ]
    );
}
