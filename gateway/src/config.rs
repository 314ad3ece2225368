//! Configuration: one TOML file, overridden by environment variables and flags.
//!
//! Precedence, lowest first: built-in defaults, the file (`--config` / `GATEWAY_CONFIG`), the
//! environment (`GATEWAY_LISTEN`, `GATEWAY_API_KEYS`, `GATEWAY_ADMIN_TOKEN`, `GATEWAY_STORE`,
//! `GATEWAY_BUREAU_URL`), then flags. Every invalid value is reported with its dotted key.
//!
//! Each subsystem owns the type of its section, next to its code, with typed fields
//! (`Duration`, ratios) that the file writes in the unit its key names (`_ms`, `_pct`; see
//! [`crate::setting`]); [`Config`] composes them. `[server]` is here because two modules read
//! it, the connection loop ([`crate::server`]) and the edge ([`crate::api`]), and the first
//! depends on the second.
//!
//! # Layout
//! - [`Config`]: the whole configuration, its validation and the overrides ([`Overrides`]).
//! - [`ServerConfig`] (`[server]`), with [`HttpVersions`] and [`RuntimeFlavor`].
//! - [`RiskConfig`] (`[risk]`), [`LogConfig`] (`[log]`).
//! - [`AdminConfig`] (`[admin]`): the named admin tokens, one per operator ([`AdminToken`]).
//! - [`ConfigError`]: why a configuration was refused, naming the key.
//! - Elsewhere: [`AdmissionConfig`] (`[admission]`), [`OverloadConfig`]
//!   (`[server.overload]`), [`RedisConfig`] (`[redis]`), [`BureauConfig`] (`[bureau]`),
//!   [`PolicyConfig`] (`[policy]`), [`TracingConfig`] (`[tracing]`).

use crate::admission::AdmissionConfig;
use crate::bureau::BureauConfig;
use crate::overload::OverloadConfig;
use crate::policy::{LimitsPatch, PolicyConfig, PolicyConfigError, WindowConfig};
use crate::setting::{self, Invalid};
use crate::store::RedisConfig;
use crate::tls::TlsConfig;
use crate::trace::TracingConfig;
use serde::{Deserialize, Serialize};
use std::fmt;
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
    /// Named admin tokens, one per operator (`[[admin.tokens]]`); the `admin_token` is the
    /// operator `admin`.
    pub admin: AdminConfig,
    /// `memory` (embedded default) or a `redis://` URL.
    pub store: String,
    /// The Redis store's pool and timeouts (when `store` is a `redis://` URL).
    pub redis: RedisConfig,
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
    pub bureau: BureauConfig,
    /// The operator console under `/console`.
    pub console: ConsoleConfig,
    /// The export of spans over OTLP (off unless `tracing.otlp_endpoint` is set).
    pub tracing: TracingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_keys: Vec::new(),
            admin_token: String::new(),
            admin: AdminConfig::default(),
            store: "memory".into(),
            redis: RedisConfig::default(),
            seed_demo_users: None,
            server: ServerConfig::default(),
            risk: RiskConfig::default(),
            admission: AdmissionConfig::default(),
            policy: default_policy(),
            log: LogConfig::default(),
            bureau: BureauConfig::default(),
            console: ConsoleConfig::default(),
            tracing: TracingConfig::default(),
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

/// The operator the single `admin_token` (`GATEWAY_ADMIN_TOKEN`) signs in as.
pub const LEGACY_OPERATOR: &str = "admin";

/// `[admin]`: the named admin tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// One token per operator (`[[admin.tokens]]`), beside the `admin_token` (operator
    /// [`LEGACY_OPERATOR`]).
    pub tokens: Vec<AdminToken>,
}

/// One named admin token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminToken {
    /// Who signs in with it: 1 to 64 characters of `A-Z a-z 0-9 _ - . @`, unique.
    pub operator: String,
    /// The token (at least 16 characters); never printed.
    #[serde(skip_serializing, default)]
    pub token: String,
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminToken")
            .field("operator", &self.operator)
            .finish_non_exhaustive()
    }
}

