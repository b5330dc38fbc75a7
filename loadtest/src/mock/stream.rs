//! The events of one response, in order: `response.created`, `.in_progress`, then either a
//! message streamed as text deltas or — when the create makes the model call a client-owned
//! function (`tool_choice`) — a `function_call` item streamed as argument deltas, then the
//! terminal event carrying `response.usage` (its ledger entry rides with it to the writer).
//!
//! Steering (openai-python's `ResponseSteer*Event` docs):
//! - a text response a steer took ends after its next delta, `response.incomplete` (reason
//!   `steered`), or completes normally when the steer came after its last delta; either way
//!   [`run_response`] returns its id and the lane starts the automatic successor;
//! - a function call a steer took completes normally — it now waits for the client's tool
//!   result, so no successor can start — and `successor_delay` after its
//!   `response.completed` each of its steers gets one `response.steer.pending` (reason
//!   `waiting_for_required_input`, the call as `required_input`). Only the client's next
//!   `response.create` (its `function_call_output`, same `previous_response_id`) continues
//!   the chain. The mock does not add the queued steer input to that continuation's input
//!   tokens: its usage stays the create frame's size, as for every create.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::ctx::{Closed, ConnCtx, Steers};
use super::events::{self, Resp, SteerAnswer, Usage};
use super::plan::Plan;
use super::writer::{Framing, Out};
use super::{lock, Fault, LedgerEntry};

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Streams one response; `Some(its id)` when a steer took a text response — it ended
/// `steered`, or the steer came after its last delta and it completed normally — so a
/// successor follows.
pub(crate) async fn run_response(
    ctx: &ConnCtx,
    lane: Option<&str>,
    plan: &Plan,
    seq: &AtomicU64,
) -> Result<Option<String>, Closed> {
    let id = ctx.shared.new_id("resp");
    lock(&ctx.known).insert(id.clone());
    let steers = Arc::new(Steers::default());
    let entry = (lane.map(str::to_string), steers.clone());
    lock(&ctx.running).insert(id.clone(), entry);
    let res = stream_response(ctx, lane, plan, seq, &id, &steers).await;
    // Removed under the lock a steer is taken under: a steer either found the response
    // running (and its successor or `pending` follows) or finds it gone (and is answered
    // `failed`).
    lock(&ctx.running).remove(&id);
    res?;
    if plan.call.is_some() {
        return Ok(None);
    }
    Ok(steers.taken().then_some(id))
}

/// Sends one response's events, numbered on its lane, with its framing.
struct Emitter<'a> {
    ctx: &'a ConnCtx,
    plan: &'a Plan,
    lane: Option<&'a str>,
    id: &'a str,
    seq: &'a AtomicU64,
    framing: Framing,
}

impl Emitter<'_> {
    fn next(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    async fn event(&self, text: String) -> Result<(), Closed> {
        let out = Out::Event {
            text,
            framing: self.framing,
        };
        self.ctx.tx.send(out).await.map_err(|_| Closed)
    }

    /// The terminal event `text` with its ledger entry.
    async fn terminal(&self, text: String, status: &str, u: Usage) -> Result<(), Closed> {
        let entry = LedgerEntry {
            response_id: self.id.to_string(),
            stream_id: self.lane.map(str::to_string),
            model: self.plan.model.clone(),
            status: status.to_string(),
            service_tier: self.plan.service_tier.clone(),
            input_tokens: u.input,
            cached_tokens: u.cached,
            output_tokens: u.output,
            reasoning_tokens: u.reasoning,
        };
        let out = Out::Terminal {
            text,
            framing: self.framing,
            entry,
        };
        self.ctx.tx.send(out).await.map_err(|_| Closed)
    }

    /// The pause before delta `i`: the configured pace, or (unpaced) a yield to the writer
    /// every `delta_burst` deltas.
    async fn pace(&self, i: usize) {
        let cfg = &self.ctx.shared.cfg;
        match cfg.token_rate.filter(|r| *r > 0.0) {
            Some(r) => tokio::time::sleep(Duration::from_secs_f64(1.0 / r)).await,
            None if i.is_multiple_of(cfg.delta_burst.max(1)) => tokio::task::yield_now().await,
            None => {}
        }
    }
}

async fn stream_response(
    ctx: &ConnCtx,
    lane: Option<&str>,
    plan: &Plan,
    seq: &AtomicU64,
    id: &str,
    steers: &Steers,
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
    let em = Emitter {
        ctx,
        plan,
        lane,
        id,
        seq,
        framing,
    };
    let item_id = ctx
        .shared
        .new_id(if plan.call.is_some() { "fc" } else { "msg" });
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
    em.event(r.lifecycle("response.created", em.next())).await?;
    if !plan.generate {
        let u = plan.usage(0);
        let instructions = plan.instructions.as_deref();
        let text = r.terminal("completed", None, instructions, u, em.next());
        return em.terminal(text, "completed", u).await;
    }
    em.event(r.lifecycle("response.in_progress", em.next()))
        .await?;
    if let Some(Fault::CloseAfterError { code, error_code }) = &plan.fault {
        let msg = "The mock upstream failed.";
        let e = events::error_event(500, "server_error", error_code, msg, None, lane, em.next());
        em.event(e).await?;
        let close = Out::Close {
            payload: code.to_be_bytes().to_vec(),
        };
        let _ = ctx.tx.send(close).await;
        return Err(Closed);
    }
    match &plan.call {
        Some(name) => stream_call(&em, &r, name, steers).await,
        None => stream_text(&em, &r, steers).await,
    }
}

