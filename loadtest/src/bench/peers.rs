//! The peers of the side-by-side benchmark and how each one is started in front
//! of the mock upstream, pinned to the SUT core.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cases::Kind;
use super::machine::which;
use super::proxy_conf::{haproxy_conf, nginx_conf};
use crate::gen::procfs;

/// One system in front of the mock (or none).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Peer {
    /// Generator → mock, no proxy.
    Direct,
    /// `tollgate --tunnel`: bytes copied after the upgrade (the ceiling).
    Tunnel,
    /// `tollgate-floor`: a minimal io_uring byte tunnel (multishot receive into one
    /// buffer ring, send from the buffer; no WebSocket work) — the kernel's floor. Plain
    /// TCP only; opt-in.
    Floor,
    /// The full relay.
    Tollgate,
    /// The full relay without `--usage-log` (what the log writer costs).
    #[serde(rename = "tollgate-nolog")]
    TollgateNoLog,
    /// The full relay with every session on the async adapter (`--no-ring`): the
    /// data-plane comparison, not in the default set.
    #[serde(rename = "tollgate-async")]
    TollgateAsync,
    /// The full relay with its rings built with `COOP_TASKRUN` instead of
    /// `SINGLE_ISSUER|DEFER_TASKRUN` (`--uring-setup coop`): the ring-flags comparison.
    #[serde(rename = "tollgate-coop")]
    TollgateCoop,
    /// The full relay with its heap allowed transparent huge pages (`--huge-pages
    /// allow`, as mimalloc asks): the memory-policy comparison, not in the default set.
    #[serde(rename = "tollgate-thp")]
    TollgateThp,
    /// The full relay on epoll (`--driver epoll`).
    #[serde(rename = "tollgate-epoll")]
    TollgateEpoll,
    /// Debian nginx, 1 worker.
    Nginx,
    /// Debian HAProxy, 1 thread.
    Haproxy,
}

impl Peer {
    /// The default peers, in table order.
    pub const ALL: [Peer; 8] = [
        Peer::Direct,
        Peer::Floor,
        Peer::Tunnel,
        Peer::Tollgate,
        Peer::TollgateNoLog,
        Peer::TollgateEpoll,
        Peer::Nginx,
        Peer::Haproxy,
    ];

    /// Every peer `--peers` accepts.
    pub const KNOWN: [Peer; 11] = [
        Peer::Direct,
        Peer::Floor,
        Peer::Tunnel,
        Peer::Tollgate,
        Peer::TollgateNoLog,
        Peer::TollgateAsync,
        Peer::TollgateCoop,
        Peer::TollgateThp,
        Peer::TollgateEpoll,
        Peer::Nginx,
        Peer::Haproxy,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Direct => "direct",
            Peer::Tunnel => "tunnel",
            Peer::Floor => "floor",
            Peer::Tollgate => "tollgate",
            Peer::TollgateNoLog => "tollgate-nolog",
            Peer::TollgateAsync => "tollgate-async",
            Peer::TollgateCoop => "tollgate-coop",
            Peer::TollgateThp => "tollgate-thp",
            Peer::TollgateEpoll => "tollgate-epoll",
            Peer::Nginx => "nginx",
            Peer::Haproxy => "haproxy",
        }
    }

    /// Parses a name from [`Self::name`].
    pub fn parse(s: &str) -> Option<Peer> {
        Peer::KNOWN.into_iter().find(|p| p.name() == s)
    }

    /// Whether this peer runs cases of `kind`: the floor only where it measures what it
    /// stands for — CPU and latency per frame. Its accept path connects upstream with a
    /// blocking `connect` (churn would measure that), and its buffer ring is sized for
    /// throughput, not for idle memory.
    pub fn runs(self, kind: Kind) -> bool {
        !(self == Peer::Floor && matches!(kind, Kind::Idle | Kind::Churn))
    }

    /// Whether this peer writes a usage log to check.
    pub fn meters(self) -> bool {
        matches!(
            self,
            Peer::Tollgate
                | Peer::TollgateAsync
                | Peer::TollgateCoop
                | Peer::TollgateThp
                | Peer::TollgateEpoll
        )
    }
}

