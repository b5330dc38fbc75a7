use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::*;
use crate::metering::tests::mapped_rss_kib;

const CAP: u64 = 64 << 10;
/// The "process" a test's journal belongs to.
const ME: u32 = 1;

fn line(id: usize, pad: usize) -> Vec<u8> {
    format!(
        r#"{{"response_id":"resp_{id}","pad":"{}"}}"#,
        "x".repeat(pad)
    )
    .into_bytes()
}

/// The log at `path`, opened as the sink opens it (created, appended to, readable).
pub(super) fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .expect("log")
}

fn ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read log")
        .lines()
        .map(|l| response_id(l.as_bytes()).expect("a record line"))
        .collect()
}

/// A journal for `dir/usage.jsonl` (process [`ME`]) and its (empty or given) log.
fn fresh(dir: &Path, log_lines: &[Vec<u8>]) -> (Journal, File) {
    let log = dir.join("usage.jsonl");
    let mut f = open_log(&log);
    for l in log_lines {
        f.write_all(l).unwrap();
        f.write_all(b"\n").unwrap();
    }
    let (j, r) = Journal::open_as(ME, CAP, &mut f, &log).expect("open");
    assert_eq!(r, Recovered::default());
    (j, f)
}

/// What the next start finds after the process that had `j` was killed: its lock and
/// mapping gone, its pages in the file.
fn restart(dir: &Path, j: Journal) -> (Journal, Recovered) {
    let dead = j.path.clone();
    let id: u32 = dead
        .extension()
        .and_then(|e| e.to_str())
        .and_then(|e| e.parse().ok())
        .expect("<log>.journal.<id>");
    drop(j);
    let log = dir.join("usage.jsonl");
    let mut f = open_log(&log);
    let next = Journal::open_as(id + 1, CAP, &mut f, &log).expect("reopen");
    assert!(!dead.exists(), "a recovered journal is deleted");
    next
}

#[test]
fn unwritten_records_reach_the_log_at_the_next_start_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _f) = fresh(dir.path(), &[line(0, 10)]);
    let mut after = Vec::new();
    for i in 1..=5 {
        after.push(j.append(&line(i, 100)).expect("room"));
    }
    // The writer appended records 1 and 2 and freed their entries; 3 it appended but died
    // before freeing it; 4 and 5 it never wrote.
    let log = dir.path().join("usage.jsonl");
    let mut f = open_log(&log);
    for i in 1..=3 {
        f.write_all(&line(i, 100)).unwrap();
        f.write_all(b"\n").unwrap();
    }
    j.set_written(after[1]);
    let (j, r) = restart(dir.path(), j);
    assert_eq!(
        r,
        Recovered {
            found: 3,
            appended: 2,
            bytes: (line(4, 100).len() + line(5, 100).len() + 2) as u64,
            end: Some(std::fs::metadata(&log).unwrap().len()),
        }
    );
    let want: Vec<String> = (0..=5).map(|i| format!("resp_{i}")).collect();
    assert_eq!(ids(&log), want);
    // The journal was deleted: a second restart finds nothing more.
    assert_eq!(restart(dir.path(), j).1, Recovered::default());
    assert_eq!(ids(&log), want);
}

#[test]
fn entries_wrap_around_the_ring_and_stale_laps_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _f) = fresh(dir.path(), &[]);
    // 1,056-byte entries, 62 per lap (entries 186.. start the fourth lap, behind a wrap
    // marker in the third's last 64 bytes); the writer keeps up until the last eight, which
    // straddle that marker.
    let n = 190;
    let mut ends = Vec::new();
    for i in 0..n {
        ends.push(
            j.append(&line(i, 1000))
                .expect("room while the writer keeps up"),
        );
        if i + 8 < n {
            j.set_written(ends[i]);
        }
    }
    assert!(j.head() > 3 * CAP, "three laps");
    let (_, r) = restart(dir.path(), j);
    assert_eq!(
        r.found, 8,
        "the entries after the last freed one, across the wrap"
    );
    let want: Vec<String> = (n - 8..n).map(|i| format!("resp_{i}")).collect();
    assert_eq!(ids(&dir.path().join("usage.jsonl")), want);
}

