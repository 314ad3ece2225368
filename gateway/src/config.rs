//! Configuration: one TOML file, overridden by environment variables and flags.
//!
//! Precedence, lowest first: built-in defaults, the file (`--config` / `GATEWAY_CONFIG`), the
//! environment (`GATEWAY_LISTEN`, `GATEWAY_API_KEYS`, `GATEWAY_ADMIN_TOKEN`, `GATEWAY_STORE`,
//! `GATEWAY_BUREAU_URL`),
//! then flags. Every invalid value is reported with its key.
//!
//! # Layout
//! - [`Config`]: the whole configuration.
//! - [`ServerConfig`] (`[server]`).
//! - [`HttpVersions`] (`server.http`).
//! - [`RuntimeFlavor`] (`server.runtime`).
//! - [`OverloadSettings`] (`[server.overload]`).
//! - [`RedisSettings`] (`[redis]`).
//! - [`RiskConfig`] (`[risk]`).
//! - [`AdmissionConfig`] (`[admission]`).
//! - [`AdmissionMode`]: how the admission concurrency limit is set.
//! - [`AdaptiveSettings`] (`[admission.adaptive]`).

use crate::bureau::BureauConfigError;
use crate::policy::{LimitsPatch, PolicyConfig, PolicyConfigError, WindowConfig};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Caller API keys (`Authorization: Bearer <key>`). Empty: demo credentials are made.
    #[serde(skip_serializing)]
    pub api_keys: Vec<String>,
    /// The admin token for `/admin/*`. Empty: a demo token is made.
    #[serde(skip_serializing)]
    pub admin_token: String,
    /// `memory` (embedded default) or a `redis://` URL.
    pub store: String,
    /// The Redis store's pool and timeouts (when `store` is a `redis://` URL).
    pub redis: RedisSettings,
    /// Seed the memory store with the demo users (default: when no API keys are configured).
    pub seed_demo_users: Option<bool>,
    /// Connection-level protection and deadlines.
    pub server: ServerConfig,
    /// Risk thresholds.
    pub risk: RiskConfig,
    /// Admission control.
    pub admission: AdmissionConfig,
    /// Peak windows and the limits they set.
    pub policy: PolicyConfig,
    /// Logs.
    pub log: LogConfig,
    /// The external credit bureau (off unless `bureau.url` is set).
    pub bureau: crate::bureau::BureauConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_keys: Vec::new(),
            admin_token: String::new(),
            store: "memory".into(),
            redis: RedisSettings::default(),
            seed_demo_users: None,
            server: ServerConfig::default(),
            risk: RiskConfig::default(),
            admission: AdmissionConfig::default(),
            policy: default_policy(),
            log: LogConfig::default(),
            bureau: crate::bureau::BureauConfig::default(),
        }
    }
}

/// The built-in peak windows (the same as `config/default.toml`; a test keeps them equal).
fn default_policy() -> PolicyConfig {
    let fixed = |name: &str, start: &str, end: &str| WindowConfig {
        name: name.into(),
        start: Some(start.into()),
        end: Some(end.into()),
        daily_start: None,
        daily_end: None,
        limits: LimitsPatch::default(),
    };
    let evening = WindowConfig {
        name: "evening".into(),
        start: None,
        end: None,
        daily_start: Some("20:00".into()),
        daily_end: Some("22:00".into()),
        limits: LimitsPatch {
            profile: Some("normal".into()),
            ..LimitsPatch::default()
        },
    };
    PolicyConfig {
        windows: vec![
            fixed("double11", "2026-11-10T23:30", "2026-11-11T02:00"),
            fixed("spring-festival", "2027-02-05T20:00", "2027-02-06T02:00"),
            evening,
        ],
        ..PolicyConfig::default()
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Open connections at most; a connection past it is answered `503 CAPACITY_SHED` and
    /// closed at once.
    pub max_connections: u32,
    /// Open connections at most from one peer address (IPv4, or IPv6 /64; any port); past
    /// it a new connection is closed at once. The default keeps one peer to a fifth of
    /// `max_connections` while letting one host of the project's load scenarios (up to
    /// 1,500 connections) through; facing clients directly, lower it (64 to 256); behind a
    /// load balancer or a NAT, whose few addresses every client shares, raise it.
    pub max_connections_per_peer: u32,
    /// A client must send its request headers within this many milliseconds: from the
    /// connection's start for its first request (the HTTP/2 preface and handshake
    /// included), and on HTTP/1.1 keep-alive from the end of the previous response.
    pub header_read_timeout_ms: u64,
    /// An HTTP/2 connection with no request in flight for this many milliseconds is closed
    /// (`GOAWAY`; any connection still open `shutdown_grace_ms` later is dropped).
    pub idle_timeout_ms: u64,
    /// A request body must arrive within this many milliseconds of the request head (and
    /// within the request's deadline), else `408 REQUEST_TIMEOUT`.
    pub body_read_timeout_ms: u64,
    /// HTTP/2: streams a client may have open at once on one connection.
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2: response bytes buffered per stream while the client's flow-control window
    /// is closed (further body data waits, unread).
    pub http2_max_send_buf_bytes: u32,
    /// HTTP/2: a `PING` is sent after this many milliseconds without a frame from the
    /// client; a client that does not answer within `http2_keep_alive_timeout_ms` is
    /// dropped.
    pub http2_keep_alive_interval_ms: u64,
    /// HTTP/2: how long the answer to a keep-alive `PING` may take, in milliseconds.
    pub http2_keep_alive_timeout_ms: u64,
    /// Largest request body in bytes (413 above it).
    pub body_limit_bytes: u32,
    /// Deadline of a request that sends no `X-Request-Deadline-Ms`, in milliseconds.
    pub default_deadline_ms: u64,
    /// Largest deadline a caller may ask for, in milliseconds.
    pub max_deadline_ms: u64,
    /// On shutdown, in-flight requests get this many milliseconds to finish.
    pub shutdown_grace_ms: u64,
    /// How long idempotency records are kept, in hours (at least 24).
    pub idempotency_retention_hours: u32,
    /// Connection-level overload actions (`[server.overload]`).
    pub overload: OverloadSettings,
    /// HTTP versions served on the port: `auto` (HTTP/1.1 and HTTP/2 with prior knowledge)
    /// or `http1` (HTTP/1.1 only; skips the per-connection HTTP/2 preface check).
    pub http: HttpVersions,
    /// The binary's tokio runtime: `multi_thread` (one worker per available core) or
    /// `current_thread` (one thread; for a process pinned to one core). Read by the binary
    /// before the runtime starts; the library ignores it.
    pub runtime: RuntimeFlavor,
}

/// `server.http`: which HTTP versions the listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpVersions {
    /// HTTP/1.1 and HTTP/2 (prior knowledge, h2c) on one port.
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
}

