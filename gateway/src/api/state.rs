//! What the handlers share: [`AppState`] behind the cheap handle [`App`].

use super::auth::Auth;
use crate::admission::Admission;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::metrics::Metrics;
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
    /// The shadow candidate staged on this instance.
    pub shadow: crate::shadow::Shadow,
    /// Each user's recent decisions and 429/503 refusals (the console's customer page).
    pub trail: crate::trail::Trail,
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
