//! One generator connection: TCP (optionally from a chosen source address), the
//! HTTP/1.1 upgrade, then a buffered frame reader and a batching masked writer.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use super::wire::{self, FrameHead};
use super::GenError;
use crate::handshake;

/// Largest frame payload the generator accepts (terminal events, bulk frames).
pub const MAX_PAYLOAD: usize = 16 << 20;
const READ_CHUNK: usize = 256 * 1024;
const MAX_HEAD: usize = 16 * 1024;

/// Where to connect: parsed from `ws://host:port[/path]` (or `wss://` with a CA).
#[derive(Clone)]
pub struct Target {
    /// Socket address to dial.
    pub addr: SocketAddr,
    /// `Host` header value.
    pub authority: String,
    /// Request target.
    pub path: String,
    /// `wss://`: the TLS client config and the server name to verify.
    pub tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("addr", &self.addr)
            .field("authority", &self.authority)
            .field("path", &self.path)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl PartialEq for Target {
    fn eq(&self, o: &Target) -> bool {
        (self.addr, &self.authority, &self.path, self.tls.is_some())
            == (o.addr, &o.authority, &o.path, o.tls.is_some())
    }
}

impl Target {
    /// Parses `ws://IP:PORT[/path]` (default path `/v1/responses`). Host names other
    /// than `localhost` are not supported by the generator; `wss://` needs a CA
    /// ([`Target::parse_tls`]).
    pub fn parse(url: &str) -> Result<Target, GenError> {
        Self::parse_tls(url, None)
    }

    /// [`Target::parse`], also accepting `wss://` verified against `ca_pem` (the server
    /// name is `localhost`, which the test certificates carry besides `127.0.0.1`).
    pub fn parse_tls(url: &str, ca_pem: Option<&[u8]>) -> Result<Target, GenError> {
        let bad = || GenError::InvalidTarget {
            url: url.to_string(),
        };
        let (rest, tls) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
            (Some(r), _) => (r, None),
            (None, Some(r)) => {
                let ca = ca_pem.ok_or_else(bad)?;
                let cfg = crate::tls::client_config(ca).map_err(|_| bad())?;
                let name = rustls::pki_types::ServerName::try_from("localhost")
                    .map_err(|_| bad())?
                    .to_owned();
                (r, Some((tokio_rustls::TlsConnector::from(cfg), name)))
            }
            _ => return Err(bad()),
        };
        let split = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let addr: SocketAddr = match authority.strip_prefix("localhost:") {
            Some(port) => SocketAddr::from(([127, 0, 0, 1], port.parse().map_err(|_| bad())?)),
            None => authority.parse().map_err(|_| bad())?,
        };
        let path = if path.is_empty() || path == "/" {
            "/v1/responses".to_string()
        } else {
            path.to_string()
        };
        Ok(Target {
            addr,
            authority: authority.to_string(),
            path,
            tls,
        })
    }
}

/// The read half of a plain or TLS connection (an enum, not a trait object: the
/// generator's hot loop stays statically dispatched).
#[derive(Debug)]
enum Rd {
    Plain(OwnedReadHalf),
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

impl Rd {
    async fn read(&mut self, dst: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Rd::Plain(r) => r.read(dst).await,
            Rd::Tls(r) => r.read(dst).await,
        }
    }
}

/// The write half of a plain or TLS connection.
#[derive(Debug)]
enum Wr {
    Plain(OwnedWriteHalf),
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

impl Wr {
    async fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Wr::Plain(w) => w.write_all(b).await,
            Wr::Tls(w) => {
                w.write_all(b).await?;
                w.flush().await
            }
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            Wr::Plain(w) => w.shutdown().await,
            Wr::Tls(w) => w.shutdown().await,
        }
    }
}

/// The read side: a growable buffer walked frame by frame.
#[derive(Debug)]
pub struct WsReader {
    rd: Rd,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    consume: usize,
}

/// The write side: frames are encoded into a batch and written with one syscall.
#[derive(Debug)]
pub struct WsWriter {
    wr: Wr,
    out: Vec<u8>,
}

/// An upgraded connection.
#[derive(Debug)]
pub struct WsConn {
    /// Read side.
    pub reader: WsReader,
    /// Write side.
    pub writer: WsWriter,
}

async fn dial(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let s = match source {
        Some(ip) => {
            let sock = match ip {
                IpAddr::V4(_) => TcpSocket::new_v4()?,
                IpAddr::V6(_) => TcpSocket::new_v6()?,
            };
            sock.bind(SocketAddr::new(ip, 0))?;
            sock.connect(addr).await?
        }
        None => TcpStream::connect(addr).await?,
    };
    s.set_nodelay(true)?;
    Ok(s)
}

