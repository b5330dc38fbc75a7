//! One accepted client connection: TLS (optional), the upgrade request, authentication,
//! the upstream dial, our 101 — then the session.
//!
//! Order matters: nothing is dialed before the request is valid and authenticated, and the
//! client gets its 101 only after upstream's, carrying upstream's headers.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;

use super::auth::{fingerprint, presented_key};
use super::handshake::{
    error_response, parse_request_with, response_101, HeadScanner, Limits, UpgradeRequest,
};
use crate::config::AuthMode;
use crate::relay::session::{self, SessionInfo};
use crate::runtime::WorkerCtx;
use crate::upstream::dial::{dial, Target, UpstreamConn};
use crate::upstream::handshake::build_request;

/// Serve one accepted TCP connection to its end.
pub async fn serve(ctx: &Rc<WorkerCtx>, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    match ctx.shared.listener_tls() {
        None => handle(ctx, tcp, peer).await,
        Some(acceptor) => {
            let tls =
                monoio::time::timeout(ctx.shared.config.handshake_timeout, acceptor.accept(tcp))
                    .await;
            match tls {
                Ok(Ok(s)) => handle(ctx, s, peer).await,
                Ok(Err(e)) => {
                    ctx.metrics.handshake_failed("tls");
                    tracing::debug!(%peer, error = %e, "client TLS handshake failed");
                }
                Err(_) => ctx.metrics.handshake_failed("timeout"),
            }
        }
    }
}

async fn respond<S: AsyncWriteRent>(s: &mut S, bytes: Vec<u8>) {
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
}

