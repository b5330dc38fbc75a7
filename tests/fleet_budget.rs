//! The fleet's shared limits, with a real engine: `redis-server` on 127.0.0.1 (a Debian
//! package, installed by scripts/install-deps.sh), two relay processes in front of the
//! mock upstream.
//!
//! - a tenant's daily token budget shared by both relays holds within the documented
//!   overshoot bound, and a fleet-wide session cap holds across both;
//! - with Redis stopped, `--budget-fail closed` refuses and `open` admits, as logged;
//! - a connection Redis closes is dialled again without refusing anyone.
mod common;
#[path = "fleet/support.rs"]
mod support;

use std::time::{Duration, Instant};

use common::*;
use support::*;
use tollgate_loadtest::client::ConnectError;
use tollgate_loadtest::mock::{MockConfig, MockUpstream};

const BUDGET_KEY: &str = "tg-test-budget-key-0003";
const CAPPED_KEY: &str = "tg-test-capped-key-0004";
const REDIS_PASSWORD: &str = "redis-pw-must-not-be-logged";

fn budget_keys() -> String {
    format!("budget {BUDGET_KEY} tokens_per_day=2500\ncapped {CAPPED_KEY} fleet_max_sessions=3\n")
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_budget_and_a_session_cap_hold_across_two_relays() {
    let redis = Server::redis();
    let mock = MockUpstream::start(MockConfig {
        deltas: 4,
        ..MockConfig::default()
    })
    .await
    .expect("mock");
    let redis_url = redis.url("redis");
    let flags = [
        "--budget-redis",
        redis_url.as_str(),
        "--budget-lease-tokens",
        "300",
        "--fleet-sync-interval",
        "100ms",
        "--usage-fsync-ms",
        "5",
    ];
    let a = RelayProcess::start("uring", &mock.url(), &budget_keys(), &flags);
    let b = RelayProcess::start("epoll", &mock.url(), &budget_keys(), &flags);

    // Turns alternate between the relays until both refuse.
    let (mut ca, mut cb) = (
        session(&a.addr, BUDGET_KEY)
            .await
            .unwrap_or_else(|e| panic!("a: {e:?}\n{}", a.log_text())),
        session(&b.addr, BUDGET_KEY)
            .await
            .unwrap_or_else(|e| panic!("b: {e:?}\n{}", b.log_text())),
    );
    let mut refused = [false, false];
    let mut completed = 0usize;
    let mut turns = 0;
    while !(refused[0] && refused[1]) {
        turns += 1;
        assert!(turns < 500, "the budget never ran out");
        for (i, c) in [&mut ca, &mut cb].into_iter().enumerate() {
            if refused[i] {
                continue;
            }
            let ev = c
                .turn(r#"{"type":"response.create","model":"gpt-5","input":"count me"}"#)
                .await
                .expect("turn");
            let last = ev.last().expect("event");
            if last["type"] == "error" {
                assert_eq!(last["error"]["code"], "insufficient_quota", "{last}");
                refused[i] = true;
            } else {
                assert_eq!(last["type"], "response.completed", "{last}");
                completed += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // New sessions of the tenant are refused at the handshake, on both relays.
    for addr in [&a.addr, &b.addr] {
        refused_with(addr, BUDGET_KEY, "insufficient_quota").await;
    }
    // Every completed response has its record — once the writers' group commits are on
    // disk (a record is queued before the client sees the terminal event, but written with
    // the next commit, and an fsync on a loaded machine can take a while).
    let budget_records = || -> Vec<_> {
        records(&a.usage_log())
            .into_iter()
            .chain(records(&b.usage_log()))
            .filter(|r| r.tenant == "budget")
            .collect()
    };
    wait_until(
        "a record per completed response",
        Duration::from_secs(15),
        || budget_records().len() >= completed,
    );
    let recs = budget_records();
    assert_eq!(recs.len(), completed, "one record per completed response");
    let used: u64 = recs.iter().map(|r| r.total_tokens).sum();
    let biggest = recs.iter().map(|r| r.total_tokens).max().unwrap_or(0);
    // The bound (src/fleet/budget.rs): N relays × c in flight × M tokens; here N = 2, c = 1.
    let bound = 2 * biggest;
    assert!(
        used <= 2500 + bound,
        "used {used} > budget 2500 + bound {bound}"
    );
    assert!(used >= 2500 - 2 * 300, "refused too early: used {used}");
    eprintln!(
        "budget 2500: used {used} over {} responses (largest {biggest}, overshoot bound {bound})",
        recs.len()
    );

    // The fleet-wide session cap: 3 across both relays.
    let mut open = Vec::new();
    for addr in [&a.addr, &b.addr, &a.addr] {
        open.push(session(addr, CAPPED_KEY).await.expect("under the cap"));
        fleet_knows_sessions(&redis_url, "capped", open.len(), 2).await;
    }
    for addr in [&a.addr, &b.addr] {
        refused_with(addr, CAPPED_KEY, "fleet_session_limit_reached").await;
    }
    drop(open.pop());
    fleet_knows_sessions(&redis_url, "capped", open.len(), 2).await;
    open.push(
        session(&b.addr, CAPPED_KEY)
            .await
            .expect("a slot came back"),
    );
    assert!(!a.log_text().contains(BUDGET_KEY) && !a.log_text().contains(CAPPED_KEY));
}

/// A new session of `key` on `addr` is refused at the handshake: 429 naming `code`.
async fn refused_with(addr: &str, key: &str, code: &str) {
    match session(addr, key).await {
        Err(ConnectError::Refused {
            status: 429, body, ..
        }) => assert!(body.contains(code), "{body}"),
        other => panic!("{addr}: expected 429 {code}, got {:?}", other.map(|_| ())),
    }
}

/// Waits (bounded) until the fleet's sessions hash of `tenant` holds `relays` fields whose
/// counts sum to `sessions`, and then until every relay has synced twice more — each sync
/// writes the relay's count and reads the others' in one pipeline, and a relay applies
/// what it read before its next sync starts, so after two every relay acts on the total.
/// (A fixed sleep here failed whenever a fleet thread stalled longer than the sleep.)
async fn fleet_knows_sessions(redis_url: &str, tenant: &str, sessions: usize, relays: usize) {
    let client = redis::Client::open(redis_url).expect("redis url");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let key = tollgate::fleet::budget::sessions_key(tenant);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut since = None;
    let mut rounds = 0;
    loop {
        // (count, unix ms) of each relay's field.
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut con)
            .await
            .expect("HGETALL");
        let f: Vec<(usize, u64)> = fields
            .iter()
            .filter_map(|(_, v)| {
                let (c, t) = v.split_once(':')?;
                Some((c.parse().ok()?, t.parse().ok()?))
            })
            .collect();
        let total: usize = f.iter().map(|(c, _)| c).sum();
        let newest = f.iter().map(|(_, t)| *t).max().unwrap_or(0);
        if f.len() == relays && total == sessions {
            match since {
                None => since = Some(newest),
                Some(s) if f.iter().all(|(_, t)| *t > s) => {
                    rounds += 1;
                    if rounds == 2 {
                        return;
                    }
                    since = Some(newest);
                }
                Some(_) => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "the fleet never counted {sessions} sessions of {tenant}: {f:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_closed_refuses_and_open_admits() {
    let mut redis = Server::redis_with(&["--requirepass", REDIS_PASSWORD]);
    let mock = MockUpstream::start(MockConfig::default())
        .await
        .expect("mock");
    // The password is in the URL, as operators write it; it never reaches a log line.
    let redis_url = redis
        .url("redis")
        .replace("://", &format!("://:{REDIS_PASSWORD}@"));
    let flags = |fail: &'static str| {
        vec![
            "--budget-redis".to_string(),
            redis_url.clone(),
            "--budget-fail".into(),
            fail.into(),
            "--fleet-sync-interval".into(),
            "100ms".into(),
        ]
    };
    let fc = flags("closed");
    let fo = flags("open");
    let closed = RelayProcess::start(
        "uring",
        &mock.url(),
        &budget_keys(),
        &fc.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let open = RelayProcess::start(
        "epoll",
        &mock.url(),
        &budget_keys(),
        &fo.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    session(&closed.addr, BUDGET_KEY)
        .await
        .expect("Redis up: admitted");
    redis.down();
    // Closed: the budget tenant is refused once the relay noticed.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match session(&closed.addr, BUDGET_KEY).await {
            Err(ConnectError::Refused {
                status: 503, body, ..
            }) => {
                assert!(body.contains("budget_unavailable"), "{body}");
                break;
            }
            Ok(_) if Instant::now() < end => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("closed: {:?}", other.map(|_| ())),
        }
    }
    // Tenants without fleet limits are not affected.
    session(&closed.addr, RELAY_KEY)
        .await
        .expect("no fleet limits: admitted");
    // Open: admitted, and a turn goes through.
    wait_until("the open relay to notice", Duration::from_secs(10), || {
        open.log_text().contains("Redis unreachable")
    });
    let mut c = session(&open.addr, BUDGET_KEY)
        .await
        .expect("open: admitted");
    c.turn(r#"{"type":"response.create","model":"gpt-5"}"#)
        .await
        .expect("turn");
    for (r, mode) in [(&closed, "closed"), (&open, "open")] {
        let log = r.log_text();
        assert!(
            log.contains("Redis unreachable") && log.contains(&format!("--budget-fail {mode}")),
            "{mode}: {log}"
        );
        assert!(
            log.contains("url=redis://<redacted>@127.0.0.1:") && !log.contains(REDIS_PASSWORD),
            "{mode}: {log}"
        );
    }
    // Redis back: the closed relay admits again.
    redis.up();
    wait_until("Redis to be seen again", Duration::from_secs(10), || {
        closed.log_text().contains("Redis reachable again")
    });
    session(&closed.addr, BUDGET_KEY)
        .await
        .expect("admitted again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_redis_closes_is_redialled_without_refusing() {
    let redis = Server::redis();
    let mock = MockUpstream::start(MockConfig::default())
        .await
        .expect("mock");
    let redis_url = redis.url("redis");
    let relay = RelayProcess::start(
        "uring",
        &mock.url(),
        &budget_keys(),
        &[
            "--budget-redis",
            redis_url.as_str(),
            "--budget-fail",
            "closed",
            "--fleet-sync-interval",
            "100ms",
            "--admin-listen",
            "127.0.0.1:0",
        ],
    );
    let admin = relay.admin.clone().expect("admin");
    session(&relay.addr, BUDGET_KEY)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", relay.log_text()));
    // Redis closes every client connection, five times; each time the relay's next round
    // fails on the closed connection.
    for _ in 0..5 {
        let killed = redis_command(&redis, "CLIENT KILL TYPE normal");
        assert!(killed.starts_with(':'), "{killed}");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        metric(&admin, "tollgate_budget_errors_total") >= 1.0,
        "the closed connections were noticed"
    );
    assert_eq!(metric(&admin, "tollgate_budget_backend_up"), 1.0);
    assert!(
        !relay.log_text().contains("Redis unreachable"),
        "{}",
        relay.log_text()
    );
    session(&relay.addr, BUDGET_KEY)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", relay.log_text()));
}
