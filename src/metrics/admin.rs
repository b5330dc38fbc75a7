//! The admin listener: a tiny blocking HTTP/1.1 server on its own std thread serving
//! `/metrics`, `/healthz` and `/readyz`. One request per connection, answered with
//! `Connection: close`. Connections are served one at a time, each bounded by
//! [`MAX_REQUEST`] bytes and [`IO_TIMEOUT`] per read/write, so a stalled peer delays
//! scrapes by at most that timeout.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::registry::Registry;

/// Largest request head accepted (bytes); past it the answer is 431.
pub const MAX_REQUEST: usize = 8 * 1024;
/// Most request headers accepted; past it the answer is 431.
pub const MAX_HEADERS: usize = 32;
/// Read and write timeout of one admin connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest the server waits for the peer's end after answering.
const LINGER: Duration = Duration::from_millis(200);
/// Content type of `/metrics`.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// An admin response, before serialization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminResponse {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` header.
    pub content_type: &'static str,
    /// Body (omitted on the wire for `HEAD`).
    pub body: String,
}

impl AdminResponse {
    fn text(status: u16, body: &str) -> Self {
        AdminResponse {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
        }
    }
}

/// Starts the admin listener on `addr` (port 0 = any) in a thread named `tollgate-admin`.
/// `/readyz` answers 200 only while `ready` is set and the usage-log sink is healthy
/// (`registry.sink_metrics().healthy()`). Returns the bound address and the thread, which
/// serves until the process exits.
pub fn spawn_admin(
    addr: SocketAddr,
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let handle = thread::Builder::new()
        .name("tollgate-admin".into())
        .spawn(move || serve(&listener, &registry, &ready))?;
    Ok((local, handle))
}

fn serve(listener: &TcpListener, registry: &Registry, ready: &AtomicBool) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                if let Err(error) = handle_conn(stream, registry, ready) {
                    tracing::debug!(%error, "admin request failed");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "admin accept failed");
                // EMFILE and friends: do not spin.
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// What the request head turned out to be.
enum Head {
    Complete { method: String, path: String },
    Refuse(AdminResponse),
}

fn read_head(stream: &mut TcpStream) -> io::Result<Option<Head>> {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0usize;
    loop {
        let Some(spare) = buf.get_mut(len..).filter(|s| !s.is_empty()) else {
            return Ok(Some(Head::Refuse(AdminResponse::text(
                431,
                "request too large\n",
            ))));
        };
        let n = stream.read(spare)?;
        if n == 0 {
            return Ok(None);
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf.get(..len).unwrap_or_default()) {
            Ok(httparse::Status::Complete(_)) => {
                let method = req.method.unwrap_or_default().to_owned();
                let path = req.path.unwrap_or_default().to_owned();
                return Ok(Some(Head::Complete { method, path }));
            }
            Ok(httparse::Status::Partial) => continue,
            Err(httparse::Error::TooManyHeaders) => {
                return Ok(Some(Head::Refuse(AdminResponse::text(
                    431,
                    "too many headers\n",
                ))));
            }
            Err(_) => {
                return Ok(Some(Head::Refuse(AdminResponse::text(
                    400,
                    "bad request\n",
                ))))
            }
        }
    }
}

fn handle_conn(mut stream: TcpStream, registry: &Registry, ready: &AtomicBool) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let (resp, head_only) = match read_head(&mut stream)? {
        None => return Ok(()),
        Some(Head::Refuse(r)) => (r, false),
        Some(Head::Complete { method, path }) => {
            let is_ready = ready.load(Ordering::Acquire);
            (route(&method, &path, registry, is_ready), method == "HEAD")
        }
    };
    let mut out =
        format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len(),
        if resp.status == 405 { "Allow: GET, HEAD\r\n" } else { "" },
    );
    if !head_only {
        out.push_str(&resp.body);
    }
    stream.write_all(out.as_bytes())?;
    stream.flush()?;
    linger(&mut stream);
    Ok(())
}

/// Half-closes and discards what the peer still sends (bounded in bytes and time), so that
/// unread request bytes do not turn our close into a reset that destroys the response.
fn linger(stream: &mut TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let _ = stream.set_read_timeout(Some(LINGER));
    let mut sink = [0u8; 4096];
    let mut left = MAX_REQUEST * 8;
    while left > 0 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Routes one request (sans-IO): `GET`/`HEAD` of `/metrics`, `/healthz`, `/readyz`; any
/// query string is ignored. `ready` is the relay's readiness flag; readiness also requires
/// a healthy usage-log sink.
pub fn route(method: &str, path: &str, registry: &Registry, ready: bool) -> AdminResponse {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let known = matches!(path, "/metrics" | "/healthz" | "/readyz");
    if !known {
        return AdminResponse::text(404, "not found\n");
    }
    if method != "GET" && method != "HEAD" {
        return AdminResponse::text(405, "method not allowed\n");
    }
    match path {
        "/metrics" => AdminResponse {
            status: 200,
            content_type: METRICS_CONTENT_TYPE,
            body: registry.render(),
        },
        "/healthz" => AdminResponse::text(200, "ok"),
        _ if !ready => AdminResponse::text(503, "not ready\n"),
        _ if !registry.sink_metrics().healthy() => {
            AdminResponse::text(503, "usage log unavailable\n")
        }
        _ if registry.sink_metrics().backpressured() => {
            AdminResponse::text(503, "usage log behind\n")
        }
        _ if registry.fleet_metrics().backlogged() => {
            AdminResponse::text(503, "usage export behind\n")
        }
        _ => AdminResponse::text(200, "ready"),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}