/// Read the request head, bounded in size and time. `Ok(None)`: the peer left or timed out.
async fn read_head<S: AsyncReadRent>(
    s: &mut S,
    limits: &Limits,
) -> Result<Option<(UpgradeRequest, Vec<u8>)>, super::handshake::HandshakeError> {
    let mut buf: Vec<u8> = Vec::with_capacity(limits.max_header_bytes + 4096);
    let mut scanner = HeadScanner::new();
    loop {
        let len = buf.len();
        let cap = buf.capacity();
        if len == cap {
            // Cannot happen: the parser errors at max_header_bytes, below capacity.
            return Ok(None);
        }
        let (res, b) = s.read(buf.slice_mut(len..cap)).await;
        buf = b.into_inner();
        match res {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
        if let Some(req) = parse_request_with(&buf, limits, &mut scanner)? {
            let leftover = buf.split_off(req.head_len);
            return Ok(Some((req, leftover)));
        }
    }
}

async fn handle<S>(ctx: &Rc<WorkerCtx>, mut client: S, peer: SocketAddr)
where
    S: AsyncReadRent + AsyncWriteRent + Splitable,
    S::OwnedRead: AsyncReadRent,
    S::OwnedWrite: AsyncWriteRent,
{
    let shared = &ctx.shared;
    let cfg = &shared.config;
    let limits = Limits {
        max_header_bytes: cfg.max_header_bytes,
        max_headers: cfg.max_headers,
    };
    let head = monoio::time::timeout(cfg.handshake_timeout, read_head(&mut client, &limits)).await;
    let (req, leftover) = match head {
        Err(_) => {
            ctx.metrics.handshake_failed("timeout");
            let _ = client.shutdown().await;
            return;
        }
        Ok(Ok(None)) => {
            ctx.metrics.handshake_failed("client_gone");
            return;
        }
        Ok(Err(e)) => {
            ctx.metrics.handshake_failed(e.code());
            tracing::debug!(%peer, status = e.status(), code = e.code(), "bad upgrade request");
            respond(&mut client, e.to_response()).await;
            return;
        }
        Ok(Ok(Some(r))) => r,
    };
    let refuse = |status: u16, code: &'static str, message: &str| {
        error_response(status, "invalid_request_error", code, message, &[])
    };

    if !cfg.allowed_origins.is_empty() {
        if let Some(origin) = req.header("origin") {
            if !cfg.allowed_origins.iter().any(|o| o.as_bytes() == origin) {
                ctx.metrics.handshake_failed("origin_not_allowed");
                respond(
                    &mut client,
                    refuse(403, "origin_not_allowed", "this Origin is not allowed"),
                )
                .await;
                return;
            }
        }
    }

    let tenant: Arc<str> = match (&cfg.auth, presented_key(&req)) {
        (_, None) => {
            ctx.metrics.handshake_failed("missing_key");
            respond(
                &mut client,
                error_response(
                    401,
                    "authentication_error",
                    "missing_api_key",
                    "no API key: send Authorization: Bearer <key>",
                    &[],
                ),
            )
            .await;
            return;
        }
        (AuthMode::Managed { .. }, Some(key)) => {
            match shared.client_keys().and_then(|k| k.authenticate(key)) {
                Some(t) => t,
                None => {
                    ctx.metrics.handshake_failed("invalid_key");
                    respond(
                        &mut client,
                        error_response(
                            401,
                            "authentication_error",
                            "invalid_api_key",
                            "invalid API key",
                            &[],
                        ),
                    )
                    .await;
                    return;
                }
            }
        }
        (AuthMode::Passthrough, Some(key)) => Arc::from(fingerprint(key).as_str()),
    };

    if shared.shutting_down() {
        ctx.metrics.handshake_failed("shutting_down");
        respond(
            &mut client,
            error_response(
                503,
                "server_error",
                "relay_shutting_down",
                "the relay is shutting down; reconnect",
                &[("Retry-After", "1")],
            ),
        )
        .await;
        return;
    }
    if !shared.sink.healthy() {
        ctx.metrics.handshake_failed("usage_log_unavailable");
        respond(
            &mut client,
            error_response(
                503,
                "server_error",
                "usage_log_unavailable",
                "the relay cannot record usage right now",
                &[("Retry-After", "5")],
            ),
        )
        .await;
        return;
    }

    let up = &cfg.upstream;
    let strip = matches!(cfg.auth, AuthMode::Managed { .. });
    let up_req = build_request(
        &req,
        &up.host_header,
        &up.base_path,
        &cfg.inject_headers,
        strip,
    );
    let addrs = shared
        .upstream_addrs
        .read()
        .map(|a| a.clone())
        .unwrap_or_default();
    let target = Target {
        addrs: &addrs,
        tls: shared.upstream_tls.as_ref().map(|(c, n)| (c, n.clone())),
        connect_timeout: cfg.upstream_connect_timeout,
        handshake_timeout: cfg.upstream_handshake_timeout,
        limits,
    };
    let dialed = match dial(&target, &up_req).await {
        Ok(d) => d,
        Err(e) => {
            let ce = e.client_error();
            ctx.metrics.handshake_failed(ce.code);
            tracing::info!(%peer, tenant = %tenant, upstream = %shared.upstream_label, status = ce.status, code = ce.code, error = %e, "upstream dial failed");
            respond(&mut client, ce.to_response()).await;
            return;
        }
    };

    let (res, _) = client
        .write_all(response_101(&req.ws_key, &dialed.headers))
        .await;
    if res.is_err() {
        ctx.metrics.handshake_failed("client_gone");
        return;
    }
    ctx.metrics.session_opened();
    let info = SessionInfo {
        id: ctx.next_session_id(),
        tenant,
        upstream: shared.upstream_label.clone(),
        path: req.path_and_query.clone(),
    };
    tracing::debug!(session = info.id, %peer, tenant = %info.tenant, path = %info.path, "session open");
    let (crd, cwr) = client.into_split();
    match dialed.conn {
        UpstreamConn::Plain(s) => {
            let (urd, uwr) = s.into_split();
            session::run(ctx, info, crd, cwr, urd, uwr, leftover, dialed.leftover).await
        }
        UpstreamConn::Tls(s) => {
            let (urd, uwr) = (*s).into_split();
            session::run(ctx, info, crd, cwr, urd, uwr, leftover, dialed.leftover).await
        }
    }
}