/// Why a peer could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Its binary is not installed.
    #[error("{0} is not installed")]
    NotInstalled(&'static str),
    /// Spawning failed.
    #[error("cannot start {peer}: {source}")]
    Spawn {
        /// Peer name.
        peer: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The process exited or never listened.
    #[error("{peer} did not start listening: {detail}")]
    NotListening {
        /// Peer name.
        peer: &'static str,
        /// Exit status or log tail.
        detail: String,
    },
}

/// Which legs run TLS in a bench (`loadtest bench --tls`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain TCP on both legs.
    #[default]
    None,
    /// `wss://` between the SUT and the mock upstream (production's shape).
    Upstream,
    /// `wss://` on both legs.
    Both,
}

impl TlsMode {
    /// Which legs are TLS, in the report's words; `None` for plain TCP.
    pub fn legs(self) -> Option<&'static str> {
        match self {
            TlsMode::None => None,
            TlsMode::Upstream => Some("a TLS upstream leg"),
            TlsMode::Both => Some("TLS on both legs"),
        }
    }
}

/// Certificate files for the TLS legs (one test CA; the certificate names `localhost`
/// and `127.0.0.1`).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Server certificate (PEM).
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
    /// The CA (PEM).
    pub ca: PathBuf,
    /// Certificate and key in one file (HAProxy's `crt`).
    pub combined: PathBuf,
}

impl TlsFiles {
    /// Fresh test certificates (CA + `localhost` leaf) written into `dir`.
    pub fn generate(dir: &Path) -> std::io::Result<TlsFiles> {
        let t = crate::tls::test_tls().map_err(|e| std::io::Error::other(e.to_string()))?;
        let (cert, key, ca) = t.write_to(dir)?;
        let combined = dir.join("combined.pem");
        std::fs::write(&combined, format!("{}{}", t.cert_pem, t.key_pem))?;
        Ok(TlsFiles {
            cert,
            key,
            ca,
            combined,
        })
    }
}

/// What every peer start needs.
#[derive(Debug, Clone)]
pub struct PeerEnv {
    /// TLS legs.
    pub tls: TlsMode,
    /// Their certificate files (`None` with [`TlsMode::None`]).
    pub tls_files: Option<TlsFiles>,
    /// The tollgate binary.
    pub tollgate: PathBuf,
    /// `<tenant> <key>` file for tollgate.
    pub keys_file: PathBuf,
    /// CPU for the SUT (`taskset -c`); `None` = unpinned.
    pub sut_cpu: Option<usize>,
}

