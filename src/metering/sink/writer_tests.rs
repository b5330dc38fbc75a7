//! The writer's buffers after a burst: shrunk back to what a normal round needs once nothing
//! is queued; a busy writer and a small round keep them (no realloc churn).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::{Output, Writer, KEEP_BUF_BYTES, KEEP_QUEUED};
use crate::metering::sink::{Queued, Shared, SinkConfig, SinkPath, State};
use crate::metrics::SinkMetrics;

/// A writer on a fresh log file with `lines` queued, each `bytes` long (no journal).
fn writer_with(lines: usize, bytes: usize) -> (Writer, Arc<Shared>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("usage.jsonl");
    let file = std::fs::File::create(&path).expect("create");
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        mark: Mutex::new(None),
        wake: Condvar::new(),
        metrics: Arc::new(SinkMetrics::default()),
        capacity: 1 << 20,
        disabled: false,
        journaled: false,
    });
    queue(&shared, lines, bytes);
    let cfg = SinkConfig {
        path: SinkPath::File(path.clone()),
        fsync_interval: Duration::ZERO,
        fsync_every: 1 << 20,
        queue_capacity: 1 << 20,
        fsync_delay: Duration::ZERO,
        journal_bytes: 0,
    };
    let w = Writer::new(Arc::clone(&shared), Output::File { file, path }, &cfg);
    (w, shared, dir)
}

fn queue(shared: &Shared, lines: usize, bytes: usize) {
    let mut st = shared.lock();
    for i in 0..lines {
        let mut l = format!("{{\"n\":{i},\"pad\":\"").into_bytes();
        l.resize(bytes - 2, b'x');
        l.extend_from_slice(b"\"}");
        st.queue.push_back(Queued::Line(l));
    }
}

fn log_lines(dir: &tempfile::TempDir) -> usize {
    let text = std::fs::read_to_string(dir.path().join("usage.jsonl")).expect("read log");
    text.lines().count()
}

#[test]
fn a_quiet_writer_gives_back_what_a_burst_grew() {
    // 3,000 records of 300 bytes in one round: a 900 KB write buffer, 3,000-entry queues.
    let (mut w, shared, dir) = writer_with(3000, 300);
    let round = w.take_round();
    assert_eq!(round.batch.len(), 3000);
    w.commit(round.batch, round.journaled).expect("commit");
    assert_eq!(
        log_lines(&dir),
        3000,
        "every record of the burst is in the log"
    );
    assert_eq!(w.durable, 3000);
    assert!(w.buf.capacity() >= 3000 * 300);

    // Quiet (nothing queued; shutting down so the round does not sleep): trimmed.
    shared.lock().shutdown = true;
    let round = w.take_round();
    assert!(round.batch.is_empty() && round.last);
    assert!(
        w.buf.capacity() <= KEEP_BUF_BYTES,
        "buf kept {}",
        w.buf.capacity()
    );
    assert!(w.unsynced.capacity() <= KEEP_QUEUED);
    let st = shared.lock();
    assert!(
        st.queue.capacity() <= KEEP_QUEUED,
        "queue kept {}",
        st.queue.capacity()
    );
}

#[test]
fn a_busy_writer_keeps_its_buffers() {
    let (mut w, shared, dir) = writer_with(3000, 300);
    let round = w.take_round();
    w.commit(round.batch, round.journaled).expect("commit");
    let cap = w.buf.capacity();
    // More records arrive before the next round: nothing is trimmed, the buffer is reused.
    queue(&shared, 3000, 300);
    let round = w.take_round();
    assert_eq!(round.batch.len(), 3000);
    w.commit(round.batch, round.journaled).expect("commit");
    assert_eq!(w.buf.capacity(), cap);
    assert_eq!(log_lines(&dir), 6000);
}

#[test]
fn a_small_round_keeps_its_buffers_when_quiet() {
    let (mut w, shared, _dir) = writer_with(100, 300);
    let round = w.take_round();
    w.commit(round.batch, round.journaled).expect("commit");
    let cap = w.buf.capacity();
    assert!(cap >= 100 * 300, "the round's 30 KB were written from buf");
    shared.lock().shutdown = true;
    let round = w.take_round();
    assert!(round.last);
    assert_eq!(w.buf.capacity(), cap, "under the limit: no realloc");
}
