//! Shared helpers for the integration tests: a real relay on 127.0.0.1:0 (in-process,
//! one worker, the driver chosen per test) and raw-socket peers.
#![allow(dead_code)]

use std::io::{Read, Write};

pub mod process;
#[allow(unused_imports)]
pub use process::RelayProcess;
pub mod raw;
#[allow(unused_imports)]
pub use raw::*;
pub mod relay_client;
pub mod slow_peers;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tollgate::config::Cli;
use tollgate::runtime::Relay;

/// The mock upstream that echoes every frame back (the set-up most relay tests share).
pub async fn echo_mock() -> tollgate_loadtest::mock::MockUpstream {
    tollgate_loadtest::mock::MockUpstream::start(tollgate_loadtest::mock::MockConfig {
        echo: true,
        ..Default::default()
    })
    .await
    .expect("mock upstream")
}

/// The drivers every integration test runs under: sessions (plain or TLS) on the data
/// plane under io_uring and under epoll, and on the async adapter (`--no-ring`) under
/// epoll.
pub const DRIVERS: [&str; 3] = ["uring", "epoll", "epoll-async"];

/// The relay flags that select `driver` (one of [`DRIVERS`], or `auto`).
pub fn driver_args(driver: &str) -> Vec<String> {
    match driver.strip_suffix("-async") {
        Some(d) => vec!["--driver".into(), d.into(), "--no-ring".into()],
        None => vec!["--driver".into(), driver.into()],
    }
}

/// A relay running in this process; shut down on drop.
pub struct TestRelay {
    relay: Option<Relay>,
    /// Client listener.
    pub addr: SocketAddr,
    /// Keys file kept alive for the relay's lifetime.
    _dir: tempfile::TempDir,
    /// Where the usage log goes (if the test asked for one with `usage_log`).
    pub usage_log: std::path::PathBuf,
}

impl TestRelay {
    /// Admin listener address (when started with `--admin-listen`).
    pub fn admin(&self) -> SocketAddr {
        self.relay
            .as_ref()
            .and_then(|r| r.admin_addr())
            .expect("admin listener")
    }
    /// The relay itself.
    pub fn relay(&self) -> &Relay {
        self.relay.as_ref().expect("running")
    }
    /// Graceful stop; returns whether the usage log closed cleanly.
    pub fn stop(mut self, drain: Duration) -> bool {
        self.relay.take().map(|r| r.shutdown(drain)).unwrap_or(true)
    }
    /// Graceful stop, then the usage log's records.
    pub fn stop_and_read(
        mut self,
        drain: Duration,
    ) -> (bool, Vec<tollgate::metering::UsageRecord>) {
        let clean = self.relay.take().map(|r| r.shutdown(drain)).unwrap_or(true);
        let recs = tollgate::metering::read_log(&self.usage_log)
            .map(|r| r.records)
            .unwrap_or_default();
        (clean, recs)
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(r) = self.relay.take() {
            r.shutdown(Duration::from_millis(200));
        }
    }
}

/// The relay key the tests present, and the provider key the relay injects.
pub const RELAY_KEY: &str = "tg-test-relay-key-0001";
/// Provider credential (`--upstream-header`).
pub const PROVIDER_KEY: &str = "sk-provider-secret-9999";

/// Start a relay in managed mode (tenant `acme` with [`RELAY_KEY`]) on `upstream`, one
/// worker, the given driver, plus `extra` flags.
pub fn start_relay(driver: &str, upstream: &str, extra: &[&str]) -> TestRelay {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("# test keys\nacme {RELAY_KEY}\n")).expect("keys");
    let usage_log = dir.path().join("usage.jsonl");
    let mut args: Vec<String> = vec![
        "tollgate".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--workers".into(),
        "1".into(),
        "--no-pin".into(),
        "--upstream".into(),
        upstream.into(),
        "--client-keys".into(),
        keys.display().to_string(),
        "--upstream-header".into(),
        format!("Authorization: Bearer {PROVIDER_KEY}"),
    ];
    args.extend(driver_args(driver));
    for e in extra {
        args.push(e.replace("{usage_log}", &usage_log.display().to_string()));
    }
    let cli = Cli::try_parse_from(&args).expect("cli");
    let config = cli.into_config().expect("config");
    let relay = Relay::start(config).expect("relay starts");
    TestRelay {
        addr: relay.local_addr(),
        relay: Some(relay),
        _dir: dir,
        usage_log,
    }
}

/// Start a relay from a config file: `config` (TOML) and `keys` are written to a temp dir
/// (`{dir}` in either is replaced by its path, `{usage_log}` by the usage log's), then the
/// relay starts with `--config` plus `extra` flags, one worker, the given driver.
pub fn start_relay_config(driver: &str, config: &str, keys: &str, extra: &[&str]) -> TestRelay {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display().to_string();
    let usage_log = dir.path().join("usage.jsonl");
    let fill = |s: &str| {
        s.replace("{dir}", &d)
            .replace("{usage_log}", &usage_log.display().to_string())
    };
    std::fs::write(dir.path().join("keys"), fill(keys)).expect("keys");
    let cfg = dir.path().join("tollgate.toml");
    std::fs::write(&cfg, fill(config)).expect("config");
    let mut args: Vec<String> = vec![
        "tollgate".into(),
        "--config".into(),
        cfg.display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--workers".into(),
        "1".into(),
        "--no-pin".into(),
    ];
    args.extend(driver_args(driver));
    args.extend(extra.iter().map(|e| fill(e)));
    let cli = Cli::parse_from_all(&args).expect("cli");
    let config = cli.into_config().expect("config");
    let relay = Relay::start(config).expect("relay starts");
    TestRelay {
        addr: relay.local_addr(),
        relay: Some(relay),
        _dir: dir,
        usage_log,
    }
}

