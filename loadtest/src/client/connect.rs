//! Dialing: URL, TCP, TLS, the HTTP/1.1 upgrade and its validation.

use std::sync::Arc;
use std::time::Duration;

use fastwebsockets::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{ClientOpts, WsClient};
use crate::frame_tap::FrameTap;
use crate::handshake::{self, has_token, HeadError};
use crate::net::{Conn, FrameWriter, Stream};
use crate::tls::TlsError;

const MAX_REFUSAL_BODY: usize = 1 << 20;

/// Why [`connect`] did not yield a WebSocket.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not `ws://host[:port][/path]` or `wss://…`.
    #[error("invalid WebSocket URL {url:?}")]
    InvalidUrl {
        /// The URL given.
        url: String,
    },
    /// TCP connect or a socket error during the upgrade.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// `wss://` without `tls_ca_pem`, or an unusable CA / server name.
    #[error("TLS configuration: {0}")]
    TlsConfig(#[from] TlsError),
    /// `server_name` (or the URL host) is not a valid TLS name.
    #[error("invalid TLS server name {name:?}")]
    ServerName {
        /// The name given.
        name: String,
    },
    /// The TLS handshake failed (bad certificate, …).
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    /// Connect + TLS + upgrade took longer than `connect_timeout`.
    #[error("connect timed out")]
    Timeout,
    /// The response head could not be read or parsed.
    #[error("bad upgrade response: {0}")]
    Head(#[from] HeadError),
    /// The server answered with a non-101 status.
    #[error("upgrade refused with status {status}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Response headers in wire order.
        headers: Vec<(String, String)>,
        /// Response body (lossy UTF-8, at most 1 MiB).
        body: String,
    },
    /// `Sec-WebSocket-Accept` missing or wrong.
    #[error("bad Sec-WebSocket-Accept: expected {expected}, got {got:?}")]
    BadAccept {
        /// The value RFC 6455 requires.
        expected: String,
        /// The value received.
        got: Option<String>,
    },
    /// A 101 without `Upgrade: websocket` / `Connection: upgrade`.
    #[error("101 response lacks the {header} header")]
    NotUpgraded {
        /// The missing or wrong header.
        header: &'static str,
    },
    /// The 101 selects an extension this client cannot speak.
    #[error("server selected extension {value:?}")]
    UnexpectedExtension {
        /// The `Sec-WebSocket-Extensions` value.
        value: String,
    },
}

struct Target {
    tls: bool,
    host: String,
    port: u16,
    authority: String,
    path: Option<String>,
}

fn parse_url(url: &str) -> Option<Target> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("ws://") {
        (false, r)
    } else {
        (true, url.strip_prefix("wss://")?)
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None if tls => 443,
        None => 80,
    };
    if host.is_empty() {
        return None;
    }
    let path = match path {
        "" | "/" => None,
        p if p.starts_with('?') => Some(format!("/{p}")),
        p => Some(p.to_string()),
    };
    Some(Target {
        tls,
        host: host.to_string(),
        port,
        authority: authority.to_string(),
        path,
    })
}

/// Dials `url` (`ws://127.0.0.1:PORT[/path]` or `wss://localhost:PORT[/path]`) and
/// performs the upgrade. A path in the URL wins over `opts.path`.
pub async fn connect(url: &str, opts: ClientOpts) -> Result<WsClient, ConnectError> {
    let timeout = opts.connect_timeout;
    match tokio::time::timeout(timeout, connect_inner(url, opts)).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Timeout),
    }
}

