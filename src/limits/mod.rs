//! Per-tenant admission limits shared by every worker: concurrent sessions (checked at the
//! handshake) and `response.create`s per minute (checked on each create). Touched once per
//! session and once per create — never per frame — so a mutex and an atomic are fine here.
//!
//! **Fleet limits** (with `--budget-redis`): token budgets per UTC day and/or month and a
//! concurrent-session cap across every relay of the fleet. The workers never talk to
//! Redis: they check and charge the in-memory [`BudgetBook`] (leases of budget the fleet
//! thread took from Redis, and whether Redis said the budget is spent) and the fleet's
//! session count from the last sync. The fleet thread (`crate::fleet`) keeps both fresh.

mod budget;

pub use budget::{BudgetBook, FailMode, FleetRefusal, FleetView, Period, PeriodLease};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// A tenant's limits; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantLimits {
    /// Concurrent sessions (across all workers of this relay).
    pub max_sessions: Option<usize>,
    /// `response.create`s per minute (token bucket: bursts of this size, refilled evenly).
    pub turns_per_minute: Option<u32>,
    /// Tokens per UTC day across the fleet.
    pub tokens_per_day: Option<u64>,
    /// Tokens per UTC month across the fleet.
    pub tokens_per_month: Option<u64>,
    /// Concurrent sessions across the fleet.
    pub fleet_max_sessions: Option<usize>,
}

impl TenantLimits {
    /// `self`, with every unset limit taken from `defaults`.
    pub fn or(self, defaults: TenantLimits) -> TenantLimits {
        TenantLimits {
            max_sessions: self.max_sessions.or(defaults.max_sessions),
            turns_per_minute: self.turns_per_minute.or(defaults.turns_per_minute),
            tokens_per_day: self.tokens_per_day.or(defaults.tokens_per_day),
            tokens_per_month: self.tokens_per_month.or(defaults.tokens_per_month),
            fleet_max_sessions: self.fleet_max_sessions.or(defaults.fleet_max_sessions),
        }
    }