impl WsConn {
    /// Dials `t` (from `source` when given), sends the upgrade with
    /// `Authorization: Bearer <key>` when a key is given, and checks the 101.
    pub async fn connect(
        t: &Target,
        key: Option<&str>,
        source: Option<IpAddr>,
        timeout: Duration,
    ) -> Result<WsConn, GenError> {
        match tokio::time::timeout(timeout, Self::connect_inner(t, key, source)).await {
            Ok(r) => r,
            Err(_) => Err(GenError::Timeout),
        }
    }

    async fn connect_inner(
        t: &Target,
        key: Option<&str>,
        source: Option<IpAddr>,
    ) -> Result<WsConn, GenError> {
        let tcp = dial(t.addr, source).await.map_err(GenError::Connect)?;
        let (rd, mut wr) = match &t.tls {
            None => {
                let (r, w) = tcp.into_split();
                (Rd::Plain(r), Wr::Plain(w))
            }
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(GenError::Connect)?;
                let (r, w) = tokio::io::split(tls);
                (Rd::Tls(r), Wr::Tls(w))
            }
        };
        let ws_key = handshake::new_key();
        let auth = key
            .map(|k| format!("Authorization: Bearer {k}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {ws_key}\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n",
            t.path, t.authority
        );
        wr.write_all(req.as_bytes()).await.map_err(GenError::Io)?;
        let mut reader = WsReader {
            rd,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            consume: 0,
        };
        let head_len = loop {
            let filled = reader.buf.get(..reader.end).unwrap_or_default();
            if let Some(i) = filled.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if reader.end >= MAX_HEAD {
                return Err(GenError::BadUpgrade("response head too large"));
            }
            reader.fill().await?;
        };
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let head = reader.buf.get(..head_len).unwrap_or_default();
        match resp.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(GenError::BadUpgrade("malformed response head")),
        }
        let status = resp.code.unwrap_or(0);
        if status != 101 {
            return Err(GenError::Refused { status });
        }
        let accept = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
            .map(|h| h.value);
        if accept != Some(handshake::accept_key(&ws_key).as_bytes()) {
            return Err(GenError::BadUpgrade("wrong Sec-WebSocket-Accept"));
        }
        reader.start = head_len;
        Ok(WsConn {
            reader,
            writer: WsWriter {
                wr,
                out: Vec::with_capacity(4096),
            },
        })
    }
}

impl WsReader {
    /// Reads more bytes into the buffer (compacting or growing it first).
    async fn fill(&mut self) -> Result<(), GenError> {
        if self.start > 0 && (self.start == self.end || self.end + READ_CHUNK / 4 > self.buf.len())
        {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < READ_CHUNK / 4 {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let dst = self.buf.get_mut(self.end..).unwrap_or_default();
        let n = self.rd.read(dst).await.map_err(GenError::Io)?;
        if n == 0 {
            return Err(GenError::Eof);
        }
        self.end += n;
        Ok(())
    }

    /// The next complete server frame. Its payload stays readable through
    /// [`Self::payload`] until the next call.
    pub async fn next_frame(&mut self) -> Result<FrameHead, GenError> {
        self.start += std::mem::take(&mut self.consume);
        loop {
            let avail = self.buf.get(self.start..self.end).unwrap_or_default();
            if let Some(h) = wire::parse_server(avail, MAX_PAYLOAD).map_err(GenError::Wire)? {
                self.consume = h.total();
                return Ok(h);
            }
            self.fill().await?;
        }
    }

    /// Payload of the frame last returned by [`Self::next_frame`].
    pub fn payload(&self, h: &FrameHead) -> &[u8] {
        let from = self.start + h.header_len;
        self.buf.get(from..from + h.payload_len).unwrap_or_default()
    }
}

impl WsWriter {
    /// Queues one masked frame.
    pub fn queue(&mut self, opcode: u8, payload: &[u8]) {
        wire::encode_masked(
            &mut self.out,
            opcode,
            payload,
            fastrand::u32(..).to_ne_bytes(),
        );
    }

    /// Bytes queued.
    pub fn pending(&self) -> usize {
        self.out.len()
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), GenError> {
        if !self.out.is_empty() {
            self.wr.write_all(&self.out).await.map_err(GenError::Io)?;
            self.out.clear();
        }
        Ok(())
    }

    /// Sends a close frame (1000) and shuts the write side down.
    pub async fn close(&mut self) -> Result<(), GenError> {
        self.queue(wire::op::CLOSE, &1000u16.to_be_bytes());
        self.flush().await?;
        self.wr.shutdown().await.map_err(GenError::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = Target::parse("ws://127.0.0.1:9000").unwrap();
        assert_eq!((t.addr.port(), t.path.as_str()), (9000, "/v1/responses"));
        let t = Target::parse("ws://localhost:81/x?y").unwrap();
        assert_eq!(
            (t.addr.port(), t.path.as_str(), t.authority.as_str()),
            (81, "/x?y", "localhost:81")
        );
        assert!(
            Target::parse("wss://127.0.0.1:1").is_err(),
            "wss needs a CA"
        );
        assert!(Target::parse("ws://example.com:1").is_err());
    }
}
