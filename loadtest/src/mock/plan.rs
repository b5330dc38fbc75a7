//! What one `response.create` asks for: the request's fields after config
//! defaults and `metadata` overrides, and the deterministic usage it is billed.

use serde_json::Value;

use super::events::Usage;
use super::{Fault, MockConfig};

/// What one `response.create` asks for, after config and metadata overrides.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub model: String,
    pub service_tier: String,
    pub store: bool,
    pub tools: Value,
    pub instructions: Option<String>,
    pub generate: bool,
    pub previous: Option<String>,
    /// The client-owned function the model calls instead of writing text: the create's
    /// `tool_choice` is `required` (its first function tool) or names a function.
    pub call: Option<String>,
    pub deltas: usize,
    pub input_tokens: u64,
    pub reasoning: bool,
    pub fault: Option<Fault>,
    pub terminal: String,
    pub pad: usize,
}

impl Plan {
    pub fn new(cfg: &MockConfig, c: &Value, frame_bytes: usize) -> Plan {
        let s = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_string);
        let meta = |k: &str| c.get("metadata").and_then(|m| m.get(k));
        let fault = match Fault::from_metadata(c) {
            Some(f) => f,
            None => cfg.fault.clone(),
        };
        let deltas = meta("mock_deltas")
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(cfg.deltas);
        let terminal = match meta("mock_terminal").and_then(Value::as_str) {
            Some(t @ ("incomplete" | "failed")) => t.to_string(),
            _ => "completed".to_string(),
        };
        let pad = match &fault {
            Some(Fault::HugeTerminal { bytes }) => *bytes,
            _ => cfg.terminal_pad_bytes,
        };
        Plan {
            model: s("model").unwrap_or_else(|| "gpt-5".to_string()),
            service_tier: s("service_tier").unwrap_or_else(|| "default".to_string()),
            store: c.get("store").and_then(Value::as_bool).unwrap_or(false),
            tools: c
                .get("tools")
                .cloned()
                .unwrap_or_else(|| Value::Array(Vec::new())),
            instructions: s("instructions"),
            generate: c.get("generate").and_then(Value::as_bool).unwrap_or(true),
            previous: s("previous_response_id"),
            call: forced_call(c),
            deltas,
            input_tokens: (frame_bytes as u64 / 4).max(1),
            reasoning: c.get("reasoning").is_some_and(|r| !r.is_null()),
            fault,
            terminal,
            pad,
        }
    }

    /// The plan of the steering successor of response `previous` (which this plan made):
    /// the same request continuing the chain, without a fault.
    pub fn successor(self, previous: String) -> Plan {
        Plan {
            previous: Some(previous),
            fault: None,
            call: None,
            generate: true,
            ..self
        }
    }

    pub fn usage(&self, output: u64) -> Usage {
        Usage {
            input: self.input_tokens,
            cached: if self.previous.is_some() {
                self.input_tokens / 2
            } else {
                0
            },
            output,
            reasoning: if self.reasoning { output / 2 } else { 0 },
        }
    }
}

/// The function a create makes the model call: `tool_choice: "required"` picks its first
/// function tool, `tool_choice: {"type": "function", "name": N}` picks `N`; anything else
/// (`auto`, `none`, no function tool) lets it write text.
fn forced_call(c: &Value) -> Option<String> {
    let first_function = || {
        c.get("tools")?
            .as_array()?
            .iter()
            .find(|t| t.get("type").and_then(Value::as_str) == Some("function"))?
            .get("name")?
            .as_str()
            .map(str::to_string)
    };
    match c.get("tool_choice")? {
        Value::String(s) if s == "required" => first_function(),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            o.get("name").and_then(Value::as_str).map(str::to_string)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::forced_call;
    use serde_json::json;

    #[test]
    fn only_a_forcing_tool_choice_makes_the_model_call_a_function() {
        let tools = json!([{"type": "web_search"}, {"type": "function", "name": "a"},
            {"type": "function", "name": "b"}]);
        let with = |choice: serde_json::Value| json!({"tools": tools, "tool_choice": choice});
        assert_eq!(forced_call(&with(json!("required"))).as_deref(), Some("a"));
        let named = json!({"type": "function", "name": "b"});
        assert_eq!(forced_call(&with(named)).as_deref(), Some("b"));
        assert_eq!(forced_call(&with(json!("auto"))), None);
        assert_eq!(forced_call(&json!({"tools": tools})), None);
        let no_function = json!({"tools": [{"type": "web_search"}], "tool_choice": "required"});
        assert_eq!(forced_call(&no_function), None);
    }
}
