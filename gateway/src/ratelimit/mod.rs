//! Global (per route class) and per-user rate limits, and the tower layer that applies them.
//!
//! - [`GlobalLimiter`]: one GCRA bucket (governor) per globally limited [`RouteClass`]
//!   (drawdown, credit line, appeal), rates from the active peak window.
//! - [`UserLimiter`]: a GCRA bucket per user id, quota by window and risk grade, memory
//!   bounded to a configured number of users however many distinct users arrive.
//! - [`SharedGlobalLimiter`]: optionally, the global limit shared by every instance through
//!   Redis, with the local limiter scaled to this instance's share as its fallback.
//! - [`RateLimits`]: both, as one cheap handle; [`RateLimits::layer`] makes the
//!   [`RateLimitLayer`] that checks global then per-user limits before the inner service and
//!   fails with a boxed [`RateLimited`] (scope + `Retry-After`) otherwise.
//!
//! Limits follow the [`Policy`]: when a window opens the next check uses its quotas, without
//! a restart. Buckets measure time with `tokio::time::Instant`, which tests pause and advance.
//!
//! The layer reads the [`RequestFacts`] an earlier layer put into the request's extensions
//! (its class, user and grade); see [`crate::request`].
//!
//! Each scope may report only ([`ReportOnly`]): it then counts what it would have refused and
//! refuses nothing.
//!
//! # Layout
//! - `global.rs`, `user.rs`, `shared.rs`: the limiters; `error.rs`: [`RateLimited`], [`Scope`].
//! - `report.rs`: report-only modes and what they counted ([`ReportOnly`]; the tallies,
//!   [`WouldRefuseCounts`], also count the report-only anomaly rules).
//! - `layer.rs`, `service.rs`, `future.rs`: the middleware.
//!
//! # Example
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use gateway::clock::SystemClock;
//! use gateway::policy::{Policy, PolicyConfig};
//! use gateway::ratelimit::{RateLimits, Scope};
//! use gateway::request::{RouteClass, UserKey};
//!
//! let policy = Policy::new(&PolicyConfig::default(), SystemClock::shared()).unwrap();
//! let limits = RateLimits::new(&policy, 100_000);
//! let alice = UserKey::new("alice");
//! // The normal preset allows a burst of 10 per user (30 per minute).
//! for _ in 0..10 {
//!     limits.check(Some(RouteClass::Drawdown), Some(&alice), None).unwrap();
//! }
//! let refused = limits.check(Some(RouteClass::Drawdown), Some(&alice), None).unwrap_err();
//! assert_eq!(refused.scope(), Scope::User);
//! assert_eq!(refused.retry_after().as_secs(), 2);
//!
//! // As middleware: `ServiceBuilder::new().layer(limits.layer()).service(handler)`.
//! # }
//! ```

mod error;
mod future;
mod global;
mod layer;
mod report;
mod service;
mod shared;
mod user;

use std::sync::Arc;

use risk_core::RiskGrade;

pub use self::error::{RateLimited, Scope};
pub use self::future::ResponseFuture;
pub use self::global::GlobalLimiter;
pub use self::layer::RateLimitLayer;
pub use self::report::{LimitMode, LimitModes, ReportOnly, WouldRefuse, WouldRefuseCounts};
pub use self::service::RateLimit;
pub use self::shared::{GlobalLimitMetrics, RETRY_REDIS_AFTER, SharedGlobalLimiter};
pub use self::user::UserLimiter;
use crate::policy::Policy;
use crate::request::{RequestFacts, RouteClass, UserKey};

/// governor's clock reading `tokio::time::Instant`, so paused test time drives the buckets.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl governor::clock::Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// The global and per-user limiters, shared by every clone.
#[derive(Debug, Clone)]
pub struct RateLimits {
    global: Arc<GlobalLimiter>,
    user: Arc<UserLimiter>,
    /// When set, decides the global limits instead of `global` (see [`SharedGlobalLimiter`]).
    shared: Option<Arc<SharedGlobalLimiter>>,
    /// Which scopes report only, and what they counted.
    report: Arc<ReportOnly>,
}

impl RateLimits {
    /// Limiters following `policy`, tracking at most `max_tracked_users` users.
    pub fn new(policy: &Policy, max_tracked_users: u32) -> Self {
        let max = usize::try_from(max_tracked_users).unwrap_or(usize::MAX);
        RateLimits {
            global: Arc::new(GlobalLimiter::new(policy)),
            user: Arc::new(UserLimiter::new(policy, max)),
            shared: None,
            report: Arc::default(),
        }
    }

    /// These limits with `report` deciding which scopes report only (its metrics registered).
    #[must_use]
    pub fn with_report_only(mut self, report: ReportOnly) -> Self {
        self.report = Arc::new(report);
        self
    }

    /// The report-only modes and counts.
    pub fn report_only(&self) -> &ReportOnly {
        &self.report
    }

    /// These limits with the global ones shared through Redis: the middleware then checks
    /// them asynchronously ([`SharedGlobalLimiter::check`]) before the per-user limit.
    #[must_use]
    pub fn with_shared(mut self, shared: SharedGlobalLimiter) -> Self {
        self.shared = Some(Arc::new(shared));
        self
    }

    /// The shared global limiter, if the global limits are shared.
    pub fn shared(&self) -> Option<&SharedGlobalLimiter> {
        self.shared.as_deref()
    }

    /// The per-user limit of a request, by its [`RequestFacts`] (user and grade).
    pub fn check_user_request<B>(&self, req: &http::Request<B>) -> Result<(), RateLimited> {
        let facts = RequestFacts::of(req);
        self.check(None, facts.user.as_ref(), facts.grade)
    }

    /// Applies the global limit of `class` (if any), then the per-user limit of `user` (if
    /// any). A request refused globally does not use up the user's quota. A scope that
    /// reports only counts its refusal and lets the request on.
    pub fn check(
        &self,
        class: Option<RouteClass>,
        user: Option<&UserKey>,
        grade: Option<RiskGrade>,
    ) -> Result<(), RateLimited> {
        if let Some(class) = class
            && let Err(refused) = self.global.check(class)
        {
            self.report.judge(refused, user.map(UserKey::as_str))?;
        }
        if let Some(user) = user
            && let Err(refused) = self.user.check(user.as_str(), grade)
        {
            self.report.judge(refused, Some(user.as_str()))?;
        }
        Ok(())
    }

    /// Remembers `user`'s risk grade for its per-user quota (see [`UserLimiter::learn`]):
    /// handlers call it with the grade of a state they loaded or stored anyway.
    pub fn learn_grade(&self, user: &UserKey, grade: RiskGrade) {
        self.user.learn(user.as_str(), grade);
    }

    /// Checks a request by its [`RequestFacts`] (class, user and grade).
    pub fn check_request<B>(&self, req: &http::Request<B>) -> Result<(), RateLimited> {
        let facts = RequestFacts::of(req);
        self.check(facts.class, facts.user.as_ref(), facts.grade)
    }

    /// The middleware applying these limits.
    pub fn layer(&self) -> RateLimitLayer {
        RateLimitLayer::new(self.clone())
    }

    /// The global limiter.
    pub fn global(&self) -> &GlobalLimiter {
        &self.global
    }

    /// The per-user limiter.
    pub fn user(&self) -> &UserLimiter {
        &self.user
    }

    /// Users tracked by the per-user limiter now (for the metrics gauge).
    pub fn tracked_users(&self) -> usize {
        self.user.len()
    }
}
