//! The external credit bureau: asked before evaluation, under a latency budget, behind a
//! bulkhead and a circuit breaker, with a per-user cache; its answer (or why there is none)
//! goes to risk-core as [`BureauSignal`].
//!
//! Not a middleware (it does not wrap a request, a handler calls it), so a small module:
//!
//! # Layout
//! - [`config`]: `[bureau]`, the consult rule and every limit.
//! - [`breaker`]: the circuit breaker on the injected clock.
//! - `client`: the pooled hyper client of the wire contract.
//! - [`metrics`]: the `gateway_bureau_*` series.
//!
//! # One consultation ([`Bureau::signal`])
//! 1. An answer younger than `cache_ttl_ms` is used without a call (`Cached`, a cache hit).
//! 2. With `guard = true`: the budget is `min(timeout_cap_ms, remaining deadline −
//!    reserve_ms)`; none left → fallback `no_budget`. A bulkhead slot is taken without
//!    waiting (none free → `bulkhead_full`), then the breaker is asked (open →
//!    `breaker_open`). With `guard = false` the call simply waits up to
//!    `unguarded_timeout_ms`: the naive baseline of the loadtest demonstration.
//! 3. The call: an answer is cached and returned (`Fresh`); an error or a timeout is a
//!    fallback (`error`, `timeout`) and counts against the breaker.
//! 4. A fallback uses a cached answer younger than `stale_max_age_ms` (`Cached`, kind
//!    `cached`), else reports the cause (`Unavailable`, kind `unavailable`): risk-core then
//!    sends the drawdown to review with `BUREAU_UNAVAILABLE_REVIEW` when the profile has
//!    bureau rules. Never an approval without the check, never a vague refusal.
//!
//! Wall time (the breaker's window and cool-down, the cache's ages) comes from the injected
//! [`Clock`](crate::clock::Clock); the call's budget from `tokio::time`, like every deadline.

pub mod breaker;
mod client;
pub mod config;
pub mod metrics;

pub use breaker::BreakerState;
pub use config::{BreakerConfig, BureauConfig, ConsultRule};
pub use metrics::BureauMetrics;

use crate::clock::SharedClock;
use crate::setting::Invalid;
use breaker::{Breaker, CallOutcome};
use jiff::Timestamp;
use metrics::{CallLabels, ConsultLabels, FallbackLabels};
use prometheus_client::registry::Registry;
use risk_core::{BureauReport, BureauSignal, Fen, RiskGrade, UnavailableCause, UserId};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// A budget shorter than this is not worth a call.
const MIN_BUDGET: Duration = Duration::from_millis(1);

/// A cached answer and when it was received.
#[derive(Debug, Clone, Copy)]
struct Entry {
    report: BureauReport,
    at: Timestamp,
}

/// The guards of `guard = true`.
#[derive(Debug)]
struct Guards {
    bulkhead: Arc<Semaphore>,
    breaker: Breaker,
}

/// The bureau client with its budget, bulkhead, breaker and cache.
#[derive(Debug)]
pub struct Bureau {
    config: BureauConfig,
    client: client::Client,
    guards: Option<Guards>,
    cache: Option<moka::sync::Cache<UserId, Entry>>,
    clock: SharedClock,
    metrics: BureauMetrics,
}

impl Bureau {
    /// The bureau of `config` (`None` when no URL is set: the bureau is off), its metrics
    /// registered in `registry`. `config` must have passed [`BureauConfig::validate`].
    pub fn new(
        config: &BureauConfig,
        clock: SharedClock,
        registry: &mut Registry,
    ) -> Result<Option<Bureau>, Invalid> {
        config.validate()?;
        if config.url.is_none() {
            return Ok(None);
        }
        Self::build(config, clock, BureauMetrics::register(registry)).map(Some)
    }

