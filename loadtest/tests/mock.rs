//! The mock upstream's protocol behaviour, observed with the crate's own client.

mod common;

use std::time::Duration;

use common::{create, expected_types, mock_and_client, types};
use serde_json::{json, Value};
use tollgate_loadtest::client::{self, ClientOpts, Message};
use tollgate_loadtest::mock::{MockConfig, MockUpstream};
use tollgate_loadtest::LedgerEntry;

#[tokio::test]
async fn a_turn_streams_the_full_sequence_and_bills_what_it_sent() {
    let cfg = MockConfig {
        extra_101_headers: vec![("x-codex-turn-state".into(), "ts-1".into())],
        ..MockConfig::default()
    };
    let mock = MockUpstream::start(cfg).await.expect("mock");
    let opts = ClientOpts {
        headers: vec![
            (
                "OpenAI-Beta".into(),
                "responses_websockets=2026-02-06".into(),
            ),
            ("x-client-request-id".into(), "abc".into()),
        ],
        ..ClientOpts::default()
    };
    let mut c = client::connect(&format!("{}/v1/responses?trace=1", mock.url()), opts)
        .await
        .expect("connect");
    assert_eq!(c.response_header("X-Codex-Turn-State"), Some("ts-1"));

    let req = create(json!({"reasoning": {"effort": "low"}, "service_tier": "priority"}));
    let events = c.turn(&req).await.expect("turn");
    assert_eq!(types(&events), expected_types(8, "response.completed"));
    let seqs: Vec<u64> = events
        .iter()
        .filter_map(|e| e["sequence_number"].as_u64())
        .collect();
    assert_eq!(seqs, (0..events.len() as u64).collect::<Vec<_>>());
    assert!(events.iter().all(|e| e.get("stream_id").is_none()));

    let billed = LedgerEntry::from_terminal(events.last().expect("terminal")).expect("usage");
    assert_eq!(mock.ledger(), vec![billed.clone()]);
    assert_eq!(billed.input_tokens, req.len() as u64 / 4);
    assert_eq!(
        (
            billed.output_tokens,
            billed.reasoning_tokens,
            billed.cached_tokens
        ),
        (8, 4, 0)
    );
    assert_eq!(
        (billed.model.as_str(), billed.service_tier.as_str()),
        ("gpt-5", "priority")
    );

    // The output text is the concatenation of the deltas; the pad is echoed.
    let deltas: String = events.iter().filter_map(|e| e["delta"].as_str()).collect();
    let terminal = &events.last().expect("terminal")["response"];
    assert_eq!(terminal["output"][0]["content"][0]["text"], deltas.as_str());
    assert_eq!(terminal["instructions"].as_str().map(str::len), Some(2048));

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path_and_query.as_str()),
        ("GET", "/v1/responses?trace=1")
    );
    assert_eq!(
        reqs[0].header("openai-beta"),
        Some("responses_websockets=2026-02-06")
    );
    let names: Vec<&str> = reqs[0].headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names.last(),
        Some(&"x-client-request-id"),
        "headers kept in wire order: {names:?}"
    );
    let rx = mock.received();
    assert_eq!(rx.len(), 1);
    assert!(rx[0].was_masked && rx[0].fin && rx[0].opcode == 1);
    assert_eq!(rx[0].payload, req.as_bytes());
}

#[tokio::test]
async fn lanes_interleave_and_each_lane_is_fifo() {
    let cfg = MockConfig {
        deltas: 6,
        token_rate: Some(200.0),
        ..MockConfig::default()
    };
    let (mock, mut c) = mock_and_client(cfg).await;
    c.send_text(&create(json!({"stream_id": "agent_a"})))
        .await
        .expect("send a1");
    c.send_text(&create(
        json!({"stream_id": "agent.b-2", "model": "gpt-5-mini"}),
    ))
    .await
    .expect("send b");
    c.send_text(&create(json!({"stream_id": "agent_a", "input": "second"})))
        .await
        .expect("send a2");
    let mut events: Vec<Value> = Vec::new();
    while events
        .iter()
        .filter(|e| e["type"] == "response.completed")
        .count()
        < 3
    {
        match c.recv().await.expect("recv") {
            Message::Text(t) => events.push(serde_json::from_str(&t).expect("json")),
            other => panic!("unexpected {other:?}"),
        }
    }
    let lane =
        |id: &str| -> Vec<&Value> { events.iter().filter(|e| e["stream_id"] == id).collect() };
    let (a, b) = (lane("agent_a"), lane("agent.b-2"));
    assert_eq!(
        a.len() + b.len(),
        events.len(),
        "every event names its lane"
    );
    // FIFO within a lane: a1's whole sequence, then a2's, numbered 0.. without gaps.
    let mut want = expected_types(6, "response.completed");
    want.extend(expected_types(6, "response.completed"));
    assert_eq!(
        types(&a.iter().map(|v| (*v).clone()).collect::<Vec<_>>()),
        want
    );
    for l in [&a, &b] {
        let seqs: Vec<u64> = l
            .iter()
            .filter_map(|e| e["sequence_number"].as_u64())
            .collect();
        assert_eq!(seqs, (0..l.len() as u64).collect::<Vec<_>>());
    }
    // Interleaving: some b event lies between a's first and a1's terminal.
    let pos = |v: &Value| events.iter().position(|e| std::ptr::eq(e, v)).expect("pos");
    let a1_end = a
        .iter()
        .position(|e| e["type"] == "response.completed")
        .expect("a1 end");
    assert!(
        b.iter()
            .any(|e| pos(e) > pos(a[0]) && pos(e) < pos(a[a1_end])),
        "lanes did not interleave"
    );
    let ledger = mock.ledger();
    assert_eq!(ledger.len(), 3);
    assert!(ledger
        .iter()
        .any(|l| l.stream_id.as_deref() == Some("agent.b-2") && l.model == "gpt-5-mini"));
}

