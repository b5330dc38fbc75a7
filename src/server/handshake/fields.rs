//! Header field helpers shared by the client- and upstream-side handshakes: token lists and
//! writing header lines that cannot break the framing.

/// `v` without leading and trailing spaces and tabs.
pub(crate) fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    v.get(start..end).unwrap_or_default()
}

/// The comma-separated elements of header values, trimmed, empty ones skipped.
pub(crate) fn list_elements<'a>(
    values: impl Iterator<Item = &'a [u8]>,
) -> impl Iterator<Item = &'a [u8]> {
    values
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim)
        .filter(|e| !e.is_empty())
}

/// Whether any comma-separated element equals `token` (case-insensitive); for `Upgrade`,
/// `websocket/13` counts as `websocket`.
pub(crate) fn has_token<'a>(values: impl Iterator<Item = &'a [u8]>, token: &str) -> bool {
    list_elements(values).any(|e| {
        let name = e.split(|&b| b == b'/').next().unwrap_or_default();
        name.eq_ignore_ascii_case(token.as_bytes())
    })
}

/// Whether `name` is a valid header name (an RFC 9110 token).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `value` can be written as a header value: no CR, LF, NUL or other control byte
/// except horizontal tab.
fn is_safe_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Append `name: value\r\n`, or nothing (returns false) when either would break the framing.
pub(crate) fn write_header(out: &mut Vec<u8>, name: &str, value: &[u8]) -> bool {
    if !is_token(name) || !is_safe_value(value) {
        return false;
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(trim(value));
    out.extend_from_slice(b"\r\n");
    true
}

/// Headers whose values are credentials and never printed.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "api-key",
    "x-api-key",
    "cookie",
    "set-cookie",
];

/// A header value for `Debug` output: `<redacted>` for credentials, else the value (lossy UTF-8).
pub(crate) fn redacted<'a>(name: &str, value: &'a [u8]) -> std::borrow::Cow<'a, str> {
    if SECRET_HEADERS.iter().any(|s| name.eq_ignore_ascii_case(s)) {
        std::borrow::Cow::Borrowed("<redacted>")
    } else {
        String::from_utf8_lossy(value)
    }
}
