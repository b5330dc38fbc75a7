use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{ids, rec, sink_cfg as cfg, temp_log, wait_until};
use crate::metering::reader::read_log;
use crate::metering::sink::{Sink, SinkConfig, SinkError, SinkPath};
use crate::metrics::SinkMetrics;

#[test]
fn group_commit_counts_durable_only_after_fsync() {
    let (_d, path) = temp_log();
    let m = Arc::new(SinkMetrics::default());
    // A round waits for the interval (long here) unless `fsync_every` records are queued.
    let sink = Sink::start(
        cfg(
            SinkPath::File(path.clone()),
            Duration::from_millis(400),
            4,
            64,
        ),
        m.clone(),
    )
    .expect("start");
    let h = sink.handle();
    for i in 0..3 {
        h.submit(rec(&format!("r{i}"))).expect("submit");
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(m.written(), 0, "the round is still gathering");
    assert_eq!(h.durable_count(), 0);
    h.submit(rec("r3")).expect("submit");
    assert!(
        wait_until(|| h.durable_count() == 4),
        "the 4th record completes the round at once"
    );
    assert_eq!(m.fsyncs(), 1, "one fsync for the four");
    h.submit(rec("r4")).expect("submit");
    let stats = sink.shutdown().expect("shutdown");
    assert_eq!(stats.durable, 5, "shutdown syncs the rest");
    assert!(stats.not_durable.is_empty());
    assert!(!stats.failed);
    assert_eq!(m.durable(), 5);
    let log = read_log(&path).expect("read");
    assert_eq!(ids(&log.records), ["r0", "r1", "r2", "r3", "r4"]);
    assert_eq!(log.records[0], rec("r0"));
    assert_eq!(log.torn_tail, None);
}

#[test]
fn interval_triggers_fsync() {
    let (_d, path) = temp_log();
    let m = Arc::new(SinkMetrics::default());
    let sink = Sink::start(
        cfg(SinkPath::File(path), Duration::from_millis(20), 1000, 64),
        m.clone(),
    )
    .expect("start");
    let h = sink.handle();
    let t0 = Instant::now();
    h.submit(rec("a")).expect("submit");
    assert!(wait_until(|| h.durable_count() == 1), "interval fsync");
    assert!(
        t0.elapsed() >= Duration::from_millis(15),
        "not before the interval"
    );
    assert_eq!(m.fsyncs(), 1);
    assert!(sink.shutdown().expect("shutdown").not_durable.is_empty());
}

#[test]
fn a_burst_costs_one_write_and_one_fsync_per_interval() {
    let (_d, path) = temp_log();
    let m = Arc::new(SinkMetrics::default());
    let sink = Sink::start(
        cfg(
            SinkPath::File(path.clone()),
            Duration::from_millis(200),
            100_000,
            1 << 20,
        ),
        m.clone(),
    )
    .expect("start");
    let h = sink.handle();
    // 500 records from four threads inside one interval.
    std::thread::scope(|s| {
        for t in 0..4 {
            let h = h.clone();
            s.spawn(move || {
                for i in 0..125 {
                    h.submit(rec(&format!("t{t}-{i}"))).expect("submit");
                }
            });
        }
    });
    assert!(wait_until(|| h.durable_count() == 500));
    assert_eq!(m.fsyncs(), 1, "one group commit for the burst");
    let stats = sink.shutdown().expect("shutdown");
    assert_eq!(stats.durable, 500);
    assert_eq!(read_log(&path).expect("read").records.len(), 500);
}

#[test]
fn dev_full_fails_closed_and_keeps_every_record() {
    let m = Arc::new(SinkMetrics::default());
    let sink = Sink::start(
        cfg(
            SinkPath::File("/dev/full".into()),
            Duration::from_millis(5),
            8,
            2,
        ),
        m.clone(),
    )
    .expect("start");
    let h = sink.handle();
    assert!(h.healthy());
    h.submit(rec("a"))
        .expect("accepted before the failure is known");
    assert!(
        wait_until(|| !h.healthy()),
        "write to /dev/full fails the sink"
    );
    assert!(!m.healthy());
    assert!(h.failed());
    assert_eq!(m.errors(), 1);
    // Afterwards: Unavailable, but kept in memory (past the queue capacity too).
    for id in ["b", "c", "d"] {
        assert!(matches!(h.submit(rec(id)), Err(SinkError::Unavailable)));
    }
    assert!(!h.healthy(), "stays unhealthy");
    let stats = sink.shutdown().expect("shutdown");
    assert!(stats.failed);
    assert_eq!(stats.durable, 0);
    assert_eq!(
        ids(&stats.not_durable),
        ["a", "b", "c", "d"],
        "nothing dropped"
    );
    assert_eq!(m.durable(), 0);
}

#[test]
fn a_slow_disk_never_blocks_submit_and_backpressure_clears_by_itself() {
    // Every fsync takes 150 ms (test hook) and a round takes at most 64 records, so a fast
    // producer gets ahead of the writer.
    let (_d, path) = temp_log();
    let m = Arc::new(SinkMetrics::default());
    let sink = Sink::start(
        SinkConfig {
            fsync_delay: Duration::from_millis(150),
            ..cfg(
                SinkPath::File(path.clone()),
                Duration::from_millis(1),
                64,
                100,
            )
        },
        m.clone(),
    )
    .expect("start");
    let h = sink.handle();
    let mut slowest = Duration::ZERO;
    let mut n = 0;
    while h.healthy() {
        let t = Instant::now();
        h.submit(rec(&format!("r{n}"))).expect("submit");
        slowest = slowest.max(t.elapsed());
        n += 1;
        assert!(n < 100_000, "backpressure never came on");
    }
    assert!(m.backpressured());
    assert!(!h.failed(), "behind is not broken");
    assert!(
        slowest < Duration::from_millis(50),
        "submit blocked {slowest:?}"
    );
    // Records of responses already in flight are still accepted while behind.
    for i in 0..50 {
        h.submit(rec(&format!("late{i}")))
            .expect("submit while behind");
    }
    assert!(wait_until(|| h.healthy()), "backpressure clears by itself");
    assert!(!m.backpressured());
    assert_eq!(m.backpressure_events(), 1);
    let stats = sink.shutdown().expect("shutdown");
    assert!(!stats.failed && stats.not_durable.is_empty());
    assert_eq!(read_log(&path).expect("read").records.len(), n + 50);
}

#[test]
fn reopen_moves_on_to_a_new_file_and_loses_nothing() {
    let (dir, path) = temp_log();
    let m = Arc::new(SinkMetrics::default());
    let sink = Sink::start(
        cfg(
            SinkPath::File(path.clone()),
            Duration::from_millis(2),
            1000,
            64,
        ),
        m.clone(),
    )
    .expect("start");
    let h = sink.handle();
    for i in 0..10 {
        h.submit(rec(&format!("a{i}"))).expect("submit");
    }
    assert!(wait_until(|| h.durable_count() == 10));
    let rotated = dir.path().join("usage.jsonl.1");
    std::fs::rename(&path, &rotated).expect("mv");
    // Written after the rename but before the reopen: still lands in the old file.
    h.submit(rec("b0")).expect("submit");
    h.reopen();
    assert!(wait_until(|| m.reopens() == 1));
    for i in 1..5 {
        h.submit(rec(&format!("b{i}"))).expect("submit");
    }
    let stats = sink.shutdown().expect("shutdown");
    assert_eq!(stats.durable, 15);
    let old = read_log(&rotated).expect("old");
    let new = read_log(&path).expect("new");
    let mut all = ids(&old.records);
    all.extend(ids(&new.records));
    all.sort_unstable();
    let mut want: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
    want.extend((0..5).map(|i| format!("b{i}")));
    want.sort_unstable();
    assert_eq!(all, want);
    assert!(
        !new.records.is_empty(),
        "records after the reopen are in the new file"
    );
}

#[test]
fn slow_fsync_hook_delays_durability() {
    let (_d, path) = temp_log();
    let m = Arc::new(SinkMetrics::default());
    let sink = Sink::start(
        SinkConfig {
            fsync_delay: Duration::from_millis(200),
            ..cfg(SinkPath::File(path), Duration::from_millis(1), 1000, 64)
        },
        m.clone(),
    )
    .expect("start");
    let h = sink.handle();
    let t = Instant::now();
    h.submit(rec("a")).expect("submit");
    assert!(
        t.elapsed() < Duration::from_millis(50),
        "submit does not wait"
    );
    assert!(wait_until(|| h.durable_count() == 1));
    assert!(t.elapsed() >= Duration::from_millis(200));
    drop(sink);
}

#[test]
fn disabled_sink_accepts_and_discards() {
    let m = Arc::new(SinkMetrics::default());
    let sink = Sink::start(
        cfg(SinkPath::Disabled, Duration::from_millis(10), 1, 1),
        m.clone(),
    )
    .expect("start");
    let h = sink.handle();
    for i in 0..3 {
        h.submit(rec(&i.to_string())).expect("submit");
    }
    assert!(h.healthy());
    assert_eq!(h.durable_count(), 0);
    let stats = sink.shutdown().expect("shutdown");
    assert_eq!(stats.durable, 0);
    assert!(stats.not_durable.is_empty());
}

#[test]
fn zero_limits_are_refused() {
    let m = Arc::new(SinkMetrics::default());
    let e = Sink::start(cfg(SinkPath::Disabled, Duration::ZERO, 0, 1), m.clone()).unwrap_err();
    assert!(matches!(e, SinkError::ZeroLimit("fsync_every")));
    let e = Sink::start(cfg(SinkPath::Disabled, Duration::ZERO, 1, 0), m).unwrap_err();
    assert!(matches!(e, SinkError::ZeroLimit("queue_capacity")));
}

#[test]
fn torn_tail_is_moved_aside_at_start() {
    let (dir, path) = temp_log();
    let mut good = serde_json::to_string(&rec("a")).expect("json");
    good.push('\n');
    let torn = &serde_json::to_string(&rec("b")).expect("json")[..30];
    std::fs::write(&path, format!("{good}{torn}")).expect("write");
    assert_eq!(read_log(&path).expect("read").torn_tail, Some(good.len()));

    let m = Arc::new(SinkMetrics::default());
    let sink = Sink::start(
        cfg(SinkPath::File(path.clone()), Duration::from_millis(1), 1, 8),
        m,
    )
    .expect("start");
    sink.handle().submit(rec("c")).expect("submit");
    assert_eq!(sink.shutdown().expect("shutdown").durable, 1);

    let log = read_log(&path).expect("read");
    assert_eq!(log.torn_tail, None);
    let ids: Vec<_> = log.records.iter().map(|r| r.response_id.as_str()).collect();
    assert_eq!(ids, ["a", "c"]);
    let side = dir.path().join(format!("usage.jsonl.torn-{}", good.len()));
    assert_eq!(std::fs::read_to_string(side).expect("side file"), torn);
}

#[test]
fn drop_without_shutdown_still_syncs() {
    let (_d, path) = temp_log();
    let m = Arc::new(SinkMetrics::default());
    let sink = Sink::start(
        cfg(
            SinkPath::File(path.clone()),
            Duration::from_secs(3600),
            1000,
            8,
        ),
        m.clone(),
    )
    .expect("start");
    sink.handle().submit(rec("a")).expect("submit");
    drop(sink);
    assert_eq!(m.durable(), 1);
    assert_eq!(read_log(&path).expect("read").records.len(), 1);
}

/// A sink on `path` with a journal and a 5 ms group commit, and its metrics.
fn journaled_sink(path: &std::path::Path) -> (Sink, Arc<SinkMetrics>) {
    let m = Arc::new(SinkMetrics::default());
    let cfg = cfg(
        SinkPath::File(path.to_owned()),
        Duration::from_millis(5),
        64,
        64,
    );
    (Sink::start(cfg, m.clone()).expect("start"), m)
}

/// What a relay `id` killed beside the sink on `path` leaves: a journal holding `records`,
/// none of them written.
fn dead_journal(path: &std::path::Path, id: u32, records: &[&str]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .expect("log");
    let (mut j, _) =
        crate::metering::journal::Journal::open_as(id, 64 << 10, &mut f, path).expect("open");
    for r in records {
        j.append(&serde_json::to_vec(&rec(r)).expect("json"))
            .expect("room");
    }
}

#[test]
fn an_idle_writer_adopts_a_dead_relays_journal_and_its_mark_covers_the_lines() {
    let (_d, path) = temp_log();
    let (sink, m) = journaled_sink(&path);
    let h = sink.handle();
    h.submit(rec("mine")).expect("submit");
    assert!(wait_until(|| h.durable_count() == 1));
    // A relay beside this one (same log) journals two records and dies unwritten.
    dead_journal(&path, u32::MAX - 1, &["theirs-1", "theirs-2"]);
    // Nothing is submitted: the idle writer still wakes to adopt within about a second.
    let t0 = Instant::now();
    assert!(
        wait_until(|| read_log(&path).is_ok_and(|l| l.records.len() == 3)),
        "adopted"
    );
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    let len = std::fs::metadata(&path).expect("log").len();
    assert!(
        wait_until(|| h.durable_mark().is_some_and(|m| m.offset == len)),
        "the durable mark covers the adopted lines: {:?} vs {len}",
        h.durable_mark()
    );
    assert!(!crate::metering::journal::journal_path(&path, u32::MAX - 1).exists());
    assert_eq!(m.journal_recovered(), 2, "counted");
    h.submit(rec("mine-2")).expect("submit");
    sink.shutdown().expect("shutdown");
    let log = read_log(&path).expect("read");
    assert_eq!(
        ids(&log.records),
        ["mine", "theirs-1", "theirs-2", "mine-2"]
    );
    assert_eq!(
        h.durable_mark().map(|m| m.offset),
        Some(std::fs::metadata(&path).expect("log").len())
    );
}

#[test]
fn a_start_counts_the_records_it_appends_from_a_dead_relays_journal() {
    let (_d, path) = temp_log();
    dead_journal(&path, 7, &["left-behind"]);
    let (sink, m) = journaled_sink(&path);
    assert_eq!(m.journal_recovered(), 1);
    sink.shutdown().expect("shutdown");
    assert_eq!(
        ids(&read_log(&path).expect("read").records),
        ["left-behind"]
    );
}

#[test]
fn the_writer_keeps_the_journals_next_pages_faulted_in_as_the_ring_advances() {
    let (d, path) = temp_log();
    let (sink, _) = journaled_sink(&path);
    let journal = std::fs::read_dir(d.path())
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            crate::metering::journal::is_journal_of("usage.jsonl", name)
        })
        .expect("the sink's journal");
    // A 1 MiB ring: a quarter of it ahead of the head, faulted in as the writer starts.
    let ahead_kib = (1 << 20) / 4 / 1024;
    assert!(
        wait_until(|| super::mapped_rss_kib(&journal) >= ahead_kib),
        "{} KiB of the journal resident",
        super::mapped_rss_kib(&journal)
    );
    // 1,500 records carry the head well past that first range; the pages behind the
    // written mark leave, and the writer faults in the range ahead of the new head.
    let h = sink.handle();
    for i in 0..1500 {
        h.submit(rec(&format!("r{i}"))).expect("submit");
    }
    assert!(wait_until(|| h.durable_count() == 1500));
    assert!(
        wait_until(|| super::mapped_rss_kib(&journal) >= ahead_kib),
        "{} KiB of the journal resident after the ring advanced",
        super::mapped_rss_kib(&journal)
    );
    sink.shutdown().expect("shutdown");
}
