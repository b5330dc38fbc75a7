//! Masking throughput: the word-at-a-time kernel against its byte-at-a-time twin, at a typical
//! delta event (200 B), a read-buffer-sized chunk (4 KiB) and a large terminal event (64 KiB).
//! A non-zero offset keeps the key-rotation path honest.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tollgate::ws::mask::{apply_mask, apply_mask_scalar};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn bench_mask(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask");
    for size in [200usize, 4 * 1024, 64 * 1024] {
        let mut buf: Vec<u8> = (0..size).map(|i| i as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("fast", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY), black_box(1)))
        });
        group.bench_with_input(BenchmarkId::new("scalar", size), &size, |b, _| {
            b.iter(|| apply_mask_scalar(black_box(&mut buf), black_box(KEY), black_box(1)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_mask);
criterion_main!(benches);
