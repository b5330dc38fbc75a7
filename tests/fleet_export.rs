//! The fleet's usage export, with a real engine: `nats-server -js` on 127.0.0.1 (a Debian
//! package, installed by scripts/install-deps.sh), relay processes in front of the mock
//! upstream.
//!
//! - every record of both relays reaches the JetStream stream exactly once — across a
//!   `kill -9` of a relay mid-traffic and its restart, and across NATS stopped for a few
//!   seconds and restarted — and the backlog shows on `/readyz` while NATS is down;
//! - a rotated usage log and the exporter's cursor agree, and the NATS password in the URL
//!   reaches no log line.
mod common;
#[path = "fleet/support.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::*;
use support::*;
use tollgate_loadtest::mock::{MockConfig, MockUpstream};

/// The flags both export scenarios give their relays: export to `nats_url`, fast group
/// commits, an admin listener for the metrics.
fn export_flags(nats_url: &str) -> [&str; 6] {
    [
        "--usage-export",
        nats_url,
        "--usage-fsync-ms",
        "5",
        "--admin-listen",
        "127.0.0.1:0",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_reaches_jetstream_once_across_kill_9_and_a_nats_outage() {
    let store = tempfile::tempdir().expect("tmp");
    let mut nats = Server::nats(store.path());
    let mock = MockUpstream::start(MockConfig {
        deltas: 3,
        token_rate: Some(200.0),
        ..MockConfig::default()
    })
    .await
    .expect("mock");
    let nats_url = nats.url("nats");
    let export = [
        &export_flags(&nats_url)[..],
        &["--usage-export-max-backlog", "3"],
    ]
    .concat();
    let up = mock.url();
    let a = RelayProcess::start("uring", &up, "", &export);
    let b = RelayProcess::start("epoll", &up, "", &export);
    let (a_log, b_log) = (a.usage_log(), b.usage_log());

    // Phase 1: both relays busy; relay A is killed -9 in the middle of it.
    let ta = tokio::spawn(traffic(a.addr.clone(), 10_000));
    let tb = tokio::spawn(traffic(b.addr.clone(), 40));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let open_at_kill = 1; // `traffic` keeps one response in flight at a time
    let a = a.kill9_and_restart("uring", &up, "", &export);
    let a_done_1 = ta.await.expect("task");
    assert!(a_done_1 > 0, "relay A carried traffic before the kill");
    tb.await.expect("task");

    // Phase 2: NATS stops for a few seconds while both relays keep relaying and logging.
    nats.down();
    let b_admin = b.admin.clone().expect("admin");
    let (na, nb) = tokio::join!(traffic(a.addr.clone(), 15), traffic(b.addr.clone(), 15));
    assert_eq!((na, nb), (15, 15), "relaying does not depend on NATS");
    // The exporter notices within its ack timeout and backoff (a few seconds).
    wait_until("the backlog metric", Duration::from_secs(15), || {
        metric(&b_admin, "tollgate_usage_export_backlog_records") >= 15.0
    });
    assert!(
        readyz(&b_admin).contains("503"),
        "over --usage-export-max-backlog: not ready"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.up();

    // Phase 3: more traffic, then everything catches up.
    let (na, nb) = tokio::join!(traffic(a.addr.clone(), 10), traffic(b.addr.clone(), 10));
    assert_eq!((na, nb), (10, 10));
    // The last records reach the log with the next group commit (5 ms, but an fsync on a
    // loaded machine can take longer); then the exporters must catch up with everything.
    for r in [&a, &b] {
        let admin = r.admin.clone().expect("admin");
        wait_until("every record made durable", Duration::from_secs(15), || {
            metric_sum(&admin, "tollgate_responses_total")
                <= metric(&admin, "tollgate_usage_records_durable_total")
        });
        let end = Instant::now() + Duration::from_secs(30);
        while metric(&admin, "tollgate_usage_export_backlog_records") != 0.0 {
            assert!(
                Instant::now() < end,
                "the export backlog did not drain:\n{}",
                r.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(readyz(&admin).contains("200"), "ready again");
        assert!(metric(&admin, "tollgate_usage_export_errors_total") >= 0.0);
    }
    assert!(
        metric(&b_admin, "tollgate_usage_export_errors_total") >= 1.0,
        "the outage was counted"
    );

    let logged: Vec<String> = records(&a_log)
        .into_iter()
        .chain(records(&b_log))
        .map(|r| r.response_id)
        .collect();
    let unique: HashSet<&String> = logged.iter().collect();
    assert_eq!(
        unique.len(),
        logged.len(),
        "one record per response in the logs"
    );
    let streamed = stream_ids(&nats_url).await;
    let mut seen = HashMap::new();
    for id in &streamed {
        *seen.entry(id.clone()).or_insert(0) += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "records twice in the stream: {dups:?}");
    let streamed: HashSet<String> = streamed.into_iter().collect();
    let logged: HashSet<String> = logged.into_iter().collect();
    assert_eq!(
        streamed, logged,
        "the stream holds exactly the logged records"
    );
    // Against the upstream's ledger: only responses cut by the kill have no record.
    let ledger: HashSet<String> = mock.ledger().into_iter().map(|e| e.response_id).collect();
    assert!(logged.is_subset(&ledger));
    let missing = ledger.difference(&logged).count();
    assert!(
        missing <= open_at_kill,
        "{missing} ledger entries without a record"
    );
    drop((a, b));
}

const NATS_PASSWORD: &str = "nats-pw-must-not-be-logged";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_rotation_and_the_export_cursor_agree() {
    let store = tempfile::tempdir().expect("tmp");
    let mut nats = Server::nats_with(
        store.path(),
        &["--user", "tollgate", "--pass", NATS_PASSWORD],
    );
    let mock = MockUpstream::start(MockConfig {
        deltas: 2,
        ..MockConfig::default()
    })
    .await
    .expect("mock");
    let nats_url = nats
        .url("nats")
        .replace("://", &format!("://tollgate:{NATS_PASSWORD}@"));
    let flags = export_flags(&nats_url);
    let up = mock.url();
    let r = RelayProcess::start("uring", &up, "", &flags);
    let log = r.usage_log();
    let rotated = log.with_extension("jsonl.1");
    assert_eq!(traffic(r.addr.clone(), 5).await, 5);
    // NATS goes away; records pile up in the log, which is then rotated (SIGHUP).
    nats.down();
    assert_eq!(traffic(r.addr.clone(), 5).await, 5);
    std::fs::rename(&log, &rotated).expect("rotate");
    r.signal(libc::SIGHUP);
    wait_until("the reopen", Duration::from_secs(5), || log.exists());
    assert_eq!(traffic(r.addr.clone(), 5).await, 5);
    // The relay stops with the backlog unexported, and the log is rotated again while it
    // is down: the restart must find the cursor's file by its inode.
    r.signal(libc::SIGTERM);
    let mut r = r;
    r.wait_exit(Duration::from_secs(20)).expect("stopped");
    let rotated2 = log.with_extension("jsonl.2");
    std::fs::rename(&rotated, &rotated2).expect("rotate .1 → .2");
    std::fs::rename(&log, &rotated).expect("rotate → .1");
    nats.up();
    let dir = std::mem::replace(&mut r.dir, tempfile::tempdir().expect("tmp"));
    let r = RelayProcess::start_in(dir, "uring", &up, "", &flags);
    assert_eq!(traffic(r.addr.clone(), 5).await, 5);
    let admin = r.admin.clone().expect("admin");
    let current = r.usage_log();
    wait_until(
        "the last records to be durable",
        Duration::from_secs(5),
        || records(&current).len() == 5,
    );
    let end = Instant::now() + Duration::from_secs(30);
    while metric(&admin, "tollgate_usage_export_backlog_records") != 0.0
        || metric(&admin, "tollgate_usage_export_acked_total") < 15.0
    {
        assert!(
            Instant::now() < end,
            "backlog {} acked {}:\n{}",
            metric(&admin, "tollgate_usage_export_backlog_records"),
            metric(&admin, "tollgate_usage_export_acked_total"),
            r.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let logged: HashSet<String> = [&rotated2, &rotated, &r.usage_log()]
        .iter()
        .flat_map(|p| records(p))
        .map(|rec| rec.response_id)
        .collect();
    assert_eq!(logged.len(), 20, "four rounds of five");
    // The acked count includes records the restarted exporter published again (those acked
    // before its predecessor's last cursor fsync, dropped by JetStream as duplicates), so
    // it can reach 15 before the last round is in the stream: wait for the stream itself.
    let end = Instant::now() + Duration::from_secs(30);
    let streamed = loop {
        let ids = stream_ids(&nats_url).await;
        if ids.len() >= logged.len() || Instant::now() >= end {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(streamed.len(), 20, "each once: {streamed:?}");
    assert_eq!(streamed.into_iter().collect::<HashSet<_>>(), logged);
    // The rotated files were finished before the current one: the order of the stream
    // follows the files' order.
    let first_of_current = records(&r.usage_log())[0].response_id.clone();
    let pos = stream_ids(&nats_url)
        .await
        .iter()
        .position(|id| *id == first_of_current)
        .expect("in the stream");
    assert_eq!(pos, 15);
    let text = r.log_text();
    assert!(
        text.contains("url=nats://<redacted>@127.0.0.1:") && !text.contains(NATS_PASSWORD),
        "{text}"
    );
}
