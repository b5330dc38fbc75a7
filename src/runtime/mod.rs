//! Worker threads: one pinned monoio runtime per core, each with its own SO_REUSEPORT
//! listener; io_uring by default with an epoll fallback; signals; graceful drain.
//!
//! Nothing on the hot path is shared between workers: each owns its listener, its sessions
//! and its counters (`Cell`s), which it copies into the shared registry on a timer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{AuthMode, Config, UsageLog};
use crate::metering::sink::{Sink, SinkConfig, SinkHandle, SinkPath};
use crate::metrics::Registry;
use crate::route::Route;
use crate::server::auth::ClientKeys;
use crate::upstream::dial::server_tls_config;

mod checks;
pub mod memory;
pub mod parts;
mod signals;
pub mod timers;
mod upstreams;
mod worker;

pub use checks::check_files;
use checks::{check_key_fleet, check_key_routes};
pub use signals::{block_signals, wait_signal};
use upstreams::spawn_resolver;
pub use upstreams::Upstream;
pub use worker::WorkerCtx;
use worker::{pin_to_core, worker_thread};

/// Read-only state shared by all workers (behind an `Arc`; touched per session, not per frame).
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// Managed-mode client keys (`None` in passthrough mode); swapped on SIGHUP.
    pub keys: RwLock<Option<Arc<ClientKeys>>>,
    /// Per route (same order as `config.routes.list`): how to reach its upstream.
    pub upstreams: Vec<Upstream>,
    /// TLS acceptor for a `wss://` client listener; swapped on SIGHUP (certificate renewal).
    pub listener_tls: RwLock<Option<crate::tls::TlsAcceptor>>,
    /// Usage-record sink.
    pub sink: SinkHandle,
    /// Metrics registry.
    pub registry: Arc<Registry>,
    /// Per-tenant limits and counters.
    pub tenants: Arc<crate::limits::Tenants>,
    /// Readiness (`/readyz`): set once every worker accepts, cleared at shutdown or when a
    /// worker dies.
    pub ready: Arc<AtomicBool>,
    /// A worker thread died (a panic outside any session): the process exits non-zero.
    pub worker_failed: AtomicBool,
    pub(super) shutdown: AtomicBool,
    pub(super) drain_deadline: OnceLock<Instant>,
}

impl Shared {
    /// The label (upstream URL) of route `i`, for logs.
    pub fn route(&self, i: usize) -> &Route {
        &self.config.routes.list[i.min(self.config.routes.list.len() - 1)]
    }

    /// Whether a graceful shutdown has begun.
    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    /// The current TLS acceptor for the client listener (cheap clone of an `Arc`).
    pub fn listener_tls(&self) -> Option<crate::tls::TlsAcceptor> {
        self.listener_tls.read().ok().and_then(|t| t.clone())
    }

    /// The current client keys.
    pub fn client_keys(&self) -> Option<Arc<ClientKeys>> {
        self.keys.read().ok().and_then(|k| k.clone())
    }
}

