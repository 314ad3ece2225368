//! Global GCRA limits per route class (governor direct limiters).

use std::num::NonZeroU32;
use std::sync::Arc;

use arc_swap::ArcSwap;
use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::{RateLimited, Scope, TokioClock};
use crate::admission::request::RouteClass;
use crate::policy::{GlobalLimits, Policy, Rate};

type Direct = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<std::time::Instant>>;

/// The limiters built for one set of rates.
#[derive(Debug)]
struct Limiters {
    rates: GlobalLimits,
    /// Drawdown, credit line, appeal.
    by_class: [Direct; 3],
}

#[derive(Debug)]
struct State {
    /// The policy generation these limiters were checked against.
    generation: u64,
    limiters: Arc<Limiters>,
}

/// One GCRA limiter per globally limited route class, quotas from the active window.
///
/// When the policy changes (a window opens, an operator forces one), the next check sees
/// the new generation and, if the rates differ, rebuilds the limiters with full buckets; no
/// task and no restart is involved.
#[derive(Debug)]
pub struct GlobalLimiter {
    policy: Policy,
    state: ArcSwap<State>,
    /// This limiter admits `1 / instances` of each rate (see [`GlobalLimiter::scaled`]).
    instances: u32,
}

impl GlobalLimiter {
    /// Limiters for the policy's current window, following its changes.
    pub fn new(policy: &Policy) -> Self {
        Self::scaled(policy, 1)
    }

    /// Limiters admitting this instance's share of each rate when `instances` share it: a
    /// rate of `r`/s with burst `b` becomes `r / instances` per second with burst
    /// `ceil(b / instances)` (at least 1). The cluster-wide limit's fallback while Redis is
    /// unavailable ([`super::SharedGlobalLimiter`]).
    pub fn scaled(policy: &Policy, instances: u32) -> Self {
        let instances = instances.max(1);
        let snapshot = policy.current();
        GlobalLimiter {
            policy: policy.clone(),
            state: ArcSwap::from_pointee(State {
                generation: snapshot.generation,
                limiters: Arc::new(Limiters::new(snapshot.limits.global, instances)),
            }),
            instances,
        }
    }

    /// Takes one request of `class` from its bucket. Classes without a global rate
    /// (reason codes, admin, ops) always pass.
    pub fn check(&self, class: RouteClass) -> Result<(), RateLimited> {
        let index = match class {
            RouteClass::Drawdown => 0,
            RouteClass::CreditLine => 1,
            RouteClass::Appeal => 2,
            RouteClass::ReasonCodes
            | RouteClass::Admin
            | RouteClass::Ops
            | RouteClass::Unrouted => return Ok(()),
        };
        let limiters = self.limiters();
        limiters.by_class[index].check().map_err(|not_until| {
            RateLimited::new(Scope::Global, not_until.wait_time_from(TokioClock.now()))
        })
    }

    /// The rates in force.
    pub fn rates(&self) -> GlobalLimits {
        self.limiters().rates
    }

    fn limiters(&self) -> Arc<Limiters> {
        let generation = self.policy.load().generation;
        let state = self.state.load();
        if state.generation >= generation {
            return Arc::clone(&state.limiters);
        }
        let snapshot = self.policy.current();
        let limiters = if state.limiters.rates == snapshot.limits.global {
            Arc::clone(&state.limiters)
        } else {
            tracing::debug!(
                policy.window = %snapshot.window,
                policy.generation = snapshot.generation,
                "global rate limits changed"
            );
            Arc::new(Limiters::new(snapshot.limits.global, self.instances))
        };
        let next = Arc::new(State {
            generation: snapshot.generation,
            limiters: Arc::clone(&limiters),
        });
        // Whoever swaps first wins; a loser uses the winner's limiters so that concurrent
        // checks share one set of buckets.
        let previous = self.state.compare_and_swap(&state, next);
        if Arc::ptr_eq(&previous, &state) {
            limiters
        } else {
            Arc::clone(&previous.limiters)
        }
    }
}

impl Limiters {
    fn new(rates: GlobalLimits, instances: u32) -> Self {
        let direct =
            |rate: Rate| RateLimiter::direct_with_clock(quota(rate, instances), TokioClock);
        Limiters {
            rates,
            by_class: [
                direct(rates.drawdown),
                direct(rates.credit_line),
                direct(rates.appeal),
            ],
        }
    }
}