/// `server.runtime`: the tokio runtime flavour of the `gateway` binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeFlavor {
    /// Work-stealing workers, one per available core.
    #[default]
    MultiThread,
    /// Everything on the thread that runs `main`.
    CurrentThread,
}

/// `[server.overload]`: past a saturation signal, stop accepting and close keep-alive
/// connections (see `gateway::overload`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OverloadSettings {
    /// Act on overload (off: the signal is not even measured).
    pub enabled: bool,
    /// How often the event-loop lag is probed, in milliseconds.
    pub probe_interval_ms: u64,
    /// Event-loop lag at or above which the process is overloaded, in milliseconds.
    pub lag_high_ms: u64,
    /// Lag at or below which it recovers, in milliseconds (below `lag_high_ms`).
    pub lag_low_ms: u64,
    /// Admission queue occupancy (percent of its capacity) at or above which the process is
    /// overloaded (0: occupancy is not a signal).
    pub occupancy_high_pct: u32,
    /// Occupancy at or below which it recovers, percent (below `occupancy_high_pct`).
    pub occupancy_low_pct: u32,
}

impl Default for OverloadSettings {
    fn default() -> Self {
        OverloadSettings {
            enabled: true,
            probe_interval_ms: 50,
            lag_high_ms: 50,
            lag_low_ms: 10,
            occupancy_high_pct: 0,
            occupancy_low_pct: 50,
        }
    }
}

impl OverloadSettings {
    /// The detector's thresholds.
    pub fn config(&self) -> crate::overload::OverloadConfig {
        crate::overload::OverloadConfig {
            probe_interval: Duration::from_millis(self.probe_interval_ms),
            lag_high: Duration::from_millis(self.lag_high_ms),
            lag_low: Duration::from_millis(self.lag_low_ms),
            occupancy_high: (self.occupancy_high_pct > 0)
                .then(|| f64::from(self.occupancy_high_pct) / 100.0),
            occupancy_low: f64::from(self.occupancy_low_pct) / 100.0,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.probe_interval_ms == 0 {
            return Err(ConfigError::invalid(
                "server.overload.probe_interval_ms",
                "must be at least 1",
            ));
        }
        if self.lag_low_ms >= self.lag_high_ms {
            return Err(ConfigError::invalid(
                "server.overload.lag_low_ms",
                "must be below lag_high_ms",
            ));
        }
        if self.occupancy_high_pct > 0 && self.occupancy_low_pct >= self.occupancy_high_pct {
            return Err(ConfigError::invalid(
                "server.overload.occupancy_low_pct",
                "must be below occupancy_high_pct",
            ));
        }
        Ok(())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 10_000,
            max_connections_per_peer: 2_048,
            header_read_timeout_ms: 5_000,
            idle_timeout_ms: 60_000,
            body_read_timeout_ms: 5_000,
            http2_max_concurrent_streams: 100,
            http2_max_send_buf_bytes: 64 * 1024,
            http2_keep_alive_interval_ms: 20_000,
            http2_keep_alive_timeout_ms: 10_000,
            body_limit_bytes: 16 * 1024,
            default_deadline_ms: 2_000,
            max_deadline_ms: 30_000,
            shutdown_grace_ms: 10_000,
            idempotency_retention_hours: 24,
            overload: OverloadSettings::default(),
            http: HttpVersions::default(),
            runtime: RuntimeFlavor::default(),
        }
    }
}