/// Startup failures; `main` exits 64 for configuration problems, 70 otherwise.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listener could not be bound.
    #[error("--listen {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// A TLS file was rejected.
    #[error("TLS: {0}")]
    Tls(#[from] crate::upstream::dial::TlsConfigError),
    /// The client keys file was rejected.
    #[error("--client-keys: {0}")]
    Keys(#[from] crate::server::auth::AuthError),
    /// An upstream host did not resolve at start.
    #[error("route {route}: upstream {host} does not resolve: {source}")]
    Resolve {
        /// Route name.
        route: String,
        /// Host.
        host: String,
        /// Cause.
        source: std::io::Error,
    },
    /// `--driver uring` without io_uring, or a runtime failed to build.
    #[error("worker {worker}: {why}")]
    Worker {
        /// Worker index.
        worker: usize,
        /// What failed.
        why: String,
    },
    /// The usage log could not be opened.
    #[error("--usage-log: {0}")]
    Sink(String),
    /// The fleet thread (usage export, budgets) could not start, or needs a flag.
    #[error("{0}")]
    Fleet(String),
    /// The admin listener could not be bound.
    #[error("--admin-listen: {0}")]
    Admin(std::io::Error),
}

impl StartError {
    /// Whether this is a usage error (exit 64) rather than an environment failure.
    pub fn is_usage(&self) -> bool {
        !matches!(self, StartError::Worker { .. })
    }
}

/// Why a SIGHUP reload failed (the old keys and certificate stay in force).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The client keys file was rejected.
    #[error("--client-keys: {0}")]
    Keys(#[from] crate::server::auth::AuthError),
    /// The TLS certificate or key was rejected.
    #[error("TLS: {0}")]
    Tls(#[from] crate::upstream::dial::TlsConfigError),
}

/// A running relay.
pub struct Relay {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    sink: Option<Sink>,
    fleet: Option<crate::fleet::Fleet>,
    ready: Arc<AtomicBool>,
    driver: &'static str,
}

fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    Ok(s.into())
}

/// The usage-log sink the flags ask for, its counters in `registry`.
fn start_sink(config: &Config, registry: &Registry) -> Result<Sink, StartError> {
    let sink_path = match &config.usage_log {
        UsageLog::Disabled => SinkPath::Disabled,
        UsageLog::Stdout => SinkPath::Stdout,
        UsageLog::File(p) => SinkPath::File(p.clone()),
    };
    Sink::start(
        SinkConfig {
            fsync_interval: config.usage_fsync,
            queue_capacity: config.usage_queue_capacity,
            journal_bytes: config.usage_journal_bytes,
            fsync_delay: config.debug_usage_fsync_delay,
            ..SinkConfig::new(sink_path)
        },
        registry.sink_metrics(),
    )
    .map_err(|e| StartError::Sink(e.to_string()))
}

/// One `SO_REUSEPORT` listener per worker: the first binds `listen` (resolving port 0), the
/// others the address it got. Returns that address and the listeners.
fn bind_listeners(
    listen: SocketAddr,
    workers: usize,
) -> Result<(SocketAddr, Vec<std::net::TcpListener>), StartError> {
    let first = reuseport_listener(listen).map_err(|source| StartError::Listen {
        addr: listen,
        source,
    })?;
    let addr = first.local_addr().map_err(|source| StartError::Listen {
        addr: listen,
        source,
    })?;
    let mut listeners = vec![first];
    for _ in 1..workers {
        listeners
            .push(reuseport_listener(addr).map_err(|source| StartError::Listen { addr, source })?);
    }
    Ok((addr, listeners))
}

/// Spawns a worker thread per listener (pinned when `--pin`) and waits until each accepts;
/// returns them and the io driver they run. A worker that cannot be spawned or fails to
/// start stops the start and tells the workers already running to shut down.
fn spawn_workers(
    shared: &Arc<Shared>,
    listeners: Vec<std::net::TcpListener>,
) -> Result<(Vec<JoinHandle<()>>, &'static str), StartError> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let (tx, rx) = std::sync::mpsc::channel::<Result<&'static str, StartError>>();
    let mut workers = Vec::new();
    for (id, listener) in listeners.into_iter().enumerate() {
        let worker_shared = shared.clone();
        let tx = tx.clone();
        let pin = shared.config.pin;
        let spawned = std::thread::Builder::new()
            .name(format!("tollgate-w{id}"))
            .spawn(move || {
                if pin {
                    pin_to_core(id % cores);
                }
                worker_thread(id, worker_shared, listener, tx)
            });
        match spawned {
            Ok(h) => workers.push(h),
            Err(e) => {
                // The workers already running must not go on accepting.
                shared.shutdown.store(true, Ordering::Relaxed);
                return Err(StartError::Worker {
                    worker: id,
                    why: e.to_string(),
                });
            }
        }
    }
    drop(tx);
    let mut driver = "epoll";
    for _ in 0..workers.len() {
        match rx.recv() {
            Ok(Ok(d)) => driver = d,
            Ok(Err(e)) => {
                shared.shutdown.store(true, Ordering::Relaxed);
                return Err(e);
            }
            Err(_) => {
                return Err(StartError::Worker {
                    worker: 0,
                    why: "worker exited during start".into(),
                })
            }
        }
    }
    Ok((workers, driver))
}

impl Relay {
    /// Start the sink, the admin listener and the workers. Returns once every worker accepts.
    pub fn start(config: Config) -> Result<Relay, StartError> {
        let registry = Arc::new(Registry::new());
        let keys = match &config.auth {
            AuthMode::Managed { keys_file } => Some(Arc::new(ClientKeys::load(keys_file)?)),
            AuthMode::Passthrough => None,
        };
        let mut tenants = crate::limits::Tenants::new(
            config.tenant_limits,
            keys.as_ref()
                .map(|k| k.limits().clone())
                .unwrap_or_default(),
        );
        if let Some(b) = &config.fleet.budget {
            tenants = tenants.with_fleet(b.fail);
        }
        let tenants = Arc::new(tenants);
        if let Some(k) = &keys {
            check_key_routes(k, &config.routes)?;
            check_key_fleet(k, &config)?;
        }
        let upstreams = config
            .routes
            .list
            .iter()
            .map(Upstream::new)
            .collect::<Result<Vec<_>, _>>()?;
        let listener_tls = match &config.tls {
            Some((cert, key)) => Some(crate::tls::TlsAcceptor::from(server_tls_config(cert, key)?)),
            None => None,
        };
        let sink = start_sink(&config, &registry)?;
        let (addr, listeners) = bind_listeners(config.listen, config.workers)?;

        let ready = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            tenants: Arc::clone(&tenants),
            ready: ready.clone(),
            worker_failed: AtomicBool::new(false),
            keys: RwLock::new(keys),
            upstreams,
            listener_tls: RwLock::new(listener_tls),
            sink: sink.handle(),
            registry: registry.clone(),
            shutdown: AtomicBool::new(false),
            drain_deadline: OnceLock::new(),
            config,
        });
        let fleet = crate::fleet::Fleet::start(
            &shared.config.fleet,
            Arc::clone(&tenants),
            shared.sink.clone(),
            registry.fleet_metrics(),
        )
        .map_err(|e| StartError::Fleet(e.to_string()))?;
        let admin_addr = match shared.config.admin_listen {
            Some(a) => Some(
                crate::metrics::spawn_admin(a, registry.clone(), ready.clone())
                    .map_err(StartError::Admin)?
                    .0,
            ),
            None => None,
        };
        for i in 0..shared.upstreams.len() {
            spawn_resolver(&shared, i);
        }

        let (workers, driver) = spawn_workers(&shared, listeners)?;
        registry.set_driver(driver);
        ready.store(true, Ordering::Relaxed);
        let admin = admin_addr.map_or_else(|| "none".to_string(), |a| a.to_string());
        let routes: Vec<String> = shared
            .config
            .routes
            .list
            .iter()
            .map(|r| format!("{}={}", r.name, r.label))
            .collect();
        tracing::info!(listen = %addr, admin = %admin, workers = workers.len(), driver, routes = %routes.join(","), tls = shared.config.tls.is_some(), tunnel = shared.config.tunnel, "tollgate listening");
        Ok(Relay {
            addr,
            admin_addr,
            shared,
            workers,
            sink: Some(sink),
            fleet,
            ready,
            driver,
        })
    }

    /// The bound client listener address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The io driver the workers run (`io_uring` or `epoll`).
    pub fn driver(&self) -> &'static str {
        self.driver
    }

    /// Shared state (tests and the admin endpoint).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// SIGHUP: reopen the usage log (log rotation), re-read the client keys file (and its
    /// per-tenant limits) and the listener's TLS certificate and key. Open sessions are not
    /// touched; on any error the old keys and certificate stay in force.
    pub fn reload(&self) -> Result<usize, ReloadError> {
        self.shared.sink.reopen();
        let mut n = 0;
        if let AuthMode::Managed { keys_file } = &self.shared.config.auth {
            let keys = ClientKeys::load(keys_file)?;
            check_key_routes(&keys, &self.shared.config.routes)?;
            n = keys.len();
            self.shared.tenants.reconfigure(keys.limits().clone());
            if let Ok(mut k) = self.shared.keys.write() {
                *k = Some(Arc::new(keys));
            }
        }
        if let Some((cert, key)) = &self.shared.config.tls {
            let acceptor = crate::tls::TlsAcceptor::from(server_tls_config(cert, key)?);
            if let Ok(mut t) = self.shared.listener_tls.write() {
                *t = Some(acceptor);
            }
        }
        Ok(n)
    }

    /// Graceful shutdown: stop accepting, let in-flight responses finish until `drain`, close
    /// the rest with 1001, sync the usage log. Returns whether every record is durable.
    pub fn shutdown(mut self, drain: Duration) -> bool {
        self.ready.store(false, Ordering::Relaxed);
        let _ = self.shared.drain_deadline.set(Instant::now() + drain);
        self.shared.shutdown.store(true, Ordering::Relaxed);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        let durable = match self.sink.take().map(|s| s.shutdown()) {
            Some(Ok(stats)) => {
                if !stats.not_durable.is_empty() {
                    // Never drop a record silently: what the log could not take goes to
                    // stderr as JSON lines, for the operator to recover. The usage journal
                    // keeps the ones it holds for the next start, which appends those the log
                    // still lacks (a record the operator appended first is not doubled).
                    tracing::error!(
                        not_durable = stats.not_durable.len(),
                        "usage records not in the usage log; dumping them to stderr (the next start appends those the usage journal kept)"
                    );
                    for r in &stats.not_durable {
                        if let Ok(line) = serde_json::to_string(r) {
                            eprintln!("{line}");
                        }
                    }
                }
                tracing::info!(
                    durable = stats.durable,
                    failed = stats.failed,
                    "usage log closed"
                );
                !stats.failed && stats.not_durable.is_empty()
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "usage log did not close cleanly");
                false
            }
            None => true,
        };
        // After the log closed: the exporter's last pass sees every record.
        if let Some(f) = self.fleet.take() {
            f.shutdown(Duration::from_secs(8));
        }
        durable
    }
}

