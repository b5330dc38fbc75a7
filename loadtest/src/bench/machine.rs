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
    /// Which CPU the model name stands for ([`cpu_id`]): family, model, stepping and
    /// whether it has AVX-512. A VM's host can change under the same model name (this
    /// repository's "AMD EPYC" had AVX-512 when the relay's AVX-512 UTF-8 kernel was
    /// measured, and is a family 25 model 1 — Zen 3 — without it since), and the relay's
    /// UTF-8 check picks its kernel by that flag. Empty in reports written before it was
    /// recorded.
    #[serde(default)]
    pub cpu_id: String,
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
            cpu_id: cpu_id(&cpuinfo),
        }
    }

    /// One Markdown line.
    pub fn line(&self) -> String {
        let id = if self.cpu_id.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.cpu_id)
        };
        format!(
            "machine: nproc={}, CPU \"{}\"{id}, kernel {}, ulimit -n {} (hard {}), GLIBC_TUNABLES={}, cpuidle {}",
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

/// `family F model M stepping S, AVX-512` (or `no AVX-512`) from the first processor of
/// `/proc/cpuinfo`; empty when the text has no `cpu family` line (not x86).
pub fn cpu_id(cpuinfo: &str) -> String {
    let first = cpuinfo.split("\n\n").next().unwrap_or_default();
    let field = |name: &str| {
        first.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim())
        })
    };
    let Some(family) = field("cpu family") else {
        return String::new();
    };
    let avx512 = field("flags").is_some_and(|f| f.split_whitespace().any(|x| x == "avx512f"));
    format!(
        "family {family} model {} stepping {}, {}",
        field("model").unwrap_or("?"),
        field("stepping").unwrap_or("?"),
        if avx512 { "AVX-512" } else { "no AVX-512" }
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    const ZEN3: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\nstepping\t: 1\nflags\t\t: fpu avx avx2 vaes\n\nprocessor\t: 1\ncpu family\t: 99\nmodel\t\t: 9\nstepping\t: 9\nflags\t\t: avx512f\n";

    #[test]
    fn cpu_id_reads_the_first_processor_and_tells_avx512_apart() {
        assert_eq!(cpu_id(ZEN3), "family 25 model 1 stepping 1, no AVX-512");
        let zen4 = ZEN3.replacen("model\t\t: 1", "model\t\t: 17", 1).replacen(
            "fpu avx avx2 vaes",
            "fpu avx2 avx512f avx512bw",
            1,
        );
        assert_eq!(cpu_id(&zen4), "family 25 model 17 stepping 1, AVX-512");
        // `model name` must not be read as `model`, nor `avx512bw` as `avx512f`.
        let bw_only = ZEN3.replacen("fpu avx avx2 vaes", "avx512bw", 1);
        assert_eq!(cpu_id(&bw_only), "family 25 model 1 stepping 1, no AVX-512");
        assert_eq!(cpu_id("processor : 0\nmodel name : Neoverse\n"), "");
    }

    #[test]
    fn the_machine_line_shows_the_cpu_id_only_when_recorded() {
        let mut m = Machine {
            nproc: 2,
            cpu_model: "AMD EPYC".into(),
            kernel: "6.18".into(),
            nofile: (20000, 20000),
            glibc_tunables: "(unset)".into(),
            cpuidle: "haltpoll/haltpoll".into(),
            cpu_id: String::new(),
        };
        // A report written before the field existed renders as it did then.
        let old = m.line();
        assert!(
            old.starts_with("machine: nproc=2, CPU \"AMD EPYC\", kernel 6.18,"),
            "{old}"
        );
        m.cpu_id = cpu_id(ZEN3);
        assert!(
            m.line().starts_with(
                "machine: nproc=2, CPU \"AMD EPYC\" (family 25 model 1 stepping 1, no AVX-512), kernel"
            ),
            "{}",
            m.line()
        );
    }
}
