//! Dial the upstream: TCP (+ TLS, `crate::tls`), then the client half of the WebSocket
//! handshake, each bounded by a timeout. Every failure maps to what the client is told.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::pki_types::ServerName;

use super::handshake::{
    map_refusal, parse_response_with, ClientError, UpstreamHandshakeError, UpstreamReply,
    UpstreamRequest,
};
use crate::server::handshake::{HeadScanner, Limits};

/// An upstream connection after a successful handshake.
pub enum UpstreamConn {
    /// `ws://`
    Plain(TcpStream),
    /// `wss://`
    Tls(Box<crate::tls::ClientTlsStream>),
}

/// A dialed and upgraded upstream.
pub struct Dialed {
    /// The connection.
    pub conn: UpstreamConn,
    /// Upstream's 101 headers to copy into the client's 101.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Bytes read after the 101 head: already WebSocket frames.
    pub leftover: Vec<u8>,
    /// The TCP socket's descriptor (the session shuts it down to cut a stuck leg).
    pub fd: std::os::fd::RawFd,
}

/// Why dialing failed. [`DialError::client_error`] says what the client gets.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// No address for the upstream host (DNS).
    #[error("upstream host did not resolve")]
    Resolve,
    /// TCP connect failed on every address.
    #[error("upstream connect failed: {0}")]
    Connect(std::io::ErrorKind),
    /// TCP + TLS did not finish within `--upstream-connect-timeout`.
    #[error("upstream connect timed out")]
    ConnectTimeout,
    /// The TLS handshake failed (certificate, protocol).
    #[error("upstream TLS handshake failed: {0}")]
    Tls(String),
    /// The upgrade response did not arrive within `--upstream-handshake-timeout`.
    #[error("upstream handshake timed out")]
    HandshakeTimeout,
    /// The connection broke during the handshake.
    #[error("upstream connection failed during the handshake: {0}")]
    Io(std::io::ErrorKind),
    /// Upstream answered with an invalid 101 or malformed head.
    #[error("invalid upstream handshake: {0}")]
    Handshake(#[from] UpstreamHandshakeError),
    /// Upstream refused the upgrade with an HTTP status.
    #[error("upstream refused the upgrade with status {status}")]
    Refused {
        /// Upstream's status.
        status: u16,
        /// Its `Retry-After`.
        retry_after: Option<String>,
    },
}

impl DialError {
    /// The HTTP answer for the client: refusals per [`map_refusal`]; DNS, connect, TLS and
    /// protocol failures → 502; timeouts → 504.
    pub fn client_error(&self) -> ClientError {
        let gateway = |code: &'static str, message: String| ClientError {
            status: 502,
            err_type: "upstream_error",
            code,
            message,
            retry_after: None,
        };
        match self {
            DialError::Refused {
                status,
                retry_after,
            } => map_refusal(*status, retry_after.as_deref()),
            DialError::Handshake(e) => e.client_error(),
            DialError::Resolve => gateway("upstream_dns_failed", self.to_string()),
            DialError::Connect(_) => gateway("upstream_connect_failed", self.to_string()),
            DialError::Tls(_) => gateway("upstream_tls_failed", self.to_string()),
            DialError::Io(_) => gateway("upstream_connection_failed", self.to_string()),
            DialError::ConnectTimeout => ClientError {
                status: 504,
                err_type: "upstream_error",
                code: "upstream_connect_timeout",
                message: self.to_string(),
                retry_after: None,
            },
            DialError::HandshakeTimeout => ClientError {
                status: 504,
                err_type: "upstream_error",
                code: "upstream_handshake_timeout",
                message: self.to_string(),
                retry_after: None,
            },
        }
    }

    /// Short label for metrics.
    pub fn code(&self) -> &'static str {
        self.client_error().code
    }
}

/// Where and how to dial.
pub struct Target<'a> {
    /// Resolved addresses, tried in order.
    pub addrs: &'a [SocketAddr],
    /// TLS connector and SNI name for `wss://`.
    pub tls: Option<(&'a crate::tls::TlsConnector, ServerName<'static>)>,
    /// TCP + TLS timeout.
    pub connect_timeout: Duration,
    /// Request → 101 timeout.
    pub handshake_timeout: Duration,
    /// Response head limits.
    pub limits: Limits,
}

