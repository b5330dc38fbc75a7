//! The command line (and `--config FILE`, see [`file`]), parsed by clap, turned into a
//! validated [`Config`].
//!
//! Every flag has a `TOLLGATE_*` environment fallback and its default in `--help`, and can
//! be set in the config file under its long name. Anything invalid is a [`ConfigError`]
//! naming the flag; `main` exits 64 (EX_USAGE) on it.

pub mod file;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::ffi::OsString;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::route::{Route, Routes};
use crate::upstream::url::parse_upstream_url;
use file::{FileError, RouteTable};

/// Which io driver each worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Driver {
    /// io_uring, falling back to epoll when io_uring cannot start.
    Auto,
    /// io_uring only; fail to start without it.
    Uring,
    /// epoll (monoio's legacy driver).
    Epoll,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable key=value lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Tools run instead of the relay.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Tool {
    /// Relay-issued client keys.
    #[command(subcommand)]
    Keys(KeysTool),
}

/// `tollgate keys …`
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum KeysTool {
    /// Print a fresh random key, then the keys-file line that accepts it (its `sha256:`
    /// hash, so the file holds no plaintext). Give the key to the client; put the line in
    /// the `--client-keys` file; `kill -HUP` the relay.
    New {
        /// Tenant name for the keys-file line.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Print the keys-file line (`<tenant> sha256:<hex>`) for an existing key.
    Hash {
        /// The key.
        key: String,
        /// Tenant name for the keys-file line.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
}

/// tollgate — an edge relay for the OpenAI Responses API WebSocket mode.
///
/// Clients connect with `ws://` (or `wss://` with --tls-cert/--tls-key); the relay
/// authenticates them, dials the upstream WebSocket first, then forwards frames both ways
/// and meters every response.
#[derive(Parser, Debug, Clone)]
#[command(name = "tollgate", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// A tool instead of the relay (`tollgate keys new`, `tollgate keys hash KEY`).
    #[command(subcommand)]
    pub tool: Option<Tool>,

    /// Settings file (TOML): any flag under its long name, and `[[route]]` tables. The
    /// command line and `TOLLGATE_*` variables override it.
    #[arg(long, env = "TOLLGATE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Validate the flags, the config file and the files they name (keys, TLS material,
    /// CA bundles), print a summary, and exit: 0 if valid, 64 naming the problem.
    #[arg(long)]
    pub check_config: bool,

    /// The route a client gets when neither a path prefix nor its key names one
    /// [default: the first `[[route]]`].
    #[arg(long, env = "TOLLGATE_DEFAULT_ROUTE")]
    pub default_route: Option<String>,

    /// Models clients may ask for on the `--upstream` route (repeatable); unset = any.
    /// With `[[route]]` tables, each route has its own `models` list instead.
    #[arg(
        long = "allow-model",
        env = "TOLLGATE_ALLOW_MODEL",
        value_delimiter = ','
    )]
    pub allow_models: Vec<String>,

    /// Routes from the config file (not a flag).
    #[arg(skip)]
    pub file_routes: Vec<RouteTable>,

    /// Which route-describing flags (`--upstream`, …) were set (command line, environment
    /// or file): with `[[route]]` tables they are an error.
    #[arg(skip)]
    pub route_flags_given: Vec<&'static str>,

    /// Address the client listener binds (one SO_REUSEPORT socket per worker).
    #[arg(long, env = "TOLLGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Worker threads, one pinned per core [default: available cores].
    #[arg(long, env = "TOLLGATE_WORKERS")]
    pub workers: Option<usize>,

    /// io driver: auto (io_uring, epoll fallback), uring, epoll.
    #[arg(long, env = "TOLLGATE_DRIVER", value_enum, default_value_t = Driver::Auto)]
    pub driver: Driver,

    /// Do not pin worker threads to cores.
    #[arg(long, env = "TOLLGATE_NO_PIN")]
    pub no_pin: bool,

    /// PEM certificate chain for a TLS (wss://) client listener.
    #[arg(long, env = "TOLLGATE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for the TLS client listener.
    #[arg(long, env = "TOLLGATE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Managed auth: file of `<tenant> <key>` lines (`sha256:<hex>` keys allowed).
    #[arg(long, env = "TOLLGATE_CLIENT_KEYS")]
    pub client_keys: Option<PathBuf>,

    /// Passthrough auth: the client's own credential goes upstream unchanged.
    #[arg(long, env = "TOLLGATE_PASSTHROUGH_AUTH")]
    pub passthrough_auth: bool,

    /// Header injected upstream in managed mode, `Name: value`, `${VAR}` expanded at start
    /// (repeatable) [default: `Authorization: Bearer ${OPENAI_API_KEY}`].
    #[arg(
        long = "upstream-header",
        env = "TOLLGATE_UPSTREAM_HEADER",
        value_delimiter = '\n'
    )]
    pub upstream_headers: Vec<String>,

    /// Upstream base URL; the client's path and query are appended.
    #[arg(
        long,
        env = "TOLLGATE_UPSTREAM",
        default_value = "wss://api.openai.com"
    )]
    pub upstream: String,

    /// Extra PEM CA bundle trusted for the upstream (in addition to the system roots).
    #[arg(long, env = "TOLLGATE_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,

    /// Upstream TCP + TLS connect timeout.
    #[arg(long, env = "TOLLGATE_UPSTREAM_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub upstream_connect_timeout: Duration,

    /// Upstream WebSocket handshake timeout (request sent → 101 read).
    #[arg(long, env = "TOLLGATE_UPSTREAM_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub upstream_handshake_timeout: Duration,

    /// Allowed `Origin` values (exact match, repeatable); unset = any origin.
    #[arg(
        long = "allowed-origin",
        env = "TOLLGATE_ALLOWED_ORIGIN",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Largest client request head in bytes.
    #[arg(long, env = "TOLLGATE_MAX_HEADER_BYTES", default_value = "16KiB", value_parser = parse_size)]
    pub max_header_bytes: u64,

    /// Most header lines in a client request head.
    #[arg(long, env = "TOLLGATE_MAX_HEADERS", default_value_t = 100)]
    pub max_headers: usize,

    /// Time a client has to send its complete upgrade request.
    #[arg(long, env = "TOLLGATE_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// Largest single frame payload, either direction (close 1009 above it).
    #[arg(long, env = "TOLLGATE_MAX_FRAME_BYTES", default_value = "16MiB", value_parser = parse_size)]
    pub max_frame_bytes: u64,

    /// Largest client→upstream message (close 1009 above it).
    #[arg(long, env = "TOLLGATE_MAX_MESSAGE_BYTES_UP", default_value = "16MiB", value_parser = parse_size)]
    pub max_message_bytes_up: u64,

    /// Largest upstream→client message (close 1009 above it).
    #[arg(long, env = "TOLLGATE_MAX_MESSAGE_BYTES_DOWN", default_value = "64MiB", value_parser = parse_size)]
    pub max_message_bytes_down: u64,

    /// Most frames in one fragmented message (close 1008 above it).
    #[arg(long, env = "TOLLGATE_MAX_FRAGMENTS", default_value_t = 4096)]
    pub max_fragments: u32,

    /// Read buffer per direction per session.
    #[arg(long, env = "TOLLGATE_BUFFER_BYTES", default_value = "64KiB", value_parser = parse_size)]
    pub buffer_bytes: u64,

    /// Close a session with 1001 after this long without a frame in either direction.
    #[arg(long, env = "TOLLGATE_IDLE_TIMEOUT", default_value = "300s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Close a session with 1001 once it is this old and has no response in flight (or
    /// `--drain-timeout` after that with one); `0s` = no limit.
    #[arg(long, env = "TOLLGATE_MAX_CONNECTION_AGE", default_value = "60m", value_parser = parse_duration)]
    pub max_connection_age: Duration,

    /// On SIGTERM/SIGINT: how long in-flight sessions may finish before they are closed 1001.
    #[arg(long, env = "TOLLGATE_DRAIN_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Diagnostic byte tunnel: after the handshake copy bytes both ways without walking
    /// frames (no metering). The benchmark's in-run ceiling.
    #[arg(long, env = "TOLLGATE_TUNNEL")]
    pub tunnel: bool,

    /// Usage log (JSON Lines, group-committed); `-` = stdout; unset = no usage log.
    #[arg(long, env = "TOLLGATE_USAGE_LOG")]
    pub usage_log: Option<String>,

    /// Group-commit interval of the usage log.
    #[arg(long, env = "TOLLGATE_USAGE_FSYNC_MS", default_value_t = 10)]
    pub usage_fsync_ms: u64,

    /// When a client leaves with responses in flight, keep reading upstream this long for
    /// their terminal events (usage) before closing upstream.
    #[arg(long, env = "TOLLGATE_ORPHAN_DRAIN_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub orphan_drain_timeout: Duration,

    /// Most orphan drains at once per worker; beyond it upstream is closed at once and the
    /// open responses are recorded as client_disconnected.
    #[arg(long, env = "TOLLGATE_MAX_ORPHAN_DRAINS", default_value_t = 1024)]
    pub max_orphan_drains: usize,

    /// Paths a client may open (exact match on the path; the query is passed through);
    /// anything else is answered 404 without dialling upstream (repeatable)
    /// [default: /v1/responses, plus /openai/v1/responses for an Azure upstream].
    #[arg(
        long = "allow-path",
        env = "TOLLGATE_ALLOW_PATH",
        value_delimiter = ','
    )]
    pub allow_paths: Vec<String>,

    /// A write to a leg that makes no progress this long ends that leg (a peer that
    /// stopped reading): its socket is shut down and the other leg is told.
    #[arg(long, env = "TOLLGATE_SLOW_CONSUMER_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub slow_consumer_timeout: Duration,

    /// Longest one response may stay open (silent responses are not idle: the idle timeout
    /// does not apply while a response is open); then the session is closed 1001.
    #[arg(long, env = "TOLLGATE_RESPONSE_TIMEOUT", default_value = "30m", value_parser = parse_duration)]
    pub response_timeout: Duration,

    /// Usage records waiting for the log writer before the relay refuses new responses
    /// and sessions (as for a broken log) until the writer catches up.
    #[arg(long, env = "TOLLGATE_USAGE_QUEUE_CAPACITY", default_value_t = 65_536)]
    pub usage_queue_capacity: usize,

    /// Sessions (and handshakes) each worker holds at most; beyond it: 429 with
    /// Retry-After [default: what the open-file limit allows: (RLIMIT_NOFILE − 64) / 2 /
    /// workers].
    #[arg(long, env = "TOLLGATE_MAX_SESSIONS")]
    pub max_sessions: Option<usize>,

    /// Concurrent sessions per tenant across all workers (0 = unlimited; a
    /// `max_sessions=N` in the keys file overrides it per tenant).
    #[arg(long, env = "TOLLGATE_TENANT_MAX_SESSIONS", default_value_t = 0)]
    pub tenant_max_sessions: usize,

    /// `response.create`s per minute per tenant (0 = unlimited; `turns_per_minute=N` in the
    /// keys file overrides it); over it the create gets an `error` event
    /// `rate_limit_exceeded` and is not forwarded.
    #[arg(long, env = "TOLLGATE_TENANT_TURNS_PER_MINUTE", default_value_t = 0)]
    pub tenant_turns_per_minute: u32,

    /// Bytes a worker holds for message assembly (client messages held whole until
    /// decided, the tap's copies of split events); a session that would exceed it is
    /// closed 1013.
    #[arg(long, env = "TOLLGATE_MAX_HELD_BYTES", default_value = "256MiB", value_parser = parse_size)]
    pub max_held_bytes: u64,

    /// Buffers in each worker's io_uring receive ring (a power of two, ≤ 32768): plain-TCP
    /// sessions receive into these instead of holding buffers of their own. A fixed
    /// per-worker cost of `--ring-buffers` × `--ring-buffer-bytes`, allocated at start.
    #[arg(long, env = "TOLLGATE_RING_BUFFERS", default_value_t = 512)]
    pub ring_buffers: usize,

    /// Size of each receive-ring buffer (the most one receive completion carries).
    #[arg(long, env = "TOLLGATE_RING_BUFFER_BYTES", default_value = "16KiB", value_parser = parse_size)]
    pub ring_buffer_bytes: u64,

    /// Run every session on the async adapter, even plain TCP on io_uring (for
    /// comparisons; the buffer-ring data plane is the default there).
    #[arg(long, hide = true)]
    pub no_ring: bool,

    /// io_uring setup flags to use (for measurements; default: the best the kernel takes,
    /// in this order): `defer` (SINGLE_ISSUER|DEFER_TASKRUN), `coop` (COOP_TASKRUN), `none`.
    #[arg(long, hide = true, value_parser = ["defer", "coop", "none"])]
    pub uring_setup: Option<String>,

    /// Test hook: behave as if io_uring could not start (exercises the epoll fallback).
    #[arg(long, hide = true)]
    pub debug_fail_uring: bool,

    /// Test hook: sleep this long before each usage-log fsync (a slow disk).
    #[arg(long, hide = true, default_value = "0s", value_parser = parse_duration)]
    pub debug_usage_fsync_delay: Duration,

    /// Test hook: a `response.create` for this model makes its session panic.
    #[arg(long, hide = true)]
    pub debug_panic_on_model: Option<String>,

    /// Export usage records to this NATS server's JetStream (`nats://host:port`), from the
    /// usage log (needs `--usage-log FILE`); the log stays the source of truth.
    #[arg(long, env = "TOLLGATE_USAGE_EXPORT")]
    pub usage_export: Option<String>,

    /// Subject of each exported record; `{route}` and `{tenant}` are filled in.
    #[arg(
        long,
        env = "TOLLGATE_USAGE_EXPORT_SUBJECT",
        default_value = "tollgate.usage.{route}"
    )]
    pub usage_export_subject: String,

    /// JetStream stream the records go to (created for the subjects if missing, with a
    /// 10-minute duplicate window).
    #[arg(
        long,
        env = "TOLLGATE_USAGE_EXPORT_STREAM",
        default_value = "TOLLGATE_USAGE"
    )]
    pub usage_export_stream: String,

    /// Where the exporter keeps its position in the usage log [default: the log's path
    /// with `.export-cursor` appended].
    #[arg(long, env = "TOLLGATE_USAGE_EXPORT_CURSOR")]
    pub usage_export_cursor: Option<PathBuf>,

    /// Records durable in the log but not acknowledged by JetStream above which `/readyz`
    /// answers 503.
    #[arg(
        long,
        env = "TOLLGATE_USAGE_EXPORT_MAX_BACKLOG",
        default_value_t = 100_000
    )]
    pub usage_export_max_backlog: u64,

    /// Redis holding the fleet's token budgets and session counts (`redis://host:port`).
    #[arg(long, env = "TOLLGATE_BUDGET_REDIS")]
    pub budget_redis: Option<String>,

    /// While Redis is unreachable: `closed` refuses what a fleet limit governs
    /// (`budget_unavailable`), `open` admits it.
    #[arg(long, env = "TOLLGATE_BUDGET_FAIL", value_parser = ["closed", "open"], default_value = "closed")]
    pub budget_fail: String,

    /// Tokens this relay leases from a tenant's budget at a time (it asks for more at half).
    #[arg(long, env = "TOLLGATE_BUDGET_LEASE_TOKENS", default_value_t = 100_000)]
    pub budget_lease_tokens: u64,

    /// How often the relay syncs fleet session counts (and tops up leases at the latest).
    #[arg(long, env = "TOLLGATE_FLEET_SYNC_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub fleet_sync_interval: Duration,

    /// This relay's name in the fleet's shared state [default: hostname-pid].
    #[arg(long, env = "TOLLGATE_FLEET_NODE_ID")]
    pub fleet_node_id: Option<String>,

    /// Tokens per UTC day per tenant across the fleet (0 = none; `tokens_per_day=N` in the
    /// keys file overrides it); needs `--budget-redis`.
    #[arg(long, env = "TOLLGATE_TENANT_TOKENS_PER_DAY", default_value_t = 0)]
    pub tenant_tokens_per_day: u64,

    /// Tokens per UTC month per tenant across the fleet (0 = none; `tokens_per_month=N`).
    #[arg(long, env = "TOLLGATE_TENANT_TOKENS_PER_MONTH", default_value_t = 0)]
    pub tenant_tokens_per_month: u64,

    /// Concurrent sessions per tenant across the fleet (0 = none; `fleet_max_sessions=N`).
    #[arg(long, env = "TOLLGATE_TENANT_FLEET_MAX_SESSIONS", default_value_t = 0)]
    pub tenant_fleet_max_sessions: usize,

    /// Admin listener for /metrics, /healthz, /readyz; unset = none.
    #[arg(long, env = "TOLLGATE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// Log format.
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `tollgate=debug`.
    #[arg(long, env = "TOLLGATE_LOG", default_value = "info")]
    pub log: String,
}

