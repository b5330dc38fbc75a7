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
                    .walk(black_box(&mut buf), &mut tap, &mut |_, _| events += 1)
                    .expect("valid frames");
                black_box((w.ready, events))
            })
        });
    }
    g.finish();
}

/// UTF-8 validation alone, `simdutf8`'s AVX2 kernel against tollgate's dispatch (its own
/// AVX-512 or AVX2 kernel, whichever the CPU has): every delta payload of the fixture one
/// call each (the relay's per-frame shape), payloads shaped like the mock upstream's deltas
/// (random, one call each; with its words and ASCII only), the same text as one 64 KiB
/// chunk (a large event), and the streaming validator over mixed text in ~16 KB reads cut
/// inside characters (`stream_16k`).
fn utf8(c: &mut Criterion) {
    let text = std::fs::read_to_string(FIXTURE).expect("fixture");
    let deltas: Vec<&[u8]> = text
        .lines()
        .filter(|l| l.contains(".delta\""))
        .map(str::as_bytes)
        .collect();
    let mut large = Vec::new();
    while large.len() < 64 << 10 {
        large.extend_from_slice(text.as_bytes());
    }
    let cut = large
        .iter()
        .take(64 << 10)
        .rposition(|&b| b < 0x80)
        .unwrap_or(0);
    large.truncate(cut);
    // The mock upstream's kind of text: a non-ASCII character every ~17 bytes (4 in 70).
    let mixed = "token relay café ☃ quoted edge lane 🚀 usage frame socket naïve ".repeat(1000);
    // The mock upstream's delta frames (`loadtest/src/mock/events.rs`, its words as they are
    // on the wire): an ASCII envelope around 4–15 words drawn at random, ~160–240 bytes each,
    // one call per payload; 4,096 of them, so a branch predictor cannot learn their pattern
    // of ASCII blocks. `frames` uses the mock's words (one payload in seven all ASCII),
    // `frames_ascii` the same with its three non-ASCII words swapped for ASCII ones.
    let mock_words = [
        " token",
        " relay",
        " café",
        " ☃",
        " \\\"quoted\\\"",
        " edge",
        " back\\\\slash",
        " lane",
        " 🚀",
        " tab\\t",
        " usage",
        " newline\\n",
        " frame",
        " socket",
    ];
    let ascii_words = mock_words.map(|w| match w {
        " café" => " cafe",
        " ☃" => " the",
        " 🚀" => " of",
        w => w,
    });
    let random_frames = |words: &[&str]| -> Vec<Vec<u8>> {
        let mut rng = fastrand::Rng::with_seed(0x6672_616d);
        (0..4096)
            .map(|i| {
                let text: String = (0..rng.usize(4..16))
                    .map(|_| words[rng.usize(..words.len())])
                    .collect();
                format!(
                    "{{\"type\":\"response.output_text.delta\",\"item_id\":\"msg_0123456789abcdef\",\
                     \"output_index\":0,\"content_index\":0,\"delta\":\"{text}\",\
                     \"sequence_number\":{}}}",
                    i + 4
                )
                .into_bytes()
            })
            .collect()
    };
    let frame_sets = [
        ("frames", random_frames(&mock_words)),
        ("frames_ascii", random_frames(&ascii_words)),
    ];
    let mut g = c.benchmark_group("utf8");
    g.measurement_time(Duration::from_secs(3)).sample_size(30);
    type Kernel = fn(&[u8]) -> bool;
    let kernels: [(&str, Kernel); 2] = [
        ("simdutf8", |b| simdutf8::basic::from_utf8(b).is_ok()),
        ("tollgate", tollgate::ws::utf8_simd::is_valid),
    ];
    for (name, f) in kernels {
        g.throughput(Throughput::Bytes(
            deltas.iter().map(|d| d.len() as u64).sum(),
        ));
        g.bench_function(format!("deltas/{name}"), |b| {
            b.iter(|| deltas.iter().all(|d| f(black_box(d))))
        });
        for (set, frames) in &frame_sets {
            g.throughput(Throughput::Bytes(
                frames.iter().map(|d| d.len() as u64).sum(),
            ));
            g.bench_function(format!("{set}/{name}"), |b| {
                b.iter(|| frames.iter().all(|d| f(black_box(d))))
            });
        }
        g.throughput(Throughput::Bytes(large.len() as u64));
        g.bench_function(format!("large/{name}"), |b| b.iter(|| f(black_box(&large))));
        g.throughput(Throughput::Bytes(mixed.len() as u64));
        g.bench_function(format!("mixed/{name}"), |b| {
            b.iter(|| f(black_box(mixed.as_bytes())))
        });
    }
    // The streaming validator over the mixed text in reads of ~16 KB that each end inside a
    // character (a large done event of a response arrives in such reads).
    let text = mixed.as_bytes();
    let mut reads = Vec::new();
    let mut from = 0;
    while from < text.len() {
        let mut to = (from + 16_000).min(text.len());
        while to < text.len() && text[to] & 0xC0 != 0x80 {
            to += 1;
        }
        reads.push(&text[from..to]);
        from = to;
    }
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("stream_16k/tollgate", |b| {
        let mut v = tollgate::ws::utf8::Utf8Validator::new();
        b.iter(|| {
            let ok = reads.iter().all(|r| v.feed(black_box(r)).is_ok());
            black_box(ok && v.finish().is_ok())
        })
    });
    g.finish();
}

criterion_group!(benches, bench, utf8);
criterion_main!(benches);
