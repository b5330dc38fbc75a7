//! A fake OpenAI Responses WebSocket upstream for the relay's integration tests
//! and for load runs.
//!
//! It speaks the protocol in `shared/protocol.md`: each `response.create` yields
//! `response.created`, `.in_progress`, `.output_item.added`, `.content_part.added`,
//! N × `.output_text.delta`, `.output_text.done`, `.content_part.done`,
//! `.output_item.done` and a terminal event carrying `response.usage`. Lanes
//! (`stream_id`) run concurrently (FIFO within a lane, ≤16 responses in flight per
//! connection); `generate:false` warm-ups, `previous_response_id` checks and the
//! connection-age limit behave like the real service. A create whose `tool_choice` forces a
//! client-owned function (`required`, or `{"type":"function","name":…}`) gets a
//! `function_call` streamed as `.function_call_arguments.delta`s instead of text; steering
//! and its `response.steer.pending` are in `stream`. Everything the mock sees and bills is
//! recorded for assertions.
//!
//! Usage is deterministic: `input_tokens = max(1, create frame bytes / 4)`,
//! `cached_tokens = input_tokens / 2` when `previous_response_id` is given,
//! `output_tokens` = deltas sent, `reasoning_tokens = output_tokens / 2` when the
//! create has a non-null `reasoning`, `total = input + output`.
//!
//! Per-request knobs in the create's `metadata`: `mock_fault` (see
//! [`Fault::from_metadata`]), `mock_deltas` (delta count) and `mock_terminal`
//! (`completed` | `incomplete` | `failed`).
//!
//! Masking of client frames is observed by a raw header tap under fastwebsockets
//! (see [`crate::frame_tap`]): [`ReceivedFrame::was_masked`] is the MASK bit as it
//! was on the wire.

mod conn;
mod ctx;
mod events;
mod fault;
mod lanes;
mod plan;
mod stream;
mod writer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::AbortHandle;

pub use crate::ledger::LedgerEntry;
pub use events::compute_units;
pub use fault::{Fault, FaultParseError};

/// How the mock upstream behaves. `MockConfig::default()` is a well-behaved
/// unpaced upstream on `127.0.0.1:0`.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Address to bind; `None` = `127.0.0.1:0`.
    pub listen: Option<SocketAddr>,
    /// Deltas per response (default 8).
    pub deltas: usize,
    /// Approximate payload size of each delta frame in bytes (default 190).
    pub delta_bytes: usize,
    /// Deltas per second per response; `None` = as fast as possible.
    pub token_rate: Option<f64>,
    /// Bytes of padding appended to the echoed `instructions` in the terminal
    /// event (default 2048).
    pub terminal_pad_bytes: usize,
    /// Serve `wss://` with this config (see [`crate::tls`]).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// After this long, send an `error` event `websocket_connection_limit_reached`
    /// and close with 1001.
    pub max_connection_age: Option<Duration>,
    /// Refuse every upgrade with this HTTP response.
    pub refuse: Option<Refusal>,
    /// Fault applied to every connection / response.
    pub fault: Option<Fault>,
    /// Extra headers in every 101 (e.g. `x-codex-turn-state`, `openai-model`).
    pub extra_101_headers: Vec<(String, String)>,
    /// Also append every ledger entry to this file as JSON lines.
    pub ledger_path: Option<PathBuf>,
    /// Echo every data frame back verbatim instead of speaking the protocol.
    pub echo: bool,
    /// Keep requests, received frames and the ledger in memory (default true;
    /// turn off for long load runs).
    pub record: bool,
    /// Largest frame accepted from a client (default 64 MiB).
    pub max_message_size: usize,
    /// Echo at most this many bytes of the streamed text in the `.done` events and the
    /// terminal event (default: all of it, as the API does). Lets a test stream 100 MB
    /// without a 100 MB terminal event.
    pub echo_text_limit: Option<usize>,
    /// Unpaced only: deltas queued before the lane yields to the writer (default 1).
    /// Larger values let the writer put many frames in one syscall (firehose load).
    pub delta_burst: usize,
    /// How long a steering successor takes to start after its steered predecessor ended,
    /// and a steered function call's `response.steer.pending` to follow its
    /// `response.completed` (default 20 ms).
    pub successor_delay: Duration,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            listen: None,
            deltas: 8,
            delta_bytes: 190,
            token_rate: None,
            terminal_pad_bytes: 2048,
            tls: None,
            max_connection_age: None,
            refuse: None,
            fault: None,
            extra_101_headers: Vec::new(),
            echo_text_limit: None,
            ledger_path: None,
            echo: false,
            record: true,
            max_message_size: 64 << 20,
            delta_burst: 1,
            successor_delay: Duration::from_millis(20),
        }
    }
}

