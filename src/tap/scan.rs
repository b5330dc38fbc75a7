//! A depth-aware scanner over the members of one JSON object, resumable over a growing buffer.
//!
//! The scanner walks the members (`"key": value`) of the object that starts the buffer and
//! reports each member's key and value spans. Nested objects/arrays are skipped by counting
//! brackets outside strings; strings, where the bulk of the bytes are, are skipped 64 bytes at
//! a time (`skip::skip_string_simd`: AVX-512, AVX2 or SSE2 compares, escapes resolved with bit
//! arithmetic; `memchr2` off x86_64), or with the scalar twin `skip_string_scalar` (same
//! contract, used by the tests and benches for comparison).
//!
//! A message scanner can *descend* into the top-level `"response"` object: it hands that
//! value to a nested scanner ([`Step::Enter`]) so a terminal event's members are found in the
//! same single pass that walks the message.
//!
//! It is *structural*, not a validator: bracket kinds are not matched inside nested values and
//! scalars are delimited, not checked. Callers decode the few spans they care about properly.
//!
//! Resumable: when the buffer ends mid-token the scanner returns [`Step::More`] and keeps its
//! state; call [`Scanner::next`] again with the same buffer grown by the next chunk (all bytes
//! from the start of the message). Work already done is not repeated, except a trailing
//! backslash or an unterminated scalar, which are re-read from their start.

use std::ops::Range;

pub(crate) use super::skip::{is_ws, skip_string, Skip};
use super::TapError;

/// Where the scanner is inside the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the opening `{` (leading whitespace allowed).
    Open,
    /// After `{`: a key or `}`.
    FirstKey,
    /// After `,`: a key.
    Key,
    /// Inside a key string.
    InKey,
    /// After a key: `:`.
    Colon,
    /// After `:`: the start of a value.
    Value,
    /// Inside a string value.
    InString,
    /// Inside a nested object/array value.
    InNested,
    /// Inside a number or literal.
    InScalar,
    /// After a value: `,` or `}`.
    Next,
    /// After the closing `}`: only whitespace may follow (nothing is checked when nested).
    Done,
    /// Handed the value (the `response` object) to an inner scanner; waiting for [`Scanner::exit`].
    Entered,
}

/// One result of [`Scanner::next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// A complete member: the key span (with quotes) and the value span (strings with quotes).
    Member {
        /// Span of the key including its quotes.
        key: Range<usize>,
        /// Span of the value (strings include their quotes).
        value: Range<usize>,
    },
    /// The buffer ends before the next member is complete.
    More,
    /// The object is closed and everything after it so far is whitespace (nested scanner:
    /// the object is closed; its end is [`Scanner::pos`]).
    End,
    /// The value of the top-level `"response"` key is an object starting at `at`: walk it with
    /// [`Scanner::nested_at`], then call [`Scanner::exit`] with its end.
    Enter {
        /// Offset of the `{`.
        at: usize,
    },
}

