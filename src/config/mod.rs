//! The command line (and `--config FILE`, see [`file`](mod@file)), parsed by clap, turned into a
//! validated [`Config`].
//!
//! Every flag has a `TOLLGATE_*` environment fallback and its default in `--help`, and can
//! be set in the config file under its long name. Anything invalid is a [`ConfigError`]
//! naming the flag; `main` exits 64 (EX_USAGE) on it.

mod choices;
mod cli;
pub mod file;
mod fleet;
mod routes;

pub use choices::{Driver, HugePages, LogFormat};
pub use cli::{parse_duration, parse_size, Cli, KeysTool, ParseError, Tool};
pub use fleet::{loggable_url, BudgetConfig, ExportConfig, FleetConfig};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::route::Routes;
use file::FileError;

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
    /// Bytes of the usage journal's ring (0 = none).
    pub usage_journal_bytes: u64,
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
    /// Transparent huge pages for the heap.
    pub huge_pages: HugePages,
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

impl Cli {
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
        if self.usage_journal_mib > 4096 {
            return Err(ConfigError::Range {
                flag: "usage-journal-mib",
                why: "must be at most 4096",
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
            usage_journal_bytes: self.usage_journal_mib << 20,
            max_sessions,
            tenant_limits,
            fleet,
            max_held_bytes: usize::try_from(self.max_held_bytes).unwrap_or(usize::MAX),
            ring_buffers: self.ring_buffers,
            ring_buffer_bytes: self.ring_buffer_bytes as usize,
            no_ring: self.no_ring,
            huge_pages: self.huge_pages,
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
