//! The tap: a per-direction peek at the top-level JSON `"type"` of every text message the relay
//! forwards, and extraction of the rare messages that matter for metering.
//!
//! # Cost model
//!
//! - A message that starts with `{"type":"` (after optional whitespace) and arrives whole has
//!   its type read right there: a prefix compare and a short `memchr`. An uninteresting message
//!   (every delta, unless [`Tap::set_track_deltas`] is on) costs nothing more.
//! - Otherwise a depth-aware scanner (`scan`) walks the top-level members; strings, where the
//!   bulk bytes are, are skipped 64 bytes at a time (`skip`: escapes resolved with bit
//!   arithmetic, AVX-512, AVX2 or SSE2). It stops at the first top-level `"type"` when that type
//!   is uninteresting.
//! - A message in one chunk is scanned in place (no copy). A message split over chunks is
//!   scanned in place up to the end of its first chunk; if the type is found and uninteresting
//!   the rest is skipped without copying; otherwise the chunks are copied into the tap's buffer
//!   (at most `max_buffer` bytes) and the *same* scanner resumes over the growing buffer
//!   (nothing is rescanned) — except the bytes of values nothing records (a terminal event's
//!   `output` and `instructions`, any member the tap does not read): where a chunk ends inside
//!   one, its bytes are left out of the buffer and the next chunk's part of it is skipped in
//!   place (`walk::Walker::droppable`). So what a split terminal event costs in copies is its
//!   few extracted members, not its text; `max_buffer` bounds the bytes held, not the message.
//! - Extraction (`extract`) decodes only small sub-slices: scalar strings and the `usage`
//!   object; `output` arrays are skipped, never parsed.
//!
//! Duplicate keys: the first occurrence wins (consistently on every path).

mod assembly;
mod budget;
mod extract;
mod scan;
mod skip;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_assembly;
#[cfg(test)]
mod tests_fixtures;
mod walk;

use extract::{build, classify_plain, fast_type, Kind};
use walk::{Walk, Walker};

/// Capacity of the assembly buffer kept between messages; a larger one is freed at message
/// end (an idle session should hold no assembly buffer).
const RETAIN_CAPACITY: usize = 1024;

/// Most bytes the tap reserves ahead for the rest of a frame it assembles (the frame header
/// says how long the payload is; a terminal event split across reads would otherwise grow the
/// buffer by doubling, copying it each time). Larger messages grow from here.
const RESERVE_AHEAD: usize = 256 << 10;

pub use crate::flow::Direction;
pub use budget::Budget;

/// Why a message the tap tried to understand produced no event (see [`Tap::last_error`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TapError {
    /// The message does not start with a JSON object.
    #[error("message does not start with a JSON object (byte {at})")]
    NotAnObject {
        /// Offset of the offending byte.
        at: usize,
    },
    /// A byte that cannot appear at this point of a top-level object.
    #[error("unexpected byte {byte:#04x} at {at}, expected {expected}")]
    Unexpected {
        /// Offset of the offending byte.
        at: usize,
        /// The byte.
        byte: u8,
        /// What the scanner expected there.
        expected: &'static str,
    },
    /// Non-whitespace bytes after the object's closing brace.
    #[error("bytes after the closing brace (byte {at})")]
    Trailing {
        /// Offset of the first trailing byte.
        at: usize,
    },
    /// The message (or a nested object in it) ended before its closing brace.
    #[error("message ended inside the JSON object")]
    Truncated,
    /// A string value needed for the event has an invalid escape or is not UTF-8.
    #[error("string value with an invalid escape or invalid UTF-8")]
    BadString,
    /// A `response.created` / terminal event without a `response` object.
    #[error("event has no `response` object")]
    NoResponseObject,
    /// A `response.created` / terminal event whose `response` has no string `id`.
    #[error("event has no `response.id`")]
    NoResponseId,
    /// The message needed assembling and was larger than `max_buffer`.
    #[error("message larger than the tap's max_buffer")]
    Overflow,
}

/// Which terminal event ended a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminalKind {
    /// `response.completed`
    Completed,
    /// `response.incomplete`
    Incomplete,
    /// `response.failed`
    Failed,
}

