//! `perf` run beside a measurement window: a recording into a temporary file, read back
//! with `perf script` once stopped — what the hop trace ([`super::hops`]) and the window's
//! user/kernel split ([`super::window`]) both run — and the SIGINT that stops any perf.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// Stop a `perf` child the way Ctrl-C does, so it writes out what it has.
pub(crate) fn interrupt(child: &Child) {
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
}

/// A running `perf record`.
pub(crate) struct Recording {
    child: Child,
    path: PathBuf,
}

impl Recording {
    /// `perf record -q ARGS -o FILE`, FILE a new file in the temporary directory named
    /// after `name`; `None` when perf is missing or cannot start (what it measures is then
    /// not reported).
    pub(crate) fn start(name: &str, args: &[&str]) -> Option<Recording> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "loadtest-{name}-{}-{}.data",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let child = Command::new("perf")
            .args(["record", "-q"])
            .args(args)
            .arg("-o")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Recording { child, path })
    }

    /// Stop recording and return what `perf script FIELDS -i FILE` prints; the file is
    /// removed. `None` when perf could not read it back.
    pub(crate) fn finish(mut self, script: &[&str]) -> Option<String> {
        interrupt(&self.child);
        // perf exits 130 after SIGINT; whether it wrote a usable file shows below.
        let out = self.child.wait().ok().and_then(|_| {
            Command::new("perf")
                .arg("script")
                .args(script)
                .arg("-i")
                .arg(&self.path)
                .stderr(Stdio::null())
                .output()
                .ok()
        });
        let _ = std::fs::remove_file(&self.path);
        Some(String::from_utf8_lossy(&out?.stdout).into_owned())
    }
}
