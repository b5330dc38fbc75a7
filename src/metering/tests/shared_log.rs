//! Two relays appending to one usage log (a restart that overlaps the old process's drain):
//! a writer killed mid-write beside a running one, and a start beside a live writer.

use std::sync::Arc;
use std::time::Duration;

use super::{ids, rec, sink_cfg, temp_log, wait_until};
use crate::metering::reader::read_log;
use crate::metering::sink::{Sink, SinkPath};
use crate::metrics::SinkMetrics;

/// Two relays on one log (an overlapping restart), the old one killed in the middle of a
/// multi-page write: its last line is torn. The survivor's writer and its adoption of the
/// dead relay's journal each start on a new line, so every record reads back once, the
/// fragment is a line of its own, and the durable mark covers all of it.
#[test]
fn a_relay_killed_mid_write_beside_this_one_leaves_a_fragment_on_its_own_line() {
    use crate::metering::journal::Journal;
    use std::io::Write;
    let (_d, path) = temp_log();
    let m = Arc::new(SinkMetrics::default());
    let sink = Sink::start(
        sink_cfg(SinkPath::File(path.clone()), Duration::from_millis(1), 1, 8),
        m.clone(),
    )
    .expect("start");
    let h = sink.handle();
    h.submit(rec("a")).expect("submit");
    assert!(wait_until(|| h.durable_count() == 1));

    // The old relay: record "b" in its journal, the first 300 bytes of its line in the log
    // (the kernel stopped its write at a page boundary), then it is gone.
    let mut old_log = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    let (mut old, _) = Journal::open_as("old-relay", 64 << 10, &mut old_log, &path).expect("j");
    let b = serde_json::to_vec(&rec("b")).expect("json");
    old.append(&b).expect("journal");
    let fragment_at = std::fs::metadata(&path).expect("meta").len() as usize;
    old_log.write_all(&b[..300]).expect("torn write");
    drop(old);
    drop(old_log);

    // The survivor goes on: its next record, and the old relay's record by adoption.
    h.submit(rec("c")).expect("submit");
    assert!(
        wait_until(|| h.durable_count() == 2 && m.journal_recovered() == 1),
        "written and adopted (durable {}, recovered {})",
        h.durable_count(),
        m.journal_recovered()
    );
    let len = std::fs::metadata(&path).expect("meta").len();
    assert_eq!(
        h.durable_mark().expect("file mark").offset,
        len,
        "durable up to the end, the fragment and its newline counted"
    );
    assert!(!sink.shutdown().expect("shutdown").failed);

    let log = read_log(&path).expect("no line is corrupt");
    let mut got = ids(&log.records);
    got.sort_unstable();
    assert_eq!(got, ["a", "b", "c"], "each record once");
    assert_eq!(log.fragments, [fragment_at]);
    assert_eq!(log.torn_tail, None);
}

/// A start beside a relay that is in the middle of a write waits for it (the log's lock)
/// rather than taking its unfinished line for a torn one and cutting it.
#[test]
fn a_start_never_cuts_the_line_a_live_relay_is_writing() {
    use std::io::Write;
    let (dir, path) = temp_log();
    let mut a = serde_json::to_string(&rec("a")).expect("json");
    a.push('\n');
    std::fs::write(&path, &a).expect("write");
    let live = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .open(&path)
        .expect("open");
    let held = crate::metering::append::lock(&live).expect("lock");
    let mut b = serde_json::to_string(&rec("b")).expect("json");
    b.push('\n');
    (&live).write_all(&b.as_bytes()[..100]).expect("first page");
    let p = path.clone();
    let start = std::thread::spawn(move || crate::metering::recover::recover_torn_tail(&p));
    std::thread::sleep(Duration::from_millis(100));
    (&live).write_all(&b.as_bytes()[100..]).expect("the rest");
    drop(held);
    assert_eq!(start.join().expect("thread").expect("recover"), None);
    let log = read_log(&path).expect("read");
    assert_eq!(ids(&log.records), ["a", "b"]);
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        1,
        "no side file"
    );
}
