//! Classification of the top-level `"type"` and extraction of the rare frames that matter.
//!
//! Extraction never parses the forwarded bytes in place: the scanner yields value spans, and
//! only the small ones are decoded: scalar strings (with `serde_json` over the sub-slice when
//! they contain escapes; it does not write to its input) and the `usage` object (walked with
//! the same scanner, integers parsed from their digits). `output` arrays are skipped.

use std::ops::Range;

use super::scan::{decode_escaped, unquote, Scanner, Step};
use super::{Direction, SteerOutcome, TapError, TapEvent, Terminal, TerminalKind, Usage};

/// What a message is, once its top-level type is known and it is worth extracting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Client `response.create`.
    Create,
    /// Upstream `response.created`.
    Created,
    /// Upstream terminal event.
    Terminal(TerminalKind),
    /// Upstream `error`.
    Error,
    /// Upstream `response.*.delta` while deltas are tracked.
    Delta,
    /// Client `response.steer`.
    Steer,
    /// Upstream `response.steer.accepted` / `.pending` / `.failed`.
    SteerAnswer(SteerOutcome),
}

/// The kind of message whose raw (still quoted-content, maybe escaped) type is `raw`;
/// None when the message is not one the tap reports.
pub(crate) fn classify(dir: Direction, raw: &[u8], track_deltas: bool) -> Option<Kind> {
    if raw.contains(&b'\\') {
        let mut span = Vec::with_capacity(raw.len() + 2);
        span.push(b'"');
        span.extend_from_slice(raw);
        span.push(b'"');
        let decoded = decode_escaped(&span)?;
        return classify_plain(dir, decoded.as_bytes(), track_deltas);
    }
    classify_plain(dir, raw, track_deltas)
}

/// [`classify`] of a type known to hold no escape (what [`fast_type`] returns).
#[inline]
pub(crate) fn classify_plain(dir: Direction, ty: &[u8], track_deltas: bool) -> Option<Kind> {
    match dir {
        Direction::ClientToUpstream => match ty {
            b"response.create" => Some(Kind::Create),
            b"response.steer" => Some(Kind::Steer),
            _ => None,
        },
        Direction::UpstreamToClient => match ty {
            b"response.created" => Some(Kind::Created),
            b"response.completed" => Some(Kind::Terminal(TerminalKind::Completed)),
            b"response.incomplete" => Some(Kind::Terminal(TerminalKind::Incomplete)),
            b"response.failed" => Some(Kind::Terminal(TerminalKind::Failed)),
            b"error" => Some(Kind::Error),
            _ if track_deltas && ty.starts_with(b"response.") && ty.ends_with(b".delta") => {
                Some(Kind::Delta)
            }
            // The steer answers, out of line behind one length compare the common delta
            // (26 bytes) fails: as three more arms of this match they cost every delta about
            // a nanosecond (`cargo bench --bench walker`, server_deltas +3.5%).
            _ if ty.len() <= STEER_ANSWER_MAX_LEN => steer_answer(ty),
            _ => None,
        },
    }
}

/// The longest steer answer type.
const STEER_ANSWER_MAX_LEN: usize = b"response.steer.accepted".len();

/// The kind of a steer answer's type; None for any other type.
#[cold]
#[inline(never)]
fn steer_answer(ty: &[u8]) -> Option<Kind> {
    let outcome = match ty.strip_prefix(b"response.steer.")? {
        b"accepted" => SteerOutcome::Accepted,
        b"pending" => SteerOutcome::Pending,
        b"failed" => SteerOutcome::Failed,
        _ => return None,
    };
    Some(Kind::SteerAnswer(outcome))
}

