//! The `walker` fuzz target's seeds (fuzz/seeds/walker/, written by
//! `scripts/walker-seeds.py` from tests/fixtures/responses-ws/): they are what the script
//! writes today, and each is a stream the real walker accepts — in one read and in reads
//! cut at a few bytes — ending in a close 1000, with the fixture's usage in it. A seed that
//! drifted from the fixtures, or that the walker refuses, would start the fuzzer from
//! inputs that stop at the first error instead of reaching the tap.

use std::path::{Path, PathBuf};
use std::process::Command;

use tollgate::relay::walker::Walker;
use tollgate::tap::{Direction, Tap, TapEvent};
use tollgate::ws::frame::Role;

/// The fuzz target's limits (fuzz/fuzz_targets/walker.rs).
const MAX_FRAME: u64 = 1 << 20;
const MAX_MESSAGE: u64 = 1 << 20;
const MAX_FRAGMENTS: u32 = 64;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn seeds_dir() -> PathBuf {
    root().join("fuzz/seeds/walker")
}

/// Every file of `dir`, by name, sorted.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("seed dir")
        .map(|e| {
            let path = e.expect("dir entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("read seed"))
        })
        .collect();
    out.sort();
    out
}

#[derive(Debug, Default)]
struct Walk {
    frames: u64,
    messages: usize,
    close: Option<Option<u16>>,
    events: Vec<TapEvent>,
}

/// Walks `stream` in reads of `cut` bytes as a leg does: what a walk did not hand on stays
/// at the front of the next buffer; a held message is handed on and the walk resumes.
fn walk(client: bool, hold: bool, stream: &[u8], cut: usize) -> Walk {
    let (role, dir) = if client {
        (Role::Client, Direction::ClientToUpstream)
    } else {
        (Role::Server, Direction::UpstreamToClient)
    };
    let mut w = Walker::new(role, MAX_FRAME, MAX_MESSAGE, MAX_FRAGMENTS).with_hold(hold);
    let mut tap = Tap::new(dir, MAX_MESSAGE as usize);
    let mut out = Walk::default();
    let mut buf = Vec::new();
    for read in stream.chunks(cut) {
        buf.extend_from_slice(read);
        loop {
            let mut events = Vec::new();
            let walked = w
                .walk(&mut buf, &mut tap, &mut |ev, _| events.push(ev))
                .unwrap_or_else(|e| panic!("the walker refused the seed: {e}"));
            out.events.extend(events);
            out.frames += walked.frames;
            if walked.close.is_some() {
                out.close = walked.close.map(|c| c.code);
                assert_eq!(walked.ready, buf.len(), "bytes after the close");
                return out;
            }
            if walked.message.is_some() {
                out.messages += 1;
            }
            buf.drain(..walked.ready);
            if walked.message.is_none() || buf.is_empty() {
                break;
            }
        }
    }
    out
}

/// The fixture's `key` values, in order, from its expected usage records.
fn expected(fixture: &str, key: &str) -> Vec<String> {
    let path = root().join(format!(
        "tests/fixtures/responses-ws/{fixture}.expected.json"
    ));
    let text = std::fs::read_to_string(path).expect("expected.json");
    let records: Vec<serde_json::Value> = serde_json::from_str(&text).expect("json");
    records
        .iter()
        .map(|r| r[key].as_str().expect("a string").to_owned())
        .collect()
}

/// How many of the fixture's client messages are `response.create`.
fn creates(fixture: &str) -> usize {
    let path = root().join(format!(
        "tests/fixtures/responses-ws/{fixture}.client.jsonl"
    ));
    std::fs::read_to_string(path)
        .expect("client.jsonl")
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["type"] == "response.create"
        })
        .count()
}

#[test]
fn the_script_writes_the_committed_seeds() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = Command::new("python3")
        .arg(root().join("scripts/walker-seeds.py"))
        .arg(tmp.path())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (made, kept) = (files(tmp.path()), files(&seeds_dir()));
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&made), names(&kept), "run scripts/walker-seeds.py");
    for ((name, a), (_, b)) in made.iter().zip(&kept) {
        assert!(
            a == b,
            "{name} differs from what scripts/walker-seeds.py writes"
        );
    }
}

#[test]
fn every_seed_walks_clean_and_carries_its_fixtures_usage() {
    let seeds = files(&seeds_dir());
    assert!(seeds.len() >= 28, "only {} seeds", seeds.len());
    for (name, data) in &seeds {
        let [ctl, _limit, stream @ ..] = data.as_slice() else {
            panic!("{name}: shorter than its two control bytes");
        };
        let client = ctl & 1 == 1;
        let hold = client && ctl & 2 != 0;
        let fixture = name
            .strip_suffix("-up-frag")
            .or_else(|| name.strip_suffix("-up"))
            .or_else(|| name.strip_suffix("-client-hold"))
            .or_else(|| name.strip_suffix("-client"))
            .unwrap_or_else(|| panic!("{name}: not NAME-up[-frag] or NAME-client[-hold]"));
        assert_eq!(client, name.contains("-client"), "{name}: sender bit");
        let whole = walk(client, hold, stream, stream.len());
        assert_eq!(
            whole.close,
            Some(Some(1000)),
            "{name}: no close 1000 at its end"
        );
        for cut in [1, 7, 64] {
            let split = walk(client, hold, stream, cut);
            assert_eq!(
                split.events, whole.events,
                "{name}: events in reads of {cut}"
            );
            assert_eq!(
                split.frames, whole.frames,
                "{name}: frames in reads of {cut}"
            );
            assert_eq!(split.close, whole.close, "{name}: close in reads of {cut}");
        }
        if client {
            let made = whole
                .events
                .iter()
                .filter(|e| matches!(e, TapEvent::Create { .. }))
                .count();
            assert_eq!(made, creates(fixture), "{name}: response.create events");
            if hold {
                assert!(
                    whole.messages > 0,
                    "{name}: no message handed on in hold mode"
                );
            }
        } else {
            let ids: Vec<String> = whole
                .events
                .iter()
                .filter_map(|e| match e {
                    TapEvent::Terminal(t) => Some(t.response_id.clone()),
                    _ => None,
                })
                .collect();
            assert_eq!(
                ids,
                expected(fixture, "response_id"),
                "{name}: terminal events"
            );
        }
    }
}
