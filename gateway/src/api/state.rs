//! What the handlers share: [`AppState`] behind the cheap handle [`App`].

use super::auth::Auth;
use crate::admission::Admission;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::metrics::{Forced, Metrics, PolicyLabels, PriorityLabels, ShedLabels};
use crate::policy::Policy;
use crate::ratelimit::RateLimits;
use crate::store::AnyStore;
use prometheus_client::registry::Registry;
use risk_core::ThresholdCache;
use std::ops::Deref;
use std::sync::Arc;

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// The effective configuration.
    pub config: Config,
    /// The store.
    pub store: AnyStore,
    /// The thresholds in force.
    pub thresholds: Arc<ThresholdCache>,
    /// The peak-window policy.
    pub policy: Policy,
    /// Rate limiters.
    pub limits: RateLimits,
    /// Admission control.
    pub admission: Admission,
    /// Metrics.
    pub metrics: Metrics,
    /// The credit bureau (`None`: off).
    pub bureau: Option<crate::bureau::Bureau>,
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// Credentials.
    pub auth: Auth,
    /// Wall time.
    pub clock: SharedClock,
    /// How long an appeal may take (the `due_at` of a new appeal).
    pub appeal_due: jiff::SignedDuration,
}

/// Shared handle to [`AppState`].
#[derive(Debug, Clone)]
pub struct App(pub Arc<AppState>);

impl Deref for App {
    type Target = AppState;
    fn deref(&self) -> &AppState {
        &self.0
    }
}

impl App {
    /// Copies the admission, policy and limiter state into their gauges (at scrape time).
    pub fn refresh_gauges(&self) {
        let m = &self.metrics;
        let a = &self.admission;
        // Admission follows the policy lazily, on arrivals; catch up before reading gauges.
        a.refresh();
        m.admission_in_flight
            .set(i64::try_from(a.in_flight()).unwrap_or(i64::MAX));
        m.admission_limit
            .set(i64::try_from(a.limit()).unwrap_or(i64::MAX));
        if let Some(s) = a.adaptive_stats() {
            let secs = |d: Option<std::time::Duration>| d.map_or(0.0, |d| d.as_secs_f64());
            m.admission_no_load_latency.set(secs(s.no_load));
            m.admission_sampled_latency.set(secs(s.current));
        }
        for p in crate::request::Priority::ALL {
            let q = a.queued(p);
            m.admission_queued
                .get_or_create(&PriorityLabels {
                    priority: p.as_str(),
                })
                .set(i64::try_from(q).unwrap_or(i64::MAX));
            for (cause, n) in a.shed_counts(p) {
                m.admission_shed
                    .get_or_create(&ShedLabels {
                        priority: p.as_str(),
                        cause,
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        let policy = self.policy.current();
        m.policy.clear();
        m.policy
            .get_or_create(&PolicyLabels {
                window: policy.window.clone(),
                profile: policy.profile.clone(),
                forced: if policy.forced {
                    Forced::True
                } else {
                    Forced::False
                },
            })
            .set(1);
        m.threshold_version
            .set(i64::try_from(self.thresholds.version()).unwrap_or(i64::MAX));
        m.ratelimit_tracked_users
            .set(i64::try_from(self.limits.tracked_users()).unwrap_or(i64::MAX));
    }
}