/// How clients authenticate.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// Relay-issued keys from this file; the provider credential is injected upstream.
    Managed { keys_file: PathBuf },
    /// The client's credential goes upstream; tenant = its fingerprint.
    Passthrough,
}

/// Where usage records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageLog {
    /// No usage log.
    Disabled,
    /// JSON Lines on stdout.
    Stdout,
    /// JSON Lines appended to this file.
    File(PathBuf),
}

/// Usage export to NATS JetStream (`--usage-export`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportConfig {
    /// NATS server URL.
    pub url: String,
    /// Subject template (`{route}`, `{tenant}`).
    pub subject: String,
    /// Stream name.
    pub stream: String,
    /// The usage log to export from.
    pub log: PathBuf,
    /// The exporter's cursor file.
    pub cursor: PathBuf,
    /// Backlog (records) above which the relay is not ready.
    pub max_backlog: u64,
}

/// Fleet budgets in Redis (`--budget-redis`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetConfig {
    /// Redis URL.
    pub url: String,
    /// What to do while Redis is unreachable.
    pub fail: crate::limits::FailMode,
    /// Tokens per lease.
    pub lease_tokens: u64,
}

/// The fleet settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// Usage export, if configured.
    pub export: Option<ExportConfig>,
    /// Shared budgets, if configured.
    pub budget: Option<BudgetConfig>,
    /// Session-count sync interval.
    pub sync_interval: Duration,
    /// This relay's name in the fleet.
    pub node_id: String,
}