fn quota(rate: Rate, instances: u32) -> Quota {
    // Validation refuses zero rates; a zero that slipped through means "1".
    let per_second = NonZeroU32::new(rate.per_second).unwrap_or(NonZeroU32::MIN);
    if instances <= 1 {
        let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
        return Quota::per_second(per_second).allow_burst(burst);
    }
    // One cell every `instances / per_second` seconds.
    let nanos = 1_000_000_000 * u64::from(instances) / u64::from(per_second.get());
    let burst = NonZeroU32::new(rate.burst.div_ceil(instances)).unwrap_or(NonZeroU32::MIN);
    match Quota::with_period(std::time::Duration::from_nanos(nanos.max(1))) {
        Some(q) => q.allow_burst(burst),
        None => Quota::per_second(per_second).allow_burst(burst),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::policy::PolicyConfig;

    fn policy() -> Policy {
        let config: PolicyConfig = toml::from_str(
            r#"
            [normal.global]
            drawdown = { per_second = 10, burst = 3 }
            appeal = { per_second = 1, burst = 1 }
            [[windows]]
            name = "peak"
            daily_start = "20:00"
            daily_end = "22:00"
            [windows.limits.global]
            drawdown = { per_second = 1, burst = 1 }
            "#,
        )
        .unwrap();
        let clock = ManualClock::new("2026-03-01T00:00:00Z".parse().unwrap());
        Policy::new(&config, clock.shared()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_refusal_with_retry_after() {
        let limiter = GlobalLimiter::new(&policy());
        for _ in 0..3 {
            limiter.check(RouteClass::Drawdown).unwrap();
        }
        let refused = limiter.check(RouteClass::Drawdown).unwrap_err();
        assert_eq!(refused.scope(), Scope::Global);
        // 10/s: the next cell conforms in 100 ms, advertised as 1 s.
        assert_eq!(refused.retry_after(), Duration::from_secs(1));
        // Other classes have their own buckets; unlimited classes always pass.
        limiter.check(RouteClass::Appeal).unwrap();
        assert!(limiter.check(RouteClass::Appeal).is_err());
        for _ in 0..1000 {
            limiter.check(RouteClass::Ops).unwrap();
            limiter.check(RouteClass::Admin).unwrap();
        }
        tokio::time::advance(Duration::from_millis(100)).await;
        limiter.check(RouteClass::Drawdown).unwrap();
        assert!(limiter.check(RouteClass::Drawdown).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_opening_changes_the_quota() {
        let policy = policy();
        let limiter = GlobalLimiter::new(&policy);
        assert_eq!(limiter.rates().drawdown.per_second, 10);
        policy.force(Some("peak")).unwrap();
        assert_eq!(limiter.rates().drawdown.per_second, 1);
        limiter.check(RouteClass::Drawdown).unwrap();
        let refused = limiter.check(RouteClass::Drawdown).unwrap_err();
        assert_eq!(refused.retry_after(), Duration::from_secs(1));
        // Back to normal: burst 3 again.
        policy.force(None).unwrap();
        for _ in 0..3 {
            limiter.check(RouteClass::Drawdown).unwrap();
        }
        assert!(limiter.check(RouteClass::Drawdown).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_scaled_limiter_admits_its_share() {
        // 10/s burst 3 shared by 2 instances: burst 2, one every 200 ms.
        let limiter = GlobalLimiter::scaled(&policy(), 2);
        for _ in 0..2 {
            limiter.check(RouteClass::Drawdown).unwrap();
        }
        assert!(limiter.check(RouteClass::Drawdown).is_err());
        tokio::time::advance(Duration::from_millis(150)).await;
        assert!(limiter.check(RouteClass::Drawdown).is_err());
        tokio::time::advance(Duration::from_millis(50)).await;
        limiter.check(RouteClass::Drawdown).unwrap();
        assert!(limiter.check(RouteClass::Drawdown).is_err());
        // Scaled limiters follow the policy too: the peak window's 1/s becomes 1 per 2 s.
        let policy = policy();
        let limiter = GlobalLimiter::scaled(&policy, 2);
        policy.force(Some("peak")).unwrap();
        limiter.check(RouteClass::Drawdown).unwrap();
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert!(limiter.check(RouteClass::Drawdown).is_err());
        tokio::time::advance(Duration::from_millis(500)).await;
        limiter.check(RouteClass::Drawdown).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_unrelated_policy_change_keeps_the_buckets() {
        let policy = policy();
        let limiter = GlobalLimiter::new(&policy);
        limiter.check(RouteClass::Appeal).unwrap();
        // Forcing "normal" makes a new generation with the same rates.
        policy.force(Some(crate::policy::NORMAL)).unwrap();
        assert!(limiter.check(RouteClass::Appeal).is_err());
    }
}
