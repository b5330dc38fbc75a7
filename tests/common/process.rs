//! The relay as a child process (`target/*/tollgate`): for signals, exit codes and RSS.

use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::RELAY_KEY;

/// A running `tollgate` process; killed on drop if still running.
pub struct RelayProcess {
    /// The child.
    pub child: std::process::Child,
    /// `IP:PORT` of its client listener.
    pub addr: String,
    /// Admin listener, when started with `--admin-listen 127.0.0.1:0`.
    pub admin: Option<String>,
    /// Everything it logged (stderr).
    pub log: Arc<Mutex<String>>,
    /// Its keys file and (unless started beside another relay) usage log live here.
    pub dir: tempfile::TempDir,
    /// Its usage log.
    log_path: std::path::PathBuf,
}

impl RelayProcess {
    /// Start managed mode (tenant `acme` with [`RELAY_KEY`], plus `keys_extra` lines) in front
    /// of `upstream` with a usage log at `dir/usage.jsonl`, one worker on `driver`, plus
    /// `extra` flags.
    pub fn start(driver: &str, upstream: &str, keys_extra: &str, extra: &[&str]) -> RelayProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, driver, upstream, keys_extra, extra)
    }

    /// Like [`RelayProcess::start`], in `dir` (a restart keeps the usage log and cursor).
    pub fn start_in(
        dir: tempfile::TempDir,
        driver: &str,
        upstream: &str,
        keys_extra: &str,
        extra: &[&str],
    ) -> RelayProcess {
        let log_path = dir.path().join("usage.jsonl");
        Self::spawn(dir, log_path, driver, upstream, keys_extra, extra)
    }

    /// A second relay appending to this one's usage log (two relays on one log: a restart
    /// that overlaps the old process's drain), with its keys in a directory of its own.
    pub fn start_beside(&self, driver: &str, upstream: &str, extra: &[&str]) -> RelayProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::spawn(dir, self.usage_log(), driver, upstream, "", extra)
    }

    fn spawn(
        dir: tempfile::TempDir,
        log_path: std::path::PathBuf,
        driver: &str,
        upstream: &str,
        keys_extra: &str,
        extra: &[&str],
    ) -> RelayProcess {
        let keys = dir.path().join("keys");
        std::fs::write(&keys, format!("acme {RELAY_KEY}\n{keys_extra}")).expect("keys");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--workers",
                "1",
                "--no-pin",
                "--upstream",
                upstream,
                "--client-keys",
                keys.to_str().expect("utf8"),
                "--usage-log",
                log_path.to_str().expect("utf8"),
                "--upstream-header",
                "Authorization: Bearer sk-provider-must-not-be-logged",
            ])
            .args(super::driver_args(driver))
            .args(extra)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn tollgate");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = std::io::BufReader::new(stderr).lines();
        let log = Arc::new(Mutex::new(String::new()));
        let mut addr = None;
        let mut admin = None;
        for line in lines.by_ref() {
            let line = line.expect("line");
            {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
            if let Some(i) = line.find("admin=") {
                admin = Some(line[i + 6..].split_whitespace().next().unwrap().to_string());
            }
            if let Some(i) = line.find("listen=") {
                addr = Some(line[i + 7..].split_whitespace().next().unwrap().to_string());
                break;
            }
        }
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        RelayProcess {
            child,
            addr: addr.unwrap_or_else(|| panic!("relay did not start: {}", log.lock().unwrap())),
            admin,
            log,
            dir,
            log_path,
        }
    }

    /// `kill -9`, then start again in the same directory with these settings.
    pub fn kill9_and_restart(
        mut self,
        driver: &str,
        upstream: &str,
        keys_extra: &str,
        extra: &[&str],
    ) -> RelayProcess {
        self.signal(libc::SIGKILL);
        self.wait_exit(Duration::from_secs(5)).expect("killed");
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        Self::start_in(dir, driver, upstream, keys_extra, extra)
    }

    /// `ws://…/v1/responses`.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/responses", self.addr)
    }

    /// The usage log path.
    pub fn usage_log(&self) -> std::path::PathBuf {
        self.log_path.clone()
    }

    /// Send `sig`.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Wait up to `limit` for the exit; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Resident set size now, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Open file descriptors now.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// User + system CPU so far, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("proc stat");
        let after = &stat[stat.rfind(')').expect(")") + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0)
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