impl ServerConfig {
    /// The header-read timeout.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// The HTTP/2 idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// The body read timeout.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    /// The default request deadline.
    pub fn default_deadline(&self) -> Duration {
        Duration::from_millis(self.default_deadline_ms)
    }

    /// The shutdown grace period.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// `[redis]`: the Redis store, used when `store` is a `redis://` URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// Most connections in the pool; each is shared by the operations in flight (pipelined).
    pub pool_size: u32,
    /// Longest wait for a pooled connection, in milliseconds (then `503`).
    pub pool_wait_timeout_ms: u64,
    /// Longest time to open a connection, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Longest time one store operation may take, in milliseconds (then `503`).
    pub command_timeout_ms: u64,
    /// Prefix of every key (several deployments may share one Redis).
    pub key_prefix: String,
    /// How long decisions are kept, in days (appealed ones are kept with their appeal).
    pub decision_retention_days: u32,
    /// How often the thresholds pointer is read besides pub/sub notices, in milliseconds.
    pub threshold_poll_ms: u64,
    /// How often Redis is pinged through the pool, in milliseconds: connections that died
    /// with a Redis restart are dropped within one interval, and outages are logged once.
    pub health_check_interval_ms: u64,
    /// Redis Cluster: the `store` URL and `cluster_nodes` are seed nodes of one cluster.
    pub cluster: bool,
    /// More seed nodes (`redis://host:port`) besides the `store` URL; only with `cluster`.
    pub cluster_nodes: Vec<String>,
    /// The global per-route rate limits are shared by every instance (one GCRA bucket per
    /// route class in Redis) instead of applying to each instance alone.
    pub shared_global_limit: bool,
    /// Longest wait for the shared limit's answer, in milliseconds (1 to 1000); later, the
    /// request is decided by the local fallback.
    pub global_limit_timeout_ms: u64,
    /// Instances sharing the global limit: the local fallback admits `1 / instances` of it.
    pub global_limit_instances: u32,
}

impl Default for RedisSettings {
    fn default() -> Self {
        let d = crate::store::RedisConfig::default();
        let ms = |t: Duration| u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
        RedisSettings {
            pool_size: u32::try_from(d.pool_size).unwrap_or(u32::MAX),
            pool_wait_timeout_ms: ms(d.pool_wait_timeout),
            connect_timeout_ms: ms(d.connect_timeout),
            command_timeout_ms: ms(d.command_timeout),
            key_prefix: d.key_prefix,
            decision_retention_days: 30,
            threshold_poll_ms: ms(d.threshold_poll),
            health_check_interval_ms: ms(d.health_check_interval),
            cluster: d.cluster,
            cluster_nodes: d.cluster_nodes,
            shared_global_limit: false,
            global_limit_timeout_ms: 5,
            global_limit_instances: 1,
        }
    }
}

/// `[risk]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// A thresholds document (JSON) to start with instead of the built-in one.
    pub thresholds_file: Option<PathBuf>,
}

/// `[admission]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Percent of the concurrency limit kept for `critical` work (0: none kept), below 100.
    pub critical_share_pct: u32,
    /// CoDel-style sojourn target in milliseconds: when every request leaving the queue
    /// for `sojourn_interval_ms` waited longer, waiting `default`/`low` requests over it are
    /// shed (0: off; deadlines still apply).
    pub sojourn_target_ms: u64,
    /// The interval of the sojourn target, in milliseconds.
    pub sojourn_interval_ms: u64,
    /// The adaptive limit's settings (`mode = "adaptive"`).
    pub adaptive: AdaptiveSettings,
    /// The retry budget for requests with `X-Retry-Attempt` > 0.
    pub retry_budget: RetryBudgetSettings,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            priorities: true,
            max_tracked_users: 100_000,
            mode: AdmissionMode::Adaptive,
            critical_share_pct: 50,
            sojourn_target_ms: 20,
            sojourn_interval_ms: 100,
            adaptive: AdaptiveSettings::default(),
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
    /// Adapted to measured latency (see `gateway::admission::adaptive`).
    Adaptive,
}

/// `[admission.adaptive]`: bounds, smoothing and timing of the adaptive limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveSettings {
    /// Lowest limit (at least 1).
    pub min_limit: u32,
    /// Highest limit (at least `min_limit`).
    pub max_limit: u32,
    /// Limit before the first recalculation.
    pub initial_limit: u32,
    /// Recalculation interval in milliseconds.
    pub interval_ms: u64,
    /// Latency samples needed in an interval (else it is extended).
    pub min_samples: u32,
    /// Latency percentile compared (1..=100; 50: the median).
    pub percentile: u32,
    /// Latency allowed above the no-load latency before it counts as queueing, percent.
    pub buffer_pct: u32,
    /// Weight of a new target in the limit, percent (1..=100; 100: no smoothing).
    pub smoothing_pct: u32,
    /// How often the no-load latency is re-measured, in milliseconds.
    pub min_rtt_interval_ms: u64,
    /// Samples in a no-load measurement.
    pub min_rtt_samples: u32,
    /// The limit while the no-load latency is measured.
    pub min_rtt_limit: u32,
    /// Queue capacity per 100 of limit (50: half the limit), capped by the policy's
    /// `queue`; 0: the policy's `queue` alone (see "Queue bound" in
    /// `gateway::admission::adaptive`).
    pub queue_per_limit_pct: u32,
    /// The smallest queue capacity while `queue_per_limit_pct` is set.
    pub queue_min: u32,
}

