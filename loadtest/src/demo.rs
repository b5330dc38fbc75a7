//! `loadtest demo`: the README's first command. No network, no API key: a mock
//! upstream in-process, the sibling `tollgate` binary in front of it, a short
//! scripted conversation (warm-up, a turn, a chained turn, two lanes at once)
//! printed as a transcript, then the relay's usage log next to the mock's ledger.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::bench::usage;
use crate::client::{connect, ClientOpts, Message, WsClient};
use crate::ledger::{is_terminal, LedgerEntry};
use crate::mock::{MockConfig, MockUpstream};

const KEY: &str = "tg-demo-key-0001";

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOpts {
    /// The relay binary.
    pub tollgate: PathBuf,
    /// Extra flags for the relay.
    pub relay_args: Vec<String>,
    /// A misbehaviour of the mock upstream.
    pub mock_fault: Option<crate::mock::Fault>,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The relay binary is not there.
    #[error("no tollgate binary at {0}: build it with cargo build --release")]
    NoTollgate(PathBuf),
    /// A local file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The relay did not log its listening address.
    #[error("tollgate did not start: {0}")]
    RelayStart(String),
    /// The mock could not start.
    #[error("mock upstream: {0}")]
    Mock(String),
    /// A client step failed.
    #[error("{step}: {detail}")]
    Client {
        /// The step.
        step: &'static str,
        /// What went wrong.
        detail: String,
    },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> DemoError {
    move |source| DemoError::Io { what, source }
}

fn client_err(step: &'static str) -> impl FnOnce(crate::client::ClientError) -> DemoError {
    move |e| DemoError::Client {
        step,
        detail: e.to_string(),
    }
}

struct Relay {
    child: Child,
    addr: String,
}

impl Relay {
    fn spawn(
        bin: &Path,
        extra: &[String],
        upstream: &str,
        keys: &Path,
        log: &Path,
    ) -> Result<Relay, DemoError> {
        let mut child = Command::new(bin)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--workers",
                "1",
                "--no-pin",
                "--upstream",
                upstream,
            ])
            .arg("--client-keys")
            .arg(keys)
            .args([
                "--upstream-header",
                "Authorization: Bearer sk-mock",
                "--drain-timeout",
                "2s",
            ])
            .arg("--usage-log")
            .arg(log)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io("spawning tollgate"))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| DemoError::RelayStart("no stderr".into()))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && line.contains("tollgate listening") {
                    let _ = tx.send(line);
                    sent = true;
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(line) => {
                let addr = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("listen="))
                    .map(|a| a.trim_matches('"').to_string())
                    .ok_or_else(|| DemoError::RelayStart(line.clone()))?;
                Ok(Relay { child, addr })
            }
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                Err(DemoError::RelayStart(format!(
                    "no 'tollgate listening' line ({status})"
                )))
            }
        }
    }

    /// SIGTERM and wait, so the usage log is flushed and closed.
    fn stop(mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn create(input: &str, extra: Value) -> String {
    let mut v =
        json!({"type": "response.create", "model": "gpt-5-mini", "store": false, "input": input});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    v.to_string()
}

fn show_text(s: &str) -> String {
    s.replace('\n', "⏎").replace('\t', "⇥")
}

/// Prints events compactly: runs of deltas become one line with the streamed text.
fn print_events(events: &[Value]) {
    let mut text = String::new();
    let mut deltas = 0;
    let mut lane_of_run = String::new();
    let flush = |text: &mut String, deltas: &mut usize, lane: &str| {
        if *deltas > 0 {
            println!(
                "  ←{lane} response.output_text.delta ×{deltas}: \"{}\"",
                show_text(text)
            );
            text.clear();
            *deltas = 0;
        }
    };
    for e in events {
        let kind = e["type"].as_str().unwrap_or("?");
        let lane = e["stream_id"]
            .as_str()
            .map(|l| format!(" [{l}]"))
            .unwrap_or_default();
        if kind == "response.output_text.delta" {
            if deltas > 0 && lane != lane_of_run {
                flush(&mut text, &mut deltas, &lane_of_run);
            }
            lane_of_run = lane;
            text.push_str(e["delta"].as_str().unwrap_or(""));
            deltas += 1;
            continue;
        }
        flush(&mut text, &mut deltas, &lane_of_run);
        let detail = if let Some(entry) = LedgerEntry::from_terminal(e) {
            format!(
                "  id={} usage: input {}, cached {}, output {}, reasoning {}",
                entry.response_id,
                entry.input_tokens,
                entry.cached_tokens,
                entry.output_tokens,
                entry.reasoning_tokens
            )
        } else if kind == "response.created" {
            format!("  id={}", e["response"]["id"].as_str().unwrap_or("?"))
        } else if kind == "error" {
            format!("  {}", e["error"]["code"])
        } else {
            String::new()
        };
        println!("  ←{lane} {kind}{detail}");
    }
    flush(&mut text, &mut deltas, &lane_of_run);
}

fn response_id(events: &[Value]) -> Option<String> {
    events
        .iter()
        .find(|e| e["type"].as_str().is_some_and(is_terminal))
        .and_then(|e| e["response"]["id"].as_str().map(str::to_string))
}

async fn conversation(url: &str) -> Result<(), DemoError> {
    let opts = ClientOpts {
        headers: vec![("Authorization".into(), format!("Bearer {KEY}"))],
        recv_timeout: Some(Duration::from_secs(10)),
        ..ClientOpts::default()
    };
    let mut c: WsClient = connect(url, opts).await.map_err(|e| DemoError::Client {
        step: "connect",
        detail: e.to_string(),
    })?;
    println!(
        "connected: {url} → HTTP {} (the relay dialed the mock before answering)\n",
        c.status
    );

    println!("── warm-up: response.create with \"generate\": false");
    let ev = c
        .turn(&create(
            "(tools and instructions only)",
            json!({"generate": false}),
        ))
        .await
        .map_err(client_err("warm-up"))?;
    print_events(&ev);

    println!("\n── turn 1: \"Say hello to the relay\"");
    let ev = c
        .turn(&create("Say hello to the relay", json!({})))
        .await
        .map_err(client_err("turn 1"))?;
    print_events(&ev);
    let first = response_id(&ev).unwrap_or_default();

    println!("\n── turn 2: chained with previous_response_id={first}");
    let ev = c
        .turn(&create(
            "And now count the frames",
            json!({"previous_response_id": first, "reasoning": {"effort": "low"}}),
        ))
        .await
        .map_err(client_err("turn 2"))?;
    print_events(&ev);

    println!("\n── two lanes at once: stream_id agent_a and agent_b, both creates sent before either finishes");
    for lane in ["agent_a", "agent_b"] {
        c.send_text(&create(
            &format!("Work on lane {lane}"),
            json!({"stream_id": lane}),
        ))
        .await
        .map_err(client_err("lanes"))?;
    }
    let mut events = Vec::new();
    let mut terminals = 0;
    while terminals < 2 {
        match c.recv().await.map_err(client_err("lanes"))? {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                terminals += usize::from(v["type"].as_str().is_some_and(is_terminal));
                events.push(v);
            }
            Message::Close(code, reason) => {
                return Err(DemoError::Client {
                    step: "lanes",
                    detail: format!("closed {code:?} {reason}"),
                })
            }
            _ => {}
        }
    }
    print_events(&events);
    let _ = c.close(1000, "demo done").await;
    let _ = tokio::time::timeout(Duration::from_secs(2), c.recv()).await;
    println!("\nclosed with 1000");
    Ok(())
}

