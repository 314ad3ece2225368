//! What the handlers share: [`AppState`] behind the cheap handle [`App`].

use super::auth::Auth;
use super::reload::{Live, ReloadError, ReloadReport, Reloader};
use crate::admission::Admission;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::ratelimit::RateLimits;
use crate::store::AnyStore;
use arc_swap::{ArcSwap, ArcSwapOption};
use prometheus_client::registry::Registry;
use risk_core::ThresholdCache;
use std::ops::Deref;
use std::sync::Arc;

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// The configuration the gateway started with. What a reload may change is held
    /// apart, swappable ([`AppState::policy`], [`AppState::auth`], [`AppState::bureau`]);
    /// the rest needs a restart ([`super::reload`]).
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
    /// The credit bureau (`None`: off); replaced by a reload.
    pub bureau: ArcSwapOption<crate::bureau::Bureau>,
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// Credentials; replaced by a reload.
    pub auth: ArcSwap<Auth>,
    /// Reloads of the configuration file.
    pub reload: Reloader,
    /// TLS on the listener (`server.tls`); its files are read again by a reload.
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// Wall time.
    pub clock: SharedClock,
    /// How long an appeal may take (the `due_at` of a new appeal).
    pub appeal_due: jiff::SignedDuration,
    /// The shadow candidate staged on this instance.
    pub shadow: crate::shadow::Shadow,
    /// The anomaly rules' modes on this instance (report-only or enforced).
    pub anomaly: crate::anomaly::AnomalyModes,
    /// Each user's recent decisions and 429/503 refusals (the console's customer page).
    pub trail: crate::trail::Trail,
    /// The export of spans (`None`: `[tracing]` is off; the trace context is still read and
    /// passed on).
    pub tracing: Option<crate::trace::Exporter>,
}

impl AppState {
    /// Reads the configuration file again and applies what can change live
    /// ([`super::reload`]).
    pub fn reload_config(&self) -> Result<ReloadReport, ReloadError> {
        self.reload.reload(Live {
            policy: &self.policy,
            auth: &self.auth,
            bureau: &self.bureau,
            thresholds: &self.thresholds,
            tls: self.tls.as_deref(),
        })
    }
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