    /// The bureau of `config` to take this one's place (a reload of the configuration):
    /// the same clock and metrics (the series continue), a new client, breaker and cache.
    /// Calls in flight finish on this one. `None` when `config` has no URL.
    pub fn reconfigured(&self, config: &BureauConfig) -> Result<Option<Bureau>, Invalid> {
        config.validate()?;
        if config.url.is_none() {
            return Ok(None);
        }
        Self::build(config, Arc::clone(&self.clock), self.metrics.clone()).map(Some)
    }

    fn build(
        config: &BureauConfig,
        clock: SharedClock,
        metrics: BureauMetrics,
    ) -> Result<Bureau, Invalid> {
        let url = config.url.as_deref().unwrap_or_default();
        let base = client::base_url(url).map_err(|problem| Invalid::new("url", problem))?;
        // Read here, so a reload with a CA file that cannot be read changes nothing.
        let tls = if base.starts_with("https://") {
            Some(client::tls_config(config.tls_ca_file.as_deref())?)
        } else {
            None
        };
        let max_concurrent = usize::try_from(config.max_concurrent).unwrap_or(usize::MAX);
        let guards = config.guard.then(|| Guards {
            bulkhead: Arc::new(Semaphore::new(max_concurrent)),
            breaker: Breaker::new(config.breaker, Arc::clone(&clock)),
        });
        let keep = config.cache_ttl.max(config.stale_max_age);
        let cache = (!keep.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(config.cache_max_users)
                // Eviction only (moka's own clock); ages are judged on the injected clock.
                .time_to_live(keep)
                .build()
        });
        Ok(Bureau {
            config: config.clone(),
            client: client::Client::new(base, max_concurrent, tls),
            guards,
            cache,
            clock,
            metrics,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &BureauConfig {
        &self.config
    }

    /// The breaker's state (`Closed` with `guard = false`, which has none).
    pub fn breaker_state(&self) -> BreakerState {
        self.guards
            .as_ref()
            .map_or(BreakerState::Closed, |g| g.breaker.state())
    }

    /// The metrics.
    pub fn metrics(&self) -> &BureauMetrics {
        &self.metrics
    }

    /// The signal for a request on `route` by a user of `grade` for `amount`: `NotConsulted`
    /// when the bureau is off or the consult rule leaves this request out, else
    /// [`Bureau::signal`].
    pub async fn consult(
        bureau: Option<&Bureau>,
        route: &'static str,
        user: &UserId,
        grade: RiskGrade,
        amount: Fen,
        deadline: Option<Instant>,
    ) -> BureauSignal {
        let Some(b) = bureau else {
            return BureauSignal::NotConsulted;
        };
        let consulted = b.config.consults(grade, amount);
        b.metrics
            .consults
            .get_or_create(&ConsultLabels {
                route,
                consulted: if consulted { "yes" } else { "skipped" },
            })
            .inc();
        if !consulted {
            return BureauSignal::NotConsulted;
        }
        // Boxed: the signal's future (an HTTP call) is large, and inline it would be part of
        // every drawdown's future, consulted or not; a call that goes out can afford the box.
        Box::pin(b.signal(user, deadline)).await
    }

    /// Asks the bureau about `user` within the request's `deadline` (see the module docs).
    pub async fn signal(&self, user: &UserId, deadline: Option<Instant>) -> BureauSignal {
        let cached = self.cache.as_ref().and_then(|c| c.get(user));
        let now = self.clock.now();
        // An entry from the clock's future (the clock was set back) is taken as fresh.
        let age = |e: &Entry| Duration::try_from(now.duration_since(e.at)).unwrap_or_default();
        if let Some(e) = &cached
            && age(e) < self.config.cache_ttl
        {
            self.metrics.cache_hits.inc();
            return Self::cached(e, age(e));
        }
        if self.cache.is_some() {
            self.metrics.cache_misses.inc();
        }
        let outcome = self.call(user, deadline).await;
        match outcome {
            Ok(report) => {
                if let Some(c) = &self.cache {
                    c.insert(
                        user.clone(),
                        Entry {
                            report,
                            at: self.clock.now(),
                        },
                    );
                }
                BureauSignal::Fresh(report)
            }
            Err(cause) => {
                let stale = cached.filter(|e| age(e) < self.config.stale_max_age);
                let kind = if stale.is_some() {
                    "cached"
                } else {
                    "unavailable"
                };
                self.metrics
                    .fallbacks
                    .get_or_create(&FallbackLabels {
                        kind,
                        cause: cause.as_str(),
                    })
                    .inc();
                tracing::debug!(
                    bureau.fallback = kind,
                    cause = cause.as_str(),
                    "bureau fallback"
                );
                match stale {
                    Some(e) => Self::cached(&e, age(&e)),
                    None => BureauSignal::Unavailable(cause),
                }
            }
        }
    }

    fn cached(e: &Entry, age: Duration) -> BureauSignal {
        BureauSignal::Cached {
            report: e.report,
            age_secs: u32::try_from(age.as_secs()).unwrap_or(u32::MAX),
        }
    }

    /// One call under the guards, or why none was made or it failed.
    async fn call(
        &self,
        user: &UserId,
        deadline: Option<Instant>,
    ) -> Result<BureauReport, UnavailableCause> {
        let Some(guards) = &self.guards else {
            return self.timed_call(user, self.config.unguarded_timeout).await;
        };
        let mut budget = self.config.timeout_cap;
        if let Some(d) = deadline {
            let left = d
                .saturating_duration_since(Instant::now())
                .saturating_sub(self.config.reserve);
            budget = budget.min(left);
        }
        if budget < MIN_BUDGET {
            return Err(UnavailableCause::NoBudget);
        }
        // Held until the call ends; a full bulkhead never waits.
        let Ok(_slot) = Arc::clone(&guards.bulkhead).try_acquire_owned() else {
            return Err(UnavailableCause::BulkheadFull);
        };
        let Some(permit) = guards.breaker.try_acquire() else {
            self.refresh_breaker_gauge(guards);
            return Err(UnavailableCause::BreakerOpen);
        };
        self.refresh_breaker_gauge(guards);
        let started = Instant::now();
        let out = self.timed_call(user, budget).await;
        let slow = started.elapsed() >= self.config.breaker.slow_call;
        let outcome = match (&out, slow) {
            (Err(_), _) => CallOutcome::Failure,
            (Ok(_), true) => CallOutcome::Slow,
            (Ok(_), false) => CallOutcome::Success,
        };
        guards.breaker.record(permit, outcome);
        self.refresh_breaker_gauge(guards);
        out
    }

    fn refresh_breaker_gauge(&self, guards: &Guards) {
        self.metrics
            .breaker_state
            .set(guards.breaker.state().gauge());
    }

    /// The call itself, cut at `budget`, with its metrics.
    async fn timed_call(
        &self,
        user: &UserId,
        budget: Duration,
    ) -> Result<BureauReport, UnavailableCause> {
        let started = Instant::now();
        // The request's trace goes on to the bureau, the call a span of its own.
        let trace = crate::trace::call("bureau.score", &[("http.request.method", "GET")]);
        let out =
            tokio::time::timeout(budget, self.client.score(user, budget, trace.as_ref())).await;
        let took = started.elapsed();
        self.metrics.latency.observe(took.as_secs_f64());
        crate::request::notes::add_bureau(took);
        let (result, out) = match out {
            Ok(Ok(report)) => ("ok", Ok(report)),
            Ok(Err(e)) => {
                tracing::debug!(cause = %e, "bureau call failed");
                ("error", Err(UnavailableCause::Error))
            }
            Err(_) => {
                self.metrics.timeouts.inc();
                ("timeout", Err(UnavailableCause::Timeout))
            }
        };
        self.metrics
            .calls
            .get_or_create(&CallLabels { result })
            .inc();
        if let Some(t) = trace {
            t.end((result != "ok").then_some(result));
        }
        out
    }
}