impl AdminConfig {
    /// Checks the tokens against each other, the legacy `admin_token` and the API keys;
    /// the error is (key under `admin`, problem).
    pub fn validate(&self, admin_token: &str, api_keys: &[String]) -> Result<(), (String, String)> {
        let mut operators = std::collections::HashSet::new();
        let mut tokens = std::collections::HashSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let key = |field: &str| format!("tokens[{i}].{field}");
            let op = &t.operator;
            if op.is_empty()
                || op.len() > 64
                || !op
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.@".contains(&b))
            {
                return Err((
                    key("operator"),
                    "must be 1 to 64 characters of A-Z a-z 0-9 _ - . @".into(),
                ));
            }
            if !admin_token.is_empty() && op == LEGACY_OPERATOR {
                return Err((
                    key("operator"),
                    format!("\"{LEGACY_OPERATOR}\" is the operator of admin_token"),
                ));
            }
            if !operators.insert(op.as_str()) {
                return Err((key("operator"), format!("operator {op:?} is named twice")));
            }
            if t.token.len() < 16 {
                return Err((key("token"), "must be at least 16 characters".into()));
            }
            if t.token == admin_token || !tokens.insert(t.token.as_str()) {
                return Err((
                    key("token"),
                    "must differ from every other admin token".into(),
                ));
            }
            if api_keys.contains(&t.token) {
                return Err((key("token"), "must differ from every API key".into()));
            }
        }
        Ok(())
    }
}

