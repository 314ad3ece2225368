//! `[admission]`: priorities, the limit's mode and the options beyond the limit, as the
//! file states them; [`AdmissionConfig::options`] turns the switches into [`AdmissionOptions`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::adaptive::AdaptiveConfig;
use super::control::{AdmissionOptions, RetryBudgetConfig, SojournTarget};
use crate::setting::{self, Invalid};

/// `[admission]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionConfig {
    /// Honour priorities (drawdowns critical, `X-Priority: low`). Off: every request is
    /// `default` (the naive configuration of the loadtest demonstration).
    pub priorities: bool,
    /// Most users whose per-user rate-limit state is kept (idle ones are evicted first).
    pub max_tracked_users: u32,
    /// `fixed`: the concurrency limit is the policy's `concurrency`; `adaptive`: it follows
    /// measured latency within `[admission.adaptive]` (the policy still sets `queue`).
    pub mode: AdmissionMode,
    /// Share of the concurrency limit kept for `critical` work (0: none kept), below 1
    /// (`critical_share_pct`).
    #[serde(rename = "critical_share_pct", with = "setting::percent")]
    pub critical_share: f64,
    /// CoDel-style sojourn target: when every request leaving the queue for
    /// `sojourn_interval` waited longer, waiting `default`/`low` requests over it are shed
    /// (`sojourn_target_ms`; zero: off, deadlines still apply).
    #[serde(rename = "sojourn_target_ms", with = "setting::millis")]
    pub sojourn_target: Duration,
    /// The interval of the sojourn target (`sojourn_interval_ms`).
    #[serde(rename = "sojourn_interval_ms", with = "setting::millis")]
    pub sojourn_interval: Duration,
    /// The adaptive limit's settings (`mode = "adaptive"`).
    pub adaptive: AdaptiveConfig,
    /// The retry budget for requests with `X-Retry-Attempt` > 0.
    pub retry_budget: RetryBudgetSettings,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            priorities: true,
            max_tracked_users: 100_000,
            mode: AdmissionMode::Adaptive,
            critical_share: 0.5,
            sojourn_target: Duration::from_millis(20),
            sojourn_interval: Duration::from_millis(100),
            adaptive: AdaptiveConfig::default(),
            retry_budget: RetryBudgetSettings::default(),
        }
    }
}

/// How the admission concurrency limit is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdmissionMode {
    /// The policy's `concurrency` (per peak window).
    Fixed,
    /// Adapted to measured latency (see [`super::adaptive`]).
    Adaptive,
}

/// `[admission.retry_budget]`: whether retries draw from a budget, and the budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetSettings {
    /// Draw retries from the budget (off: retries are admitted like first attempts).
    pub enabled: bool,
    /// Retries allowed per first attempt (`percent`: per 100 first attempts).
    #[serde(rename = "percent", with = "setting::percent")]
    pub ratio: f64,
    /// Retries always allowed per second.
    pub min_per_sec: u32,
    /// How long a first attempt counts (`window_ms`, 1000 to 60000).
    #[serde(rename = "window_ms", with = "setting::millis")]
    pub window: Duration,
}

impl Default for RetryBudgetSettings {
    fn default() -> Self {
        RetryBudgetSettings {
            enabled: true,
            ratio: 0.1,
            min_per_sec: 10,
            window: Duration::from_secs(10),
        }
    }
}

impl AdmissionConfig {
    /// The admission options these settings describe: the adaptive limit with
    /// `mode = "adaptive"`, the sojourn target unless zero, the retry budget when enabled.
    pub fn options(&self) -> AdmissionOptions {
        let r = &self.retry_budget;
        AdmissionOptions {
            adaptive: (self.mode == AdmissionMode::Adaptive).then_some(self.adaptive),
            critical_share: self.critical_share,
            sojourn: (!self.sojourn_target.is_zero()).then_some(SojournTarget {
                target: self.sojourn_target,
                interval: self.sojourn_interval,
            }),
            retry_budget: r.enabled.then_some(RetryBudgetConfig {
                ttl: r.window,
                min_per_sec: r.min_per_sec,
                #[allow(
                    clippy::cast_possible_truncation,
                    reason = "at most 1000 (validated), read from whole percent"
                )]
                ratio: r.ratio as f32,
            }),
        }
    }

    /// Checks what types alone do not, naming the key within `[admission]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        setting::at_least_one([("max_tracked_users", u128::from(self.max_tracked_users))])?;
        if self.critical_share >= 1.0 {
            return Err(Invalid::new("critical_share_pct", "must be below 100"));
        }
        if !self.sojourn_target.is_zero() && self.sojourn_interval.is_zero() {
            return Err(Invalid::new("sojourn_interval_ms", "must be at least 1"));
        }
        self.adaptive.validate().map_err(|e| e.under("adaptive"))?;
        self.retry_budget
            .validate()
            .map_err(|e| e.under("retry_budget"))
    }
}

impl AdaptiveConfig {
    /// Checks the bounds, naming the key within `[admission.adaptive]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        let n = |v: usize| u128::try_from(v).unwrap_or(u128::MAX);
        setting::at_least_one([
            ("min_limit", n(self.min_limit)),
            ("interval_ms", self.interval.as_nanos()),
            ("min_samples", n(self.min_samples)),
            ("min_rtt_interval_ms", self.min_rtt_interval.as_nanos()),
            ("min_rtt_samples", n(self.min_rtt_samples)),
            ("min_rtt_limit", n(self.min_rtt_limit)),
        ])?;
        if self.max_limit < self.min_limit {
            return Err(Invalid::new("max_limit", "must be at least min_limit"));
        }
        if !(self.min_limit..=self.max_limit).contains(&self.initial_limit) {
            return Err(Invalid::new(
                "initial_limit",
                "must be within min_limit..=max_limit",
            ));
        }
        let ratio = |r: f64| r > 0.0 && r <= 1.0;
        if !ratio(self.percentile) {
            return Err(Invalid::new("percentile", "must be within 1..=100"));
        }
        if !ratio(self.smoothing) {
            return Err(Invalid::new("smoothing_pct", "must be within 1..=100"));
        }
        if self.buffer > 10.0 {
            return Err(Invalid::new("buffer_pct", "must be at most 1000"));
        }
        match self.queue_per_limit {
            Some(q) if q > 100.0 => {
                Err(Invalid::new("queue_per_limit_pct", "must be at most 10000"))
            }
            Some(_) if self.queue_min == 0 => Err(Invalid::new(
                "queue_min",
                "must be at least 1 when queue_per_limit_pct is set",
            )),
            _ => Ok(()),
        }
    }
}

impl RetryBudgetSettings {
    /// Checks the ranges tower's `TpsBudget` asserts, naming the key within the section.
    fn validate(&self) -> Result<(), Invalid> {
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.window) {
            return Err(Invalid::new("window_ms", "must be within 1000..=60000"));
        }
        if self.ratio > 1000.0 {
            return Err(Invalid::new("percent", "must be at most 100000"));
        }
        if self.min_per_sec >= i32::MAX as u32 / 60 {
            return Err(Invalid::new("min_per_sec", "is too large"));
        }
        Ok(())
    }
}