/// The fast path: the type of a message that starts with `{"type":"` (after whitespace), as
/// raw string content, when its closing quote is within `msg` and it has no escapes.
///
/// One two-byte search finds the closing quote or a backslash, whichever comes first (a type with
/// an escape goes to the scanner), so the type's bytes are read once; the result needs no
/// further escape check ([`classify_plain`]).
#[inline]
pub(crate) fn fast_type(msg: &[u8]) -> Option<&[u8]> {
    const PREFIX: &[u8] = b"{\"type\":\"";
    let rest = match msg.strip_prefix(PREFIX) {
        Some(rest) => rest,
        None => {
            let start = msg.iter().position(|&b| !super::scan::is_ws(b))?;
            msg.get(start..)?.strip_prefix(PREFIX)?
        }
    };
    // The type is short (tens of bytes): `memchr2`'s runtime dispatch (an indirect call into
    // its AVX2 kernel, which hands short inputs to SSE2 anyway) was ~10% of the walker's
    // per-frame time in `cargo bench --bench walker`; the crate's SSE2 searcher (baseline on
    // x86_64) inlines here. `None` from `new` cannot happen on x86_64; it would only send the
    // message to the scanner.
    #[cfg(target_arch = "x86_64")]
    let end = memchr::arch::x86_64::sse2::memchr::Two::new(b'"', b'\\')?.find(rest)?;
    #[cfg(not(target_arch = "x86_64"))]
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    match rest.get(end) {
        Some(b'"') => rest.get(..end),
        _ => None,
    }
}

/// Names of the top-level members [`TopFields`] records, in its slot order.
pub(crate) const TOP_NAMES: [&[u8]; 9] = [
    b"type",
    b"stream_id",
    b"model",
    b"generate",
    b"status",
    b"error",
    b"response",
    b"previous_response_id",
    b"steer",
];

/// Spans of the top-level members the tap may need (first occurrence wins).
#[derive(Debug, Clone, Default)]
pub(crate) struct TopFields {
    pub(crate) ty: Option<Range<usize>>,
    stream_id: Option<Range<usize>>,
    model: Option<Range<usize>>,
    generate: Option<Range<usize>>,
    status: Option<Range<usize>>,
    error: Option<Range<usize>>,
    response: Option<Range<usize>>,
    previous_response_id: Option<Range<usize>>,
    steer: Option<Range<usize>>,
}

impl TopFields {
    /// The slot of [`TOP_NAMES`]`[i]`.
    fn slot(&mut self, i: usize) -> Option<&mut Option<Range<usize>>> {
        Some(match i {
            0 => &mut self.ty,
            1 => &mut self.stream_id,
            2 => &mut self.model,
            3 => &mut self.generate,
            4 => &mut self.status,
            5 => &mut self.error,
            6 => &mut self.response,
            7 => &mut self.previous_response_id,
            8 => &mut self.steer,
            _ => return None,
        })
    }

    /// Records a member; returns the raw type content when this member is the first `"type"`.
    pub(crate) fn record<'a>(
        &mut self,
        buf: &'a [u8],
        key: Range<usize>,
        value: Range<usize>,
    ) -> Option<&'a [u8]> {
        let i = key_index(unquote(buf.get(key)?), &TOP_NAMES)?;
        let slot = self.slot(i)?;
        if slot.is_some() {
            return None;
        }
        *slot = Some(value.clone());
        if i == 0 {
            return Some(unquote(buf.get(value)?));
        }
        None
    }
}

/// Names of the `response` members the tap extracts, in [`RespFields`] slot order.
pub(crate) const RESP_NAMES: [&[u8]; 5] = [b"id", b"model", b"status", b"service_tier", b"usage"];

/// Spans (absolute in the message) of the `response` members the tap may need.
#[derive(Debug, Clone, Default)]
pub(crate) struct RespFields {
    spans: [Option<Range<usize>>; 5],
    /// The whole `response` object was walked (its members are all recorded).
    pub(crate) walked: bool,
}

impl RespFields {
    /// Records a member of the `response` object (first occurrence wins).
    pub(crate) fn record(&mut self, buf: &[u8], key: Range<usize>, value: Range<usize>) {
        let raw = buf.get(key).map(unquote).unwrap_or_default();
        if let Some(slot) = key_index(raw, &RESP_NAMES).and_then(|i| self.spans.get_mut(i)) {
            slot.get_or_insert(value);
        }
    }

    /// Walks the `response` object at `span` of `msg` (when the message pass did not).
    fn walk<const SIMD: bool>(
        msg: &[u8],
        span: &Option<Range<usize>>,
    ) -> Result<RespFields, TapError> {
        let start = span.clone().filter(|r| msg.get(r.start) == Some(&b'{'));
        let start = start.ok_or(TapError::NoResponseObject)?.start;
        let mut out = RespFields::default();
        let mut scan = Scanner::nested_at(start);
        loop {
            match scan.next::<SIMD>(msg)? {
                Step::Member { key, value } => out.record(msg, key, value),
                Step::End => return Ok(out),
                Step::More | Step::Enter { .. } => return Err(TapError::Truncated),
            }
        }
    }
}

