//! The measurement window of a run: from when every session is up and the load has
//! settled to shortly before the end, so connection setup and teardown do not count.
//! Over it: the system under test's CPU per frame, per thread (workers vs helpers such as
//! tollgate's usage-log writer), its syscalls per frame (`perf stat -e
//! raw_syscalls:sys_enter`), and how its CPU splits between user space and the kernel
//! (`perf record -e cpu-clock`), when perf is installed and allowed and the run asks for
//! them ([`Probes`]: the latency cases do not).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::perf_record::Recording;
use super::procfs;
use super::Probes;

/// CPU of the threads of one name group over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadGroup {
    /// Thread name with trailing digits dropped (`tollgate-w`, `tollgate-usage-`, `nginx`).
    pub name: String,
    /// Threads in the group.
    pub threads: usize,
    /// CPU seconds over the window.
    pub cpu_s: f64,
    /// CPU µs per frame over the window.
    pub cpu_us_per_frame: Option<f64>,
}

/// What the window measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    /// Length, seconds.
    pub seconds: f64,
    /// Data frames the generator sent plus received inside it.
    pub frames: u64,
    /// SUT CPU seconds inside it.
    pub cpu_s: f64,
    /// SUT CPU µs per frame inside it.
    pub cpu_us_per_frame: Option<f64>,
    /// Syscalls the SUT made inside it ÷ frames (perf), when measurable.
    pub syscalls_per_frame: Option<f64>,
    /// Per thread group.
    pub threads: Vec<ThreadGroup>,
    /// CPU µs per frame the SUT spent in user space — its own code — sampled (see
    /// `Sampler`), when measurable: samples × `SAMPLE_US` over the window's frames. The
    /// recording runs from perf's start (150 ms before the window) to its stop, and the
    /// samples come to 96–99% of the clock, so the report divides `cpu_us_per_frame` in
    /// the proportion of this and `kernel_us_per_frame` (`bench::table::win_split`).
    #[serde(default)]
    pub user_us_per_frame: Option<f64>,
    /// CPU µs per frame the SUT spent in the kernel, sampled the same way.
    #[serde(default)]
    pub kernel_us_per_frame: Option<f64>,
    /// The SUT's hop (switch-in → first forwarded frame), when traced.
    #[serde(default)]
    pub hops: Option<super::hops::HopStats>,
    /// CPU seconds of the load side — this process: the generator, and in `loadtest
    /// bench` the mock upstream — over the same window, from its CPU clock. The bench
    /// divides the SUT's paced CPU by it (`bench::table::win_per_load`): both cores move
    /// with the host, the load side's work per paced frame does not move with the relay.
    /// `None` in reports written before it was measured.
    #[serde(default)]
    pub load_cpu_s: Option<f64>,
}

struct Snapshot {
    at: Instant,
    frames: u64,
    /// Each process's CPU clock (ns resolution), `None` once it is gone.
    clocks: Vec<Option<f64>>,
    threads: Vec<procfs::ThreadCpu>,
    /// This process's CPU clock (the load side).
    load: Option<f64>,
}

fn snapshot(pids: &[u32], frames: &AtomicU64) -> Snapshot {
    let mut threads = Vec::new();
    for &pid in pids {
        threads.extend(procfs::thread_cpu(pid));
    }
    Snapshot {
        at: Instant::now(),
        frames: frames.load(Ordering::Relaxed),
        clocks: pids.iter().map(|p| procfs::cpu_clock_seconds(*p)).collect(),
        threads,
        load: procfs::cpu_clock_seconds(std::process::id()),
    }
}