fn print_usage(records: &[Value], ledger: &[LedgerEntry]) -> bool {
    println!("\n── usage: the relay's log (--usage-log) next to the mock's ledger");
    println!(
        "{:<34} {:>22}   {:>22}",
        "response_id", "relay in/cached/out/rsn", "mock in/cached/out/rsn"
    );
    for l in ledger {
        let r = records
            .iter()
            .find(|r| r["response_id"].as_str() == Some(l.response_id.as_str()));
        let relay = r
            .map(|r| {
                format!(
                    "{}/{}/{}/{}",
                    r["input_tokens"],
                    r["cached_tokens"],
                    r["output_tokens"],
                    r["reasoning_tokens"]
                )
            })
            .unwrap_or_else(|| "missing".into());
        let mock = format!(
            "{}/{}/{}/{}",
            l.input_tokens, l.cached_tokens, l.output_tokens, l.reasoning_tokens
        );
        let mark = if relay == mock { "✓" } else { "✗" };
        println!("{:<34} {relay:>22}   {mock:>22} {mark}", l.response_id);
    }
    let check = usage::compare(records, ledger);
    for p in &check.problems {
        println!("  problem: {p}");
    }
    println!(
        "usage accuracy: {}/{} records match",
        check.matched,
        check.ledger.max(check.records)
    );
    check.accuracy() >= 1.0 && check.ledger > 0
}

/// Runs the demo. `Ok(true)` when every usage record matches the mock's ledger;
/// an `Err` when a step failed.
pub fn run(opts: &DemoOpts) -> Result<bool, DemoError> {
    let tollgate = opts.tollgate.as_path();
    if !tollgate.is_file() {
        return Err(DemoError::NoTollgate(tollgate.to_path_buf()));
    }
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("tollgate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(io("creating the temp dir"))?;
    let keys = dir.join("keys");
    std::fs::write(&keys, format!("demo {KEY}\n")).map_err(io("writing the keys file"))?;
    let log = dir.join("usage.jsonl");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io("starting tokio"))?;
    let result = rt.block_on(async {
        let mock = MockUpstream::start(MockConfig {
            deltas: 6,
            delta_bytes: 110,
            token_rate: Some(100.0),
            fault: opts.mock_fault.clone(),
            ..MockConfig::default()
        })
        .await
        .map_err(|e| DemoError::Mock(e.to_string()))?;
        println!(
            "mock upstream: {} (in-process, fake Responses API)",
            mock.url()
        );
        let relay = Relay::spawn(tollgate, &opts.relay_args, &mock.url(), &keys, &log)?;
        println!(
            "tollgate: {} → {} (pid {}, usage log {})",
            relay.addr,
            mock.url(),
            relay.child.id(),
            log.display()
        );
        let url = format!("ws://{}/v1/responses", relay.addr);
        let convo = conversation(&url).await;
        relay.stop();
        convo?;
        let records = usage::read_jsonl(&log).map_err(io("reading the usage log"))?;
        Ok::<bool, DemoError>(print_usage(&records, &mock.ledger()))
    });
    let _ = std::fs::remove_dir_all(&dir);
    if result.is_ok() {
        println!("demo finished in {:.1} s", started.elapsed().as_secs_f64());
    }
    result
}
