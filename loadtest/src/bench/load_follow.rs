//! `loadtest bench --history`'s table of how each peer's paced CPU per frame follows the
//! load core's: per run, the correlation over the peer's repetitions of its SUT CPU per
//! frame (`Metric::Paced`) with the load core's in the same run (`Metric::PacedLoad`), and
//! the reps' coefficient of variation on the totals and per load-core µs.
//!
//! It is the evidence behind the per-load-core quotient (`load_history`, loadtest/BENCH.md
//! "Per load-core µs"): when the host runs both cores faster or slower from one minute to
//! the next, every relay's CPU per paced frame moves with the load core's, and dividing it
//! out narrows the reps' spread. A peer whose cost did not follow the load core would show
//! a low correlation and a spread the quotient does not narrow.

use std::fmt::Write as _;

use super::history_cells::{head, Measured};
use super::medians::{Medians, Metric};
use super::peers::Peer;
use super::table::stat;

/// Population coefficient of variation of `v` (standard deviation over mean); `None` with
/// fewer than two values or a mean of 0.
fn cv(v: &[f64]) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if mean == 0.0 {
        return None;
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    Some(var.sqrt() / mean.abs())
}

/// Pearson's correlation of the pairs; `None` with fewer than three or when either side
/// does not vary.
fn correlation(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.len() < 3 {
        return None;
    }
    let n = pairs.len() as f64;
    let (mx, my) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for &(x, y) in pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx).powi(2);
        syy += (y - my).powi(2);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// One peer in one run.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Follow {
    /// Correlation of the SUT's CPU per frame with the load core's over the reps.
    r: Option<f64>,
    /// The reps' CV on the totals (µs per frame).
    totals: f64,
    /// Their CV per load-core µs over the whole run (the window's CPU per frame over the
    /// whole run's load-core CPU per frame).
    whole: f64,
    /// Their CV per load-core µs over the measurement window, as the bench compares it
    /// (`Metric::PacedPerWindowLoad`, reports since e9025eb); `None` in reports without
    /// the window's load core, where the bench compares the whole run's.
    window: Option<f64>,
}

impl Follow {
    fn of(m: &Medians, peer: Peer) -> Option<Follow> {
        let reps = |metric| m.reps.get(&(metric, peer));
        let (paced, load) = (reps(Metric::Paced)?, reps(Metric::PacedLoad)?);
        let pairs: Vec<(f64, f64)> = paced
            .iter()
            .filter_map(|&(rep, y)| {
                let &(_, l) = load.iter().find(|(r, _)| *r == rep)?;
                (l > 0.0).then_some((y, l))
            })
            .collect();
        let whole_q: Vec<f64> = pairs.iter().map(|(y, l)| y / l).collect();
        let totals: Vec<f64> = paced.iter().map(|&(_, y)| y).collect();
        let window = reps(Metric::PacedPerWindowLoad).and_then(|v| {
            let q: Vec<f64> = v.iter().map(|&(_, q)| q).collect();
            cv(&q)
        });
        Some(Follow {
            r: correlation(&pairs),
            totals: cv(&totals)?,
            whole: cv(&whole_q)?,
            window,
        })
    }

    /// The CV the bench's quotient has: the window's when measured, else the whole run's.
    fn quotient(self) -> f64 {
        self.window.unwrap_or(self.whole)
    }

    fn cell(self) -> String {
        let r = self.r.map_or_else(|| "r —".into(), |r| format!("r {r:.2}"));
        let pct = |x: f64| format!("{:.1}%", x * 100.0);
        match self.window {
            None => format!("{r}; CV {} → {}", pct(self.totals), pct(self.whole)),
            Some(w) => format!(
                "{r}; CV {} → {} → {} (window)",
                pct(self.totals),
                pct(self.whole),
                pct(w)
            ),
        }
    }
}

