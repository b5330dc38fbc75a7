//! The generator hosted on the mock's event loop (the bench's latency sweep).
//!
//! A test binary of its own: it tells where the generator ran by this process's thread
//! names, which the other generator tests (`gen.rs`, run in parallel) would share.

use std::time::Duration;

use tollgate_loadtest::gen::{self, RunConfig, Workload};

mod common;
use common::{assert_every_echo_back, echo_mock};

/// Names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|c| c.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn echo_hosted_on_the_mocks_event_loop_gets_every_frame_back_without_a_thread_of_its_own() {
    let mock = echo_mock();
    // Two generator threads: the first runs on the mock's loop, the second on its own.
    let cfg = RunConfig {
        rate: Some(2000.0),
        host: Some(mock.event_loop.clone()),
        target: mock.url(),
        workload: Workload::Echo,
        sessions: 4,
        threads: 2,
        progress: false,
        duration: Duration::from_millis(600),
        ..RunConfig::default()
    };
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (seen, done) = (seen.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(mut s) = seen.lock() {
                    s.extend(thread_names().into_iter().filter(|n| n.starts_with("gen-")));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let r = gen::run(&cfg).unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap();
    assert_every_echo_back(&r);
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains("gen-1"),
        "the watcher saw the second thread: {seen:?}"
    );
    assert!(
        !seen.contains("gen-0"),
        "the first ran on the mock's loop: {seen:?}"
    );

    // Once the mock (and its loop) has stopped, a run handed to it fails at once.
    let handle = mock.event_loop.clone();
    mock.stop();
    let err = gen::run(&RunConfig {
        host: Some(handle),
        threads: 1,
        ..cfg
    })
    .unwrap_err();
    assert!(err.to_string().contains("stopped"), "{err}");
}
