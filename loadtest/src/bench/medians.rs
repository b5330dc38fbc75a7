//! The medians (with each rep's value) that the data plane's targets compare, gathered
//! from one run per metric and peer (`targets.rs` judges them).

use std::collections::HashMap;

use super::cases::Kind;
use super::peers::{Peer, TlsMode};
use super::sections::load_queues;
use super::table::{fmt, lat, samples, stat, win_us_frame, Stat};
use super::BenchResult;

/// A measured quantity whose median the targets compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Metric {
    /// Paced: SUT CPU µs per frame inside the measurement window.
    Paced,
    /// Firehose: the same.
    Firehose,
    /// Paced: the part of [`Metric::Paced`] spent in user space (sampled).
    PacedUser,
    /// Firehose: the part of [`Metric::Firehose`] spent in user space (sampled).
    FirehoseUser,
    /// Paced: the load core's CPU µs per frame (generator + mock, the whole run).
    PacedLoad,
    /// Firehose: the load core's CPU µs per frame, as [`Metric::PacedLoad`] — which,
    /// unlike the paced one, depends on the relay (how many frames a read brings).
    FirehoseLoad,
    /// Paced: each run's SUT CPU over its load core's in the measurement window
    /// (`table::win_per_load`; in older reports [`Metric::Paced`] over
    /// [`Metric::PacedLoad`]) — the SUT's cost with the host's speed that minute divided
    /// out.
    PacedPerLoad,
    /// Paced: [`Metric::PacedPerLoad`] only where the run measured the load core inside the
    /// measurement window (`table::per_window_load`; none in older reports).
    PacedPerWindowLoad,
    /// KiB of RSS per idle session, at this many sessions.
    Idle(usize),
    /// Echo p50 µs at this offered rate (frames/s).
    EchoP50(u64),
    /// Echo p99 µs at this offered rate.
    EchoP99(u64),
    /// The load core's utilisation (generator + mock, 0–1) in the runs at this offered
    /// echo rate.
    EchoLoad(u64),
}

/// How to read a sample's value.
type Get = fn(&super::Sample) -> Option<f64>;

/// The per-frame metrics of the paced and firehose cases: each with its case and how to
/// read it from a sample.
const PER_FRAME: [(Metric, &str, Get); 8] = [
    (Metric::Paced, "paced", win_us_frame),
    (Metric::Firehose, "firehose", win_us_frame),
    (Metric::PacedUser, "paced", super::table::win_user),
    (Metric::FirehoseUser, "firehose", super::table::win_user),
    (Metric::PacedLoad, "paced", super::table::load_us_frame),
    (
        Metric::FirehoseLoad,
        "firehose",
        super::table::load_us_frame,
    ),
    (Metric::PacedPerLoad, "paced", super::table::win_per_load),
    (
        Metric::PacedPerWindowLoad,
        "paced",
        super::table::per_window_load,
    ),
];

impl Metric {
    /// The unit of its values in the report.
    pub(crate) fn unit(self) -> &'static str {
        match self {
            Metric::Idle(_) => "KiB",
            Metric::EchoLoad(_) => "of the load core",
            Metric::PacedPerLoad | Metric::PacedPerWindowLoad => "per load-core µs",
            Metric::Paced
            | Metric::PacedLoad
            | Metric::FirehoseLoad
            | Metric::Firehose
            | Metric::PacedUser
            | Metric::FirehoseUser
            | Metric::EchoP50(_)
            | Metric::EchoP99(_) => "µs",
        }
    }

    /// The sampled user-space part of a CPU-per-frame metric; `None` for every metric that
    /// is not CPU per frame (or is already a part).
    pub(crate) fn user_part(self) -> Option<Metric> {
        match self {
            Metric::Paced => Some(Metric::PacedUser),
            Metric::Firehose => Some(Metric::FirehoseUser),
            Metric::PacedUser
            | Metric::FirehoseUser
            | Metric::PacedLoad
            | Metric::FirehoseLoad
            | Metric::PacedPerLoad
            | Metric::PacedPerWindowLoad
            | Metric::Idle(_)
            | Metric::EchoP50(_)
            | Metric::EchoP99(_)
            | Metric::EchoLoad(_) => None,
        }
    }
}

/// The medians (with the reps' range) the targets need, per metric and peer.
#[derive(Debug, Default)]
pub(crate) struct Medians {
    pub(super) map: HashMap<(Metric, Peer), Stat>,
    /// Each rep's value: `(rep, value)`.
    pub(super) reps: HashMap<(Metric, Peer), Vec<(usize, f64)>>,
    /// The idle case sizes that ran.
    pub(super) idle_sizes: Vec<usize>,
    /// The latency sweep's rates.
    pub(super) sweep_rates: Vec<u64>,
    /// Responses whose usage matched the mock's ledger, and responses in the ledger.
    pub(super) accuracy: Option<(usize, usize)>,
    /// The run's TLS legs (the idle target differs with TLS).
    pub(super) tls: TlsMode,
}

impl Medians {
    pub(super) fn get(&self, m: Metric, p: Peer) -> Option<Stat> {
        self.map.get(&(m, p)).copied()
    }