/// The table across `runs`; empty when no run has a paced peer with the load core's CPU.
pub(crate) fn load_follow(runs: &[Measured]) -> String {
    let mut body = String::new();
    let (mut cells, mut narrower, mut halved) = (0, 0, 0);
    for peer in Peer::KNOWN {
        let row: Vec<Option<Follow>> = runs.iter().map(|(_, m)| Follow::of(m, peer)).collect();
        if row.iter().all(Option::is_none) {
            continue;
        }
        let _ = write!(body, "| {} |", peer.name());
        for f in &row {
            match f {
                Some(f) => {
                    cells += 1;
                    narrower += usize::from(f.quotient() < f.totals);
                    halved += usize::from(f.quotient() <= f.totals / 2.0);
                    let _ = write!(body, " {} |", f.cell());
                }
                None => body.push_str(" — |"),
            }
        }
        body.push('\n');
    }
    if body.is_empty() {
        return body;
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\n### How each peer's paced CPU follows the load core, {} runs\n\n\
         Each cell, over the peer's paced repetitions in that run: *r*, the correlation of \
         its CPU µs per frame (the measurement window) with the load core's per frame (the \
         generator and the mock on CPU 1, the whole run); *CV*, the reps' coefficient of \
         variation (standard deviation over mean) on the totals → per load-core µs with the \
         load core's whole run → with its measurement window (*window*; reports since \
         e9025eb). A relay whose cost moves with the host's speed, as the load core's does, \
         has r near 1 and a spread the quotient narrows.\n",
        runs.len()
    );
    head(&mut o, "peer", runs, &[]);
    o += &body;
    let _ = writeln!(
        o,
        "\nThe reps' CV per load-core µs (the window's where measured) is below the totals' \
         in {narrower} of {cells} cells, half or less in {halved}."
    );
    o + &against_tunnel(runs)
}

/// The load core's CPU per frame with each peer in between against the tunnel's in the same
/// repetition, every run's pairs pooled, paced and firehose: paced it should not depend on
/// the peer (the quotient's premise), firehose it does.
fn against_tunnel(runs: &[Measured]) -> String {
    let pooled = |metric, peer| -> String {
        let pairs: Vec<f64> = runs
            .iter()
            .flat_map(|(_, m)| m.paired(metric, peer, Peer::Tunnel))
            .collect();
        match stat(&pairs) {
            Some(st) => format!(
                "×{:.3}; {} of {} above ×1",
                st.median,
                pairs.iter().filter(|&&x| x > 1.0).count(),
                pairs.len()
            ),
            None => "—".into(),
        }
    };
    let mut body = String::new();
    for peer in Peer::KNOWN.into_iter().filter(|&p| p != Peer::Tunnel) {
        let (paced, fire) = (
            pooled(Metric::PacedLoad, peer),
            pooled(Metric::FirehoseLoad, peer),
        );
        if paced != "—" || fire != "—" {
            let _ = writeln!(body, "| {} | {paced} | {fire} |", peer.name());
        }
    }
    if body.is_empty() {
        return body;
    }
    "\nThe load core's CPU per frame received with each peer in between, over the tunnel's \
     in the same repetition (every run's pairs pooled; the median and how many are above \
     ×1). Paced, both sides see one frame per wake-up whichever relay is in between, so the \
     ratios sit near ×1 for every peer, `direct` (no relay) among them; firehose, the load \
     side's reads bring as many frames as the relay coalesced, so they need not.\n\n\
     | peer | paced | firehose |\n|---|---|---|\n"
        .to_string()
        + &body
}

#[cfg(test)]
mod tests {
    use super::super::history_cells::measured;
    use super::super::test_runs::{line, paced_run, result, with_load};
    use super::*;