/// CPU seconds between two snapshots, per thread-name group, each thread matched by its
/// id: a thread that was not there at the start counts from zero, one that ended before
/// the end is not counted (no peer's threads come and go in a window).
fn thread_groups(a: &[procfs::ThreadCpu], b: &[procfs::ThreadCpu]) -> Vec<ThreadGroup> {
    let mut groups: Vec<ThreadGroup> = Vec::new();
    for t in b {
        let cpu0 = a.iter().find(|x| x.tid == t.tid).map_or(0.0, |x| x.cpu_s);
        let d = (t.cpu_s - cpu0).max(0.0);
        let name = group_name(&t.name);
        match groups.iter_mut().find(|g| g.name == name) {
            Some(g) => {
                g.threads += 1;
                g.cpu_s += d;
            }
            None => groups.push(ThreadGroup {
                name,
                threads: 1,
                cpu_s: d,
                cpu_us_per_frame: None,
            }),
        }
    }
    groups.sort_by(|x, y| y.cpu_s.total_cmp(&x.cpu_s));
    groups
}

/// The SUT's CPU seconds between two snapshots: from the processes' CPU clocks when
/// every one could be read both times, else the threads' tick-rounded sum.
fn total_cpu(a: &Snapshot, b: &Snapshot, groups: &[ThreadGroup]) -> f64 {
    let clocks: Option<f64> = a
        .clocks
        .iter()
        .zip(&b.clocks)
        .map(|(x, y)| Some((y.as_ref()? - x.as_ref()?).max(0.0)))
        .sum();
    clocks.unwrap_or_else(|| groups.iter().map(|g| g.cpu_s).sum())
}

fn group_name(comm: &str) -> String {
    comm.trim_end_matches(|c: char| c.is_ascii_digit())
        .to_string()
}

/// `pids` as perf's `-p` takes them: comma-separated.
fn pid_list(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `perf stat` counting the SUT's syscalls until stopped.
struct Perf(Child);

impl Perf {
    fn start(pids: &[u32]) -> Option<Perf> {
        let list = pid_list(pids);
        Command::new("perf")
            .args([
                "stat",
                "-x",
                ",",
                "-e",
                "raw_syscalls:sys_enter",
                "-p",
                &list,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()
            .map(Perf)
    }

    /// SIGINT, then the count perf printed.
    fn stop(self) -> Option<u64> {
        super::perf_record::interrupt(&self.0);
        let out = self.0.wait_with_output().ok()?;
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .find(|l| l.contains("raw_syscalls:sys_enter"))
            .and_then(|l| l.split(',').next())
            .and_then(|n| n.trim().parse().ok())
    }
}

/// CPU time between two samples of [`Sampler`], µs.
const SAMPLE_US: u64 = 1000;

/// `perf record` sampling the SUT's threads every [`SAMPLE_US`] of their CPU time
/// (`cpu-clock`, a software clock: no PMU needed, as in this VM), to split the CPU per
/// frame into user space and kernel.
///
/// Why: the floor, `--tunnel` and tollgate make the same syscalls and io_uring operations
/// per frame, so what tells them apart is their user-space time — a few percent of the
/// total on this machine — while the kernel part moves by ±15% between runs with the host
/// (bfull33: the tunnel's seven paced runs 15.6–21.4 µs per frame). The split shows the
/// difference that noise hides. `/proc/PID/stat`'s utime and stime are no use for it:
/// they are tick samples too, 100 a second.
///
/// Cost: a timer interrupt per sample. Every 250 µs (the first runs, b34 and bfull34) it
/// added 1.3–2.8% to a busy loop's CPU in this VM (`PERIOD_US=250 scripts/cpu-split.sh
/// --overhead`), the same share for every peer. Every 1 ms there are a quarter as many
/// interrupts, and the loop no longer resolves their cost (three sets: −0.6%, +6.8%, and
/// +2.0% with 7 of 15 pairs higher, each inside the loop's own spread); the split still
/// tells the floor, the tunnel and tollgate apart (loadtest/BENCH.md "How the harness
/// measures").
struct Sampler(Recording);

impl Sampler {
    fn start(pids: &[u32]) -> Option<Sampler> {
        let list = pid_list(pids);
        let period = (SAMPLE_US * 1000).to_string();
        Recording::start("split", &["-e", "cpu-clock", "-c", &period, "-p", &list]).map(Sampler)
    }

    /// Stop sampling: the SUT's (user, kernel) CPU seconds, from the samples.
    fn stop(self) -> Option<(f64, f64)> {
        let per_pid = split_samples(&self.0.finish(&["-F", "pid,ip"])?);
        let (user, kernel) = per_pid
            .values()
            .fold((0, 0), |(u, k), s| (u + s.user, k + s.kernel));
        let s = SAMPLE_US as f64 * 1e-6;
        (user + kernel > 0).then_some((user as f64 * s, kernel as f64 * s))
    }
}

/// Samples of one process, by where its instruction pointer was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleSplit {
    /// In user space: the process's own code and its libraries.
    pub user: u64,
    /// In the kernel.
    pub kernel: u64,
}

/// Counts `perf script -F pid,ip` lines (a pid and a hex address per sample) per pid as
/// user space or kernel: an address in the upper half of x86-64's address space is the
/// kernel's. Lines that are not a sample (a warning, a blank) are skipped. The one rule for
/// both the bench's sampler and `scripts/cpu-split.sh` (through `loadtest split-samples`).
pub fn split_samples(text: &str) -> BTreeMap<u32, SampleSplit> {
    const KERNEL: u64 = 0xffff_8000_0000_0000;
    let mut out: BTreeMap<u32, SampleSplit> = BTreeMap::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(pid), Some(ip), None) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let (Ok(pid), Ok(ip)) = (pid.parse::<u32>(), u64::from_str_radix(ip, 16)) else {
            continue;
        };
        let s = out.entry(pid).or_default();
        if ip >= KERNEL {
            s.kernel += 1;
        } else {
            s.user += 1;
        }
    }
    out
}

