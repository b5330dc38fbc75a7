//! Fault modes of the mock upstream, and how they are named on the CLI and in a
//! `response.create`'s `metadata`.

use std::str::FromStr;

use serde_json::Value;

/// A misbehaviour of the mock upstream.
///
/// Handshake and framing faults (`BadAccept`, `OfferExtension`, `MaskedFrames`,
/// `Fragmented`) apply to the whole connection; the others apply to each response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Send `after_deltas` deltas (text deltas, or a function call's argument deltas),
    /// then close the TCP connection (FIN) without a WebSocket close frame.
    AbortFin {
        /// Deltas written before the FIN.
        after_deltas: usize,
    },
    /// Send `after_deltas` deltas, then reset the connection (SO_LINGER 0 → RST).
    AbortRst {
        /// Deltas written before the RST.
        after_deltas: usize,
    },
    /// Answer the upgrade with a wrong `Sec-WebSocket-Accept`.
    BadAccept,
    /// Select `permessage-deflate` in the 101 although the client did not offer it.
    OfferExtension,
    /// Send every data frame masked (a protocol violation for a server).
    MaskedFrames,
    /// Split every server message into `pieces` frames (text/binary + continuations).
    Fragmented {
        /// Number of frames per message (clamped to the payload length).
        pieces: usize,
    },
    /// Pad the terminal event's echoed `instructions` with `bytes` bytes.
    HugeTerminal {
        /// Padding size in bytes.
        bytes: usize,
    },
    /// Accept the `response.create` and never answer it.
    Stall,
    /// After `response.created` and `response.in_progress`, send an `error` event
    /// with `error_code`, then a close frame with `code`.
    CloseAfterError {
        /// WebSocket close code.
        code: u16,
        /// `error.code` of the error event.
        error_code: String,
    },
}

/// Defaults used when a fault is named without arguments.
pub const DEFAULT_AFTER_DELTAS: usize = 2;
/// Default `Fragmented` piece count.
pub const DEFAULT_PIECES: usize = 3;
/// Default `HugeTerminal` size (4 MiB).
pub const DEFAULT_HUGE_BYTES: usize = 4 << 20;
/// Default `CloseAfterError` close code.
pub const DEFAULT_CLOSE_CODE: u16 = 1011;
/// Default `CloseAfterError` error code.
pub const DEFAULT_ERROR_CODE: &str = "server_error";

/// A fault name or argument that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FaultParseError {
    /// The name is not one of the fault modes.
    #[error("unknown fault {name:?} (expected abort-fin[:N], abort-rst[:N], bad-accept, offer-extension, masked-frames, fragmented[:PIECES], huge-terminal[:BYTES], stall, close-after-error[:CODE[:ERROR_CODE]])")]
    Unknown {
        /// The name given.
        name: String,
    },
    /// An argument is not a valid number for that fault.
    #[error("bad argument {arg:?} for fault {fault}")]
    BadArgument {
        /// The fault whose argument failed.
        fault: &'static str,
        /// The argument given.
        arg: String,
    },
}

fn num<T: FromStr>(
    fault: &'static str,
    arg: Option<&str>,
    default: T,
) -> Result<T, FaultParseError> {
    match arg {
        None => Ok(default),
        Some(a) => a.trim().parse().map_err(|_| FaultParseError::BadArgument {
            fault,
            arg: a.to_string(),
        }),
    }
}

impl FromStr for Fault {
    type Err = FaultParseError;

    /// Parses `name[:arg[:arg]]`; `-` and `_` are interchangeable in the name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.splitn(3, ':');
        let name = parts.next().unwrap_or_default().trim().replace('_', "-");
        let (a1, a2) = (parts.next(), parts.next());
        Ok(match name.as_str() {
            "abort-fin" => Fault::AbortFin {
                after_deltas: num("abort-fin", a1, DEFAULT_AFTER_DELTAS)?,
            },
            "abort-rst" => Fault::AbortRst {
                after_deltas: num("abort-rst", a1, DEFAULT_AFTER_DELTAS)?,
            },
            "bad-accept" => Fault::BadAccept,
            "offer-extension" => Fault::OfferExtension,
            "masked-frames" => Fault::MaskedFrames,
            "fragmented" => Fault::Fragmented {
                pieces: num("fragmented", a1, DEFAULT_PIECES)?.max(1),
            },
            "huge-terminal" => Fault::HugeTerminal {
                bytes: num("huge-terminal", a1, DEFAULT_HUGE_BYTES)?,
            },
            "stall" => Fault::Stall,
            "close-after-error" => Fault::CloseAfterError {
                code: num("close-after-error", a1, DEFAULT_CLOSE_CODE)?,
                error_code: a2.unwrap_or(DEFAULT_ERROR_CODE).to_string(),
            },
            _ => return Err(FaultParseError::Unknown { name }),
        })
    }
}

