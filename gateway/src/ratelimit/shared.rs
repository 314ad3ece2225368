//! The cluster-wide global limit: one GCRA bucket per route class in Redis, shared by every
//! instance, with the local limiter as its fallback.
//!
//! With `redis.shared_global_limit = true` (and `store` on Redis), each globally limited
//! request runs one small script ([`RedisStore::gcra`]: `TIME`, `GET`, `SET` of one key per
//! route class) under a tight timeout (`redis.global_limit_timeout_ms`, 5 ms by default).
//! When Redis answers late or not at all the request is decided by a local limiter holding
//! this instance's share of the rate (`redis.global_limit_instances`, see
//! [`GlobalLimiter::scaled`]), never admitted or refused for want of Redis; after a failure
//! Redis is left alone for [`RETRY_REDIS_AFTER`] so an outage costs no timeout per request.
//! Each locally decided request counts in `gateway_global_limit_fallback_total`;
//! `gateway_global_limit_mode` says which limiter decides now.

use std::sync::Mutex;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use super::{GlobalLimiter, RateLimited, RouteClass, Scope};
use crate::policy::{Policy, Rate};
use crate::store::RedisStore;

/// How long the shared limit stays on the local fallback after Redis failed to answer.
pub const RETRY_REDIS_AFTER: Duration = Duration::from_millis(500);

/// The metrics of the global limit (`gateway_global_limit_*`).
#[derive(Debug, Clone, Default)]
pub struct GlobalLimitMetrics {
    /// Requests decided by the local fallback because Redis was slow or unreachable.
    pub fallback: Counter,
    /// 0: local limiter only (not shared); 1: shared through Redis; 2: local fallback.
    pub mode: Gauge<i64, AtomicI64>,
}

impl GlobalLimitMetrics {
    /// Registers the metrics under the `gateway` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let m = GlobalLimitMetrics::default();
        let r = registry.sub_registry_with_prefix("gateway");
        r.register(
            "global_limit_fallback",
            "Globally limited requests decided by the local fallback limiter (Redis slow or down)",
            m.fallback.clone(),
        );
        r.register(
            "global_limit_mode",
            "Global rate limit in force: 0 local only, 1 shared through Redis, 2 local fallback",
            m.mode.clone(),
        );
        m
    }
}

/// The mode gauge's values.
const MODE_SHARED: i64 = 1;
const MODE_FALLBACK: i64 = 2;

/// The global limit shared by every instance through Redis.
#[derive(Debug)]
pub struct SharedGlobalLimiter {
    redis: RedisStore,
    policy: Policy,
    fallback: GlobalLimiter,
    timeout: Duration,
    metrics: GlobalLimitMetrics,
    /// Redis is not asked before this instant (set after a failure).
    resume_at: Mutex<Option<Instant>>,
}

impl SharedGlobalLimiter {
    /// The shared limit on `redis`, each call bounded by `timeout`; the fallback admits the
    /// share of one of `instances` instances.
    pub fn new(
        redis: RedisStore,
        policy: &Policy,
        instances: u32,
        timeout: Duration,
        metrics: GlobalLimitMetrics,
    ) -> Self {
        metrics.mode.set(MODE_SHARED);
        SharedGlobalLimiter {
            redis,
            policy: policy.clone(),
            fallback: GlobalLimiter::scaled(policy, instances),
            timeout,
            metrics,
            resume_at: Mutex::new(None),
        }
    }

    /// Whether `class` has a global rate (only those need a check).
    pub fn limits(class: RouteClass) -> bool {
        matches!(
            class,
            RouteClass::Drawdown | RouteClass::CreditLine | RouteClass::Appeal
        )
    }

    /// Takes one request of `class` from the shared bucket, or from the local fallback
    /// when Redis does not answer within the timeout.
    pub async fn check(&self, class: RouteClass) -> Result<(), RateLimited> {
        let rates = self.policy.load().limits.global;
        let rate = match class {
            RouteClass::Drawdown => rates.drawdown,
            RouteClass::CreditLine => rates.credit_line,
            RouteClass::Appeal => rates.appeal,
            RouteClass::ReasonCodes
            | RouteClass::Admin
            | RouteClass::Ops
            | RouteClass::Unrouted => return Ok(()),
        };
        if self.redis_due() {
            let (interval, burst) = emission(rate);
            match self
                .redis
                .gcra(class.as_str(), interval, burst, self.timeout)
                .await
            {
                Ok(wait) => {
                    self.metrics.mode.set(MODE_SHARED);
                    return match wait {
                        None => Ok(()),
                        Some(wait) => Err(RateLimited::new(Scope::Global, wait)),
                    };
                }
                Err(e) => {
                    tracing::debug!(cause = %e, "shared global limit: Redis did not answer; local fallback");
                    self.pause_redis();
                }
            }
        }
        self.metrics.mode.set(MODE_FALLBACK);
        self.metrics.fallback.inc();
        self.fallback.check(class)
    }

    fn redis_due(&self) -> bool {
        let guard = self
            .resume_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.is_none_or(|at| Instant::now() >= at)
    }

    fn pause_redis(&self) {
        let mut guard = self
            .resume_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Some(Instant::now() + RETRY_REDIS_AFTER);
    }
}

/// A rate's emission interval (one request per interval) and burst, as governor reads it.
fn emission(rate: Rate) -> (Duration, u32) {
    let per_second = rate.per_second.max(1);
    (Duration::from_secs(1) / per_second, rate.burst.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emission_matches_the_local_quota() {
        let (interval, burst) = emission(Rate {
            per_second: 10,
            burst: 3,
        });
        assert_eq!(interval, Duration::from_millis(100));
        assert_eq!(burst, 3);
        let (interval, burst) = emission(Rate {
            per_second: 0,
            burst: 0,
        });
        assert_eq!((interval, burst), (Duration::from_secs(1), 1));
    }
}