/// `[server]`: connections, request deadlines and bodies. Durations are written in the unit
/// their key names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Open connections at most; a connection past it is answered `503 CAPACITY_SHED` and
    /// closed at once.
    pub max_connections: u32,
    /// Connections the kernel holds completed but not yet accepted (the `listen` backlog;
    /// the kernel caps it at `net.core.somaxconn`). Past it a client's `SYN` is dropped
    /// at no cost to this process. Short, so that a connection not taken in while the CPU is
    /// busy (`server.overload.accept_delay_ms`) waits little before it is served or refused
    /// by the kernel; with `server.overload.backlog_wait_ms` set, the most (the backlog is
    /// then sized to that wait while the gate holds connections back).
    pub listen_backlog: u32,
    /// Open connections at most from one peer address (IPv4, or IPv6 /64; any port); past
    /// it a new connection is closed at once. The default keeps one peer to a fifth of
    /// `max_connections` while letting one host of the project's load scenarios (up to
    /// 1,500 connections) through; facing clients directly, lower it (64 to 256); behind a
    /// load balancer or a NAT, whose few addresses every client shares, raise it.
    pub max_connections_per_peer: u32,
    /// A client must send its request headers within this time: from the connection's
    /// start for its first request (the HTTP/2 preface and handshake included), and on
    /// HTTP/1.1 keep-alive from the end of the previous response (`header_read_timeout_ms`).
    #[serde(rename = "header_read_timeout_ms", with = "setting::millis")]
    pub header_read_timeout: Duration,
    /// An HTTP/2 connection with no request in flight for this long is closed (`GOAWAY`;
    /// any connection still open `shutdown_grace` later is dropped; `idle_timeout_ms`).
    #[serde(rename = "idle_timeout_ms", with = "setting::millis")]
    pub idle_timeout: Duration,
    /// A request body must arrive within this time of the request head (and within the
    /// request's deadline), else `408 REQUEST_TIMEOUT` (`body_read_timeout_ms`).
    #[serde(rename = "body_read_timeout_ms", with = "setting::millis")]
    pub body_read_timeout: Duration,
    /// HTTP/2: streams a client may have open at once on one connection.
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2: response bytes buffered per stream while the client's flow-control window
    /// is closed (further body data waits, unread).
    pub http2_max_send_buf_bytes: u32,
    /// HTTP/2: a `PING` is sent after this long without a frame from the client; a client
    /// that does not answer within `http2_keep_alive_timeout` is dropped
    /// (`http2_keep_alive_interval_ms`).
    #[serde(rename = "http2_keep_alive_interval_ms", with = "setting::millis")]
    pub http2_keep_alive_interval: Duration,
    /// HTTP/2: how long the answer to a keep-alive `PING` may take
    /// (`http2_keep_alive_timeout_ms`).
    #[serde(rename = "http2_keep_alive_timeout_ms", with = "setting::millis")]
    pub http2_keep_alive_timeout: Duration,
    /// Largest request body in bytes (413 above it).
    pub body_limit_bytes: u32,
    /// Deadline of a request that sends no `X-Request-Deadline-Ms` (`default_deadline_ms`).
    #[serde(rename = "default_deadline_ms", with = "setting::millis")]
    pub default_deadline: Duration,
    /// Largest deadline a caller may ask for (`max_deadline_ms`).
    #[serde(rename = "max_deadline_ms", with = "setting::millis")]
    pub max_deadline: Duration,
    /// On shutdown, in-flight requests get this long to finish (`shutdown_grace_ms`).
    #[serde(rename = "shutdown_grace_ms", with = "setting::millis")]
    pub shutdown_grace: Duration,
    /// How long idempotency records are kept (`idempotency_retention_hours`, at least 24).
    #[serde(rename = "idempotency_retention_hours", with = "setting::hours")]
    pub idempotency_retention: Duration,
    /// Connection-level overload actions (`[server.overload]`).
    pub overload: OverloadConfig,
    /// HTTP versions served on the port: `auto` (HTTP/1.1 and HTTP/2 with prior knowledge)
    /// or `http1` (HTTP/1.1 only; skips the per-connection HTTP/2 preface check).
    pub http: HttpVersions,
    /// The binary's tokio runtime: `auto` (one thread when the process may use one core,
    /// else work-stealing workers), `multi_thread` or `current_thread`. Read by the binary
    /// before the runtime starts; the library ignores it.
    pub runtime: RuntimeFlavor,
    /// TLS on the listener (`[server.tls]`, [`crate::tls`]); absent: plain HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
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
    /// `current_thread` when the process may run on one core only (its CPU affinity or its
    /// cgroup CPU quota, as [`std::thread::available_parallelism`] reads them) and keeps its
    /// data in the embedded store, else `multi_thread`: see [`RuntimeFlavor::resolve`].
    #[default]
    Auto,
    /// Work-stealing workers, one per available core.
    MultiThread,
    /// Everything on the thread that runs `main`.
    CurrentThread,
}

impl RuntimeFlavor {
    /// The flavour to build for a process that may use `cores` cores, on the embedded
    /// store (`embedded_store`) or on Redis.
    ///
    /// On one core a work-stealing runtime has no one to steal from and still pays for it
    /// (an inject queue, cross-thread wakes), and its LIFO slot runs a just-woken task
    /// (typically a connection just accepted) ahead of requests already waiting. Under CPU
    /// overload both cost admitted requests their latency (BENCHMARKS.md, "CPU-bound step
    /// overload"), so `auto` picks the single thread there, on the embedded store.
    ///
    /// On Redis the same single thread runs the tasks that send the pipelined commands
    /// behind every request ready before them, so a batch leaves only once the round is
    /// done, and the gateway and Redis take turns instead of working side by side; the
    /// work-stealing runtime's LIFO slot runs a task just woken by another (the sender,
    /// then the connection's writer) next. Measured with the gateway on one core: a third
    /// more drawdowns a second on Redis with `multi_thread` (BENCHMARKS.md, "Redis store"),
    /// so `auto` keeps it there.
    pub fn resolve(self, cores: usize, embedded_store: bool) -> RuntimeFlavor {
        match self {
            RuntimeFlavor::Auto if cores <= 1 && embedded_store => RuntimeFlavor::CurrentThread,
            RuntimeFlavor::Auto => RuntimeFlavor::MultiThread,
            chosen => chosen,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 10_000,
            listen_backlog: 64,
            max_connections_per_peer: 2_048,
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(5),
            http2_max_concurrent_streams: 100,
            http2_max_send_buf_bytes: 64 * 1024,
            http2_keep_alive_interval: Duration::from_secs(20),
            http2_keep_alive_timeout: Duration::from_secs(10),
            body_limit_bytes: 16 * 1024,
            default_deadline: Duration::from_secs(2),
            max_deadline: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            idempotency_retention: Duration::from_secs(24 * 3600),
            overload: OverloadConfig::default(),
            http: HttpVersions::default(),
            runtime: RuntimeFlavor::default(),
            tls: None,
        }
    }
}

