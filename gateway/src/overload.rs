//! Connection-level overload actions, in the spirit of Envoy's overload manager.
//!
//! Admission control refuses cheaply, but a refusal still costs a parse and an answer: when
//! the process is saturated even by refusing, queueing moves into the process (its run queue
//! and socket buffers) and latency explodes whatever the limiter does. So past a saturation
//! signal the server acts on connections instead of requests:
//! - it stops accepting: new connections wait in the kernel's accept backlog (or go to
//!   another instance behind the balancer) instead of in the process;
//! - with `close_keep_alive`, responses on HTTP/1 carry `Connection: close`, so busy
//!   keep-alive connections close after their current response and their clients reconnect
//!   into the backlog. Off by default: a client midway through a journey (a quote, then a
//!   drawdown on the same connection) would lose its connection and wait in the backlog
//!   for its drawdown, which under overload is a drawdown lost.
//!
//! The finer signal, how long woken connections wait for the CPU, and the accept gate on it
//! are in [`crate::pressure`]; this module's lag probe is the coarse one beside it.
//!
//! The signal is event-loop lag (how late a periodic tokio timer fires, measured by a task
//! on the runtime it protects) and, optionally, admission occupancy (queued ÷ queue capacity).
//! It turns on at the high thresholds and off only below the low ones (hysteresis), so it
//! does not flap.
//!
//! Time is tokio's (`tokio::time::pause()` in tests); tests drive the signal with
//! [`Overload::observe`].
//!
//! # Layout
//! - [`OverloadConfig`] (`config`): `[server.overload]`, thresholds of the saturation signal.
//! - [`Detector`]: the hysteresis on the signal (pure: fed samples, answers the state).
//! - [`Overload`]: the shared overload state, with the CPU-pressure actions
//!   ([`crate::pressure`]) beside it.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admission::Admission;
use crate::pressure::Pressure;
use crate::request::Priority;

mod config;
pub use config::OverloadConfig;

/// The hysteresis on the signal (pure: fed samples, answers the state).
#[derive(Debug, Clone)]
pub struct Detector {
    cfg: OverloadConfig,
    overloaded: bool,
}

impl Detector {
    /// Not overloaded.
    pub const fn new(cfg: OverloadConfig) -> Self {
        Detector {
            cfg,
            overloaded: false,
        }
    }

    /// Feeds a sample of lag and occupancy; returns the state after it.
    pub fn observe(&mut self, lag: Duration, occupancy: f64) -> bool {
        let c = &self.cfg;
        if self.overloaded {
            let lag_ok = lag <= c.lag_low;
            let occ_ok = c.occupancy_high.is_none() || occupancy <= c.occupancy_low;
            if lag_ok && occ_ok {
                self.overloaded = false;
            }
        } else if lag >= c.lag_high || c.occupancy_high.is_some_and(|h| occupancy >= h) {
            self.overloaded = true;
        }
        self.overloaded
    }

    /// The state now.
    pub const fn overloaded(&self) -> bool {
        self.overloaded
    }
}

/// Overload metrics (`gateway_overload_*`).
#[derive(Debug, Clone, Default)]
struct Metrics {
    active: Gauge,
    lag_seconds: Gauge<f64, AtomicU64>,
    transitions: Counter,
    closes: Counter,
}

/// The shared overload state: the server reads it, the probe task writes it.
#[derive(Debug, Clone)]
pub struct Overload {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    detector: std::sync::Mutex<Detector>,
    state: watch::Sender<bool>,
    admission: Option<Admission>,
    pressure: Pressure,
    metrics: Metrics,
}

impl Overload {
    /// An overload state reading `admission`'s occupancy (when given), with the CPU-pressure
    /// actions of `cfg`, its metrics registered in `registry` under `gateway`.
    pub fn new(cfg: OverloadConfig, admission: Option<Admission>, registry: &mut Registry) -> Self {
        let pressure = Pressure::new(cfg.pressure(), registry);
        let metrics = Metrics::default();
        let r = registry.sub_registry_with_prefix("gateway");
        r.register(
            "overload_active",
            "1 while connection-level overload actions are on (accept paused, Connection: close)",
            metrics.active.clone(),
        );
        r.register(
            "event_loop_lag_seconds",
            "How late the last event-loop probe fired",
            metrics.lag_seconds.clone(),
        );
        r.register(
            "overload_transitions",
            "Times the overload state changed",
            metrics.transitions.clone(),
        );
        r.register(
            "overload_connection_closes",
            "Responses sent with Connection: close because of overload",
            metrics.closes.clone(),
        );
        let (state, _) = watch::channel(false);
        Overload {
            inner: Arc::new(Inner {
                detector: std::sync::Mutex::new(Detector::new(cfg)),
                state,
                admission,
                pressure,
                metrics,
            }),
        }
    }