/// `response.usage` of a terminal event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// `input_tokens`
    pub input_tokens: u64,
    /// `input_tokens_details.cached_tokens` (0 when the details are missing)
    pub cached_tokens: u64,
    /// `output_tokens`
    pub output_tokens: u64,
    /// `output_tokens_details.reasoning_tokens` (0 when the details are missing)
    pub reasoning_tokens: u64,
    /// `total_tokens` (input + output when missing)
    pub total_tokens: u64,
}

/// A terminal event: what metering records, keyed by `response_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Terminal {
    /// Which terminal event.
    pub event: TerminalKind,
    /// `response.id`
    pub response_id: String,
    /// `response.model` (the resolved model)
    pub model: Option<String>,
    /// `response.status`
    pub status: Option<String>,
    /// `response.service_tier`
    pub service_tier: Option<String>,
    /// Top-level `stream_id` (None on the default lane)
    pub stream_id: Option<String>,
    /// `response.usage` (None when missing, `null` or unparsable)
    pub usage: Option<Usage>,
    /// The `usage` object exactly as the provider sent it (when it is an object), so fields
    /// the relay does not know (`compute_units`, `cache_write_tokens`, …) reach the record.
    pub usage_raw: Option<Box<str>>,
}

/// The span of the value of the top-level member `name` of the complete JSON object `msg`
/// (strings with their quotes), as the tap reads it: the first occurrence wins, escaped keys
/// are decoded. `Ok(None)` when absent. Used to rewrite one value in place.
pub fn top_level_value(msg: &[u8], name: &str) -> Result<Option<std::ops::Range<usize>>, TapError> {
    let [span] = extract::members::<true, 1>(msg, [name.as_bytes()])?;
    Ok(span)
}

/// What the tap understood of one message (at most one per message).
#[derive(Debug, Clone, PartialEq)]
pub enum TapEvent {
    /// client `response.create`
    Create {
        /// Top-level `model`
        model: Option<String>,
        /// Top-level `stream_id`
        stream_id: Option<String>,
        /// Top-level `generate` (`Some(false)` = warm-up)
        generate: Option<bool>,
    },
    /// upstream `response.created`
    Created {
        /// `response.id`
        response_id: String,
        /// Top-level `stream_id`
        stream_id: Option<String>,
        /// `response.model`
        model: Option<String>,
    },
    /// upstream `response.completed` / `.incomplete` / `.failed` (boxed: every tapped chunk
    /// returns an `Option<TapEvent>`, and moving a 192-byte one cost a `memcpy` per frame:
    /// `memmove` 1.62% → 0.32% of the relay's CPU under the firehose when boxed)
    Terminal(Box<Terminal>),
    /// upstream `error` event
    Error {
        /// Top-level `status`
        status: Option<u16>,
        /// `error.code`
        code: Option<String>,
        /// Top-level `stream_id`
        stream_id: Option<String>,
    },
    /// upstream `response.*.delta` (only while `set_track_deltas(true)`)
    Delta {
        /// Top-level `stream_id`
        stream_id: Option<String>,
    },
    /// client `response.steer`: input queued onto a running response
    Steer,
    /// upstream `response.steer.accepted` / `.pending` / `.failed`: about one steer
    SteerAnswer {
        /// Which answer.
        outcome: SteerOutcome,
        /// `steer.id`: the submission's id (absent on a failure before one was allocated)
        steer_id: Option<String>,
        /// `steer.previous_response_id` (or a top-level `previous_response_id`): the
        /// response steered
        previous_response_id: Option<String>,
    },
}

/// What the upstream said of a `response.steer` (openai-python's `BetaResponseSteer*Event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SteerOutcome {
    /// `response.steer.accepted`: queued; the successor's `response.created` commits it
    /// (after a `steered` incomplete, or after a normal completion).
    Accepted,
    /// `response.steer.pending`: still queued after `response.completed`, waiting for the
    /// client's tool results — only an explicit `response.create` continues it.
    Pending,
    /// `response.steer.failed`: rejected, or (with the accepted steer's id) not committed.
    Failed,
}

/// Where the tap is within the current message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No byte of the current message seen yet.
    Start,
    /// Copying into `buf` and scanning it; `kind` once the type is known (and interesting).
    Assemble { kind: Option<Kind> },
    /// Nothing to learn from this message: ignore chunks until `fin`.
    Skip,
}

