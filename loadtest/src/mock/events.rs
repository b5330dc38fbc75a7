//! Server event JSON, shaped like `shared/fixtures/responses-ws/*.upstream.jsonl`
//! (`"type"` first, `"stream_id"` then `"sequence_number"` last).

use serde::Serialize;
use serde_json::Value;

/// Words the deltas are made of: escapes and multi-byte UTF-8 on purpose.
const WORDS: &[&str] = &[
    " token",
    " relay",
    " café",
    " ☃",
    " \"quoted\"",
    " edge",
    " back\\slash",
    " lane",
    " 🚀",
    " tab\t",
    " usage",
    " newline\n",
    " frame",
    " socket",
];

/// Fixed facts about one response, used by every event it produces.
#[derive(Debug)]
pub(crate) struct Resp<'a> {
    pub id: &'a str,
    pub item_id: &'a str,
    pub model: &'a str,
    pub stream_id: Option<&'a str>,
    pub created_at: u64,
    pub service_tier: &'a str,
    pub store: bool,
    pub tools: &'a Value,
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(flatten)]
    body: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_id: Option<&'a str>,
    sequence_number: u64,
}

#[derive(Serialize)]
struct ResponseBody<'a> {
    response: ResponseObj<'a>,
}

#[derive(Serialize)]
struct ResponseObj<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: &'a str,
    model: &'a str,
    output: Vec<Value>,
    service_tier: &'a str,
    instructions: Option<&'a str>,
    tools: &'a Value,
    parallel_tool_calls: bool,
    store: bool,
    text: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    incomplete_details: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Value>,
}

#[derive(Serialize)]
struct DeltaBody<'a> {
    item_id: &'a str,
    output_index: u32,
    content_index: u32,
    delta: &'a str,
    logprobs: [u8; 0],
}

/// Token counts of one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub input: u64,
    pub cached: u64,
    pub output: u64,
    pub reasoning: u64,
}

impl Usage {
    fn json(&self) -> Value {
        // Newer fields ride along as live responses carry them (`compute_units`,
        // `cache_write_tokens`): a relay must keep what it does not know.
        serde_json::json!({
            "input_tokens": self.input,
            "input_tokens_details": {
                "cached_tokens": self.cached,
                "cache_write_tokens": self.input - self.cached.min(self.input),
            },
            "output_tokens": self.output,
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.input + self.output,
            "compute_units": compute_units(self.input + self.output),
        })
    }
}

/// The mock's `usage.compute_units` for `tokens` tokens (a provider-defined unit; here one
/// per 1,000 tokens).
pub fn compute_units(tokens: u64) -> f64 {
    tokens as f64 / 1000.0
}

fn to_string<T: Serialize>(v: &T) -> String {
    // Serializing these plain structs cannot fail; an empty frame would be noticed.
    serde_json::to_string(v).unwrap_or_default()
}