/// Run until SIGTERM/SIGINT; SIGHUP reloads the client keys. Returns the exit code.
pub fn run(config: Config) -> i32 {
    block_signals();
    match memory::set_huge_pages(config.huge_pages) {
        memory::HugePagesOutcome::Unavailable(errno) => tracing::warn!(
            errno,
            "transparent huge pages: the kernel refused PR_SET/GET_THP_DISABLE; the heap follows the kernel's THP mode"
        ),
        chosen => tracing::info!(huge_pages = %chosen.as_str(), "memory policy"),
    }
    let relay = match Relay::start(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tollgate: {e}");
            return if e.is_usage() { 64 } else { 70 };
        }
    };
    loop {
        if wait_signal() {
            break;
        }
        match relay.reload() {
            Ok(n) => tracing::info!(keys = n, "reloaded client keys and TLS material"),
            Err(e) => {
                tracing::error!(error = %e, "reload failed; keeping the old keys and certificate")
            }
        }
    }
    let drain = relay.shared.config.drain_timeout;
    tracing::info!(
        drain_s = drain.as_secs(),
        "shutting down: listener closed, draining sessions"
    );
    let failed = Arc::clone(&relay.shared);
    let durable = relay.shutdown(drain);
    if failed.worker_failed.load(Ordering::SeqCst) {
        tracing::error!("a worker thread died; exiting 70 so a supervisor restarts the relay");
        70
    } else if durable {
        0
    } else {
        75
    }
}