impl Default for AdaptiveSettings {
    fn default() -> Self {
        let d = crate::admission::AdaptiveConfig::default();
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        let ms = |t: Duration| u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let pct = |f: f64| (f * 100.0).round() as u32;
        AdaptiveSettings {
            min_limit: n(d.min_limit),
            max_limit: n(d.max_limit),
            initial_limit: n(d.initial_limit),
            interval_ms: ms(d.interval),
            min_samples: n(d.min_samples),
            percentile: pct(d.percentile),
            buffer_pct: pct(d.buffer),
            smoothing_pct: pct(d.smoothing),
            min_rtt_interval_ms: ms(d.min_rtt_interval),
            min_rtt_samples: n(d.min_rtt_samples),
            min_rtt_limit: n(d.min_rtt_limit),
            queue_per_limit_pct: d.queue_per_limit.map_or(0, pct),
            queue_min: n(d.queue_min),
        }
    }
}

/// `[admission.retry_budget]`: retries allowed as a share of recent first attempts
/// (tower's `TpsBudget`, after Finagle's RetryBudget).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetSettings {
    /// Draw retries from the budget (off: retries are admitted like first attempts).
    pub enabled: bool,
    /// Retries allowed per 100 first attempts.
    pub percent: u32,
    /// Retries always allowed per second.
    pub min_per_sec: u32,
    /// How long a first attempt counts, in milliseconds (1000..=60000).
    pub window_ms: u64,
}

impl Default for RetryBudgetSettings {
    fn default() -> Self {
        RetryBudgetSettings {
            enabled: true,
            percent: 10,
            min_per_sec: 10,
            window_ms: 10_000,
        }
    }
}

