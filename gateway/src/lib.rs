//! loan-gateway: the production entry point for consumer-loan drawdowns.
//!
//! A transient refusal (429/503 with `Retry-After` and a reason code) is never confused with
//! a risk decision (200 with `outcome` and ordered reasons). The repository's
//! `docs/architecture.md` describes the architecture and `docs/api.md` the HTTP API (served as
//! OpenAPI 3.1 at `GET /openapi.json`, kept in `gateway/openapi.json`).
//!
//! # Layout
//! - [`config`]: the TOML file, environment and flags; composes each subsystem's section.
//! - [`setting`]: what each section's type shares: units as serde forms, [`setting::Invalid`].
//! - [`clock`]: wall time behind a trait, so tests drive peak windows.
//! - [`policy`]: peak windows and the active policy snapshot.
//! - [`request`]: what is known of a request before it is routed ([`request::RequestFacts`]).
//! - [`ratelimit`]: global (per route) and per-user rate limits.
//! - [`admission`]: priority-aware concurrency limit with a bounded queue.
//! - [`bureau`]: the external credit bureau under a latency budget, bulkhead and breaker.
//! - [`anomaly`]: report-only anomaly rules: what they would have refused, counted.
//! - [`backtest`]: the shadow candidate replayed over stored decisions' inputs.
//! - [`shadow`]: shadow candidates: a thresholds document evaluated beside the live one.
//! - [`store`]: the store interface, its in-memory and Redis implementations.
//! - [`api`]: the request path ([`api::GatewayService`]), routes, wire types, errors, the edge.
//! - [`logging`]: the log subscriber; the access log's own layer.
//! - [`metrics`]: Prometheus metrics.
//! - [`server`]: the connection loop and graceful shutdown.
//! - [`overload`]: connection-level overload actions (pause accepting, close keep-alive).
//! - [`pressure`]: how long connections wait for the CPU; the accept gate and stale drop.
//! - [`tls`]: TLS on the listener (rustls), mutual TLS, certificates read again on change.
//! - [`trace`]: W3C trace context, passed on to the bureau; spans exported over OTLP.
//! - [`embedded`]: start a gateway in-process (tests, the loadtest).
//! - [`trail`]: each user's recent decisions and 429/503 refusals (bounded, per process).
//! - [`console`]: the operator console under `/console` (server-rendered pages).
//!
//! # Example
//! ```no_run
//! # async fn run() -> Result<(), gateway::Error> {
//! let gateway = gateway::Gateway::build(gateway::config::Config::default(),
//!                                       gateway::clock::SystemClock::shared())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! gateway.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```

pub mod admission;
pub mod anomaly;
pub mod api;
pub mod backtest;
pub mod bureau;
pub mod clock;
pub mod config;
pub mod console;
pub mod embedded;
pub mod logging;
pub mod metrics;
pub mod overload;
pub mod policy;
pub mod pressure;
pub mod ratelimit;
pub mod request;
pub mod server;
pub mod setting;
pub mod shadow;
pub mod store;
pub mod tls;
pub mod trace;
pub mod trail;

use api::{App, AppState, Auth};
use clock::SharedClock;
use config::{Config, ConfigError};
use risk_core::{ThresholdCache, Thresholds, ThresholdsError};
use std::sync::Arc;
use std::time::Duration;
use store::{AnyStore, DemoUser, MemoryConfig, MemoryStore, RedisStore, Store};
use tokio::task::JoinHandle;

