//! What an append to the usage log costs the writer thread, per group commit: a plain
//! `write_all` of one record's line (what the writer did before `metering::append`) against
//! `append_lines` with the log's end tracked (the `flock`s, `fstat`s and `lseek` it adds; the
//! log not changed by anyone else, so no `pread`). No fsync in either: a commit's
//! `fdatasync` (~0.2 ms on this VM) is the same for both.
//!
//! The file is in `target/` (the disk a relay's log would be on, not a tmpfs), truncated
//! every 4,096 appends, untimed (after a truncation the tracked end is stale, but the log is
//! empty, so no byte is read).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate::metering::append::append_lines;

/// A bench-sized record line (the bench's records average 625–630 bytes).
fn line() -> Vec<u8> {
    let mut l = vec![b'x'; 629];
    l.push(b'\n');
    l
}

fn log() -> (PathBuf, File) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("bench-append.jsonl");
    let f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .expect("log in target/");
    f.set_len(0).expect("truncate");
    (path, f)
}

/// Appends per timed chunk; the log is truncated between chunks (not timed), so it stays
/// under 3 MB however many iterations criterion asks for.
const CHUNK: u64 = 4096;

/// Times `iters` calls of `one`, truncating `f` every [`CHUNK`] of them.
fn timed(f: &File, iters: u64, mut one: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        f.set_len(0).expect("truncate");
        let t = Instant::now();
        for _ in 0..n {
            one();
        }
        total += t.elapsed();
        left -= n;
    }
    total
}

fn append(c: &mut Criterion) {
    let l = line();
    let (path, f) = log();
    c.bench_function("append/write_all", |b| {
        b.iter_custom(|iters| timed(&f, iters, || (&f).write_all(&l).expect("write")))
    });
    c.bench_function("append/append_lines", |b| {
        b.iter_custom(|iters| {
            let mut end = None;
            timed(&f, iters, || {
                end = append_lines(&f, &l, end).expect("append").end;
            })
        })
    });
    drop(f);
    let _ = std::fs::remove_file(path);
}

criterion_group!(benches, append);
criterion_main!(benches);
