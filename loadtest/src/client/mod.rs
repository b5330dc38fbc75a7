//! A test WebSocket client: tokio + fastwebsockets framing, its own upgrade code.
//!
//! Frames it sends are masked with a fresh key each (RFC 6455 §5.3); frames it
//! receives are checked for the MASK bit by a raw header tap (a masked server
//! frame is a protocol error: the client answers with close 1002 and
//! [`ClientError::MaskedFrame`]). Pings are answered automatically and also
//! returned; a close from the server is echoed automatically and returned.

mod connect;

use std::time::Duration;

use fastwebsockets::{OpCode, WebSocketError, WebSocketRead};
use serde_json::Value;
use tokio::io::{BufReader, ReadHalf, WriteHalf};

use crate::frame_tap::{pop_header, FrameTap, HeaderQueue};
use crate::ledger::is_terminal;
use crate::net::{FrameWriter, Masking, Stream};

pub use connect::{connect, ConnectError};

/// Connection options. `ClientOpts::default()` dials `/v1/responses` with no
/// extra headers.
#[derive(Debug, Clone)]
pub struct ClientOpts {
    /// Extra request headers, sent in order after the standard ones. A header
    /// named like a standard one (`Host`, `Upgrade`, `Connection`,
    /// `Sec-WebSocket-Key`, `Sec-WebSocket-Version`) replaces it.
    pub headers: Vec<(String, String)>,
    /// Request target, used when the URL has no path (default `/v1/responses`).
    pub path: String,
    /// CA certificates (PEM) trusted for `wss://`; required for `wss://`.
    pub tls_ca_pem: Option<Vec<u8>>,
    /// TLS server name (SNI and verification); default: the URL's host.
    pub server_name: Option<String>,
    /// Bound on TCP connect + TLS + upgrade (default 10 s).
    pub connect_timeout: Duration,
    /// Bound on each `recv` / `recv_frame` (default 30 s; `None` = wait forever).
    pub recv_timeout: Option<Duration>,
    /// Largest frame and reassembled message accepted (default 64 MiB).
    pub max_message_size: usize,
}

impl Default for ClientOpts {
    fn default() -> Self {
        ClientOpts {
            headers: Vec::new(),
            path: "/v1/responses".to_string(),
            tls_ca_pem: None,
            server_name: None,
            connect_timeout: Duration::from_secs(10),
            recv_timeout: Some(Duration::from_secs(30)),
            max_message_size: 64 << 20,
        }
    }
}

/// A complete message (fragments reassembled) or control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping (already answered with a pong).
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// A close frame: code (if any) and reason. Already echoed.
    Close(Option<u16>, String),
}

/// One frame exactly as received (payload still masked if the server masked it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// FIN bit.
    pub fin: bool,
    /// Opcode.
    pub opcode: u8,
    /// MASK bit on the wire.
    pub masked: bool,
    /// Payload.
    pub payload: Vec<u8>,
}

/// Failures after the handshake.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server closed TCP (FIN, or TLS EOF) without a close frame.
    #[error("connection closed without a close frame (EOF)")]
    Eof,
    /// The server reset the connection (RST).
    #[error("connection reset by peer")]
    Reset,
    /// Nothing arrived within the receive timeout.
    #[error("timed out waiting for a frame")]
    Timeout,
    /// Another socket error.
    #[error("i/o error: {0}")]
    Io(std::io::Error),
    /// fastwebsockets rejected a frame (RSV bits, bad opcode, oversize…).
    #[error("protocol error: {0}")]
    Protocol(WebSocketError),
    /// The server sent a masked frame (we answered with close 1002).
    #[error("server sent a masked frame")]
    MaskedFrame,
    /// A continuation without a started message, or a new message inside one.
    #[error("bad fragmentation sequence")]
    BadFragmentation,
    /// A reassembled message exceeded `max_message_size`.
    #[error("message larger than the configured maximum")]
    MessageTooLarge,
    /// A text message was not valid UTF-8.
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// A text event was not JSON (in `turn`).
    #[error("event is not JSON: {0}")]
    BadJson(serde_json::Error),
    /// The server closed the WebSocket (in `turn`).
    #[error("server closed with {code:?} {reason:?}")]
    Closed {
        /// Close code, if any.
        code: Option<u16>,
        /// Close reason.
        reason: String,
    },
    /// A `turn` ended before its terminal event; `events` are those received.
    #[error("turn interrupted after {} events: {cause}", events.len())]
    TurnInterrupted {
        /// Events received before the failure.
        events: Vec<Value>,
        /// What ended the turn.
        cause: Box<ClientError>,
    },
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::ConnectionReset => ClientError::Reset,
            std::io::ErrorKind::UnexpectedEof => ClientError::Eof,
            _ => ClientError::Io(e),
        }
    }
}

