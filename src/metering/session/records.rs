//! Building and handing off one session's usage records (the record from an open response
//! and a terminal event's fields; counters, metrics and the sink).

use std::time::{Duration, Instant};

use super::{capped, Open, SessionMeter};
use crate::metering::record::{now_rfc3339_ms, RecordStatus, UsageRecord};
use crate::metering::sink::SinkError;
use crate::tap::Usage;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl SessionMeter {
    pub(super) fn record(
        &self,
        o: &Open,
        status: RecordStatus,
        usage: Option<&Usage>,
        model: Option<&String>,
        service_tier: Option<&String>,
        now: Instant,
    ) -> UsageRecord {
        let u = usage.copied().unwrap_or_default();
        UsageRecord {
            ts: now_rfc3339_ms(),
            session: self.session,
            // `String::from(&str)`: `to_string()` on an `Arc<str>` goes through `Display`.
            tenant: String::from(&*self.tenant),
            route: String::from(&*self.route),
            upstream: String::from(&*self.upstream),
            stream_id: o.lane.clone(),
            response_id: o.response_id.clone(),
            model: model.or(o.model.as_ref()).map(|m| capped(m)),
            requested_model: o.requested_model.clone(),
            status,
            input_tokens: u.input_tokens,
            cached_tokens: u.cached_tokens,
            output_tokens: u.output_tokens,
            reasoning_tokens: u.reasoning_tokens,
            total_tokens: u.total_tokens,
            service_tier: service_tier.map(|t| capped(t)),
            ttft_ms: o.ttft.map(ms),
            duration_ms: ms(now.saturating_duration_since(o.start)),
            usage_final: usage.is_some(),
            usage: None,
        }
    }

    pub(super) fn emit(&mut self, rec: UsageRecord, usage: &Usage) -> Result<(), SinkError> {
        self.stats.records += 1;
        if let Some(m) = &self.metrics {
            m.response(rec.status.as_str(), &self.route);
            m.tokens(
                rec.model.as_deref().unwrap_or("unknown"),
                &self.tenant,
                &self.route,
                usage,
            );
        }
        let res = self.sink.submit(rec);
        if res.is_err() {
            self.stats.submit_errors += 1;
        }
        res
    }
}
