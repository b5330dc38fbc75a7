//! Command-line interface of the `loadtest` binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tollgate_loadtest::bench::peers::Peer;
use tollgate_loadtest::gen::{RunConfig, Workload};
use tollgate_loadtest::mock::{Fault, MockConfig, Refusal};

/// Load generator and mock Responses-API upstream for tollgate.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a fake OpenAI Responses WebSocket upstream until Ctrl-C.
    MockUpstream(Box<MockArgs>),
    /// Drive load at a relay or a mock and report latency, throughput and SUT CPU.
    Run(Box<RunArgs>),
    /// Run every peer (direct, tunnel, tollgate, nginx, haproxy) side by side.
    Bench(BenchArgs),
    /// A scripted conversation through a local relay and mock; no network, no key.
    Demo(DemoArgs),
    /// Read `perf script -F pid,ip` on stdin; print `PID USER KERNEL` (samples in user
    /// space and in the kernel) per process, by the bench's own rule
    /// (`scripts/cpu-split.sh` uses it).
    SplitSamples,
}

/// Flags of `loadtest run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// ws://IP:PORT[/path] of the relay (or the mock directly).
    #[arg(long)]
    pub target: String,
    /// Client key, sent as `Authorization: Bearer KEY`.
    #[arg(long, env = "LOADTEST_KEY")]
    pub key: Option<String>,
    /// What load to generate.
    #[arg(long, value_enum, default_value_t = Workload::Stream)]
    pub workload: Workload,
    /// Connections.
    #[arg(long, default_value_t = 10)]
    pub sessions: usize,
    /// Turns per session (default: run for --duration).
    #[arg(long)]
    pub turns: Option<u64>,
    /// How long to offer load when --turns is not given (e.g. 10s, 500ms).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Open-loop rate across all sessions: turns/s (stream, firehose, churn) or
    /// frames/s (echo). Without it the load is closed loop.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Generator threads, one current-thread runtime each [default: available cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Echo payload bytes.
    #[arg(long, default_value_t = 200)]
    pub frame_bytes: usize,
    /// Echo frames in flight per connection (closed loop).
    #[arg(long, default_value_t = 4)]
    pub window: usize,
    /// Approximate size of each response.create, bytes.
    #[arg(long, default_value_t = 1500)]
    pub create_bytes: usize,
    /// Client source address (repeatable; used round-robin), e.g. 127.0.0.2.
    #[arg(long = "source-addr")]
    pub source_addrs: Vec<std::net::IpAddr>,
    /// Idle workload: ping period per session.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub ping_interval: Duration,
    /// Idle workload: turns each session completes before it idles (after a warm-up of as
    /// many sessions as the run opens at once, before the memory sample); 0 = idle from the
    /// handshake on.
    #[arg(long, default_value_t = 1)]
    pub idle_turns: u64,
    /// PID of a process of the system under test (repeatable): CPU and memory.
    #[arg(long = "sut-pid")]
    pub sut_pids: Vec<u32>,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write HdrHistogram percentile distributions here.
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Never draw the progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

impl RunArgs {
    /// The generator configuration.
    pub fn to_config(&self) -> RunConfig {
        RunConfig {
            target: self.target.clone(),
            key: self.key.clone(),
            workload: self.workload,
            sessions: self.sessions,
            turns: self.turns,
            duration: self.duration,
            rate: self.rate,
            threads: self
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            frame_bytes: self.frame_bytes,
            window: self.window,
            create_bytes: self.create_bytes,
            source_addrs: self.source_addrs.clone(),
            ping_interval: self.ping_interval,
            idle_turns: self.idle_turns,
            sut_pids: self.sut_pids.clone(),
            progress: !self.no_progress,
            ..RunConfig::default()
        }
    }
}