impl ServerConfig {
    /// Checks what types alone do not, naming the key within `[server]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        setting::at_least_one([
            ("max_connections", u128::from(self.max_connections)),
            ("listen_backlog", u128::from(self.listen_backlog)),
            (
                "max_connections_per_peer",
                u128::from(self.max_connections_per_peer),
            ),
            (
                "header_read_timeout_ms",
                self.header_read_timeout.as_nanos(),
            ),
            ("idle_timeout_ms", self.idle_timeout.as_nanos()),
            ("body_read_timeout_ms", self.body_read_timeout.as_nanos()),
            (
                "http2_max_concurrent_streams",
                u128::from(self.http2_max_concurrent_streams),
            ),
            (
                "http2_max_send_buf_bytes",
                u128::from(self.http2_max_send_buf_bytes),
            ),
            (
                "http2_keep_alive_interval_ms",
                self.http2_keep_alive_interval.as_nanos(),
            ),
            (
                "http2_keep_alive_timeout_ms",
                self.http2_keep_alive_timeout.as_nanos(),
            ),
            ("body_limit_bytes", u128::from(self.body_limit_bytes)),
            ("default_deadline_ms", self.default_deadline.as_nanos()),
            ("max_deadline_ms", self.max_deadline.as_nanos()),
        ])?;
        if self.default_deadline > self.max_deadline {
            return Err(Invalid::new(
                "default_deadline_ms",
                "must not exceed server.max_deadline_ms",
            ));
        }
        if self.idempotency_retention < Duration::from_secs(24 * 3600) {
            return Err(Invalid::new(
                "idempotency_retention_hours",
                "keys are kept at least 24 hours (API contract)",
            ));
        }
        self.overload.validate().map_err(|e| e.under("overload"))
    }
}

/// `[risk]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// A thresholds document (JSON) to start with instead of the built-in one.
    pub thresholds_file: Option<PathBuf>,
    /// How many recent drawdown decisions keep their inputs for backtests (0: none): the
    /// whole store's last ones, in a bounded record beside its decisions
    /// (`crate::store::inputs`; what a record costs: `BENCHMARKS.md`, "backtest"). At most
    /// 10,000,000.
    pub decision_inputs_kept: usize,
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            thresholds_file: None,
            decision_inputs_kept: 100_000,
        }
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

/// `[console]`: the operator console under `/console` (`crate::console`). Here rather than
/// beside its code because the console depends on the API, which depends on this module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve the console (`false`: `/console` is 404 like any unknown path).
    pub enabled: bool,
    /// When the session cookie carries `Secure`.
    pub cookie_secure: CookieSecure,
    /// A session unused this long is signed out.
    #[serde(rename = "session_idle_ms", with = "setting::millis")]
    pub session_idle: Duration,
    /// A session is signed out this long after sign-in, however used.
    #[serde(rename = "session_max_ms", with = "setting::millis")]
    pub session_max: Duration,
    /// Sessions held at most; a sign-in past it signs out the least recently used.
    pub max_sessions: u32,
    /// Users whose recent decisions and 429/503 refusals this process keeps for the
    /// customer page (`crate::trail`); the least recently seen go first. 0: none.
    pub trail_users: u64,
    /// Entries kept per user, newest.
    pub trail_per_user: u32,
    /// Grafana's base URL (`http://grafana:3000`): each chart of the live refusals page links
    /// to its panel of the `loan-gateway` dashboard. Unset: no links.
    pub grafana_url: Option<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            cookie_secure: CookieSecure::Auto,
            session_idle: Duration::from_secs(30 * 60),
            session_max: Duration::from_secs(12 * 3600),
            max_sessions: 1024,
            trail_users: 10_000,
            trail_per_user: 20,
            grafana_url: None,
        }
    }
}