#[test]
fn a_full_ring_refuses_until_the_writer_frees_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _f) = fresh(dir.path(), &[]);
    let mut ends = Vec::new();
    while let Some(end) = j.append(&line(ends.len(), 1000)) {
        ends.push(end);
    }
    // 1,056-byte entries: 62 fit in 64 KiB (the 63rd would need the ring's last 64 bytes
    // and the next lap's first entry's room).
    assert_eq!(ends.len(), (CAP / 1056) as usize);
    assert!(j.append(&line(999, 1000)).is_none());
    j.set_written(ends[0]);
    assert!(
        j.append(&line(999, 1000)).is_some(),
        "one freed entry makes room for one"
    );
    assert!(j.append(&line(1000, 1000)).is_none());
}

#[test]
fn a_torn_last_entry_is_dropped_and_the_ones_before_it_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _f) = fresh(dir.path(), &[]);
    for i in 0..3 {
        j.append(&line(i, 50)).unwrap();
    }
    // The process died while copying the third entry: a byte of it never arrived.
    let size = align8((ENTRY_HEAD + line(0, 50).len()) as u64) as usize;
    let last = HEADER + 2 * size + ENTRY_HEAD + 10;
    j.map[last] ^= 0x55;
    let (_, r) = restart(dir.path(), j);
    assert_eq!(r.found, 2);
    assert_eq!(
        ids(&dir.path().join("usage.jsonl")),
        vec!["resp_0".to_string(), "resp_1".to_string()]
    );
}

#[test]
fn a_file_that_is_not_a_journal_is_deleted_without_recovering_anything() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("usage.jsonl");
    std::fs::write(journal_path(&log, 77), b"not a journal at all").unwrap();
    let mut f = open_log(&log);
    let (mut j, r) = Journal::open_as(ME, CAP, &mut f, &log).unwrap();
    assert_eq!(r, Recovered::default());
    assert!(!journal_path(&log, 77).exists());
    assert!(j.append(&line(1, 10)).is_some());
    assert_eq!(
        std::fs::metadata(journal_path(&log, ME)).unwrap().len(),
        HEADER as u64 + CAP
    );
    assert_eq!(std::fs::read(&log).unwrap(), b"", "nothing appended");
}

#[test]
fn a_live_relays_journal_is_left_alone_and_recovered_once_it_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (mut old, _f) = fresh(dir.path(), &[]);
    old.append(&line(1, 10)).unwrap();
    old.append(&line(2, 10)).unwrap();
    // A second relay on the same log while the first still runs (an overlapping restart).
    let log = dir.path().join("usage.jsonl");
    let mut f = open_log(&log);
    let (new, r) = Journal::open_as(ME + 10, CAP, &mut f, &log).unwrap();
    assert_eq!(r, Recovered::default(), "the live journal is not read");
    assert!(journal_path(&log, ME).exists(), "nor deleted");
    assert_eq!(std::fs::read(&log).unwrap(), b"");
    // The first dies; the next start appends its records, and leaves the second's alone.
    drop(old);
    let (_third, r) = Journal::open_as(ME + 20, CAP, &mut f, &log).unwrap();
    assert_eq!(r.appended, 2);
    assert_eq!(ids(&log), vec!["resp_1", "resp_2"]);
    assert!(!journal_path(&log, ME).exists());
    assert!(journal_path(&log, ME + 10).exists());
    // A clean stop deletes its own journal.
    new.remove().unwrap();
    assert!(!journal_path(&log, ME + 10).exists());
}

#[test]
fn a_ring_under_64_kib_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("usage.jsonl");
    let mut f = open_log(&log);
    assert!(matches!(
        Journal::open_as(ME, 4096, &mut f, &log),
        Err(JournalError::TooSmall(4096))
    ));
}

/// The resident KiB of this process's mapping of `path` (`/proc/self/smaps`).
#[test]
fn written_pages_leave_the_resident_set_and_unwritten_ones_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _f) = fresh(dir.path(), &[]);
    let path = journal_path(&dir.path().join("usage.jsonl"), ME);
    let mut ends = Vec::new();
    for i in 0..50 {
        ends.push(j.append(&line(i, 1000)).unwrap());
    }
    let touched = mapped_rss_kib(&path);
    assert!(touched >= 50, "50 KiB of entries resident: {touched} KiB");
    // All but the last two written: the pages before the written mark are released.
    j.set_written(ends[47]);
    let left = mapped_rss_kib(&path);
    assert!(
        left <= 12,
        "header and the last pages only: {left} KiB of {touched}"
    );
    // The unwritten entries — one of them partly on a released page's neighbour — are
    // intact, and new ones go on being written.
    j.append(&line(50, 1000)).unwrap();
    let (_, r) = restart(dir.path(), j);
    assert_eq!(r.found, 3);
    assert_eq!(
        ids(&dir.path().join("usage.jsonl")),
        vec!["resp_48", "resp_49", "resp_50"]
    );
}

