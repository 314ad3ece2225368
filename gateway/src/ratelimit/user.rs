//! Per-user GCRA limits with bounded memory.
//!
//! governor's keyed limiter has one quota per limiter and no bound on its key count, so this
//! keeps its own state: the same GCRA as governor (one "theoretical arrival time" per key),
//! the quota chosen per check from the active window and the user's grade, in sharded maps
//! that never hold more than `max_keys` users.
//!
//! Each shard keeps two generations of keys, `young` and `old`. A key that is used moves to
//! `young`; when `young` is full, `old` is dropped and `young` becomes `old`. A key survives
//! as long as it is used at least once per generation, and the total is at most
//! `max_keys`, however many distinct users arrive. A key whose bucket is full again (its
//! arrival time has passed) carries no information and is not stored at all, or dropped by
//! [`UserLimiter::evict_idle`].
//!
//! The maps hash with `foldhash` (seeded per process), as the memory store's do, not std's
//! SipHash: the keys are user ids the gateway has validated (at most 64 characters), so
//! flooding resistance buys nothing, and a check hashes each key twice (shard, then map).
//!
//! The price of the bound: under a flood of distinct ids, a user who paused for a whole
//! generation loses its state and gets a fresh burst. That errs towards the user, and the
//! global limits still hold.
//!
//! # Grades
//! The quota depends on the user's risk grade, which lives in the store, not in the
//! request. Reading it before the check would cost a store round trip per request ahead of
//! the limit (on Redis, a network round trip on the benchmarked drawdown path), so the
//! limiter remembers it instead, in the user's entry, beside the arrival time: a handler that
//! loaded the user's state anyway (a drawdown, a credit-line quote) tells it with
//! [`UserLimiter::learn`]. No lookup is added: the check reads the
//! grade from the entry it already finds. A user's first request, grade unknown, is charged
//! at the window's default quota (a fresh bucket admits one request under any quota, so the
//! answer is the same); when the grade is learned, the arrival time is re-charged at the
//! grade's quota, so the state is what it would have been had the grade been known. The
//! grade is forgotten with the entry, only when the bucket is full again (then the next
//! request is admitted under any quota) or under a flood of ids (see above). A grade
//! changed upstream applies from the next request that loads the user.

use foldhash::fast::RandomState;
use std::hash::BuildHasher;
use std::mem;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use risk_core::RiskGrade;
use tokio::time::Instant;

use super::{RateLimited, Scope};
use crate::policy::{Policy, UserRate};

/// The maps of a shard (see the module docs on hashing).
type HashMap<K, V> = std::collections::HashMap<K, V, RandomState>;

/// Shards of the key space: enough that 2 cores (or 16) rarely contend.
const SHARDS: usize = 16;

/// A GCRA keyed by user id, bounded to `max_keys` tracked users.
#[derive(Debug)]
pub struct UserLimiter {
    policy: Policy,
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// Keys per generation per shard.
    generation_cap: usize,
    /// Arrival times are nanoseconds since this instant.
    origin: Instant,
}

#[derive(Debug, Default)]
struct Shard {
    young: HashMap<Arc<str>, Entry>,
    old: HashMap<Arc<str>, Entry>,
}

/// A tracked user: its GCRA arrival time and, once learned, its grade.
#[derive(Debug, Clone, Copy)]
struct Entry {
    tat: u64,
    grade: Option<RiskGrade>,
}

impl UserLimiter {
    /// A limiter following `policy`'s user quotas that tracks at most `max_keys` users
    /// (at least 2 per shard are kept, so a tiny cap is rounded up to 32).
    pub fn new(policy: &Policy, max_keys: usize) -> Self {
        let generation_cap = (max_keys / SHARDS / 2).max(1);
        UserLimiter {
            policy: policy.clone(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::default(),
            generation_cap,
            origin: Instant::now(),
        }
    }

    /// The most users this limiter tracks at once.
    pub fn max_keys(&self) -> usize {
        self.generation_cap * 2 * SHARDS
    }

    /// Takes one request of `user` from its bucket. The quota is the active window's, by
    /// the user's grade when it has an override, else the window's default. The grade is
    /// the one learned ([`UserLimiter::learn`]), else `grade` (a hint from the request).
    pub fn check(&self, user: &str, grade: Option<RiskGrade>) -> Result<(), RateLimited> {
        let policy = self.policy.load();
        let quota = &policy.limits.user;
        let now = self.now_nanos();
        self.shard(user)
            .check(user, now, self.generation_cap, |learned| {
                gcra_params(quota.for_grade(learned.or(grade)))
            })
            .map_err(|wait| RateLimited::new(Scope::User, Duration::from_nanos(wait)))
    }

    /// Remembers `user`'s grade (see the module docs, "Grades"), for as long as the user is
    /// tracked. The first time a tracked user's grade is learned, the request it was charged
    /// for at the default quota is re-charged at the grade's.
    pub fn learn(&self, user: &str, grade: RiskGrade) {
        let policy = self.policy.load();
        let quota = &policy.limits.user;
        let mut shard = self.shard(user);
        let Some(entry) = shard.get_mut(user) else {
            // Not tracked: its bucket is full, and the next request is admitted under any
            // quota; its grade is learned again when it is loaded.
            return;
        };
        if entry.grade.is_none() {
            let (charged, _) = gcra_params(quota.for_grade(None));
            let (due, _) = gcra_params(quota.for_grade(Some(grade)));
            entry.tat = entry.tat.saturating_sub(charged).saturating_add(due);
        }
        entry.grade = Some(grade);
    }

    /// Users tracked now (at most [`UserLimiter::max_keys`]).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// No user is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every user whose bucket is full again (indistinguishable from a new user) and
    /// releases spare memory. For a periodic housekeeping task; the bound holds without it.
    pub fn evict_idle(&self) {
        let now = self.now_nanos();
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.young.retain(|_, e| e.tat > now);
            shard.old.retain(|_, e| e.tat > now);
            shard.young.shrink_to_fit();
            shard.old.shrink_to_fit();
        }
    }

