//! CPU time and memory of processes from `/proc`: the system-under-test metrics.

use std::path::Path;

/// Why a `/proc` file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The file could not be read (process gone, no permission).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file's contents did not have the expected shape.
    #[error("unexpected contents in {path}")]
    Format {
        /// The file.
        path: String,
    },
}

/// User and system CPU time of one process (all its threads), in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTicks {
    /// `utime`.
    pub user: u64,
    /// `stime`.
    pub system: u64,
}

impl CpuTicks {
    /// `user + system`.
    pub fn total(&self) -> u64 {
        self.user + self.system
    }
}

/// Parses the contents of `/proc/PID/stat`: `utime` and `stime` (fields 14 and 15,
/// counted after the parenthesised command name, which may contain spaces).
pub fn parse_stat(text: &str) -> Option<CpuTicks> {
    let after = text.get(text.rfind(')')? + 1..)?;
    let mut f = after.split_ascii_whitespace();
    // After ')': state(3) ppid(4) … utime(14) stime(15): skip 11 fields.
    let user = f.nth(11)?.parse().ok()?;
    let system = f.next()?.parse().ok()?;
    Some(CpuTicks { user, system })
}

fn read(path: &str) -> Result<String, ProcError> {
    std::fs::read_to_string(path).map_err(|source| ProcError::Read {
        path: path.to_string(),
        source,
    })
}

/// CPU ticks of process `pid`.
pub fn cpu_ticks(pid: u32) -> Result<CpuTicks, ProcError> {
    let path = format!("/proc/{pid}/stat");
    parse_stat(&read(&path)?).ok_or(ProcError::Format { path })
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, normally 100).
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// Summed CPU seconds of `pids`, each from its CPU clock, else from its `stat` (a
/// vanished pid counts as zero).
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    let tps = ticks_per_second() as f64;
    pids.iter()
        .filter_map(|p| {
            cpu_clock_seconds(*p).or_else(|| cpu_ticks(*p).ok().map(|t| t.total() as f64 / tps))
        })
        .sum()
}

/// Parses each CPU's `steal` ticks out of `/proc/stat` (the eighth number of each
/// `cpuN` line: time the hypervisor ran something else while this vCPU had work), in CPU
/// order. Empty when the kernel reports no steal column (or no per-CPU lines).
pub fn parse_steal(stat: &str) -> Vec<u64> {
    stat.lines()
        .filter_map(|l| {
            let mut f = l.split_ascii_whitespace();
            let name = f.next()?;
            let n: usize = name.strip_prefix("cpu")?.parse().ok()?;
            Some((n, f.nth(7)?.parse().ok()?))
        })
        .fold(Vec::new(), |mut v, (n, steal)| {
            if v.len() <= n {
                v.resize(n + 1, 0);
            }
            v[n] = steal;
            v
        })
}

/// Each CPU's steal ticks now (empty when `/proc/stat` cannot be read).
pub fn steal_ticks() -> Vec<u64> {
    read("/proc/stat")
        .map(|s| parse_steal(&s))
        .unwrap_or_default()
}

/// Each CPU's steal between two [`steal_ticks`] readings `wall` seconds apart, as a
/// fraction of that time; empty when either reading is.
pub fn steal_fractions(before: &[u64], after: &[u64], wall: f64) -> Vec<f64> {
    if before.len() != after.len() || wall <= 0.0 {
        return Vec::new();
    }
    let tps = ticks_per_second() as f64;
    before
        .iter()
        .zip(after)
        .map(|(b, a)| a.saturating_sub(*b) as f64 / tps / wall)
        .collect()
}

/// Parses `VmRSS:` (kB) out of `/proc/PID/status`.
pub fn parse_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Resident set size of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, ProcError> {
    let path = format!("/proc/{pid}/status");
    parse_rss_kib(&read(&path)?).ok_or(ProcError::Format { path })
}

/// Summed RSS of `pids` in KiB (a vanished pid counts as zero).
pub fn rss_kib_sum(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|p| rss_kib(*p).ok()).sum()
}

/// Direct children of `pid` (from `/proc/PID/task/*/children`).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(
                s.split_ascii_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// CPU seconds of process `pid` (all its threads, live and exited) from its CPU-time
/// clock (`clock_getcpuclockid`): the scheduler's runtime in nanoseconds, where
/// `/proc/PID/stat` rounds to clock ticks (10 ms — 1.7% of a 0.6 s firehose window).
/// `None` if the process is gone.
pub fn cpu_clock_seconds(pid: u32) -> Option<f64> {
    // The clock id is the pid shifted into a 32-bit `clockid_t`: a pid above Linux's
    // `PID_MAX_LIMIT` (2^22) would wrap into another clock (0 is the caller's own).
    if pid == 0 || pid > 1 << 22 {
        return None;
    }
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a valid out-pointer.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; a stale clock id only makes this fail.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

/// One thread's CPU time.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadCpu {
    /// Thread id: what a thread is matched by between two snapshots (threads of
    /// different processes, nginx's master and worker, share a name).
    pub tid: u32,
    /// `comm`.
    pub name: String,
    /// CPU seconds (clock-tick resolution).
    pub cpu_s: f64,
}

