//! Capacity and churn through the relay as a process: idle sessions at this machine's fd
//! limit, 1k sessions/s of churn, slowloris, ping floods, and the epoll fallback.
mod common;

use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_loadtest::client::{connect, ClientOpts};
use tollgate_loadtest::mock::{MockConfig, MockUpstream};

/// The load tests here run one at a time: on a 2-core machine two of them at once would
/// measure each other.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn opts() -> ClientOpts {
    ClientOpts {
        headers: vec![("Authorization".into(), format!("Bearer {RELAY_KEY}"))],
        recv_timeout: Some(Duration::from_secs(30)),
        ..ClientOpts::default()
    }
}

/// Raise this process's open-file soft limit to the hard limit (20,000 here).
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

/// Connect and upgrade over a raw socket; returns the stream positioned after the 101.
async fn raw_upgrade(addr: &str) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(upgrade_request("/v1/responses", &auth_line()).as_bytes())
        .await?;
    let mut head = Vec::with_capacity(256);
    let mut b = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut b).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&b[..n]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&head).to_string(),
        ));
    }
    Ok(s)
}

/// Send a ping with `payload` and read frames until its pong.
async fn ping(s: &mut TcpStream, payload: &[u8]) -> Duration {
    let t = Instant::now();
    s.write_all(&client_frame(true, 9, payload, Some([1, 2, 3, 4])))
        .await
        .unwrap();
    let mut h = [0u8; 2];
    loop {
        s.read_exact(&mut h).await.unwrap();
        let len = usize::from(h[1] & 0x7f);
        let mut p = vec![0u8; len];
        s.read_exact(&mut p).await.unwrap();
        if h[0] & 0x0f == 10 && p == payload {
            return t.elapsed();
        }
    }
}

/// How many idle sessions one relay process can hold here: each takes two sockets in the
/// relay (client, upstream) and one in this test process for each end, under a 20,000-file
/// limit per process.
const IDLE_SESSIONS: usize = 9_000;