/// Whether a member with raw key `raw` may be one of `names` — an escaped key may decode to
/// one — without decoding it (a walk asks this of every member it skips).
pub(crate) fn may_be_one_of(raw: &[u8], names: &[&[u8]]) -> bool {
    names.contains(&raw) || raw.contains(&b'\\')
}

/// Index of the key with raw (quoted-content) bytes `raw` in `names`; escaped keys decoded.
fn key_index(raw: &[u8], names: &[&[u8]]) -> Option<usize> {
    // Plain keys first: no name has a backslash, and the scan for one is paid only by keys
    // that match no name (the order `record` had before it shared this function; tapping
    // a tracked delta was 10-19% slower with the scan first, `cargo bench --bench tap`).
    if let Some(i) = names.iter().position(|n| *n == raw) {
        return Some(i);
    }
    if !raw.contains(&b'\\') {
        return None;
    }
    escaped_key_index(raw, names)
}

/// [`key_index`] of a key with escapes: decoded first. Rare, and out of line so that the
/// common path keeps a small stack frame.
#[cold]
fn escaped_key_index(raw: &[u8], names: &[&[u8]]) -> Option<usize> {
    let name = decode_escaped(&[b"\"", raw, b"\""].concat())?;
    names.iter().position(|n| *n == name.as_bytes())
}

/// Builds the event of a complete message `msg` whose members were recorded in `f` (and,
/// when the message pass descended into it, the `response` members in `r`).
pub(crate) fn build<const SIMD: bool>(
    kind: Kind,
    msg: &[u8],
    f: &TopFields,
    r: &RespFields,
) -> Result<TapEvent, TapError> {
    let stream_id = opt_string(msg, &f.stream_id)?;
    Ok(match kind {
        Kind::Delta => TapEvent::Delta { stream_id },
        Kind::Steer => TapEvent::Steer,
        Kind::SteerAnswer(outcome) => {
            // The submission is `steer: {id, previous_response_id}` (openai-python's
            // `BetaResponseSteer*Event`); a top-level `previous_response_id` is read too.
            let (steer_id, nested) = match object_span(msg, &f.steer) {
                Some(obj) => {
                    let [id, prev] = members::<SIMD, 2>(obj, [b"id", b"previous_response_id"])?;
                    (opt_string(obj, &id)?, opt_string(obj, &prev)?)
                }
                None => (None, None),
            };
            TapEvent::SteerAnswer {
                outcome,
                steer_id,
                previous_response_id: match nested {
                    Some(p) => Some(p),
                    None => opt_string(msg, &f.previous_response_id)?,
                },
            }
        }
        Kind::Create => TapEvent::Create {
            model: opt_string(msg, &f.model)?,
            stream_id,
            generate: f.generate.clone().and_then(|r| match msg.get(r)? {
                b"true" => Some(true),
                b"false" => Some(false),
                _ => None,
            }),
        },
        Kind::Error => {
            let status = f
                .status
                .clone()
                .and_then(|r| std::str::from_utf8(msg.get(r)?).ok()?.parse::<u16>().ok());
            let code = match object_span(msg, &f.error) {
                Some(err) => {
                    let [code] = members::<SIMD, 1>(err, [b"code"])?;
                    opt_string(err, &code)?
                }
                None => None,
            };
            TapEvent::Error {
                status,
                code,
                stream_id,
            }
        }
        Kind::Created | Kind::Terminal(_) => {
            let walked;
            let r = if r.walked {
                r
            } else {
                walked = RespFields::walk::<SIMD>(msg, &f.response)?;
                &walked
            };
            let [id, model, status, tier, usage] = &r.spans;
            let response_id = opt_string(msg, id)?.ok_or(TapError::NoResponseId)?;
            let model = opt_string(msg, model)?;
            match kind {
                Kind::Terminal(event) => TapEvent::Terminal(Box::new(Terminal {
                    event,
                    response_id,
                    model,
                    status: opt_string(msg, status)?,
                    service_tier: opt_string(msg, tier)?,
                    stream_id,
                    usage: match usage.clone().and_then(|r| msg.get(r)) {
                        Some(u) => parse_usage::<SIMD>(u)?,
                        None => None,
                    },
                    usage_raw: usage
                        .clone()
                        .and_then(|r| msg.get(r))
                        .filter(|u| u.first() == Some(&b'{'))
                        .and_then(|u| std::str::from_utf8(u).ok())
                        .map(Box::from),
                })),
                _ => TapEvent::Created {
                    response_id,
                    stream_id,
                    model,
                },
            }
        }
    })
}

