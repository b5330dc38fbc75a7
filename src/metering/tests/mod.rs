//! Unit tests of metering.

mod reader;
mod record;
mod session;
mod session_ends;
mod session_fixtures;
mod session_steering;
mod shared_log;
mod sink;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::record::{RawUsage, RecordStatus, UsageRecord};

/// A record with every field set, keyed by `id`.
pub(super) fn rec(id: &str) -> UsageRecord {
    UsageRecord {
        ts: "2026-03-01T12:34:56.789Z".to_owned(),
        session: 7,
        tenant: "acme".to_owned(),
        route: "openai".to_owned(),
        upstream: "wss://api.openai.com".to_owned(),
        stream_id: Some("lane-1".to_owned()),
        response_id: id.to_owned(),
        model: Some("gpt-5".to_owned()),
        requested_model: Some("gpt-5".to_owned()),
        status: RecordStatus::Completed,
        input_tokens: 10,
        cached_tokens: 2,
        output_tokens: 5,
        reasoning_tokens: 1,
        total_tokens: 15,
        service_tier: Some("default".to_owned()),
        ttft_ms: Some(12),
        duration_ms: 345,
        usage_final: true,
        usage: RawUsage::from_provider(r#"{"input_tokens":10,"compute_units":3}"#),
    }
}

/// A fresh directory and a log path inside it.
pub(super) fn temp_log() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("usage.jsonl");
    (dir, path)
}

/// A sink's configuration: `path`, a group commit every `interval` or `every` records, a
/// queue of `cap`, no added fsync delay, a 1 MiB journal.
pub(super) fn sink_cfg(
    path: crate::metering::SinkPath,
    interval: Duration,
    every: usize,
    cap: usize,
) -> crate::metering::SinkConfig {
    crate::metering::SinkConfig {
        path,
        fsync_interval: interval,
        fsync_every: every,
        queue_capacity: cap,
        fsync_delay: Duration::ZERO,
        journal_bytes: 1 << 20,
    }
}

/// The records' response ids, in order.
pub(super) fn ids(records: &[UsageRecord]) -> Vec<&str> {
    records.iter().map(|r| r.response_id.as_str()).collect()
}

/// Polls `f` for up to 5 s.
pub(super) fn wait_until(f: impl Fn() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    f()
}

/// KiB of the process's resident set in its mappings of the file at `path` (`/proc/self/smaps`).
pub(super) fn mapped_rss_kib(path: &std::path::Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
    let name = path.to_str().expect("utf8");
    let mut lines = smaps.lines();
    let mut total = 0;
    while let Some(l) = lines.next() {
        if !l.ends_with(name) {
            continue;
        }
        for l in lines.by_ref() {
            if let Some(v) = l.strip_prefix("Rss:") {
                total += v
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .expect("kB");
                break;
            }
        }
    }
    total
}