/// Per-direction tap over the payloads of text messages (see the module docs).
#[derive(Debug)]
pub struct Tap {
    dir: Direction,
    max_buffer: usize,
    track_deltas: bool,
    scalar: bool,
    state: State,
    buf: Vec<u8>,
    /// The slow-path scanner's state, allocated only for a message that needs it (the
    /// fast path reads a leading `"type"` and needs none) and freed at the message's end,
    /// so an idle session holds none.
    walker: Option<Box<Walker>>,
    /// `walker` was used in this message (reset it at the end).
    dirty: bool,
    overflows: u64,
    malformed: u64,
    last_error: Option<TapError>,
    budget: Option<std::rc::Rc<Budget>>,
    /// Bytes taken from `budget` for the current message (assembled and reserved ahead).
    charged: usize,
    /// Of `charged`, capacity reserved ahead that no byte fills yet.
    prepaid: usize,
}

impl Tap {
    /// `max_buffer`: most bytes the tap will copy for one message it must assemble (default from
    /// the relay: 64 MiB down / 16 MiB up). Over that: the message is skipped and counted
    /// (`overflows()`).
    pub fn new(dir: Direction, max_buffer: usize) -> Tap {
        Tap {
            dir,
            max_buffer,
            track_deltas: false,
            scalar: false,
            state: State::Start,
            buf: Vec::new(),
            walker: None,
            dirty: false,
            overflows: 0,
            malformed: 0,
            last_error: None,
            budget: None,
            charged: 0,
            prepaid: 0,
        }
    }

    /// Charge assembled bytes to a worker's [`Budget`]: a message that does not fit is
    /// skipped like one over `max_buffer` (counted in [`Tap::overflows`]).
    pub fn with_budget(mut self, budget: std::rc::Rc<Budget>) -> Tap {
        self.budget = Some(budget);
        self
    }

    /// The same tap with the scalar string skip instead of the SIMD one (for tests and benches).
    pub fn new_scalar(dir: Direction, max_buffer: usize) -> Tap {
        let mut t = Tap::new(dir, max_buffer);
        t.scalar = true;
        t
    }

    /// Feed the next chunk of the current text message's payload. `fin` = this chunk ends the
    /// message. Messages arrive as any sequence of chunks (split across frames of a fragmented
    /// message and across socket reads at arbitrary byte positions, including 0-length chunks).
    /// Returns the event when the message (or enough of it) is understood; at most one event
    /// per message.
    pub fn feed(&mut self, chunk: &[u8], fin: bool) -> Option<TapEvent> {
        self.feed_framed(chunk, fin, 0)
    }

    /// [`Tap::feed`] with `frame_rest`: how many payload bytes of the current frame follow
    /// `chunk` (0 when unknown). A message the tap must assemble then gets its buffer sized
    /// once (up to 256 KiB, charged to the budget) instead of grown by doubling.
    #[inline]
    pub fn feed_framed(&mut self, chunk: &[u8], fin: bool, frame_rest: u64) -> Option<TapEvent> {
        // The common case in as little code as possible, inlined into the frame walker: a
        // whole message whose leading type nothing records (every delta). At `Start` nothing
        // is held, charged or walked, so returning here leaves the tap exactly as
        // `end_message` would; any other state goes the full way (an interesting type is
        // read and classified once more there: a few messages per response). Measured:
        // `rdtsc` around the tap call in the relay under the firehose, ~35 -> ~15 cycles per
        // delta; `cargo bench --bench walker` (with the inlined searcher in `fast_type` and
        // `parse_header`), see loadtest/BENCH.md.
        if fin && self.state == State::Start {
            if let Some(ty) = fast_type(chunk) {
                // Nothing records this type: done with the message.
                classify_plain(self.dir, ty, self.track_deltas)?;
            }
        }
        self.feed_rest(chunk, fin, frame_rest)
    }

    /// [`Tap::feed_framed`] for every message the fast path does not settle.
    #[inline(never)]
    fn feed_rest(&mut self, chunk: &[u8], fin: bool, frame_rest: u64) -> Option<TapEvent> {
        let event = if self.scalar {
            self.step::<false>(chunk, fin, frame_rest)
        } else {
            self.step::<true>(chunk, fin, frame_rest)
        };
        if fin {
            self.end_message();
        }
        event
    }

    /// When true, also report `TapEvent::Delta` for upstream `*.delta` events (with their
    /// stream_id) — the meter turns this on only while it waits for a response's first output
    /// (TTFT), so deltas normally cost only the prefix check.
    pub fn set_track_deltas(&mut self, on: bool) {
        self.track_deltas = on;
    }

