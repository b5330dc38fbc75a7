//! Per-tenant admission limits shared by every worker: concurrent sessions (checked at the
//! handshake) and `response.create`s per minute (checked on each create). Touched once per
//! session and once per create — never per frame — so a mutex and an atomic are fine here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// A tenant's limits; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantLimits {
    /// Concurrent sessions (across all workers of this relay).
    pub max_sessions: Option<usize>,
    /// `response.create`s per minute (token bucket: bursts of this size, refilled evenly).
    pub turns_per_minute: Option<u32>,
}

impl TenantLimits {
    /// `self`, with every unset limit taken from `defaults`.
    pub fn or(self, defaults: TenantLimits) -> TenantLimits {
        TenantLimits {
            max_sessions: self.max_sessions.or(defaults.max_sessions),
            turns_per_minute: self.turns_per_minute.or(defaults.turns_per_minute),
        }
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
    fn new(limits: TenantLimits) -> Tenant {
        Tenant {
            limits,
            sessions: AtomicUsize::new(0),
            bucket: Mutex::new(Bucket {
                tokens: f64::from(limits.turns_per_minute.unwrap_or(0)),
                last: Instant::now(),
            }),
        }
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
}

impl Tenants {
    /// Limits: `defaults` for every tenant, overridden per tenant by `configured`.
    pub fn new(defaults: TenantLimits, configured: HashMap<Arc<str>, TenantLimits>) -> Tenants {
        Tenants {
            defaults,
            configured: RwLock::new(configured),
            live: Mutex::new(HashMap::new()),
        }
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
        let t = Arc::new(Tenant::new(limits));
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
                turns_per_minute: None,
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
                max_sessions: None,
                turns_per_minute: Some(60),
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
}