fn meta_num(meta: &Value, key: &str) -> Option<u64> {
    match meta.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Fault {
    /// The per-request override in a `response.create`'s `metadata`:
    /// `mock_fault` (`abort_fin`, `abort_rst`, `stall`, `huge_terminal`,
    /// `close_after_error`, `masked_frames`, `fragmented`, or `none`), with optional
    /// `mock_after_deltas`, `mock_bytes`, `mock_pieces`, `mock_close_code`,
    /// `mock_error_code`. Numbers may be JSON numbers or strings.
    /// Returns `Some(None)` for `"none"` (explicitly no fault).
    pub fn from_metadata(create: &Value) -> Option<Option<Fault>> {
        let meta = create.get("metadata")?;
        let name = meta.get("mock_fault")?.as_str()?;
        if name == "none" {
            return Some(None);
        }
        let mut f: Fault = name.parse().ok()?;
        let n = |k: &str| meta_num(meta, k).and_then(|v| usize::try_from(v).ok());
        match &mut f {
            Fault::AbortFin { after_deltas } | Fault::AbortRst { after_deltas } => {
                *after_deltas = n("mock_after_deltas").unwrap_or(*after_deltas);
            }
            Fault::HugeTerminal { bytes } => *bytes = n("mock_bytes").unwrap_or(*bytes),
            Fault::Fragmented { pieces } => *pieces = n("mock_pieces").unwrap_or(*pieces).max(1),
            Fault::CloseAfterError { code, error_code } => {
                if let Some(c) =
                    meta_num(meta, "mock_close_code").and_then(|c| u16::try_from(c).ok())
                {
                    *code = c;
                }
                if let Some(e) = meta.get("mock_error_code").and_then(Value::as_str) {
                    *error_code = e.to_string();
                }
            }
            _ => {}
        }
        Some(Some(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cli_names_parse_with_and_without_arguments() {
        assert_eq!("abort-fin".parse(), Ok(Fault::AbortFin { after_deltas: 2 }));
        assert_eq!(
            "abort_rst:5".parse(),
            Ok(Fault::AbortRst { after_deltas: 5 })
        );
        assert_eq!("fragmented:7".parse(), Ok(Fault::Fragmented { pieces: 7 }));
        assert_eq!(
            "close-after-error:1013:overloaded".parse(),
            Ok(Fault::CloseAfterError {
                code: 1013,
                error_code: "overloaded".into()
            })
        );
        assert!(matches!(
            "warp".parse::<Fault>(),
            Err(FaultParseError::Unknown { .. })
        ));
        assert!(matches!(
            "huge-terminal:lots".parse::<Fault>(),
            Err(FaultParseError::BadArgument {
                fault: "huge-terminal",
                ..
            })
        ));
    }

    #[test]
    fn metadata_override_reads_string_and_number_arguments() {
        let c = json!({"metadata":{"mock_fault":"abort_fin","mock_after_deltas":"4"}});
        assert_eq!(
            Fault::from_metadata(&c),
            Some(Some(Fault::AbortFin { after_deltas: 4 }))
        );
        let c = json!({"metadata":{"mock_fault":"close_after_error","mock_close_code":1012}});
        assert_eq!(
            Fault::from_metadata(&c),
            Some(Some(Fault::CloseAfterError {
                code: 1012,
                error_code: "server_error".into()
            }))
        );
        assert_eq!(
            Fault::from_metadata(&json!({"metadata":{"mock_fault":"none"}})),
            Some(None)
        );
        assert_eq!(Fault::from_metadata(&json!({"metadata":{}})), None);
    }
}