/// Flags of `loadtest bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Smoke run: one repetition, short durations (< 3 min).
    #[arg(long)]
    pub quick: bool,
    /// Also measure 4,000 and 9,000 idle sessions.
    #[arg(long)]
    pub full: bool,
    /// Repetitions per peer (default 3, or 1 with --quick).
    #[arg(long)]
    pub reps: Option<usize>,
    /// Repetitions per peer of each latency-sweep rate (default 9, at least --reps; 1 with
    /// --quick).
    #[arg(long)]
    pub sweep_reps: Option<usize>,
    /// Repetitions per peer of the CPU cases the targets compare, paced and firehose
    /// (default 7, at least --reps; 1 with --quick).
    #[arg(long)]
    pub cpu_reps: Option<usize>,
    /// Probe repetitions per peer of each CPU case, after its --cpu-reps: the runs with
    /// `perf stat` (syscalls per frame) and `perf record` (user/kernel split) attached,
    /// whose CPU, raised by perf, the CPU medians leave out (default 1; 0: no syscall
    /// counts or split).
    #[arg(long)]
    pub probe_reps: Option<usize>,
    /// Peers to run, comma-separated [default: direct,floor,tunnel,tollgate,tollgate-nolog,
    /// tollgate-epoll,nginx,haproxy (floor only without --tls; it skips idle and churn);
    /// also tollgate-async (data plane off), tollgate-coop (COOP_TASKRUN rings) and
    /// tollgate-thp (`--huge-pages allow`)].
    #[arg(long, value_delimiter = ',', value_parser = parse_peer)]
    pub peers: Vec<Peer>,
    /// Output directory (JSON per run, bench.json, bench.md, sweep.svg).
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
    /// The tollgate binary [default: `tollgate` next to this executable].
    #[arg(long)]
    pub tollgate: Option<PathBuf>,
    /// Do not apt-get install nginx/haproxy when missing.
    #[arg(long)]
    pub no_install: bool,
    /// Only the cases whose name starts with this (repeatable): stream, firehose,
    /// sweep, bulk, idle, churn, or a full name such as idle-9000.
    #[arg(long)]
    pub only: Vec<String>,
    /// TLS legs: none, upstream (SUT → mock is `wss://`, production's shape), both.
    #[arg(long, value_enum, default_value_t = tollgate_loadtest::bench::peers::TlsMode::None)]
    pub tls: tollgate_loadtest::bench::peers::TlsMode,
    /// Run nothing: write an earlier run's bench.md and sweep.svg again from its bench.json
    /// (into --out), with this version's tables and verdicts.
    #[arg(long, value_name = "BENCH_JSON")]
    pub render: Option<PathBuf>,
    /// Run nothing: the data plane's targets across earlier runs (each a bench.json or the
    /// directory holding one), one column per run in the order given, with this version's
    /// verdicts, then echo latency against nginx pair by pair and each relay's traced hop
    /// per run; printed and written to history.md in --out.
    #[arg(long, value_name = "RUN", num_args = 1.., conflicts_with = "render")]
    pub history: Vec<PathBuf>,
}

/// Flags of `loadtest demo`. It exits 0 only when every step of the transcript worked
/// and every usage record equals the mock's ledger; 1 otherwise.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The tollgate binary [default: `tollgate` next to this executable].
    #[arg(long)]
    pub tollgate: Option<PathBuf>,
    /// One more flag for the relay (repeatable), e.g. `--relay-arg=--driver=epoll`.
    #[arg(long = "relay-arg", allow_hyphen_values = true)]
    pub relay_args: Vec<String>,
    /// Make the mock upstream misbehave (see `loadtest mock-upstream --fault`), e.g.
    /// `abort-fin:2`: shows what the demo reports when a step fails.
    #[arg(long)]
    pub mock_fault: Option<Fault>,
}

fn parse_peer(s: &str) -> Result<Peer, String> {
    Peer::parse(s)
        .ok_or_else(|| {
            format!("{s:?} is not one of direct, tunnel, tollgate, tollgate-nolog, tollgate-async, tollgate-coop, tollgate-thp, tollgate-epoll, nginx, haproxy")
        })
}

