//! Process lifecycle: SIGTERM drains, SIGHUP reloads keys, idle sessions time out.
mod common;

use common::*;
use std::io::BufRead;
use std::time::{Duration, Instant};
use tollgate::metering::{read_log, RecordStatus};
use tollgate_loadtest::client::{connect, ClientOpts, ConnectError, Message};
use tollgate_loadtest::mock::{MockConfig, MockUpstream};

fn opts(key: &str) -> ClientOpts {
    ClientOpts {
        headers: vec![("Authorization".into(), format!("Bearer {key}"))],
        recv_timeout: Some(Duration::from_secs(20)),
        ..ClientOpts::default()
    }
}

struct Proc {
    child: std::process::Child,
    addr: String,
    /// Everything the relay logged (stderr), collected in the background.
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

/// A relay a test left running (it failed before stopping it) is killed, so it does not
/// outlive the test holding its ports and the test runner's output pipe.
impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn_relay(
    upstream: &str,
    keys: &std::path::Path,
    log: &std::path::Path,
    extra: &[&str],
) -> Proc {
    spawn_relay_env(upstream, keys, log, extra, &[])
}

/// [`spawn_relay`] with these environment variables set for the relay.
fn spawn_relay_env(
    upstream: &str,
    keys: &std::path::Path,
    log: &std::path::Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Proc {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--upstream",
            upstream,
            "--client-keys",
            keys.to_str().unwrap(),
            "--usage-log",
            log.to_str().unwrap(),
            "--upstream-header",
            "Authorization: Bearer sk-provider-must-not-be-logged",
        ])
        .args(extra)
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut addr = None;
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.lock().unwrap().push_str(&line);
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
    Proc {
        log,
        child,
        addr: addr.expect("relay logged its address"),
    }
}

