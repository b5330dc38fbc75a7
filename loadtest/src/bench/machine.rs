//! Facts about the machine and the peers' versions for the report header, CPU
//! pinning, and installing the Debian peers.

use std::process::{Command, Stdio};

/// `nproc`, CPU model, kernel, `ulimit -n`, `GLIBC_TUNABLES`, how an idle CPU waits.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    /// Online CPUs.
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// Soft and hard `RLIMIT_NOFILE`.
    pub nofile: (u64, u64),
    /// `GLIBC_TUNABLES` as inherited by every peer.
    pub glibc_tunables: String,
    /// The cpuidle driver and governor, and the guest halt-polling window when the kernel
    /// runs as a KVM guest (`haltpoll`). It sets what every relay's echo latency pays per
    /// hop: with no polling an idle vCPU halts, and waking it goes through the hypervisor.
    #[serde(default)]
    pub cpuidle: String,
}

impl Machine {
    /// Reads the current machine.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into a valid rlimit.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel,
            nofile: (rl.rlim_cur, rl.rlim_max),
            glibc_tunables: std::env::var("GLIBC_TUNABLES").unwrap_or_else(|_| "(unset)".into()),
            cpuidle: cpuidle(),
        }
    }

    /// One Markdown line.
    pub fn line(&self) -> String {
        format!(
            "machine: nproc={}, CPU \"{}\", kernel {}, ulimit -n {} (hard {}), GLIBC_TUNABLES={}, cpuidle {}",
            self.nproc,
            self.cpu_model,
            self.kernel,
            self.nofile.0,
            self.nofile.1,
            self.glibc_tunables,
            self.cpuidle
        )
    }
}

/// `driver/governor` from sysfs, plus `guest_halt_poll_ns=N` under the haltpoll driver.
fn cpuidle() -> String {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let dir = "/sys/devices/system/cpu/cpuidle";
    let Some(driver) = read(&format!("{dir}/current_driver")) else {
        return "unknown".into();
    };
    let governor = read(&format!("{dir}/current_governor")).unwrap_or_else(|| "?".into());
    match read("/sys/module/haltpoll/parameters/guest_halt_poll_ns") {
        Some(ns) if driver == "haltpoll" => format!("{driver}/{governor}, guest_halt_poll_ns={ns}"),
        _ => format!("{driver}/{governor}"),
    }
}

/// Pins the calling thread (and every thread it creates afterwards) to `cpu`.
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET stay inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// First line of `cmd args…` (stdout, else stderr), or `None` if it cannot run.
pub fn version_of(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
}

/// Whether `name` is an executable on PATH (or under /usr/sbin, /sbin).
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin"])
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

fn candidate_exists(pkg: &str) -> bool {
    Command::new("apt-cache")
        .args(["policy", pkg])
        .output()
        .map(|o| {
            let s = String::from_utf8_lossy(&o.stdout);
            s.contains("Candidate:") && !s.contains("Candidate: (none)")
        })
        .unwrap_or(false)
}

fn apt_install(pkgs: &[&str], log: &mut Vec<String>) -> bool {
    let cmd = format!("apt-get install -y {}", pkgs.join(" "));
    log.push(cmd.clone());
    Command::new("apt-get")
        .args(["install", "-y", "-q"])
        .args(pkgs)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs nginx (`nginx-light`, else `nginx`) and `haproxy` from Debian when
/// missing. Returns the commands tried.
pub fn ensure_debian_peers() -> Vec<String> {
    let mut log = Vec::new();
    let mut missing: Vec<&str> = Vec::new();
    if which("nginx").is_none() {
        missing.push("nginx");
    }
    if which("haproxy").is_none() {
        missing.push("haproxy");
    }
    if missing.is_empty() {
        return log;
    }
    for attempt in 0..2 {
        if attempt == 1 {
            log.push("apt-get update".into());
            let _ = Command::new("apt-get")
                .args(["update", "-q"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let pkgs: Vec<&str> = missing
            .iter()
            .map(|m| match *m {
                "nginx" if candidate_exists("nginx-light") => "nginx-light",
                other => other,
            })
            .collect();
        if apt_install(&pkgs, &mut log) {
            break;
        }
    }
    log
}
