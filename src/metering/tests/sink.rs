use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{rec, temp_log, wait_until};
use crate::metering::reader::read_log;
use crate::metering::sink::{Sink, SinkConfig, SinkError, SinkPath, SUBMIT_BLOCK};
use crate::metrics::SinkMetrics;

fn cfg(path: SinkPath, interval: Duration, every: usize, cap: usize) -> SinkConfig {
    SinkConfig {
        path,
        fsync_interval: interval,
        fsync_every: every,
        queue_capacity: cap,
    }
}

#[test]
fn group_commit_counts_durable_only_after_fsync() {
    let (_d, path) = temp_log();
    let m = Arc::new(SinkMetrics::default());
    // An interval that never fires: only `fsync_every` (or shutdown) syncs.
    let sink = Sink::start(
        cfg(
            SinkPath::File(path.clone()),
            Duration::from_secs(3600),
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
    assert!(wait_until(|| m.written() == 3), "3 written");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(h.durable_count(), 0, "written but not yet fsynced");
    assert_eq!(m.fsyncs(), 0);
    h.submit(rec("r3")).expect("submit");
    assert!(
        wait_until(|| h.durable_count() == 4),
        "the 4th record triggers the fsync"
    );
    assert_eq!(m.fsyncs(), 1);
    h.submit(rec("r4")).expect("submit");
    let stats = sink.shutdown().expect("shutdown");
    assert_eq!(stats.durable, 5, "shutdown syncs the rest");
    assert!(stats.not_durable.is_empty());
    assert!(!stats.failed);
    assert_eq!(m.durable(), 5);
    let log = read_log(&path).expect("read");
    let ids: Vec<_> = log.records.iter().map(|r| r.response_id.as_str()).collect();
    assert_eq!(ids, ["r0", "r1", "r2", "r3", "r4"]);
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
fn dev_full_fails_closed_and_keeps_records() {
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
    assert_eq!(m.errors(), 1);
    // Afterwards: Unavailable, but kept in memory up to the queue bound (2).
    assert!(matches!(h.submit(rec("b")), Err(SinkError::Unavailable)));
    assert!(matches!(h.submit(rec("c")), Err(SinkError::Unavailable)));
    assert!(matches!(h.submit(rec("d")), Err(SinkError::Unavailable)));
    assert!(!h.healthy(), "stays unhealthy");
    let stats = sink.shutdown().expect("shutdown");
    assert!(stats.failed);
    assert_eq!(stats.durable, 0);
    let ids: Vec<_> = stats
        .not_durable
        .iter()
        .map(|r| r.response_id.as_str())
        .collect();
    assert_eq!(ids, ["a", "b", "c"], "nothing silently dropped");
    assert_eq!(stats.rejected, 1, "the one past the bound is counted");
    assert_eq!(m.durable(), 0);
}

#[test]
fn full_queue_blocks_then_refuses() {
    // A FIFO whose reader never reads: the writer blocks once the pipe buffer is full.
    let (_d, path) = temp_log();
    let cpath = std::ffi::CString::new(path.to_str().expect("utf8")).expect("cstr");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(cpath.as_ptr(), 0o600) }, 0);
    let rpath = path.clone();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut f = std::fs::File::open(rpath).expect("open fifo");
        let _ = rx.recv();
        let mut sink = Vec::new();
        let _ = f.read_to_end(&mut sink);
        sink.len()
    });
    let m = Arc::new(SinkMetrics::default());
    let sink = Sink::start(
        cfg(SinkPath::File(path), Duration::from_secs(3600), 1 << 20, 4),
        m.clone(),
    )
    .expect("start");
    let h = sink.handle();
    let mut refused = None;
    for i in 0..100_000 {
        let t = Instant::now();
        match h.submit(rec(&format!("r{i}"))) {
            Ok(()) => {}
            Err(e) => {
                refused = Some((e, t.elapsed()));
                break;
            }
        }
    }
    let (err, waited) = refused.expect("the queue filled up");
    assert!(matches!(err, SinkError::QueueFull), "{err:?}");
    assert!(waited >= SUBMIT_BLOCK, "blocked {waited:?} before refusing");
    assert_eq!(h.queue_depth(), 4);
    assert_eq!(m.rejected(), 1);
    assert!(h.healthy(), "a full queue alone does not fail the sink");
    tx.send(()).expect("release reader");
    let stats = sink.shutdown().expect("shutdown");
    assert_eq!(stats.rejected, 1);
    // fdatasync on a FIFO fails (EINVAL): the sink fails closed and says so.
    assert!(stats.failed);
    assert_eq!(stats.durable, 0);
    assert!(reader.join().expect("reader") > 0);
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
