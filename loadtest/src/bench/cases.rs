//! The workloads of `shared/benchmarking.md` as concrete (mock, generator)
//! configurations, for the default, `--quick` and `--full` profiles.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::gen::{Probes, RunConfig, Workload};
use crate::mock::MockConfig;

/// Which group of columns a case feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Paced Responses turns.
    Stream,
    /// Many sessions streaming paced deltas: one frame per wake-up.
    Paced,
    /// Unpaced deltas.
    Firehose,
    /// Open-loop echo at one offered rate.
    Sweep,
    /// Open-loop echo with the SUT's hop traced (`gen::hops`).
    Hop,
    /// Closed-loop echo of large frames.
    Bulk,
    /// Idle sessions.
    Idle,
    /// Connect + turn + close.
    Churn,
}

impl Kind {
    /// The CPU cases the targets compare, paced and firehose: repeated more, and with
    /// probe repetitions of their own (`schedule::Reps`).
    pub fn is_cpu(self) -> bool {
        matches!(self, Kind::Paced | Kind::Firehose)
    }
}

/// One workload configuration, run once per peer per repetition.
#[derive(Debug, Clone)]
pub struct Case {
    /// Unique name (`stream`, `sweep@20000`, `bulk-64KiB`, `idle-1000`…).
    pub name: String,
    /// Column group.
    pub kind: Kind,
    /// The mock's behaviour (`ledger_path` is set per run).
    pub mock: MockConfig,
    /// The generator's load (`target`, `key`, `sut_pids` are set per run).
    pub run: RunConfig,
}

impl Case {
    /// Whether the generator runs on the mock's thread, one event loop for the whole load
    /// side: the latency sweep, where two load threads on one core waited for each other up
    /// to a scheduler tick ([`crate::gen::local_loop`]).
    pub fn one_load_thread(&self) -> bool {
        self.kind == Kind::Sweep
    }
}

/// Duration and size knobs of a profile.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// Repetitions per peer.
    pub reps: usize,
    /// Repetitions per peer and rate of the latency sweep. More than `reps`: on this VM one
    /// 2.5 s run's p99 moves by up to 5× between repetitions of the same binary (212–1032
    /// µs at 8k/s; loadtest/BENCH-history.md, "Echo latency on this VM"), so a median of three
    /// cannot tell two relays' tails apart.
    pub sweep_reps: usize,
    /// Repetitions per peer of the CPU cases the data plane's targets compare (paced and
    /// firehose). More than `reps`: a target's verdict is settled only when a sign test on
    /// the repetitions' pairs puts them on its side at 5%, which three pairs can never do
    /// and seven can (all seven on one side); and on this VM one peer's CPU per frame moves
    /// by up to ±20% between its runs (bfull25: tollgate's paced reps 11.3–15.4 µs around a
    /// median of 12.6), so a median of three swings a verdict whose gap is a few per cent.
    /// About six minutes more than three reps for the eight default peers (paced 414 s and
    /// firehose 191 s of bfull25's 2,219).
    pub cpu_reps: usize,
    /// Seconds of stream load.
    pub stream_s: f64,
    /// Seconds of paced load.
    pub paced_s: f64,
    /// Seconds of firehose load.
    pub firehose_s: f64,
    /// Seconds per sweep rate.
    pub sweep_s: f64,
    /// Seconds per bulk size.
    pub bulk_s: f64,
    /// Seconds of pinging once the idle sessions are open.
    pub idle_s: f64,
    /// Seconds of churn.
    pub churn_s: f64,
}

