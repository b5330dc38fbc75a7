//! The close rules of `LIFECYCLE.md`, as pure functions: an [`Event`] that ended something
//! (a side's input, a failed or stalled write, a deadline) and the [`Facts`] of the session
//! go in; the [`Actions`] the session must take come out. No sockets, no clocks — every row
//! of the table is a unit test below.

use crate::flow::Side;
use crate::metering::EndReason;
use crate::ws::close::codes;

/// How one side's input ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpEnd {
    /// The side sent a close frame. `held`: the relay kept it back instead of forwarding it
    /// (a client close while responses are open — the relay answers it itself).
    PeerClose {
        /// The close code, if the frame had a payload.
        code: Option<u16>,
        /// Whether the relay kept the close frame back.
        held: bool,
    },
    /// The TCP (or TLS) stream ended without a close frame.
    Eof,
    /// Reading failed (e.g. a reset).
    ReadError,
    /// The side broke the protocol (or a limit): it is owed a close with `code`.
    Protocol {
        /// Close code (1002, 1007, 1008, 1009, 1013).
        code: u16,
        /// Close reason text.
        reason: &'static str,
        /// The offending frame began in an earlier read: part of it already went to the
        /// other leg, which is therefore in the middle of a frame.
        mid_frame: bool,
    },
}

/// A deadline of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// `--idle-timeout` without a frame while no response is open.
    Idle,
    /// A response open longer than `--response-timeout`.
    Response,
    /// `--orphan-drain-timeout` since the client left with responses open.
    OrphanDrain,
    /// The peer did not answer a forwarded close within the close timeout.
    CloseHandshake,
    /// `--max-connection-age` reached (with no response open, or `--drain-timeout` later).
    MaxAge,
    /// The relay is stopping: no response open, or the drain deadline passed.
    Shutdown,
}

/// Something that may end (part of) a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A side's input ended.
    Ended(Side, PumpEnd),
    /// Writing to a side failed: its peer is gone.
    WriteFailed(Side),
    /// A write to a side made no progress for `--slow-consumer-timeout`.
    Stalled(Side),
    /// A deadline passed.
    Deadline(Deadline),
    /// The client is gone and the last open response just ended (orphan drain done).
    Drained,
    /// The session's code panicked (the panic was contained).
    Panicked,
}

/// Who or what ended a session (the `closed_by` field of its log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedBy {
    /// The client sent a close frame.
    Client,
    /// The client's connection ended without a close frame, or writing to it failed.
    ClientVanished,
    /// The client broke the protocol or a limit.
    ClientProtocolError,
    /// The client stopped reading for `--slow-consumer-timeout`.
    ClientStalled,
    /// The upstream sent a close frame.
    Upstream,
    /// The upstream connection ended without a close frame, or writing to it failed.
    UpstreamVanished,
    /// The upstream broke the protocol or a limit.
    UpstreamProtocolError,
    /// The upstream stopped reading for `--slow-consumer-timeout`.
    UpstreamStalled,
    /// `--idle-timeout`.
    IdleTimeout,
    /// `--response-timeout`.
    ResponseTimeout,
    /// `--max-connection-age`.
    MaxConnectionAge,
    /// Graceful shutdown.
    RelayShutdown,
    /// A contained panic.
    RelayError,
    /// `--tunnel`: one side ended the byte tunnel.
    TunnelEnded,
}

impl ClosedBy {
    /// Log value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ClosedBy::Client => "client",
            ClosedBy::ClientVanished => "client_vanished",
            ClosedBy::ClientProtocolError => "client_protocol_error",
            ClosedBy::ClientStalled => "client_stalled",
            ClosedBy::Upstream => "upstream",
            ClosedBy::UpstreamVanished => "upstream_vanished",
            ClosedBy::UpstreamProtocolError => "upstream_protocol_error",
            ClosedBy::UpstreamStalled => "upstream_stalled",
            ClosedBy::IdleTimeout => "idle_timeout",
            ClosedBy::ResponseTimeout => "response_timeout",
            ClosedBy::MaxConnectionAge => "max_connection_age",
            ClosedBy::RelayShutdown => "relay_shutdown",
            ClosedBy::RelayError => "relay_error",
            ClosedBy::TunnelEnded => "tunnel",
        }
    }

    /// The status of records for responses still open when a session closed this way
    /// (unless an event set one explicitly).
    pub const fn end_reason(self) -> EndReason {
        match self {
            ClosedBy::Upstream
            | ClosedBy::UpstreamVanished
            | ClosedBy::UpstreamProtocolError
            | ClosedBy::UpstreamStalled => EndReason::UpstreamDisconnected,
            ClosedBy::RelayShutdown | ClosedBy::MaxConnectionAge => EndReason::RelayShutdown,
            ClosedBy::ResponseTimeout => EndReason::ResponseTimeout,
            ClosedBy::RelayError => EndReason::RelayError,
            _ => EndReason::ClientDisconnected,
        }
    }
}