/// Sleep until `start`, measure until `end`; `None` if the window is empty.
pub(crate) fn measure(
    pids: &[u32],
    frames: &AtomicU64,
    start: Instant,
    end: Instant,
    probes: Probes,
) -> Option<WindowReport> {
    if pids.is_empty() || end <= start {
        return None;
    }
    std::thread::sleep(start.saturating_duration_since(Instant::now()));
    let perf = (probes != Probes::None)
        .then(|| Perf::start(pids))
        .flatten();
    let trace = (probes == Probes::Hops)
        .then(super::hops::Trace::start)
        .flatten();
    // Not while the hop is traced: one perf recording at a time keeps the trace's cost
    // what it was.
    let sampler = (probes == Probes::Split)
        .then(|| Sampler::start(pids))
        .flatten();
    // Give perf a moment to attach before the window opens (waited without perf too, so
    // every case's window covers the same part of its run).
    std::thread::sleep(Duration::from_millis(150));
    let a = snapshot(pids, frames);
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let b = snapshot(pids, frames);
    let syscalls = perf.and_then(Perf::stop);
    let split = sampler.and_then(Sampler::stop);
    let hops = trace.and_then(|t| t.stop(&super::hops::thread_ids(pids)));
    let frames = b.frames.saturating_sub(a.frames);
    let per = |cpu: f64| (frames > 0).then(|| cpu * 1e6 / frames as f64);
    let mut groups = thread_groups(&a.threads, &b.threads);
    for g in &mut groups {
        g.cpu_us_per_frame = per(g.cpu_s);
    }
    let total = total_cpu(&a, &b, &groups);
    Some(WindowReport {
        seconds: b.at.duration_since(a.at).as_secs_f64(),
        frames,
        cpu_s: total,
        cpu_us_per_frame: per(total),
        syscalls_per_frame: syscalls
            .filter(|_| frames > 0)
            .map(|n| n as f64 / frames as f64),
        threads: groups,
        user_us_per_frame: split.and_then(|(u, _)| per(u)),
        kernel_us_per_frame: split.and_then(|(_, k)| per(k)),
        hops,
        load_cpu_s: b.load.zip(a.load).map(|(y, x)| (y - x).max(0.0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(tid: u32, name: &str, cpu_s: f64) -> procfs::ThreadCpu {
        procfs::ThreadCpu {
            tid,
            name: name.into(),
            cpu_s,
        }
    }

    #[test]
    fn threads_of_one_name_are_matched_by_id() {
        // nginx: master and worker are two processes whose threads are both "nginx". The
        // worker had run 5 s before the window and runs 1 s in it; the master idles.
        let a = [t(100, "nginx", 0.01), t(101, "nginx", 5.0)];
        let b = [t(100, "nginx", 0.01), t(101, "nginx", 6.0)];
        let g = thread_groups(&a, &b);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].threads, 2);
        assert!((g[0].cpu_s - 1.0).abs() < 1e-9, "{g:?}");
        // Workers and a helper group by name without their index, largest first; a thread
        // born inside the window counts from zero.
        let a = [t(1, "tollgate-w0", 1.0), t(2, "tollgate-usage-", 0.5)];
        let b = [
            t(1, "tollgate-w0", 1.5),
            t(2, "tollgate-usage-", 0.52),
            t(3, "tollgate-w1", 0.25),
        ];
        let g = thread_groups(&a, &b);
        assert_eq!(g[0].name, "tollgate-w");
        assert_eq!(g[0].threads, 2);
        assert!((g[0].cpu_s - 0.75).abs() < 1e-9, "{g:?}");
        assert!((g[1].cpu_s - 0.02).abs() < 1e-9, "{g:?}");
    }

    #[test]
    fn the_total_comes_from_the_clocks_unless_one_is_missing() {
        let snap = |clocks: Vec<Option<f64>>| Snapshot {
            at: Instant::now(),
            frames: 0,
            clocks,
            threads: Vec::new(),
            load: None,
        };
        let groups = [ThreadGroup {
            name: "x".into(),
            threads: 1,
            cpu_s: 0.6,
            cpu_us_per_frame: None,
        }];
        let a = snap(vec![Some(1.0), Some(2.0)]);
        let b = snap(vec![Some(1.5), Some(2.123_456)]);
        assert!((total_cpu(&a, &b, &groups) - 0.623_456).abs() < 1e-9);
        let gone = snap(vec![Some(1.5), None]);
        assert!((total_cpu(&a, &gone, &groups) - 0.6).abs() < 1e-9);
    }

    #[test]
    fn samples_split_by_the_half_of_the_address_space() {
        // `perf script -F pid,ip`: a pid and an address per line, indented; kernel text is
        // in the upper half, a PIE binary, libc and the vDSO in the lower.
        let text = " 4242 \t ffffffff8225f8ab\n 4242  55d0c2a81234\n 4243\t 7f3a1c2b3c4d\n \
                    4242 ffffffff813d01b4\n 4243 ffffffff81000000\n";
        let split = split_samples(text);
        let s = |user, kernel| SampleSplit { user, kernel };
        assert_eq!(split.get(&4242), Some(&s(1, 2)));
        assert_eq!(split.get(&4243), Some(&s(1, 1)));
        assert_eq!(split.len(), 2);
        // Anything else (a warning, a bad address, a line of a call chain) is not a sample.
        assert!(split_samples("no samples\n\n 12 zz\n\t ffffffff81000000\n").is_empty());
        assert_eq!(
            split_samples("  zz\n7 7fff\n1 2 3\n"),
            BTreeMap::from([(7, s(1, 0))])
        );
    }

    #[test]
    fn thread_names_group_without_their_index() {
        assert_eq!(group_name("tollgate-w0"), "tollgate-w");
        assert_eq!(group_name("tollgate-w12"), "tollgate-w");
        assert_eq!(group_name("tollgate-usage-"), "tollgate-usage-");
        assert_eq!(group_name("nginx"), "nginx");
    }
}