async fn connect_inner(url: &str, opts: ClientOpts) -> Result<WsClient, ConnectError> {
    let t = parse_url(url).ok_or_else(|| ConnectError::InvalidUrl {
        url: url.to_string(),
    })?;
    let tcp = TcpStream::connect((t.host.as_str(), t.port)).await?;
    tcp.set_nodelay(true)?;
    let conn = if t.tls {
        let ca = opts.tls_ca_pem.as_deref().ok_or(TlsError::NoCertificate)?;
        let mut cfg = (*crate::tls::client_config(ca)?).clone();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = opts.server_name.clone().unwrap_or_else(|| t.host.clone());
        let sni = rustls::pki_types::ServerName::try_from(name.clone())
            .map_err(|_| ConnectError::ServerName { name })?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(sni, tcp)
            .await
            .map_err(ConnectError::Tls)?;
        Conn::ClientTls(Box::new(tls))
    } else {
        Conn::Plain(tcp)
    };
    let (stream, _rst) = Stream::new(conn);
    let mut io = BufReader::new(stream);

    let overridden = |n: &str| opts.headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(n));
    let key = handshake::header(&opts.headers, "sec-websocket-key")
        .map(str::to_string)
        .unwrap_or_else(handshake::new_key);
    let path = t.path.clone().unwrap_or_else(|| opts.path.clone());
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    let defaults = [
        ("Host", t.authority.as_str()),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key.as_str()),
        ("Sec-WebSocket-Version", "13"),
    ];
    for (n, v) in defaults.iter().filter(|(n, _)| !overridden(n)) {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    for (n, v) in &opts.headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    io.write_all(req.as_bytes()).await?;
    io.flush().await?;

    let head = handshake::parse_response(&handshake::read_head(&mut io).await?)?;
    if head.status != 101 {
        let body = read_body(&mut io, head.header("content-length")).await;
        return Err(ConnectError::Refused {
            status: head.status,
            headers: head.headers,
            body,
        });
    }
    let expected = handshake::accept_key(&key);
    let got = head.header("sec-websocket-accept").map(str::trim);
    if got != Some(expected.as_str()) {
        return Err(ConnectError::BadAccept {
            got: got.map(str::to_string),
            expected,
        });
    }
    if !has_token(head.header("upgrade"), "websocket") {
        return Err(ConnectError::NotUpgraded { header: "Upgrade" });
    }
    if !has_token(head.header("connection"), "upgrade") {
        return Err(ConnectError::NotUpgraded {
            header: "Connection",
        });
    }
    if let Some(ext) = head.header("sec-websocket-extensions") {
        return Err(ConnectError::UnexpectedExtension {
            value: ext.to_string(),
        });
    }

    let (rd, wr) = tokio::io::split(io);
    let (tap, queue) = FrameTap::new(rd);
    let (mut read, _unused) =
        fastwebsockets::after_handshake_split(tap, tokio::io::sink(), Role::Client);
    read.set_auto_close(false);
    read.set_auto_pong(false);
    read.set_max_message_size(opts.max_message_size);
    Ok(WsClient {
        status: head.status,
        response_headers: head.headers,
        read,
        tap: queue,
        writer: FrameWriter::new(wr),
        partial: None,
        close_sent: false,
        recv_timeout: opts.recv_timeout,
        max_message_size: opts.max_message_size,
    })
}

/// Reads a refusal body: `Content-Length` bytes, else until EOF (≤ 2 s), ≤ 1 MiB.
async fn read_body(io: &mut BufReader<Stream>, content_length: Option<&str>) -> String {
    let mut body = Vec::new();
    match content_length.and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(n) => {
            body.resize(n.min(MAX_REFUSAL_BODY), 0);
            if io.read_exact(&mut body).await.is_err() {
                body.clear();
            }
        }
        None => {
            let mut limited = io.take(MAX_REFUSAL_BODY as u64);
            let _ =
                tokio::time::timeout(Duration::from_secs(2), limited.read_to_end(&mut body)).await;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults_paths_and_ipv6() {
        let t = parse_url("ws://127.0.0.1:9000").expect("url");
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.path),
            (false, "127.0.0.1", 9000, None)
        );
        let t = parse_url("wss://localhost/v1/responses?x=1").expect("url");
        assert_eq!(
            (t.tls, t.port, t.path.as_deref()),
            (true, 443, Some("/v1/responses?x=1"))
        );
        let t = parse_url("ws://[::1]:80?q").expect("url");
        assert_eq!(
            (t.host.as_str(), t.authority.as_str(), t.path.as_deref()),
            ("::1", "[::1]:80", Some("/?q"))
        );
        assert!(parse_url("http://x").is_none());
        assert!(parse_url("ws://:80").is_none());
        assert!(parse_url("ws://h:notaport").is_none());
    }
}