/// CPU seconds of each thread of `pid`, with its id and name (`comm`).
pub fn thread_cpu(pid: u32) -> Vec<ThreadCpu> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    let tps = ticks_per_second() as f64;
    for t in tasks.flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let name = stat
            .find('(')
            .zip(stat.rfind(')'))
            .and_then(|(a, b)| stat.get(a + 1..b))
            .unwrap_or("?")
            .to_string();
        if let Some(c) = parse_stat(&stat) {
            out.push(ThreadCpu {
                tid,
                name,
                cpu_s: c.total() as f64 / tps,
            });
        }
    }
    out
}

/// Whether `/proc/PID` exists.
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_of_this_process_grows_with_cpu_work() {
        let pid = std::process::id();
        let before = cpu_ticks(pid).unwrap();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(120) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let after = cpu_ticks(pid).unwrap();
        assert!(after.total() > before.total(), "{before:?} → {after:?}");
        assert!(rss_kib(pid).unwrap() > 100);
        assert!(cpu_ticks(u32::MAX).is_err());
    }

    #[test]
    fn stat_with_spaces_and_parens_in_the_name() {
        let s = "1234 (a b) c)) S 1 2 3 4 5 6 7 8 9 10 111 222 13 14 15";
        assert_eq!(
            parse_stat(s),
            Some(CpuTicks {
                user: 111,
                system: 222
            })
        );
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn the_cpu_clock_counts_a_child_to_the_nanosecond_and_agrees_with_its_stat() {
        // A child that burns ~0.3 s of CPU, then sleeps so it can be read while alive.
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .expect("spawn sh");
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        // Wait for the busy loop to end: the clock stops moving.
        let mut last = -1.0;
        let clock = loop {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let c = cpu_clock_seconds(pid).expect("clock of a live child");
            if c == last || std::time::Instant::now() > deadline {
                break c;
            }
            last = c;
        };
        let ticks = cpu_ticks(pid).expect("stat of a live child").total() as f64
            / ticks_per_second() as f64;
        let _ = child.kill();
        let _ = child.wait();
        assert!(clock > 0.02, "the busy loop ran: {clock}");
        // `stat` truncates user and system time to ticks each, so its sum is up to two
        // ticks below the clock (CI saw 0.2625 s against 0.25), never above it.
        let tick = 1.0 / ticks_per_second() as f64;
        assert!(
            (-0.001..=2.0 * tick + 0.001).contains(&(clock - ticks)),
            "clock {clock} vs /proc/PID/stat {ticks}"
        );
        // Finer than a tick: a whole number of 10 ms would mean it is not the runtime.
        let ns = (clock * 1e9).round() as u64;
        assert_ne!(ns % 10_000_000, 0, "{ns} ns is a whole number of ticks");
        let mut gone = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let gone_pid = gone.id();
        gone.wait().expect("reap true");
        assert_eq!(cpu_clock_seconds(gone_pid), None, "a reaped process");
        assert_eq!(
            cpu_clock_seconds(u32::MAX / 2),
            None,
            "beyond PID_MAX_LIMIT"
        );
        assert_eq!(cpu_clock_seconds(0), None);
    }

    #[test]
    fn threads_are_listed_with_their_ids() {
        let me = std::process::id();
        let threads = thread_cpu(me);
        assert!(
            threads.iter().any(|t| t.tid == me),
            "the main thread's tid is the pid: {threads:?}"
        );
    }

    #[test]
    fn steal_is_read_per_cpu_and_the_summary_line_is_skipped() {
        let stat = "cpu  4576429 0 1566567 3767457 830212 0 588647 95423 0 0\n\
                    cpu0 2105360 0 718028 1944828 633098 0 270858 52818 0 0\n\
                    cpu1 2471068 0 848538 1822629 197114 0 317789 42604 0 0\n\
                    intr 1 2 3\nctxt 99\n";
        assert_eq!(parse_steal(stat), vec![52818, 42604]);
        // A kernel without the steal column: nothing, not a wrong column.
        assert_eq!(parse_steal("cpu0 1 2 3 4 5 6 7\n"), Vec::<u64>::new());
        let tps = ticks_per_second() as f64;
        let f = steal_fractions(&[10, 20], &[10 + tps as u64 / 4, 20], 1.0);
        assert_eq!(f, vec![0.25, 0.0]);
        assert!(steal_fractions(&[1], &[], 1.0).is_empty());
        // This machine's /proc/stat has a steal column for every online CPU: at least the
        // CPUs this process may run on.
        assert!(steal_ticks().len() >= std::thread::available_parallelism().map_or(1, |n| n.get()));
    }

    #[test]
    fn rss_line_parses() {
        assert_eq!(parse_rss_kib("Name:\tx\nVmRSS:\t  1234 kB\n"), Some(1234));
        assert_eq!(parse_rss_kib("Name:\tx\n"), None);
    }
}