/// An abort fault of a response: the connection ends (FIN or RST) after `after` deltas —
/// text or argument deltas; after the last one when there are fewer.
struct Abort {
    after: usize,
    end: Out,
}

impl Abort {
    fn of(plan: &Plan) -> Option<Abort> {
        let (after, end) = match &plan.fault {
            Some(Fault::AbortFin { after_deltas }) => (*after_deltas, Out::AbortFin),
            Some(Fault::AbortRst { after_deltas }) => (*after_deltas, Out::AbortRst),
            _ => return None,
        };
        Some(Abort { after, end })
    }

    /// Whether delta `i` is one too many.
    fn cuts(abort: &Option<Abort>, i: usize) -> bool {
        abort.as_ref().is_some_and(|a| a.after == i)
    }

    /// Ends the connection; the response stops here.
    async fn end(self, ctx: &ConnCtx) -> Result<(), Closed> {
        let _ = ctx.tx.send(self.end).await;
        Err(Closed)
    }
}

/// A message streamed as text deltas (see the module docs for a steer).
async fn stream_text(em: &Emitter<'_>, r: &Resp<'_>, steers: &Steers) -> Result<(), Closed> {
    let (ctx, plan) = (em.ctx, em.plan);
    em.event(r.item(None, em.next())).await?;
    em.event(r.part(None, em.next())).await?;
    let abort = Abort::of(plan);
    let mut full = String::new();
    let texts = events::delta_texts(r, plan.deltas, ctx.shared.cfg.delta_bytes);
    let echo_limit = ctx.shared.cfg.echo_text_limit.unwrap_or(usize::MAX);
    for i in 0..plan.deltas {
        let t = &texts[i % texts.len().max(1)];
        if Abort::cuts(&abort, i) {
            break;
        }
        em.pace(i).await;
        em.event(r.delta(t, em.next())).await?;
        if full.len() + t.len() <= echo_limit {
            full.push_str(t);
        }
        if steers.taken() {
            // Billed for what it produced; the successor takes the steer's input.
            let u = plan.usage(i as u64 + 1);
            let text = r.terminal_because("incomplete", "steered", Some(&full), None, u, em.next());
            return em.terminal(text, "incomplete", u).await;
        }
    }
    if let Some(a) = abort {
        return a.end(ctx).await;
    }
    if ctx.shared.cfg.token_rate.is_some_and(|r| r > 0.0) {
        // The model takes a moment to finish after its last token: a client can read
        // every delta and leave before the terminal event (the relay must still meter it).
        em.pace(0).await;
    }
    em.event(r.text_done(&full, em.next())).await?;
    em.event(r.part(Some(&full), em.next())).await?;
    em.event(r.item(Some(&full), em.next())).await?;
    let mut instructions = plan.instructions.clone().unwrap_or_default();
    instructions.push_str(&events::padding(plan.pad));
    let instructions = (!instructions.is_empty()).then_some(instructions.as_str());
    let u = plan.usage(plan.deltas as u64);
    let text = r.terminal(&plan.terminal, Some(&full), instructions, u, em.next());
    em.terminal(text, &plan.terminal, u).await
}

/// A call of the client-owned function `name`, its arguments streamed as deltas (one output
/// token each); a steer it took is answered `pending` after it completes (module docs).
async fn stream_call(
    em: &Emitter<'_>,
    r: &Resp<'_>,
    name: &str,
    steers: &Steers,
) -> Result<(), Closed> {
    let (ctx, plan) = (em.ctx, em.plan);
    let call_id = ctx.shared.new_id("call");
    let call = events::Call {
        name,
        call_id: &call_id,
    };
    em.event(r.call_item(&call, None, em.next())).await?;
    let pieces = events::argument_deltas(plan.deltas);
    let abort = Abort::of(plan);
    for (i, piece) in pieces.iter().enumerate() {
        if Abort::cuts(&abort, i) {
            break;
        }
        em.pace(i).await;
        em.event(r.arguments_delta(piece, em.next())).await?;
    }
    if let Some(a) = abort {
        return a.end(ctx).await;
    }
    let arguments = pieces.concat();
    em.event(r.arguments_done(&call, &arguments, em.next()))
        .await?;
    em.event(r.call_item(&call, Some(&arguments), em.next()))
        .await?;
    let u = plan.usage(plan.deltas as u64);
    let output = vec![r.call_json(&call, Some(&arguments))];
    let text = r.terminal_with("completed", "", output, None, u, em.next());
    em.terminal(text, "completed", u).await?;
    let taken = steers.ids();
    if taken.is_empty() {
        return Ok(());
    }
    tokio::time::sleep(ctx.shared.cfg.successor_delay).await;
    for steer_id in taken {
        let answer = SteerAnswer::Pending {
            id: &steer_id,
            call: &call,
        };
        let text = events::steer_answer(answer, Some(r.id), em.lane, em.next());
        em.event(text).await?;
    }
    Ok(())
}