fn signal(p: &Proc, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(p.child.id() as i32, sig);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_responses_finish_and_exits_0() {
    let mock = MockUpstream::start(MockConfig {
        token_rate: Some(20.0),
        deltas: 10,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("acme {RELAY_KEY}\n")).unwrap();
    let log = dir.path().join("usage.jsonl");
    let mut p = spawn_relay(&mock.url(), &keys, &log, &["--drain-timeout", "10s"]);
    let mut busy = connect(&format!("ws://{}/v1/responses", p.addr), opts(RELAY_KEY))
        .await
        .unwrap();
    let mut idle = connect(&format!("ws://{}/v1/responses", p.addr), opts(RELAY_KEY))
        .await
        .unwrap();
    busy.send_text(r#"{"type":"response.create","model":"gpt-5","input":"long"}"#)
        .await
        .unwrap();
    // Wait for the response to be under way, then SIGTERM.
    loop {
        if let Message::Text(t) = busy.recv().await.unwrap() {
            if t.contains("output_text.delta") {
                break;
            }
        }
    }
    let t0 = Instant::now();
    signal(&p, libc::SIGTERM);
    // The in-flight response completes…
    let (close, texts) = recv_until_close(&mut busy).await;
    assert!(
        texts.iter().any(|t| t.contains("\"response.completed\"")),
        "the in-flight response finished before the close"
    );
    assert_eq!(close, Some(1001));
    // …the idle session is closed 1001 without waiting for the deadline…
    assert_eq!(recv_until_close(&mut idle).await.0, Some(1001));
    // …new connections are refused, and the process exits 0 with the log synced.
    let status = p.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "drained in {:?}",
        t0.elapsed()
    );
    assert!(
        connect(&format!("ws://{}/v1/responses", p.addr), opts(RELAY_KEY))
            .await
            .is_err()
    );
    let recs = read_log(&log).unwrap().records;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].status, RecordStatus::Completed);
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_client_keys_without_dropping_sessions() {
    let mock = echo_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("acme {RELAY_KEY}\n")).unwrap();
    let mut p = spawn_relay(&mock.url(), &keys, &dir.path().join("u.jsonl"), &[]);
    let url = format!("ws://{}/v1/responses", p.addr);
    let mut old = connect(&url, opts(RELAY_KEY)).await.unwrap();
    // Rotate: the old key goes, a new one (stored as a sha256 digest) arrives.
    let new_key = "tg-rotated-key-2";
    let digest = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(new_key.as_bytes());
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    std::fs::write(&keys, format!("acme sha256:{digest}\n")).unwrap();
    signal(&p, libc::SIGHUP);
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if connect(&url, opts(new_key)).await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok, "new key accepted after SIGHUP");
    match connect(&url, opts(RELAY_KEY)).await {
        Err(ConnectError::Refused { status, .. }) => assert_eq!(status, 401),
        other => panic!("old key must be refused: {:?}", other.is_ok()),
    }
    // The session opened with the old key is still alive.
    old.send_text("still here").await.unwrap();
    assert_eq!(
        old.recv().await.unwrap(),
        Message::Text("still here".into())
    );
    signal(&p, libc::SIGTERM);
    assert_eq!(p.child.wait().unwrap().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_sessions_are_closed_1001() {
    let mock = echo_mock().await;
    for driver in DRIVERS {
        let relay = start_relay(driver, &mock.url(), &["--idle-timeout", "300ms"]);
        let mut c = connect(
            &format!("ws://{}/v1/responses", relay.addr),
            opts(RELAY_KEY),
        )
        .await
        .unwrap();
        let t0 = Instant::now();
        assert_eq!(
            recv_until_close(&mut c).await.0,
            Some(1001),
            "driver {driver}"
        );
        assert!(
            t0.elapsed() >= Duration::from_millis(250) && t0.elapsed() < Duration::from_secs(3),
            "{:?}",
            t0.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_key_reaches_a_log_line_even_at_trace_level() {
    let mock = MockUpstream::start(MockConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("acme {RELAY_KEY}\n")).unwrap();
    let mut p = spawn_relay(
        &mock.url(),
        &keys,
        &dir.path().join("u.jsonl"),
        &["--log", "trace"],
    );
    let url = format!("ws://{}/v1/responses", p.addr);
    let mut c = connect(&url, opts(RELAY_KEY)).await.unwrap();
    c.turn(r#"{"type":"response.create","model":"gpt-5","input":"hi"}"#)
        .await
        .unwrap();
    c.close(1000, "").await.unwrap();
    let _ = connect(&url, opts("tg-wrong-key-also-secret")).await;
    signal(&p, libc::SIGTERM);
    assert_eq!(p.child.wait().unwrap().code(), Some(0));
    std::thread::sleep(Duration::from_millis(100));
    let log = p.log.lock().unwrap().clone();
    assert!(
        log.contains("session closed"),
        "the session line is there: {log}"
    );
    for secret in [
        RELAY_KEY,
        "sk-provider-must-not-be-logged",
        "tg-wrong-key-also-secret",
    ] {
        assert!(!log.contains(secret), "{secret} leaked into the log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_swaps_the_listener_certificate_for_new_connections() {
    let mock = echo_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let old = tollgate_loadtest::tls::test_tls().unwrap();
    let (cert, key, _) = old.write_to(dir.path()).unwrap();
    let relay = start_relay(
        "auto",
        &mock.url(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let url = format!("wss://localhost:{}/v1/responses", relay.addr.port());
    let with_ca = |ca: &str| ClientOpts {
        tls_ca_pem: Some(ca.as_bytes().to_vec()),
        ..opts(RELAY_KEY)
    };
    let mut kept = connect(&url, with_ca(&old.ca_pem))
        .await
        .expect("old certificate serves");
    // Renew: a certificate from another CA lands in the same files; SIGHUP's reload.
    let new = tollgate_loadtest::tls::test_tls().unwrap();
    new.write_to(dir.path()).unwrap();
    relay.relay().reload().expect("reload");
    connect(&url, with_ca(&new.ca_pem))
        .await
        .expect("new certificate serves new connections");
    assert!(
        connect(&url, with_ca(&old.ca_pem)).await.is_err(),
        "the old certificate is gone"
    );
    // The session opened before the reload still works.
    kept.send_text("still here").await.unwrap();
    assert_eq!(
        kept.recv().await.unwrap(),
        Message::Text("still here".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn max_connection_age_waits_for_the_response_in_flight_then_closes_1001() {
    // Five deltas at 5/s: the response outlives the 300 ms age limit.
    let mock = MockUpstream::start(MockConfig {
        token_rate: Some(5.0),
        deltas: 5,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let relay = start_relay("auto", &mock.url(), &["--max-connection-age", "300ms"]);
    let mut c = connect(
        &format!("ws://{}/v1/responses", relay.addr),
        opts(RELAY_KEY),
    )
    .await
    .unwrap();
    c.send_text(r#"{"type":"response.create","model":"gpt-5","input":"hi"}"#)
        .await
        .unwrap();
    let (code, texts) = recv_until_close(&mut c).await;
    assert!(
        texts.iter().any(|t| t.contains("\"response.completed\"")),
        "finished first: {texts:?}"
    );
    assert_eq!(code, Some(1001));
}

/// `THP_enabled` from `/proc/PID/status`: whether the kernel may back this process's
/// memory with transparent huge pages (0 after `PR_SET_THP_DISABLE`).
fn thp_enabled(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(|v| v.trim().to_string())
        .expect("THP_enabled in /proc/PID/status")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_heap_stays_off_transparent_huge_pages_unless_allowed() {
    let mock = echo_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("acme {RELAY_KEY}\n")).unwrap();
    let allow = &["--huge-pages", "allow"][..];
    // Each case: flags, environment, THP_enabled, and what the start-up log says. mimalloc
    // turns THP off itself under MIMALLOC_ALLOW_THP=0; the log reports what the kernel
    // says the process runs with, not what the flag asked for.
    let no_thp_env = &[("MIMALLOC_ALLOW_THP", "0")][..];
    for (extra, env, enabled, logged) in [
        (&[][..], &[][..], "0", "huge_pages=off"),
        (allow, &[][..], "1", "huge_pages=allowed"),
        (allow, no_thp_env, "0", "huge_pages=off"),
    ] {
        let u = dir.path().join("u.jsonl");
        let mut p = spawn_relay_env(&mock.url(), &keys, &u, extra, env);
        // A session through it, so the workers have allocated under the policy.
        let mut c = connect(&format!("ws://{}/v1/responses", p.addr), opts(RELAY_KEY))
            .await
            .unwrap();
        c.send_text("ping").await.unwrap();
        assert_eq!(c.recv().await.unwrap(), Message::Text("ping".into()));
        assert_eq!(thp_enabled(p.child.id()), enabled, "{extra:?} {env:?}");
        assert!(
            p.log.lock().unwrap().contains(logged),
            "start-up log names the choice ({logged}): {}",
            p.log.lock().unwrap()
        );
        signal(&p, libc::SIGTERM);
        assert_eq!(p.child.wait().unwrap().code(), Some(0));
    }
}