impl ConsoleConfig {
    /// Checks every field, naming the first one out of range.
    pub fn validate(&self) -> Result<(), Invalid> {
        setting::at_least_one([
            ("session_idle_ms", self.session_idle.as_nanos()),
            ("session_max_ms", self.session_max.as_nanos()),
            ("max_sessions", u128::from(self.max_sessions)),
        ])?;
        match &self.grafana_url {
            Some(url) if !grafana_url_ok(url) => Err(Invalid::new(
                "grafana_url",
                "an http:// or https:// URL without spaces, quotes or angle brackets",
            )),
            _ => Ok(()),
        }
    }
}

/// Whether `url` is an http(s) URL the console can put in a link as it is.
fn grafana_url_ok(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| {
        !r.is_empty()
            && r.chars()
                .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '<' | '>' | '`'))
    })
}

/// When the console's cookies carry `Secure` (sent only over HTTPS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CookieSecure {
    /// When the request came over TLS: an `https` URI, or `X-Forwarded-Proto: https` from
    /// a TLS-terminating proxy (the header can only add the flag, never remove it).
    Auto,
    /// Always (the console is only reached over HTTPS).
    Always,
    /// Never (plain HTTP on a trusted network, e.g. loopback).
    Never,
}

/// Why a configuration was refused, naming the key.
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
    #[error("{path}: {key}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The dotted key at fault (an unknown key itself; `.` for the document as a whole).
        key: String,
        /// What is wrong, and on which line.
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

