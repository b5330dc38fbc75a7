//! The command line as the operator types it: clap's definition of every flag (each with a
//! `TOLLGATE_*` environment fallback and its default in `--help`), the tools run instead of
//! the relay (`tollgate keys …`), the value parsers, and the `--config` file merged in
//! underneath (see [`super::file`]). [`Cli::into_config`] (in the parent module) validates
//! the result.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use super::choices::{Driver, HugePages, LogFormat};
use super::file::{self, FileError, RouteTable};
use super::routes::given;

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

    /// Group-commit interval of the usage log: the longest a record waits for its
    /// `fdatasync`, so what a power loss or a host's death can cost (a killed process loses
    /// nothing: the usage journal keeps its records). Each commit cost the writer thread
    /// 0.15–0.25 ms of CPU on the bench's VM whatever it carried, so 100 ms spends ~0.2% of a
    /// core where 10 ms spent ~2% (loadtest/BENCH-history.md, "The usage log's group-commit interval,
    /// a third time"; `scripts/commit-cost.sh` measures it on another disk).
    #[arg(long, env = "TOLLGATE_USAGE_FSYNC_MS", default_value_t = 100)]
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

    /// Size of the usage journal `<usage-log>.journal`, a memory-mapped file each record is
    /// copied into as it is made, so a killed relay loses none between group commits (the
    /// next start appends them to the log); 0 = no journal.
    #[arg(long, env = "TOLLGATE_USAGE_JOURNAL_MIB", default_value_t = 16)]
    pub usage_journal_mib: u64,

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

    /// Buffers in each worker's receive ring (a power of two, ≤ 32768): plain-TCP
    /// sessions receive into these instead of holding buffers of their own. A fixed
    /// per-worker cost of `--ring-buffers` × `--ring-buffer-bytes`, allocated at start.
    #[arg(long, env = "TOLLGATE_RING_BUFFERS", default_value_t = 512)]
    pub ring_buffers: usize,

    /// Size of each receive-ring buffer (the most one receive completion carries).
    #[arg(long, env = "TOLLGATE_RING_BUFFER_BYTES", default_value = "16KiB", value_parser = parse_size)]
    pub ring_buffer_bytes: u64,

    /// Run every session on the async adapter (for comparisons and tests; without it every
    /// session, plain or TLS, runs on the buffer-ring data plane under both drivers).
    #[arg(long, hide = true)]
    pub no_ring: bool,

    /// Transparent huge pages for the heap: `off` for the whole process, or `allow` (as
    /// the kernel's THP mode and mimalloc choose). Off holds less memory per idle session
    /// (small per-session state is not rounded up to 2 MiB pages) at no CPU cost the bench
    /// could resolve (loadtest/BENCH.md, peer `tollgate-thp`).
    #[arg(long, env = "TOLLGATE_HUGE_PAGES", value_enum, default_value_t = HugePages::Off)]
    pub huge_pages: HugePages,

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

    /// Export usage records to this NATS server's JetStream (`nats://host:port`,
    /// `nats://user:pass@host:port` or `nats://token@host:port`), from the usage log
    /// (needs `--usage-log FILE`); the log stays the source of truth.
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

    /// Redis holding the fleet's token budgets and session counts (`redis://host:port`,
    /// `redis://:password@host:port`).
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
}