/// Demo caller key, used only when no API keys are configured (printed at start-up).
pub const DEMO_API_KEY: &str = "demo-caller-key-0001";
/// Demo admin token, used only when no admin token is configured.
pub const DEMO_ADMIN_TOKEN: &str = "demo-admin-token-0001";

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// The thresholds file is invalid.
    #[error("thresholds: {0}")]
    Thresholds(#[from] ThresholdsError),
    /// An I/O error (binding the listener, reading a file).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A built gateway: the shared state, its router, and its background tasks.
#[derive(Debug)]
pub struct Gateway {
    app: App,
    /// With the Redis store: the initial thresholds (stored if Redis has none) and the
    /// refresher's metrics.
    threshold_sync: Option<(Thresholds, store::ThresholdSyncMetrics)>,
    demo_credentials: bool,
    demo_users: Vec<DemoUser>,
    /// Connection-level overload actions (`server.overload.enabled`).
    overload: Option<overload::Overload>,
    /// The operator console (its session table lives as long as the gateway).
    console: console::Console,
}

impl Gateway {
    /// Validates `config` and builds everything but the listener.
    pub fn build(mut config: Config, clock: SharedClock) -> Result<Gateway, Error> {
        let demo_credentials = config.api_keys.is_empty() || !config.has_admin_token();
        // Decided before demo credentials fill the empty keys.
        let seed_demo = config.seeds_demo_users();
        if config.api_keys.is_empty() {
            config.api_keys = vec![DEMO_API_KEY.to_owned()];
        }
        if !config.has_admin_token() {
            config.admin_token = DEMO_ADMIN_TOKEN.to_owned();
        }
        config.validate()?;
        let compiled = config.policy.validate().map_err(ConfigError::from)?;

        let thresholds = match &config.risk.thresholds_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.clone(),
                    source: e,
                })?;
                Thresholds::from_json(&text)?
            }
            None => Thresholds::embedded_default(),
        };
        let profiles: Vec<String> = policy_profiles(&compiled);
        thresholds.require_profiles(profiles.iter().map(String::as_str))?;

        let store_error = |e: &dyn std::fmt::Display| ConfigError::Invalid {
            key: "store".into(),
            problem: e.to_string(),
        };
        let (store, demo_users) = match config.redis_config() {
            Some(redis) => {
                let redis = RedisStore::with_clock(redis, Arc::clone(&clock))
                    .map_err(|e| store_error(&e))?;
                // Seeded by a background task once Redis answers (see `spawn_background`).
                let demo = if seed_demo {
                    store::demo_users()
                } else {
                    Vec::new()
                };
                (AnyStore::Redis(redis), demo)
            }
            None => {
                let memory = MemoryStore::with_clock(
                    MemoryConfig {
                        idempotency_retention: config.server.idempotency_retention,
                        ..MemoryConfig::default()
                    },
                    Arc::clone(&clock),
                )
                .map_err(|e| store_error(&e))?;
                let demo = if seed_demo {
                    memory.seed_demo()
                } else {
                    Vec::new()
                };
                (AnyStore::Memory(memory), demo)
            }
        };

        let policy = policy::Policy::from_compiled(compiled, Arc::clone(&clock));
        let limits = ratelimit::RateLimits::new(&policy, config.admission.max_tracked_users);
        let admission = admission::Admission::new(&policy);
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = metrics::Metrics::register(&mut registry);
        let limit_metrics = ratelimit::GlobalLimitMetrics::register(&mut registry);
        let limits = limits.with_report_only(ratelimit::ReportOnly::register(&mut registry));
        let limits = match &store {
            AnyStore::Redis(redis) if config.redis.shared_global_limit => {
                limits.with_shared(ratelimit::SharedGlobalLimiter::new(
                    redis.clone(),
                    &policy,
                    config.redis.global_limit_instances,
                    config.redis.global_limit_timeout,
                    limit_metrics,
                ))
            }
            _ => limits,
        };
        let tls = match &config.server.tls {
            Some(t) => Some(Arc::new(
                tls::Tls::new(t, config.server.http == config::HttpVersions::Auto)
                    .map_err(|e| ConfigError::from(e.under("server.tls")))?,
            )),
            None => None,
        };
        let auth =
            Auth::with_operators(&config.api_keys, &config.admin_token, &config.admin.tokens);
        let reload = api::reload::Reloader::new(config.clone());
        let bureau = bureau::Bureau::new(&config.bureau, Arc::clone(&clock), &mut registry)
            .map_err(|e| ConfigError::from(e.under("bureau")))?;
        let tracing = trace::Exporter::start(&config.tracing, &mut registry)
            .map_err(|e| ConfigError::from(e.under("tracing")))?;

        // Registered with every store (a local document is never stale) so dashboards
        // find the series.
        let sync_metrics = store::ThresholdSyncMetrics::register(&mut registry);
        let (cache, threshold_sync) = match &store {
            // Empty until the refresher reads the version in force from Redis.
            AnyStore::Redis(_) => (ThresholdCache::empty(), Some((thresholds, sync_metrics))),
            _ => (ThresholdCache::new(thresholds), None),
        };

        // Admission options and overload actions ([admission], [server.overload]).
        admission.configure(config.admission.options());
        admission.observe_sojourn(metrics.admission_sojourn.clone());
        let overload = config.server.overload.enabled.then(|| {
            overload::Overload::new(
                config.server.overload,
                Some(admission.clone()),
                &mut registry,
            )
        });

        let thresholds = Arc::new(cache);
        metrics::StateCollector {
            admission: admission.clone(),
            policy: policy.clone(),
            thresholds: Arc::clone(&thresholds),
            limits: limits.clone(),
        }
        .register(&mut registry);
        logging::DroppedLines::register(&mut registry);
        let mut shadow = shadow::Shadow::register(&mut registry);
        if let AnyStore::Redis(redis) = &store {
            shadow.share_users(redis.clone());
        }
        let anomaly = anomaly::AnomalyModes::register(&mut registry);
        let trail = trail::Trail::new(
            config.console.trail_users,
            usize::try_from(config.console.trail_per_user).unwrap_or(usize::MAX),
        );
        let state = AppState {
            config,
            store,
            thresholds,
            policy,
            limits,
            admission,
            metrics,
            bureau: arc_swap::ArcSwapOption::from(bureau.map(Arc::new)),
            registry,
            auth: arc_swap::ArcSwap::from_pointee(auth),
            reload,
            tls,
            clock,
            appeal_due: jiff::SignedDuration::from_hours(24 * 15),
            shadow,
            anomaly,
            trail,
            tracing,
        };
        let app = App(Arc::new(state));
        Ok(Gateway {
            console: console::Console::new(app.clone()),
            app,
            threshold_sync,
            demo_credentials,
            demo_users,
            overload,
        })
    }

    /// The shared state (for tests and the embedded gateway).
    pub fn app(&self) -> &App {
        &self.app
    }

    /// Whether demo credentials are in use.
    pub fn uses_demo_credentials(&self) -> bool {
        self.demo_credentials
    }

    /// The overload state (when `server.overload.enabled`), e.g. for tests to drive it.
    pub fn overload(&self) -> Option<&overload::Overload> {
        self.overload.as_ref()
    }

    /// The demo users the store was seeded with.
    pub fn demo_users(&self) -> &[DemoUser] {
        &self.demo_users
    }

    /// The whole request path as a tower service (see [`api::GatewayService`]).
    pub fn service(&self) -> api::GatewayService {
        api::GatewayService::with_routes(self.app.clone(), self.console.router())
    }

    /// The operator console.
    pub fn console(&self) -> &console::Console {
        &self.console
    }

    /// Starts the background tasks: the peak-window scheduler, the idempotency purge and,
    /// on Redis, the health check, the thresholds refresher (and the demo users' seeding).
    pub fn spawn_background(&self) -> Vec<JoinHandle<()>> {
        let policy = policy::spawn_scheduler(self.app.policy.clone(), Duration::from_secs(1));
        let probe = self.overload.as_ref().map(overload::Overload::spawn_probe);
        let app = self.app.clone();
        let purge = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                match app.store.purge_expired(app.clock.now()).await {
                    Ok(n) if n > 0 => tracing::debug!(purged = n, "idempotency records expired"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(cause = %e, "idempotency purge failed"),
                }
            }
        });
        let mut tasks = vec![policy, purge];
        tasks.extend(probe);
        tasks.extend(self.console.spawn_sampler());
        if let Some(tls) = &self.app.tls {
            tasks.extend(tls::spawn_watch(Arc::clone(tls)));
        }
        if let AnyStore::Redis(redis) = &self.app.store {
            tasks.push(store::spawn_health_check(redis.clone()));
            if !self.demo_users.is_empty() {
                tasks.push(tokio::spawn(seed_redis(
                    redis.clone(),
                    self.demo_users.clone(),
                )));
            }
            if let Some((initial, metrics)) = &self.threshold_sync {
                let app = self.app.clone();
                let target = store::ThresholdTarget {
                    cache: Arc::clone(&self.app.thresholds),
                    policy: self.app.policy.clone(),
                    follow_candidate: Some(Arc::new(
                        move |stored: Option<&store::StagedCandidate>| {
                            app.follow_candidate(stored).map(drop)
                        },
                    )),
                };
                tasks.extend(store::spawn_threshold_sync(
                    target,
                    redis.clone(),
                    initial.clone(),
                    metrics.clone(),
                ));
            }
        }
        tasks
    }

    /// Serves on `listener` until `shutdown` resolves (graceful, bounded).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) {
        let tasks = self.spawn_background();
        let service = self.service();
        let overload = self.overload.clone();
        server::serve_with(
            listener,
            service,
            &self.app.config.server,
            overload,
            self.app.tls.clone(),
            shutdown,
        )
        .await;
        for t in tasks {
            t.abort();
        }
    }
}

/// Stores the demo users in Redis once it answers (demo credentials only).
async fn seed_redis(store: RedisStore, users: Vec<DemoUser>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    'retry: loop {
        tick.tick().await;
        for u in &users {
            if let Err(e) = store.upsert_user(&u.id, u.state.clone()).await {
                tracing::warn!(cause = %e, "seeding the demo users in Redis; retrying");
                continue 'retry;
            }
        }
        tracing::info!(users = users.len(), "demo users seeded in Redis");
        return;
    }
}

fn policy_profiles(compiled: &policy::CompiledPolicy) -> Vec<String> {
    let mut names: Vec<String> = std::iter::once(policy::NORMAL)
        .chain(compiled.window_names())
        .filter_map(|w| compiled.limits_of(w).map(|l| l.profile.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}
