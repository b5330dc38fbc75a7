//! What the usage journal's recovery holds in memory: in proportion to what it recovers, not
//! to the ring or the log. A relay adopting a dead relay's journal does it on its writer
//! thread while it serves; at the default 16 MiB ring the recovery used to read the whole
//! journal and the log's last 16 MiB into the heap (this test measured a 51.8 MB peak that
//! way; 90 KB now).
//!
//! The peak is measured with a counting global allocator, so this binary holds one test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use tollgate::metering::journal::{Journal, Recovered};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const RING: u64 = 16 << 20;

/// A usage record's line, ~600 bytes (the bench's records average 625–630).
fn line(id: &str) -> Vec<u8> {
    format!(
        r#"{{"response_id":"{id}","model":"gpt-5-mini","pad":"{}"}}"#,
        "x".repeat(540)
    )
    .into_bytes()
}

fn append(log: &mut File, id: &str) {
    let mut l = line(id);
    l.push(b'\n');
    log.write_all(&l).expect("log write");
}

fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .expect("log")
}

#[test]
fn recovering_a_dead_16_mib_journal_holds_what_it_recovers_not_the_ring_or_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("usage.jsonl");
    let mut log = open_log(&path);
    // 20 MiB of records already in the log: more than the window recovery looks at.
    let mut n = 0;
    while log.metadata().expect("len").len() < 20 << 20 {
        append(&mut log, &format!("resp_old_{n}"));
        n += 1;
    }
    let (mut dead, none) = Journal::open(RING, &mut log, &path).expect("journal");
    assert_eq!(none, Recovered::default());
    // 200 records journaled; the writer appended the first 120 to the log and died before it
    // moved `written`; the last 80 it never wrote.
    for i in 0..200 {
        dead.append(&line(&format!("resp_new_{i}"))).expect("room");
    }
    for i in 0..120 {
        append(&mut log, &format!("resp_new_{i}"));
    }
    // The process dies: its lock goes, its journal stays.
    drop(dead);
    drop(log);

    let mut log = open_log(&path);
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let (next, recovered) = Journal::open(RING, &mut log, &path).expect("recover");
    let peak = PEAK.load(Ordering::Relaxed) - before;
    eprintln!("recovery's heap peak: {peak} bytes");
    assert_eq!(
        recovered,
        Recovered {
            found: 200,
            appended: 80,
            bytes: (120..200)
                .map(|i| line(&format!("resp_new_{i}")).len() as u64 + 1)
                .sum(),
            end: Some(std::fs::metadata(&path).expect("log").len()),
        }
    );
    // Each record in the log once.
    let text = std::fs::read_to_string(&path).expect("read log");
    for i in 0..200 {
        let id = format!("\"resp_new_{i}\"");
        assert_eq!(text.matches(&id).count(), 1, "{id} once in the log");
    }
    // The ids and the 80 lines appended (~48 KB), a 64 KiB read buffer and the journal's
    // path: well under 1 MiB. Reading the ring and the log's tail would be over 32 MiB.
    assert!(peak < 1 << 20, "recovery's heap peak {peak} bytes");
    next.remove().expect("remove journal");
}
