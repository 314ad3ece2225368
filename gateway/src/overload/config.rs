//! `[server.overload]`: whether overload actions are on, and the thresholds of the signal.

use crate::setting::{self, Invalid};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[server.overload]`: past a saturation signal, stop accepting and close keep-alive
/// connections (see [`crate::overload`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OverloadConfig {
    /// Act on overload (off: the signal is not even measured).
    pub enabled: bool,
    /// How often the event-loop lag is probed (`probe_interval_ms`).
    #[serde(rename = "probe_interval_ms", with = "setting::millis")]
    pub probe_interval: Duration,
    /// Lag at or above which the process is overloaded (`lag_high_ms`).
    #[serde(rename = "lag_high_ms", with = "setting::millis")]
    pub lag_high: Duration,
    /// Lag at or below which it recovers, with occupancy below its low mark (`lag_low_ms`,
    /// below `lag_high_ms`).
    #[serde(rename = "lag_low_ms", with = "setting::millis")]
    pub lag_low: Duration,
    /// Admission occupancy (queued ÷ capacity) at or above which it is overloaded
    /// (`occupancy_high_pct`; none, `0`: occupancy is not a signal).
    #[serde(rename = "occupancy_high_pct", with = "setting::percent_or_off")]
    pub occupancy_high: Option<f64>,
    /// Occupancy at or below which it recovers (`occupancy_low_pct`, below
    /// `occupancy_high_pct`).
    #[serde(rename = "occupancy_low_pct", with = "setting::percent")]
    pub occupancy_low: f64,
    /// While overloaded, HTTP/1 responses carry `Connection: close`, so keep-alive clients
    /// reconnect into the kernel's backlog. Off by default: a client midway through a
    /// journey (a quote, then a drawdown) would lose its connection and wait in the backlog
    /// for its drawdown; on for keep-alive pools that should be pushed back whole.
    pub close_keep_alive: bool,
    /// New connections are accepted only while woken connections wait less than this for
    /// the CPU, on average (`accept_delay_ms`; zero: always; see [`crate::pressure`]).
    #[serde(rename = "accept_delay_ms", with = "setting::millis")]
    pub accept_delay: Duration,
    /// A new connection whose first turn on the CPU came more than this after it was
    /// woken is closed unread (`stale_delay_ms`; zero: never; see [`crate::pressure`]).
    #[serde(rename = "stale_delay_ms", with = "setting::millis")]
    pub stale_delay: Duration,
    /// While the accept gate holds connections back, the listen backlog is set to about
    /// this long of accepts, at most `server.listen_backlog` (`backlog_wait_ms`; zero, the
    /// default: it stays `server.listen_backlog`; see [`crate::pressure::BacklogSizer`]).
    #[serde(rename = "backlog_wait_ms", with = "setting::millis")]
    pub backlog_wait: Duration,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        OverloadConfig {
            enabled: true,
            probe_interval: Duration::from_millis(50),
            lag_high: Duration::from_millis(50),
            lag_low: Duration::from_millis(10),
            occupancy_high: None,
            occupancy_low: 0.5,
            close_keep_alive: false,
            accept_delay: Duration::from_millis(5),
            stale_delay: Duration::from_millis(250),
            backlog_wait: Duration::ZERO,
        }
    }
}

impl OverloadConfig {
    /// The CPU-pressure targets.
    pub fn pressure(&self) -> crate::pressure::PressureConfig {
        crate::pressure::PressureConfig {
            accept_delay: self.accept_delay,
            stale_delay: self.stale_delay,
            backlog_wait: self.backlog_wait,
        }
    }

    /// Checks what types alone do not, naming the key within the section.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.probe_interval.is_zero() {
            return Err(Invalid::new("probe_interval_ms", "must be at least 1"));
        }
        if self.lag_low >= self.lag_high {
            return Err(Invalid::new("lag_low_ms", "must be below lag_high_ms"));
        }
        if let Some(high) = self.occupancy_high
            && self.occupancy_low >= high
        {
            return Err(Invalid::new(
                "occupancy_low_pct",
                "must be below occupancy_high_pct",
            ));
        }
        Ok(())
    }
}
