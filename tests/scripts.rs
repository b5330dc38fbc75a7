//! The repository's shell scripts: every one parses (`bash -n`), and the measurement, build
//! and fuzz scripts refuse an argument they do not know with exit 64 and a message naming
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
        ("echo-split.sh", &["squid"][..], "squid"),
        ("echo-split.sh", &["tollgate", "8k"][..], "8k"),
        ("echo-split.sh", &["tollgate", "8000", "9"][..], "9"),
        ("wake-footprint.sh", &["nginx"][..], "nginx"),
        ("profile.sh", &["haproxy"][..], "haproxy"),
        ("profile.sh", &["tollgate", "echo"][..], "echo"),
        ("cpu-split.sh", &["--peer", "floor"][..], "--peer"),
        ("cpu-split.sh", &["--only", "echo"][..], "echo"),
        ("cpu-split.sh", &["--reps", "0"][..], "0"),
        ("commit-cost.sh", &["--fsync"][..], "--fsync"),
        ("commit-cost.sh", &["--commits", "0"][..], "0"),
        ("fuzz.sh", &["0"][..], "0"),
        ("fuzz.sh", &["soon"][..], "soon"),
        ("fuzz.sh", &["5", "walker", "parser"][..], "parser"),
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

/// `scripts/bench.sh --dry-run ARGS`: the `loadtest bench` commands it would run, one per
/// line (nothing is built or run).
fn bench_plan(args: &[&str]) -> Vec<String> {
    let out = Command::new("bash")
        .arg(scripts_dir().join("bench.sh"))
        .arg("--dry-run")
        .args(args)
        .output()
        .expect("bash");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_full_bench_adds_a_pass_with_a_tls_upstream_leg() {
    // The full run: the plain matrix, then the TLS pass in a directory of its own, with the
    // same relay build (PGO here) and repetitions.
    let plan = bench_plan(&["--full", "--pgo", "--reps", "5", "--out", "/tmp/b"]);
    assert_eq!(
        plan,
        [
            "target/release/loadtest bench --tollgate target/pgo/release/tollgate --full \
             --reps 5 --out /tmp/b",
            "target/release/loadtest bench --tollgate target/pgo/release/tollgate --full \
             --reps 5 --tls upstream --peers tunnel,tollgate,nginx,haproxy --only paced \
             --only idle-4000 --out /tmp/b/tls-upstream",
        ]
    );
    // Not without --full, and not when the arguments choose a run of their own.
    assert_eq!(
        bench_plan(&["--quick"]),
        ["target/release/loadtest bench --quick --out bench-out"]
    );
    for own in [
        &["--full", "--only", "paced"][..],
        &["--full", "--tls=both"][..],
        &["--full", "--peers", "tollgate,nginx"][..],
    ] {
        assert_eq!(bench_plan(own).len(), 1, "{own:?}");
    }
    // `--out=DIR` is read too.
    assert!(bench_plan(&["--full", "--out=/tmp/c"])[1].ends_with("--out /tmp/c/tls-upstream"));
}

#[test]
fn bench_refuses_out_without_a_directory() {
    let (code, err) = run("bench.sh", &["--dry-run", "--out"]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("'--out'"), "{err}");
}