/// The value span when it is an object.
fn object_span<'a>(buf: &'a [u8], span: &Option<Range<usize>>) -> Option<&'a [u8]> {
    let v = buf.get(span.clone()?)?;
    (v.first() == Some(&b'{')).then_some(v)
}

/// Value spans of the named members of the complete object `obj` (first occurrence wins).
pub(crate) fn members<const SIMD: bool, const N: usize>(
    obj: &[u8],
    names: [&[u8]; N],
) -> Result<[Option<Range<usize>>; N], TapError> {
    let mut out: [Option<Range<usize>>; N] = std::array::from_fn(|_| None);
    let mut scan = Scanner::new();
    loop {
        match scan.next::<SIMD>(obj)? {
            Step::Member { key, value } => {
                let raw = obj.get(key).map(unquote).unwrap_or_default();
                if let Some(slot) = key_index(raw, &names).and_then(|i| out.get_mut(i)) {
                    slot.get_or_insert(value);
                }
            }
            Step::End => return Ok(out),
            Step::More | Step::Enter { .. } => return Err(TapError::Truncated),
        }
    }
}

/// A string value, decoded; `Ok(None)` when absent or not a string (e.g. `null`).
fn opt_string(buf: &[u8], span: &Option<Range<usize>>) -> Result<Option<String>, TapError> {
    let Some(v) = span.clone().and_then(|r| buf.get(r)) else {
        return Ok(None);
    };
    if v.first() != Some(&b'"') {
        return Ok(None);
    }
    let inner = unquote(v);
    if inner.contains(&b'\\') {
        return decode_escaped(v).map(Some).ok_or(TapError::BadString);
    }
    match std::str::from_utf8(inner) {
        Ok(s) => Ok(Some(s.to_owned())),
        Err(_) => Err(TapError::BadString),
    }
}

/// The `usage` object, walked with the scanner (no allocation); None for `null` or a
/// non-object. Each counter that is missing or not a non-negative integer counts as 0
/// (`total_tokens`: input + output), so one odd field does not lose the others.
fn parse_usage<const SIMD: bool>(span: &[u8]) -> Result<Option<Usage>, TapError> {
    if span.first() != Some(&b'{') {
        return Ok(None);
    }
    let [input, input_details, output, output_details, total] = members::<SIMD, 5>(
        span,
        [
            b"input_tokens",
            b"input_tokens_details",
            b"output_tokens",
            b"output_tokens_details",
            b"total_tokens",
        ],
    )?;
    let detail = |d: &Option<Range<usize>>, name: &[u8]| -> Result<Option<u64>, TapError> {
        match object_span(span, d) {
            Some(obj) => Ok(uint(obj, &members::<SIMD, 1>(obj, [name])?[0])),
            None => Ok(None),
        }
    };
    let input_tokens = uint(span, &input).unwrap_or(0);
    let output_tokens = uint(span, &output).unwrap_or(0);
    Ok(Some(Usage {
        input_tokens,
        cached_tokens: detail(&input_details, b"cached_tokens")?.unwrap_or(0),
        output_tokens,
        reasoning_tokens: detail(&output_details, b"reasoning_tokens")?.unwrap_or(0),
        total_tokens: uint(span, &total).unwrap_or(input_tokens.saturating_add(output_tokens)),
    }))
}

/// A JSON non-negative integer value that fits in u64.
fn uint(buf: &[u8], span: &Option<Range<usize>>) -> Option<u64> {
    let digits = buf.get(span.clone()?)?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}
