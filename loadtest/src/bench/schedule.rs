//! The bench's run order: which case runs how many times, and in which order of peers.

use super::cases::{Case, Kind, Profile};
use super::peers::Peer;

/// Probe repetitions of each CPU case unless `--probe-reps` says otherwise.
pub const DEFAULT_PROBE_REPS: usize = 1;

/// How many times each case runs per peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reps {
    /// Every case not named below.
    pub other: usize,
    /// Each rate of the latency sweep.
    pub sweep: usize,
    /// The CPU cases the targets compare: paced and firehose.
    pub cpu: usize,
    /// Probe repetitions of each CPU case, after its `cpu` ones: runs with perf's syscall
    /// count and user/kernel sampler attached, whose CPU the medians leave out
    /// ([`Reps::is_probe`]).
    pub probe: usize,
}

impl Reps {
    /// Repetitions of a case of this kind.
    pub fn of(&self, kind: Kind) -> usize {
        match kind {
            Kind::Sweep => self.sweep,
            k if k.is_cpu() => self.cpu + self.probe,
            _ => self.other,
        }
    }

    /// Whether repetition `rep` of a case of this kind is a probe repetition: a CPU case's
    /// repetitions after its first `cpu`.
    pub fn is_probe(&self, kind: Kind, rep: usize) -> bool {
        kind.is_cpu() && rep >= self.cpu
    }

    /// The repetitions of a run: the profile's, each at least `--reps`, unless given.
    pub fn resolve(
        profile: &Profile,
        reps: Option<usize>,
        sweep: Option<usize>,
        cpu: Option<usize>,
        probe: Option<usize>,
    ) -> Reps {
        let other = reps.unwrap_or(profile.reps).max(1);
        Reps {
            other,
            sweep: sweep
                .unwrap_or_else(|| profile.sweep_reps.max(other))
                .max(1),
            cpu: cpu.unwrap_or_else(|| profile.cpu_reps.max(other)).max(1),
            probe: probe.unwrap_or(DEFAULT_PROBE_REPS),
        }
    }
}