#[tokio::test]
async fn at_most_sixteen_responses_are_in_flight_per_connection() {
    let cfg = MockConfig {
        deltas: 3,
        token_rate: Some(40.0),
        ..MockConfig::default()
    };
    let (_mock, mut c) = mock_and_client(cfg).await;
    for i in 0..17 {
        c.send_text(&create(json!({"stream_id": format!("lane{i}")})))
            .await
            .expect("send");
    }
    let mut created_before_first_completion = 0;
    loop {
        let Message::Text(t) = c.recv().await.expect("recv") else {
            continue;
        };
        let v: Value = serde_json::from_str(&t).expect("json");
        match v["type"].as_str() {
            Some("response.created") => created_before_first_completion += 1,
            Some("response.completed") => break,
            _ => {}
        }
    }
    assert_eq!(created_before_first_completion, 16);
}

#[tokio::test]
async fn warm_up_then_chained_turn_reports_cached_tokens() {
    let (mock, mut c) = mock_and_client(MockConfig::default()).await;
    let warm = c
        .turn(&create(json!({"generate": false})))
        .await
        .expect("warm-up");
    assert_eq!(types(&warm), ["response.created", "response.completed"]);
    let w = LedgerEntry::from_terminal(&warm[1]).expect("usage");
    assert_eq!((w.output_tokens, w.reasoning_tokens), (0, 0));
    assert!(w.input_tokens > 0);
    assert!(warm[1]["response"]["output"]
        .as_array()
        .is_some_and(Vec::is_empty));

    let go = c
        .turn(&create(json!({"previous_response_id": w.response_id})))
        .await
        .expect("turn");
    let g = LedgerEntry::from_terminal(go.last().expect("terminal")).expect("usage");
    assert_eq!(g.cached_tokens, g.input_tokens / 2);
    assert!(g.cached_tokens > 0);
    assert_eq!(mock.ledger(), vec![w, g]);
}

#[tokio::test]
async fn unknown_previous_response_is_an_error_event_on_its_lane() {
    let (mock, mut c) = mock_and_client(MockConfig::default()).await;
    let events = c
        .turn(&create(
            json!({"previous_response_id": "resp_nope", "stream_id": "main"}),
        ))
        .await
        .expect("turn");
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        (
            e["type"].as_str(),
            e["status"].as_u64(),
            e["stream_id"].as_str()
        ),
        (Some("error"), Some(400), Some("main"))
    );
    assert_eq!(e["error"]["code"], "previous_response_not_found");
    assert_eq!(e["error"]["param"], "previous_response_id");
    assert!(mock.ledger().is_empty());
    // The connection is still usable.
    assert!(c.turn(&create(json!({}))).await.is_ok());
}

#[tokio::test]
async fn connection_age_limit_sends_the_error_then_closes_1001() {
    let cfg = MockConfig {
        max_connection_age: Some(Duration::from_millis(150)),
        ..MockConfig::default()
    };
    let (_mock, mut c) = mock_and_client(cfg).await;
    let Message::Text(t) = c.recv().await.expect("error event") else {
        panic!("expected text")
    };
    let v: Value = serde_json::from_str(&t).expect("json");
    assert_eq!(
        (v["type"].as_str(), v["error"]["code"].as_str()),
        (Some("error"), Some("websocket_connection_limit_reached"))
    );
    assert!(matches!(
        c.recv().await.expect("close"),
        Message::Close(Some(1001), _)
    ));
}

#[tokio::test]
async fn control_frames_steer_unknown_events_and_close() {
    let (mock, mut c) = mock_and_client(MockConfig::default()).await;
    c.send_frame(true, 9, b"are you there").await.expect("ping");
    assert_eq!(
        c.recv().await.expect("pong"),
        Message::Pong(b"are you there".to_vec())
    );
    c.send_text(r#"{"type":"response.some_future_event","payload":{}}"#)
        .await
        .expect("unknown");
    c.send_text(r#"{"type":"response.steer","previous_response_id":"resp_x","input":[]}"#)
        .await
        .expect("steer");
    let Message::Text(t) = c.recv().await.expect("steer answer") else {
        panic!("expected text")
    };
    let v: Value = serde_json::from_str(&t).expect("json");
    assert_eq!(
        (
            v["type"].as_str(),
            v["steer"]["previous_response_id"].as_str(),
            v["error"]["code"].as_str()
        ),
        (
            Some("response.steer.failed"),
            Some("resp_x"),
            Some("response_not_found")
        ),
        "no such response"
    );
    c.close(4001, "bye").await.expect("close");
    assert!(matches!(
        c.recv().await.expect("close echo"),
        Message::Close(Some(4001), _)
    ));
    let ops: Vec<u8> = mock.received().iter().map(|f| f.opcode).collect();
    assert_eq!(
        ops,
        vec![9, 1, 1, 8],
        "ping, unknown, steer, close all recorded"
    );
}

#[tokio::test]
async fn metadata_selects_incomplete_and_failed_terminals_with_usage() {
    let (mock, mut c) = mock_and_client(MockConfig::default()).await;
    for status in ["incomplete", "failed"] {
        let ev = c
            .turn(&create(
                json!({"metadata": {"mock_terminal": status, "mock_deltas": "3"}}),
            ))
            .await
            .expect("turn");
        assert_eq!(types(&ev), expected_types(3, &format!("response.{status}")));
        let e = LedgerEntry::from_terminal(ev.last().expect("terminal")).expect("usage");
        assert_eq!((e.status.as_str(), e.output_tokens), (status, 3));
    }
    assert_eq!(mock.ledger().len(), 2);
}
