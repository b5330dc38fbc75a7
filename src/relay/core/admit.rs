//! Admission of client messages: a complete client message held by the walker is decided
//! here before its first byte leaves — forwarded, forwarded with its `model` rewritten (a
//! route prefix removed), or refused with an `error` event on the client leg (invalid
//! `stream_id` or `model`, a model of another route or not allowed, the usage log unable to
//! take records, the tenant over its turns per minute or out of fleet budget).

use std::time::Instant;

use super::{SessionCore, MAX_MODEL, MAX_STREAM_ID};
use crate::limits::FleetRefusal;
use crate::relay::control::ErrorEvent;
use crate::route::ModelDecision;
use crate::tap::TapEvent;

/// What happens to a complete client message.
pub(super) enum Decision {
    /// Forward it as it is.
    Forward,
    /// Refused: an error event for the client is in the outbox.
    Refuse,
    /// Forward it with `model` replaced (the route prefix removed).
    Rewrite(String),
}

/// A refused client message: the error event to send instead.
pub(super) struct Refusal {
    pub(super) status: u16,
    pub(super) kind: &'static str,
    pub(super) code: &'static str,
    pub(super) message: String,
}

fn valid_stream_id(id: &str) -> bool {
    (1..=MAX_STREAM_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl SessionCore {
    /// Decide a complete client message.
    pub(super) fn decide(&mut self, event: Option<TapEvent>, now: Instant) -> Decision {
        let Some(ev) = event else {
            return Decision::Forward;
        };
        let TapEvent::Create {
            model, stream_id, ..
        } = &ev
        else {
            // A steer is forwarded; the meter waits for its answer (and its successor).
            self.meter.on_client(&ev, now);
            return Decision::Forward;
        };
        let (refusal, rewrite) =
            match self.check_create(model.as_deref(), stream_id.as_deref(), now) {
                Ok(rewrite) => (None, rewrite),
                Err(r) => (Some(r), None),
            };
        match refusal {
            None => {
                // The record keeps what the client asked for (`requested_model`).
                self.meter.on_client(&ev, now);
                match rewrite {
                    Some(m) => Decision::Rewrite(m),
                    None => Decision::Forward,
                }
            }
            Some(r) => {
                // Echo the lane only when it is a valid one.
                let lane = stream_id.as_deref().filter(|s| valid_stream_id(s));
                self.refuse(&r, lane);
                Decision::Refuse
            }
        }
    }

    /// Queue the error event of a refused create for the client.
    pub(super) fn refuse(&mut self, r: &Refusal, lane: Option<&str>) {
        self.outbox.extend_from_slice(
            &ErrorEvent {
                status: r.status,
                kind: r.kind,
                code: r.code,
                message: &r.message,
                stream_id: lane,
            }
            .frame(),
        );
        self.env.metrics.create_refused(r.code);
        tracing::debug!(session = self.id, code = r.code, "response.create refused");
    }

    /// The route's rules for `model`: `Ok(Some(m))` = forward with model `m`.
    fn check_model(&self, model: Option<&str>) -> Result<Option<String>, Refusal> {
        let (Some((routes, i)), Some(m)) = (&self.env.route, model) else {
            return Ok(None);
        };
        let here = &routes.list[*i].name;
        match routes.model(*i, m) {
            ModelDecision::Keep => Ok(None),
            ModelDecision::Strip(bare) => Ok(Some(bare)),
            ModelDecision::OtherRoute(other) => Err(Refusal {
                status: 400,
                kind: "invalid_request_error",
                code: "model_route_mismatch",
                message: format!(
                    "model {m:?} names route {other:?}, but this session is on route {here:?}; connect through /{other}/... or drop the prefix"
                ),
            }),
            ModelDecision::NotAllowed => Err(Refusal {
                status: 403,
                kind: "invalid_request_error",
                code: "model_not_allowed",
                message: format!("model {m:?} is not allowed on route {here:?}"),
            }),
        }
    }

    /// The checks a `response.create` passes before it is forwarded; `Ok(Some(m))`: forward
    /// it with its model rewritten to `m`.
    fn check_create(
        &self,
        model: Option<&str>,
        stream_id: Option<&str>,
        now: Instant,
    ) -> Result<Option<String>, Refusal> {
        if stream_id.is_some_and(|s| !valid_stream_id(s)) {
            return Err(Refusal {
                status: 400,
                kind: "invalid_request_error",
                code: "invalid_stream_id",
                message: format!(
                    "stream_id must be 1-{MAX_STREAM_ID} characters of [A-Za-z0-9_.-]"
                ),
            });
        }
        if model.is_some_and(|m| m.len() > MAX_MODEL) {
            return Err(Refusal {
                status: 400,
                kind: "invalid_request_error",
                code: "invalid_model",
                message: format!("model names are at most {MAX_MODEL} bytes"),
            });
        }
        if let (Some(m), Some(p)) = (model, self.limits.debug_panic_model.as_deref()) {
            if m == p {
                panic!("test hook: --debug-panic-on-model {p}");
            }
        }
        let rewrite = self.check_model(model)?;
        if !self.env.sink.healthy() {
            tracing::error!(
                session = self.id,
                "usage log unavailable: refusing response.create"
            );
            return Err(Refusal {
                status: 503,
                kind: "server_error",
                code: "usage_log_unavailable",
                message:
                    "the relay cannot record usage right now; the request was not sent upstream"
                        .into(),
            });
        }
        if let Some(t) = &self.env.tenant {
            if let Err(r) = t.budget_admit(std::time::SystemTime::now()) {
                return Err(match r {
                    FleetRefusal::Unavailable => Refusal {
                        status: 503,
                        kind: "server_error",
                        code: r.code(),
                        message: "the relay cannot check this key's token budget right now".into(),
                    },
                    _ => Refusal {
                        status: 429,
                        kind: "insufficient_quota",
                        code: r.code(),
                        message: "this key's token budget is spent for the period".into(),
                    },
                });
            }
            if let Err(retry) = t.take_turn(now) {
                return Err(Refusal {
                    status: 429,
                    kind: "rate_limit_error",
                    code: "rate_limit_exceeded",
                    message: format!(
                        "over {} response.create per minute for this key; retry in {:.1} s",
                        t.limits().turns_per_minute.unwrap_or(0),
                        retry.as_secs_f64()
                    ),
                });
            }
        }
        Ok(rewrite)
    }
}
