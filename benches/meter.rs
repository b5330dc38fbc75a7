//! What metering costs per response on the worker, without sockets: the events one response
//! produces (`response.create` → `response.created` → the first delta for TTFT →
//! `response.completed` with usage) handed to a [`SessionMeter`] that counts the per-worker
//! metrics and hands its record to the sink: `meter/response` to a real usage log (the
//! writer thread fsyncs a file in a temporary directory), `meter/response_no_log` to a
//! disabled sink (the worker's part alone). The tap's own cost is in `benches/tap.rs`; this
//! is what happens after it: the record, the provider's raw usage, the labelled counters and
//! the sink.
//!
//! Run: `cargo bench --bench meter`.

use std::hint::black_box;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use tollgate::metering::session::SessionMeter;
use tollgate::metering::sink::{Sink, SinkConfig, SinkPath};
use tollgate::metrics::{Registry, WorkerMetrics};
use tollgate::tap::{TapEvent, Terminal, TerminalKind, Usage};

// The relay's allocator (src/main.rs): this bench is mostly allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = r#"{"input_tokens":1830,"input_tokens_details":{"cached_tokens":1536},"output_tokens":412,"output_tokens_details":{"reasoning_tokens":128},"total_tokens":2242}"#;

/// The events of response number `n`, as the tap hands them over.
fn events(n: u64) -> [TapEvent; 4] {
    let id = format!("resp_{n:024x}");
    [
        TapEvent::Create {
            model: Some("gpt-5".into()),
            stream_id: None,
            generate: None,
        },
        TapEvent::Created {
            response_id: id.clone(),
            stream_id: None,
            model: Some("gpt-5-2026-08-07".into()),
        },
        TapEvent::Delta { stream_id: None },
        TapEvent::Terminal(Box::new(Terminal {
            event: TerminalKind::Completed,
            response_id: id,
            model: Some("gpt-5-2026-08-07".into()),
            status: Some("completed".into()),
            service_tier: Some("default".into()),
            stream_id: None,
            usage: Some(Usage {
                input_tokens: 1830,
                cached_tokens: 1536,
                output_tokens: 412,
                reasoning_tokens: 128,
                total_tokens: 2242,
            }),
            usage_raw: Some(USAGE.into()),
        })),
    ]
}

fn response(c: &mut Criterion) {
    let mut g = c.benchmark_group("meter");
    g.measurement_time(Duration::from_secs(3)).sample_size(50);
    let tmp = tempfile::tempdir().expect("tempdir");
    // `response`: records go to a usage log (its writer thread on the other core, as in the
    // relay; the group commits make this one noisier). `response_no_log`: the worker's part
    // alone — the record is built and counted, then dropped by a disabled sink.
    for (name, path) in [
        ("response", SinkPath::File(tmp.path().join("usage.jsonl"))),
        ("response_no_log", SinkPath::Disabled),
    ] {
        let registry = Arc::new(Registry::new());
        let sink = Sink::start(SinkConfig::new(path), registry.sink_metrics()).expect("usage log");
        let mut meter = SessionMeter::new(
            7,
            Arc::from("acme"),
            Arc::from("wss://api.openai.com"),
            sink.handle(),
        )
        .with_route(Arc::from("openai"))
        .with_metrics(Rc::new(WorkerMetrics::new(registry.clone())));
        let mut n = 0u64;
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    n += 1;
                    events(n)
                },
                |[create, created, delta, terminal]| {
                    let now = Instant::now();
                    meter.on_client(&create, now);
                    let _ = meter.on_upstream(&created, now);
                    let _ = meter.on_upstream(&delta, now);
                    black_box(meter.on_upstream(&terminal, now)).expect("sink accepts");
                },
                BatchSize::SmallInput,
            )
        });
        drop(meter);
        let stats = sink.shutdown().expect("sink shutdown");
        assert!(stats.not_durable.is_empty(), "every record durable");
    }
    g.finish();
}

criterion_group!(benches, response);
criterion_main!(benches);