    fn shard(&self, user: &str) -> MutexGuard<'_, Shard> {
        let hash = self.hasher.hash_one(user);
        // SHARDS is a power of two far below u64::MAX: the remainder fits a usize.
        let index = usize::try_from(hash % SHARDS as u64).unwrap_or(0);
        lock(&self.shards[index])
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic inside `Shard::check` cannot leave a map inconsistent (HashMap is panic-safe),
    // so a poisoned shard is still usable.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Emission interval `t` and tolerance `tau` in nanoseconds (governor's `Gcra::new`).
fn gcra_params(rate: UserRate) -> (u64, u64) {
    const MINUTE: u64 = 60_000_000_000;
    let t = MINUTE / u64::from(rate.per_minute.max(1));
    let tau = t.saturating_mul(u64::from(rate.burst.max(1) - 1));
    (t, tau)
}

/// One GCRA step: conforming requests push the arrival time `tat` by `t`; a request earlier
/// than `tat - tau` is refused with the wait until it would conform.
fn gcra(tat: &mut u64, now: u64, t: u64, tau: u64) -> Result<(), u64> {
    let start = (*tat).max(now);
    let earliest = start.saturating_sub(tau);
    if now < earliest {
        Err(earliest - now)
    } else {
        *tat = start.saturating_add(t);
        Ok(())
    }
}

impl Shard {
    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    /// One GCRA step for `user`, with the parameters `params` gives for its learned grade.
    fn check(
        &mut self,
        user: &str,
        now: u64,
        cap: usize,
        params: impl FnOnce(Option<RiskGrade>) -> (u64, u64),
    ) -> Result<(), u64> {
        if let Some(e) = self.young.get_mut(user) {
            let (t, tau) = params(e.grade);
            return gcra(&mut e.tat, now, t, tau);
        }
        let full = self.young.len() >= cap;
        let mut e = self.old.remove(user).unwrap_or(Entry {
            tat: now,
            grade: None,
        });
        let (t, tau) = params(e.grade);
        let result = gcra(&mut e.tat, now, t, tau);
        if e.tat > now {
            if full {
                // Drop the old generation, keep its allocation for the new young one.
                mem::swap(&mut self.young, &mut self.old);
                self.young.clear();
            }
            // Only a key that is kept is copied: a request's id is borrowed for the check.
            self.young.insert(Arc::from(user), e);
        }
        result
    }