/// Limits applied by the frame walkers.
#[derive(Debug, Clone, Copy)]
pub struct FrameLimits {
    /// Largest frame payload.
    pub max_frame_bytes: u64,
    /// Largest client→upstream message.
    pub max_message_up: u64,
    /// Largest upstream→client message.
    pub max_message_down: u64,
    /// Most frames per message.
    pub max_fragments: u32,
}

/// The validated configuration every worker shares (read-only).
#[derive(Debug, Clone)]
pub struct Config {
    /// Client listener address.
    pub listen: SocketAddr,
    /// Number of workers.
    pub workers: usize,
    /// Requested driver.
    pub driver: Driver,
    /// Pin workers to cores.
    pub pin: bool,
    /// TLS listener cert and key files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Authentication mode.
    pub auth: AuthMode,
    /// The routes (upstreams) and the default one.
    pub routes: Arc<Routes>,
    /// Upstream TCP+TLS timeout.
    pub upstream_connect_timeout: Duration,
    /// Upstream handshake timeout.
    pub upstream_handshake_timeout: Duration,
    /// Exact-match Origin allowlist; empty = any.
    pub allowed_origins: Vec<String>,
    /// Handshake parser limits.
    pub max_header_bytes: usize,
    /// Most header lines.
    pub max_headers: usize,
    /// Client handshake timeout.
    pub handshake_timeout: Duration,
    /// Frame/message limits.
    pub frames: FrameLimits,
    /// Read buffer size per direction.
    pub buffer_bytes: usize,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Session age limit (`None` = unlimited).
    pub max_connection_age: Option<Duration>,
    /// Graceful drain deadline.
    pub drain_timeout: Duration,
    /// Byte-tunnel mode.
    pub tunnel: bool,
    /// Usage log destination.
    pub usage_log: UsageLog,
    /// Group-commit interval.
    pub usage_fsync: Duration,
    /// Orphan drain deadline.
    pub orphan_drain_timeout: Duration,
    /// Orphan drains per worker.
    pub max_orphan_drains: usize,
    /// Admin listener.
    pub admin_listen: Option<SocketAddr>,
    /// Stalled-write limit.
    pub slow_consumer_timeout: Duration,
    /// Longest response.
    pub response_timeout: Duration,
    /// Usage records queued before backpressure.
    pub usage_queue_capacity: usize,
    /// Sessions per worker.
    pub max_sessions: usize,
    /// Default per-tenant limits.
    pub tenant_limits: crate::limits::TenantLimits,
    /// Usage export and shared budgets.
    pub fleet: FleetConfig,
    /// Assembly bytes per worker.
    pub max_held_bytes: usize,
    /// Receive-ring buffers per worker.
    pub ring_buffers: usize,
    /// Receive-ring buffer size.
    pub ring_buffer_bytes: usize,
    /// Keep plain-TCP sessions off the buffer-ring data plane.
    pub no_ring: bool,
    /// Only these io_uring setup flags (`None`: best available).
    pub uring_setup: Option<&'static str>,
    /// Test hook: io_uring "fails" to start.
    pub debug_fail_uring: bool,
    /// Test hook: fsync delay.
    pub debug_usage_fsync_delay: Duration,
    /// Test hook: panic on this model.
    pub debug_panic_on_model: Option<String>,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log: String,
}