/// Connect, upgrade, validate.
pub async fn dial(t: &Target<'_>, req: &UpstreamRequest) -> Result<Dialed, DialError> {
    let connect = async {
        let tcp = connect_any(t.addrs).await?;
        let _ = tcp.set_nodelay(true);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
        match &t.tls {
            None => Ok((UpstreamConn::Plain(tcp), fd)),
            Some((connector, name)) => connector
                .connect(name.clone(), tcp)
                .await
                .map(|s| (UpstreamConn::Tls(Box::new(s)), fd))
                .map_err(|e| DialError::Tls(e.to_string())),
        }
    };
    let (conn, fd) = monoio::time::timeout(t.connect_timeout, connect)
        .await
        .map_err(|_| DialError::ConnectTimeout)??;
    let upgrade = async move {
        match conn {
            UpstreamConn::Plain(mut s) => upgrade(&mut s, req, &t.limits)
                .await
                .map(|(h, l)| (UpstreamConn::Plain(s), h, l)),
            UpstreamConn::Tls(mut s) => upgrade(&mut *s, req, &t.limits)
                .await
                .map(|(h, l)| (UpstreamConn::Tls(s), h, l)),
        }
    };
    let (conn, headers, leftover) = monoio::time::timeout(t.handshake_timeout, upgrade)
        .await
        .map_err(|_| DialError::HandshakeTimeout)??;
    Ok(Dialed {
        conn,
        headers,
        leftover,
        fd,
    })
}

async fn connect_any(addrs: &[SocketAddr]) -> Result<TcpStream, DialError> {
    let mut last = DialError::Resolve;
    for a in addrs {
        match TcpStream::connect_addr(*a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = DialError::Connect(e.kind()),
        }
    }
    Err(last)
}

type Upgraded = (Vec<(String, Vec<u8>)>, Vec<u8>);

async fn upgrade<S: AsyncReadRent + AsyncWriteRent>(
    s: &mut S,
    req: &UpstreamRequest,
    limits: &Limits,
) -> Result<Upgraded, DialError> {
    let (res, _) = s.write_all(req.bytes.clone()).await;
    res.map_err(|e| DialError::Io(e.kind()))?;
    let mut buf: Vec<u8> = Vec::with_capacity(limits.max_header_bytes.max(4096) + 4096);
    let mut scanner = HeadScanner::new();
    loop {
        let len = buf.len();
        let cap = buf.capacity();
        if len == cap {
            return Err(DialError::Handshake(UpstreamHandshakeError::MalformedHead));
        }
        let (res, b) = s.read(buf.slice_mut(len..cap)).await;
        buf = b.into_inner();
        match res {
            Ok(0) => return Err(DialError::Io(std::io::ErrorKind::UnexpectedEof)),
            Ok(_) => {}
            Err(e) => return Err(DialError::Io(e.kind())),
        }
        match parse_response_with(
            &buf,
            &req.ws_key,
            req.offered_protocols.as_deref(),
            limits,
            &mut scanner,
        )? {
            None => continue,
            Some(UpstreamReply::Upgraded { headers, head_len }) => {
                let leftover = buf.split_off(head_len);
                return Ok((headers, leftover));
            }
            Some(UpstreamReply::Refused {
                status,
                retry_after,
                ..
            }) => {
                return Err(DialError::Refused {
                    status,
                    retry_after,
                })
            }
        }
    }
}

/// Build the rustls client config: system roots plus `extra_ca` (PEM), ALPN http/1.1,
/// verification always on.
pub fn client_tls_config(
    extra_ca: Option<&std::path::Path>,
) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca {
        let pem =
            std::fs::read(path).map_err(|e| TlsConfigError::Read(path.display().to_string(), e))?;
        let mut n = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| TlsConfigError::Read(path.display().to_string(), e))?;
            roots
                .add(cert)
                .map_err(|e| TlsConfigError::Invalid(path.display().to_string(), e.to_string()))?;
            n += 1;
        }
        if n == 0 {
            return Err(TlsConfigError::Invalid(
                path.display().to_string(),
                "no certificates found".into(),
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Invalid("client".into(), e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Build the rustls server config for a `wss://` client listener.
pub fn server_tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let cert_pem =
        std::fs::read(cert).map_err(|e| TlsConfigError::Read(cert.display().to_string(), e))?;
    let key_pem =
        std::fs::read(key).map_err(|e| TlsConfigError::Read(key.display().to_string(), e))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::Read(cert.display().to_string(), e))?;
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| TlsConfigError::Read(key.display().to_string(), e))?
        .ok_or_else(|| {
            TlsConfigError::Invalid(key.display().to_string(), "no private key found".into())
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Invalid("server".into(), e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| TlsConfigError::Invalid(cert.display().to_string(), e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A TLS file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// Reading the file failed.
    #[error("{0}: {1}")]
    Read(String, std::io::Error),
    /// The file's contents were rejected.
    #[error("{0}: {1}")]
    Invalid(String, String),
}