/// A refused upgrade: a plain HTTP response instead of a 101.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status (401, 429, 503…).
    pub status: u16,
    /// `Retry-After` header value, if any.
    pub retry_after: Option<String>,
    /// JSON body.
    pub body: String,
}

impl Refusal {
    /// A refusal with an OpenAI-shaped `{"error":{…}}` body.
    pub fn new(status: u16) -> Refusal {
        let (kind, code) = match status {
            401 => ("invalid_request_error", "invalid_api_key"),
            429 => ("rate_limit_error", "rate_limit_exceeded"),
            s if s >= 500 => ("server_error", "mock_unavailable"),
            _ => ("invalid_request_error", "mock_refused"),
        };
        let body = serde_json::json!({"error": {"type": kind, "code": code,
            "message": format!("mock upstream refused the upgrade with {status}"), "param": null}});
        Refusal {
            status,
            retry_after: None,
            body: body.to_string(),
        }
    }

    /// Adds a `Retry-After` header.
    pub fn with_retry_after(mut self, value: impl Into<String>) -> Refusal {
        self.retry_after = Some(value.into());
        self
    }
}

/// One upgrade request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Index of the TCP connection (0-based, accept order).
    pub conn: usize,
    /// Request method.
    pub method: String,
    /// Request target (path and query).
    pub path_and_query: String,
    /// Headers in wire order, names in their original case.
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::handshake::header(&self.headers, name)
    }
}

/// One WebSocket frame received from a client, after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedFrame {
    /// Index of the TCP connection (0-based, accept order).
    pub conn: usize,
    /// Opcode (0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong).
    pub opcode: u8,
    /// FIN bit.
    pub fin: bool,
    /// MASK bit as it was on the wire.
    pub was_masked: bool,
    /// RSV bits as they were on the wire.
    pub rsv: u8,
    /// Unmasked payload.
    pub payload: Vec<u8>,
}

/// State shared by the accept loop, connections and the handle.
#[derive(Debug)]
struct Shared {
    cfg: MockConfig,
    connections: AtomicUsize,
    open: AtomicUsize,
    upgrades: AtomicUsize,
    frames_sent: AtomicU64,
    bytes_sent: AtomicU64,
    requests: Mutex<Vec<RecordedRequest>>,
    received: Mutex<Vec<ReceivedFrame>>,
    ledger: Mutex<Vec<LedgerEntry>>,
    ledger_file: Option<Mutex<std::fs::File>>,
    id_prefix: u32,
    next_id: AtomicU64,
    tasks: Mutex<Vec<AbortHandle>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn new_id(&self, prefix: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}_{:08x}{n:016x}", self.id_prefix)
    }

    fn record_ledger(&self, entry: LedgerEntry) {
        if let Some(f) = &self.ledger_file {
            if let Ok(mut line) = serde_json::to_vec(&entry) {
                line.push(b'\n');
                let _ = std::io::Write::write_all(&mut *lock(f), &line);
            }
        }
        if self.cfg.record {
            lock(&self.ledger).push(entry);
        }
    }

    fn track(&self, h: AbortHandle) {
        let mut t = lock(&self.tasks);
        if t.len() >= 1024 {
            t.retain(|h| !h.is_finished());
        }
        t.push(h);
    }
}

