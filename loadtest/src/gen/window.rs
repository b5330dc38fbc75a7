//! The measurement window of a run: from when every session is up and the load has
//! settled to shortly before the end, so connection setup and teardown do not count.
//! Over it: the system under test's CPU per frame, per thread (workers vs helpers such as
//! tollgate's usage-log writer), and its syscalls per frame (`perf stat -e
//! raw_syscalls:sys_enter`, when perf is installed and allowed).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::procfs;

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
    /// The SUT's hop (switch-in → first forwarded frame), when traced.
    #[serde(default)]
    pub hops: Option<super::hops::HopStats>,
}

struct Snapshot {
    at: Instant,
    frames: u64,
    threads: Vec<(String, f64)>,
}

fn snapshot(pids: &[u32], frames: &AtomicU64) -> Snapshot {
    let mut threads = Vec::new();
    for &pid in pids {
        threads.extend(procfs::thread_cpu(pid));
    }
    Snapshot {
        at: Instant::now(),
        frames: frames.load(Ordering::Relaxed),
        threads,
    }
}

fn group_name(comm: &str) -> String {
    comm.trim_end_matches(|c: char| c.is_ascii_digit())
        .to_string()
}

/// `perf stat` counting the SUT's syscalls until stopped.
struct Perf(Child);

impl Perf {
    fn start(pids: &[u32]) -> Option<Perf> {
        let list = pids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
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
        super::hops::interrupt(&self.0);
        let out = self.0.wait_with_output().ok()?;
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .find(|l| l.contains("raw_syscalls:sys_enter"))
            .and_then(|l| l.split(',').next())
            .and_then(|n| n.trim().parse().ok())
    }
}

/// Sleep until `start`, measure until `end`; `None` if the window is empty.
pub(crate) fn measure(
    pids: &[u32],
    frames: &AtomicU64,
    start: Instant,
    end: Instant,
    trace_hops: bool,
) -> Option<WindowReport> {
    if pids.is_empty() || end <= start {
        return None;
    }
    std::thread::sleep(start.saturating_duration_since(Instant::now()));
    let perf = Perf::start(pids);
    let trace = trace_hops.then(super::hops::Trace::start).flatten();
    // Give perf a moment to attach before the window opens.
    std::thread::sleep(Duration::from_millis(150));
    let a = snapshot(pids, frames);
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let b = snapshot(pids, frames);
    let syscalls = perf.and_then(Perf::stop);
    let hops = trace.and_then(|t| t.stop(&super::hops::thread_ids(pids)));
    let frames = b.frames.saturating_sub(a.frames);
    let per = |cpu: f64| (frames > 0).then(|| cpu * 1e6 / frames as f64);
    let mut groups: Vec<ThreadGroup> = Vec::new();
    let mut total = 0.0;
    for (comm, cpu1) in &b.threads {
        let cpu0 = a
            .threads
            .iter()
            .find(|(c, _)| c == comm)
            .map_or(0.0, |(_, c)| *c);
        let d = (cpu1 - cpu0).max(0.0);
        total += d;
        let name = group_name(comm);
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
    for g in &mut groups {
        g.cpu_us_per_frame = per(g.cpu_s);
    }
    groups.sort_by(|x, y| y.cpu_s.total_cmp(&x.cpu_s));
    Some(WindowReport {
        seconds: b.at.duration_since(a.at).as_secs_f64(),
        frames,
        cpu_s: total,
        cpu_us_per_frame: per(total),
        syscalls_per_frame: syscalls
            .filter(|_| frames > 0)
            .map(|n| n as f64 / frames as f64),
        threads: groups,
        hops,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_names_group_without_their_index() {
        assert_eq!(group_name("tollgate-w0"), "tollgate-w");
        assert_eq!(group_name("tollgate-w12"), "tollgate-w");
        assert_eq!(group_name("tollgate-usage-"), "tollgate-usage-");
        assert_eq!(group_name("nginx"), "nginx");
    }
}
