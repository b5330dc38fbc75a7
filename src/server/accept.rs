//! One accepted client connection: TLS (optional), the upgrade request, authentication,
//! the upstream dial, our 101 — then the session.
//!
//! Order matters: nothing is dialed before the request is valid and authenticated, and the
//! client gets its 101 only after upstream's, carrying upstream's headers.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;

use super::auth::{fingerprint, presented_key, single_credential, ConflictingCredentials};
use super::handshake::{
    error_response, parse_request_with, response_101, HeadScanner, Limits, UpgradeRequest,
};
use crate::config::AuthMode;
use crate::dataplane::LegTls;
use crate::limits::FleetRefusal;
use crate::relay::session::{self, Conn, SessionInfo};
use crate::runtime::WorkerCtx;
use crate::upstream::dial::{dial, Target, UpstreamConn};
use crate::upstream::handshake::{build_request, MANAGED_NOT_RETURNED};

/// Serve one accepted TCP connection to its end.
pub async fn serve(ctx: &Rc<WorkerCtx>, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let fd = tcp.as_raw_fd();
    match ctx.shared.listener_tls() {
        None => handle(ctx, tcp, peer, fd).await,
        Some(acceptor) => {
            let tls = monoio::time::timeout(
                ctx.shared.config.handshake_timeout,
                Box::pin(acceptor.accept(tcp)),
            )
            .await;
            match tls {
                Ok(Ok(s)) => handle(ctx, s, peer, fd).await,
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

async fn refuse<S: AsyncWriteRent>(
    ctx: &Rc<WorkerCtx>,
    s: &mut S,
    reason: &'static str,
    response: Vec<u8>,
) {
    ctx.metrics.handshake_failed(reason);
    respond(s, response).await;
}

/// A stream handed to the data plane: its socket's descriptor (ownership moves to the
/// caller) and, for TLS, its rustls connection.
trait IntoLeg: Sized {
    fn into_leg(self) -> (RawFd, Option<Box<LegTls>>);
}

impl IntoLeg for TcpStream {
    fn into_leg(self) -> (RawFd, Option<Box<LegTls>>) {
        (self.into_raw_fd(), None)
    }
}

impl IntoLeg for crate::tls::ServerTlsStream {
    fn into_leg(self) -> (RawFd, Option<Box<LegTls>>) {
        let (io, conn, pending) = self.into_parts();
        (
            io.into_raw_fd(),
            Some(LegTls::new(rustls::Connection::Server(conn), pending)),
        )
    }
}

impl IntoLeg for crate::tls::ClientTlsStream {
    fn into_leg(self) -> (RawFd, Option<Box<LegTls>>) {
        let (io, conn, pending) = self.into_parts();
        (
            io.into_raw_fd(),
            Some(LegTls::new(rustls::Connection::Client(conn), pending)),
        )
    }
}

async fn handle<S>(ctx: &Rc<WorkerCtx>, mut client: S, peer: SocketAddr, client_fd: RawFd)
where
    S: AsyncReadRent + AsyncWriteRent + Splitable + IntoLeg,
    S::OwnedRead: AsyncReadRent + crate::relay::ready::ReadReady + 'static,
    S::OwnedWrite: AsyncWriteRent + 'static,
{
    let shared = &ctx.shared;
    let cfg = &shared.config;
    let limits = Limits {
        max_header_bytes: cfg.max_header_bytes,
        max_headers: cfg.max_headers,
    };
    let head = monoio::time::timeout(cfg.handshake_timeout, read_head(&mut client, &limits)).await;
    let (mut req, leftover) = match head {
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
            tracing::debug!(%peer, status = e.status(), code = e.code(), "bad upgrade request");
            return refuse(ctx, &mut client, e.code(), e.to_response()).await;
        }
        Ok(Ok(Some(r))) => r,
    };
    let invalid = |status: u16, code: &'static str, message: &str| {
        error_response(status, "invalid_request_error", code, message, &[])
    };

    let path = req
        .path_and_query
        .split_once('?')
        .map_or(req.path_and_query.as_str(), |(p, _)| p)
        .to_string();

    if ctx.active() > cfg.max_sessions {
        let body = error_response(
            429,
            "rate_limit_error",
            "relay_at_capacity",
            "this relay worker holds its maximum number of sessions; retry shortly",
            &[("Retry-After", "1")],
        );
        return refuse(ctx, &mut client, "relay_at_capacity", body).await;
    }

    if !cfg.allowed_origins.is_empty() {
        if let Some(origin) = req.header("origin") {
            if !cfg.allowed_origins.iter().any(|o| o.as_bytes() == origin) {
                let body = error_response(
                    403,
                    "invalid_request_error",
                    "origin_not_allowed",
                    "this Origin is not allowed",
                    &[],
                );
                return refuse(ctx, &mut client, "origin_not_allowed", body).await;
            }
        }
    }

    let managed = matches!(cfg.auth, AuthMode::Managed { .. });
    let presented = if managed {
        Ok(presented_key(&req))
    } else {
        single_credential(&req)
    };
    let tenant: Arc<str> = match presented {
        Err(ConflictingCredentials) => {
            let body = invalid(
                400,
                "conflicting_credentials",
                "send one credential: these headers carry different keys",
            );
            return refuse(ctx, &mut client, "conflicting_credentials", body).await;
        }
        Ok(None) => {
            let body = error_response(
                401,
                "authentication_error",
                "missing_api_key",
                "no API key: send Authorization: Bearer <key>",
                &[],
            );
            return refuse(ctx, &mut client, "missing_key", body).await;
        }
        Ok(Some(key)) if managed => match shared.client_keys().and_then(|k| k.authenticate(key)) {
            Some(t) => t,
            None => {
                let body = error_response(
                    401,
                    "authentication_error",
                    "invalid_api_key",
                    "invalid API key",
                    &[],
                );
                return refuse(ctx, &mut client, "invalid_key", body).await;
            }
        },
        Ok(Some(key)) => Arc::from(fingerprint(key).as_str()),
    };

    // Only the paths a route allows are ever dialled (no unmetered side door such as
    // /v1/realtime next to /v1/responses). The route: the tenant's (keys file `route=`) or
    // the default when it serves the path as is, else the one a path prefix names.
    let tenant_route = shared
        .client_keys()
        .and_then(|k| k.route_of(&tenant).and_then(|r| cfg.routes.index_of(r)));
    let selected = match cfg.routes.select(&path, tenant_route) {
        Ok(s) => s,
        Err(_) => {
            tracing::debug!(%peer, path = %path, "path not allowed");
            let body = invalid(
                404,
                "path_not_allowed",
                "this relay does not serve that path",
            );
            return refuse(ctx, &mut client, "path_not_allowed", body).await;
        }
    };
    let route = shared.route(selected.route);

    if shared.shutting_down() {
        let body = error_response(
            503,
            "server_error",
            "relay_shutting_down",
            "the relay is shutting down; reconnect",
            &[("Retry-After", "1")],
        );
        return refuse(ctx, &mut client, "shutting_down", body).await;
    }
    if !shared.sink.healthy() {
        let body = error_response(
            503,
            "server_error",
            "usage_log_unavailable",
            "the relay cannot record usage right now",
            &[("Retry-After", "5")],
        );
        return refuse(ctx, &mut client, "usage_log_unavailable", body).await;
    }
    let Some(slot) = shared.tenants.get(&tenant).open_session() else {
        let body = error_response(
            429,
            "rate_limit_error",
            "session_limit_reached",
            "this key has its maximum number of open sessions",
            &[("Retry-After", "5")],
        );
        return refuse(ctx, &mut client, "tenant_session_limit", body).await;
    };
    // Fleet limits (Redis-backed, read from memory here): the tenant's sessions across
    // the fleet, and whether its token budget has anything left.
    let fleet = slot
        .tenant()
        .fleet_session_admit()
        .and_then(|_| slot.tenant().budget_admit(std::time::SystemTime::now()));
    if let Err(r) = fleet {
        let body = match r {
            FleetRefusal::InsufficientQuota(_) => error_response(
                429,
                "insufficient_quota",
                r.code(),
                "this key's token budget is spent for the period",
                &[("Retry-After", "3600")],
            ),
            FleetRefusal::FleetSessions => error_response(
                429,
                "rate_limit_error",
                r.code(),
                "this key has its maximum number of open sessions across the relay fleet",
                &[("Retry-After", "5")],
            ),
            FleetRefusal::Unavailable => error_response(
                503,
                "server_error",
                r.code(),
                "the relay cannot check this key's fleet limits right now",
                &[("Retry-After", "5")],
            ),
        };
        tracing::info!(%peer, tenant = %tenant, code = r.code(), "handshake refused by a fleet limit");
        return refuse(ctx, &mut client, r.code(), body).await;
    }

    let up = &route.upstream;
    let client_path = std::mem::take(&mut req.path_and_query);
    // The route prefix (if any) removed; the query goes along unchanged.
    req.path_and_query = match client_path.split_once('?') {
        Some((_, q)) => format!("{}?{q}", selected.path),
        None => selected.path.clone(),
    };
    let up_req = build_request(
        &req,
        &up.host_header,
        &up.base_path,
        &route.inject_headers,
        managed,
    );
    let upstream = &shared.upstreams[selected.route];
    let addrs = upstream.addrs.read().map(|a| a.clone()).unwrap_or_default();
    let target = Target {
        addrs: &addrs,
        tls: upstream.tls.as_ref().map(|(c, n)| (c, n.clone())),
        connect_timeout: cfg.upstream_connect_timeout,
        handshake_timeout: cfg.upstream_handshake_timeout,
        limits,
    };
    // Boxed: the dial's state (TLS handshake, response head) is large and short-lived; kept
    // inline it would size the future that lives as long as the session.
    let dialed = match Box::pin(dial(&target, &up_req)).await {
        Ok(d) => d,
        Err(e) => {
            let ce = e.client_error();
            tracing::info!(%peer, tenant = %tenant, route = %route.name, upstream = %route.label, status = ce.status, code = ce.code, error = %e, "upstream dial failed");
            return refuse(ctx, &mut client, ce.code, ce.to_response()).await;
        }
    };

    let mut headers = dialed.headers;
    if managed {
        headers.retain(|(n, _)| {
            !MANAGED_NOT_RETURNED
                .iter()
                .any(|m| n.eq_ignore_ascii_case(m))
        });
    }
    let (res, _) = client.write_all(response_101(&req.ws_key, &headers)).await;
    if res.is_err() {
        ctx.metrics.handshake_failed("client_gone");
        return;
    }
    ctx.metrics.session_opened();
    ctx.metrics.route_session(&route.name);
    let info = SessionInfo {
        id: ctx.next_session_id(),
        tenant,
        route: selected.route,
        route_name: route.name.clone(),
        upstream: route.label.clone(),
        path: client_path,
    };
    tracing::debug!(session = info.id, %peer, tenant = %info.tenant, path = %info.path, "session open");
    // Nothing of the handshake is kept past this point but the session's identity.
    // The buffer-ring data plane (unless `--no-ring`) takes the sockets, and a TLS leg's
    // rustls connection with its socket.
    if let Some(dp) = &ctx.dataplane {
        let core = session::new_core(ctx, &info, Some(&slot));
        let (cfd, ctls) = client.into_leg();
        let (ufd, utls) = match dialed.conn {
            UpstreamConn::Plain(up) => up.into_leg(),
            UpstreamConn::Tls(up) => (*up).into_leg(),
        };
        dp.adopt(
            ctx,
            info,
            core,
            [cfd, ufd],
            [ctls, utls],
            [leftover, dialed.leftover],
            Some(slot),
        );
        return;
    }
    let upstream_conn = dialed.conn;
    let (crd, cwr) = client.into_split();
    let client = Conn {
        read: crd,
        write: cwr,
        fd: client_fd,
        leftover,
    };
    let fd = dialed.fd;
    match upstream_conn {
        UpstreamConn::Plain(s) => {
            let (urd, uwr) = s.into_split();
            let upstream = Conn {
                read: urd,
                write: uwr,
                fd,
                leftover: dialed.leftover,
            };
            session::spawn(ctx, info, client, upstream, Some(slot))
        }
        UpstreamConn::Tls(s) => {
            let (urd, uwr) = (*s).into_split();
            let upstream = Conn {
                read: urd,
                write: uwr,
                fd,
                leftover: dialed.leftover,
            };
            session::spawn(ctx, info, client, upstream, Some(slot))
        }
    }
}
