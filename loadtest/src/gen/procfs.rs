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

/// Summed CPU seconds of `pids` (a vanished pid counts as zero).
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    let ticks: u64 = pids
        .iter()
        .filter_map(|p| cpu_ticks(*p).ok())
        .map(|t| t.total())
        .sum();
    ticks as f64 / ticks_per_second() as f64
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

/// CPU seconds of each thread of `pid`, with its name (`comm`).
pub fn thread_cpu(pid: u32) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    let tps = ticks_per_second() as f64;
    for t in tasks.flatten() {
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
            out.push((name, c.total() as f64 / tps));
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
    fn rss_line_parses() {
        assert_eq!(parse_rss_kib("Name:\tx\nVmRSS:\t  1234 kB\n"), Some(1234));
        assert_eq!(parse_rss_kib("Name:\tx\n"), None);
    }
}
