//! Tenant budgets and session caps shared by the fleet, counted in Redis.
//!
//! **Token budgets are leased.** Redis holds, per tenant and period, the tokens leased out
//! so far (`tollgate:budget:{tenant}:{day|month}:{id}`, expiring after the period). A relay
//! takes a lease of `--budget-lease-tokens` with one atomic script (add, and if that passes
//! the budget, keep only what was left and give the rest back), charges responses against
//! it in memory ([`crate::limits::BudgetBook`]), and asks for the next lease once it is
//! half spent — at most one Redis round trip per tenant per tick (100 ms), never per
//! response. When Redis answers that nothing is left, the relay refuses new responses of
//! that tenant once its own lease is spent (`insufficient_quota`); unspent leases go back at
//! shutdown.
//!
//! **Overshoot bound.** Redis never leases more than the budget. What a tenant can use
//! beyond it is what responses admitted before their relay learned the budget was gone
//! cost after it was: with `N` relays, `c` responses of the tenant in flight per relay and
//! `M` tokens in the largest response, at most `N × c × M` tokens. Unspent leases held by
//! relays are the opposite error (the fleet may refuse while `≤ N × lease` tokens sit
//! leased but unused); returning them at shutdown limits it to live relays.
//!
//! **Session caps are synced.** Every `--fleet-sync-interval` each relay writes its open
//! sessions per capped tenant into a Redis hash (`tollgate:sessions:{tenant}`, field = node
//! id, value = `count:unix_ms`) and reads the others' (entries older than three intervals
//! are a dead relay's and are dropped). A handshake is admitted while this relay's
//! sessions plus the others' last counts stay under the cap: the overshoot is the sessions
//! the fleet opens within one sync interval.
//!
//! **Redis down.** A failed round marks the backend down (metric, one log line per
//! transition): `--budget-fail closed` refuses whatever a fleet limit governs
//! (`budget_unavailable`), `open` admits it; the next successful round restores normal
//! service. A failed round is first tried once more on a new connection (unless the dial
//! timed out), so a connection Redis closed, or one slow answer, is not an outage.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use tokio::sync::watch;

use crate::config::BudgetConfig;
use crate::limits::{FailMode, Period, Tenants};
use crate::metrics::FleetMetrics;

/// Why a round with Redis failed (logged when Redis is marked unreachable).
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error("bad URL: {0}")]
    BadUrl(redis::RedisError),
    #[error("connecting timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("connecting failed: {0}")]
    Connect(redis::RedisError),
    #[error("the round timed out after {0:?}")]
    RoundTimeout(Duration),
    #[error("{0}")]
    Redis(redis::RedisError),
}

/// How often leases are topped up.
const TICK: Duration = Duration::from_millis(100);
/// Longest one Redis round may take before it counts as a failure.
const OP_TIMEOUT: Duration = Duration::from_secs(1);

/// Take up to `ARGV[1]` tokens of budget `ARGV[2]` from `KEYS[1]` (expires in `ARGV[3]` s):
/// returns `{granted, exhausted}`.
const LEASE_SCRIPT: &str = r"
local want = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local used = redis.call('INCRBY', KEYS[1], want)
redis.call('EXPIRE', KEYS[1], ARGV[3])
if used < limit then return {want, 0} end
local before = used - want
local grant = 0
if before < limit then grant = limit - before end
if want > grant then redis.call('DECRBY', KEYS[1], want - grant) end
return {grant, 1}
";

/// The Redis key of a tenant's period budget.
pub fn budget_key(tenant: &str, period: Period, id: u32) -> String {
    format!("tollgate:budget:{tenant}:{}:{id}", period.as_str())
}

/// The Redis hash of a tenant's per-relay session counts.
pub fn sessions_key(tenant: &str) -> String {
    format!("tollgate:sessions:{tenant}")
}