impl AdmissionConfig {
    /// The admission options these settings describe (validated by [`Config::validate`]).
    pub fn options(&self) -> crate::admission::AdmissionOptions {
        use crate::admission::{
            AdaptiveConfig, AdmissionOptions, RetryBudgetConfig, SojournTarget,
        };
        let a = &self.adaptive;
        let n = |v: u32| usize::try_from(v).unwrap_or(usize::MAX);
        let adaptive = (self.mode == AdmissionMode::Adaptive).then(|| AdaptiveConfig {
            min_limit: n(a.min_limit),
            max_limit: n(a.max_limit),
            initial_limit: n(a.initial_limit),
            interval: Duration::from_millis(a.interval_ms),
            min_samples: n(a.min_samples),
            percentile: f64::from(a.percentile) / 100.0,
            buffer: f64::from(a.buffer_pct) / 100.0,
            smoothing: f64::from(a.smoothing_pct) / 100.0,
            min_rtt_interval: Duration::from_millis(a.min_rtt_interval_ms),
            min_rtt_samples: n(a.min_rtt_samples),
            min_rtt_limit: n(a.min_rtt_limit),
            queue_per_limit: (a.queue_per_limit_pct > 0)
                .then(|| f64::from(a.queue_per_limit_pct) / 100.0),
            queue_min: n(a.queue_min),
        });
        let r = &self.retry_budget;
        #[allow(clippy::cast_precision_loss)]
        let ratio = r.percent as f32 / 100.0;
        AdmissionOptions {
            adaptive,
            critical_share: f64::from(self.critical_share_pct) / 100.0,
            sojourn: (self.sojourn_target_ms > 0).then(|| SojournTarget {
                target: Duration::from_millis(self.sojourn_target_ms),
                interval: Duration::from_millis(self.sojourn_interval_ms),
            }),
            retry_budget: r.enabled.then(|| RetryBudgetConfig {
                ttl: Duration::from_millis(r.window_ms),
                min_per_sec: r.min_per_sec,
                ratio,
            }),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, problem: &str| Err(ConfigError::invalid(key, problem));
        if self.critical_share_pct >= 100 {
            return bad("admission.critical_share_pct", "must be below 100");
        }
        if self.sojourn_target_ms > 0 && self.sojourn_interval_ms == 0 {
            return bad("admission.sojourn_interval_ms", "must be at least 1");
        }
        let a = &self.adaptive;
        let positive = [
            ("admission.adaptive.min_limit", u64::from(a.min_limit)),
            ("admission.adaptive.interval_ms", a.interval_ms),
            ("admission.adaptive.min_samples", u64::from(a.min_samples)),
            (
                "admission.adaptive.min_rtt_interval_ms",
                a.min_rtt_interval_ms,
            ),
            (
                "admission.adaptive.min_rtt_samples",
                u64::from(a.min_rtt_samples),
            ),
            (
                "admission.adaptive.min_rtt_limit",
                u64::from(a.min_rtt_limit),
            ),
        ];
        for (key, v) in positive {
            if v == 0 {
                return bad(key, "must be at least 1");
            }
        }
        if a.max_limit < a.min_limit {
            return bad("admission.adaptive.max_limit", "must be at least min_limit");
        }
        if !(a.min_limit..=a.max_limit).contains(&a.initial_limit) {
            return bad(
                "admission.adaptive.initial_limit",
                "must be within min_limit..=max_limit",
            );
        }
        if !(1..=100).contains(&a.percentile) {
            return bad("admission.adaptive.percentile", "must be within 1..=100");
        }
        if !(1..=100).contains(&a.smoothing_pct) {
            return bad("admission.adaptive.smoothing_pct", "must be within 1..=100");
        }
        if a.buffer_pct > 1000 {
            return bad("admission.adaptive.buffer_pct", "must be at most 1000");
        }
        if a.queue_per_limit_pct > 10_000 {
            return bad(
                "admission.adaptive.queue_per_limit_pct",
                "must be at most 10000",
            );
        }
        if a.queue_per_limit_pct > 0 && a.queue_min == 0 {
            return bad(
                "admission.adaptive.queue_min",
                "must be at least 1 when queue_per_limit_pct is set",
            );
        }
        let r = &self.retry_budget;
        if !(1_000..=60_000).contains(&r.window_ms) {
            return bad(
                "admission.retry_budget.window_ms",
                "must be within 1000..=60000",
            );
        }
        if r.percent > 100_000 {
            return bad("admission.retry_budget.percent", "must be at most 100000");
        }
        if r.min_per_sec >= i32::MAX as u32 / 60 {
            return bad("admission.retry_budget.min_per_sec", "is too large");
        }
        Ok(())
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `pretty` or `json`.
    pub format: LogFormat,
    /// An `EnvFilter` directive (`RUST_LOG` wins when set).
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Pretty,
            filter: "info".into(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// An invalid configuration value, naming its key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the key and line).
        message: String,
    },
    /// A value is out of range.
    #[error("{key}: {problem}")]
    Invalid {
        /// Dotted key or environment variable.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

impl From<BureauConfigError> for ConfigError {
    fn from(e: BureauConfigError) -> Self {
        ConfigError::invalid(e.key(), e.problem())
    }
}

impl From<PolicyConfigError> for ConfigError {
    fn from(e: PolicyConfigError) -> Self {
        ConfigError::invalid(e.field(), e.message())
    }
}

/// Overrides from the environment or flags (`None`: not given).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `GATEWAY_LISTEN` / `--listen`.
    pub listen: Option<String>,
    /// `GATEWAY_API_KEYS` / `--api-keys`: comma-separated.
    pub api_keys: Option<String>,
    /// `GATEWAY_ADMIN_TOKEN` / `--admin-token`.
    pub admin_token: Option<String>,
    /// `GATEWAY_STORE` / `--store`.
    pub store: Option<String>,
    /// `GATEWAY_BUREAU_URL` / `--bureau-url`.
    pub bureau_url: Option<String>,
}

impl Config {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        // A relative thresholds file is relative to the configuration file.
        if let (Some(file), Some(dir)) = (&config.risk.thresholds_file, path.parent())
            && file.is_relative()
        {
            config.risk.thresholds_file = Some(dir.join(file));
        }
        Ok(config)
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })
    }

    /// Applies overrides; each bad value is reported with the variable's name.
    pub fn apply(&mut self, o: Overrides) -> Result<(), ConfigError> {
        if let Some(listen) = o.listen {
            self.listen = listen.parse().map_err(|_| {
                ConfigError::invalid(
                    "GATEWAY_LISTEN",
                    format!("not a socket address: {listen:?}"),
                )
            })?;
        }
        if let Some(keys) = o.api_keys {
            self.api_keys = keys
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(String::from)
                .collect();
        }
        if let Some(token) = o.admin_token {
            self.admin_token = token;
        }
        if let Some(store) = o.store {
            self.store = store;
        }
        if let Some(url) = o.bureau_url {
            self.bureau.url = Some(url);
        }
        Ok(())
    }

