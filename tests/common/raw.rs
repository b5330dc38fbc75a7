//! Raw-socket peers: upgrade requests and HTTP responses by hand, WebSocket frames built and
//! read byte by byte (for what a well-behaved client library would never send).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::RELAY_KEY;

/// A valid upgrade request head with `extra` header lines (each ending in CRLF).
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// The auth header line for [`RELAY_KEY`].
pub fn auth_line() -> String {
    format!("Authorization: Bearer {RELAY_KEY}\r\n")
}

/// Send raw bytes, read the whole HTTP response head (+ body up to EOF or `Content-Length`).
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    s.write_all(request).expect("write");
    read_http_response(&mut s)
}

/// Read one HTTP response (head and, for non-101, body to EOF) from `s`.
pub fn read_http_response(s: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).to_string();
            let status: u16 = head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            if status == 101 {
                return (status, head);
            }
            // Read the body to EOF (the relay closes after an error response).
            while let Ok(n) = s.read(&mut tmp) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            return (status, String::from_utf8_lossy(&buf).to_string());
        }
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return (0, String::from_utf8_lossy(&buf).to_string()),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

/// Encode a client frame (masked with a fixed key unless `mask` is None).
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    let n = payload.len();
    if n < 126 {
        out.push(mbit | n as u8);
    } else if n < 65536 {
        out.push(mbit | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(mbit | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// One frame read from the relay (server frames are unmasked).
#[derive(Debug)]
pub struct RawFrame {
    /// FIN bit.
    pub fin: bool,
    /// Opcode.
    pub opcode: u8,
    /// Whether the mask bit was set (must not be, from a server).
    pub masked: bool,
    /// Payload.
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// Close code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Read one frame; `None` on EOF.
pub fn read_frame(s: &mut TcpStream) -> Option<RawFrame> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).ok()?;
    let masked = h[1] & 0x80 != 0;
    let mut len = (h[1] & 0x7f) as u64;
    if len == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b).ok()?;
        len = u16::from_be_bytes(b) as u64;
    } else if len == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b).ok()?;
        len = u64::from_be_bytes(b);
    }
    let mut key = [0u8; 4];
    if masked {
        s.read_exact(&mut key).ok()?;
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).ok()?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Some(RawFrame {
        fin: h[0] & 0x80 != 0,
        opcode: h[0] & 0x0f,
        masked,
        payload,
    })
}

/// Read frames until a close frame (returned) or EOF (None).
pub fn read_until_close(s: &mut TcpStream) -> Option<RawFrame> {
    while let Some(f) = read_frame(s) {
        if f.opcode == 8 {
            return Some(f);
        }
    }
    None
}