fn period_ttl(period: Period) -> u64 {
    match period {
        Period::Day => 2 * 86_400,
        Period::Month => 40 * 86_400,
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Sum of the other relays' fresh counts in a sessions hash (`node → "count:unix_ms"`), and
/// the stale fields to delete.
pub fn others(
    fields: &[(String, String)],
    me: &str,
    now_ms: u64,
    stale_ms: u64,
) -> (usize, Vec<String>) {
    let mut sum = 0usize;
    let mut stale = Vec::new();
    for (node, v) in fields {
        if node == me {
            continue;
        }
        let parsed = v
            .split_once(':')
            .and_then(|(c, t)| Some((c.parse::<usize>().ok()?, t.parse::<u64>().ok()?)));
        match parsed {
            Some((count, at)) if now_ms.saturating_sub(at) <= stale_ms => sum += count,
            _ => stale.push(node.clone()),
        }
    }
    (sum, stale)
}

/// The budget task (owned by the fleet thread).
pub struct Budgets {
    cfg: BudgetConfig,
    node: String,
    interval: Duration,
    tenants: Arc<Tenants>,
    metrics: Arc<FleetMetrics>,
    script: redis::Script,
    up: bool,
}

impl Budgets {
    /// A task for these tenants.
    pub fn new(
        cfg: BudgetConfig,
        node: String,
        interval: Duration,
        tenants: Arc<Tenants>,
        metrics: Arc<FleetMetrics>,
    ) -> Budgets {
        Budgets {
            cfg,
            node,
            interval,
            tenants,
            metrics,
            script: redis::Script::new(LEASE_SCRIPT),
            up: true,
        }
    }

    /// Run until `stop`; then give unspent leases back and remove this relay's counts.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let client = match redis::Client::open(self.cfg.url.as_str()) {
            Ok(c) => c,
            Err(e) => {
                self.set_up(Err(RoundError::BadUrl(e)));
                return;
            }
        };
        let mut con: Option<MultiplexedConnection> = None;
        let mut last_sync: Option<Instant> = None;
        while !*stop.borrow() {
            let sync_due = last_sync.is_none_or(|t| t.elapsed() >= self.interval);
            // A failed round is tried once more on a new connection before Redis counts as
            // down: a connection Redis (or a proxy in front of it) closed, even while it
            // was being set up, or one slow answer, must not turn a closed-mode relay into
            // one that refuses every governed tenant until the next tick. Redis down is
            // still noticed at once (a refused dial fails in microseconds); only a dial
            // that timed out is not tried again.
            let mut result = self.attempt(&client, &mut con, sync_due).await;
            if result
                .as_ref()
                .is_err_and(|e| !matches!(e, RoundError::ConnectTimeout(_)))
            {
                result = self.attempt(&client, &mut con, sync_due).await;
            }
            if sync_due {
                last_sync = Some(Instant::now());
            }
            self.set_up(result);
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = stop.changed() => {}
            }
        }
        if let Some(c) = con.as_mut() {
            let _ = tokio::time::timeout(OP_TIMEOUT, self.give_back(c)).await;
        }
    }

    /// One round on `con`, dialled first when there is none; a failure is counted and
    /// drops the connection.
    async fn attempt(
        &self,
        client: &redis::Client,
        con: &mut Option<MultiplexedConnection>,
        sync: bool,
    ) -> Result<(), RoundError> {
        let result = async {
            let c = match con {
                Some(c) => c,
                None => {
                    let dialled =
                        tokio::time::timeout(OP_TIMEOUT, client.get_multiplexed_async_connection())
                            .await
                            .map_err(|_| RoundError::ConnectTimeout(OP_TIMEOUT))?
                            .map_err(RoundError::Connect)?;
                    con.insert(dialled)
                }
            };
            let limit = OP_TIMEOUT + self.interval;
            tokio::time::timeout(limit, self.round(c, sync))
                .await
                .map_err(|_| RoundError::RoundTimeout(limit))?
                .map_err(RoundError::Redis)
        }
        .await;
        if result.is_err() {
            self.metrics.budget_error();
            *con = None;
        }
        result
    }

    fn set_up(&mut self, result: Result<(), RoundError>) {
        let up = result.is_ok();
        if up != self.up {
            let mode = match self.cfg.fail {
                FailMode::Closed => "closed: refusing what fleet limits govern",
                FailMode::Open => "open: admitting without fleet limits",
            };
            match result {
                Ok(()) => tracing::info!("Redis reachable again; fleet limits enforced"),
                Err(e) => tracing::error!(
                    url = %crate::config::loggable_url(&self.cfg.url),
                    error = %e,
                    fail = mode,
                    "Redis unreachable; --budget-fail {mode}"
                ),
            }
        }
        self.up = up;
        self.tenants.fleet().backend_up.store(up, Ordering::Release);
        self.metrics
            .budget_backend_down
            .store(!up, Ordering::Relaxed);
    }

    /// Top up leases (and, when due, sync session counts); any Redis error fails the round.
    async fn round(&self, con: &mut MultiplexedConnection, sync: bool) -> redis::RedisResult<()> {
        let (day, month) = crate::utc::day_and_month(SystemTime::now());
        for (name, tenant) in self.tenants.fleet_tenants() {
            let wants = tenant.with_book(|b| {
                b.roll(day, month);
                let mut w = b.wants(self.cfg.lease_tokens);
                if sync {
                    // A spent budget is asked again once per sync interval (a relay may
                    // have given leases back, or the budget grown).
                    for p in &b.periods {
                        if p.exhausted && p.local <= 0 && p.id != 0 {
                            w.push((p.period, p.id, self.cfg.lease_tokens));
                        }
                    }
                }
                w
            });
            for (period, id, want) in wants {
                let limit = match period {
                    Period::Day => tenant.limits().tokens_per_day,
                    Period::Month => tenant.limits().tokens_per_month,
                }
                .unwrap_or(0);
                let (granted, exhausted): (u64, u8) = self
                    .script
                    .key(budget_key(&name, period, id))
                    .arg(want)
                    .arg(limit)
                    .arg(period_ttl(period))
                    .invoke_async(con)
                    .await?;
                if granted > 0 {
                    self.metrics.lease(granted);
                }
                tenant.with_book(|b| b.granted(period, id, granted, exhausted != 0));
                tracing::debug!(tenant = %name, period = period.as_str(), granted, exhausted, "budget lease");
            }
            if sync && tenant.limits().fleet_max_sessions.is_some() {
                let key = sessions_key(&name);
                let now = unix_ms();
                let value = format!("{}:{now}", tenant.sessions());
                let (_, _, fields): ((), (), Vec<(String, String)>) = redis::pipe()
                    .hset(&key, &self.node, value)
                    .expire(&key, 86_400)
                    .hgetall(&key)
                    .query_async(con)
                    .await?;
                let stale_ms = (self.interval.as_millis() as u64 * 3).max(3_000);
                let (sum, stale) = others(&fields, &self.node, now, stale_ms);
                tenant.set_fleet_others(sum);
                if !stale.is_empty() {
                    let _: () = redis::cmd("HDEL")
                        .arg(&key)
                        .arg(&stale)
                        .query_async(con)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Shutdown: unspent leases back to their budgets, this relay's counts removed.
    async fn give_back(&self, con: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        for (name, tenant) in self.tenants.fleet_tenants() {
            for (period, id, tokens) in tenant.with_book(|b| b.unspent()) {
                let _: i64 = redis::cmd("DECRBY")
                    .arg(budget_key(&name, period, id))
                    .arg(tokens)
                    .query_async(con)
                    .await?;
            }
            if tenant.limits().fleet_max_sessions.is_some() {
                let _: () = redis::cmd("HDEL")
                    .arg(sessions_key(&name))
                    .arg(&self.node)
                    .query_async(con)
                    .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_relays_counts_are_summed_and_stale_ones_dropped() {
        let f = |n: &str, v: &str| (n.to_string(), v.to_string());
        let fields = vec![
            f("me", "7:1000"),
            f("a", "3:9000"),
            f("b", "4:8000"),
            f("dead", "9:1000"),
            f("junk", "x"),
        ];
        let (sum, stale) = others(&fields, "me", 10_000, 3_000);
        assert_eq!(sum, 7, "a + b; not me, not the dead relay");
        assert_eq!(stale, ["dead", "junk"]);
    }

    #[test]
    fn keys_name_tenant_and_period() {
        assert_eq!(
            budget_key("acme", Period::Day, 20261128),
            "tollgate:budget:acme:day:20261128"
        );
        assert_eq!(
            budget_key("acme", Period::Month, 202611),
            "tollgate:budget:acme:month:202611"
        );
        assert_eq!(sessions_key("acme"), "tollgate:sessions:acme");
    }
}
