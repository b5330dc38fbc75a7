//! What a worker's copy of one record into the usage journal costs (`Journal::append`, under
//! the sink's queue lock on the worker), with the ring's next pages left to fault on the
//! worker's stores against faulted in beforehand by the writer thread (`Journal::ahead`,
//! `Ahead::populate`).
//!
//! The journal is in `target/` (the disk a relay's log would be on, not a tmpfs, so the
//! faults include ext4's `page_mkwrite`), with the default 16 MiB ring. Untimed between
//! chunks, as the writer does between its rounds: the entries are marked written (their
//! pages leave the mapping) and, for `prefaulted`, the range ahead is faulted in.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate::metering::journal::Journal;

/// A bench-sized record line (the bench's records average 625–630 bytes).
fn line() -> Vec<u8> {
    format!(r#"{{"response_id":"resp_1","pad":"{}"}}"#, "x".repeat(590)).into_bytes()
}

/// Appends per timed chunk: ~320 KB, inside the 512 KiB range ahead.
const CHUNK: u64 = 512;

fn journal(c: &mut Criterion) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-journal");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir in target/");
    let log = dir.join("usage.jsonl");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&log)
        .expect("log");
    let (mut j, _) = Journal::open(16 << 20, &mut f, &log).expect("journal");
    let l = line();
    for (name, prefault) in [
        ("journal/append_faulting", false),
        ("journal/append_prefaulted", true),
    ] {
        c.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(CHUNK);
                    j.set_written(j.head());
                    if prefault {
                        j.ahead().populate().expect("MADV_POPULATE_WRITE");
                    }
                    let t = Instant::now();
                    for _ in 0..n {
                        j.append(&l).expect("room");
                    }
                    total += t.elapsed();
                    left -= n;
                }
                total
            })
        });
    }
    drop(j);
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, journal);
criterion_main!(benches);
