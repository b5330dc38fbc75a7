//! The load generator behind `loadtest run`.
//!
//! Thread-per-core: `threads` OS threads, each with its own tokio
//! `current_thread` runtime and a `LocalSet`; session `i` lives on thread
//! `i % threads` for its whole life. Nothing is shared per frame (histograms and
//! counters are thread-local `Rc<RefCell<…>>`, merged once at the end), and no
//! task ever migrates between cores, so a wake-up never crosses cores — the same
//! reason the relay is built this way. A multi-thread runtime would work-steal
//! sessions across cores and make the generator's own latency noisier.
//!
//! Latencies are measured from each frame's *scheduled* time (open loop), so a
//! stalled system under test cannot hide queueing delay (coordinated omission):
//! - `stream`/`firehose`: `response.create` at scheduled times; time to first
//!   delta, gaps between deltas, whole turn;
//! - `echo`: frames carrying their scheduled send time through an echoing mock,
//!   released by a `timerfd` (µs precision) when `--rate` is given, or a closed
//!   window per connection without it (bulk);
//! - `idle`: many open sessions pinging periodically (memory per session);
//! - `churn`: connect + upgrade + one turn + close.

pub mod conn;
mod echo;
pub mod hops;
mod idle;
pub mod local_loop;
mod perf_record;
pub mod procfs;
mod report;
mod run;
pub mod stats;
mod stream;
pub mod timer;
pub mod window;
pub mod wire;

use std::net::IpAddr;
use std::time::Duration;

pub use report::{Report, SutReport};
pub use run::run;

/// Which load to generate.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Responses turns: create → paced deltas → terminal event with usage.
    Stream,
    /// Responses turns against an unpaced mock with many deltas per response.
    Firehose,
    /// Frames echoed by a `--echo` mock (latency sweep with `--rate`; bulk without).
    Echo,
    /// Open sessions and keep them idle, pinging every `--ping-interval`.
    Idle,
    /// Connect + upgrade + one turn + close, repeatedly.
    Churn,
}

impl Workload {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Stream => "stream",
            Workload::Firehose => "firehose",
            Workload::Echo => "echo",
            Workload::Idle => "idle",
            Workload::Churn => "churn",
        }
    }
}

/// What `loadtest run` does.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// `ws://IP:PORT[/path]` of the relay or the mock.
    pub target: String,
    /// Sent as `Authorization: Bearer <key>`.
    pub key: Option<String>,
    /// The load.
    pub workload: Workload,
    /// Connections (sessions).
    pub sessions: usize,
    /// Turns per session; `None` = run for `duration`.
    pub turns: Option<u64>,
    /// How long to offer load when `turns` is `None`.
    pub duration: Duration,
    /// Open-loop rate across all sessions: turns/s (stream, firehose, churn) or
    /// frames/s (echo); `None` = closed loop.
    pub rate: Option<f64>,
    /// Generator threads (one current-thread runtime each).
    pub threads: usize,
    /// Echo payload bytes.
    pub frame_bytes: usize,
    /// Echo frames outstanding per connection in closed loop.
    pub window: usize,
    /// Approximate size of each `response.create`.
    pub create_bytes: usize,
    /// Client source addresses, used round-robin (empty = the kernel's choice).
    pub source_addrs: Vec<IpAddr>,
    /// Idle: ping period per session.
    pub ping_interval: Duration,
    /// Idle: turns (a `response.create` read to its terminal event) each session completes
    /// before it idles — a session between turns, as a relay holds them in production —
    /// after a warm-up (as many sessions as the run opens at once, as many turns each) has
    /// run before the SUT's memory is sampled, so that one-time growth (a usage log's
    /// writer, state built on first use, the turns in flight) is not charged to the
    /// sessions. 0: sessions idle from the handshake on, nothing warms up.
    pub idle_turns: u64,
    /// Processes of the system under test (CPU and memory are read from /proc).
    pub sut_pids: Vec<u32>,
    /// Show a progress bar (still hidden when stderr is not a terminal).
    pub progress: bool,
    /// Bound on connect + upgrade.
    pub connect_timeout: Duration,
    /// How long in-flight work may finish after the load stops.
    pub drain_timeout: Duration,
    /// CA (PEM) to verify a `wss://` target against.
    pub tls_ca_pem: Option<Vec<u8>>,
    /// What runs over the measurement window besides reading `/proc`.
    pub probes: Probes,
    /// Run generator thread 0's work on this event loop (the mock's, in the bench's latency
    /// sweep: [`local_loop`]) instead of on a thread of its own.
    pub host: Option<local_loop::LoopHandle>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            target: "ws://127.0.0.1:8080".to_string(),
            key: None,
            workload: Workload::Stream,
            sessions: 10,
            turns: None,
            duration: Duration::from_secs(10),
            rate: None,
            threads: 1,
            frame_bytes: 200,
            window: 4,
            create_bytes: 1500,
            source_addrs: Vec::new(),
            ping_interval: Duration::from_secs(1),
            idle_turns: 1,
            sut_pids: Vec::new(),
            progress: true,
            connect_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            tls_ca_pem: None,
            probes: Probes::Split,
            host: None,
        }
    }
}

/// What a run's measurement window runs besides reading `/proc` ([`window`]). Each is a
/// `perf` process of its own, and they run where the bench's main process may, on the load
/// core too, so a case that measures latency runs none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probes {
    /// Nothing but `/proc`: CPU per frame and per thread, no syscall count, no user/kernel
    /// split. For the latency cases: with `perf stat` and `perf record` running over the
    /// window, their processes took the load core from the generator and the mock for
    /// milliseconds at a time, and every relay's echo p99 at 2k–8k/s was 3–4 ms against
    /// 0.4–2 ms without them (direct, which has no SUT and so never ran them, 0.1–0.2 ms).
    None,
    /// `perf stat -e raw_syscalls:sys_enter` (syscalls per frame) and the `cpu-clock`
    /// sampler (user space against kernel): the CPU cases.
    Split,
    /// `perf stat` and the hop trace ([`hops`]).
    Hops,
}

/// Failures of one generator connection or of the run.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// `--target` is not `ws://IP:PORT[/path]`.
    #[error("target {url:?} is not ws://IP:PORT[/path] (wss and host names are not supported)")]
    InvalidTarget {
        /// The URL given.
        url: String,
    },
    /// TCP connect failed.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// A socket error after connecting.
    #[error("i/o: {0}")]
    Io(std::io::Error),
    /// The upgrade was answered with a non-101 status.
    #[error("upgrade refused with HTTP {status}")]
    Refused {
        /// HTTP status.
        status: u16,
    },
    /// The 101 response was malformed.
    #[error("bad upgrade response: {0}")]
    BadUpgrade(&'static str),
    /// A server frame header was invalid.
    #[error("bad frame: {0}")]
    Wire(wire::WireError),
    /// The server closed the WebSocket.
    #[error("server closed the WebSocket")]
    Closed,
    /// The server sent an `error` event.
    #[error("server sent an error event")]
    ErrorEvent,
    /// The server closed TCP.
    #[error("connection closed (EOF)")]
    Eof,
    /// Connect or a turn took longer than allowed.
    #[error("timed out")]
    Timeout,
    /// A runtime, thread or timer could not be created.
    #[error("cannot start the generator: {0}")]
    Runtime(std::io::Error),
    /// The configuration cannot work (zero sessions, zero threads, rate ≤ 0).
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// A session of the idle run's warm-up failed (nothing was measured).
    #[error("warm-up before the memory sample: {0}")]
    WarmUp(Box<GenError>),
}
