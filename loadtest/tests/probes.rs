//! The measurement window's perf probes through the real relay: the hop trace, the
//! syscall count and the user/kernel sampler, and a window that runs none of them.

use std::time::Duration;

use tollgate_loadtest::bench::peers::{Peer, RunningPeer};
use tollgate_loadtest::gen::window::WindowReport;
use tollgate_loadtest::gen::{self, Probes, RunConfig, Workload};

mod common;
use common::{echo_mock, plain_env, quick};

/// Whether `perf record` of a tracepoint works here (installed, allowed).
fn perf_can_trace() -> bool {
    let out = std::env::temp_dir().join(format!("loadtest-perf-probe-{}", std::process::id()));
    let ok = std::process::Command::new("perf")
        .args(["record", "-q", "-a", "-e", "sched:sched_switch", "-o"])
        .arg(&out)
        .args(["--", "true"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let _ = std::fs::remove_file(&out);
    ok
}

/// Echo runs through one relay of this build (an echoing mock behind it), each 2 s at
/// 2,000 frames/s with `probes` over its window; `f` gets a function that makes one run
/// and returns its window. The relay stops and its directory goes once `f` returns.
fn with_echo_relay<T>(tag: &str, f: impl FnOnce(&dyn Fn(Probes) -> WindowReport) -> T) -> T {
    let dir = std::env::temp_dir().join(format!("loadtest-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mock = echo_mock();
    let relay = RunningPeer::start(Peer::Tollgate, &plain_env(&dir), mock.addr, &dir).unwrap();
    let run = |probes: Probes| {
        let cfg = RunConfig {
            key: Some("k-test-1".into()),
            rate: Some(2_000.0),
            frame_bytes: 200,
            duration: Duration::from_secs(2),
            sut_pids: relay.pids(),
            probes,
            ..quick(Workload::Echo, relay.url.clone())
        };
        let r = gen::run(&cfg).unwrap();
        assert_eq!(r.counts.errors, 0, "{:?}", r.error_samples);
        r.sut.and_then(|s| s.window).expect("window")
    };
    let out = f(&run);
    relay.stop();
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// The bench's hop case end to end: an echo through the real relay with the relay's hop
/// traced. Where perf can trace, every wake-up of the relay's worker that forwarded an
/// echo is counted; where it cannot, the hop is not reported at all (never a guess).
#[test]
fn the_relays_hop_is_traced_over_an_echo_run() {
    let window = with_echo_relay("gen-hop", |run| run(Probes::Hops));
    if !perf_can_trace() {
        assert_eq!(window.hops, None);
        eprintln!("perf cannot trace here: the hop is not reported, as it should");
        return;
    }
    let h = window.hops.as_ref().expect("hop traced");
    // ~2,000 echoes/s cross the relay twice each over a window of ~1.3 s: thousands of
    // wake-ups forward a frame (a wake-up may forward several).
    eprintln!("{h:?}");
    assert!(h.wakeups > 500, "{h:?}");
    assert!(h.frames_per_wakeup >= 1.0, "{h:?}");
    assert!(
        h.p50_us > 0.0 && h.p50_us <= h.p90_us && h.p90_us < 5_000.0,
        "{h:?}"
    );
}

/// Whether `perf stat` can count the syscalls tracepoint here (installed, allowed).
fn perf_can_count() -> bool {
    std::process::Command::new("perf")
        .args([
            "stat",
            "-x",
            ",",
            "-e",
            "raw_syscalls:sys_enter",
            "--",
            "true",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The latency cases run no perf over their window (its processes took the load core from
/// the generator): an echo run with `Probes::None` still reads the relay's CPU from /proc
/// but has no syscall count and no user/kernel split, while the same run with
/// `Probes::Split` has both wherever perf can count.
#[test]
fn a_window_without_probes_runs_no_perf_and_still_reads_the_cpu() {
    let (quiet, split) =
        with_echo_relay("gen-probes", |run| (run(Probes::None), run(Probes::Split)));
    assert!(quiet.frames > 1_000, "{quiet:?}");
    assert!(quiet.cpu_us_per_frame.is_some(), "{quiet:?}");
    assert_eq!(
        (
            quiet.syscalls_per_frame,
            quiet.user_us_per_frame,
            quiet.kernel_us_per_frame
        ),
        (None, None, None),
        "{quiet:?}"
    );
    if !perf_can_count() {
        eprintln!("perf cannot count here: neither run has a syscall count");
        assert_eq!(split.syscalls_per_frame, None);
        return;
    }
    assert!(
        split.syscalls_per_frame.is_some_and(|n| n > 0.0),
        "{split:?}"
    );
}