    /// Messages skipped because assembling them would exceed `max_buffer`.
    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    /// Messages of an interesting type (or not yet known type) that turned out malformed.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Why the most recent message that produced no event failed (malformed or overflow).
    pub fn last_error(&self) -> Option<&TapError> {
        self.last_error.as_ref()
    }

    fn step<const SIMD: bool>(
        &mut self,
        chunk: &[u8],
        fin: bool,
        frame_rest: u64,
    ) -> Option<TapEvent> {
        match self.state {
            State::Skip => None,
            State::Start if fin => self.whole::<SIMD>(chunk),
            State::Start if chunk.is_empty() => None,
            State::Start => {
                // Scan the first chunk in place; copy it only if the message may matter.
                let mut kind = None;
                if let Some(ty) = fast_type(chunk) {
                    kind = classify_plain(self.dir, ty, self.track_deltas);
                    if kind.is_none() {
                        self.state = State::Skip;
                        return None;
                    }
                }
                match self.walk::<SIMD>(chunk, &mut kind) {
                    None => {
                        self.state = State::Skip;
                        None
                    }
                    Some(_) => {
                        self.state = State::Assemble { kind };
                        self.keep_first(chunk, frame_rest);
                        None
                    }
                }
            }
            State::Assemble { mut kind } => {
                let chunk = self.skip_in_place::<SIMD>(chunk);
                if !self.append(chunk) {
                    return None;
                }
                let mut buf = std::mem::take(&mut self.buf);
                let walked = self.walk::<SIMD>(&buf, &mut kind);
                let event = match walked {
                    None => {
                        self.state = State::Skip;
                        None
                    }
                    Some(Walk::Open) if fin => self.fail(TapError::Truncated),
                    Some(Walk::Closed) if fin => self.finish::<SIMD>(kind, &buf),
                    Some(_) => {
                        self.state = State::Assemble { kind };
                        self.drop_skipped(&mut buf);
                        None
                    }
                };
                self.buf = buf;
                event
            }
        }
    }

    /// A message that arrived whole in one chunk: scanned in place, no copy.
    fn whole<const SIMD: bool>(&mut self, msg: &[u8]) -> Option<TapEvent> {
        let mut kind = None;
        if let Some(ty) = fast_type(msg) {
            kind = Some(classify_plain(self.dir, ty, self.track_deltas)?);
        }
        match self.walk::<SIMD>(msg, &mut kind)? {
            Walk::Open => self.fail(TapError::Truncated),
            Walk::Closed => self.finish::<SIMD>(kind, msg),
            Walk::Uninteresting => None, // mapped to None by `walk`
        }
    }

    /// Builds the event of a complete, closed message.
    fn finish<const SIMD: bool>(&mut self, kind: Option<Kind>, msg: &[u8]) -> Option<TapEvent> {
        let kind = kind?;
        let w = self.walker.as_deref()?;
        match build::<SIMD>(kind, msg, &w.fields, &w.resp) {
            Ok(event) => Some(event),
            Err(e) => self.fail(e),
        }
    }

    #[cold]
    fn fail(&mut self, e: TapError) -> Option<TapEvent> {
        self.malformed += 1;
        self.last_error = Some(e);
        None
    }

    /// Runs the message walker over `buf` (the message so far) as far as it goes; None when
    /// the rest of the message is to be ignored (uninteresting type, or malformed).
    fn walk<const SIMD: bool>(&mut self, buf: &[u8], kind: &mut Option<Kind>) -> Option<Walk> {
        self.dirty = true;
        let dir = self.dir;
        let w = self
            .walker
            .get_or_insert_with(|| Box::new(Walker::new(dir)));
        match w.walk::<SIMD>(buf, dir, self.track_deltas, kind) {
            Ok(Walk::Uninteresting) => None,
            Ok(w) => Some(w),
            Err(e) => {
                if kind.is_some() || w.fields.ty.is_none() {
                    self.fail(e);
                }
                None
            }
        }
    }

    fn end_message(&mut self) {
        self.release();
        self.state = State::Start;
        if self.dirty {
            self.walker = None;
            self.dirty = false;
        }
        if self.buf.capacity() > RETAIN_CAPACITY {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.release();
    }
}
