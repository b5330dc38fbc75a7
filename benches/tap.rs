//! Tap cost on the fixture traces, next to what a full JSON parse of the same bytes costs.
//!
//! - `tap/deltas`: every `*.delta` line of `basic.upstream.jsonl`, whole messages, fed through
//!   the tap (delta tracking off = the normal case; on = while the meter waits for TTFT), vs
//!   `simd_json::to_owned_value` on a copy vs `serde_json::from_slice::<Value>`.
//! - `tap/terminal`: the `response.completed` event of the `large` fixture (needs
//!   `../shared/fixtures`), the same ways, plus the tap fed in 16 KiB chunks (assembly path).
//! - `tap/terminal_escaped`: a `response.completed` whose 48 KiB output text has an escape
//!   (`\"`, `\\`, `\n`, `\t`) every ~12 bytes and non-ASCII characters — code-heavy output,
//!   and what the load generator's mock sends — the same ways.
//!
//! Run: `cargo bench --bench tap`. Throughput is in bytes of JSON per second.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use tollgate::tap::{Direction, Tap};

const LOCAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/responses-ws");
const SHARED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/responses-ws"
);
const MAX: usize = 64 << 20;

fn lines(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn event_type(line: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("type")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn configure(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, bytes: usize) {
    g.throughput(Throughput::Bytes(bytes as u64));
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));
    g.sample_size(20);
}

/// The same messages through the tap(s) and both full parsers.
fn compare(c: &mut Criterion, group: &str, msgs: &[Vec<u8>]) {
    let bytes: usize = msgs.iter().map(Vec::len).sum();
    println!("{group}: {} messages, {bytes} bytes", msgs.len());
    let mut g = c.benchmark_group(group);
    configure(&mut g, bytes);
    for (name, scalar, track) in [
        ("tap", false, false),
        ("tap_track_deltas", false, true),
        ("tap_scalar", true, false),
    ] {
        g.bench_function(name, |b| {
            let mut tap = if scalar {
                Tap::new_scalar(Direction::UpstreamToClient, MAX)
            } else {
                Tap::new(Direction::UpstreamToClient, MAX)
            };
            tap.set_track_deltas(track);
            b.iter(|| {
                for m in msgs {
                    black_box(tap.feed(black_box(m), true));
                }
            })
        });
    }
    g.bench_function("simd_json_owned_on_copy", |b| {
        let mut copy = Vec::with_capacity(msgs.iter().map(Vec::len).max().unwrap_or(0));
        b.iter(|| {
            for m in msgs {
                copy.clear();
                copy.extend_from_slice(black_box(m));
                black_box(simd_json::to_owned_value(&mut copy).is_ok());
            }
        })
    });
    g.bench_function("serde_json_value", |b| {
        b.iter(|| {
            for m in msgs {
                black_box(serde_json::from_slice::<serde_json::Value>(black_box(m)).is_ok());
            }
        })
    });
    g.finish();
}

fn deltas(c: &mut Criterion) {
    let all = lines(&Path::new(LOCAL).join("basic.upstream.jsonl"));
    let msgs: Vec<Vec<u8>> = all
        .into_iter()
        .filter(|l| event_type(l).ends_with(".delta"))
        .collect();
    compare(c, "tap/deltas", &msgs);
}

fn terminal(c: &mut Criterion) {
    let path = Path::new(SHARED).join("large.upstream.jsonl");
    if !path.exists() {
        println!("NOTICE: {} absent, tap/terminal skipped", path.display());
        return;
    }
    let msgs: Vec<Vec<u8>> = lines(&path)
        .into_iter()
        .filter(|l| event_type(l) == "response.completed")
        .collect();
    compare(c, "tap/terminal", &msgs);
    let mut g = c.benchmark_group("tap/terminal");
    configure(&mut g, msgs.iter().map(Vec::len).sum());
    g.bench_function("tap_chunked_16k", |b| {
        let mut tap = Tap::new(Direction::UpstreamToClient, MAX);
        b.iter(|| {
            for m in &msgs {
                let mut chunks = m.chunks(16 * 1024).peekable();
                while let Some(chunk) = chunks.next() {
                    black_box(tap.feed(black_box(chunk), chunks.peek().is_none()));
                }
            }
        })
    });
    g.finish();
}

/// A terminal event whose output text is escape-dense (see the module docs).
fn escaped_terminal() -> Vec<u8> {
    // An escape (`\"`, `\\`, `\t`, `\n` once serialized) every ~12 bytes, and non-ASCII.
    const PATTERN: &str = " token \"quoted\" café back\\slash ☃ tab\t 🚀 usage newline\n";
    let text = PATTERN.repeat((48 << 10) / PATTERN.len() + 1);
    let event = serde_json::json!({
        "type": "response.completed",
        "response": {
            "id": "resp_0123456789abcdef", "object": "response", "status": "completed",
            "model": "gpt-5", "output": [{"type": "message", "id": "msg_1", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}],
            "usage": {"input_tokens": 12, "output_tokens": 3400, "total_tokens": 3412},
        },
        "sequence_number": 504,
    });
    serde_json::to_vec(&event).expect("serializable")
}

fn terminal_escaped(c: &mut Criterion) {
    compare(c, "tap/terminal_escaped", &[escaped_terminal()]);
}

criterion_group!(benches, deltas, terminal, terminal_escaped);
criterion_main!(benches);
