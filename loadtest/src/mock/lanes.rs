//! Lanes and responses: routes each `response.create` to its `stream_id` lane (one
//! task per lane, FIFO inside it, ≤16 responses in flight per connection) and
//! produces the event sequence of one response.
//!
//! Steering (openai-python's `BetaResponseSteer*Event` docs): a `response.steer` for a
//! running response is answered `response.steer.accepted` at once (with a `steer.id`, on
//! the response's lane); the response ends after its next delta with `response.incomplete`
//! (reason `steered`), or — when the steer came after its last delta — completes normally.
//! Either way an automatic successor, continuing the chain, starts on the same lane
//! `successor_delay` later with no `response.create` and commits the queued input. A steer
//! for a response that is not running gets `response.steer.failed`
//! (`response_already_completed` or `response_not_found`). The mock has no client-owned
//! tools, so it never sends `response.steer.pending`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::events::{self, Resp, SteerAnswer, Usage};
use super::plan::Plan;
use super::writer::{Framing, Out};
use super::{lock, Fault, LedgerEntry, Shared};

/// Responses in flight per connection before further creates wait.
pub(crate) const MAX_IN_FLIGHT: usize = 16;
/// Distinct named lanes per connection.
pub(crate) const MAX_NAMED_LANES: usize = 32;

/// Per-connection state the lanes share.
pub(crate) struct ConnCtx {
    pub shared: Arc<Shared>,
    pub tx: mpsc::Sender<Out>,
    pub framing: Framing,
    known: Mutex<HashSet<String>>,
    /// Responses streaming now, by id.
    running: Mutex<HashMap<String, Running>>,
    inflight: Arc<Semaphore>,
}

impl ConnCtx {
    pub fn new(shared: Arc<Shared>, tx: mpsc::Sender<Out>, framing: Framing) -> Arc<ConnCtx> {
        Arc::new(ConnCtx {
            shared,
            tx,
            framing,
            known: Mutex::default(),
            running: Mutex::default(),
            inflight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        })
    }

    async fn send(&self, text: String) -> Result<(), Closed> {
        let out = Out::Event {
            text,
            framing: self.framing,
        };
        self.tx.send(out).await.map_err(|_| Closed)
    }
}

/// A response streaming now: its lane, and the flag a steer for it sets.
type Running = (Option<String>, Arc<AtomicBool>);

/// The connection's writer is gone; stop producing.
#[derive(Debug)]
pub(crate) struct Closed;

struct Job {
    create: Value,
    frame_bytes: usize,
}

struct Lane {
    jobs: mpsc::UnboundedSender<Job>,
    seq: Arc<AtomicU64>,
}

/// Routes client messages of one connection. Dropping it aborts every lane.
pub(crate) struct Dispatcher {
    ctx: Arc<ConnCtx>,
    lanes: HashMap<Option<String>, Lane>,
    tasks: JoinSet<()>,
}

