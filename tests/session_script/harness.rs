// One session's sans-IO core driven by a script read from bytes, and the promise its usage
// log must keep. Shared, word for word, by the `session` fuzz target
// (fuzz/fuzz_targets/session.rs, which `include!`s this file: hence plain comments, no inner
// attributes) and by `tests/session_script.rs`, which runs it on pseudo-random scripts in
// every `cargo test`. What it checks and the script's format: the fuzz target's header.
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tollgate::config::FrameLimits;
use tollgate::flow::{Direction, Side};
use tollgate::metering::{read_log, RecordStatus, Sink, SinkConfig, SinkPath};
use tollgate::metrics::{Registry, WorkerMetrics};
use tollgate::relay::core::{CoreEnv, Next, SessionCore, SessionLimits};
use tollgate::relay::lifecycle::{Event, PumpEnd};
use tollgate::tap::Budget;
use tollgate::ws::frame::{encode_frame, Opcode};

const IDS: usize = 6;
const LANES: [Option<&str>; 3] = [None, Some("a"), Some("b")];

fn limits() -> SessionLimits {
    SessionLimits {
        frames: FrameLimits {
            max_frame_bytes: 1 << 16,
            max_message_up: 1 << 16,
            max_message_down: 1 << 16,
            max_fragments: 16,
        },
        idle_timeout: Duration::from_secs(300),
        response_timeout: Duration::from_secs(1800),
        orphan_drain_timeout: Duration::from_secs(120),
        slow_consumer_timeout: Duration::from_secs(30),
        max_connection_age: Some(Duration::from_secs(3600)),
        drain_timeout: Duration::from_secs(120),
        debug_panic_model: None,
    }
}

/// A path for one script's usage log, removed once read: memory-backed where there is such
/// a directory, so the sink's fsync costs nothing.
fn log_path() -> PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    static N: AtomicU64 = AtomicU64::new(0);
    let base = BASE.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        if shm.is_dir() {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        }
    });
    let n = N.fetch_add(1, Ordering::Relaxed);
    base.join(format!(
        "tollgate-session-script-{}-{n}.jsonl",
        std::process::id()
    ))
}

/// The input, read a byte at a time (zeros once it runs out).
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn pick(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n
    }
}

/// (input, output) tokens of a terminal event.
type Tokens = (u64, u64);

/// An upstream event queued on a clean stream.
#[derive(Clone, Copy)]
struct Mark {
    /// Offset in the upstream's stream of the frame's end.
    end: usize,
    /// Response index.
    id: usize,
    /// `None` for `response.created`; a terminal event's tokens.
    terminal: Option<Tokens>,
}

/// Bytes on their way to the core from one side, and what the harness knows they carry.
#[derive(Default)]
struct Leg {
    /// Not yet arrived.
    wire: Vec<u8>,
    /// Arrived, kept by the core's last step (its next read starts with them).
    carry: Vec<u8>,
    /// Offset in the side's stream of `carry[0]`.
    consumed: usize,
    /// Raw bytes were queued: what follows may not be read as frames.
    dirty: bool,
    /// The core stopped reading this side (its input ended, or the actions said so).
    stopped: bool,
    /// Upstream only: the events it carries, until the core has walked past them.
    marks: Vec<Mark>,
}

impl Leg {
    fn end(&self) -> usize {
        self.consumed + self.carry.len() + self.wire.len()
    }
}

struct Harness {
    core: SessionCore,
    legs: [Leg; 2],
    now: Instant,
    masks: u32,
    may_drain: bool,
    /// Per response index: a `response.created` reached the core cleanly.
    created: [bool; IDS],
    /// Per response index: the first terminal's (input, output) tokens that reached it.
    terminal: [Option<Tokens>; IDS],
}

