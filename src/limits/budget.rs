//! Fleet budgets as a worker sees them (with `--budget-redis`): the in-memory
//! [`BudgetBook`] of leases the fleet thread took from Redis, and the [`FleetView`] of the
//! fleet's session count and Redis's health. Workers check and charge these; only the
//! fleet thread (`crate::fleet`) talks to Redis.

use std::sync::atomic::AtomicBool;

use super::TenantLimits;

/// A budget period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// A UTC day (id `YYYYMMDD`).
    Day,
    /// A UTC month (id `YYYYMM`).
    Month,
}

impl Period {
    /// Name in Redis keys and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }
}

/// One period's budget as this relay sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodLease {
    /// Which period.
    pub period: Period,
    /// The fleet-wide budget (tokens).
    pub limit: u64,
    /// The period it counts (`YYYYMMDD` / `YYYYMM`).
    pub id: u32,
    /// Tokens leased from the fleet and not yet spent here (negative: spent ahead of the
    /// next lease).
    pub local: i64,
    /// Redis said the period's budget is fully leased out.
    pub exhausted: bool,
    /// Leases taken this period.
    pub leases: u64,
}

/// Why a tenant's fleet limits refuse something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetRefusal {
    /// The day's or month's token budget is spent (`insufficient_quota`).
    InsufficientQuota(Period),
    /// The fleet-wide session cap is reached (`fleet_session_limit_reached`).
    FleetSessions,
    /// Redis is unreachable and `--budget-fail closed` (`budget_unavailable`).
    Unavailable,
}

impl FleetRefusal {
    /// The error code clients see.
    pub const fn code(self) -> &'static str {
        match self {
            FleetRefusal::InsufficientQuota(_) => "insufficient_quota",
            FleetRefusal::FleetSessions => "fleet_session_limit_reached",
            FleetRefusal::Unavailable => "budget_unavailable",
        }
    }
}

/// A tenant's token budgets on this relay: the leases it holds per period. Pure
/// bookkeeping; the fleet thread moves leases between it and Redis.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BudgetBook {
    /// Day and month, when configured.
    pub periods: Vec<PeriodLease>,
}

impl BudgetBook {
    /// A book for these limits (no lease yet).
    pub fn new(limits: &TenantLimits) -> BudgetBook {
        let mut periods = Vec::new();
        for (period, limit) in [
            (Period::Day, limits.tokens_per_day),
            (Period::Month, limits.tokens_per_month),
        ] {
            if let Some(limit) = limit {
                periods.push(PeriodLease {
                    period,
                    limit,
                    id: 0,
                    local: 0,
                    exhausted: false,
                    leases: 0,
                });
            }
        }
        BudgetBook { periods }
    }

    /// Move to the periods of `(day, month)`: a new period starts with no lease.
    pub fn roll(&mut self, day: u32, month: u32) {
        for p in &mut self.periods {
            let id = match p.period {
                Period::Day => day,
                Period::Month => month,
            };
            if p.id != id {
                *p = PeriodLease {
                    id,
                    local: 0,
                    exhausted: false,
                    leases: 0,
                    ..*p
                };
            }
        }
    }

    /// May a response start? Refused only once the fleet said a period's budget is fully
    /// leased *and* this relay's lease is spent; before the first lease arrives responses
    /// are admitted (the overshoot this allows is bounded, see `crate::fleet`).
    pub fn admit(&self) -> Result<(), FleetRefusal> {
        match self.periods.iter().find(|p| p.exhausted && p.local <= 0) {
            Some(p) => Err(FleetRefusal::InsufficientQuota(p.period)),
            None => Ok(()),
        }
    }

    /// A response used `tokens`.
    pub fn charge(&mut self, tokens: u64) {
        let t = i64::try_from(tokens).unwrap_or(i64::MAX);
        for p in &mut self.periods {
            p.local = p.local.saturating_sub(t);
        }
    }

    /// The leases to ask for now: `(period, id, tokens)` for each period below half a
    /// lease and not exhausted (asking enough to be a full lease ahead again).
    pub fn wants(&self, lease: u64) -> Vec<(Period, u32, u64)> {
        let half = i64::try_from(lease / 2).unwrap_or(i64::MAX);
        self.periods
            .iter()
            .filter(|p| !p.exhausted && p.id != 0 && p.local < half)
            .map(|p| {
                let behind = u64::try_from(-p.local.min(0)).unwrap_or(0);
                (p.period, p.id, lease.saturating_add(behind))
            })
            .collect()
    }

    /// The fleet granted `tokens` for `(period, id)` (`exhausted`: nothing is left after it).
    /// A grant for a period that already ended is dropped.
    pub fn granted(&mut self, period: Period, id: u32, tokens: u64, exhausted: bool) {
        if let Some(p) = self
            .periods
            .iter_mut()
            .find(|p| p.period == period && p.id == id)
        {
            p.local = p
                .local
                .saturating_add(i64::try_from(tokens).unwrap_or(i64::MAX));
            p.exhausted |= exhausted;
            p.leases += 1;
        }
    }

    /// Unspent leased tokens per period, to give back at shutdown.
    pub fn unspent(&self) -> Vec<(Period, u32, u64)> {
        self.periods
            .iter()
            .filter(|p| p.id != 0 && p.local > 0)
            .map(|p| (p.period, p.id, u64::try_from(p.local).unwrap_or(0)))
            .collect()
    }
}

/// How a relay treats its tenants' fleet limits while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Refuse what a fleet limit governs (`budget_unavailable`).
    #[default]
    Closed,
    /// Admit as if the limits were not there.
    Open,
}

/// The fleet's view shared by the workers and the fleet thread.
#[derive(Debug)]
pub struct FleetView {
    /// Fleet limits are enforced (`--budget-redis` is set).
    pub enabled: bool,
    /// Redis answered the last sync.
    pub backend_up: AtomicBool,
    /// What to do while it does not.
    pub fail: FailMode,
}

impl Default for FleetView {
    fn default() -> Self {
        FleetView {
            enabled: false,
            backend_up: AtomicBool::new(true),
            fail: FailMode::Closed,
        }
    }
}