/// A configuration error; its text names the flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither or both auth modes chosen.
    #[error("choose exactly one auth mode: --client-keys FILE or --passthrough-auth")]
    AuthMode,
    /// `--upstream-header` is not `Name: value`.
    #[error("--upstream-header {0:?}: expected `Name: value`")]
    HeaderSyntax(String),
    /// `${VAR}` in `--upstream-header` is not set.
    #[error("--upstream-header {name}: environment variable {var} is not set")]
    UnsetVariable {
        /// Header name.
        name: String,
        /// The missing variable.
        var: String,
    },
    /// `--upstream` invalid.
    #[error("--upstream: {0}")]
    Upstream(String),
    /// A numeric flag out of range.
    #[error("--{flag}: {why}")]
    Range {
        /// Flag name without dashes.
        flag: &'static str,
        /// What is wrong.
        why: &'static str,
    },
    /// `--allow-path` is not an absolute path without a query.
    #[error("--allow-path {0:?}: expected an absolute path such as /v1/responses (no query)")]
    AllowPath(String),
    /// A `[[route]]` problem.
    #[error("--config: route {name:?}: {why}")]
    Route {
        /// The route's name.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// A flag that the `[[route]]` tables replace.
    #[error(
        "--{0} cannot be combined with [[route]] tables in the config file: set it in a route"
    )]
    RouteFlag(&'static str),
    /// `--default-route` names no route.
    #[error("--default-route {0:?}: no such route")]
    DefaultRoute(String),
    /// The config file.
    #[error(transparent)]
    ConfigFile(#[from] FileError),
    /// A fleet setting that cannot work as given.
    #[error("{0}")]
    Fleet(&'static str),
    /// A URL flag with the wrong scheme.
    #[error("--{flag} {url:?}: expected a URL starting with {expected}")]
    Scheme {
        /// The flag.
        flag: &'static str,
        /// The value.
        url: String,
        /// The schemes allowed.
        expected: &'static str,
    },
    /// A file flag names a file that cannot be read.
    #[error("--{flag} {path}: {source}")]
    File {
        /// Flag name.
        flag: &'static str,
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// The [`ROUTE_FLAGS`] that `m` has a value for from anywhere but their defaults.
fn given(m: &clap::ArgMatches) -> Vec<&'static str> {
    let cmd = Cli::command();
    ROUTE_FLAGS
        .iter()
        .copied()
        .filter(|flag| {
            cmd.get_arguments()
                .find(|a| a.get_long() == Some(flag))
                .and_then(|a| m.value_source(a.get_id().as_str()))
                .is_some_and(|src| src != clap::parser::ValueSource::DefaultValue)
        })
        .collect()
}

/// One `[[route]]` table, validated.
fn route_from_table(t: &RouteTable, managed: bool) -> Result<Route, ConfigError> {
    let fail = |why: String| ConfigError::Route {
        name: t.name.clone(),
        why,
    };
    if !valid_route_name(&t.name) {
        return Err(fail(
            "name: 1-64 characters of [A-Za-z0-9_.-] (it is a path segment and a model prefix)"
                .into(),
        ));
    }
    let upstream = parse_upstream_url(&t.upstream).map_err(|e| fail(format!("upstream: {e}")))?;
    let inject_headers = match (&t.headers, managed) {
        (_, false) => Vec::new(),
        (None, true) => {
            return Err(fail(
                "headers: required with --client-keys, e.g. headers = [\"Authorization: Bearer ${XAI_API_KEY}\"] (or [] for none)".into(),
            ))
        }
        (Some(h), true) => h
            .iter()
            .map(|h| parse_header_flag(h).map_err(|e| fail(format!("headers: {e}"))))
            .collect::<Result<_, _>>()?,
    };
    if let Some(p) = &t.ca {
        std::fs::metadata(p).map_err(|e| fail(format!("ca {}: {e}", p.display())))?;
    }
    let allow_paths = match &t.allow_paths {
        Some(v) if v.is_empty() => {
            return Err(fail(
                "allow-paths: empty (the route would serve nothing)".into(),
            ))
        }
        Some(v) => {
            for p in v {
                check_allow_path(p).map_err(|e| fail(e.to_string()))?;
            }
            v.clone()
        }
        None => default_allow_paths(&upstream.host),
    };
    if t.models
        .as_ref()
        .is_some_and(|m| m.iter().any(|m| m.is_empty()))
    {
        return Err(fail("models: empty model name".into()));
    }
    Ok(Route {
        name: Arc::from(t.name.as_str()),
        upstream,
        label: Arc::from(t.upstream.as_str()),
        inject_headers,
        ca: t.ca.clone(),
        allow_paths,
        models: t.models.clone(),
    })
}

/// Sessions per worker that fit the process's open-file limit: each session holds two
/// sockets; 64 descriptors are kept for listeners, the log and the admin endpoint.
fn default_max_sessions(workers: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    let files = if ok {
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    };
    (files.saturating_sub(64) / 2 / workers.max(1)).max(1)
}

/// Parse `10s`, `500ms`, `5m`, `1h` (humantime syntax).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// Parse a byte size: `1024`, `64KiB`, `16MiB`, `1GiB` (also `K`, `M`, `G`, `KB`, `MB`, `GB` as powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 65536, 64KiB, 16MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} (use KiB, MiB, GiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Expand `${VAR}` references from the environment.
fn expand_env(name: &str, value: &str) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| ConfigError::HeaderSyntax(name.to_string()))?;
        let var = &after[..end];
        let val = std::env::var(var).map_err(|_| ConfigError::UnsetVariable {
            name: name.to_string(),
            var: var.to_string(),
        })?;
        out.push_str(&val);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parse one `--upstream-header` value.
fn parse_header_flag(raw: &str) -> Result<(String, String), ConfigError> {
    let (name, value) = raw
        .split_once(':')
        .ok_or_else(|| ConfigError::HeaderSyntax(raw.to_string()))?;
    let name = name.trim();
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
    if !valid_name {
        return Err(ConfigError::HeaderSyntax(name.to_string()));
    }
    let value = expand_env(name, value.trim())?;
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(ConfigError::HeaderSyntax(name.to_string()));
    }
    Ok((name.to_string(), value))
}

fn check_scheme(flag: &'static str, url: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    if schemes
        .iter()
        .any(|s| url.starts_with(s) && url.len() > s.len())
    {
        Ok(())
    } else {
        Err(ConfigError::Scheme {
            flag,
            url: url.to_string(),
            expected: if schemes[0] == "nats://" {
                "nats:// (or tls://)"
            } else {
                "redis:// (or rediss://)"
            },
        })
    }
}

/// Route names: what fits in a path segment and a model prefix.
fn valid_route_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn check_allow_path(p: &str) -> Result<(), ConfigError> {
    if !p.starts_with('/') || p.contains('?') || p.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(ConfigError::AllowPath(p.to_string()));
    }
    Ok(())
}