impl Harness {
    fn frame(&mut self, side: Side, opcode: Opcode, payload: &[u8]) {
        let mask = (side == Side::Client).then(|| {
            self.masks = self.masks.wrapping_mul(0x9E37_79B1).wrapping_add(1);
            self.masks.to_be_bytes()
        });
        encode_frame(&mut self.legs[side.index()].wire, opcode, payload, mask);
    }

    fn upstream_event(&mut self, json: &str, id: usize, terminal: Option<Tokens>) {
        self.frame(Side::Upstream, Opcode::Text, json.as_bytes());
        let leg = &mut self.legs[1];
        if !leg.dirty {
            let end = leg.end();
            leg.marks.push(Mark { end, id, terminal });
        }
    }

    /// Lets `n` of a side's pending bytes arrive and runs the core on them as an adapter does.
    fn arrive(&mut self, side: Side, n: usize) {
        let i = side.index();
        if self.legs[i].stopped || self.core.ended() {
            return;
        }
        let n = n.min(self.legs[i].wire.len());
        if n == 0 {
            return;
        }
        let leg = &mut self.legs[i];
        leg.carry.extend(leg.wire.drain(..n));
        let dir = match side {
            Side::Client => Direction::ClientToUpstream,
            Side::Upstream => Direction::UpstreamToClient,
        };
        self.core.count_read(dir, n);
        loop {
            let mut buf = std::mem::take(&mut self.legs[i].carry);
            let step = self.core.on_bytes(dir, &mut buf, self.now);
            assert!(
                step.forward <= step.skip && step.skip <= buf.len(),
                "{step:?}"
            );
            let _ = self.core.take_rewritten();
            let _ = self.core.take_outbox();
            buf.drain(..step.skip);
            let leg = &mut self.legs[i];
            leg.consumed += step.skip;
            leg.carry = buf;
            if side == Side::Upstream {
                self.seen_upstream();
            }
            match step.next {
                Next::Read => return,
                Next::Again => continue,
                Next::Ended(end) => {
                    self.legs[i].stopped = true;
                    self.event(Event::Ended(side, end));
                    return;
                }
                Next::Drained => {
                    self.event(Event::Drained);
                    return;
                }
            }
        }
    }

    /// Upstream frames the core has walked past: their events reached the meter.
    fn seen_upstream(&mut self) {
        let consumed = self.legs[1].consumed;
        let (seen, ahead) = std::mem::take(&mut self.legs[1].marks)
            .into_iter()
            .partition::<Vec<Mark>, _>(|m| m.end <= consumed);
        for m in seen {
            match m.terminal {
                None => self.created[m.id] = true,
                Some(t) => {
                    self.terminal[m.id].get_or_insert(t);
                }
            }
        }
        self.legs[1].marks = ahead;
    }

    fn event(&mut self, event: Event) {
        if self.core.ended() {
            return;
        }
        let a = self.core.on_event(event, self.may_drain, self.now);
        for side in Side::BOTH {
            if a.stop_reading[side.index()] {
                self.legs[side.index()].stopped = true;
            }
        }
    }