#[test]
fn a_corrupt_header_recovers_nothing_and_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("usage.jsonl");
    let mut bytes = vec![0u8; HEADER + CAP as usize];
    bytes[..8].copy_from_slice(MAGIC);
    bytes[CAPACITY_AT..CAPACITY_AT + 8].copy_from_slice(&CAP.to_le_bytes());
    // A `written` mark 10 short of the end of the position space, in the ring's last 11
    // bytes: skipping them to the next lap would overflow.
    let written = u64::MAX - 10;
    assert!(CAP - written % CAP < ENTRY_HEAD as u64);
    bytes[WRITTEN_AT..WRITTEN_AT + 8].copy_from_slice(&written.to_le_bytes());
    std::fs::write(journal_path(&log, 99), &bytes).unwrap();
    let mut f = open_log(&log);
    let (_j, r) = Journal::open_as(ME, CAP, &mut f, &log).unwrap();
    assert_eq!(r, Recovered::default());
    assert!(!journal_path(&log, 99).exists());
}

#[test]
fn adoption_takes_a_journal_whose_relay_died_beside_this_one_and_never_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("usage.jsonl");
    // This relay, with a record its writer has not written yet.
    let (mut mine, mut f) = fresh(dir.path(), &[line(0, 10)]);
    mine.append(&line(1, 10)).unwrap();
    // A second relay on the same log, with two unwritten records, then killed.
    let mut g = open_log(&log);
    let (mut other, _) = Journal::open_as(ME + 10, CAP, &mut g, &log).unwrap();
    other.append(&line(2, 10)).unwrap();
    other.append(&line(3, 10)).unwrap();
    let len = std::fs::metadata(&log).unwrap().len();
    assert_eq!(
        Journal::adopt(&mut f, &log, None).unwrap(),
        Recovered::default(),
        "it lives"
    );
    drop(other);
    let r = Journal::adopt(&mut f, &log, None).unwrap();
    assert_eq!((r.found, r.appended), (2, 2));
    assert_eq!(
        ids(&log),
        vec!["resp_0", "resp_2", "resp_3"],
        "not this relay's own"
    );
    assert_eq!(std::fs::metadata(&log).unwrap().len(), len + r.bytes);
    assert!(!journal_path(&log, ME + 10).exists());
    assert!(journal_path(&log, ME).exists());
    // Nothing left to adopt; this relay's journal still holds its record, intact.
    assert_eq!(
        Journal::adopt(&mut f, &log, None).unwrap(),
        Recovered::default()
    );
    drop(g);
    let (_next, r) = restart(dir.path(), mine);
    assert_eq!((r.found, r.appended), (1, 1));
    assert_eq!(ids(&log), vec!["resp_0", "resp_2", "resp_3", "resp_1"]);
}

#[test]
fn creating_a_journal_never_truncates_a_file_another_process_holds() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("usage.jsonl");
    // Another process holds a file at this process's journal name (an adopting relay
    // reading a dead journal of a process that had the same pid).
    let path = journal_path(&log, ME);
    std::fs::write(&path, b"held by someone else").unwrap();
    let held = OpenOptions::new().read(true).open(&path).unwrap();
    assert!(try_lock(&held).unwrap());
    let mut f = open_log(&log);
    let t0 = std::time::Instant::now();
    let err = Journal::open_as(ME, CAP, &mut f, &log).unwrap_err();
    assert!(
        matches!(&err, JournalError::Io { source, .. } if source.kind() == io::ErrorKind::WouldBlock),
        "{err}"
    );
    assert!(
        t0.elapsed() >= std::time::Duration::from_millis(500),
        "it waited for the lock"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"held by someone else");
    // Once the holder is done (it deletes what it recovered), the journal is created.
    std::fs::remove_file(&path).unwrap();
    drop(held);
    let (mut j, _) = Journal::open_as(ME, CAP, &mut f, &log).unwrap();
    assert!(j.append(&line(1, 10)).is_some());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), HEADER as u64 + CAP);
}

