//! One usage record: one JSON line per `response.id` in the usage log.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How a metered response ended, as written in the record's `status` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordStatus {
    /// Upstream sent `response.completed`.
    Completed,
    /// Upstream sent `response.incomplete` (e.g. `max_output_tokens`, steered).
    Incomplete,
    /// Upstream sent `response.failed`.
    Failed,
    /// The client left and no terminal event arrived before the orphan drain ended.
    ClientDisconnected,
    /// The upstream connection ended before the terminal event.
    UpstreamDisconnected,
    /// The relay shut down before the terminal event.
    RelayShutdown,
    /// The response ran longer than `--response-timeout`; the relay ended the session.
    ResponseTimeout,
    /// The relay failed inside the session (a contained panic); the response was cut.
    RelayError,
}

impl RecordStatus {
    /// The snake_case name written to the log and used as a metrics label.
    pub const fn as_str(self) -> &'static str {
        match self {
            RecordStatus::Completed => "completed",
            RecordStatus::Incomplete => "incomplete",
            RecordStatus::Failed => "failed",
            RecordStatus::ClientDisconnected => "client_disconnected",
            RecordStatus::UpstreamDisconnected => "upstream_disconnected",
            RecordStatus::RelayShutdown => "relay_shutdown",
            RecordStatus::ResponseTimeout => "response_timeout",
            RecordStatus::RelayError => "relay_error",
        }
    }
}

/// Why a session ended with responses possibly still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The client left (after the orphan drain, if any).
    ClientDisconnected,
    /// The upstream connection ended.
    UpstreamDisconnected,
    /// The relay is shutting down.
    RelayShutdown,
    /// A response exceeded `--response-timeout`.
    ResponseTimeout,
    /// The relay failed inside the session (a contained panic).
    RelayError,
}

impl EndReason {
    /// The record status this reason writes.
    pub const fn status(self) -> RecordStatus {
        match self {
            EndReason::ClientDisconnected => RecordStatus::ClientDisconnected,
            EndReason::UpstreamDisconnected => RecordStatus::UpstreamDisconnected,
            EndReason::RelayShutdown => RecordStatus::RelayShutdown,
            EndReason::ResponseTimeout => RecordStatus::ResponseTimeout,
            EndReason::RelayError => RecordStatus::RelayError,
        }
    }
}

/// One billed response. Serialized as one line of JSON; field order is the declaration order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// When the record was made: RFC 3339, UTC, milliseconds (`2026-03-01T12:34:56.789Z`).
    pub ts: String,
    /// Relay session (connection) id.
    pub session: u64,
    /// Tenant the client authenticated as.
    pub tenant: String,
    /// The route the session took (`[[route]]` name; `default` without a config file).
    #[serde(default = "default_route")]
    pub route: String,
    /// The route's upstream URL.
    pub upstream: String,
    /// Lane (`stream_id`); `None` = default lane.
    pub stream_id: Option<String>,
    /// Upstream `response.id`: the record's unique key.
    pub response_id: String,
    /// Resolved model (`response.model`), which may differ from the requested one.
    pub model: Option<String>,
    /// Model named in the client's `response.create`, when known.
    pub requested_model: Option<String>,
    /// How the response ended.
    pub status: RecordStatus,
    /// `usage.input_tokens`.
    pub input_tokens: u64,
    /// `usage.input_tokens_details.cached_tokens`.
    pub cached_tokens: u64,
    /// `usage.output_tokens`.
    pub output_tokens: u64,
    /// `usage.output_tokens_details.reasoning_tokens`.
    pub reasoning_tokens: u64,
    /// `usage.total_tokens`.
    pub total_tokens: u64,
    /// `response.service_tier`, when known.
    pub service_tier: Option<String>,
    /// Milliseconds from the `response.create` (or, for a steering successor, from its
    /// `response.created`) to the first output delta; `None` when no delta was seen.
    pub ttft_ms: Option<u64>,
    /// Milliseconds from the same start to the end of the response.
    pub duration_ms: u64,
    /// `true` when the token counts are the upstream's terminal `usage`; `false` when the
    /// response ended without one (disconnects, shutdown, or a terminal lacking `usage`).
    pub usage_final: bool,
    /// The terminal event's `usage` object as the provider sent it, unknown fields
    /// included (`compute_units`, `input_tokens_details.cache_write_tokens`, …); absent when
    /// the response ended without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<RawUsage>,
}

/// The provider's `usage` object kept as its JSON text: the worker checks it is JSON but
/// builds no tree, and the writer copies it into the record line as it is — parsing it into a
/// `serde_json::Value` on the worker and serializing that again cost a map allocation per
/// response on the hot path, and reordered the provider's keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawUsage(Box<serde_json::value::RawValue>);

impl RawUsage {
    /// The object's text as the provider sent it, when it is valid JSON. Text with a line
    /// break (whitespace between members) is re-serialized compactly, so a record stays one
    /// line of the JSON Lines log.
    pub fn from_provider(raw: &str) -> Option<RawUsage> {
        if memchr::memchr2(b'\n', b'\r', raw.as_bytes()).is_some() {
            let v: serde_json::Value = serde_json::from_str(raw).ok()?;
            return serde_json::value::to_raw_value(&v).ok().map(RawUsage);
        }
        serde_json::value::RawValue::from_string(raw.to_owned())
            .ok()
            .map(RawUsage)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Parsed, for readers that look inside (`Value::Null` cannot occur: the text is JSON).
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(self.0.get()).unwrap_or_default()
    }
}

impl PartialEq for RawUsage {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for RawUsage {}

fn default_route() -> String {
    "default".to_string()
}

/// Formats `t` as RFC 3339 UTC with millisecond precision, e.g. `2026-03-01T12:34:56.789Z`.
/// Times before 1970 are clamped to the epoch.
///
/// Written digit by digit into a 24-byte buffer: one exact allocation per record instead of
/// `format!`'s formatter machinery and regrowth (about a fifth of the samples in `perf
/// record` of `cargo bench --bench meter -- response_no_log` before).
pub fn format_rfc3339_ms(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let millis = u64::from(since.subsec_millis());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = crate::utc::civil_from_days(days);
    if year > 9999 {
        // Five-digit years (a clock far off): the general formatter.
        return format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        );
    }
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for slot in b[at..at + width].iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, rem / 3600);
    put(14, 2, (rem % 3600) / 60);
    put(17, 2, rem % 60);
    put(20, 3, millis);
    // Only ASCII digits and separators were written.
    String::from_utf8_lossy(&b).into_owned()
}

/// The current time formatted by [`format_rfc3339_ms`].
pub fn now_rfc3339_ms() -> String {
    format_rfc3339_ms(SystemTime::now())
}