    /// One op of the script: what it queues on a leg, or the end, deadline or write failure it
    /// reports.
    fn op(&mut self, s: &mut Script) {
        match s.pick(12) {
            0 => {
                let lane = lane_json(LANES[s.pick(3)]);
                let model = ["gpt-5", "", "gpt-5-mini"][s.pick(3)];
                let generate = if s.pick(4) == 0 {
                    r#","generate":false"#
                } else {
                    ""
                };
                let json = format!(
                    r#"{{"type":"response.create","model":"{model}"{lane}{generate},"input":"hi"}}"#
                );
                self.frame(Side::Client, Opcode::Text, json.as_bytes());
            }
            1 => {
                let id = s.pick(IDS);
                let json = if s.pick(2) == 0 {
                    format!(
                        r#"{{"type":"response.steer","previous_response_id":"resp_{id}","input":"go"}}"#
                    )
                } else {
                    r#"{"type":"response.future_thing","x":[1,{"type":"response.create"}]}"#
                        .to_owned()
                };
                self.frame(Side::Client, Opcode::Text, json.as_bytes());
            }
            2 => {
                let (id, lane) = (s.pick(IDS), lane_json(LANES[s.pick(3)]));
                let json = format!(
                    r#"{{"type":"response.created","response":{{"id":"resp_{id}","status":"in_progress","model":"gpt-5-2026"}}{lane}}}"#
                );
                self.upstream_event(&json, id, None);
            }
            3 => {
                let (id, lane) = (s.pick(IDS), lane_json(LANES[s.pick(3)]));
                let json = format!(
                    r#"{{"type":"response.output_text.delta","response_id":"resp_{id}","delta":"tok"{lane}}}"#
                );
                self.frame(Side::Upstream, Opcode::Text, json.as_bytes());
            }
            4 => {
                let (id, lane) = (s.pick(IDS), lane_json(LANES[s.pick(3)]));
                let (kind, status) = [
                    ("response.completed", "completed"),
                    ("response.incomplete", "incomplete"),
                    ("response.failed", "failed"),
                ][s.pick(3)];
                let (usage, tokens) = usage_json(s);
                let json = format!(
                    r#"{{"type":"{kind}","response":{{"id":"resp_{id}","status":"{status}","model":"gpt-5-2026","usage":{usage}}}{lane}}}"#
                );
                self.upstream_event(&json, id, Some(tokens));
            }
            5 => {
                let lane = lane_json(LANES[s.pick(3)]);
                let (steer, previous) = (s.pick(4), s.pick(IDS));
                let json = match s.pick(4) {
                    0 => format!(
                        r#"{{"type":"error","status":429,"error":{{"code":"rate_limit_exceeded","message":"slow"}}{lane}}}"#
                    ),
                    1 => format!(
                        r#"{{"type":"response.steer.accepted","steer":{{"id":"steer_{steer}","previous_response_id":"resp_{previous}"}}{lane}}}"#
                    ),
                    2 => format!(
                        r#"{{"type":"response.steer.pending","reason":"waiting_for_required_input","steer":{{"id":"steer_{steer}","previous_response_id":"resp_{previous}"}}{lane}}}"#
                    ),
                    _ => format!(
                        r#"{{"type":"response.steer.failed","error":{{"code":"successor_creation_failed"}},"steer":{{"id":"steer_{steer}","previous_response_id":"resp_{previous}"}}{lane}}}"#
                    ),
                };
                self.frame(Side::Upstream, Opcode::Text, json.as_bytes());
            }
            op @ (6 | 7) => {
                let side = if op == 6 {
                    Side::Upstream
                } else {
                    Side::Client
                };
                let n = s.pick(24);
                for _ in 0..n {
                    let b = s.byte();
                    self.legs[side.index()].wire.push(b);
                }
                self.legs[side.index()].dirty = true;
            }
            op @ (8 | 9) => {
                let side = if op == 8 {
                    Side::Client
                } else {
                    Side::Upstream
                };
                match s.pick(3) {
                    0 => self.frame(side, Opcode::Close, &1000u16.to_be_bytes()),
                    how => {
                        let n = self.legs[side.index()].wire.len();
                        self.arrive(side, n);
                        if !self.legs[side.index()].stopped {
                            self.legs[side.index()].stopped = true;
                            let end = if how == 1 {
                                PumpEnd::Eof
                            } else {
                                PumpEnd::ReadError
                            };
                            self.event(Event::Ended(side, end));
                        }
                    }
                }
            }
            10 => {
                if let Some((at, ev)) = self.core.next_deadline(None, [None, None], self.now) {
                    self.now = self.now.max(at);
                    self.event(ev);
                }
            }
            _ => {
                let side = [Side::Client, Side::Upstream][s.pick(2)];
                let ev = if s.pick(2) == 0 {
                    Event::WriteFailed(side)
                } else {
                    Event::Stalled(side)
                };
                self.event(ev);
            }
        }
    }
}

