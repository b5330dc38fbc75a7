//! Latency histograms (HdrHistogram, nanoseconds) and per-thread counters.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// What a histogram measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// TCP connect + upgrade, from the scheduled connect time.
    Connect,
    /// First `response.output_text.delta` − scheduled send of the `response.create`.
    FirstDelta,
    /// Gap between consecutive deltas of one response.
    InterDelta,
    /// Terminal event − scheduled send of the `response.create`.
    Turn,
    /// Echoed frame received − its scheduled send time.
    Echo,
    /// Pong received − scheduled ping time.
    Ping,
    /// Connect + upgrade + one turn + close.
    Churn,
}

impl Metric {
    /// Every metric, in report order.
    pub const ALL: [Metric; 7] = [
        Metric::Connect,
        Metric::FirstDelta,
        Metric::InterDelta,
        Metric::Turn,
        Metric::Echo,
        Metric::Ping,
        Metric::Churn,
    ];

    /// Name in the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Connect => "connect",
            Metric::FirstDelta => "first_delta",
            Metric::InterDelta => "inter_delta",
            Metric::Turn => "turn",
            Metric::Echo => "echo",
            Metric::Ping => "ping",
            Metric::Churn => "churn",
        }
    }
}

/// One histogram per [`Metric`], 1 ns – 120 s, 3 significant digits.
#[derive(Debug, Clone)]
pub struct Hists {
    h: Vec<Histogram<u64>>,
}

impl Default for Hists {
    fn default() -> Self {
        let h = Metric::ALL
            .iter()
            .filter_map(|_| Histogram::new_with_bounds(1, 120_000_000_000, 3).ok())
            .collect();
        Hists { h }
    }
}

impl Hists {
    /// Records `ns` (saturating at the top of the range).
    pub fn record(&mut self, m: Metric, ns: u64) {
        if let Some(h) = self.h.get_mut(m as usize) {
            h.saturating_record(ns.max(1));
        }
    }

    /// Adds another thread's histograms.
    pub fn merge(&mut self, other: &Hists) {
        for (a, b) in self.h.iter_mut().zip(&other.h) {
            let _ = a.add(b);
        }
    }

    /// The histogram of `m`.
    pub fn get(&self, m: Metric) -> Option<&Histogram<u64>> {
        self.h.get(m as usize)
    }

    /// Summaries of every non-empty histogram, by metric name.
    pub fn summaries(&self) -> BTreeMap<String, LatencySummary> {
        Metric::ALL
            .iter()
            .filter_map(|m| {
                let h = self.get(*m)?;
                (!h.is_empty()).then(|| (m.name().to_string(), LatencySummary::of(h)))
            })
            .collect()
    }

    /// HdrHistogram-style percentile distributions (µs), one section per metric.
    pub fn hgrm(&self) -> String {
        let mut out = String::new();
        for m in Metric::ALL {
            let Some(h) = self.get(m).filter(|h| !h.is_empty()) else {
                continue;
            };
            let _ = writeln!(
                out,
                "# {}\n       Value     Percentile TotalCount 1/(1-Percentile)\n",
                m.name()
            );
            for v in h.iter_quantiles(2) {
                let q = v.quantile_iterated_to();
                let inv = if q < 1.0 {
                    1.0 / (1.0 - q)
                } else {
                    f64::INFINITY
                };
                let _ = writeln!(
                    out,
                    "{:12.3} {:14.12} {:10} {:14.2}",
                    v.value_iterated_to() as f64 / 1000.0,
                    q,
                    v.count_since_last_iteration(),
                    inv
                );
            }
            let _ = writeln!(
                out,
                "#[Mean = {:.3}, StdDeviation = {:.3}]\n#[Max = {:.3}, Total count = {}]\n",
                h.mean() / 1000.0,
                h.stdev() / 1000.0,
                h.max() as f64 / 1000.0,
                h.len()
            );
        }
        out
    }
}

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

impl LatencySummary {
    /// Summarises `h` (nanosecond values).
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        let us = |ns: u64| ns as f64 / 1000.0;
        LatencySummary {
            count: h.len(),
            min_us: us(h.min()),
            p50_us: us(h.value_at_quantile(0.5)),
            p90_us: us(h.value_at_quantile(0.9)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1000.0,
        }
    }
}

/// Counters one generator thread keeps (merged at the end).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Data frames sent.
    pub frames_sent: u64,
    /// Data frames received.
    pub frames_received: u64,
    /// Payload bytes sent.
    pub bytes_sent: u64,
    /// Payload bytes received.
    pub bytes_received: u64,
    /// Turns (or echoes, pings, churn sessions) completed.
    pub completed: u64,
    /// Sessions upgraded.
    pub sessions: u64,
    /// Failures of any kind.
    pub errors: u64,
    /// Open-loop echo: echoes received while frames were still being scheduled.
    pub in_window: u64,
    /// Open-loop echo: length of the scheduling window, ns (max over threads).
    pub window_ns: u64,
}

impl Counts {
    /// Adds another thread's counters.
    pub fn merge(&mut self, o: &Counts) {
        self.frames_sent += o.frames_sent;
        self.frames_received += o.frames_received;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        self.completed += o.completed;
        self.sessions += o.sessions;
        self.errors += o.errors;
        self.in_window += o.in_window;
        self.window_ns = self.window_ns.max(o.window_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_and_hgrm_reflect_recorded_values() {
        let mut a = Hists::default();
        let mut b = Hists::default();
        for v in 1..=100u64 {
            a.record(Metric::Echo, v * 1000);
        }
        b.record(Metric::Echo, 1_000_000);
        a.merge(&b);
        let s = a.summaries();
        let e = &s["echo"];
        assert_eq!(e.count, 101);
        assert!((e.p50_us - 51.0).abs() < 1.0, "{e:?}");
        assert!((e.max_us - 1000.0).abs() < 1.0, "{e:?}");
        assert!(!s.contains_key("turn"));
        let text = a.hgrm();
        assert!(
            text.contains("# echo") && text.contains("Total count = 101"),
            "{text}"
        );
    }
}
