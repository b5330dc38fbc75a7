//! Helpers of the fleet tests: the engines (`nats-server`, `redis-server`) as restartable
//! processes on fixed ports, clients and their traffic, the records, stream, metrics and
//! `/readyz` they are checked against.
// Shared by the fleet's test files; each uses only its part.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::*;
use tollgate_loadtest::client::{connect, ClientOpts, ConnectError, WsClient};

/// A port no other caller in this test process has been given. The listener is closed
/// before the port is used, so two tests asking at once could otherwise be handed the
/// same one and one engine would answer for the other's.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// How a started engine shows it is the one we started, serving on its port.
#[derive(Clone, Copy, Debug)]
pub enum Probe {
    /// `PING` answered `+PONG` (or `-NOAUTH` when it wants a password).
    Redis,
    /// The greeting is `INFO {...}` naming the port.
    Nats,
}

impl Probe {
    fn answers(self, port: u16) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        if let Probe::Redis = self {
            if s.write_all(b"PING\r\n").is_err() {
                return false;
            }
        }
        let Ok(line) = first_line(&mut s) else {
            return false;
        };
        match self {
            Probe::Redis => line.starts_with("+PONG") || line.starts_with("-NOAUTH"),
            Probe::Nats => line.starts_with("INFO ") && line.contains(&format!("\"port\":{port},")),
        }
    }
}

/// A server process on a fixed port, restartable with the same arguments.
pub struct Server {
    bin: &'static str,
    args: Vec<String>,
    port: u16,
    probe: Probe,
    child: Option<Child>,
}

impl Server {
    pub fn start(bin: &'static str, args: Vec<String>, port: u16, probe: Probe) -> Server {
        let mut s = Server {
            bin,
            args,
            port,
            probe,
            child: None,
        };
        s.up();
        s
    }

    pub fn nats(store: &Path) -> Server {
        Server::nats_with(store, &[])
    }

    /// NATS with extra arguments (e.g. `--user`, `--pass`).
    pub fn nats_with(store: &Path, extra: &[&str]) -> Server {
        let port = free_port();
        let args = ["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"]
            .iter()
            .map(|s| s.to_string())
            .chain([store.display().to_string()])
            .chain(extra.iter().map(|s| s.to_string()))
            .collect();
        Server::start("nats-server", args, port, Probe::Nats)
    }

    pub fn redis() -> Server {
        Server::redis_with(&[])
    }

    /// Redis with extra arguments (e.g. `--requirepass`).
    pub fn redis_with(extra: &[&str]) -> Server {
        let port = free_port();
        let args = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
        Server::start("redis-server", args, port, Probe::Redis)
    }

    /// Start the process and wait until it answers on its port as what it is; a process
    /// that exits first (its port taken by another) fails the test with that reason.
    pub fn up(&mut self) {
        let mut child = Command::new(self.bin)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} (scripts/install-deps.sh installs it): {e}", self.bin));
        let end = Instant::now() + Duration::from_secs(10);
        while !self.probe.answers(self.port) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{} exited at start ({status}); port {} taken?",
                    self.bin, self.port
                );
            }
            assert!(
                Instant::now() < end,
                "{} never answered on port {}",
                self.bin,
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let _ = c.wait();
        }
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn opts(key: &str) -> ClientOpts {
    ClientOpts {
        headers: vec![("Authorization".into(), format!("Bearer {key}"))],
        recv_timeout: Some(Duration::from_secs(10)),
        connect_timeout: Duration::from_secs(5),
        ..ClientOpts::default()
    }
}

pub async fn session(addr: &str, key: &str) -> Result<WsClient, ConnectError> {
    connect(&format!("ws://{addr}/v1/responses"), opts(key)).await
}

/// Turns on fresh sessions until `n` completed or the relay is gone; returns completed.
pub async fn traffic(addr: String, n: usize) -> usize {
    let mut done = 0;
    let mut failures = 0;
    while done < n && failures < 3 {
        let Ok(mut c) = session(&addr, RELAY_KEY).await else {
            failures += 1;
            continue;
        };
        for _ in 0..5 {
            match c
                .turn(r#"{"type":"response.create","model":"gpt-5","input":"hi"}"#)
                .await
            {
                Ok(_) => done += 1,
                Err(_) => {
                    failures += 1;
                    break;
                }
            }
        }
    }
    done
}

/// One inline command to a Redis server; its first reply line.
pub fn redis_command(server: &Server, command: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).expect("redis");
    s.write_all(format!("{command}\r\n").as_bytes())
        .expect("write");
    first_line(&mut s).expect("reply")
}

/// What a server sends up to its first newline (2 s at most), without the line end.
fn first_line(s: &mut TcpStream) -> std::io::Result<String> {
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.contains(&b'\n') {
        match s.read(&mut buf)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => got.extend_from_slice(&buf[..n]),
        }
    }
    Ok(String::from_utf8_lossy(&got).trim_end().to_string())
}

pub fn records(p: &Path) -> Vec<tollgate::metering::UsageRecord> {
    tollgate::metering::read_log(p)
        .map(|r| r.records)
        .unwrap_or_default()
}

/// Every message in the stream: response ids in order.
pub async fn stream_ids(nats: &str) -> Vec<String> {
    // async-nats does not send credentials written in the URL: pass them as options.
    let addr: async_nats::ServerAddr = nats.parse().expect("nats url");
    let options = match (addr.username(), addr.password()) {
        (Some(u), Some(p)) => {
            async_nats::ConnectOptions::with_user_and_password(u.into(), p.into())
        }
        _ => async_nats::ConnectOptions::new(),
    };
    let client = options.connect(addr).await.expect("nats");
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream("TOLLGATE_USAGE")
        .await
        .expect("stream exists");
    let last = stream.info().await.expect("info").state.last_sequence;
    let mut ids = Vec::new();
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await {
            let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("record json");
            assert_eq!(
                m.headers.get("Nats-Msg-Id").map(|h| h.as_str().to_string()),
                v["response_id"].as_str().map(str::to_string),
                "the message id is the response id"
            );
            ids.push(v["response_id"].as_str().expect("id").to_string());
        }
    }
    ids
}

pub fn metric(admin: &str, name: &str) -> f64 {
    let addr = admin.parse().expect("admin addr");
    http_get(addr, "/metrics")
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Sum of a metric's samples over all its labels (`NaN` when it has none).
pub fn metric_sum(admin: &str, name: &str) -> f64 {
    let addr = admin.parse().expect("admin addr");
    let samples: Vec<f64> = http_get(addr, "/metrics")
        .lines()
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    if samples.is_empty() {
        f64::NAN
    } else {
        samples.iter().sum()
    }
}

pub fn readyz(admin: &str) -> String {
    http_get(admin.parse().expect("addr"), "/readyz")
}

pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
