//! The load generator, the bench plumbing and the demo, end to end on loopback.

use std::time::{Duration, Instant};

use tollgate_loadtest::bench::host::MockHost;
use tollgate_loadtest::bench::peers::{Peer, PeerEnv, RunningPeer};
use tollgate_loadtest::bench::usage;
use tollgate_loadtest::gen::{self, Report, RunConfig, Workload};
use tollgate_loadtest::mock::MockConfig;

mod common;
use common::{assert_every_echo_back, debug_tollgate, echo_mock, plain_env, quick, sibling_bin};

/// A mock answering every create with `deltas` deltas and keeping its ledger at `ledger`,
/// and this build's relay in front of it, its files in `dir`.
fn metered_relay(
    dir: &std::path::Path,
    deltas: usize,
    ledger: &std::path::Path,
) -> (MockHost, RunningPeer) {
    let mock = MockHost::start(MockConfig {
        deltas,
        record: false,
        ledger_path: Some(ledger.to_path_buf()),
        ..MockConfig::default()
    })
    .unwrap();
    let relay = RunningPeer::start(Peer::Tollgate, &plain_env(dir), mock.addr, dir).unwrap();
    (mock, relay)
}

/// The mock counts a batch after its write returns, which can be just after the
/// client has read it: wait (bounded) for the count to catch up.
fn mock_frames(mock: &MockHost, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(2);
    while mock.counters.frames_sent() < at_least && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    mock.counters.frames_sent()
}

#[test]
fn stream_report_counts_exactly_what_the_mock_sent() {
    let mock = MockHost::start(MockConfig {
        deltas: 5,
        record: false,
        ..MockConfig::default()
    })
    .unwrap();
    let cfg = RunConfig {
        turns: Some(3),
        ..quick(Workload::Stream, mock.url())
    };
    let r = gen::run(&cfg).unwrap();
    assert_eq!(r.counts.errors, 0, "{:?}", r.error_samples);
    assert_eq!(r.counts.completed, 12);
    assert_eq!(r.counts.frames_sent, 12);
    // 4 lifecycle + 5 deltas + 3 done + terminal = 13 events per turn.
    assert_eq!(r.counts.frames_received, 12 * 13);
    assert_eq!(mock_frames(&mock, 156), r.counts.frames_received);
    assert_eq!(r.counts.sessions, 4);
    for m in ["connect", "first_delta", "inter_delta", "turn"] {
        let l = &r.latency[m];
        assert!(
            l.count > 0 && l.p50_us > 0.0 && l.p50_us <= l.p99_us && l.p99_us <= l.max_us,
            "{m}: {l:?}"
        );
    }
    assert_eq!(r.latency["first_delta"].count, 12);
    assert!(r.frames_per_s > 0.0 && r.load_cpu_s >= 0.0);
    // Host steal: a share of the run per online CPU (at least the CPUs this process may use).
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let steal = &r.host_steal;
    assert!(
        steal.len() >= cpus && steal.iter().all(|f| (0.0..=1.0).contains(f)),
        "{steal:?}"
    );
    // The JSON report carries the same numbers.
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(v["counts"]["frames_received"], 156);
    assert_eq!(v["workload"], "stream");
    let back: Report = serde_json::from_value(v).unwrap();
    assert_eq!(back.counts, r.counts);
    assert!(r.hgrm.contains("# first_delta"));
    assert!(r.markdown().contains("| first_delta | 12 |"));
    assert!(
        r.markdown().contains("| host steal | CPU 0 "),
        "{}",
        r.markdown()
    );
}

#[test]
fn open_loop_echo_gets_every_frame_back_and_reports_the_rate() {
    let mock = echo_mock();
    let cfg = RunConfig {
        rate: Some(2000.0),
        ..quick(Workload::Echo, mock.url())
    };
    let r = gen::run(&cfg).unwrap();
    assert_every_echo_back(&r);
    assert_eq!(
        mock_frames(&mock, r.counts.frames_sent),
        r.counts.frames_received
    );
    assert!(r.achieved_rate > 1000.0, "{}", r.achieved_rate);
}

#[test]
fn bad_configurations_are_rejected_before_any_connection() {
    let bad = RunConfig {
        sessions: 0,
        ..RunConfig::default()
    };
    assert!(matches!(gen::run(&bad), Err(gen::GenError::Config(_))));
    let bad = RunConfig {
        target: "http://x".into(),
        ..RunConfig::default()
    };
    assert!(matches!(
        gen::run(&bad),
        Err(gen::GenError::InvalidTarget { .. })
    ));
}

