//! One mock connection: TLS, the upgrade (or refusal), then a reader loop that
//! records and routes client frames and a writer loop that batches server frames
//! and carries out the abort faults.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fastwebsockets::{OpCode, Role, WebSocketError, WebSocketRead};
use tokio::io::{AsyncWriteExt, BufReader, ReadHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::ctx::ConnCtx;
use super::lanes::Dispatcher;
use super::writer::{writer_loop, Framing, Out, WriterEnd};
use super::{events, lock, Fault, ReceivedFrame, RecordedRequest, Shared};
use crate::frame_tap::{pop_header, FrameTap, HeaderQueue};
use crate::handshake::{self, has_token, Head};
use crate::net::{Conn, FrameWriter, Stream};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The buffered stream of one connection.
pub(crate) type Io = BufReader<Stream>;

struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves one accepted TCP connection to the end.
pub(crate) async fn serve(shared: Arc<Shared>, tcp: TcpStream, conn_id: usize) {
    shared.open.fetch_add(1, Ordering::SeqCst);
    let _guard = OpenGuard(shared.clone());
    let _ = tcp.set_nodelay(true);
    let conn = match &shared.cfg.tls {
        Some(cfg) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg.clone());
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => Conn::ServerTls(Box::new(tls)),
                _ => return,
            }
        }
        None => Conn::Plain(tcp),
    };
    let (stream, rst) = Stream::new(conn);
    let mut io = BufReader::new(stream);
    let head = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake::read_head(&mut io)).await {
        Ok(Ok(h)) => h,
        _ => return,
    };
    let Ok(req) = handshake::parse_request(&head) else {
        let _ = respond(
            &mut io,
            400,
            &[],
            r#"{"error":{"message":"malformed request"}}"#,
        )
        .await;
        return;
    };
    if shared.cfg.record {
        lock(&shared.requests).push(RecordedRequest {
            conn: conn_id,
            method: req.method.clone(),
            path_and_query: req.target.clone(),
            headers: req.headers.clone(),
        });
    }
    if let Some(r) = &shared.cfg.refuse {
        let extra: Vec<(&str, &str)> = r
            .retry_after
            .iter()
            .map(|v| ("Retry-After", v.as_str()))
            .collect();
        let _ = respond(&mut io, r.status, &extra, &r.body).await;
        return;
    }
    let Some(key) = upgrade_key(&req) else {
        let body = r#"{"error":{"type":"invalid_request_error","message":"expected a WebSocket upgrade"}}"#;
        let _ = respond(&mut io, 426, &[("Sec-WebSocket-Version", "13")], body).await;
        return;
    };
    if write_101(&shared, &mut io, &key).await.is_err() {
        return;
    }
    shared.upgrades.fetch_add(1, Ordering::SeqCst);
    session(shared, io, rst, conn_id).await;
}

fn upgrade_key(req: &Head) -> Option<String> {
    let ok = req.method == "GET"
        && has_token(req.header("upgrade"), "websocket")
        && has_token(req.header("connection"), "upgrade")
        && req.header("sec-websocket-version") == Some("13");
    ok.then(|| req.header("sec-websocket-key").map(str::to_string))
        .flatten()
}

async fn respond(
    io: &mut Io,
    status: u16,
    extra: &[(&str, &str)],
    body: &str,
) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", handshake::reason(status));
    for (n, v) in extra {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    io.write_all(out.as_bytes()).await?;
    io.shutdown().await
}

async fn write_101(shared: &Shared, io: &mut Io, key: &str) -> std::io::Result<()> {
    let mut accept = handshake::accept_key(key);
    if shared.cfg.fault == Some(Fault::BadAccept) {
        accept = handshake::accept_key("not-the-key-you-sent");
    }
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if shared.cfg.fault == Some(Fault::OfferExtension) {
        out.push_str("Sec-WebSocket-Extensions: permessage-deflate\r\n");
    }
    for (n, v) in &shared.cfg.extra_101_headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    io.write_all(out.as_bytes()).await?;
    io.flush().await
}

enum ReaderEnd {
    /// A close frame is queued for the writer (echo, or our protocol-error close).
    CloseQueued,
    /// The socket failed or the writer is gone.
    Failed,
}