    /// Checks every value that types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, key) in self.api_keys.iter().enumerate() {
            if key.len() < 16 {
                return Err(ConfigError::invalid(
                    format!("api_keys[{i}]"),
                    "an API key must be at least 16 characters",
                ));
            }
        }
        if !self.admin_token.is_empty() && self.admin_token.len() < 16 {
            return Err(ConfigError::invalid(
                "admin_token",
                "must be at least 16 characters",
            ));
        }
        if self.api_keys.contains(&self.admin_token) {
            return Err(ConfigError::invalid(
                "admin_token",
                "must differ from every API key",
            ));
        }
        match self.store.as_str() {
            "memory" => {}
            s if s.starts_with("redis://") || s.starts_with("rediss://") => {
                if let Some(Err(e)) = self.redis_config().map(|c| c.validate()) {
                    let key = match e.field() {
                        "url" => "store".to_owned(),
                        "idempotency_retention" => "server.idempotency_retention_hours".into(),
                        "decision_retention" => "redis.decision_retention_days".into(),
                        other => format!("redis.{other}"),
                    };
                    return Err(ConfigError::invalid(key, e.problem()));
                }
            }
            other => {
                return Err(ConfigError::invalid(
                    "store",
                    format!("expected \"memory\" or a redis:// URL, got {other:?}"),
                ));
            }
        }
        let r = &self.redis;
        if r.shared_global_limit && self.redis_config().is_none() {
            return Err(ConfigError::invalid(
                "redis.shared_global_limit",
                "needs the store on Redis",
            ));
        }
        if !(1..=1000).contains(&r.global_limit_timeout_ms) {
            return Err(ConfigError::invalid(
                "redis.global_limit_timeout_ms",
                "must be from 1 to 1000",
            ));
        }
        if !(1..=1024).contains(&r.global_limit_instances) {
            return Err(ConfigError::invalid(
                "redis.global_limit_instances",
                "must be from 1 to 1024",
            ));
        }
        let s = &self.server;
        let positive = [
            ("server.max_connections", u64::from(s.max_connections)),
            (
                "server.max_connections_per_peer",
                u64::from(s.max_connections_per_peer),
            ),
            ("server.header_read_timeout_ms", s.header_read_timeout_ms),
            ("server.idle_timeout_ms", s.idle_timeout_ms),
            ("server.body_read_timeout_ms", s.body_read_timeout_ms),
            (
                "server.http2_max_concurrent_streams",
                u64::from(s.http2_max_concurrent_streams),
            ),
            (
                "server.http2_max_send_buf_bytes",
                u64::from(s.http2_max_send_buf_bytes),
            ),
            (
                "server.http2_keep_alive_interval_ms",
                s.http2_keep_alive_interval_ms,
            ),
            (
                "server.http2_keep_alive_timeout_ms",
                s.http2_keep_alive_timeout_ms,
            ),
            ("server.body_limit_bytes", u64::from(s.body_limit_bytes)),
            ("server.default_deadline_ms", s.default_deadline_ms),
            ("server.max_deadline_ms", s.max_deadline_ms),
            (
                "admission.max_tracked_users",
                u64::from(self.admission.max_tracked_users),
            ),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        if s.default_deadline_ms > s.max_deadline_ms {
            return Err(ConfigError::invalid(
                "server.default_deadline_ms",
                "must not exceed server.max_deadline_ms",
            ));
        }
        if s.idempotency_retention_hours < 24 {
            return Err(ConfigError::invalid(
                "server.idempotency_retention_hours",
                "keys are kept at least 24 hours (API contract)",
            ));
        }
        self.admission.validate()?;
        self.server.overload.validate()?;
        self.policy.validate()?;
        self.bureau.validate()?;
        Ok(())
    }

    /// The Redis store's settings, when `store` is a `redis://` (or `rediss://`) URL.
    pub fn redis_config(&self) -> Option<crate::store::RedisConfig> {
        if !(self.store.starts_with("redis://") || self.store.starts_with("rediss://")) {
            return None;
        }
        let r = &self.redis;
        Some(crate::store::RedisConfig {
            url: self.store.clone(),
            cluster: r.cluster,
            cluster_nodes: r.cluster_nodes.clone(),
            pool_size: usize::try_from(r.pool_size).unwrap_or(usize::MAX),
            pool_wait_timeout: Duration::from_millis(r.pool_wait_timeout_ms),
            connect_timeout: Duration::from_millis(r.connect_timeout_ms),
            command_timeout: Duration::from_millis(r.command_timeout_ms),
            key_prefix: r.key_prefix.clone(),
            idempotency_retention: Duration::from_secs(
                u64::from(self.server.idempotency_retention_hours) * 3600,
            ),
            decision_retention: Duration::from_secs(u64::from(r.decision_retention_days) * 86_400),
            threshold_poll: Duration::from_millis(r.threshold_poll_ms),
            health_check_interval: Duration::from_millis(r.health_check_interval_ms),
            user_cache: crate::store::RedisConfig::default().user_cache,
        })
    }

    /// Whether the store gets the demo users.
    pub fn seeds_demo_users(&self) -> bool {
        self.seed_demo_users.unwrap_or(self.api_keys.is_empty())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bureau_section_reads_from_toml_and_the_environment_wins() {
        let c = Config::from_toml(
            "[bureau]\nurl = \"http://127.0.0.1:9100\"\nconsult = \"grades\"\ngrades = [\"D\", \"E\"]\n\
             guard = false\n[bureau.breaker]\nprobes = 5\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.bureau.grades,
            [risk_core::RiskGrade::D, risk_core::RiskGrade::E]
        );
        assert!(!c.bureau.guard);
        assert_eq!(c.bureau.breaker.probes, 5);
        assert_eq!(
            c.bureau.breaker.min_calls, 20,
            "unset keys keep their default"
        );
        let mut c = c;
        c.apply(Overrides {
            bureau_url: Some("http://10.0.0.2:9100".into()),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(c.bureau.url.as_deref(), Some("http://10.0.0.2:9100"));
        assert!(Config::default().bureau.url.is_none(), "off by default");

        let e = Config::from_toml("[bureau]\ntimeout_ms = 3\n").unwrap_err();
        assert!(e.to_string().contains("timeout_ms"), "{e}");
        let c = Config::from_toml("[bureau]\nurl = \"https://x\"\n").unwrap();
        match c.validate() {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "bureau.url"),
            other => panic!("{other:?}"),
        }
    }

    use super::*;

    #[test]
    fn defaults_validate_and_equal_the_shipped_default_file() {
        Config::default().validate().unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        assert_eq!(Config::from_file(&path).unwrap(), Config::default());
    }

    #[test]
    fn the_shipped_files_validate() {
        for f in [
            "config/default.toml",
            "config/naive.toml",
            "config/fixed.toml",
            "config/docker.toml",
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
            let c = Config::from_file(&path).unwrap_or_else(|e| panic!("{f}: {e}"));
            c.validate().unwrap_or_else(|e| panic!("{f}: {e}"));
        }
        // What docker-compose deploys is protected like the default.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/docker.toml");
        let docker = Config::from_file(&path).unwrap();
        let d = Config::default();
        assert_eq!(docker.admission, d.admission);
        assert_eq!(docker.server.overload, d.server.overload);
    }

    #[test]
    fn http_versions_and_runtime_flavour_parse_and_reject_unknown_values() {
        let c = Config::from_toml("[server]\nhttp = \"http1\"\nruntime = \"current_thread\"\n")
            .unwrap();
        assert_eq!(c.server.http, HttpVersions::Http1);
        assert_eq!(c.server.runtime, RuntimeFlavor::CurrentThread);
        assert_eq!(Config::default().server.http, HttpVersions::Auto);
        assert_eq!(Config::default().server.runtime, RuntimeFlavor::MultiThread);
        let e = Config::from_toml("[server]\nhttp = \"http3\"\n").unwrap_err();
        assert!(e.to_string().contains("http"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = Config::from_toml("[server]\nmax_conections = 3\n").unwrap_err();
        assert!(e.to_string().contains("max_conections"), "{e}");
        let mut c = Config::default();
        c.server.max_connections = 0;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "server.max_connections: must be at least 1"
        );
        let mut c = Config::default();
        let e = c
            .apply(Overrides {
                listen: Some("nope".into()),
                ..Overrides::default()
            })
            .unwrap_err();
        assert!(e.to_string().starts_with("GATEWAY_LISTEN:"), "{e}");
        let c = Config {
            api_keys: vec!["short".into()],
            ..Config::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("api_keys[0]:")
        );
        let c = Config {
            store: "postgres://x".into(),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().starts_with("store:"));
    }

    #[test]
    fn redis_settings_are_validated_with_their_key() {
        let c = Config::from_toml(
            "store = \"redis://127.0.0.1:7001/0\"\n[redis]\npool_size = 8\ncommand_timeout_ms = 300\n",
        )
        .unwrap();
        c.validate().unwrap();
        let rc = c.redis_config().unwrap();
        assert_eq!(rc.pool_size, 8);
        assert_eq!(rc.command_timeout, Duration::from_millis(300));
        assert_eq!(rc.url, "redis://127.0.0.1:7001/0");
        assert!(Config::default().redis_config().is_none());
        let key = |toml: &str| match Config::from_toml(toml).unwrap().validate() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        let url = "store = \"redis://127.0.0.1:7001\"\n";
        assert_eq!(
            key(&format!("{url}[redis]\npool_size = 0\n")),
            "redis.pool_size"
        );
        assert_eq!(
            key(&format!("{url}[redis]\ncommand_timeout_ms = 0\n")),
            "redis.command_timeout_ms"
        );
        assert_eq!(
            key(&format!("{url}[redis]\npool_wait_timeout_ms = 600000\n")),
            "redis.pool_wait_timeout_ms"
        );
        assert_eq!(
            key(&format!("{url}[redis]\nkey_prefix = \"a{{b}}\"\n")),
            "redis.key_prefix"
        );
        assert_eq!(key("store = \"redis://[::1\"\n"), "store");
        assert_eq!(
            key(&format!(
                "{url}[redis]\ncluster_nodes = [\"redis://b:7002\"]\n"
            )),
            "redis.cluster_nodes"
        );
        assert_eq!(
            key(&format!(
                "{url}[redis]\ncluster = true\ncluster_nodes = [\"http://b\"]\n"
            )),
            "redis.cluster_nodes"
        );
        assert_eq!(
            key("store = \"redis://a:7001/2\"\n[redis]\ncluster = true\n"),
            "store"
        );
        let c = Config::from_toml(&format!(
            "{url}[redis]\ncluster = true\ncluster_nodes = [\"redis://127.0.0.1:7002\"]\n"
        ))
        .unwrap();
        c.validate().unwrap();
        let rc = c.redis_config().unwrap();
        assert!(rc.cluster);
        assert_eq!(
            key("[redis]\nshared_global_limit = true\n"),
            "redis.shared_global_limit"
        );
        assert_eq!(
            key(&format!("{url}[redis]\nglobal_limit_timeout_ms = 0\n")),
            "redis.global_limit_timeout_ms"
        );
        assert_eq!(
            key(&format!("{url}[redis]\nglobal_limit_instances = 0\n")),
            "redis.global_limit_instances"
        );
        Config::from_toml(&format!(
            "{url}[redis]\nshared_global_limit = true\nglobal_limit_instances = 4\n"
        ))
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(
            rc.seeds(),
            ["redis://127.0.0.1:7001", "redis://127.0.0.1:7002"]
        );
        let mut c = Config::default();
        c.apply(Overrides {
            store: Some("redis://127.0.0.1:7002".into()),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(c.redis_config().unwrap().url, "redis://127.0.0.1:7002");
    }

    #[test]
    fn admission_and_overload_settings_map_and_validate_with_their_key() {
        let c = Config::from_toml(
            "[admission]\nmode = \"adaptive\"\ncritical_share_pct = 50\nsojourn_target_ms = 20\n\
             [admission.adaptive]\nmax_limit = 200\nbuffer_pct = 40\n\
             [admission.retry_budget]\nenabled = true\npercent = 20\n\
             [server.overload]\nenabled = true\noccupancy_high_pct = 90\n",
        )
        .unwrap();
        c.validate().unwrap();
        let o = c.admission.options();
        let a = o.adaptive.unwrap();
        assert_eq!((a.max_limit, a.buffer), (200, 0.4));
        // The queue follows the limit unless told otherwise.
        assert_eq!(a.queue_per_limit, Some(0.5));
        assert_eq!(o.critical_share, 0.5);
        assert_eq!(o.sojourn.unwrap().target, Duration::from_millis(20));
        assert_eq!(o.retry_budget.unwrap().ratio, 0.2);
        assert_eq!(c.server.overload.config().occupancy_high, Some(0.9));
        // Protection is on by default (issue 23): an adaptive limit whose queue follows it,
        // half the limit kept for drawdowns, a sojourn target, a retry budget, overload
        // actions.
        let d = Config::default();
        let o = d.admission.options();
        assert_eq!(o.adaptive.unwrap().queue_per_limit, Some(0.5));
        assert_eq!(o.critical_share, 0.5);
        assert_eq!(o.sojourn.unwrap().target, Duration::from_millis(20));
        assert_eq!(o.retry_budget.unwrap().ratio, 0.1);
        assert!(d.server.overload.enabled);
        // `mode = "fixed"` keeps the policy's limit.
        let f = Config::from_toml("[admission]\nmode = \"fixed\"\n").unwrap();
        assert!(f.admission.options().adaptive.is_none());
        let key = |toml: &str| match Config::from_toml(toml).unwrap().validate() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            key("[admission]\ncritical_share_pct = 100\n"),
            "admission.critical_share_pct"
        );
        assert_eq!(
            key("[admission.adaptive]\nmin_limit = 10\nmax_limit = 5\ninitial_limit = 7\n"),
            "admission.adaptive.max_limit"
        );
        assert_eq!(
            key("[admission.adaptive]\ninitial_limit = 5000\n"),
            "admission.adaptive.initial_limit"
        );
        assert_eq!(
            key("[admission.adaptive]\nqueue_per_limit_pct = 10001\n"),
            "admission.adaptive.queue_per_limit_pct"
        );
        assert_eq!(
            key("[admission.adaptive]\nqueue_per_limit_pct = 50\nqueue_min = 0\n"),
            "admission.adaptive.queue_min"
        );
        assert_eq!(
            key("[admission.adaptive]\npercentile = 0\n"),
            "admission.adaptive.percentile"
        );
        assert_eq!(
            key("[admission.retry_budget]\nwindow_ms = 500\n"),
            "admission.retry_budget.window_ms"
        );
        assert_eq!(
            key("[server.overload]\nlag_high_ms = 10\nlag_low_ms = 10\n"),
            "server.overload.lag_low_ms"
        );
        let e = Config::from_toml("[admission]\nmode = \"magic\"\n").unwrap_err();
        assert!(e.to_string().contains("mode"), "{e}");
    }

    #[test]
    fn overrides_replace_file_values() {
        let mut c = Config::from_toml("listen = \"127.0.0.1:9000\"\n").unwrap();
        c.apply(Overrides {
            listen: Some("0.0.0.0:8081".into()),
            api_keys: Some("aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbb,".into()),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(c.listen.port(), 8081);
        assert_eq!(c.api_keys, ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"]);
        assert!(!c.seeds_demo_users());
    }
}