    fn get_mut(&mut self, user: &str) -> Option<&mut Entry> {
        match self.young.get_mut(user) {
            Some(e) => Some(e),
            None => self.old.get_mut(user),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::policy::PolicyConfig;

    fn policy() -> Policy {
        let config: PolicyConfig = toml::from_str(
            r#"
            [normal.user]
            per_minute = 6
            burst = 2
            grades.E = { per_minute = 1, burst = 1 }
            [[windows]]
            name = "peak"
            daily_start = "20:00"
            daily_end = "22:00"
            [windows.limits.user]
            per_minute = 2
            burst = 1
            "#,
        )
        .unwrap();
        let clock = ManualClock::new("2026-03-01T00:00:00Z".parse().unwrap());
        Policy::new(&config, clock.shared()).unwrap()
    }

    fn key(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_refusal_then_replenish() {
        let limiter = UserLimiter::new(&policy(), 1000);
        let alice = key("alice");
        limiter.check(&alice, None).unwrap();
        limiter.check(&alice, None).unwrap();
        let refused = limiter.check(&alice, None).unwrap_err();
        assert_eq!(refused.scope(), Scope::User);
        // 6 per minute: one every 10 s.
        assert_eq!(refused.retry_after(), Duration::from_secs(10));
        // Another user is not affected.
        limiter.check(&key("bob"), None).unwrap();
        tokio::time::advance(Duration::from_millis(9_500)).await;
        assert_eq!(
            limiter.check(&alice, None).unwrap_err().retry_after(),
            Duration::from_secs(1)
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        limiter.check(&alice, None).unwrap();
        assert!(limiter.check(&alice, None).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn quota_by_grade_and_unknown_grade_uses_the_default() {
        let limiter = UserLimiter::new(&policy(), 1000);
        let e = key("risky");
        limiter.check(&e, Some(RiskGrade::E)).unwrap();
        let refused = limiter.check(&e, Some(RiskGrade::E)).unwrap_err();
        assert_eq!(refused.retry_after(), Duration::from_secs(60));
        let a = key("good");
        limiter.check(&a, Some(RiskGrade::A)).unwrap();
        limiter.check(&a, Some(RiskGrade::A)).unwrap();
        assert!(limiter.check(&a, Some(RiskGrade::A)).is_err());
        let unknown = key("unknown");
        limiter.check(&unknown, None).unwrap();
        limiter.check(&unknown, None).unwrap();
        assert!(limiter.check(&unknown, None).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_learned_grade_sets_the_quota_from_the_first_request() {
        // Normal: default 6/min burst 2, grade E 1/min burst 1.
        let limiter = UserLimiter::new(&policy(), 1000);
        let e = key("risky");
        // Unknown grade: charged at the default quota, then the grade is learned.
        limiter.check(&e, None).unwrap();
        limiter.learn(&e, RiskGrade::E);
        // Re-charged at grade E's quota: as if the first request had been charged at 1/min.
        let refused = limiter.check(&e, None).unwrap_err();
        assert_eq!(refused.retry_after(), Duration::from_secs(60));
        tokio::time::advance(Duration::from_secs(60)).await;
        limiter.check(&e, None).unwrap();
        assert!(limiter.check(&e, None).is_err());
        // A grade without an override keeps the default quota.
        let a = key("good");
        limiter.check(&a, None).unwrap();
        limiter.learn(&a, RiskGrade::A);
        limiter.check(&a, None).unwrap();
        assert!(limiter.check(&a, None).is_err());
        // An untracked user learns nothing (its next request is a fresh bucket anyway).
        limiter.learn(&key("never-seen"), RiskGrade::E);
        assert_eq!(limiter.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_opening_tightens_without_forgetting() {
        let policy = policy();
        let limiter = UserLimiter::new(&policy, 1000);
        let u = key("u");
        limiter.check(&u, None).unwrap();
        policy.force(Some("peak")).unwrap();
        // Peak: 2/min, burst 1. The request made under the normal quota still counts.
        assert!(limiter.check(&u, None).is_err());
        let fresh = key("fresh");
        limiter.check(&fresh, None).unwrap();
        assert_eq!(
            limiter.check(&fresh, None).unwrap_err().retry_after(),
            Duration::from_secs(30)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_are_evicted() {
        let limiter = UserLimiter::new(&policy(), 1000);
        for i in 0..100 {
            limiter.check(&key(&format!("user-{i}")), None).unwrap();
        }
        assert_eq!(limiter.len(), 100);
        limiter.evict_idle();
        assert_eq!(limiter.len(), 100, "buckets not yet full again are kept");
        tokio::time::advance(Duration::from_secs(10)).await;
        limiter.evict_idle();
        assert!(limiter.is_empty());
    }

    #[test]
    fn a_million_distinct_users_stay_within_the_cap() {
        // Real time, no runtime: a paused tokio clock takes a lock per read. One request per
        // minute per user, so nothing replenishes while the test runs.
        let config: PolicyConfig =
            toml::from_str("[normal.user]\nper_minute = 1\nburst = 2").unwrap();
        let clock = ManualClock::new("2026-03-01T00:00:00Z".parse().unwrap());
        let policy = Policy::new(&config, clock.shared()).unwrap();
        let limiter = UserLimiter::new(&policy, 10_000);
        assert!((9_900..=10_000).contains(&limiter.max_keys()));
        let hot = key("hot-user");
        let mut hot_refusals = 0;
        for i in 0..1_000_000u32 {
            limiter.check(&format!("u{i}"), None).unwrap();
            // A user active throughout keeps its state: after its burst of 2, refused.
            if i % 1000 == 0 && limiter.check(&hot, None).is_err() {
                hot_refusals += 1;
            }
        }
        assert!(limiter.len() <= 10_000, "tracked {}", limiter.len());
        assert!(limiter.len() >= 5_000, "tracked {}", limiter.len());
        assert_eq!(hot_refusals, 998);
    }

    #[test]
    fn concurrent_checks_never_exceed_the_burst() {
        // Outside a runtime, tokio's Instant is the real monotonic clock; 8 threads × 1000
        // checks take milliseconds, far less than the 10 s a token takes to come back.
        let limiter = UserLimiter::new(&policy(), 1000);
        let shared = key("shared");
        let allowed: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..1000)
                            .filter(|_| limiter.check(&shared, None).is_ok())
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(allowed, 2);
    }
}