fn valid_stream_id(s: &str) -> bool {
    (1..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl Dispatcher {
    pub fn new(ctx: Arc<ConnCtx>) -> Dispatcher {
        Dispatcher {
            ctx,
            lanes: HashMap::new(),
            tasks: JoinSet::new(),
        }
    }

    fn lane(&mut self, key: Option<String>) -> &Lane {
        let ctx = &self.ctx;
        let tasks = &mut self.tasks;
        self.lanes.entry(key.clone()).or_insert_with(|| {
            let (jobs, rx) = mpsc::unbounded_channel();
            let seq = Arc::new(AtomicU64::new(0));
            tasks.spawn(lane_task(ctx.clone(), key, rx, seq.clone()));
            Lane { jobs, seq }
        })
    }

    fn next_seq(&mut self, key: &Option<String>) -> u64 {
        let lane = match self.lanes.get(key) {
            Some(l) => l,
            None => self.lane(None),
        };
        lane.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Handles one complete text message from the client.
    pub async fn on_text(&mut self, raw: &str) -> Result<(), Closed> {
        let Ok(v) = serde_json::from_str::<Value>(raw) else {
            return Ok(()); // not JSON: recorded, ignored
        };
        let stream_id = v
            .get("stream_id")
            .and_then(Value::as_str)
            .map(str::to_string);
        match v.get("type").and_then(Value::as_str) {
            Some("response.create") => {
                if let Some(sid) = &stream_id {
                    let named = self.lanes.keys().filter(|k| k.is_some()).count();
                    let (code, msg) = if !valid_stream_id(sid) {
                        ("invalid_stream_id", "Invalid stream_id.")
                    } else if !self.lanes.contains_key(&stream_id) && named >= MAX_NAMED_LANES {
                        (
                            "websocket_stream_limit_reached",
                            "Too many streams on this connection.",
                        )
                    } else {
                        ("", "")
                    };
                    if !code.is_empty() {
                        let seq = self.next_seq(&None);
                        let e = events::error_event(
                            400,
                            "invalid_request_error",
                            code,
                            msg,
                            Some("stream_id"),
                            None,
                            seq,
                        );
                        return self.ctx.send(e).await;
                    }
                }
                let job = Job {
                    create: v,
                    frame_bytes: raw.len(),
                };
                // The lane task only ends when the connection ends.
                let _ = self.lane(stream_id).jobs.send(job);
                Ok(())
            }
            Some("response.steer") => {
                let prev = v.get("previous_response_id").and_then(Value::as_str);
                let input = v.get("input").cloned().unwrap_or(Value::Null);
                // A running response takes the steer (see the module docs); its lane answers.
                let taken = prev.and_then(|p| {
                    let running = lock(&self.ctx.running);
                    let (lane, flag) = running.get(p)?;
                    flag.store(true, Ordering::Relaxed);
                    Some(lane.clone())
                });
                let answer = match taken {
                    Some(lane) => {
                        let id = self.ctx.shared.new_id("steer");
                        let seq = self.next_seq(&lane);
                        let a = SteerAnswer::Accepted { id: &id };
                        events::steer_answer(a, prev, &input, lane.as_deref(), seq)
                    }
                    None => {
                        let code = match prev {
                            Some(p) if lock(&self.ctx.known).contains(p) => {
                                "response_already_completed"
                            }
                            _ => "response_not_found",
                        };
                        let seq = self.next_seq(&None);
                        events::steer_answer(SteerAnswer::Failed { code }, prev, &input, None, seq)
                    }
                };
                self.ctx.send(answer).await
            }
            _ => Ok(()), // unknown client events are recorded and ignored
        }
    }
}

async fn lane_task(
    ctx: Arc<ConnCtx>,
    lane: Option<String>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    seq: Arc<AtomicU64>,
) {
    while let Some(job) = jobs.recv().await {
        let mut plan = Plan::new(&ctx.shared.cfg, &job.create, job.frame_bytes);
        let known = plan
            .previous
            .as_ref()
            .is_none_or(|p| lock(&ctx.known).contains(p));
        let res = if known {
            let Ok(_permit) = ctx.inflight.clone().acquire_owned().await else {
                return;
            };
            // A steered response is followed by its successor (which may be steered too).
            loop {
                match run_response(&ctx, lane.as_deref(), &plan, &seq).await {
                    Ok(Some(steered)) => {
                        plan = plan.successor(steered);
                        tokio::time::sleep(ctx.shared.cfg.successor_delay).await;
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
        } else {
            let prev = plan.previous.as_deref().unwrap_or_default();
            let msg = format!("Previous response with id '{prev}' not found.");
            let s = seq.fetch_add(1, Ordering::Relaxed);
            let e = events::error_event(
                400,
                "invalid_request_error",
                "previous_response_not_found",
                &msg,
                Some("previous_response_id"),
                lane.as_deref(),
                s,
            );
            ctx.send(e).await
        };
        if res.is_err() {
            return;
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Streams one response; `Some(its id)` when a steer took it — it ended `steered`, or the
/// steer came after its last delta and it completed normally — so a successor follows.
async fn run_response(
    ctx: &ConnCtx,
    lane: Option<&str>,
    plan: &Plan,
    seq: &AtomicU64,
) -> Result<Option<String>, Closed> {
    let id = ctx.shared.new_id("resp");
    lock(&ctx.known).insert(id.clone());
    let steer = Arc::new(AtomicBool::new(false));
    let entry = (lane.map(str::to_string), steer.clone());
    lock(&ctx.running).insert(id.clone(), entry);
    let res = stream_response(ctx, lane, plan, seq, &id, &steer).await;
    // Removed under the lock a steer sets the flag under: a steer either found the response
    // running (and its successor follows) or finds it gone (and is answered `failed`).
    lock(&ctx.running).remove(&id);
    res?;
    Ok(steer.load(Ordering::Relaxed).then_some(id))
}

async fn stream_response(
    ctx: &ConnCtx,
    lane: Option<&str>,
    plan: &Plan,
    seq: &AtomicU64,
    id: &str,
    steer: &AtomicBool,
) -> Result<(), Closed> {
    if plan.fault == Some(Fault::Stall) {
        std::future::pending::<()>().await;
    }
    let framing = match &plan.fault {
        Some(Fault::MaskedFrames) => Framing {
            masked: true,
            ..ctx.framing
        },
        Some(Fault::Fragmented { pieces }) => Framing {
            pieces: *pieces,
            ..ctx.framing
        },
        _ => ctx.framing,
    };
    let emit = |text: String| ctx.tx.send(Out::Event { text, framing });
    let next = || seq.fetch_add(1, Ordering::Relaxed);
    let item_id = ctx.shared.new_id("msg");
    let r = Resp {
        id,
        item_id: &item_id,
        model: &plan.model,
        stream_id: lane,
        created_at: unix_now(),
        service_tier: &plan.service_tier,
        store: plan.store,
        tools: &plan.tools,
    };
    emit(r.lifecycle("response.created", next()))
        .await
        .map_err(|_| Closed)?;
    // The terminal event `text` with its ledger entry.
    let terminal = |text: String, status: &str, u: Usage| Out::Terminal {
        text,
        framing,
        entry: LedgerEntry {
            response_id: id.to_string(),
            stream_id: lane.map(str::to_string),
            model: plan.model.clone(),
            status: status.to_string(),
            service_tier: plan.service_tier.clone(),
            input_tokens: u.input,
            cached_tokens: u.cached,
            output_tokens: u.output,
            reasoning_tokens: u.reasoning,
        },
    };
    if !plan.generate {
        let u = plan.usage(0);
        let text = r.terminal("completed", None, plan.instructions.as_deref(), u, next());
        return ctx
            .tx
            .send(terminal(text, "completed", u))
            .await
            .map_err(|_| Closed);
    }
    emit(r.lifecycle("response.in_progress", next()))
        .await
        .map_err(|_| Closed)?;
    if let Some(Fault::CloseAfterError { code, error_code }) = &plan.fault {
        let e = events::error_event(
            500,
            "server_error",
            error_code,
            "The mock upstream failed.",
            None,
            lane,
            next(),
        );
        emit(e).await.map_err(|_| Closed)?;
        let close = Out::Close {
            payload: code.to_be_bytes().to_vec(),
        };
        let _ = ctx.tx.send(close).await;
        return Err(Closed);
    }
    emit(r.item(None, next())).await.map_err(|_| Closed)?;
    emit(r.part(None, next())).await.map_err(|_| Closed)?;
    let abort = match &plan.fault {
        Some(Fault::AbortFin { after_deltas }) => Some((*after_deltas, Out::AbortFin)),
        Some(Fault::AbortRst { after_deltas }) => Some((*after_deltas, Out::AbortRst)),
        _ => None,
    };
    let pace = ctx
        .shared
        .cfg
        .token_rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let mut full = String::new();
    let texts = events::delta_texts(&r, plan.deltas, ctx.shared.cfg.delta_bytes);
    let echo_limit = ctx.shared.cfg.echo_text_limit.unwrap_or(usize::MAX);
    for i in 0..plan.deltas {
        let t = &texts[i % texts.len().max(1)];
        if let Some((after, _)) = &abort {
            if i == *after {
                break;
            }
        }
        match pace {
            Some(d) => tokio::time::sleep(d).await,
            None if i % ctx.shared.cfg.delta_burst.max(1) == 0 => tokio::task::yield_now().await,
            None => {}
        }
        emit(r.delta(t, next())).await.map_err(|_| Closed)?;
        if full.len() + t.len() <= echo_limit {
            full.push_str(t);
        }
        if steer.load(Ordering::Relaxed) {
            // Billed for what it produced; the successor takes the steer's input.
            let u = plan.usage(i as u64 + 1);
            let text = r.terminal_because("incomplete", "steered", Some(&full), None, u, next());
            return ctx
                .tx
                .send(terminal(text, "incomplete", u))
                .await
                .map_err(|_| Closed);
        }
    }
    if let Some((_, out)) = abort {
        let _ = ctx.tx.send(out).await;
        return Err(Closed);
    }
    if let Some(d) = pace {
        // The model takes a moment to finish after its last token: a client can read
        // every delta and leave before the terminal event (the relay must still meter it).
        tokio::time::sleep(d).await;
    }
    emit(r.text_done(&full, next())).await.map_err(|_| Closed)?;
    emit(r.part(Some(&full), next()))
        .await
        .map_err(|_| Closed)?;
    emit(r.item(Some(&full), next()))
        .await
        .map_err(|_| Closed)?;
    let mut instructions = plan.instructions.clone().unwrap_or_default();
    instructions.push_str(&events::padding(plan.pad));
    let instructions = (!instructions.is_empty()).then_some(instructions.as_str());
    let u = plan.usage(plan.deltas as u64);
    let text = r.terminal(&plan.terminal, Some(&full), instructions, u, next());
    let out = terminal(text, &plan.terminal, u);
    ctx.tx.send(out).await.map_err(|_| Closed)
}