/// Flags of `loadtest mock-upstream`.
#[derive(Debug, Args)]
pub struct MockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Output-text deltas per response.
    #[arg(long, default_value_t = 8)]
    pub deltas: usize,
    /// Approximate size of each delta frame, in bytes.
    #[arg(long, default_value_t = 190)]
    pub delta_bytes: usize,
    /// Deltas per second per response (unpaced when absent).
    #[arg(long, value_parser = parse_rate)]
    pub token_rate: Option<f64>,
    /// Bytes of echoed-instructions padding in each terminal event.
    #[arg(long, default_value_t = 2048)]
    pub terminal_pad_bytes: usize,
    /// PEM certificate chain: serve wss:// (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Close each connection with error websocket_connection_limit_reached + 1001
    /// after this long (e.g. 60m, 90s, 500ms; a bare number is seconds).
    #[arg(long, value_parser = parse_duration)]
    pub max_connection_age: Option<Duration>,
    /// Append every billed usage record to this JSONL file.
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// Misbehave: abort-fin, abort-rst, bad-accept, offer-extension, masked-frames,
    /// fragmented, huge-terminal, stall, close-after-error. Arguments follow colons:
    /// abort-fin:N (deltas before the FIN), abort-rst:N, fragmented:PIECES,
    /// huge-terminal:BYTES, close-after-error:CODE:ERROR_CODE.
    #[arg(long)]
    pub fault: Option<Fault>,
    /// Echo every data frame back verbatim instead of speaking the protocol.
    #[arg(long)]
    pub echo: bool,
    /// Unpaced: deltas queued per yield, so one write carries many frames.
    #[arg(long, default_value_t = 1)]
    pub delta_burst: usize,
    /// Echo at most this many bytes of the streamed text in `.done` and terminal events
    /// (default: all of it, as the API does).
    #[arg(long)]
    pub echo_text_limit: Option<usize>,
    /// How long a steering successor takes to start after its predecessor ended, and a
    /// steered function call's `response.steer.pending` to follow it (e.g. 20ms, 1s).
    #[arg(long, value_parser = parse_duration, default_value = "20ms")]
    pub successor_delay: Duration,
    /// Refuse every upgrade with this HTTP status (e.g. 401, 429, 503).
    #[arg(long, value_parser = clap::value_parser!(u16).range(200..=599))]
    pub refuse: Option<u16>,
    /// Retry-After value sent with --refuse.
    #[arg(long, requires = "refuse")]
    pub retry_after: Option<String>,
    /// Extra header in every 101 response, as NAME:VALUE (repeatable).
    #[arg(long = "header", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a positive rate (per second)")),
    }
}

/// Parses `500ms`, `90s`, `60m`, `2h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 60m, 90s or 500ms"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?} (use ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((n, v)) if !n.trim().is_empty() => Ok((n.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("{s:?} is not NAME:VALUE")),
    }
}

impl MockArgs {
    /// The mock configuration these flags describe (without TLS, loaded separately).
    pub fn to_config(&self) -> MockConfig {
        MockConfig {
            listen: Some(self.listen),
            deltas: self.deltas,
            delta_bytes: self.delta_bytes,
            token_rate: self.token_rate,
            terminal_pad_bytes: self.terminal_pad_bytes,
            tls: None,
            max_connection_age: self.max_connection_age,
            refuse: self.refuse.map(|s| Refusal {
                retry_after: self.retry_after.clone(),
                ..Refusal::new(s)
            }),
            fault: self.fault.clone(),
            extra_101_headers: self.headers.clone(),
            ledger_path: self.ledger.clone(),
            echo: self.echo,
            delta_burst: self.delta_burst,
            echo_text_limit: self.echo_text_limit,
            successor_delay: self.successor_delay,
            record: false,
            ..MockConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit() {
        assert_eq!(parse_duration("60m"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn flags_map_onto_the_mock_config() {
        let cli = Cli::try_parse_from([
            "loadtest",
            "mock-upstream",
            "--deltas",
            "3",
            "--fault",
            "abort-rst:1",
            "--refuse",
            "429",
            "--retry-after",
            "7",
            "--header",
            "x-codex-turn-state: abc",
            "--token-rate",
            "50",
        ])
        .expect("parse");
        let Command::MockUpstream(m) = cli.command else {
            panic!("wrong subcommand")
        };
        let cfg = m.to_config();
        assert_eq!(cfg.deltas, 3);
        assert_eq!(cfg.fault, Some(Fault::AbortRst { after_deltas: 1 }));
        let r = cfg.refuse.expect("refusal");
        assert_eq!((r.status, r.retry_after.as_deref()), (429, Some("7")));
        assert_eq!(
            cfg.extra_101_headers,
            vec![("x-codex-turn-state".to_string(), "abc".to_string())]
        );
        assert_eq!(cfg.token_rate, Some(50.0));
    }

    #[test]
    fn bad_flags_are_rejected() {
        for bad in [
            vec!["loadtest", "mock-upstream", "--fault", "explode"],
            vec!["loadtest", "mock-upstream", "--token-rate", "0"],
            vec!["loadtest", "mock-upstream", "--tls-cert", "c.pem"],
            vec!["loadtest", "mock-upstream", "--listen", "nowhere"],
        ] {
            assert!(Cli::try_parse_from(&bad).is_err(), "{bad:?} should fail");
        }
    }
}