#[test]
fn refused_upgrades_are_counted_as_errors() {
    let mock = MockHost::start(MockConfig {
        refuse: Some(tollgate_loadtest::mock::Refusal::new(503)),
        record: false,
        ..MockConfig::default()
    })
    .unwrap();
    let r = gen::run(&RunConfig {
        turns: Some(1),
        ..quick(Workload::Stream, mock.url())
    })
    .unwrap();
    assert_eq!((r.counts.sessions, r.counts.errors), (0, 4));
    assert!(r.error_samples[0].contains("503"), "{:?}", r.error_samples);
}

#[test]
fn stream_through_the_real_relay_is_metered_exactly() {
    let dir = std::env::temp_dir().join(format!("loadtest-gen-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ledger = dir.join("ledger.jsonl");
    let (mock, relay) = metered_relay(&dir, 5, &ledger);
    let cfg = RunConfig {
        key: Some("k-test-1".into()),
        turns: Some(3),
        sut_pids: relay.pids(),
        ..quick(Workload::Stream, relay.url.clone())
    };
    let r = gen::run(&cfg).unwrap();
    let log = relay.usage_log.clone().unwrap();
    relay.stop();
    assert_eq!(r.counts.errors, 0, "{:?}", r.error_samples);
    assert_eq!(r.counts.frames_received, 12 * 13);
    assert_eq!(mock_frames(&mock, 156), r.counts.frames_received);
    let sut = r.sut.as_ref().expect("sut section");
    // CPU is counted in 10 ms clock ticks, so a short run may read 0: check shape.
    assert!(
        sut.cpu_s >= 0.0 && sut.cpu_us_per_frame.is_some() && sut.rss_before_kib > 0,
        "{sut:?}"
    );
    let check = usage::compare_files(&log, &ledger).unwrap();
    assert_eq!(
        (check.ledger, check.matched, check.accuracy()),
        (12, 12, 1.0),
        "{check:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_exits_zero_with_matching_usage() {
    let tollgate = debug_tollgate();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["demo", "--tollgate"])
        .arg(&tollgate)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("usage accuracy: 5/5 records match"), "{text}");
    assert!(text.contains("[agent_b] response.completed"), "{text}");
}

/// Runs `loadtest demo` against this build's relay with `extra` flags.
fn demo(extra: &[&str]) -> (std::process::ExitStatus, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["demo", "--tollgate"])
        .arg(debug_tollgate())
        .args(extra)
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn demo_exits_non_zero_when_usage_records_disagree_with_the_ledger() {
    // In tunnel mode the relay forwards every frame but meters nothing: the conversation
    // works, the usage log stays empty, and every ledger entry is "missing".
    let (status, out, err) = demo(&["--relay-arg=--tunnel"]);
    assert_eq!(status.code(), Some(1), "{out}\n{err}");
    assert!(out.contains("[agent_b] response.completed"), "{out}");
    assert!(out.contains("missing"), "{out}");
    assert!(out.contains("usage accuracy: 0/5 records match"), "{out}");
    assert!(err.contains("do not match the mock's ledger"), "{err}");
}

#[test]
fn demo_exits_non_zero_when_a_step_of_the_transcript_fails() {
    // The mock drops the TCP connection after two deltas of a response: the relay tells
    // the client (error event, close 1011) and the demo names the step that failed.
    let (status, out, err) = demo(&["--mock-fault", "abort-fin:2"]);
    assert_eq!(status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("loadtest demo: turn"), "{err}");
    assert!(err.contains("1011"), "{err}");
    assert!(!out.contains("usage accuracy"), "{out}");
}

#[test]
fn demo_without_a_relay_binary_says_how_to_build_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["demo", "--tollgate", "/nonexistent/tollgate"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cargo build --release"));
}

#[test]
fn split_samples_prints_each_processes_user_and_kernel_samples() {
    use std::io::Write;
    // What `scripts/cpu-split.sh` pipes in: `perf script -F pid,ip`, plus a line perf
    // prints that is not a sample.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .arg("split-samples")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b" 900  ffffffff8225f8ab\n 77 55d0c2a81234\nWarning: lost samples\n \
              900 7f3a1c2b3c4d\n 900 ffffffff81000000\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "77 1 0\n900 1 2\n");
}