async fn session(shared: Arc<Shared>, io: Io, rst: Arc<AtomicBool>, conn_id: usize) {
    let (rd, wr) = tokio::io::split(io);
    let (tap, headers) = FrameTap::new(rd);
    let (mut wsr, _unused_write) =
        fastwebsockets::after_handshake_split(tap, tokio::io::sink(), Role::Server);
    wsr.set_auto_close(false);
    wsr.set_auto_pong(false);
    wsr.set_max_message_size(shared.cfg.max_message_size);
    let framing = Framing {
        masked: shared.cfg.fault == Some(Fault::MaskedFrames),
        pieces: match shared.cfg.fault {
            Some(Fault::Fragmented { pieces }) => pieces,
            _ => 1,
        },
    };
    let (tx, rx) = mpsc::channel(1024);
    let ctx = ConnCtx::new(shared.clone(), tx.clone(), framing);
    let reader = reader_loop(&shared, wsr, headers, ctx, conn_id);
    let writer = writer_loop(&shared, FrameWriter::new(wr), rx, &rst);
    tokio::pin!(reader, writer);
    let age = shared.cfg.max_connection_age;
    let mut age_timer = Box::pin(async move {
        match age {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    });
    let mut age_fired = false;
    loop {
        tokio::select! {
            end = &mut writer => {
                if let WriterEnd::CloseSent = end {
                    // Give the client a moment to answer our close.
                    let _ = tokio::time::timeout(Duration::from_secs(1), &mut reader).await;
                }
                return;
            }
            end = &mut reader => {
                if let ReaderEnd::CloseQueued = end {
                    let _ = tokio::time::timeout(Duration::from_secs(2), &mut writer).await;
                }
                return;
            }
            _ = &mut age_timer, if !age_fired => {
                age_fired = true;
                let tx = tx.clone();
                let e = events::error_event(400, "invalid_request_error", "websocket_connection_limit_reached",
                    "Responses websocket connection limit reached. Create a new websocket connection to continue.",
                    None, None, 0);
                tokio::spawn(async move {
                    let _ = tx.send(Out::Event { text: e, framing }).await;
                    let _ = tx.send(Out::Close { payload: 1001u16.to_be_bytes().to_vec() }).await;
                });
            }
        }
    }
}

type WsRead = WebSocketRead<FrameTap<ReadHalf<Io>>>;

async fn reader_loop(
    shared: &Shared,
    mut wsr: WsRead,
    headers: HeaderQueue,
    ctx: Arc<ConnCtx>,
    conn_id: usize,
) -> ReaderEnd {
    let tx = ctx.tx.clone();
    let echo = shared.cfg.echo;
    let mut dispatcher = Dispatcher::new(ctx);
    let mut message: Option<(OpCode, Vec<u8>)> = None;
    let mut noop = |_| std::future::ready(Ok::<(), std::io::Error>(()));
    loop {
        let frame = match wsr.read_frame(&mut noop).await {
            Ok(f) => f,
            Err(WebSocketError::IoError(_) | WebSocketError::UnexpectedEOF) => {
                return ReaderEnd::Failed
            }
            Err(WebSocketError::InvalidUTF8) => return close_with(&tx, 1007).await,
            Err(WebSocketError::FrameTooLarge) => return close_with(&tx, 1009).await,
            Err(_) => return close_with(&tx, 1002).await,
        };
        let hdr = pop_header(&headers);
        let (fin, opcode) = (frame.fin, frame.opcode);
        let payload = frame.payload.to_vec();
        if shared.cfg.record {
            lock(&shared.received).push(ReceivedFrame {
                conn: conn_id,
                opcode: opcode as u8,
                fin,
                was_masked: hdr.is_some_and(|h| h.masked),
                rsv: hdr.map(|h| h.rsv).unwrap_or(0),
                payload: payload.clone(),
            });
        }
        if !hdr.is_some_and(|h| h.masked) {
            return close_with(&tx, 1002).await; // RFC 6455 §5.1: clients must mask
        }
        let sent = match opcode {
            OpCode::Close => {
                let echo_code = payload.get(..2).map(<[u8]>::to_vec).unwrap_or_default();
                let _ = tx.send(Out::Close { payload: echo_code }).await;
                return ReaderEnd::CloseQueued;
            }
            OpCode::Ping => tx
                .send(Out::Frame {
                    fin: true,
                    opcode: OpCode::Pong,
                    payload,
                })
                .await
                .is_ok(),
            OpCode::Pong => true,
            _ if echo => tx
                .send(Out::Frame {
                    fin,
                    opcode,
                    payload,
                })
                .await
                .is_ok(),
            OpCode::Text | OpCode::Binary if message.is_some() => {
                return close_with(&tx, 1002).await
            }
            OpCode::Text | OpCode::Binary => {
                if fin {
                    deliver(&mut dispatcher, opcode, &payload).await
                } else {
                    message = Some((opcode, payload));
                    true
                }
            }
            OpCode::Continuation => match message.as_mut() {
                Some((_, buf)) if buf.len() + payload.len() <= shared.cfg.max_message_size => {
                    buf.extend_from_slice(&payload);
                    match message.take() {
                        Some((op, buf)) if fin => deliver(&mut dispatcher, op, &buf).await,
                        other => {
                            message = other;
                            true
                        }
                    }
                }
                Some(_) => return close_with(&tx, 1009).await,
                None => return close_with(&tx, 1002).await, // continuation without a start
            },
        };
        if !sent {
            return ReaderEnd::Failed;
        }
    }
}

async fn close_with(tx: &mpsc::Sender<Out>, code: u16) -> ReaderEnd {
    match tx
        .send(Out::Close {
            payload: code.to_be_bytes().to_vec(),
        })
        .await
    {
        Ok(()) => ReaderEnd::CloseQueued,
        Err(_) => ReaderEnd::Failed,
    }
}

async fn deliver(d: &mut Dispatcher, opcode: OpCode, payload: &[u8]) -> bool {
    match (opcode, std::str::from_utf8(payload)) {
        (OpCode::Text, Ok(text)) => d.on_text(text).await.is_ok(),
        _ => true, // binary and invalid UTF-8 are recorded and ignored
    }
}