fn usage_json(s: &mut Script) -> (String, Tokens) {
    let (input, output) = (u64::from(s.byte()), u64::from(s.byte()));
    let cached = input / 2;
    let json = format!(
        r#"{{"input_tokens":{input},"input_tokens_details":{{"cached_tokens":{cached}}},"output_tokens":{output},"output_tokens_details":{{"reasoning_tokens":0}},"total_tokens":{}}}"#,
        input + output
    );
    (json, (input, output))
}

fn lane_json(lane: Option<&str>) -> String {
    lane.map(|l| format!(r#","stream_id":"{l}""#))
        .unwrap_or_default()
}

/// Runs the script `data`, checks the log, and returns its records: (response id, status,
/// input tokens, output tokens), in log order.
pub fn run(data: &[u8]) -> Vec<(String, RecordStatus, u64, u64)> {
    let path = log_path();
    let mut cfg = SinkConfig::new(SinkPath::File(path.clone()));
    cfg.journal_bytes = 0;
    let registry = Arc::new(Registry::new());
    let sink = Sink::start(cfg, registry.sink_metrics()).expect("sink");
    let start = Instant::now();
    let env = CoreEnv {
        sink: sink.handle(),
        budget: Rc::new(Budget::new(1 << 20)),
        tenant: None,
        metrics: Rc::new(WorkerMetrics::new(registry)),
        route: None,
    };
    let core = SessionCore::new(
        1,
        Arc::from("t"),
        Arc::from("up"),
        Rc::new(limits()),
        env,
        start,
    );
    let mut s = Script(data);
    let mut h = Harness {
        core,
        legs: [Leg::default(), Leg::default()],
        now: start,
        masks: 1,
        may_drain: s.byte() & 1 == 0,
        created: [false; IDS],
        terminal: [None; IDS],
    };
    let mut ops = 0;
    while !s.0.is_empty() && !h.core.ended() && ops < 256 {
        ops += 1;
        let cut = s.byte();
        h.arrive(Side::Client, usize::from(cut & 0x0f) * 16);
        h.arrive(Side::Upstream, usize::from(cut >> 4) * 64);
        h.now += Duration::from_millis(u64::from(s.byte()));
        h.op(&mut s);
    }
    // The rest arrives, then the session ends as the relay ends it at shutdown.
    for side in Side::BOTH {
        let n = h.legs[side.index()].wire.len();
        h.arrive(side, n);
    }
    if !h.core.ended() {
        if let Some((at, ev)) = h.core.next_deadline(Some(h.now), [None, None], h.now) {
            h.now = h.now.max(at);
            h.event(ev);
        }
    }
    h.core.finish(h.now);
    let (created, terminal) = (h.created, h.terminal);
    drop(h);
    sink.shutdown().expect("sink shutdown");
    let log = read_log(&path).expect("usage log");
    let _ = std::fs::remove_file(&path);
    assert_eq!(log.torn_tail, None);
    let mut by_id: HashMap<String, Tokens> = HashMap::new();
    for r in &log.records {
        let tokens = (r.input_tokens, r.output_tokens);
        assert!(
            by_id.insert(r.response_id.clone(), tokens).is_none(),
            "two records for {}",
            r.response_id
        );
    }
    for id in 0..IDS {
        let key = format!("resp_{id}");
        let got = by_id.get(&key);
        if created[id] || terminal[id].is_some() {
            assert!(got.is_some(), "{key} reached the core but has no record");
        }
        if let Some(want) = terminal[id] {
            assert_eq!(
                got,
                Some(&want),
                "{key}: the record's tokens are not its terminal's"
            );
        }
    }
    log.records
        .into_iter()
        .map(|r| (r.response_id, r.status, r.input_tokens, r.output_tokens))
        .collect()
}
