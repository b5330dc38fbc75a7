//! One resumable pass over a message: top-level members, and (upstream) the members of the
//! top-level `response` object, recorded as spans while the type is looked for.

use std::ops::Range;

use super::extract::{classify, may_be_one_of, Kind, RespFields, TopFields, RESP_NAMES, TOP_NAMES};
use super::scan::{Scanner, Step};
use super::{Direction, TapError};

/// How far a walk over the available bytes got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Walk {
    /// The top-level type is one the tap does not report: ignore the rest of the message.
    Uninteresting,
    /// More bytes needed.
    Open,
    /// The object is closed (only whitespace after it so far).
    Closed,
}

/// The state of one pass over one message (reset between messages).
#[derive(Debug, Clone)]
pub(crate) struct Walker {
    top: Scanner,
    inner: Scanner,
    in_response: bool,
    /// Spans of the top-level members the tap may need.
    pub(crate) fields: TopFields,
    /// Spans of the members of the `response` object (when it was walked in this pass).
    pub(crate) resp: RespFields,
}

impl Walker {
    /// A walker at the start of a message travelling `dir`.
    pub(crate) fn new(dir: Direction) -> Self {
        Walker {
            // Only upstream events carry a `response` object worth descending into.
            top: match dir {
                Direction::UpstreamToClient => Scanner::descending(),
                Direction::ClientToUpstream => Scanner::new(),
            },
            inner: Scanner::new(),
            in_response: false,
            fields: TopFields::default(),
            resp: RespFields::default(),
        }
    }

    /// The scanner the walk is in and the names recorded there: the `response` object's
    /// while inside it.
    fn active(&self) -> (&Scanner, &'static [&'static [u8]]) {
        if self.in_response {
            (&self.inner, &RESP_NAMES)
        } else {
            (&self.top, &TOP_NAMES)
        }
    }

    /// [`Walker::active`]'s scanner, to move.
    fn active_mut(&mut self) -> &mut Scanner {
        if self.in_response {
            &mut self.inner
        } else {
            &mut self.top
        }
    }

    /// When the walk stopped inside the value of a member the tap does not record (a string,
    /// or an object or array such as a terminal event's `output`): that value's bytes in
    /// `buf`, which nothing needs again. The caller may drop them and [`Walker::rebase`].
    pub(crate) fn droppable(&self, buf: &[u8]) -> Option<Range<usize>> {
        let (scan, names) = self.active();
        let (key, start) = scan.skipping()?;
        let raw = buf.get(key).map(super::scan::unquote)?;
        (!may_be_one_of(raw, names)).then(|| start..scan.pos())
    }

    /// The bytes from `pos` on moved to `pos`'s new place `to` (after [`Walker::droppable`]
    /// bytes were dropped).
    pub(crate) fn rebase(&mut self, to: usize) {
        self.active_mut().set_pos(to);
    }

    /// Continues a [`Walker::droppable`] value over `chunk` without it being in the buffer;
    /// the bytes of `chunk` the walk still needs, `chunk[n..]`, must be appended where the
    /// buffer ends now, at `end`: `Ok(n)` when the value ended, `Err(n)` when it goes on.
    pub(crate) fn skip_over<const SIMD: bool>(
        &mut self,
        chunk: &[u8],
        end: usize,
    ) -> Result<usize, usize> {
        let scan = self.active_mut();
        let r = scan.skip_over::<SIMD>(chunk);
        scan.set_pos(end);
        r
    }

    /// Walks `buf` (every byte of the message so far) as far as it goes. Classifies the type
    /// when its member completes, unless `kind` is already known; stops early when the type
    /// is uninteresting.
    pub(crate) fn walk<const SIMD: bool>(
        &mut self,
        buf: &[u8],
        dir: Direction,
        track_deltas: bool,
        kind: &mut Option<Kind>,
    ) -> Result<Walk, TapError> {
        loop {
            let step = if self.in_response {
                match self.inner.next::<SIMD>(buf)? {
                    Step::Member { key, value } => {
                        self.resp.record(buf, key, value);
                        continue;
                    }
                    Step::End => {
                        self.in_response = false;
                        self.resp.walked = true;
                        self.top.exit(self.inner.pos())
                    }
                    Step::More => return Ok(Walk::Open),
                    Step::Enter { .. } => return Err(TapError::Truncated),
                }
            } else {
                self.top.next::<SIMD>(buf)?
            };
            match step {
                Step::Member { key, value } => {
                    let Some(ty) = self.fields.record(buf, key, value) else {
                        continue;
                    };
                    if kind.is_none() {
                        match classify(dir, ty, track_deltas) {
                            Some(k) => *kind = Some(k),
                            None => return Ok(Walk::Uninteresting),
                        }
                    }
                }
                Step::Enter { at } => {
                    self.inner = Scanner::nested_at(at);
                    self.in_response = true;
                }
                Step::More => return Ok(Walk::Open),
                Step::End => return Ok(Walk::Closed),
            }
        }
    }
}