/// The bench's TLS shape end to end: generator → `wss://` relay → `wss://` mock, with
/// certificates generated for the run; every response metered exactly.
#[test]
fn stream_over_tls_on_both_legs_is_metered_exactly() {
    use tollgate_loadtest::bench::peers::{TlsFiles, TlsMode};
    let tollgate = debug_tollgate();
    let dir = std::env::temp_dir().join(format!("loadtest-gen-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.join("keys");
    std::fs::write(&keys, "bench k-test-1\n").unwrap();
    let files = TlsFiles::generate(&dir).unwrap();
    let ledger = dir.join("ledger.jsonl");
    let mock = MockHost::start(MockConfig {
        deltas: 5,
        record: false,
        ledger_path: Some(ledger.clone()),
        tls: Some(
            tollgate_loadtest::tls::server_config_from_files(&files.cert, &files.key).unwrap(),
        ),
        ..MockConfig::default()
    })
    .unwrap();
    let ca = std::fs::read(&files.ca).unwrap();
    let env = PeerEnv {
        tls: TlsMode::Both,
        tls_files: Some(files),
        tollgate,
        keys_file: keys,
        sut_cpu: None,
    };
    let relay = RunningPeer::start(Peer::Tollgate, &env, mock.addr, &dir).unwrap();
    assert!(relay.url.starts_with("wss://"), "{}", relay.url);
    let cfg = RunConfig {
        key: Some("k-test-1".into()),
        turns: Some(3),
        tls_ca_pem: Some(ca),
        ..quick(Workload::Stream, relay.url.clone())
    };
    let r = gen::run(&cfg).unwrap();
    let log = relay.usage_log.clone().unwrap();
    relay.stop();
    assert_eq!(r.counts.errors, 0, "{:?}", r.error_samples);
    assert_eq!(r.counts.frames_received, 12 * 13);
    let check = usage::compare_files(&log, &ledger).unwrap();
    assert_eq!(
        (check.ledger, check.matched, check.accuracy()),
        (12, 12, 1.0),
        "{check:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The bench's floor peer (`tollgate-floor`, a minimal io_uring byte tunnel) carries
/// every byte both ways: the stream workload through it sees exactly what the mock sent.
#[test]
fn the_floor_tunnel_carries_every_frame() {
    let _floor = sibling_bin("tollgate-floor");
    let dir = std::env::temp_dir().join(format!("loadtest-gen-floor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mock = MockHost::start(MockConfig {
        deltas: 5,
        record: false,
        ..MockConfig::default()
    })
    .unwrap();
    let floor = RunningPeer::start(Peer::Floor, &plain_env(&dir), mock.addr, &dir).unwrap();
    let r = gen::run(&RunConfig {
        turns: Some(3),
        ..quick(Workload::Stream, floor.url.clone())
    })
    .unwrap();
    floor.stop();
    assert_eq!(r.counts.errors, 0, "{:?}", r.error_samples);
    assert_eq!(r.counts.frames_received, 12 * 13);
    assert_eq!(mock_frames(&mock, 156), r.counts.frames_received);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn idle_sessions_complete_their_turns_after_a_warm_up_before_the_memory_sample() {
    let dir = std::env::temp_dir().join(format!("loadtest-idle-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for idle_turns in [1u64, 0] {
        let ledger = dir.join(format!("ledger-{idle_turns}.jsonl"));
        let (_mock, relay) = metered_relay(&dir, 3, &ledger);
        let cfg = RunConfig {
            key: Some("k-test-1".into()),
            sut_pids: relay.pids(),
            ping_interval: Duration::from_millis(50),
            idle_turns,
            ..quick(Workload::Idle, relay.url.clone())
        };
        let r = gen::run(&cfg).unwrap();
        let log = relay.usage_log.clone().unwrap();
        relay.stop();
        assert_eq!(r.counts.errors, 0, "{:?}", r.error_samples);
        assert!(r.counts.completed > 0, "pings answered: {:?}", r.counts);
        let sut = r.sut.as_ref().expect("sut section");
        assert!(sut.rss_loaded_kib.is_some(), "{sut:?}");
        // Each of the 4 sessions completed its turn, after the warm-up's 4 sessions (as
        // many as the run opens at once, at most --sessions) completed theirs.
        let want = 8 * idle_turns as usize;
        let check = usage::compare_files(&log, &ledger).unwrap();
        assert_eq!(
            (check.ledger, check.matched),
            (want, want),
            "idle_turns {idle_turns}: {check:?}"
        );
        assert_eq!(
            r.counts.frames_received > 0,
            idle_turns > 0,
            "the turns' frames are counted: {:?}",
            r.counts
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
