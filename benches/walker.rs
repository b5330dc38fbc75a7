//! Per-frame cost of the relay's hot path without sockets: the frame walker (header parse,
//! sequencing, UTF-8 check) plus the tap, over a 64 KiB read buffer full of the `basic`
//! fixture's server frames (≈190-byte deltas), and over client frames that must be
//! unmasked and re-masked. This is the CPU the relay adds over a byte tunnel, per frame.
//!
//! Run: `cargo bench --bench walker`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tollgate::relay::walker::Walker;
use tollgate::tap::{Direction, Tap};
use tollgate::ws::frame::{encode_frame, Opcode, Role};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/responses-ws/basic.upstream.jsonl"
);

/// Frames of every fixture line, repeated until the buffer is ~64 KiB; returns (bytes, frames).
fn buffer(mask: bool) -> (Vec<u8>, u64) {
    let text = std::fs::read_to_string(FIXTURE).expect("fixture");
    let mut out = Vec::new();
    let mut n = 0;
    'fill: loop {
        for line in text.lines().filter(|l| l.contains(".delta\"")) {
            encode_frame(
                &mut out,
                Opcode::Text,
                line.as_bytes(),
                mask.then_some([1, 2, 3, 4]),
            );
            n += 1;
            if out.len() > 60 << 10 {
                break 'fill;
            }
        }
    }
    (out, n)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("walker");
    g.measurement_time(Duration::from_secs(3)).sample_size(30);
    for (name, sender, dir) in [
        ("server_deltas", Role::Server, Direction::UpstreamToClient),
        ("client_masked", Role::Client, Direction::ClientToUpstream),
    ] {
        let (wire, frames) = buffer(sender == Role::Client);
        g.throughput(Throughput::Elements(frames));
        g.bench_function(name, |b| {
            let mut walker = Walker::new(sender, 16 << 20, 64 << 20, 4096);
            let mut tap = Tap::new(dir, 64 << 20);
            let mut buf = wire.clone();
            b.iter(|| {
                // Client frames get re-masked in place; restore the wire bytes each round.
                buf.copy_from_slice(&wire);
                let mut events = 0u32;
                let w = walker
                    .walk(black_box(&mut buf), &mut tap, &mut |_| events += 1)
                    .expect("valid frames");
                black_box((w.ready, events))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
