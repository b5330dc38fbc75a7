//! The usage ledger: what the mock upstream billed, one entry per terminal event.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Usage carried by one terminal event (`response.completed` / `.incomplete` /
/// `.failed`), keyed by `response_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// `response.id`.
    pub response_id: String,
    /// The lane (`stream_id`), `None` on the default lane.
    pub stream_id: Option<String>,
    /// `response.model` as sent.
    pub model: String,
    /// `response.status` (`completed`, `incomplete`, `failed`).
    pub status: String,
    /// `response.service_tier`.
    pub service_tier: String,
    /// `usage.input_tokens`.
    pub input_tokens: u64,
    /// `usage.input_tokens_details.cached_tokens`.
    pub cached_tokens: u64,
    /// `usage.output_tokens`.
    pub output_tokens: u64,
    /// `usage.output_tokens_details.reasoning_tokens`.
    pub reasoning_tokens: u64,
}

/// Whether `event_type` is one of the three terminal response events.
pub fn is_terminal(event_type: &str) -> bool {
    matches!(
        event_type,
        "response.completed" | "response.incomplete" | "response.failed"
    )
}

impl LedgerEntry {
    /// Extracts the usage record from a terminal event as a client received it;
    /// `None` for any other event or when `response.usage` is missing.
    pub fn from_terminal(event: &Value) -> Option<LedgerEntry> {
        if !is_terminal(event.get("type")?.as_str()?) {
            return None;
        }
        let r = event.get("response")?;
        let u = r.get("usage")?;
        let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
        Some(LedgerEntry {
            response_id: r.get("id")?.as_str()?.to_string(),
            stream_id: event
                .get("stream_id")
                .and_then(Value::as_str)
                .map(str::to_string),
            model: r.get("model")?.as_str()?.to_string(),
            status: r.get("status")?.as_str()?.to_string(),
            service_tier: r
                .get("service_tier")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string(),
            input_tokens: n(u.get("input_tokens")),
            cached_tokens: n(u.pointer("/input_tokens_details/cached_tokens")),
            output_tokens: n(u.get("output_tokens")),
            reasoning_tokens: n(u.pointer("/output_tokens_details/reasoning_tokens")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_fixture_terminal_usage() {
        let line = include_str!("../../tests/fixtures/responses-ws/lanes.upstream.jsonl")
            .lines()
            .find(|l| l.contains("\"type\":\"response.completed\""))
            .expect("a terminal line");
        let v: Value = serde_json::from_str(line).expect("json");
        let e = LedgerEntry::from_terminal(&v).expect("usage");
        assert_eq!(e.response_id, "resp_fbc729109a6cb24f350209e6");
        assert_eq!(e.stream_id.as_deref(), Some("agent_a"));
        assert_eq!(
            (e.input_tokens, e.output_tokens, e.reasoning_tokens),
            (100, 20, 8)
        );
    }

    #[test]
    fn non_terminal_events_have_no_entry() {
        let v = serde_json::json!({"type":"response.created","response":{"id":"r","model":"m","status":"in_progress","usage":{}}});
        assert!(LedgerEntry::from_terminal(&v).is_none());
    }
}