/// A relay-originated `error` event (the protocol's shape, `type: "relay_error"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayError {
    /// The upstream connection ended without a close frame.
    UpstreamDisconnected,
    /// The upstream stopped reading.
    UpstreamUnresponsive,
    /// A response ran longer than `--response-timeout`.
    ResponseTimeout,
}

impl RelayError {
    /// `error.code`.
    pub const fn code(self) -> &'static str {
        match self {
            RelayError::UpstreamDisconnected => "upstream_disconnected",
            RelayError::UpstreamUnresponsive => "upstream_unresponsive",
            RelayError::ResponseTimeout => "response_timeout",
        }
    }

    /// `error.message`.
    pub const fn message(self) -> &'static str {
        match self {
            RelayError::UpstreamDisconnected => {
                "the upstream connection ended without a close frame"
            }
            RelayError::UpstreamUnresponsive => {
                "the upstream stopped reading; the relay closed the session"
            }
            RelayError::ResponseTimeout => {
                "the response ran longer than the relay allows (--response-timeout)"
            }
        }
    }
}

/// What the relay writes to a side before it is done with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing {
    /// A close frame.
    Close {
        /// Code.
        code: u16,
        /// Reason text.
        reason: &'static str,
    },
    /// An `error` event, then a close frame.
    ErrorThenClose {
        /// The error event.
        error: RelayError,
        /// Close code.
        code: u16,
        /// Reason text.
        reason: &'static str,
    },
}

/// What the rules need to know about the session when an event arrives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// Responses created (or requested) and not yet ended, and steering successors still
    /// to come (`SessionMeter::awaiting`).
    pub awaiting: usize,
    /// A close was forwarded and its answer is awaited.
    pub closing: bool,
    /// The client is gone; upstream is read for usage (orphan drain).
    pub draining: bool,
    /// Whether the worker has a free orphan-drain slot.
    pub may_drain: bool,
    /// Per side (client, upstream): the relay no longer writes to it.
    pub dead: [bool; 2],
}

/// What the session must do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actions {
    /// Per side: write this when the leg is at a frame boundary (a leg left in the middle
    /// of a forwarded frame is shut down without it); then the relay is done writing to
    /// that side.
    pub send: [Option<Outgoing>; 2],
    /// Per side: stop writing to it at once and shut its socket down (no close frame).
    pub kill: [bool; 2],
    /// Per side: the relay received its close (never send it one).
    pub close_received: [bool; 2],
    /// Per side: stop reading it.
    pub stop_reading: [bool; 2],
    /// Keep reading upstream for usage, discarding what would go to the client.
    pub start_drain: bool,
    /// A close was forwarded: start the close-handshake deadline.
    pub start_closing: bool,
    /// Who ended the session (kept only if none was set before).
    pub closed_by: Option<ClosedBy>,
    /// Status for records of responses still open (overrides the default of `closed_by`).
    pub end_reason: Option<EndReason>,
    /// Stop everything now; sides without a close get 1001 (going away).
    pub end: bool,
}

impl Actions {
    fn by(closed_by: ClosedBy) -> Actions {
        Actions {
            closed_by: Some(closed_by),
            ..Actions::default()
        }
    }
}

/// The rules: what `event` makes the session do, given `facts`.
pub fn on_event(facts: &Facts, event: Event) -> Actions {
    match event {
        Event::Ended(Side::Client, end) => client_ended(facts, end),
        Event::Ended(Side::Upstream, end) => upstream_ended(facts, end),
        Event::WriteFailed(Side::Client) => {
            let mut a = Actions::by(ClosedBy::ClientVanished);
            a.kill[0] = true;
            client_gone(facts, a)
        }
        Event::Stalled(Side::Client) => {
            // The client stopped reading: its socket is shut down; open responses are still
            // read from upstream (orphan drain) so their records carry the real usage.
            let mut a = Actions::by(ClosedBy::ClientStalled);
            a.kill[0] = true;
            client_gone(facts, a)
        }
        Event::WriteFailed(Side::Upstream) => upstream_lost(
            ClosedBy::UpstreamVanished,
            RelayError::UpstreamDisconnected,
            "upstream disconnected",
        ),
        Event::Stalled(Side::Upstream) => upstream_lost(
            ClosedBy::UpstreamStalled,
            RelayError::UpstreamUnresponsive,
            "upstream unresponsive",
        ),
        Event::Drained => Actions {
            end: true,
            ..Actions::default()
        },
        Event::Deadline(d) => deadline(facts, d),
        Event::Panicked => {
            let close = Some(Outgoing::Close {
                code: codes::INTERNAL,
                reason: "relay error",
            });
            Actions {
                send: [close, close],
                closed_by: Some(ClosedBy::RelayError),
                end_reason: Some(EndReason::RelayError),
                end: true,
                ..Actions::default()
            }
        }
    }
}