    /// `a`'s value over `b`'s, per repetition both measured.
    pub(super) fn paired(&self, m: Metric, a: Peer, b: Peer) -> Vec<f64> {
        let (Some(ra), Some(rb)) = (self.reps.get(&(m, a)), self.reps.get(&(m, b))) else {
            return Vec::new();
        };
        ra.iter()
            .filter_map(|&(rep, x)| {
                let &(_, y) = rb.iter().find(|(r, _)| *r == rep)?;
                (y > 0.0).then(|| x / y)
            })
            .collect()
    }

    /// Why an echo verdict at `rate` says more about the load side than about the relays,
    /// when it does: `direct` (no relay) had a p50 there more than [`LOAD_QUEUE_FACTOR`]
    /// times its lowest in the sweep, at a higher rate than that lowest's
    /// ([`load_queues`]). `None` when it did not, or when `direct` did not
    /// run.
    pub(crate) fn load_queue(&self, rate: u64) -> Option<String> {
        let direct: Vec<(f64, f64)> = self
            .sweep_rates
            .iter()
            .filter_map(|&r| Some((r as f64, self.get(Metric::EchoP50(r), Peer::Direct)?.median)))
            .collect();
        let q = load_queues(&direct)
            .into_iter()
            .find(|q| q.rate == rate as f64)?;
        let load: Vec<Stat> = [Peer::Tollgate, Peer::Nginx]
            .into_iter()
            .filter_map(|p| self.get(Metric::EchoLoad(rate), p))
            .collect();
        let busy = match (
            load.iter().map(|s| s.min).min_by(f64::total_cmp),
            load.iter().map(|s| s.max).max_by(f64::total_cmp),
        ) {
            (Some(lo), Some(hi)) => format!(
                "; load core {:.0}–{:.0}% in tollgate's and nginx's runs",
                lo * 100.0,
                hi * 100.0
            ),
            _ => String::new(),
        };
        Some(format!(
            "load-bound: without a relay (direct) p50 {} µs, ×{:.1} its lowest ({} at {}/s){busy}",
            fmt(q.p50),
            q.p50 / q.low,
            fmt(q.low),
            fmt(q.low_rate)
        ))
    }

    /// The floor's median over `peer`'s on `metric`: how close a relay on the floor's
    /// kernel path could come to `peer` in this run. `None` when either did not run.
    pub(crate) fn floor_ratio(&self, metric: Metric, peer: Peer) -> Option<f64> {
        self.ratio(metric, Peer::Floor, peer)
    }

    /// The run's A/A pair on `metric`: `tollgate-nolog`'s median over tollgate's. On echo
    /// the two are the same relay — the mock echoes the generator's frames, no response
    /// ends, so no usage record is written (the log writer only wakes once a second to look
    /// for dead relays' journals) — so the ratio
    /// is how far two runs of one relay land apart in this run: the bench's resolution
    /// there. `None` when either did not run.
    pub(crate) fn twin_ratio(&self, metric: Metric) -> Option<f64> {
        self.ratio(metric, Peer::TollgateNoLog, Peer::Tollgate)
    }

    /// `a`'s median over `b`'s on `metric`. `None` when either did not run (or `b`'s is 0).
    pub(crate) fn ratio(&self, metric: Metric, a: Peer, b: Peer) -> Option<f64> {
        let a = self.get(metric, a)?;
        let b = self.get(metric, b).filter(|s| s.median > 0.0)?;
        Some(a.median / b.median)
    }

    /// Gathers the medians from a run.
    pub(crate) fn of(r: &BenchResult) -> Medians {
        let mut out = Medians::default();
        let mut put = |m: Metric, case: &str, peer: Peer, get: Get| {
            let reps: Vec<(usize, f64)> = samples(r, case, peer)
                .filter_map(|s| Some((s.rep, get(s).filter(|x| x.is_finite())?)))
                .collect();
            let v: Vec<f64> = reps.iter().map(|&(_, x)| x).collect();
            if let Some(st) = stat(&v) {
                out.map.insert((m, peer), st);
                out.reps.insert((m, peer), reps);
            }
        };
        let mut idle: Vec<(usize, String)> = Vec::new();
        for s in r.samples.iter().filter(|s| s.kind == Kind::Idle) {
            if let Some(n) = s.case.strip_prefix("idle-").and_then(|n| n.parse().ok()) {
                if !idle.iter().any(|(m, _)| *m == n) {
                    idle.push((n, s.case.clone()));
                }
            }
        }
        for peer in Peer::KNOWN {
            for (m, case, get) in PER_FRAME {
                put(m, case, peer, get);
            }
            for (n, case) in &idle {
                put(Metric::Idle(*n), case, peer, |s| {
                    s.report.as_ref()?.sut.as_ref()?.kib_per_session
                });
            }
            for &rate in &r.sweep_rates {
                let case = format!("sweep@{rate}");
                put(Metric::EchoP50(rate as u64), &case, peer, |s| {
                    lat(s, "echo", |l| l.p50_us)
                });
                put(Metric::EchoP99(rate as u64), &case, peer, |s| {
                    lat(s, "echo", |l| l.p99_us)
                });
                put(Metric::EchoLoad(rate as u64), &case, peer, |s| {
                    Some(s.report.as_ref()?.load_cpu_util)
                });
            }
        }
        out.idle_sizes = idle.into_iter().map(|(n, _)| n).collect();
        out.sweep_rates = r.sweep_rates.iter().map(|&x| x as u64).collect();
        out.accuracy = super::sections::accuracy(r).map(|a| (a.matched, a.ledger));
        out.tls = r.tls;
        out
    }
}