/// The paths a route serves when none are configured: the Responses endpoint, plus
/// Azure's own path on an Azure host.
fn default_allow_paths(host: &str) -> Vec<String> {
    let mut v = vec!["/v1/responses".to_string()];
    if host.ends_with(".openai.azure.com") || host.ends_with(".cognitiveservices.azure.com") {
        v.push("/openai/v1/responses".to_string());
    }
    v
}

/// Flags that the `[[route]]` tables replace (config file routes → none may be set).
const ROUTE_FLAGS: [&str; 5] = [
    "upstream",
    "upstream-header",
    "upstream-ca",
    "allow-path",
    "allow-model",
];

/// Why the command line (with its config file) could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// clap's error (bad flag or value; also `--help` and `--version`).
    #[error(transparent)]
    Clap(#[from] clap::Error),
    /// The config file.
    #[error(transparent)]
    File(#[from] FileError),
    /// A value from the config file that clap rejected.
    #[error("in --config {path}: {message}")]
    FileValue {
        /// The file.
        path: String,
        /// clap's message.
        message: String,
    },
}

impl Cli {
    /// Parse the command line, then the `--config` file it names (if any): the file fills
    /// in what neither the command line nor the environment set.
    pub fn parse_from_all<I, T>(args: I) -> Result<Cli, ParseError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let cmd = Cli::command();
        let first = cmd.clone().try_get_matches_from(&args)?;
        let Some(path) = first.get_one::<PathBuf>("config").cloned() else {
            let mut cli = Cli::from_arg_matches(&first)?;
            cli.route_flags_given = given(&first);
            return Ok(cli);
        };
        let settings = file::load(&path, &cmd, &first)?;
        let mut all = args;
        all.extend(settings.args);
        let matches = cmd
            .try_get_matches_from(&all)
            .map_err(|e| ParseError::FileValue {
                path: path.display().to_string(),
                message: e.render().to_string().trim_end().to_string(),
            })?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        cli.route_flags_given = given(&matches);
        cli.file_routes = settings.routes;
        Ok(cli)
    }

    fn build_routes(&self, managed: bool) -> Result<Routes, ConfigError> {
        let list = if self.file_routes.is_empty() {
            vec![self.flag_route(managed)?]
        } else {
            if let Some(flag) = self.route_flags_given.first() {
                return Err(ConfigError::RouteFlag(flag));
            }
            let mut list: Vec<Route> = Vec::with_capacity(self.file_routes.len());
            for t in &self.file_routes {
                let r = route_from_table(t, managed)?;
                if list.iter().any(|o| o.name == r.name) {
                    return Err(ConfigError::Route {
                        name: t.name.clone(),
                        why: "defined twice".into(),
                    });
                }
                list.push(r);
            }
            list
        };
        let default = match &self.default_route {
            None => 0,
            Some(n) => list
                .iter()
                .position(|r| &*r.name == n.as_str())
                .ok_or_else(|| ConfigError::DefaultRoute(n.clone()))?,
        };
        Ok(Routes { list, default })
    }

    /// The single route the `--upstream*` flags describe (no `[[route]]` tables).
    fn flag_route(&self, managed: bool) -> Result<Route, ConfigError> {
        let upstream =
            parse_upstream_url(&self.upstream).map_err(|e| ConfigError::Upstream(e.to_string()))?;
        let inject_headers = if managed {
            let raw = if self.upstream_headers.is_empty() {
                vec!["Authorization: Bearer ${OPENAI_API_KEY}".to_string()]
            } else {
                self.upstream_headers.clone()
            };
            raw.iter()
                .map(|h| parse_header_flag(h))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        if let Some(p) = &self.upstream_ca {
            std::fs::metadata(p).map_err(|source| ConfigError::File {
                flag: "upstream-ca",
                path: p.display().to_string(),
                source,
            })?;
        }
        for p in &self.allow_paths {
            check_allow_path(p)?;
        }
        let allow_paths = if self.allow_paths.is_empty() {
            default_allow_paths(&upstream.host)
        } else {
            self.allow_paths.clone()
        };
        Ok(Route {
            name: Arc::from("default"),
            upstream,
            label: Arc::from(self.upstream.as_str()),
            inject_headers,
            ca: self.upstream_ca.clone(),
            allow_paths,
            models: (!self.allow_models.is_empty()).then(|| self.allow_models.clone()),
        })
    }

    fn fleet_config(
        &self,
        usage_log: &UsageLog,
        defaults: &crate::limits::TenantLimits,
    ) -> Result<FleetConfig, ConfigError> {
        let export = match &self.usage_export {
            None => None,
            Some(url) => {
                let UsageLog::File(log) = usage_log else {
                    return Err(ConfigError::Fleet(
                        "--usage-export needs --usage-log FILE: records are exported from the durable log",
                    ));
                };
                check_scheme("usage-export", url, &["nats://", "tls://"])?;
                if self.usage_export_subject.is_empty()
                    || self.usage_export_subject.contains(char::is_whitespace)
                {
                    return Err(ConfigError::Range {
                        flag: "usage-export-subject",
                        why: "a NATS subject: no spaces, not empty",
                    });
                }
                let mut cursor = log.clone().into_os_string();
                cursor.push(".export-cursor");
                Some(ExportConfig {
                    url: url.clone(),
                    subject: self.usage_export_subject.clone(),
                    stream: self.usage_export_stream.clone(),
                    log: log.clone(),
                    cursor: self
                        .usage_export_cursor
                        .clone()
                        .unwrap_or_else(|| PathBuf::from(cursor)),
                    max_backlog: self.usage_export_max_backlog.max(1),
                })
            }
        };
        let budget = match &self.budget_redis {
            None => {
                if defaults.needs_fleet() {
                    return Err(ConfigError::Fleet(
                        "--tenant-tokens-per-day/-month and --tenant-fleet-max-sessions need --budget-redis",
                    ));
                }
                None
            }
            Some(url) => {
                check_scheme("budget-redis", url, &["redis://", "rediss://"])?;
                if self.budget_lease_tokens == 0 {
                    return Err(ConfigError::Range {
                        flag: "budget-lease-tokens",
                        why: "must be at least 1",
                    });
                }
                Some(BudgetConfig {
                    url: url.clone(),
                    fail: if self.budget_fail == "open" {
                        crate::limits::FailMode::Open
                    } else {
                        crate::limits::FailMode::Closed
                    },
                    lease_tokens: self.budget_lease_tokens,
                })
            }
        };
        if self.fleet_sync_interval < Duration::from_millis(10) {
            return Err(ConfigError::Range {
                flag: "fleet-sync-interval",
                why: "at least 10ms",
            });
        }
        let node_id = match &self.fleet_node_id {
            Some(n) if valid_route_name(n) => n.clone(),
            Some(_) => {
                return Err(ConfigError::Range {
                    flag: "fleet-node-id",
                    why: "1-64 characters of [A-Za-z0-9_.-]",
                })
            }
            None => {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| "node".into());
                format!("{host}-{}", std::process::id())
            }
        };
        Ok(FleetConfig {
            export,
            budget,
            sync_interval: self.fleet_sync_interval,
            node_id,
        })
    }

    /// Validate into a [`Config`].
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let auth = match (&self.client_keys, self.passthrough_auth) {
            (Some(path), false) => AuthMode::Managed {
                keys_file: path.clone(),
            },
            (None, true) => AuthMode::Passthrough,
            _ => return Err(ConfigError::AuthMode),
        };
        for (flag, path) in [
            ("client-keys", &self.client_keys),
            ("tls-cert", &self.tls_cert),
            ("tls-key", &self.tls_key),
        ] {
            if let Some(p) = path {
                std::fs::metadata(p).map_err(|source| ConfigError::File {
                    flag,
                    path: p.display().to_string(),
                    source,
                })?;
            }
        }
        let managed = matches!(auth, AuthMode::Managed { .. });
        let routes = Arc::new(self.build_routes(managed)?);
        let workers = match self.workers {
            Some(0) => {
                return Err(ConfigError::Range {
                    flag: "workers",
                    why: "must be at least 1",
                })
            }
            Some(n) if n > 1024 => {
                return Err(ConfigError::Range {
                    flag: "workers",
                    why: "at most 1024",
                })
            }
            Some(n) => n,
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        };
        if !(1024..=1 << 20).contains(&self.max_header_bytes) {
            return Err(ConfigError::Range {
                flag: "max-header-bytes",
                why: "must be 1KiB..=1MiB",
            });
        }
        if self.max_headers == 0 || self.max_headers > 10_000 {
            return Err(ConfigError::Range {
                flag: "max-headers",
                why: "must be 1..=10000",
            });
        }
        if !(4096..=64 << 20).contains(&self.buffer_bytes) {
            return Err(ConfigError::Range {
                flag: "buffer-bytes",
                why: "must be 4KiB..=64MiB",
            });
        }
        if self.max_frame_bytes == 0 || self.max_frame_bytes > 1 << 40 {
            return Err(ConfigError::Range {
                flag: "max-frame-bytes",
                why: "must be 1..=1TiB",
            });
        }
        if self.max_message_bytes_up == 0 {
            return Err(ConfigError::Range {
                flag: "max-message-bytes-up",
                why: "must be at least 1",
            });
        }
        if self.max_message_bytes_down == 0 {
            return Err(ConfigError::Range {
                flag: "max-message-bytes-down",
                why: "must be at least 1",
            });
        }
        if self.max_fragments == 0 {
            return Err(ConfigError::Range {
                flag: "max-fragments",
                why: "must be at least 1",
            });
        }
        for (flag, d) in [
            ("handshake-timeout", self.handshake_timeout),
            ("upstream-connect-timeout", self.upstream_connect_timeout),
            (
                "upstream-handshake-timeout",
                self.upstream_handshake_timeout,
            ),
            ("idle-timeout", self.idle_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::Range {
                    flag,
                    why: "must be greater than 0",
                });
            }
        }
        for (flag, d) in [
            ("slow-consumer-timeout", self.slow_consumer_timeout),
            ("response-timeout", self.response_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::Range {
                    flag,
                    why: "must be greater than 0",
                });
            }
        }
        if self.usage_queue_capacity == 0 {
            return Err(ConfigError::Range {
                flag: "usage-queue-capacity",
                why: "must be at least 1",
            });
        }
        let max_sessions = match self.max_sessions {
            Some(0) => {
                return Err(ConfigError::Range {
                    flag: "max-sessions",
                    why: "must be at least 1",
                })
            }
            Some(n) => n,
            None => default_max_sessions(workers),
        };
        if self.max_held_bytes < 1 << 20 {
            return Err(ConfigError::Range {
                flag: "max-held-bytes",
                why: "must be at least 1MiB",
            });
        }
        if !self.ring_buffers.is_power_of_two() || self.ring_buffers > 32768 {
            return Err(ConfigError::Range {
                flag: "ring-buffers",
                why: "must be a power of two up to 32768",
            });
        }
        if !(1024..=1 << 20).contains(&self.ring_buffer_bytes) {
            return Err(ConfigError::Range {
                flag: "ring-buffer-bytes",
                why: "must be 1KiB..=1MiB",
            });
        }
        let usage_log = match self.usage_log.as_deref() {
            None | Some("") => UsageLog::Disabled,
            Some("-") => UsageLog::Stdout,
            Some(p) => UsageLog::File(PathBuf::from(p)),
        };
        let tenant_limits = crate::limits::TenantLimits {
            max_sessions: (self.tenant_max_sessions > 0).then_some(self.tenant_max_sessions),
            turns_per_minute: (self.tenant_turns_per_minute > 0)
                .then_some(self.tenant_turns_per_minute),
            tokens_per_day: (self.tenant_tokens_per_day > 0).then_some(self.tenant_tokens_per_day),
            tokens_per_month: (self.tenant_tokens_per_month > 0)
                .then_some(self.tenant_tokens_per_month),
            fleet_max_sessions: (self.tenant_fleet_max_sessions > 0)
                .then_some(self.tenant_fleet_max_sessions),
        };
        let fleet = self.fleet_config(&usage_log, &tenant_limits)?;
        Ok(Config {
            listen: self.listen,
            workers,
            driver: self.driver,
            pin: !self.no_pin,
            tls: self.tls_cert.zip(self.tls_key),
            auth,
            routes,
            upstream_connect_timeout: self.upstream_connect_timeout,
            upstream_handshake_timeout: self.upstream_handshake_timeout,
            allowed_origins: self.allowed_origins,
            max_header_bytes: self.max_header_bytes as usize,
            max_headers: self.max_headers,
            handshake_timeout: self.handshake_timeout,
            frames: FrameLimits {
                max_frame_bytes: self.max_frame_bytes,
                max_message_up: self.max_message_bytes_up,
                max_message_down: self.max_message_bytes_down,
                max_fragments: self.max_fragments,
            },
            buffer_bytes: self.buffer_bytes as usize,
            idle_timeout: self.idle_timeout,
            max_connection_age: (!self.max_connection_age.is_zero())
                .then_some(self.max_connection_age),
            drain_timeout: self.drain_timeout,
            tunnel: self.tunnel,
            usage_log,
            usage_fsync: Duration::from_millis(self.usage_fsync_ms.max(1)),
            orphan_drain_timeout: self.orphan_drain_timeout,
            max_orphan_drains: self.max_orphan_drains,
            admin_listen: self.admin_listen,
            slow_consumer_timeout: self.slow_consumer_timeout,
            response_timeout: self.response_timeout,
            usage_queue_capacity: self.usage_queue_capacity,
            max_sessions,
            tenant_limits,
            fleet,
            max_held_bytes: usize::try_from(self.max_held_bytes).unwrap_or(usize::MAX),
            ring_buffers: self.ring_buffers,
            ring_buffer_bytes: self.ring_buffer_bytes as usize,
            no_ring: self.no_ring,
            uring_setup: self.uring_setup.as_deref().map(|f| match f {
                "defer" => "single_issuer+defer_taskrun",
                "coop" => "coop_taskrun",
                _ => "none",
            }),
            debug_fail_uring: self.debug_fail_uring,
            debug_usage_fsync_delay: self.debug_usage_fsync_delay,
            debug_panic_on_model: self.debug_panic_on_model,
            log_format: self.log_format,
            log: self.log,
        })
    }
}

#[cfg(test)]
mod tests;