impl From<WebSocketError> for ClientError {
    fn from(e: WebSocketError) -> Self {
        match e {
            WebSocketError::UnexpectedEOF => ClientError::Eof,
            WebSocketError::IoError(io) => io.into(),
            other => ClientError::Protocol(other),
        }
    }
}

/// Result of client operations.
pub type Result<T> = std::result::Result<T, ClientError>;

type Io = BufReader<Stream>;

/// An upgraded connection.
pub struct WsClient {
    /// Status of the upgrade response (101).
    pub status: u16,
    /// Headers of the 101 response, in wire order.
    pub response_headers: Vec<(String, String)>,
    read: WebSocketRead<FrameTap<ReadHalf<Io>>>,
    tap: HeaderQueue,
    writer: FrameWriter<WriteHalf<Io>>,
    partial: Option<(OpCode, Vec<u8>)>,
    close_sent: bool,
    recv_timeout: Option<Duration>,
    max_message_size: usize,
}

impl std::fmt::Debug for WsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsClient")
            .field("status", &self.status)
            .field("response_headers", &self.response_headers)
            .field("close_sent", &self.close_sent)
            .finish_non_exhaustive()
    }
}

impl WsClient {
    /// First value of a 101 response header (case-insensitive).
    pub fn response_header(&self, name: &str) -> Option<&str> {
        crate::handshake::header(&self.response_headers, name)
    }

    /// Sends one masked text frame.
    pub async fn send_text(&mut self, s: &str) -> Result<()> {
        self.send_frame(true, OpCode::Text as u8, s.as_bytes())
            .await
    }

    /// Sends one masked binary frame.
    pub async fn send_binary(&mut self, b: &[u8]) -> Result<()> {
        self.send_frame(true, OpCode::Binary as u8, b).await
    }

    /// Sends one masked frame with any valid opcode (for fragments, ping, pong).
    /// An opcode fastwebsockets cannot encode is a [`ClientError::Protocol`].
    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> Result<()> {
        let op = OpCode::try_from(opcode)?;
        if op == OpCode::Close {
            self.close_sent = true;
        }
        self.writer
            .push_frame(fin, op, Masking::Random, payload.to_vec());
        Ok(self.writer.flush().await?)
    }

    /// Sends a message split into `pieces` masked frames.
    pub async fn send_fragmented(
        &mut self,
        opcode: u8,
        payload: &[u8],
        pieces: usize,
    ) -> Result<()> {
        let op = OpCode::try_from(opcode)?;
        self.writer
            .push_message(op, Masking::Random, payload, pieces);
        Ok(self.writer.flush().await?)
    }