/// A started peer; SIGTERMed on [`RunningPeer::stop`] or drop.
#[derive(Debug)]
pub struct RunningPeer {
    /// Which peer.
    pub peer: Peer,
    /// `ws://…` the generator dials.
    pub url: String,
    /// tollgate's usage log.
    pub usage_log: Option<PathBuf>,
    child: Option<Child>,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_listening(
    addr: SocketAddr,
    child: &mut Child,
    peer: &'static str,
    log: &Path,
) -> Result<(), PeerError> {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if let Ok(Some(status)) = child.try_wait() {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: String = tail.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
            return Err(PeerError::NotListening {
                peer,
                detail: format!("exited with {status}: {tail}"),
            });
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(PeerError::NotListening {
        peer,
        detail: "no listener after 10 s".into(),
    })
}

impl RunningPeer {
    /// Starts `peer` in front of `upstream`, with its files under `dir`.
    pub fn start(
        peer: Peer,
        env: &PeerEnv,
        upstream: SocketAddr,
        dir: &Path,
    ) -> Result<RunningPeer, PeerError> {
        let spawn_err = |source| PeerError::Spawn {
            peer: peer.name(),
            source,
        };
        let up_scheme = if env.tls == TlsMode::None {
            "ws"
        } else {
            "wss"
        };
        if peer == Peer::Direct {
            return Ok(RunningPeer {
                peer,
                url: format!("{up_scheme}://{upstream}"),
                usage_log: None,
                child: None,
            });
        }
        std::fs::create_dir_all(dir).map_err(spawn_err)?;
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port().map_err(spawn_err)?));
        let log = dir.join(format!("{}.log", peer.name()));
        let mut usage_log = None;
        let (program, args): (PathBuf, Vec<String>) = match peer {
            // Direct returned above; it never reaches a command line.
            Peer::Direct
            | Peer::Tunnel
            | Peer::Tollgate
            | Peer::TollgateNoLog
            | Peer::TollgateAsync
            | Peer::TollgateCoop
            | Peer::TollgateThp
            | Peer::TollgateEpoll => {
                if !env.tollgate.is_file() {
                    return Err(PeerError::NotInstalled("tollgate"));
                }
                let mut a: Vec<String> = [
                    "--listen",
                    &listen.to_string(),
                    "--workers",
                    "1",
                    "--no-pin",
                    "--driver",
                    "uring",
                    "--upstream",
                    &format!("{up_scheme}://{upstream}"),
                    "--client-keys",
                    &env.keys_file.display().to_string(),
                    "--upstream-header",
                    "Authorization: Bearer x",
                    "--log",
                    "warn",
                    "--drain-timeout",
                    "2s",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                if peer == Peer::Tunnel {
                    a.push("--tunnel".into());
                }
                if peer == Peer::TollgateAsync {
                    a.push("--no-ring".into());
                }
                if let Some(f) = &env.tls_files {
                    a.extend(["--upstream-ca".into(), f.ca.display().to_string()]);
                    if env.tls == TlsMode::Both {
                        a.extend([
                            "--tls-cert".into(),
                            f.cert.display().to_string(),
                            "--tls-key".into(),
                            f.key.display().to_string(),
                        ]);
                    }
                }
                if peer == Peer::TollgateCoop {
                    a.extend(["--uring-setup".into(), "coop".into()]);
                }
                if peer == Peer::TollgateThp {
                    a.extend(["--huge-pages".into(), "allow".into()]);
                }
                if peer == Peer::TollgateEpoll {
                    if let Some(d) = a.iter().position(|x| x == "uring") {
                        a[d] = "epoll".into();
                    }
                }
                if peer.meters() {
                    let u = dir.join("usage.jsonl");
                    a.extend(["--usage-log".to_string(), u.display().to_string()]);
                    usage_log = Some(u);
                }
                (env.tollgate.clone(), a)
            }
            Peer::Floor => {
                let bin = env.tollgate.with_file_name("tollgate-floor");
                if !bin.is_file() {
                    return Err(PeerError::NotInstalled("tollgate-floor"));
                }
                if env.tls != TlsMode::None {
                    return Err(PeerError::Spawn {
                        peer: peer.name(),
                        source: std::io::Error::other("the floor tunnel speaks plain TCP only"),
                    });
                }
                (bin, vec![listen.to_string(), upstream.to_string()])
            }
            Peer::Nginx => {
                let bin = which("nginx").ok_or(PeerError::NotInstalled("nginx"))?;
                let conf = dir.join("nginx.conf");
                std::fs::write(&conf, nginx_conf(dir, listen, upstream, env)).map_err(spawn_err)?;
                let a = vec![
                    "-p".into(),
                    format!("{}/", dir.display()),
                    "-c".into(),
                    conf.display().to_string(),
                    "-e".into(),
                    dir.join("error.log").display().to_string(),
                ];
                (bin, a)
            }
            Peer::Haproxy => {
                let bin = which("haproxy").ok_or(PeerError::NotInstalled("haproxy"))?;
                let conf = dir.join("haproxy.cfg");
                std::fs::write(&conf, haproxy_conf(listen, upstream, env)).map_err(spawn_err)?;
                (
                    bin,
                    vec!["-f".into(), conf.display().to_string(), "-db".into()],
                )
            }
        };
        let logf = std::fs::File::create(&log).map_err(spawn_err)?;
        let mut cmd = match env.sut_cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        cmd.args(&args).stdin(Stdio::null()).stdout(Stdio::null());
        cmd.stderr(logf);
        let mut child = cmd.spawn().map_err(spawn_err)?;
        if let Err(e) = wait_listening(listen, &mut child, peer.name(), &log) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        let scheme = if env.tls == TlsMode::Both {
            "wss"
        } else {
            "ws"
        };
        Ok(RunningPeer {
            peer,
            url: format!("{scheme}://{listen}"),
            usage_log,
            child: Some(child),
        })
    }

    /// Every process of the SUT (nginx: master and workers).
    pub fn pids(&self) -> Vec<u32> {
        let Some(c) = &self.child else {
            return Vec::new();
        };
        let mut p = vec![c.id()];
        p.extend(procfs::children(c.id()));
        p
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(c.id()) {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for RunningPeer {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Version strings of the peers (for the report header).
pub fn versions(tollgate: &Path) -> Vec<(String, String)> {
    use super::machine::version_of;
    let t = tollgate.display().to_string();
    [
        ("tollgate", version_of(&t, &["--version"])),
        (
            "nginx",
            which("nginx").and_then(|b| version_of(&b.display().to_string(), &["-v"])),
        ),
        (
            "haproxy",
            which("haproxy").and_then(|b| version_of(&b.display().to_string(), &["-v"])),
        ),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v.unwrap_or_else(|| "not installed".into())))
    .collect()
}