impl Resp<'_> {
    fn wrap<T: Serialize>(&self, kind: &str, body: T, seq: u64) -> String {
        to_string(&Envelope {
            kind,
            body,
            stream_id: self.stream_id,
            sequence_number: seq,
        })
    }

    fn obj<'s>(&'s self, status: &'s str, output: Vec<Value>) -> ResponseObj<'s> {
        ResponseObj {
            id: self.id,
            object: "response",
            created_at: self.created_at,
            status,
            model: self.model,
            output,
            service_tier: self.service_tier,
            instructions: None,
            tools: self.tools,
            parallel_tool_calls: true,
            store: self.store,
            text: serde_json::json!({"format": {"type": "text"}}),
            incomplete_details: None,
            error: None,
            usage: None,
        }
    }

    /// `response.created` or `response.in_progress`.
    pub fn lifecycle(&self, kind: &str, seq: u64) -> String {
        let response = self.obj("in_progress", Vec::new());
        self.wrap(kind, ResponseBody { response }, seq)
    }

    fn message(&self, status: &str, text: Option<&str>) -> Value {
        let content = match text {
            Some(t) => serde_json::json!([{"type": "output_text", "text": t, "annotations": []}]),
            None => serde_json::json!([]),
        };
        serde_json::json!({"id": self.item_id, "type": "message", "status": status,
            "role": "assistant", "content": content})
    }

    /// `response.output_item.added` (`text: None`) or `.done`.
    pub fn item(&self, text: Option<&str>, seq: u64) -> String {
        let (kind, status) = match text {
            None => ("response.output_item.added", "in_progress"),
            Some(_) => ("response.output_item.done", "completed"),
        };
        let body = serde_json::json!({"output_index": 0, "item": self.message(status, text)});
        self.wrap(kind, Flat(body), seq)
    }

    /// `response.content_part.added` (`text: None`) or `.done`.
    pub fn part(&self, text: Option<&str>, seq: u64) -> String {
        let kind = match text {
            None => "response.content_part.added",
            Some(_) => "response.content_part.done",
        };
        let body = serde_json::json!({"item_id": self.item_id, "output_index": 0, "content_index": 0,
            "part": {"type": "output_text", "text": text.unwrap_or(""), "annotations": []}});
        self.wrap(kind, Flat(body), seq)
    }

    /// `response.output_text.delta`.
    pub fn delta(&self, delta: &str, seq: u64) -> String {
        let body = DeltaBody {
            item_id: self.item_id,
            output_index: 0,
            content_index: 0,
            delta,
            logprobs: [],
        };
        self.wrap("response.output_text.delta", body, seq)
    }

    /// `response.output_text.done`.
    pub fn text_done(&self, text: &str, seq: u64) -> String {
        let body = serde_json::json!({"item_id": self.item_id, "output_index": 0,
            "content_index": 0, "text": text, "logprobs": []});
        self.wrap("response.output_text.done", Flat(body), seq)
    }

    /// The terminal event (`status` is `completed`, `incomplete` or `failed`).
    pub fn terminal(
        &self,
        status: &str,
        text: Option<&str>,
        instructions: Option<&str>,
        usage: Usage,
        seq: u64,
    ) -> String {
        self.terminal_because(status, "max_output_tokens", text, instructions, usage, seq)
    }

    /// [`Resp::terminal`] with `reason` as an incomplete response's
    /// `incomplete_details.reason` (`steered` for a response a steer ended).
    pub fn terminal_because(
        &self,
        status: &str,
        reason: &str,
        text: Option<&str>,
        instructions: Option<&str>,
        usage: Usage,
        seq: u64,
    ) -> String {
        let output = text
            .map(|t| vec![self.message("completed", Some(t))])
            .unwrap_or_default();
        self.terminal_with(status, reason, output, instructions, usage, seq)
    }

    /// [`Resp::terminal_because`] with these `output` items.
    pub fn terminal_with(
        &self,
        status: &str,
        reason: &str,
        output: Vec<Value>,
        instructions: Option<&str>,
        usage: Usage,
        seq: u64,
    ) -> String {
        let mut response = self.obj(status, output);
        response.instructions = instructions;
        response.usage = Some(usage.json());
        match status {
            "incomplete" => {
                response.incomplete_details = Some(serde_json::json!({"reason": reason}))
            }
            "failed" => {
                response.error = Some(serde_json::json!({"code": "server_error",
                    "message": "The model failed to generate a response."}))
            }
            _ => {}
        }
        self.wrap(
            &format!("response.{status}"),
            ResponseBody { response },
            seq,
        )
    }
}

/// A call of a client-owned function tool (`function_call` item).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Call<'a> {
    pub name: &'a str,
    pub call_id: &'a str,
}

impl Resp<'_> {
    /// The `function_call` item: in progress with empty arguments (`arguments: None`) or
    /// completed with them.
    pub fn call_json(&self, call: &Call<'_>, arguments: Option<&str>) -> Value {
        let status = if arguments.is_some() {
            "completed"
        } else {
            "in_progress"
        };
        serde_json::json!({"id": self.item_id, "type": "function_call", "status": status,
            "arguments": arguments.unwrap_or(""), "call_id": call.call_id, "name": call.name})
    }

    /// `response.output_item.added` of a function call (`arguments: None`) or `.done`.
    pub fn call_item(&self, call: &Call<'_>, arguments: Option<&str>, seq: u64) -> String {
        let kind = match arguments {
            None => "response.output_item.added",
            Some(_) => "response.output_item.done",
        };
        let body = serde_json::json!({"output_index": 0, "item": self.call_json(call, arguments)});
        self.wrap(kind, Flat(body), seq)
    }

    /// `response.function_call_arguments.delta`.
    pub fn arguments_delta(&self, delta: &str, seq: u64) -> String {
        let body = serde_json::json!({"item_id": self.item_id, "output_index": 0, "delta": delta});
        self.wrap("response.function_call_arguments.delta", Flat(body), seq)
    }

    /// `response.function_call_arguments.done`.
    pub fn arguments_done(&self, call: &Call<'_>, arguments: &str, seq: u64) -> String {
        let body = serde_json::json!({"item_id": self.item_id, "output_index": 0,
            "name": call.name, "arguments": arguments});
        self.wrap("response.function_call_arguments.done", Flat(body), seq)
    }
}