/// A TCP listener standing in for an upstream that must never be dialed: counts accepts.
pub struct CountingUpstream {
    /// Its address.
    pub addr: SocketAddr,
    /// Connections accepted.
    pub accepted: Arc<AtomicUsize>,
}

impl CountingUpstream {
    /// Bind 127.0.0.1:0 and count (and immediately drop) connections in a thread.
    pub fn start() -> CountingUpstream {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                if c.is_ok() {
                    a.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        CountingUpstream { addr, accepted }
    }
    /// `ws://` URL.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }
    /// Connections so far.
    pub fn count(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl CountingUpstream {
    /// Like [`CountingUpstream::start`] but keeps every connection open and silent.
    pub fn start_silent() -> CountingUpstream {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        std::thread::spawn(move || {
            let mut keep = Vec::new();
            for c in l.incoming().flatten() {
                a.fetch_add(1, Ordering::SeqCst);
                keep.push(c);
            }
        });
        CountingUpstream { addr, accepted }
    }
}

/// An upstream that records every byte it receives and answers 429 to the first head.
pub struct RecordingRefuser {
    /// Its address.
    pub addr: SocketAddr,
    got: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl RecordingRefuser {
    /// Start on 127.0.0.1:0.
    pub fn start() -> RecordingRefuser {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let g = g.clone();
                std::thread::spawn(move || {
                    let _ = c.set_read_timeout(Some(Duration::from_millis(300)));
                    let mut buf = [0u8; 4096];
                    let mut answered = false;
                    loop {
                        match c.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                let mut all = g.lock().unwrap();
                                all.extend_from_slice(&buf[..n]);
                                if !answered && all.windows(4).any(|w| w == b"\r\n\r\n") {
                                    answered = true;
                                    let body = r#"{"error":{"type":"rate_limit_error","code":"rate_limit_exceeded","message":"slow down"}}"#;
                                    let _ = c.write_all(format!("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
                                }
                            }
                            Err(_) => {
                                if answered {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        RecordingRefuser { addr, got }
    }
    /// `ws://` URL.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }
    /// Bytes received so far.
    pub fn received(&self) -> Vec<u8> {
        self.got.lock().unwrap().clone()
    }
}

/// Read messages until the server's close; returns its code and the text messages seen.
pub async fn recv_until_close(
    c: &mut tollgate_loadtest::client::WsClient,
) -> (Option<u16>, Vec<String>) {
    use tollgate_loadtest::client::Message;
    let mut texts = Vec::new();
    loop {
        match c.recv().await {
            Ok(Message::Text(t)) => texts.push(t),
            Ok(Message::Close(code, _)) => return (code, texts),
            Ok(_) => {}
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    }
}

/// The first close frame the mock upstream received, waiting up to 5 s for it (the relay
/// writes it asynchronously; a loaded CI machine may take a while).
pub fn upstream_close(
    mock: &tollgate_loadtest::mock::MockUpstream,
) -> Option<tollgate_loadtest::mock::ReceivedFrame> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(f) = mock.received().into_iter().find(|f| f.opcode == 8) {
            return Some(f);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `GET path` on the admin listener; the whole response (head and body).
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The value of an unlabeled (or exactly labeled) sample in `/metrics`, waiting up to 3 s
/// (workers publish every 200 ms) for it to reach `at_least`.
pub fn metric_at_least(admin: SocketAddr, sample: &str, at_least: f64) -> f64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let body = http_get(admin, "/metrics");
        let v = body
            .lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if v >= at_least || std::time::Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every ledger entry has exactly one record with the same usage, and nothing else is there.
pub fn assert_matches_ledger(
    recs: &[tollgate::metering::UsageRecord],
    ledger: &[tollgate_loadtest::mock::LedgerEntry],
) {
    let by_id: std::collections::HashMap<_, _> =
        recs.iter().map(|r| (r.response_id.clone(), r)).collect();
    assert_eq!(by_id.len(), recs.len(), "duplicate records: {recs:#?}");
    assert_eq!(
        recs.len(),
        ledger.len(),
        "records {recs:#?}\nledger {ledger:#?}"
    );
    for l in ledger {
        let r = by_id
            .get(&l.response_id)
            .unwrap_or_else(|| panic!("no record for {}", l.response_id));
        assert_eq!(
            (
                r.input_tokens,
                r.cached_tokens,
                r.output_tokens,
                r.reasoning_tokens
            ),
            (
                l.input_tokens,
                l.cached_tokens,
                l.output_tokens,
                l.reasoning_tokens
            ),
            "{}",
            l.response_id
        );
        assert_eq!(r.stream_id, l.stream_id);
        assert_eq!(r.model.as_deref(), Some(l.model.as_str()));
        assert_eq!(r.tenant, "acme");
    }
}

/// Fresh TLS material (a CA and a `localhost` certificate) and its PEM files, which live
/// as long as this value.
pub struct TlsFiles {
    pub tls: tollgate_loadtest::tls::TestTls,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsFiles {
    pub fn generate() -> TlsFiles {
        let tls = tollgate_loadtest::tls::test_tls().expect("test TLS material");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (cert, key, ca) = tls.write_to(dir.path()).expect("PEM files");
        TlsFiles {
            tls,
            cert,
            key,
            ca,
            _dir: dir,
        }
    }

    /// `--upstream-ca <ca.pem>`: the relay trusts the mock's certificate.
    pub fn upstream_ca_args(&self) -> [&str; 2] {
        ["--upstream-ca", self.ca.to_str().expect("a UTF-8 path")]
    }
}