    /// Whether any limit needs the fleet (Redis).
    pub fn needs_fleet(&self) -> bool {
        self.tokens_per_day.is_some()
            || self.tokens_per_month.is_some()
            || self.fleet_max_sessions.is_some()
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// One tenant's live counters.
#[derive(Debug)]
pub struct Tenant {
    limits: TenantLimits,
    sessions: AtomicUsize,
    bucket: Mutex<Bucket>,
    /// Sessions the other relays of the fleet reported at the last sync.
    fleet_others: AtomicUsize,
    /// Token budgets (empty without day/month budgets).
    book: Mutex<BudgetBook>,
    fleet: Arc<FleetView>,
}

/// Held while a session of the tenant is open; gives its slot back on drop.
#[derive(Debug)]
pub struct SessionSlot {
    tenant: Arc<Tenant>,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.tenant.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SessionSlot {
    /// The tenant this slot belongs to.
    pub fn tenant(&self) -> &Arc<Tenant> {
        &self.tenant
    }
}

impl Tenant {
    fn new(limits: TenantLimits, fleet: Arc<FleetView>) -> Tenant {
        let mut book = BudgetBook::new(&limits);
        let (day, month) = crate::utc::day_and_month(SystemTime::now());
        book.roll(day, month);
        Tenant {
            limits,
            sessions: AtomicUsize::new(0),
            bucket: Mutex::new(Bucket {
                tokens: f64::from(limits.turns_per_minute.unwrap_or(0)),
                last: Instant::now(),
            }),
            fleet_others: AtomicUsize::new(0),
            book: Mutex::new(book),
            fleet,
        }
    }

    fn governed(&self) -> bool {
        self.fleet.enabled && self.limits.needs_fleet()
    }

    /// Fleet limits that apply now, before Redis's word: `Err(Unavailable)` when Redis is
    /// down and the fail mode is closed; `Ok(false)` when it is down and the mode is open
    /// (nothing to check); `Ok(true)` otherwise.
    fn fleet_gate(&self) -> Result<bool, FleetRefusal> {
        if !self.governed() {
            return Ok(false);
        }
        if self.fleet.backend_up.load(Ordering::Acquire) {
            return Ok(true);
        }
        match self.fleet.fail {
            FailMode::Closed => Err(FleetRefusal::Unavailable),
            FailMode::Open => Ok(false),
        }
    }

    /// May a response start (token budgets)? Checked at the handshake and on each create.
    pub fn budget_admit(&self, now: SystemTime) -> Result<(), FleetRefusal> {
        if !self.fleet_gate()?
            || self
                .limits
                .tokens_per_day
                .or(self.limits.tokens_per_month)
                .is_none()
        {
            return Ok(());
        }
        let (day, month) = crate::utc::day_and_month(now);
        let mut b = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        b.roll(day, month);
        b.admit()
    }

    /// A response of this tenant used `tokens` (charged against the leases).
    pub fn charge(&self, tokens: u64) {
        if self.governed() && tokens > 0 {
            self.book
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .charge(tokens);
        }
    }

    /// The fleet thread's access to the budget book.
    pub fn with_book<R>(&self, f: impl FnOnce(&mut BudgetBook) -> R) -> R {
        f(&mut self.book.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Sessions the rest of the fleet holds (set by the fleet thread at each sync).
    pub fn set_fleet_others(&self, n: usize) {
        self.fleet_others.store(n, Ordering::Release);
    }

    /// This tenant's limits.
    pub fn limits(&self) -> TenantLimits {
        self.limits
    }

    /// Sessions open now.
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Acquire)
    }

    /// Take a session slot, or `None` when the tenant is at `max_sessions`.
    pub fn open_session(self: &Arc<Self>) -> Option<SessionSlot> {
        let n = self.sessions.fetch_add(1, Ordering::AcqRel) + 1;
        if self.limits.max_sessions.is_some_and(|max| n > max) {
            self.sessions.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(SessionSlot {
            tenant: Arc::clone(self),
        })
    }

    /// The fleet-wide session cap, for a session that just took its slot here: refused when
    /// this relay's sessions (that one included) plus the others' (last sync) exceed it.
    pub fn fleet_session_admit(&self) -> Result<(), FleetRefusal> {
        let Some(cap) = self.limits.fleet_max_sessions else {
            return Ok(());
        };
        if !self.fleet_gate()? {
            return Ok(());
        }
        let here = self.sessions();
        if here + self.fleet_others.load(Ordering::Acquire) > cap {
            Err(FleetRefusal::FleetSessions)
        } else {
            Ok(())
        }
    }

    /// Take one turn at `now`; `Err(retry_after)` when the tenant is over its rate.
    pub fn take_turn(&self, now: Instant) -> Result<(), Duration> {
        let Some(per_min) = self.limits.turns_per_minute else {
            return Ok(());
        };
        let rate = f64::from(per_min) / 60.0;
        let mut b = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(f64::from(per_min));
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else if rate > 0.0 {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
        } else {
            Err(Duration::from_secs(60))
        }
    }
}

/// Most tenants kept for passthrough mode (tenants are fingerprints of client keys there,
/// so their number is not bounded by a keys file); past it idle entries are dropped.
pub const MAX_TENANTS: usize = 65_536;

/// Every tenant's counters, created on first use.
#[derive(Debug, Default)]
pub struct Tenants {
    defaults: TenantLimits,
    configured: RwLock<HashMap<Arc<str>, TenantLimits>>,
    live: Mutex<HashMap<Arc<str>, Arc<Tenant>>>,
    fleet: Arc<FleetView>,
}

impl Tenants {
    /// Limits: `defaults` for every tenant, overridden per tenant by `configured`.
    pub fn new(defaults: TenantLimits, configured: HashMap<Arc<str>, TenantLimits>) -> Tenants {
        Tenants {
            defaults,
            configured: RwLock::new(configured),
            live: Mutex::new(HashMap::new()),
            fleet: Arc::new(FleetView::default()),
        }
    }

    /// Enforce fleet limits (Redis configured) with this fail mode.
    pub fn with_fleet(mut self, fail: FailMode) -> Tenants {
        self.fleet = Arc::new(FleetView {
            enabled: true,
            backend_up: AtomicBool::new(true),
            fail,
        });
        self
    }

    /// The fleet view (the fleet thread sets `backend_up`).
    pub fn fleet(&self) -> &Arc<FleetView> {
        &self.fleet
    }

    /// Every tenant known by name whose limits need the fleet: the configured ones (they
    /// are synced even before their first session, so the fleet learns their counts) and
    /// the live ones (defaults apply to every tenant).
    pub fn fleet_tenants(&self) -> Vec<(Arc<str>, Arc<Tenant>)> {
        let names: Vec<Arc<str>> = self
            .configured
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        for n in &names {
            self.get(n);
        }
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.iter()
            .filter(|(_, t)| t.limits.needs_fleet())
            .map(|(n, t)| (Arc::clone(n), Arc::clone(t)))
            .collect()
    }

    /// New per-tenant limits (SIGHUP reload of the keys file): they apply to sessions and
    /// turns from now on; counters of open sessions are kept.
    pub fn reconfigure(&self, configured: HashMap<Arc<str>, TenantLimits>) {
        *self
            .configured
            .write()
            .unwrap_or_else(PoisonError::into_inner) = configured;
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        // Entries without open sessions are rebuilt with the new limits on next use.
        live.retain(|_, t| t.sessions() > 0);
    }

    /// The tenant's live counters.
    pub fn get(&self, name: &Arc<str>) -> Arc<Tenant> {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = live.get(name) {
            return Arc::clone(t);
        }
        if live.len() >= MAX_TENANTS {
            live.retain(|_, t| t.sessions() > 0);
        }
        let limits = self
            .configured
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .copied()
            .unwrap_or_default()
            .or(self.defaults);
        let t = Arc::new(Tenant::new(limits, Arc::clone(&self.fleet)));
        live.insert(Arc::clone(name), Arc::clone(&t));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_slots_are_counted_and_returned() {
        let tenants = Tenants::new(
            TenantLimits {
                max_sessions: Some(2),
                ..TenantLimits::default()
            },
            HashMap::new(),
        );
        let t = tenants.get(&Arc::from("acme"));
        let a = t.open_session().expect("1st");
        let _b = t.open_session().expect("2nd");
        assert!(t.open_session().is_none(), "3rd over the cap");
        assert_eq!(t.sessions(), 2);
        drop(a);
        assert!(t.open_session().is_some(), "a slot came back");
        // The same tenant from another lookup shares the counter.
        assert_eq!(tenants.get(&Arc::from("acme")).sessions(), 1);
    }

    #[test]
    fn turns_refill_evenly_and_say_when_to_retry() {
        let mut configured = HashMap::new();
        configured.insert(
            Arc::from("slow"),
            TenantLimits {
                turns_per_minute: Some(60),
                ..TenantLimits::default()
            },
        );
        let tenants = Tenants::new(TenantLimits::default(), configured);
        let t = tenants.get(&Arc::from("slow"));
        let now = Instant::now();
        for _ in 0..60 {
            t.take_turn(now).expect("burst of 60");
        }
        let retry = t.take_turn(now).expect_err("61st");
        assert!(retry <= Duration::from_secs(1) && retry > Duration::from_millis(900));
        t.take_turn(now + Duration::from_millis(1001))
            .expect("one token a second");
        // Tenants without a configured rate are unlimited.
        let free = tenants.get(&Arc::from("free"));
        for _ in 0..10_000 {
            free.take_turn(now).expect("unlimited");
        }
    }

    fn budgets(day: Option<u64>, month: Option<u64>) -> TenantLimits {
        TenantLimits {
            tokens_per_day: day,
            tokens_per_month: month,
            ..TenantLimits::default()
        }
    }

    #[test]
    fn a_book_admits_until_the_fleet_says_spent_and_its_lease_is_gone() {
        let mut b = BudgetBook::new(&budgets(Some(1000), None));
        b.roll(20261128, 202611);
        // Before the first lease: admitted (optimistic), and a lease is wanted.
        assert_eq!(b.admit(), Ok(()));
        assert_eq!(b.wants(300), vec![(Period::Day, 20261128, 300)]);
        b.granted(Period::Day, 20261128, 300, false);
        assert!(b.wants(300).is_empty(), "a full lease ahead");
        b.charge(200);
        assert_eq!(
            b.wants(300),
            vec![(Period::Day, 20261128, 300)],
            "below half"
        );
        // The fleet grants the last 100 and says that is all.
        b.granted(Period::Day, 20261128, 100, true);
        assert_eq!(b.admit(), Ok(()), "200 tokens still leased here");
        assert!(b.wants(300).is_empty(), "nothing more to ask for");
        b.charge(250);
        assert_eq!(b.admit(), Err(FleetRefusal::InsufficientQuota(Period::Day)));
        assert_eq!(
            b.periods[0].local, -50,
            "the overshoot of the last response"
        );
        // A new day starts over.
        b.roll(20261129, 202611);
        assert_eq!(b.admit(), Ok(()));
        assert_eq!(b.periods[0].local, 0);
        // A grant for the previous day is dropped.
        b.granted(Period::Day, 20261128, 300, false);
        assert_eq!(b.periods[0].local, 0);
    }

    #[test]
    fn a_spent_month_refuses_even_with_day_budget_left() {
        let mut b = BudgetBook::new(&budgets(Some(1000), Some(5000)));
        b.roll(20261128, 202611);
        b.granted(Period::Day, 20261128, 500, false);
        b.granted(Period::Month, 202611, 100, true);
        b.charge(100);
        assert_eq!(
            b.admit(),
            Err(FleetRefusal::InsufficientQuota(Period::Month))
        );
        // Asking to catch up: what is behind plus a lease.
        b.charge(50);
        let w = b.wants(300);
        assert!(w.is_empty() || w.iter().all(|(p, _, _)| *p == Period::Day));
        assert_eq!(b.unspent(), vec![(Period::Day, 20261128, 350)]);
    }

    #[test]
    fn fleet_limits_follow_the_fail_mode_while_redis_is_down() {
        let mut configured = HashMap::new();
        configured.insert(
            Arc::from("capped"),
            TenantLimits {
                fleet_max_sessions: Some(2),
                tokens_per_day: Some(10),
                ..TenantLimits::default()
            },
        );
        for (fail, admitted) in [(FailMode::Closed, false), (FailMode::Open, true)] {
            let tenants =
                Tenants::new(TenantLimits::default(), configured.clone()).with_fleet(fail);
            let t = tenants.get(&Arc::from("capped"));
            let free = tenants.get(&Arc::from("free"));
            let now = SystemTime::now();
            assert_eq!(t.budget_admit(now), Ok(()));
            t.set_fleet_others(1);
            let _one = t.open_session().expect("slot");
            assert_eq!(
                t.fleet_session_admit(),
                Ok(()),
                "1 here + 1 elsewhere = the cap"
            );
            let _two = t.open_session().expect("slot");
            assert_eq!(
                t.fleet_session_admit(),
                Err(FleetRefusal::FleetSessions),
                "2 here + 1 elsewhere"
            );
            tenants.fleet().backend_up.store(false, Ordering::Release);
            assert_eq!(t.budget_admit(now).is_ok(), admitted, "{fail:?}");
            assert_eq!(
                t.fleet_session_admit().err(),
                (!admitted).then_some(FleetRefusal::Unavailable)
            );
            assert_eq!(
                free.budget_admit(now),
                Ok(()),
                "tenants without fleet limits are never governed"
            );
            assert_eq!(free.fleet_session_admit(), Ok(()));
        }
    }
}