    /// Writes raw bytes on the socket (for malformed-frame tests).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer.push_raw(bytes);
        Ok(self.writer.flush().await?)
    }

    /// Sends a close frame with `code` and `reason`; read on with [`Self::recv`]
    /// to see the server's answer.
    pub async fn close(&mut self, code: u16, reason: &str) -> Result<()> {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason.as_bytes());
        self.send_frame(true, OpCode::Close as u8, &p).await
    }

    /// Receives the next frame as it came (no reassembly, no automatic replies).
    /// A masked frame is returned with `masked: true` and its payload still
    /// masked, or as [`ClientError::MaskedFrame`] when fastwebsockets rejected it.
    pub async fn recv_frame(&mut self) -> Result<RawFrame> {
        let mut noop = |_| std::future::ready(Ok::<(), std::io::Error>(()));
        let fut = self.read.read_frame(&mut noop);
        let res = match self.recv_timeout {
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .map_err(|_| ClientError::Timeout)?,
            None => fut.await,
        };
        let masked = pop_header(&self.tap).is_some_and(|h| h.masked);
        let frame = match res {
            Ok(f) => f,
            // fastwebsockets may reject a masked frame's still-masked payload
            // (e.g. as invalid UTF-8) before we see it: name the real cause.
            Err(_) if masked => return Err(ClientError::MaskedFrame),
            Err(e) => return Err(e.into()),
        };
        Ok(RawFrame {
            fin: frame.fin,
            opcode: frame.opcode as u8,
            masked,
            payload: frame.payload.to_vec(),
        })
    }

    /// Receives the next message, reassembling fragments; answers pings and
    /// echoes a server close.
    pub async fn recv(&mut self) -> Result<Message> {
        loop {
            let f = match self.recv_frame().await {
                Err(ClientError::MaskedFrame) => Ok(RawFrame {
                    fin: true,
                    opcode: 0,
                    masked: true,
                    payload: Vec::new(),
                }),
                other => other,
            }?;
            if f.masked {
                let _ = self.close(1002, "masked frame from server").await;
                return Err(ClientError::MaskedFrame);
            }
            let op = OpCode::try_from(f.opcode)?;
            let data = match op {
                OpCode::Ping => {
                    if !self.close_sent {
                        self.send_frame(true, OpCode::Pong as u8, &f.payload)
                            .await?;
                    }
                    return Ok(Message::Ping(f.payload));
                }
                OpCode::Pong => return Ok(Message::Pong(f.payload)),
                OpCode::Close => {
                    let code = f.payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                    let reason = String::from_utf8_lossy(f.payload.get(2..).unwrap_or_default())
                        .into_owned();
                    if !self.close_sent {
                        let echo = f.payload.get(..2).unwrap_or_default().to_vec();
                        let _ = self.send_frame(true, OpCode::Close as u8, &echo).await;
                    }
                    return Ok(Message::Close(code, reason));
                }
                OpCode::Text | OpCode::Binary if self.partial.is_none() => {
                    if f.fin {
                        (op, f.payload)
                    } else {
                        self.partial = Some((op, f.payload));
                        continue;
                    }
                }
                OpCode::Continuation => {
                    let Some((_, buf)) = self.partial.as_mut() else {
                        return Err(ClientError::BadFragmentation);
                    };
                    if buf.len() + f.payload.len() > self.max_message_size {
                        return Err(ClientError::MessageTooLarge);
                    }
                    buf.extend_from_slice(&f.payload);
                    if !f.fin {
                        continue;
                    }
                    match self.partial.take() {
                        Some(m) => m,
                        None => return Err(ClientError::BadFragmentation),
                    }
                }
                _ => return Err(ClientError::BadFragmentation),
            };
            return match data {
                (OpCode::Text, bytes) => String::from_utf8(bytes)
                    .map(Message::Text)
                    .map_err(|_| ClientError::InvalidUtf8),
                (_, bytes) => Ok(Message::Binary(bytes)),
            };
        }
    }

    /// Sends one `response.create` and collects every text event until the
    /// terminal event (`response.completed` / `.incomplete` / `.failed`) or
    /// `error` of the create's lane (`stream_id`, or the default lane). Events of
    /// other lanes arriving meanwhile are included. Pings and pongs are skipped.
    pub async fn turn(&mut self, create_json: &str) -> Result<Vec<Value>> {
        let lane = serde_json::from_str::<Value>(create_json)
            .ok()
            .and_then(|v| v.get("stream_id")?.as_str().map(str::to_string));
        self.send_text(create_json).await?;
        let mut events = Vec::new();
        loop {
            let cause = match self.recv().await {
                Ok(Message::Text(t)) => match serde_json::from_str::<Value>(&t) {
                    Ok(v) => {
                        let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
                        let done = (is_terminal(kind) || kind == "error")
                            && v.get("stream_id").and_then(Value::as_str) == lane.as_deref();
                        events.push(v);
                        if done {
                            return Ok(events);
                        }
                        continue;
                    }
                    Err(e) => ClientError::BadJson(e),
                },
                Ok(Message::Close(code, reason)) => ClientError::Closed { code, reason },
                Ok(_) => continue,
                Err(e) => e,
            };
            return Err(ClientError::TurnInterrupted {
                events,
                cause: Box::new(cause),
            });
        }
    }
}