/// The argument deltas of a function call with `n` output tokens: pieces that join into one
/// JSON object (`{"query":"q q … q"}`); none when `n` is 0.
pub(crate) fn argument_deltas(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let open = if i == 0 { "{\"query\":\"" } else { " " };
            let close = if i + 1 == n { "\"}" } else { "" };
            format!("{open}q{close}")
        })
        .collect()
}

/// A `serde_json::Value` object serialized inline (for `#[serde(flatten)]`).
struct Flat(Value);

impl Serialize for Flat {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// An `error` event in the shape of protocol.md "Errors".
pub(crate) fn error_event(
    status: u16,
    kind: &str,
    code: &str,
    message: &str,
    param: Option<&str>,
    stream_id: Option<&str>,
    seq: u64,
) -> String {
    let body = serde_json::json!({"status": status,
        "error": {"type": kind, "code": code, "message": message, "param": param}});
    to_string(&Envelope {
        kind: "error",
        body: Flat(body),
        stream_id,
        sequence_number: seq,
    })
}

/// How the mock answers a `response.steer` (openai-python's `BetaResponseSteer*Event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SteerAnswer<'a> {
    /// `response.steer.accepted` for submission `id`: queued; a successor commits it.
    Accepted { id: &'a str },
    /// `response.steer.failed` with this error code (before an id was allocated), echoing
    /// the steer's `input`.
    Failed { code: &'a str, input: &'a Value },
    /// `response.steer.pending` for submission `id`: its response completed with `call` and
    /// waits for the client's result (`waiting_for_required_input`).
    Pending { id: &'a str, call: &'a Call<'a> },
}

/// `response.steer.accepted` / `.failed` / `.pending` for a steer of `previous`.
pub(crate) fn steer_answer(
    answer: SteerAnswer<'_>,
    previous: Option<&str>,
    stream_id: Option<&str>,
    seq: u64,
) -> String {
    let (kind, body) = match answer {
        SteerAnswer::Accepted { id } => (
            "response.steer.accepted",
            serde_json::json!({"steer": {"id": id, "previous_response_id": previous}}),
        ),
        SteerAnswer::Failed { code, input } => (
            "response.steer.failed",
            serde_json::json!({
                "error": {"type": "invalid_request_error", "code": code,
                    "message": format!("The steering input was not accepted: {code}.")},
                "steer": {"previous_response_id": previous, "input": input}}),
        ),
        SteerAnswer::Pending { id, call } => (
            "response.steer.pending",
            serde_json::json!({"reason": "waiting_for_required_input",
                "required_input": [{"type": "function_call_output", "call_id": call.call_id,
                    "name": call.name}],
                "steer": {"id": id, "previous_response_id": previous}}),
        ),
    };
    to_string(&Envelope {
        kind,
        body: Flat(body),
        stream_id,
        sequence_number: seq,
    })
}

/// Up to `n` distinct delta texts sized so each delta frame is about `frame_bytes` long;
/// a response with more deltas reuses them in turn (delta `i` is `texts[i % len]`).
pub(crate) fn delta_texts(resp: &Resp<'_>, n: usize, frame_bytes: usize) -> Vec<String> {
    let n = n.min(DISTINCT_DELTAS);
    let skeleton = resp.delta("", 0).len();
    let budget = frame_bytes.saturating_sub(skeleton).max(1);
    let mut cursor = 0usize;
    (0..n)
        .map(|_| {
            let mut t = String::new();
            let mut escaped = 0;
            while escaped < budget {
                let w = WORDS.get(cursor % WORDS.len()).copied().unwrap_or(" token");
                cursor += 1;
                escaped += to_string(&w).len() - 2;
                t.push_str(w);
            }
            t
        })
        .collect()
}

/// Most distinct delta texts built per response (building 10,000 large ones up front made a
/// 100 MB response take seconds to start in a debug build).
const DISTINCT_DELTAS: usize = 64;

/// `bytes` bytes of plain ASCII filler for the echoed instructions.
pub(crate) fn padding(bytes: usize) -> String {
    const FILL: &str = "You are a helpful assistant. Answer briefly and precisely. ";
    FILL.chars().cycle().take(bytes).collect()
}

#[cfg(test)]
mod tests;