#[tokio::test(flavor = "multi_thread")]
async fn nine_thousand_idle_sessions_cost_little_memory_and_no_cpu() {
    let _one_at_a_time = HEAVY.lock().await;
    let limit = raise_nofile();
    assert!(
        limit >= 2 * IDLE_SESSIONS as u64 + 100,
        "open-file limit {limit}"
    );
    let mock = MockUpstream::start(MockConfig {
        echo: true,
        record: false,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    for driver in DRIVERS {
        let p = RelayProcess::start(driver, &mock.url(), "", &["--max-sessions", "10000"]);
        let rss0 = p.rss_kib();
        let mut sessions = Vec::with_capacity(IDLE_SESSIONS);
        let mut pending = Vec::new();
        for _ in 0..IDLE_SESSIONS {
            let addr = p.addr.clone();
            pending.push(tokio::spawn(async move { raw_upgrade(&addr).await }));
            if pending.len() == 200 {
                for h in pending.drain(..) {
                    sessions.push(h.await.unwrap().expect("upgrade"));
                }
            }
        }
        for h in pending {
            sessions.push(h.await.unwrap().expect("upgrade"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss1 = p.rss_kib();
        let per_session = (rss1.saturating_sub(rss0)) as f64 / IDLE_SESSIONS as f64;
        // CPU while idle, over 5 s.
        let c0 = p.cpu_ticks();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let cpu_ms = (p.cpu_ticks() - c0) * 10;
        // They all still answer: ping a sample.
        let mut rtts = Vec::new();
        for s in sessions.iter_mut().step_by(IDLE_SESSIONS / 100) {
            rtts.push(ping(s, b"idle?").await);
        }
        rtts.sort_unstable();
        let p99 = rtts[rtts.len() * 99 / 100];
        println!(
            "{driver}: {IDLE_SESSIONS} idle sessions: relay RSS +{} KiB = {per_session:.1} KiB/session; \
             CPU over 5 s idle {cpu_ms} ms; ping p99 {p99:?} ({} sampled); relay fds {}",
            rss1 - rss0,
            rtts.len(),
            p.fds()
        );
        assert!(
            per_session < 32.0,
            "{driver}: {per_session:.1} KiB per idle session"
        );
        assert!(cpu_ms <= 100, "{driver}: {cpu_ms} ms of CPU over 5 s idle");
        assert!(
            p99 < Duration::from_millis(100),
            "{driver}: ping p99 {p99:?}"
        );
        drop(sessions);
    }
}

/// The relay's RSS once quiet: the least of samples every 250 ms over 3 s. Single samples
/// move by a few MB without a trend (a 60 s churn sampled every 15 s: 32.8, 32.1, 31.9,
/// 36.0 MB on the async adapter); memory a leak holds is in every sample.
async fn settled_rss(p: &RelayProcess) -> u64 {
    let mut least = u64::MAX;
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        least = least.min(p.rss_kib());
    }
    least
}

/// Most churn sessions in flight at once. The churn offers 1,000 sessions a second, open
/// loop; on a machine (or a debug build) that cannot keep up, unbounded, the sessions
/// waiting for the relay would pile up and the relay's memory would measure that backlog,
/// not what its sessions leave behind. With the cap, the peak concurrency is the same
/// however fast the machine is, and the warm-up reaches it first.
const CHURN_IN_FLIGHT: usize = 64;

/// One churn session: connect, upgrade, one turn, close; `true` when its turn completed.
async fn churn_session(url: String) -> bool {
    let Ok(mut c) = connect(&url, opts()).await else {
        return false;
    };
    let ok = c
        .turn(r#"{"type":"response.create","model":"m","input":"x"}"#)
        .await
        .is_ok();
    let _ = c.close(1000, "").await;
    ok
}

/// Up to 1,000 sessions a second (at most [`CHURN_IN_FLIGHT`] at once) for at least `least`
/// and until `want` have completed their turn, but no longer than `cap`: connect, upgrade,
/// one turn, close. Returns how many completed their turn.
async fn churn(url: &str, least: Duration, want: u64, cap: Duration) -> u64 {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut tasks = Vec::new();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let more = |elapsed: Duration, done: u64| elapsed < cap && (elapsed < least || done < want);
    while more(
        started.elapsed(),
        done.load(std::sync::atomic::Ordering::Relaxed),
    ) {
        tick.tick().await;
        tasks.retain(|t: &tokio::task::JoinHandle<()>| !t.is_finished());
        for _ in 0..10.min(CHURN_IN_FLIGHT.saturating_sub(tasks.len())) {
            let (url, done) = (url.to_string(), done.clone());
            tasks.push(tokio::spawn(async move {
                if churn_session(url).await {
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    done.load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread")]
async fn churn_returns_fds_memory_and_the_active_gauge_to_baseline() {
    let _one_at_a_time = HEAVY.lock().await;
    raise_nofile();
    let secs: u64 = std::env::var("TOLLGATE_CHURN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mock = MockUpstream::start(MockConfig {
        deltas: 2,
        record: false,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    for driver in DRIVERS {
        let p = RelayProcess::start(driver, &mock.url(), "", &["--admin-listen", "127.0.0.1:0"]);
        let admin: std::net::SocketAddr = p.admin.as_deref().unwrap().parse().unwrap();
        // Warm up: the churn's peak concurrency at once, then 5 s of the same churn
        // (allocator arenas reach the high-water mark of this concurrency); then take the
        // baseline.
        let burst: Vec<_> = (0..CHURN_IN_FLIGHT)
            .map(|_| tokio::spawn(churn_session(p.url())))
            .collect();
        for t in burst {
            let _ = t.await;
        }
        let warm = Duration::from_secs(5);
        churn(&p.url(), warm, 0, warm).await;
        let rss0 = settled_rss(&p).await;
        let fds0 = p.fds();
        // Two equal halves, RSS settled after each (lingering closes end within 2 s of each
        // session): memory a leak holds grows in both halves; a one-off rise of the
        // allocator's high-water mark (a moment of more sessions in the relay than the
        // warm-up reached, e.g. closes lingering on a loaded machine) shows in one. CI once
        // failed a single-period check that way: epoll RSS 40.3 → 46.5 MB over 60 s while
        // the same build measured +1.3 MB locally and io_uring fell by 3 MB in that run.
        //
        // Each half runs its time and, on a machine too slow to get its share of sessions
        // in that time (a debug build on a loaded 2-core machine: 478–1,000 a second
        // measured), on until it has them: the leak check's reach is per session. A half
        // that has not got there by three times its time is a stall.
        let half = Duration::from_secs(secs) / 2;
        let want = 250 * secs;
        let cap = half * 3;
        let started = Instant::now();
        let n1 = churn(&p.url(), half, want, cap).await;
        let first = started.elapsed();
        let rss_mid = settled_rss(&p).await;
        let started = Instant::now();
        let n2 = churn(&p.url(), half, want, cap).await;
        // The churn's own time, without the settling between the halves.
        let elapsed = first + started.elapsed();
        let n = n1 + n2;
        let rss1 = settled_rss(&p).await;
        let fds1 = p.fds();
        let active = metric_at_least(admin, "tollgate_sessions_active", 0.0);
        println!(
            "{driver}: {n} sessions in {elapsed:.1?} ({:.0}/s); relay fds {fds0} → {fds1}, RSS {rss0} → {rss_mid} → {rss1} KiB, active gauge {active}",
            n as f64 / elapsed.as_secs_f64()
        );
        // Enough sessions for a leak to show against the allowance below (how fast they
        // ran is the bench's business, not this test's).
        assert!(
            n >= 2 * want,
            "{driver}: only {n} of {} sessions completed in {elapsed:.1?} (stalled?)",
            2 * want
        );
        assert_eq!(fds1, fds0, "{driver}: file descriptors back to baseline");
        // Per half, half the allowance the whole run had before: 5% + 1 MiB. At ~1,000
        // sessions a second and a ~40 MB baseline that fails a leak of ~105 bytes per
        // session or more in both halves — the same size the whole-run check caught; ~210
        // bytes on a machine that only gets the floor of `want` sessions per half.
        let allowance = rss0 / 20 + 1024;
        let grew = |from: u64, to: u64| to.saturating_sub(from);
        assert!(
            grew(rss0, rss_mid).min(grew(rss_mid, rss1)) <= allowance,
            "{driver}: RSS grew in both halves: {rss0} → {rss_mid} → {rss1} KiB"
        );
        // And no more than twice the old whole-run allowance in all (one high-water rise).
        assert!(
            rss1 <= rss0 + rss0 / 5 + 4096,
            "{driver}: RSS {rss0} → {rss1} KiB"
        );
        assert_eq!(active, 0.0, "{driver}: active-session gauge back to 0");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_half_handshakes_time_out_without_slowing_real_clients() {
    let _one_at_a_time = HEAVY.lock().await;
    raise_nofile();
    let mock = echo_mock().await;
    for driver in DRIVERS {
        let p = RelayProcess::start(driver, &mock.url(), "", &["--handshake-timeout", "3s"]);
        let connect_p99 = |p: &RelayProcess| {
            let addr = p.addr.clone();
            async move {
                let mut v = Vec::new();
                for _ in 0..100 {
                    let t = Instant::now();
                    let s = raw_upgrade(&addr).await.expect("real client");
                    v.push(t.elapsed());
                    drop(s);
                }
                v.sort_unstable();
                v[98]
            }
        };
        let base = connect_p99(&p).await;
        // 1,000 connections that send half a request line and stall.
        let mut lorises = Vec::new();
        for _ in 0..1000 {
            let mut s = TcpStream::connect(&p.addr).await.unwrap();
            s.write_all(b"GET /v1/responses HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            lorises.push(s);
        }
        let opened = Instant::now();
        let loaded = connect_p99(&p).await;
        println!("{driver}: real-client upgrade p99 {base:?} alone, {loaded:?} beside 1,000 half-handshakes");
        assert!(
            loaded < base * 3 + Duration::from_millis(20),
            "{driver}: p99 {base:?} → {loaded:?}"
        );
        // Every half-handshake is closed at the timeout (EOF), not before and not much after.
        for s in lorises.iter_mut() {
            let mut b = [0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
                .await
                .expect("closed within 10 s")
                .unwrap_or(0);
            assert_eq!(n, 0, "EOF, no response");
        }
        let closed_after = opened.elapsed();
        assert!(
            closed_after < Duration::from_secs(5),
            "{driver}: half-handshakes closed after {closed_after:?} (timeout 3 s)"
        );
    }
}

/// Flood `s` with `n` pings (written in 64 KiB batches) and check every pong comes back in
/// order with its payload.
async fn ping_flood(s: TcpStream, n: usize) -> TcpStream {
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let mut batch = Vec::new();
        for i in 0..n {
            batch.extend(client_frame(
                true,
                9,
                format!("{i:08}").as_bytes(),
                Some([7, 7, 7, 7]),
            ));
            if batch.len() > 64 * 1024 {
                wr.write_all(&batch).await.unwrap();
                batch.clear();
            }
        }
        wr.write_all(&batch).await.unwrap();
        wr
    });
    let mut h = [0u8; 2];
    for next in 0..n {
        rd.read_exact(&mut h).await.unwrap();
        let mut pl = vec![0u8; usize::from(h[1] & 0x7f)];
        rd.read_exact(&mut pl).await.unwrap();
        assert_eq!(h[0] & 0x0f, 10, "a pong");
        assert_eq!(
            pl,
            format!("{next:08}").as_bytes(),
            "in order, payload echoed"
        );
    }
    let wr = writer.await.unwrap();
    rd.reunite(wr).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ping_flood_is_answered_in_order_and_memory_stays_flat() {
    let _one_at_a_time = HEAVY.lock().await;
    let mock = MockUpstream::start(MockConfig {
        echo: true,
        record: false,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    for driver in DRIVERS {
        let p = RelayProcess::start(driver, &mock.url(), "", &[]);
        let s = raw_upgrade(&p.addr).await.unwrap();
        // The first flood grows the session's buffers to their size; the second must not
        // grow anything.
        let s = ping_flood(s, 20_000).await;
        let rss0 = p.rss_kib();
        let _s = ping_flood(s, 20_000).await;
        let grew = p.rss_kib().saturating_sub(rss0);
        println!(
            "{driver}: 2 × 20,000 pings answered in order; relay RSS grew {grew} KiB in the second"
        );
        assert!(grew < 256, "{driver}: RSS grew {grew} KiB");
    }
}

#[test]
fn without_io_uring_auto_falls_back_to_epoll_and_says_so() {
    let up = CountingUpstream::start();
    let mut p = RelayProcess::start("auto", &up.url(), "", &["--debug-fail-uring"]);
    let log = p.log_text();
    assert!(log.contains("falling back to epoll"), "{log}");
    assert!(log.contains("driver=\"epoll\""), "{log}");
    p.signal(libc::SIGTERM);
    assert_eq!(
        p.wait_exit(Duration::from_secs(5)).and_then(|s| s.code()),
        Some(0)
    );
    // Asked for io_uring only: refuse to start rather than run something else.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--passthrough-auth",
            "--upstream",
            &up.url(),
            "--driver",
            "uring",
            "--debug-fail-uring",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(70));
    assert!(String::from_utf8_lossy(&out.stderr).contains("io_uring"));
}