    /// The run-queue wait of connections and the actions on it (see [`crate::pressure`]).
    pub fn pressure(&self) -> &Pressure {
        &self.inner.pressure
    }

    /// Whether overload actions are on now.
    pub fn is_overloaded(&self) -> bool {
        *self.inner.state.borrow()
    }

    /// Feeds one event-loop lag sample (admission occupancy is read here); returns the state.
    pub fn observe(&self, lag: Duration) -> bool {
        let occupancy = self.inner.admission.as_ref().map_or(0.0, |a| {
            let queued: usize = Priority::ALL.iter().map(|&p| a.queued(p)).sum();
            match a.queue_capacity() {
                0 => 0.0,
                cap => queued as f64 / cap as f64,
            }
        });
        let overloaded = self
            .inner
            .detector
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .observe(lag, occupancy);
        self.inner.metrics.lag_seconds.set(lag.as_secs_f64());
        let changed = self.inner.state.send_if_modified(|s| {
            let changed = *s != overloaded;
            *s = overloaded;
            changed
        });
        if changed {
            self.inner.metrics.transitions.inc();
            self.inner.metrics.active.set(i64::from(overloaded));
            if overloaded {
                tracing::warn!(
                    lag_ms = lag.as_secs_f64() * 1e3,
                    occupancy,
                    "overloaded: accept paused, closing keep-alive connections"
                );
            } else {
                tracing::info!(lag_ms = lag.as_secs_f64() * 1e3, "overload over: accepting");
            }
        }
        overloaded
    }

    /// Resolves once overload actions are off (at once when they are).
    pub async fn accepting(&self) {
        let mut rx = self.inner.state.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = rx.wait_for(|overloaded| !overloaded).await;
    }

    /// Resolves once overload actions are on (at once when they are).
    pub async fn overloaded(&self) {
        let mut rx = self.inner.state.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = rx.wait_for(|overloaded| *overloaded).await;
    }

    /// Whether HTTP/1 responses carry `Connection: close` while overloaded.
    pub fn closes_keep_alive(&self) -> bool {
        self.inner
            .detector
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .cfg
            .close_keep_alive
    }

    /// Counts a response sent with `Connection: close`.
    pub(crate) fn closed_one(&self) {
        self.inner.metrics.closes.inc();
    }

    /// Probes the event-loop lag every `probe_interval` on the current runtime.
    pub fn spawn_probe(&self) -> JoinHandle<()> {
        let this = self.clone();
        let interval = self
            .inner
            .detector
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .cfg
            .probe_interval;
        tokio::spawn(async move {
            loop {
                let before = tokio::time::Instant::now();
                tokio::time::sleep(interval).await;
                let lag = before.elapsed().saturating_sub(interval);
                this.observe(lag);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn cfg() -> OverloadConfig {
        OverloadConfig {
            probe_interval: 50 * MS,
            lag_high: 40 * MS,
            lag_low: 10 * MS,
            occupancy_high: Some(0.9),
            occupancy_low: 0.5,
            enabled: true,
            ..OverloadConfig::default()
        }
    }

    #[test]
    fn turns_on_at_high_and_off_only_below_low() {
        let mut d = Detector::new(cfg());
        assert!(!d.observe(39 * MS, 0.0));
        assert!(d.observe(40 * MS, 0.0));
        // Between the marks it stays on.
        assert!(d.observe(20 * MS, 0.0));
        assert!(d.observe(11 * MS, 0.0));
        assert!(!d.observe(10 * MS, 0.0));
        // Between the marks from below it stays off.
        assert!(!d.observe(20 * MS, 0.0));
    }

    #[test]
    fn occupancy_is_a_signal_when_configured() {
        let mut d = Detector::new(cfg());
        assert!(d.observe(Duration::ZERO, 0.95));
        assert!(d.observe(Duration::ZERO, 0.6), "not yet below the low mark");
        assert!(!d.observe(Duration::ZERO, 0.5));
        let mut d = Detector::new(OverloadConfig {
            occupancy_high: None,
            ..cfg()
        });
        assert!(!d.observe(Duration::ZERO, 1.0));
        assert!(!d.overloaded());
    }

    #[tokio::test(start_paused = true)]
    async fn accepting_waits_for_the_end_of_overload() {
        let o = Overload::new(cfg(), None, &mut Registry::default());
        o.accepting().await; // not overloaded: at once
        assert!(o.observe(100 * MS));
        let waiter = tokio::spawn({
            let o = o.clone();
            async move { o.accepting().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert!(o.observe(20 * MS), "still above the low mark");
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert!(!o.observe(MS));
        waiter.await.unwrap();
    }
}