fn client_ended(facts: &Facts, end: PumpEnd) -> Actions {
    match end {
        PumpEnd::PeerClose { held: false, .. } => {
            // Forwarded upstream; upstream's answering close comes back through its pump —
            // unless this close *is* the answer to upstream's (`closing`): the handshake is
            // complete and the session ends (the server side closes TCP first, RFC 6455 §7.1.1).
            let mut a = Actions::by(ClosedBy::Client);
            a.close_received[0] = true;
            a.stop_reading[0] = true;
            if facts.dead[1] || facts.closing {
                a.end = true;
            } else {
                a.start_closing = true;
            }
            a
        }
        PumpEnd::PeerClose { code, held: true } => {
            // Responses are open: answer the client's close ourselves, keep upstream for usage.
            let mut a = Actions::by(ClosedBy::Client);
            a.close_received[0] = true;
            a.send[0] = Some(Outgoing::Close {
                code: code.unwrap_or(codes::NORMAL),
                reason: "",
            });
            client_gone(facts, a)
        }
        PumpEnd::Eof | PumpEnd::ReadError => {
            let mut a = Actions::by(ClosedBy::ClientVanished);
            a.kill[0] = true;
            client_gone(facts, a)
        }
        PumpEnd::Protocol { code, reason, .. } => {
            // The client is owed a close with the code (written only at a frame boundary
            // of the client leg; a leg in the middle of a frame is shut down instead).
            let mut a = Actions::by(ClosedBy::ClientProtocolError);
            a.send[0] = Some(Outgoing::Close { code, reason });
            client_gone(facts, a)
        }
    }
}

/// The client is gone (or done): drain upstream while responses are open and a slot is
/// free, otherwise end the session.
fn client_gone(facts: &Facts, mut a: Actions) -> Actions {
    a.stop_reading[0] = true;
    if facts.draining {
        return a;
    }
    if facts.awaiting > 0 && facts.may_drain {
        a.start_drain = true;
        a.end_reason = Some(EndReason::ClientDisconnected);
    } else {
        a.end = true;
    }
    a
}

fn upstream_ended(facts: &Facts, end: PumpEnd) -> Actions {
    match end {
        PumpEnd::PeerClose { .. } => {
            // Forwarded to the client by the upstream pump.
            let mut a = Actions::by(ClosedBy::Upstream);
            a.close_received[1] = true;
            a.stop_reading[1] = true;
            if facts.awaiting > 0 {
                a.end_reason = Some(EndReason::UpstreamDisconnected);
            }
            if facts.closing || facts.draining || facts.dead[0] {
                a.end = true;
            } else {
                a.start_closing = true;
            }
            a
        }
        PumpEnd::Eof | PumpEnd::ReadError => upstream_lost(
            ClosedBy::UpstreamVanished,
            RelayError::UpstreamDisconnected,
            "upstream disconnected",
        ),
        PumpEnd::Protocol { code, reason, .. } => {
            let mut a = Actions::by(ClosedBy::UpstreamProtocolError);
            a.end_reason = Some(EndReason::UpstreamDisconnected);
            a.send[1] = Some(Outgoing::Close { code, reason });
            // A message over the limit is "too big" for the client too (Codex falls back to
            // HTTP on 1009); any other upstream violation is a bad gateway.
            a.send[0] = Some(if code == codes::TOO_BIG {
                Outgoing::Close {
                    code: codes::TOO_BIG,
                    reason: "upstream message too big",
                }
            } else {
                Outgoing::Close {
                    code: codes::BAD_GATEWAY,
                    reason: "upstream protocol error",
                }
            });
            a.end = true;
            a
        }
    }
}

/// Upstream is gone or stuck: the client is told with an error event and 1011.
fn upstream_lost(by: ClosedBy, error: RelayError, reason: &'static str) -> Actions {
    let mut a = Actions::by(by);
    a.kill[1] = true;
    a.end_reason = Some(EndReason::UpstreamDisconnected);
    a.send[0] = Some(Outgoing::ErrorThenClose {
        error,
        code: codes::INTERNAL,
        reason,
    });
    a.end = true;
    a
}

fn deadline(facts: &Facts, d: Deadline) -> Actions {
    let mut a = Actions {
        end: true,
        ..Actions::default()
    };
    match d {
        Deadline::Idle => a.closed_by = Some(ClosedBy::IdleTimeout),
        Deadline::Response => {
            a.closed_by = Some(ClosedBy::ResponseTimeout);
            a.end_reason = Some(EndReason::ResponseTimeout);
            a.send[0] = Some(Outgoing::ErrorThenClose {
                error: RelayError::ResponseTimeout,
                code: codes::GOING_AWAY,
                reason: "response timeout",
            });
        }
        // The records keep the reason set when the drain started (client_disconnected).
        Deadline::OrphanDrain | Deadline::CloseHandshake => {}
        Deadline::MaxAge => {
            a.closed_by = Some(ClosedBy::MaxConnectionAge);
            if facts.awaiting > 0 {
                a.end_reason = Some(EndReason::RelayShutdown);
            }
        }
        Deadline::Shutdown => {
            a.closed_by = Some(ClosedBy::RelayShutdown);
            if facts.awaiting > 0 && !facts.draining {
                a.end_reason = Some(EndReason::RelayShutdown);
            }
        }
    }
    a
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
