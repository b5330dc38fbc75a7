//! Bench results made up for tests: runs with chosen numbers, as `bench.json` holds them.

use super::BenchResult;

/// One echo run of `peer` at `rate` with this p50 and load-core utilisation: 2.5 s at
/// `rate`, so the load core spent `load` × 10⁶ ÷ `rate` µs per echo.
pub(crate) fn echo_run(
    peer: &str,
    rate: f64,
    rep: usize,
    p50: f64,
    load: f64,
) -> serde_json::Value {
    let lat = serde_json::json!({"count": 100, "min_us": p50 / 2.0, "p50_us": p50,
        "p90_us": p50 * 2.0, "p99_us": p50 * 4.0, "p999_us": p50 * 5.0,
        "max_us": p50 * 6.0, "mean_us": p50});
    serde_json::json!({"case": format!("sweep@{rate}"), "kind": "sweep", "peer": peer,
        "rep": rep, "report": {"workload": "echo", "target": "ws://127.0.0.1:1",
        "sessions": 16, "threads": 1, "turns_per_session": null, "offered_rate": rate,
        "duration_s": 2.5, "achieved_rate": rate,
        "counts": {"frames_sent": 1, "frames_received": 1, "bytes_sent": 1,
            "bytes_received": 1, "completed": (rate * 2.5) as u64, "sessions": 16, "errors": 0,
            "in_window": 1, "window_ns": 1},
        "frames_per_s": rate * 2.0, "mb_per_s": 1.0, "latency": {"echo": lat},
        "load_cpu_s": load * 2.5, "load_cpu_util": load, "sut": null,
        "error_samples": []},
        "mock_frames_sent": 1, "usage": null, "generator_bound": false, "error": null})
}

/// One `hop@…` run of `peer` whose one-frame wake-ups' hop p50 was `single_p50` µs.
pub(crate) fn hop_run(peer: &str, rep: usize, single_p50: f64) -> serde_json::Value {
    let mut run = echo_run(peer, super::cases::HOP_RATE, rep, 300.0, 0.5);
    run["case"] = serde_json::json!(format!("hop@{}", super::cases::HOP_RATE));
    run["kind"] = serde_json::json!("hop");
    run["report"]["sut"] = serde_json::json!({"pids": [1], "cpu_s": 1.0, "cpu_util": 0.4,
        "cpu_us_per_frame": 20.0, "cpu_us_per_mb": null, "rss_before_kib": 1,
        "rss_loaded_kib": null, "kib_per_session": null,
        "window": {"seconds": 2.0, "frames": 1000, "cpu_s": 0.8, "cpu_us_per_frame": 20.0,
            "syscalls_per_frame": null, "threads": [],
            "hops": {"wakeups": 9000, "p50_us": single_p50 + 1.0, "p90_us": single_p50 * 1.5,
                "single_p50_us": single_p50, "frames_per_wakeup": 2.0}}});
    run
}

/// One paced run of `peer` whose window measured `total` CPU µs per frame on its clock
/// and, sampled, `user` and `kernel` µs per frame (`None`: not sampled).
pub(crate) fn paced_run(
    peer: &str,
    rep: usize,
    total: f64,
    split: Option<(f64, f64)>,
) -> serde_json::Value {
    let mut run = echo_run(peer, 2000.0, rep, 100.0, 0.5);
    run["case"] = serde_json::json!("paced");
    run["kind"] = serde_json::json!("paced");
    let (user, kernel) = split.unzip();
    run["report"]["sut"] = serde_json::json!({"pids": [1], "cpu_s": 1.0, "cpu_util": 0.4,
        "cpu_us_per_frame": total, "cpu_us_per_mb": null, "rss_before_kib": 1,
        "rss_loaded_kib": null, "kib_per_session": null,
        "window": {"seconds": 4.0, "frames": 1000, "cpu_s": total * 1e-3,
            "cpu_us_per_frame": total, "syscalls_per_frame": null, "threads": [],
            "user_us_per_frame": user, "kernel_us_per_frame": kernel}});
    run
}

/// `run` with its load core (generator and mock) having spent `us_per_frame` CPU µs per
/// frame received, over 1,000 frames; 0 records no load-core CPU at all.
pub(crate) fn with_load(mut run: serde_json::Value, us_per_frame: f64) -> serde_json::Value {
    run["report"]["counts"]["frames_received"] = serde_json::json!(1000);
    run["report"]["load_cpu_s"] = serde_json::json!(us_per_frame * 1000.0 * 1e-6);
    run
}

/// `run` with host steal recorded: this fraction of the run on the relay core (CPU 0)
/// and on the load core (CPU 1).
pub(crate) fn with_steal(mut run: serde_json::Value, relay: f64, load: f64) -> serde_json::Value {
    run["report"]["host_steal"] = serde_json::json!([relay, load]);
    run
}

pub(crate) fn result(samples: Vec<serde_json::Value>) -> BenchResult {
    serde_json::from_value(serde_json::json!({"command": "test", "tls": "none",
        "machine": {"nproc": 2, "cpu_model": "x", "kernel": "x", "nofile": [1, 1],
            "glibc_tunables": "(unset)", "cpuidle": "none"},
        "versions": [], "pinning": "x", "reps": 1, "sweep_reps": 1,
        "sweep_rates": [2000.0, 16000.0, 32000.0], "installs": [], "elapsed_s": 1.0,
        "samples": samples}))
    .expect("a BenchResult")
}

/// The first line of `md` that starts with `prefix` (a test fails naming it when none does).
pub(crate) fn line<'a>(md: &'a str, prefix: &str) -> &'a str {
    md.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix} in\n{md}"))
}