impl From<Invalid> for ConfigError {
    fn from(e: Invalid) -> Self {
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
            ConfigError::Parse { key, message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                key,
                message,
            },
            other => other,
        })?;
        // A relative thresholds file is relative to the configuration file, as are the TLS
        // files.
        if let (Some(file), Some(dir)) = (&config.risk.thresholds_file, path.parent())
            && file.is_relative()
        {
            config.risk.thresholds_file = Some(dir.join(file));
        }
        if let (Some(tls), Some(dir)) = (&mut config.server.tls, path.parent()) {
            for file in [&mut tls.cert_file, &mut tls.key_file]
                .into_iter()
                .chain(tls.client_ca_file.as_mut())
            {
                if file.is_relative() {
                    *file = dir.join(&*file);
                }
            }
        }
        Ok(config)
    }

    /// Parses TOML text; an error names the dotted key at fault and its line.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let parse_error = |key: String, e: &toml::de::Error| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            ConfigError::Parse {
                path: PathBuf::from("<config>"),
                key,
                message: match line {
                    Some(line) => format!("{} (line {line})", e.message().trim_end()),
                    None => e.message().trim_end().to_owned(),
                },
            }
        };
        let document = toml::Deserializer::parse(text).map_err(|e| parse_error(".".into(), &e))?;
        serde_path_to_error::deserialize(document)
            .map_err(|e| parse_error(e.path().to_string(), e.inner()))
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
        self.admin
            .validate(&self.admin_token, &self.api_keys)
            .map_err(|(key, problem)| ConfigError::invalid(format!("admin.{key}"), problem))?;
        match self.redis_config() {
            // The two settings of the store that `[redis]` does not hold come from `store`
            // and `[server]`.
            Some(redis) => redis.validate().map_err(|e| match e.field() {
                "url" => ConfigError::invalid("store", e.problem()),
                "idempotency_retention" => {
                    ConfigError::invalid("server.idempotency_retention_hours", e.problem())
                }
                key => ConfigError::invalid(format!("redis.{key}"), e.problem()),
            })?,
            None if self.store == "memory" => {
                self.redis.validate_shared_limit().map_err(|e| {
                    ConfigError::invalid(format!("redis.{}", e.field()), e.problem())
                })?;
                if self.redis.shared_global_limit {
                    return Err(ConfigError::invalid(
                        "redis.shared_global_limit",
                        "needs the store on Redis",
                    ));
                }
            }
            None => {
                return Err(ConfigError::invalid(
                    "store",
                    format!(
                        "expected \"memory\" or a redis:// URL, got {:?}",
                        self.store
                    ),
                ));
            }
        }
        self.server.validate().map_err(|e| e.under("server"))?;
        if let Some(tls) = &self.server.tls {
            tls.validate().map_err(|e| e.under("server.tls"))?;
        }
        self.admission
            .validate()
            .map_err(|e| e.under("admission"))?;
        self.policy.validate()?;
        self.bureau.validate().map_err(|e| e.under("bureau"))?;
        self.console.validate().map_err(|e| e.under("console"))?;
        self.tracing.validate().map_err(|e| e.under("tracing"))?;
        if self.risk.decision_inputs_kept > 10_000_000 {
            return Err(ConfigError::invalid(
                "risk.decision_inputs_kept",
                "must be at most 10,000,000 decisions",
            ));
        }
        Ok(())
    }

    /// The Redis store's settings, when `store` is a `redis://` (or `rediss://`) URL: the
    /// `[redis]` section with the URL and the idempotency retention filled in.
    pub fn redis_config(&self) -> Option<RedisConfig> {
        (self.store.starts_with("redis://") || self.store.starts_with("rediss://")).then(|| {
            RedisConfig {
                url: self.store.clone(),
                idempotency_retention: self.server.idempotency_retention,
                ..self.redis.clone()
            }
        })
    }

    /// Whether an admin token is configured (the legacy one or a named one).
    pub fn has_admin_token(&self) -> bool {
        !self.admin_token.is_empty() || !self.admin.tokens.is_empty()
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

        assert_eq!(parse_key("[bureau]\ntimeout_ms = 3\n"), "bureau.timeout_ms");
        let c = Config::from_toml("[bureau]\nurl = \"ftp://x\"\n").unwrap();
        match c.validate() {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "bureau.url"),
            other => panic!("{other:?}"),
        }
        Config::from_toml("[bureau]\nurl = \"https://x\"\n")
            .unwrap()
            .validate()
            .unwrap();
    }

    use super::*;

    /// The dotted key a parse error names.
    fn parse_key(toml: &str) -> String {
        match Config::from_toml(toml) {
            Err(ConfigError::Parse { key, .. }) => key,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn named_tokens_are_validated() {
        // Read from TOML; the tokens never printed (`--check-config`), the operators are.
        let c = Config::from_toml(
            "admin_token = \"admin-cccccccccccccc\"\n[[admin.tokens]]\noperator = \"alice\"\n\
             token = \"alice-token-aaaaaaaaaa\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert!(c.has_admin_token());
        assert_eq!(c.admin.tokens[0].operator, "alice");
        let printed = toml::to_string(&c).unwrap();
        assert!(
            printed.contains("alice") && !printed.contains("alice-token"),
            "{printed}"
        );
        assert!(!format!("{c:?}").contains("alice-token"));
        let c =
            Config::from_toml("[[admin.tokens]]\noperator = \"a\"\ntoken = \"short\"\n").unwrap();
        match c.validate() {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "admin.tokens[0].token"),
            other => panic!("{other:?}"),
        }
        let t = |op: &str, token: &str| AdminToken {
            operator: op.into(),
            token: token.into(),
        };
        let check = |tokens: Vec<AdminToken>| {
            AdminConfig { tokens }
                .validate("admin-cccccccccccccc", &["key-aaaaaaaaaaaaaaaa".into()])
                .map_err(|(k, _)| k)
        };
        assert!(check(vec![t("alice", "alice-token-aaaaaaaaaa")]).is_ok());
        assert_eq!(
            check(vec![t("", "alice-token-aaaaaaaaaa")]).unwrap_err(),
            "tokens[0].operator"
        );
        assert_eq!(
            check(vec![t("a b", "alice-token-aaaaaaaaaa")]).unwrap_err(),
            "tokens[0].operator"
        );
        assert_eq!(
            check(vec![t("admin", "alice-token-aaaaaaaaaa")]).unwrap_err(),
            "tokens[0].operator"
        );
        assert_eq!(
            check(vec![t("alice", "short")]).unwrap_err(),
            "tokens[0].token"
        );
        assert_eq!(
            check(vec![
                t("alice", "alice-token-aaaaaaaaaa"),
                t("alice", "other-token-aaaaaaaaaa")
            ])
            .unwrap_err(),
            "tokens[1].operator"
        );
        assert_eq!(
            check(vec![
                t("alice", "alice-token-aaaaaaaaaa"),
                t("bob", "alice-token-aaaaaaaaaa")
            ])
            .unwrap_err(),
            "tokens[1].token"
        );
        assert_eq!(
            check(vec![t("alice", "admin-cccccccccccccc")]).unwrap_err(),
            "tokens[0].token"
        );
        assert_eq!(
            check(vec![t("alice", "key-aaaaaaaaaaaaaaaa")]).unwrap_err(),
            "tokens[0].token"
        );
    }

    #[test]
    fn a_parse_error_names_the_key_and_its_line() {
        let e =
            Config::from_toml("listen = \"127.0.0.1:1\"\n[server]\nidle_timeout_ms = \"soon\"\n")
                .unwrap_err();
        match &e {
            ConfigError::Parse { key, message, .. } => {
                assert_eq!(key, "server.idle_timeout_ms");
                assert!(message.contains("line 3"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            e.to_string()
                .starts_with("<config>: server.idle_timeout_ms: "),
            "{e}"
        );
        assert_eq!(
            parse_key("[admission.adaptive]\nbuffer_pct = -1\n"),
            "admission.adaptive.buffer_pct"
        );
        assert_eq!(parse_key("[server\n"), ".", "a syntax error names no key");
        // A duration past what the unit can hold is refused, not wrapped.
        assert_eq!(
            parse_key("[redis]\ndecision_retention_days = 999999999999999\n"),
            "redis.decision_retention_days"
        );
    }

    #[test]
    fn auto_runtime_is_one_thread_on_one_core_on_the_embedded_store_only() {
        assert_eq!(
            RuntimeFlavor::Auto.resolve(1, true),
            RuntimeFlavor::CurrentThread
        );
        assert_eq!(
            RuntimeFlavor::Auto.resolve(2, true),
            RuntimeFlavor::MultiThread
        );
        assert_eq!(
            RuntimeFlavor::Auto.resolve(1, false),
            RuntimeFlavor::MultiThread,
            "on Redis: workers even on one core"
        );
        assert_eq!(
            RuntimeFlavor::MultiThread.resolve(1, true),
            RuntimeFlavor::MultiThread
        );
        assert_eq!(
            RuntimeFlavor::CurrentThread.resolve(8, false),
            RuntimeFlavor::CurrentThread
        );
    }

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
        assert_eq!(Config::default().server.runtime, RuntimeFlavor::Auto);
        assert_eq!(parse_key("[server]\nhttp = \"http3\"\n"), "server.http");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        assert_eq!(
            parse_key("[server]\nmax_conections = 3\n"),
            "server.max_conections"
        );
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
        assert_eq!(c.server.overload.occupancy_high, Some(0.9));
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
        assert_eq!(
            parse_key("[admission]\nmode = \"magic\"\n"),
            "admission.mode"
        );
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