impl Profile {
    /// `--quick`: one repetition, short runs.
    pub const QUICK: Profile = Profile {
        reps: 1,
        sweep_reps: 1,
        cpu_reps: 1,
        stream_s: 2.0,
        paced_s: 3.0,
        firehose_s: 2.0,
        sweep_s: 1.5,
        bulk_s: 1.5,
        idle_s: 1.0,
        churn_s: 1.5,
    };
    /// The default: three repetitions (seven for paced and firehose, nine for each sweep
    /// rate), about 32 minutes on this repository's two-core VM (bfull25's cases without
    /// its 4,000- and 9,000-session idle ones).
    pub const DEFAULT: Profile = Profile {
        reps: 3,
        sweep_reps: 9,
        cpu_reps: 7,
        stream_s: 4.0,
        paced_s: 6.0,
        firehose_s: 3.0,
        sweep_s: 2.5,
        bulk_s: 2.5,
        idle_s: 2.0,
        churn_s: 2.5,
    };
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn base(workload: Workload, sessions: usize, seconds: f64) -> RunConfig {
    RunConfig {
        workload,
        sessions,
        duration: secs(seconds),
        threads: 1,
        progress: false,
        drain_timeout: Duration::from_secs(5),
        // No perf over the window: its processes took the load core from the latency
        // cases' generator, and it raises the SUT's CPU ([`Probes::None`]). The CPU cases
        // count syscalls and split user from kernel in probe repetitions of their own
        // (`schedule::Reps::probe`).
        probes: Probes::None,
        ..RunConfig::default()
    }
}

fn quiet_mock() -> MockConfig {
    MockConfig {
        record: false,
        ..MockConfig::default()
    }
}

/// Offered echo rates (frames/s) of the sweep.
pub fn sweep_rates(quick: bool) -> Vec<f64> {
    if quick {
        vec![2_000.0, 16_000.0]
    } else {
        vec![2_000.0, 8_000.0, 16_000.0, 32_000.0]
    }
}

/// Offered echo rate (frames/s) of the traced hop case.
pub const HOP_RATE: f64 = 8_000.0;

/// Idle session counts.
pub fn idle_sizes(quick: bool, full: bool) -> Vec<usize> {
    match (quick, full) {
        (true, _) => vec![200],
        (false, false) => vec![1000],
        (false, true) => vec![1000, 4000, 9000],
    }
}

/// Every case of a profile, in run order.
pub fn cases(p: &Profile, quick: bool, full: bool) -> Vec<Case> {
    let mut v = Vec::new();
    // stream: 100 connections, ~1.5 KB creates, 20 deltas of ~190 B paced at
    // 100/s, an ~8 KB terminal event; each session starts a turn every 0.5 s.
    v.push(Case {
        name: "stream".into(),
        kind: Kind::Stream,
        mock: MockConfig {
            deltas: 20,
            token_rate: Some(100.0),
            terminal_pad_bytes: 8192,
            ..quiet_mock()
        },
        run: RunConfig {
            rate: Some(200.0),
            ..base(Workload::Stream, 100, p.stream_s)
        },
    });
    // paced: 200 connections each streaming ~190 B deltas at 300/s, back-to-back 1 s
    // responses: 60k frames/s, each its own write at the mock and its own wake-up at the
    // proxy (the pattern where per-frame overhead shows).
    v.push(Case {
        name: "paced".into(),
        kind: Kind::Paced,
        mock: MockConfig {
            deltas: 300,
            delta_bytes: 190,
            token_rate: Some(300.0),
            terminal_pad_bytes: 1024,
            ..quiet_mock()
        },
        run: base(Workload::Stream, 200, p.paced_s),
    });
    // firehose: 64 connections, 500 unpaced deltas per response, written in bursts.
    v.push(Case {
        name: "firehose".into(),
        kind: Kind::Firehose,
        mock: MockConfig {
            deltas: 500,
            delta_burst: 64,
            ..quiet_mock()
        },
        run: base(Workload::Firehose, 64, p.firehose_s),
    });
    for r in sweep_rates(quick) {
        v.push(Case {
            name: format!("sweep@{r}"),
            kind: Kind::Sweep,
            mock: MockConfig {
                echo: true,
                ..quiet_mock()
            },
            run: RunConfig {
                rate: Some(r),
                frame_bytes: 200,
                ..base(Workload::Echo, 16, p.sweep_s)
            },
        });
    }
    // hop: the echo of the sweep at 8k/s (where the relays' medians lean apart most
    // often) with the SUT's own hop traced in the kernel — a run of its own, because the
    // tracing costs every peer a little latency.
    v.push(Case {
        name: format!("hop@{HOP_RATE}"),
        kind: Kind::Hop,
        mock: MockConfig {
            echo: true,
            ..quiet_mock()
        },
        run: RunConfig {
            rate: Some(HOP_RATE),
            frame_bytes: 200,
            probes: Probes::Hops,
            ..base(Workload::Echo, 16, p.sweep_s)
        },
    });
    for kib in [16usize, 64] {
        v.push(Case {
            name: format!("bulk-{kib}KiB"),
            kind: Kind::Bulk,
            mock: MockConfig {
                echo: true,
                ..quiet_mock()
            },
            run: RunConfig {
                frame_bytes: kib * 1024,
                window: 4,
                ..base(Workload::Echo, 8, p.bulk_s)
            },
        });
    }
    let sources: Vec<IpAddr> = (2..=9)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
        .collect();
    for n in idle_sizes(quick, full) {
        v.push(Case {
            name: format!("idle-{n}"),
            kind: Kind::Idle,
            mock: quiet_mock(),
            run: RunConfig {
                source_addrs: sources.clone(),
                ping_interval: Duration::from_secs(1),
                connect_timeout: Duration::from_secs(30),
                ..base(Workload::Idle, n, p.idle_s)
            },
        });
    }
    v.push(Case {
        name: "churn".into(),
        kind: Kind::Churn,
        mock: MockConfig {
            deltas: 4,
            ..quiet_mock()
        },
        run: base(Workload::Churn, 16, p.churn_s),
    });
    v
}