/// Resumable member walker over one JSON object (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Scanner {
    pos: usize,
    phase: Phase,
    key_start: usize,
    key_end: usize,
    value_start: usize,
    depth: usize,
    in_str: bool,
    /// Report [`Step::Enter`] for the first `"response": {` member.
    descend: bool,
    /// Walking an object nested in the message: stop at its `}`.
    nested: bool,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    /// A scanner positioned at the start of a message.
    pub(crate) const fn new() -> Self {
        Scanner {
            pos: 0,
            phase: Phase::Open,
            key_start: 0,
            key_end: 0,
            value_start: 0,
            depth: 0,
            in_str: false,
            descend: false,
            nested: false,
        }
    }

    /// A message scanner that reports [`Step::Enter`] for the first `"response"` object.
    pub(crate) const fn descending() -> Self {
        Scanner {
            descend: true,
            ..Scanner::new()
        }
    }

    /// A scanner for the object that starts at `at` inside a message.
    pub(crate) const fn nested_at(at: usize) -> Self {
        Scanner {
            pos: at,
            nested: true,
            ..Scanner::new()
        }
    }

    /// Offset of the next byte to examine (after [`Step::End`]: just past the `}`).
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Resumes after [`Step::Enter`]: the entered object ended just before `end`; returns the
    /// member (key, whole object span).
    pub(crate) fn exit(&mut self, end: usize) -> Step {
        self.pos = end;
        self.member()
    }

    /// While a string or nested value is being skipped: the key span of its member and where
    /// the value starts. The value's bytes up to [`Scanner::pos`] are needed by nothing but
    /// this skip when the caller does not record that key.
    pub(crate) fn skipping(&self) -> Option<(Range<usize>, usize)> {
        matches!(self.phase, Phase::InString | Phase::InNested)
            .then(|| (self.key_start..self.key_end, self.value_start))
    }

    /// Moves the next byte to examine to `pos` (the caller moved the buffer's bytes: see
    /// [`Scanner::skipping`] and [`Scanner::skip_over`]).
    pub(crate) fn set_pos(&mut self, pos: usize) {
        self.pos = pos;
    }

    /// Continues the value being skipped (see [`Scanner::skipping`]) over `chunk`, the bytes
    /// that follow [`Scanner::pos`], without them being in the buffer. `Ok(n)`: the value
    /// ended after `n` bytes of `chunk`; its member is consumed and not reported (so only
    /// for a member the caller does not record). `Err(at)`: it did not end; `chunk[at..]`
    /// (a trailing backslash run, or nothing) must be read again. Either way the caller
    /// sets the position where those bytes land with [`Scanner::set_pos`].
    pub(crate) fn skip_over<const SIMD: bool>(&mut self, chunk: &[u8]) -> Result<usize, usize> {
        self.pos = 0;
        match self.phase {
            Phase::InString => match skip_string::<SIMD>(chunk, 0) {
                Skip::Done(end) => {
                    self.phase = Phase::Next;
                    Ok(end)
                }
                Skip::More(at) => Err(at),
            },
            Phase::InNested => {
                if self.skip_nested::<SIMD>(chunk) {
                    self.phase = Phase::Next;
                    Ok(self.pos)
                } else {
                    Err(self.pos)
                }
            }
            // Not skipping a value: nothing of `chunk` is consumed.
            _ => Err(0),
        }
    }

    /// Skips whitespace from `pos`; the next byte, or None at the end of the buffer.
    #[inline]
    fn peek_non_ws(&mut self, buf: &[u8]) -> Option<u8> {
        while let Some(&b) = buf.get(self.pos) {
            if !is_ws(b) {
                return Some(b);
            }
            self.pos += 1;
        }
        None
    }

    /// The next member of the object in `buf` (`buf` = every byte of the message so far).
    pub(crate) fn next<const SIMD: bool>(&mut self, buf: &[u8]) -> Result<Step, TapError> {
        loop {
            match self.phase {
                Phase::Open => match self.peek_non_ws(buf) {
                    None => return Ok(Step::More),
                    Some(b'{') => {
                        self.pos += 1;
                        self.phase = Phase::FirstKey;
                    }
                    Some(_) => return Err(TapError::NotAnObject { at: self.pos }),
                },
                Phase::FirstKey | Phase::Key => match self.peek_non_ws(buf) {
                    None => return Ok(Step::More),
                    Some(b'"') => {
                        self.key_start = self.pos;
                        self.pos += 1;
                        self.phase = Phase::InKey;
                    }
                    Some(b'}') if self.phase == Phase::FirstKey => {
                        self.pos += 1;
                        self.phase = Phase::Done;
                    }
                    Some(byte) => return Err(self.unexpected(byte, "an object key")),
                },
                Phase::InKey => match skip_string::<SIMD>(buf, self.pos) {
                    Skip::Done(end) => {
                        self.key_end = end;
                        self.pos = end;
                        self.phase = Phase::Colon;
                    }
                    Skip::More(at) => {
                        self.pos = at;
                        return Ok(Step::More);
                    }
                },
                Phase::Colon => match self.peek_non_ws(buf) {
                    None => return Ok(Step::More),
                    Some(b':') => {
                        self.pos += 1;
                        self.phase = Phase::Value;
                    }
                    Some(byte) => return Err(self.unexpected(byte, "`:`")),
                },
                Phase::Value => {
                    let Some(b) = self.peek_non_ws(buf) else {
                        return Ok(Step::More);
                    };
                    self.value_start = self.pos;
                    match b {
                        b'"' => {
                            self.pos += 1;
                            self.phase = Phase::InString;
                        }
                        b'{' if self.descend && self.key_is_response(buf) => {
                            self.descend = false;
                            self.phase = Phase::Entered;
                            return Ok(Step::Enter { at: self.pos });
                        }
                        b'{' | b'[' => {
                            self.pos += 1;
                            self.depth = 1;
                            self.in_str = false;
                            self.phase = Phase::InNested;
                        }
                        b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => self.phase = Phase::InScalar,
                        byte => return Err(self.unexpected(byte, "a value")),
                    }
                }
                Phase::InString => match skip_string::<SIMD>(buf, self.pos) {
                    Skip::Done(end) => {
                        self.pos = end;
                        return Ok(self.member());
                    }
                    Skip::More(at) => {
                        self.pos = at;
                        return Ok(Step::More);
                    }
                },
                Phase::InNested => {
                    if self.skip_nested::<SIMD>(buf) {
                        return Ok(self.member());
                    }
                    return Ok(Step::More);
                }
                Phase::InScalar => {
                    while let Some(&b) = buf.get(self.pos) {
                        if is_ws(b) || matches!(b, b',' | b'}' | b']') {
                            return Ok(self.member());
                        }
                        self.pos += 1;
                    }
                    return Ok(Step::More);
                }
                Phase::Next => match self.peek_non_ws(buf) {
                    None => return Ok(Step::More),
                    Some(b',') => {
                        self.pos += 1;
                        self.phase = Phase::Key;
                    }
                    Some(b'}') => {
                        self.pos += 1;
                        self.phase = Phase::Done;
                    }
                    Some(byte) => return Err(self.unexpected(byte, "`,` or `}`")),
                },
                Phase::Done if self.nested => return Ok(Step::End),
                Phase::Entered => {
                    return Ok(Step::Enter {
                        at: self.value_start,
                    })
                }
                Phase::Done => {
                    return match self.peek_non_ws(buf) {
                        None => Ok(Step::End),
                        Some(_) => Err(TapError::Trailing { at: self.pos }),
                    };
                }
            }
        }
    }

    fn key_is_response(&self, buf: &[u8]) -> bool {
        buf.get(self.key_start..self.key_end) == Some(b"\"response\"")
    }

    fn member(&mut self) -> Step {
        self.phase = Phase::Next;
        Step::Member {
            key: self.key_start..self.key_end,
            value: self.value_start..self.pos,
        }
    }

    fn unexpected(&self, byte: u8, expected: &'static str) -> TapError {
        TapError::Unexpected {
            at: self.pos,
            byte,
            expected,
        }
    }

    /// Advances through a nested value; true when its closing bracket was consumed.
    #[inline]
    fn skip_nested<const SIMD: bool>(&mut self, buf: &[u8]) -> bool {
        let mut i = self.pos;
        loop {
            if self.in_str {
                match skip_string::<SIMD>(buf, i) {
                    Skip::Done(end) => {
                        i = end;
                        self.in_str = false;
                    }
                    Skip::More(at) => {
                        self.pos = at;
                        return false;
                    }
                }
            }
            loop {
                let Some(&b) = buf.get(i) else {
                    self.pos = i;
                    return false;
                };
                i += 1;
                match b {
                    b'"' => {
                        self.in_str = true;
                        break;
                    }
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth -= 1;
                        if self.depth == 0 {
                            self.pos = i;
                            return true;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The bytes of a key or string span without its quotes (empty if the span is not a string).
#[inline]
pub(crate) fn unquote(span: &[u8]) -> &[u8] {
    match span {
        [b'"', inner @ .., b'"'] => inner,
        _ => &[],
    }
}

/// Decodes a JSON string span (with quotes) that contains escapes; None if invalid.
pub(crate) fn decode_escaped(span: &[u8]) -> Option<String> {
    serde_json::from_slice::<String>(span).ok()
}