/// The bench's run order: case by case; within a case, repetition by repetition (each
/// case [`Reps::of`] times), each repetition running every peer that runs the case
/// ([`Peer::runs`]), in reverse order on odd repetitions so that no peer always runs
/// first.
pub fn schedule<'a>(cases: &'a [Case], peers: &[Peer], reps: Reps) -> Vec<(&'a Case, usize, Peer)> {
    let mut runs = Vec::new();
    for case in cases {
        for rep in 0..reps.of(case.kind) {
            let mut order = peers.to_vec();
            if rep % 2 == 1 {
                order.reverse();
            }
            runs.extend(
                order
                    .into_iter()
                    .filter(|p| p.runs(case.kind))
                    .map(|p| (case, rep, p)),
            );
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::cases;
    use crate::bench::targets::sign_test_p;

    /// Sweep rates run `sweep` times, paced and firehose `cpu` times and then `probe` probe
    /// repetitions, other cases `other` times; odd repetitions run the peers in reverse.
    #[test]
    fn schedule_repeats_sweep_rates_and_cpu_cases_more_and_alternates_peer_order() {
        let all = cases::cases(&Profile::DEFAULT, false, false);
        let count = |k: Kind| all.iter().filter(|c| c.kind == k).count();
        let sweeps = count(Kind::Sweep);
        let cpu = count(Kind::Paced) + count(Kind::Firehose);
        assert!(sweeps >= 2 && cpu == 2 && sweeps + cpu < all.len());
        let peers = [Peer::Tollgate, Peer::Nginx, Peer::Haproxy];
        let reps = Reps {
            other: 3,
            sweep: 9,
            cpu: 7,
            probe: 2,
        };
        let runs = schedule(&all, &peers, reps);
        assert_eq!(
            runs.len(),
            ((all.len() - sweeps - cpu) * 3 + sweeps * 9 + cpu * 9) * peers.len()
        );
        let probes: Vec<_> = runs
            .iter()
            .filter(|(c, rep, _)| reps.is_probe(c.kind, *rep))
            .collect();
        assert_eq!(probes.len(), cpu * 2 * peers.len());
        assert!(probes
            .iter()
            .all(|(c, rep, _)| matches!(c.kind, Kind::Paced | Kind::Firehose) && *rep >= 7));
        for case in &all {
            let of_case: Vec<_> = runs
                .iter()
                .filter(|(c, _, _)| c.name == case.name)
                .collect();
            let want = match case.kind {
                Kind::Sweep => 9,
                Kind::Paced | Kind::Firehose => 9,
                _ => 3,
            };
            assert_eq!(of_case.len(), want * peers.len(), "{}", case.name);
            for (i, rep) in of_case.chunks(peers.len()).enumerate() {
                let order: Vec<Peer> = rep.iter().map(|r| r.2).collect();
                assert!(rep.iter().all(|r| r.1 == i), "{}: rep {i}", case.name);
                let mut expect = peers.to_vec();
                if i % 2 == 1 {
                    expect.reverse();
                }
                assert_eq!(order, expect, "{}: rep {i}", case.name);
            }
        }
    }

    /// The default profile repeats the CPU cases often enough that a sign test on their
    /// pairs can settle a verdict (all pairs on one side, two-sided p < 0.05), which three
    /// repetitions never can.
    #[test]
    fn the_default_profile_runs_enough_cpu_reps_for_a_sign_test() {
        let p = Profile::DEFAULT;
        assert!(p.cpu_reps > p.reps);
        // Every pair on one side: k = 0 pairs on the other.
        assert!(sign_test_p(0, p.cpu_reps) < 0.05);
        assert!(sign_test_p(0, p.reps) >= 0.05);
    }

    /// The floor runs the per-frame cases, not the idle and churn ones.
    #[test]
    fn schedule_leaves_the_floor_out_of_idle_and_churn() {
        let all = cases::cases(&Profile::DEFAULT, false, true);
        let one = Reps {
            other: 1,
            sweep: 1,
            cpu: 1,
            probe: 1,
        };
        let runs = schedule(&all, &[Peer::Floor, Peer::Tollgate], one);
        for case in &all {
            let floor = runs
                .iter()
                .any(|(c, _, p)| c.name == case.name && *p == Peer::Floor);
            let tollgate = runs
                .iter()
                .any(|(c, _, p)| c.name == case.name && *p == Peer::Tollgate);
            assert!(tollgate, "{}", case.name);
            assert_eq!(
                floor,
                !matches!(case.kind, Kind::Idle | Kind::Churn),
                "{}",
                case.name
            );
        }
        assert!(all.iter().any(|c| c.kind == Kind::Idle));
        assert!(all.iter().any(|c| c.kind == Kind::Churn));
    }

    /// `--reps` raises the sweep's and the CPU cases' defaults, never lowers them; an
    /// explicit count wins; zero becomes one, except probe repetitions, which may be none.
    #[test]
    fn reps_resolve_from_the_profile_and_the_flags() {
        let d = Profile::DEFAULT;
        let r = Reps::resolve(&d, None, None, None, None);
        assert_eq!((r.other, r.sweep, r.cpu, r.probe), (3, 9, 7, 1));
        let r = Reps::resolve(&d, Some(8), None, None, Some(0));
        assert_eq!((r.other, r.sweep, r.cpu, r.probe), (8, 9, 8, 0));
        assert!(!r.is_probe(Kind::Paced, 7));
        let r = Reps::resolve(&d, Some(1), Some(2), Some(0), Some(3));
        assert_eq!((r.other, r.sweep, r.cpu, r.probe), (1, 2, 1, 3));
        let r = Reps::resolve(&Profile::QUICK, None, None, None, None);
        assert_eq!((r.other, r.sweep, r.cpu, r.probe), (1, 1, 1, 1));
        assert_eq!(r.of(Kind::Paced), 2);
        assert_eq!(r.of(Kind::Sweep), 1);
        assert!(!r.is_probe(Kind::Paced, 0) && r.is_probe(Kind::Paced, 1));
        assert!(!r.is_probe(Kind::Sweep, 1));
    }
}
