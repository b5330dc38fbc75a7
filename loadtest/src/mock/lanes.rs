//! Lanes: routes each `response.create` to its `stream_id` lane (one task per lane, FIFO
//! inside it, ≤16 responses in flight per connection) and answers each `response.steer`.
//!
//! Steering (openai-python's `ResponseSteer*Event` docs): a `response.steer` for a running
//! response is answered `response.steer.accepted` at once (with a `steer.id`, on the
//! response's lane) and the response takes it (what that does: [`super::stream`]). When a
//! steered text response ends, an automatic successor, continuing the chain, starts on the
//! same lane `successor_delay` later with no `response.create` and commits the queued input.
//! A steer for a response that is not running gets `response.steer.failed`
//! (`response_already_completed` or `response_not_found`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::ctx::{Closed, ConnCtx};
use super::events::{self, SteerAnswer};
use super::lock;
use super::plan::Plan;
use super::stream::run_response;

/// Distinct named lanes per connection.
pub(crate) const MAX_NAMED_LANES: usize = 32;

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
                    let (lane, steers) = running.get(p)?;
                    let id = self.ctx.shared.new_id("steer");
                    steers.take(id.clone());
                    Some((lane.clone(), id))
                });
                let answer = match taken {
                    Some((lane, id)) => {
                        let seq = self.next_seq(&lane);
                        let a = SteerAnswer::Accepted { id: &id };
                        events::steer_answer(a, prev, lane.as_deref(), seq)
                    }
                    None => {
                        let code = match prev {
                            Some(p) if lock(&self.ctx.known).contains(p) => {
                                "response_already_completed"
                            }
                            _ => "response_not_found",
                        };
                        let seq = self.next_seq(&None);
                        let a = SteerAnswer::Failed {
                            code,
                            input: &input,
                        };
                        events::steer_answer(a, prev, None, seq)
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
