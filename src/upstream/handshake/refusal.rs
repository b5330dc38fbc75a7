//! What the client is told when upstream refuses or fails the upgrade.

use crate::server::handshake::error_response;

/// What the client gets when upstream refused or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// HTTP status for the client.
    pub status: u16,
    /// JSON `error.type`.
    pub err_type: &'static str,
    /// JSON `error.code` and metrics label.
    pub code: &'static str,
    /// Human-readable cause; never contains a key.
    pub message: String,
    /// `Retry-After` to pass on (429 and 503).
    pub retry_after: Option<String>,
}

impl ClientError {
    /// The complete HTTP error response (with `Retry-After` when set).
    pub fn to_response(&self) -> Vec<u8> {
        let extra: Vec<(&str, &str)> = self
            .retry_after
            .iter()
            .map(|r| ("Retry-After", r.as_str()))
            .collect();
        error_response(self.status, self.err_type, self.code, &self.message, &extra)
    }
}

/// Map upstream's refusal status to the client's answer: 401/403/407 → 502
/// `upstream_auth_failed`; 429 → 429 `upstream_rate_limited` with `Retry-After`; other 4xx → same
/// status `upstream_refused`; 5xx → 502 `upstream_error` (`Retry-After` kept for 503); anything
/// else (2xx/3xx instead of 101) → 502 `upstream_not_upgraded`.
pub fn map_refusal(status: u16, retry_after: Option<&str>) -> ClientError {
    let keep = |r: Option<&str>| r.map(str::to_owned);
    let (status_out, err_type, code, message, retry) = match status {
        401 | 403 | 407 => (
            502,
            "upstream_error",
            "upstream_auth_failed",
            format!("upstream rejected the relay's provider credential (HTTP {status})"),
            None,
        ),
        429 => (
            429,
            "rate_limit_error",
            "upstream_rate_limited",
            "upstream rate limit reached (HTTP 429)".to_owned(),
            keep(retry_after),
        ),
        400..=499 => (
            status,
            "invalid_request_error",
            "upstream_refused",
            format!("upstream refused the WebSocket upgrade (HTTP {status})"),
            None,
        ),
        500..=599 => (
            502,
            "upstream_error",
            "upstream_error",
            format!("upstream failed the WebSocket upgrade (HTTP {status})"),
            if status == 503 {
                keep(retry_after)
            } else {
                None
            },
        ),
        _ => (
            502,
            "upstream_error",
            "upstream_not_upgraded",
            format!("upstream answered the upgrade with HTTP {status} instead of 101"),
            None,
        ),
    };
    ClientError {
        status: status_out,
        err_type,
        code,
        message,
        retry_after: retry,
    }
}
