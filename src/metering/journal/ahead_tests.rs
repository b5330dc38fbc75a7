use std::fs::File;
use std::path::Path;

use super::super::tests::open_log;
use super::super::PAGE;
use super::*;

const CAP: u64 = 256 << 10;

/// A journal of `capacity` ring bytes for `dir/usage.jsonl`, and its log.
fn journal(dir: &Path, capacity: u64) -> (Journal, File) {
    let log = dir.join("usage.jsonl");
    let mut f = open_log(&log);
    let (j, _) = Journal::open_as(1, capacity, &mut f, &log).expect("open");
    (j, f)
}

/// A ~630-byte record line, as the bench's average.
fn line(i: usize) -> Vec<u8> {
    format!(
        r#"{{"response_id":"resp_{i}","pad":"{}"}}"#,
        "x".repeat(600)
    )
    .into_bytes()
}

/// Bytes in `a`'s ranges.
fn len(a: &Ahead) -> usize {
    a.spans.iter().map(|s| s.1).sum()
}

fn base(j: &Journal) -> usize {
    j.map.as_ptr() as usize + HEADER
}

/// Minor page faults of the calling thread so far.
fn thread_minor_faults() -> i64 {
    // SAFETY: getrusage(2) fills the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_THREAD is Linux's, for the calling thread.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) }, 0);
    u.ru_minflt
}

#[test]
fn the_range_ahead_starts_at_the_head_wraps_at_the_ring_end_and_stops_at_the_free_space() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _f) = journal(dir.path(), CAP);
    let want = (CAP / 4) as usize;
    // A fresh ring: its first quarter.
    assert_eq!(j.ahead().spans, [(base(&j), want), (0, 0)]);
    // The head near the ring's end, everything written: the range wraps to the ring's start.
    let mut i = 0;
    while j.head() < CAP - 20_000 {
        let end = j.append(&line(i)).expect("room");
        j.set_written(end);
        i += 1;
    }
    let head = j.head();
    let from = head & !(PAGE - 1);
    let to = (head + want as u64) & !(PAGE - 1);
    let a = j.ahead();
    assert_eq!(
        a.spans[0],
        (base(&j) + from as usize, (CAP - from) as usize)
    );
    assert_eq!(a.spans[1], (base(&j), (to - CAP) as usize));
    assert_eq!(len(&a) as u64, to - from);
    // A writer a whole lap behind but 12 KiB: only the pages it has written are ahead.
    let (mut j, _f2) = journal(tempfile::tempdir().unwrap().path(), CAP);
    while j.head() < CAP - 12_288 {
        let _ = j.append(&line(i)).expect("room");
        i += 1;
    }
    let a = j.ahead();
    let from = j.head() & !(PAGE - 1);
    assert_eq!(
        a.spans,
        [(base(&j) + from as usize, (CAP - from) as usize), (0, 0)]
    );
    // A full ring: nothing ahead but, at most, the head's own page.
    while j.append(&line(i)).is_some() {
        i += 1;
    }
    assert!(len(&j.ahead()) <= PAGE as usize, "{:?}", j.ahead());
}

#[test]
fn appends_into_the_range_ahead_take_no_page_fault() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _f) = journal(dir.path(), 4 << 20);
    let lines: Vec<Vec<u8>> = (0..200).map(line).collect();
    // Without the range faulted in, the worker's copies fault: about one in six.
    let before = thread_minor_faults();
    for l in &lines[..100] {
        j.append(l).expect("room");
    }
    let faulted = thread_minor_faults() - before;
    assert!(faulted >= 8, "{faulted} faults in 100 appends");
    // With it, none.
    let a = j.ahead();
    assert!(len(&a) as u64 >= AHEAD - PAGE, "{a:?}");
    a.populate().expect("MADV_POPULATE_WRITE (Linux 5.14)");
    let before = thread_minor_faults();
    for l in &lines[100..] {
        j.append(l).expect("room");
    }
    assert_eq!(thread_minor_faults() - before, 0, "faults after populate");
}
