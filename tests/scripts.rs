//! The repository's shell scripts: every one parses (`bash -n`), and the measurement and
//! build scripts refuse an argument they do not know with exit 64 and a message naming
//! it, before they build or start anything. (What the scripts measure is documented in
//! loadtest/BENCH.md with the figures they printed; `scripts/build-pgo.sh` takes minutes
//! and is run by hand and by `scripts/bench.sh --pgo`, not here.)

use std::path::{Path, PathBuf};
use std::process::Command;

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

#[test]
fn every_script_parses() {
    let mut seen = 0;
    for entry in std::fs::read_dir(scripts_dir()).expect("scripts/") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "sh") {
            let out = Command::new("bash")
                .arg("-n")
                .arg(&path)
                .output()
                .expect("bash");
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            seen += 1;
        }
    }
    assert!(seen >= 4, "only {seen} scripts found");
}

/// Runs `script args…` and returns (exit code, stderr).
fn run(script: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new("bash")
        .arg(scripts_dir().join(script))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("bash");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unknown_argument_exits_64_naming_it() {
    for (script, args, named) in [
        ("build-pgo.sh", &["--fast"][..], "--fast"),
        ("hop-split.sh", &["haproxy"][..], "haproxy"),
        ("wake-footprint.sh", &["nginx"][..], "nginx"),
        ("cpu-split.sh", &["--peer", "floor"][..], "--peer"),
        ("cpu-split.sh", &["--only", "echo"][..], "echo"),
        ("cpu-split.sh", &["--reps", "0"][..], "0"),
    ] {
        let (code, err) = run(script, args);
        assert_eq!(code, Some(64), "{script} {args:?}: {err}");
        assert!(
            err.contains(&format!("'{named}'")),
            "{script}: message does not name {named}: {err}"
        );
    }
}

#[test]
fn build_pgo_help_describes_what_it_builds() {
    let out = Command::new("bash")
        .arg(scripts_dir().join("build-pgo.sh"))
        .arg("--help")
        .output()
        .expect("bash");
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("target/pgo/release/tollgate"), "{help}");
    assert!(help.contains("llvm-profdata"), "{help}");
    assert!(
        !help.contains("set -euo"),
        "help runs into the code: {help}"
    );
}

#[test]
fn cpu_split_refuses_a_sampling_period_that_is_not_a_number() {
    let out = Command::new("bash")
        .arg(scripts_dir().join("cpu-split.sh"))
        .env("PERIOD_US", "1ms")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("bash");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PERIOD_US '1ms'"), "{err}");
}
