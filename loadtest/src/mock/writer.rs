//! The writer half of a mock connection: batches queued events into as few
//! socket writes as possible, applies masking/fragmentation faults, writes ledger
//! entries as terminal events go out, and carries out close and abort.

use std::sync::atomic::{AtomicBool, Ordering};

use fastwebsockets::OpCode;
use tokio::io::WriteHalf;
use tokio::sync::mpsc;

use super::conn::Io;
use super::{LedgerEntry, Shared};
use crate::net::{FrameWriter, Masking};

const BATCH_BYTES: usize = 256 * 1024;

/// How server messages are framed on this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Framing {
    pub masked: bool,
    pub pieces: usize,
}

/// Work for the writer.
pub(crate) enum Out {
    /// One event (a text message).
    Event { text: String, framing: Framing },
    /// A terminal event; `entry` goes to the ledger as it is written.
    Terminal {
        text: String,
        framing: Framing,
        entry: LedgerEntry,
    },
    /// One frame verbatim (echo, pong).
    Frame {
        fin: bool,
        opcode: OpCode,
        payload: Vec<u8>,
    },
    /// A close frame with this payload; the writer stops after it.
    Close { payload: Vec<u8> },
    /// Flush, then close TCP with a FIN (no close frame).
    AbortFin,
    /// Flush, then reset TCP.
    AbortRst,
}

/// Why the writer stopped.
pub(crate) enum WriterEnd {
    CloseSent,
    Aborted,
    Failed,
}

/// Writes everything queued on `rx` until a close, an abort or a socket error.
pub(crate) async fn writer_loop(
    shared: &Shared,
    mut fw: FrameWriter<WriteHalf<Io>>,
    mut rx: mpsc::Receiver<Out>,
    rst: &AtomicBool,
) -> WriterEnd {
    let masking = |f: Framing| {
        if f.masked {
            Masking::Random
        } else {
            Masking::None
        }
    };
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let (mut frames, mut bytes) = (0u64, 0u64);
        while let Some(out) = next.take() {
            let mut count = |n: usize| {
                frames += 1;
                bytes += n as u64;
            };
            match out {
                Out::Event { text, framing } => {
                    count(text.len());
                    fw.push_message(
                        OpCode::Text,
                        masking(framing),
                        text.as_bytes(),
                        framing.pieces,
                    )
                }
                Out::Terminal {
                    text,
                    framing,
                    entry,
                } => {
                    count(text.len());
                    shared.record_ledger(entry);
                    fw.push_message(
                        OpCode::Text,
                        masking(framing),
                        text.as_bytes(),
                        framing.pieces,
                    )
                }
                Out::Frame {
                    fin,
                    opcode,
                    payload,
                } => {
                    if matches!(opcode, OpCode::Text | OpCode::Binary | OpCode::Continuation) {
                        count(payload.len());
                    }
                    fw.push_frame(fin, opcode, Masking::None, payload)
                }
                Out::Close { payload } => {
                    fw.push_frame(true, OpCode::Close, Masking::None, payload);
                    return match fw.flush().await {
                        Ok(()) => {
                            shared.frames_sent.fetch_add(frames, Ordering::Relaxed);
                            shared.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
                            WriterEnd::CloseSent
                        }
                        Err(_) => WriterEnd::Failed,
                    };
                }
                Out::AbortFin => {
                    let _ = fw.shutdown().await;
                    return WriterEnd::Aborted;
                }
                Out::AbortRst => {
                    let _ = fw.flush().await;
                    rst.store(true, Ordering::Relaxed);
                    return WriterEnd::Aborted;
                }
            }
            if fw.pending() < BATCH_BYTES {
                next = rx.try_recv().ok();
            }
        }
        if fw.flush().await.is_err() {
            return WriterEnd::Failed;
        }
        shared.frames_sent.fetch_add(frames, Ordering::Relaxed);
        shared.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }
    WriterEnd::Failed
}