#[test]
fn two_relays_with_the_same_pid_get_journals_of_their_own() {
    // Two containers sharing the log's directory, each relay pid 1: `open` names a journal
    // by pid and a random part, so the second neither waits for nor touches the first's.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("usage.jsonl");
    let (mut f, mut g) = (open_log(&log), open_log(&log));
    let (mut a, _) = Journal::open(CAP, &mut f, &log).unwrap();
    let t0 = std::time::Instant::now();
    let (mut b, r) = Journal::open(CAP, &mut g, &log).unwrap();
    assert!(
        t0.elapsed() < std::time::Duration::from_millis(500),
        "no wait"
    );
    assert_eq!(r, Recovered::default(), "the first one lives");
    assert_ne!(a.path, b.path);
    let pid = format!("usage.jsonl.journal.{}-", std::process::id());
    for j in [&a, &b] {
        let name = j.path.file_name().and_then(|n| n.to_str()).unwrap();
        assert!(name.starts_with(&pid), "{name}");
        assert_eq!(name.len(), pid.len() + 16, "{name}");
    }
    assert!(a.append(&line(1, 10)).is_some());
    assert!(b.append(&line(2, 10)).is_some());
    // The first dies: the second adopts its record and keeps its own.
    drop(a);
    let r = Journal::adopt(&mut g, &log, None).unwrap();
    assert_eq!((r.found, r.appended), (1, 1));
    assert_eq!(ids(&log), vec!["resp_1"]);
    assert!(b.path.exists());
}

#[test]
fn two_dead_journals_holding_one_record_append_it_once() {
    // Two relays on one log both journaled record 2 (a record is only ever submitted once,
    // but a copied journal or a bug must not double it); record 1 the log already has, past
    // a window that starts mid-line.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("usage.jsonl");
    let big: Vec<Vec<u8>> = (100..400).map(|i| line(i, 300)).collect();
    let (mut a, mut f) = fresh(dir.path(), &big);
    f.write_all(&line(1, 10)).unwrap();
    f.write_all(b"\n").unwrap();
    let (mut b, _) = Journal::open_as(ME + 10, CAP, &mut f, &log).unwrap();
    a.append(&line(1, 10)).unwrap();
    a.append(&line(2, 10)).unwrap();
    b.append(&line(2, 10)).unwrap();
    b.append(&line(3, 10)).unwrap();
    drop((a, b));
    let (_next, r) = Journal::open_as(ME + 20, CAP, &mut f, &log).unwrap();
    assert_eq!((r.found, r.appended), (4, 2));
    let got = ids(&log);
    assert_eq!(got.len(), 300 + 3, "each record once");
    assert_eq!(got[300..], ["resp_1", "resp_2", "resp_3"]);
    assert!(!journal_path(&log, ME).exists() && !journal_path(&log, ME + 10).exists());
}

#[test]
fn adoption_after_a_dead_relays_torn_line_starts_a_new_line_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("usage.jsonl");
    let (_mine, mut f) = fresh(dir.path(), &[line(0, 10)]);
    let mut g = open_log(&log);
    let (mut other, _) = Journal::open_as(ME + 10, CAP, &mut g, &log).unwrap();
    let rec = line(2, 10);
    other.append(&rec).unwrap();
    // Killed mid-write: half the line in the log.
    g.write_all(&rec[..rec.len() / 2]).unwrap();
    drop(other);
    let len = std::fs::metadata(&log).unwrap().len();
    let r = Journal::adopt(&mut f, &log, None).unwrap();
    assert_eq!((r.found, r.appended), (1, 1));
    assert_eq!(
        r.bytes,
        rec.len() as u64 + 2,
        "the record's line and the newline before it"
    );
    let end = std::fs::metadata(&log).unwrap().len();
    assert_eq!((r.end, end), (Some(end), len + r.bytes));
    let text = std::fs::read(&log).unwrap();
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    assert_eq!(
        lines.len(),
        4,
        "record, fragment, record, and after the last newline nothing"
    );
    assert_eq!(lines[1], &rec[..rec.len() / 2]);
    assert_eq!(lines[2], &rec[..]);
}