/// A running mock upstream. Dropping it (or [`MockUpstream::shutdown`]) stops the
/// listener and every connection.
#[derive(Debug)]
pub struct MockUpstream {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl MockUpstream {
    /// Binds (`cfg.listen` or `127.0.0.1:0`) and serves in tokio tasks.
    pub async fn start(cfg: MockConfig) -> anyhow::Result<MockUpstream> {
        let listen = cfg
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let ledger_file = match &cfg.ledger_path {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            )),
            None => None,
        };
        let shared = Arc::new(Shared {
            cfg,
            connections: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            upgrades: AtomicUsize::new(0),
            frames_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            requests: Mutex::default(),
            received: Mutex::default(),
            ledger: Mutex::default(),
            ledger_file,
            id_prefix: fastrand::u32(..),
            next_id: AtomicU64::new(1),
            tasks: Mutex::default(),
        });
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((tcp, _)) => {
                        let id = s.connections.fetch_add(1, Ordering::SeqCst);
                        let task = tokio::spawn(conn::serve(s.clone(), tcp, id));
                        s.track(task.abort_handle());
                    }
                    // EMFILE and friends: back off instead of spinning.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        });
        shared.track(accept.abort_handle());
        Ok(MockUpstream { shared, addr })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT`, or `wss://localhost:PORT` when serving TLS.
    pub fn url(&self) -> String {
        match self.shared.cfg.tls {
            Some(_) => format!("wss://localhost:{}", self.addr.port()),
            None => format!("ws://{}", self.addr),
        }
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// TCP connections currently open.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Upgrades answered with 101 so far.
    pub fn upgrades(&self) -> usize {
        self.shared.upgrades.load(Ordering::SeqCst)
    }

    /// Data messages (text, binary, echoed frames) written to clients so far,
    /// counted after each successful socket write; control frames excluded.
    pub fn frames_sent(&self) -> u64 {
        self.shared.frames_sent.load(Ordering::Relaxed)
    }

    /// Payload bytes of [`Self::frames_sent`] (frame headers excluded).
    pub fn bytes_sent(&self) -> u64 {
        self.shared.bytes_sent.load(Ordering::Relaxed)
    }

    /// A cheap, thread-safe handle to this mock's counters that outlives borrows
    /// of the mock (e.g. to read them from another thread).
    pub fn counters(&self) -> MockCounters {
        MockCounters(self.shared.clone())
    }

    /// Every upgrade request received, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Every frame received from clients, in arrival order (all connections).
    pub fn received(&self) -> Vec<ReceivedFrame> {
        lock(&self.shared.received).clone()
    }

    /// Usage sent, one entry per terminal event, in the order written.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        lock(&self.shared.ledger).clone()
    }

    /// Polls until the ledger holds at least `n` entries or `timeout` passes;
    /// returns the ledger either way.
    pub async fn wait_for_ledger(&self, n: usize, timeout: Duration) -> Vec<LedgerEntry> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let l = self.ledger();
            if l.len() >= n || tokio::time::Instant::now() >= deadline {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the listener and every connection (same as dropping).
    pub fn shutdown(self) {}
}

/// Counters of a running mock, readable from any thread (see
/// [`MockUpstream::counters`]).
#[derive(Debug, Clone)]
pub struct MockCounters(Arc<Shared>);

impl MockCounters {
    /// Same as [`MockUpstream::frames_sent`].
    pub fn frames_sent(&self) -> u64 {
        self.0.frames_sent.load(Ordering::Relaxed)
    }

    /// Same as [`MockUpstream::bytes_sent`].
    pub fn bytes_sent(&self) -> u64 {
        self.0.bytes_sent.load(Ordering::Relaxed)
    }

    /// Same as [`MockUpstream::connections`].
    pub fn connections(&self) -> usize {
        self.0.connections.load(Ordering::SeqCst)
    }

    /// Same as [`MockUpstream::open_connections`].
    pub fn open_connections(&self) -> usize {
        self.0.open.load(Ordering::SeqCst)
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        for t in lock(&self.shared.tasks).drain(..) {
            t.abort();
        }
    }
}