    #[test]
    fn cv_and_correlation_are_the_textbook_ones() {
        // Mean 5, population standard deviation 2.
        let v = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert!((cv(&v).unwrap() - 0.4).abs() < 1e-12);
        assert_eq!(cv(&[3.0]), None);
        let up = [(1.0, 2.0), (2.0, 4.0), (3.0, 6.5)];
        assert!(correlation(&up).unwrap() > 0.99);
        let down = [(1.0, 3.0), (2.0, 2.0), (3.0, 1.0)];
        assert!((correlation(&down).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(correlation(&[(1.0, 1.0), (2.0, 1.0), (3.0, 1.0)]), None);
        assert_eq!(correlation(&up[..2]), None);
    }

    /// Three reps where the host runs 0.9×, 1.0× and 1.1× as slow: the tunnel follows it
    /// exactly (its quotient has no spread), HAProxy does not follow it at all.
    #[test]
    fn a_peer_that_follows_the_load_core_has_r_1_and_its_spread_vanishes_per_load_core_us() {
        let mut v = Vec::new();
        for (rep, slow) in [0.9, 1.0, 1.1].into_iter().enumerate() {
            v.push(with_load(
                paced_run("tunnel", rep, 10.0 * slow, None),
                20.0 * slow,
            ));
            v.push(with_load(
                paced_run("haproxy", rep, 15.0, None),
                20.0 * slow,
            ));
            // Firehose, HAProxy's reads bring fewer frames: the load core works 10% more.
            for (peer, load) in [("tunnel", 2.0), ("haproxy", 2.2)] {
                let mut run = with_load(paced_run(peer, rep, 0.6, None), load);
                run["case"] = "firehose".into();
                run["kind"] = "firehose".into();
                v.push(run);
            }
        }
        let md = load_follow(&measured(&[("a".to_string(), result(v))]));
        assert!(
            md.contains("### How each peer's paced CPU follows the load core, 1 runs"),
            "{md}"
        );
        // CV of 9, 10, 11: sqrt(2/3)/10 = 8.2%.
        assert_eq!(
            line(&md, "| tunnel |"),
            "| tunnel | r 1.00; CV 8.2% → 0.0% |"
        );
        // Constant totals: no correlation, and the quotient adds the load core's spread.
        assert_eq!(
            line(&md, "| haproxy |"),
            "| haproxy | r —; CV 0.0% → 8.2% |"
        );
        assert!(
            md.contains("below the totals' in 1 of 2 cells, half or less in 1."),
            "{md}"
        );
        // Paced, the load core cost the same per frame with either in between; firehose not.
        assert_eq!(
            line(&md, "| haproxy | ×"),
            "| haproxy | ×1.000; 0 of 3 above ×1 | ×1.100; 3 of 3 above ×1 |"
        );
        // No peer with the load core's CPU: no table.
        let bare = result(vec![with_load(paced_run("tunnel", 0, 10.0, None), 0.0)]);
        assert_eq!(load_follow(&measured(&[("b".to_string(), bare)])), "");
    }

    /// A report that measured the load core inside the window: the cell gives the whole
    /// run's quotient and the window's, and the summary counts the window's.
    #[test]
    fn the_windows_quotient_is_shown_beside_the_whole_runs() {
        let mut v = Vec::new();
        for (rep, slow) in [0.9, 1.0, 1.1].into_iter().enumerate() {
            let mut run = with_load(paced_run("tollgate", rep, 10.0 * slow, None), 20.0);
            // The window: 1,000 frames at 10·slow µs = cpu_s; the load core twice that.
            run["report"]["sut"]["window"]["load_cpu_s"] = serde_json::json!(0.02 * slow);
            v.push(run);
        }
        let md = load_follow(&measured(&[("a".to_string(), result(v))]));
        // Without the tunnel there is nothing to hold the load core against.
        assert!(!md.contains("| peer | paced | firehose |"), "{md}");
        assert_eq!(
            line(&md, "| tollgate |"),
            "| tollgate | r —; CV 8.2% → 8.2% → 0.0% (window) |"
        );
        assert!(
            md.contains("below the totals' in 1 of 1 cells, half or less in 1."),
            "{md}"
        );
    }
}
