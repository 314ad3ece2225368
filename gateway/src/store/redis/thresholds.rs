//! Thresholds on Redis: versioned documents, a pointer to the current one, a notice on
//! publish, and the background task that keeps each instance's [`ThresholdCache`] current
//! (and its forced peak window, see [`super::forced`], and the staged shadow candidate, see
//! [`crate::store::candidate`]).
//!
//! # Keys
//! `P:{th}:doc:<version>` (the JSON document, kept), `P:{th}:current` (the version in
//! force), channel `P:thresholds` (the version, published with each new pointer). Document
//! and pointer share one hash tag, so a publish is one atomic script on Redis Cluster too.
//!
//! # The refresher
//! [`spawn_threshold_sync`] runs two tasks: a subscriber that forwards notices (and
//! reconnects when its connection drops) and a refresher that reads the pointer on each
//! notice and on a periodic poll (the poll covers lost notices). It validates a new document
//! (it parses, its version is the pointer's, it has every profile the policy uses) before
//! swapping it in; versions only move forward ([`ThresholdCache::publish`]); while Redis is
//! unreachable, the last good version stays in force. The first instance to start on an empty
//! Redis stores its initial document (the configured file or the built-in one); until an
//! instance has a version, `/readyz` answers 503.

use super::{RedisStore, bad, text};
use crate::policy::Policy;
use crate::store::{Result, StoreError};
use deadpool_redis::redis::{self, Value};
use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use risk_core::{ThresholdCache, Thresholds};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// KEYS: pointer. ARGV: version, json, document key prefix, channel, `nx` or `put`.
pub(super) const PUBLISH: &str = r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[5] == 'nx' and cur > 0 then return {'exists', cur} end
if tonumber(ARGV[1]) <= cur then return {'stale', cur} end
redis.call('SET', ARGV[3] .. ARGV[1], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return {'published', cur}
";

/// KEYS: pointer. ARGV: document key prefix. Returns nil or `{version, json|nil}`.
pub(super) const CURRENT: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return false end
return {v, redis.call('GET', ARGV[1] .. v)}
";

/// What [`RedisStore::publish_thresholds`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdWrite {
    /// Stored, pointed to and announced.
    Published,
    /// Refused: the version in force is this one, not lower than the one offered.
    Stale {
        /// The version in force.
        current: u64,
    },
}

impl RedisStore {
    pub(super) fn threshold_keys(&self) -> (String, String, String) {
        let p = &self.inner.config.key_prefix;
        (
            format!("{p}:{{th}}:current"),
            format!("{p}:{{th}}:doc:"),
            format!("{p}:thresholds"),
        )
    }

    /// Stores `th` as a new version, points to it and publishes the notice, if its version
    /// is greater than the one in force (one atomic script).
    pub async fn publish_thresholds(&self, th: &Thresholds) -> Result<ThresholdWrite> {
        self.write_thresholds(th, "put").await
    }

    /// Stores `th` only if Redis holds no thresholds yet (the first instance's bootstrap).
    async fn bootstrap_thresholds(&self, th: &Thresholds) -> Result<()> {
        self.write_thresholds(th, "nx").await.map(drop)
    }

    async fn write_thresholds(
        &self,
        th: &Thresholds,
        mode: &'static str,
    ) -> Result<ThresholdWrite> {
        let json = serde_json::to_string(th.document())
            .map_err(|e| StoreError::Invalid(format!("thresholds do not serialise: {e}")))?;
        let (pointer, docs, channel) = self.threshold_keys();
        let mut inv = self.inner.scripts.thresholds_publish.prepare_invoke();
        inv.key(pointer)
            .arg(th.version())
            .arg(json)
            .arg(docs)
            .arg(channel)
            .arg(mode);
        let reply: Vec<Value> = self
            .with_conn(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let current = reply
            .get(1)
            .and_then(text)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(bad)?;
        match reply.first().and_then(text).as_deref() {
            Some("published") => Ok(ThresholdWrite::Published),
            Some("stale" | "exists") => Ok(ThresholdWrite::Stale { current }),
            _ => Err(bad()),
        }
    }

    /// The version in force in Redis and its document, if any.
    pub async fn current_thresholds(&self) -> Result<Option<(u64, Option<String>)>> {
        let (pointer, docs, _) = self.threshold_keys();
        let mut inv = self.inner.scripts.thresholds_current.prepare_invoke();
        inv.key(pointer).arg(docs);
        let reply: Value = self
            .with_conn(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let Value::Array(items) = reply else {
            return Ok(None);
        };
        let version = items
            .first()
            .and_then(text)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| StoreError::Corrupt("thresholds pointer is not a version".into()))?;
        Ok(Some((version, items.get(1).and_then(text))))
    }
}

/// The refresher's metrics (`gateway_threshold_*`).
#[derive(Debug, Clone, Default)]
pub struct ThresholdSyncMetrics {
    /// Seconds since this instance last confirmed it holds the version in force in Redis.
    pub staleness_seconds: Gauge<f64, AtomicU64>,
    /// Refreshes that failed (Redis unreachable, or a document that did not validate).
    pub refresh_errors: Counter,
    /// New versions swapped in from Redis.
    pub updates_applied: Counter,
}

impl ThresholdSyncMetrics {
    /// Registers the metrics under the `gateway` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let m = ThresholdSyncMetrics::default();
        let r = registry.sub_registry_with_prefix("gateway");
        r.register(
            "threshold_staleness_seconds",
            "Seconds since the thresholds in force were last confirmed current in Redis",
            m.staleness_seconds.clone(),
        );
        r.register(
            "threshold_refresh_errors",
            "Threshold refreshes that failed (Redis unreachable or invalid document)",
            m.refresh_errors.clone(),
        );
        r.register(
            "threshold_updates_applied",
            "Threshold versions swapped in from Redis",
            m.updates_applied.clone(),
        );
        m
    }
}

/// Takes the staged shadow candidate the store holds (`None`: none staged), on each refresh
/// ([`crate::store::candidate`]); answers why it could not.
pub type FollowCandidate =
    Arc<dyn Fn(Option<&crate::store::StagedCandidate>) -> Result<(), String> + Send + Sync>;

/// What the refresher keeps current.
#[derive(Clone)]
pub struct ThresholdTarget {
    /// The cache the request path reads.
    pub cache: Arc<ThresholdCache>,
    /// The policy, whose profiles a new version must cover.
    pub policy: Policy,
    /// The shadow candidate's follower, if any.
    pub follow_candidate: Option<FollowCandidate>,
}

impl std::fmt::Debug for ThresholdTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThresholdTarget")
            .field("version", &self.cache.version())
            .field("follows_candidate", &self.follow_candidate.is_some())
            .finish_non_exhaustive()
    }
}

/// Starts the subscriber and the refresher; `bootstrap` is stored when Redis holds no
/// thresholds yet.
pub fn spawn_threshold_sync(
    target: ThresholdTarget,
    redis: RedisStore,
    bootstrap: Thresholds,
    metrics: ThresholdSyncMetrics,
) -> Vec<JoinHandle<()>> {
    let (notify, notices) = mpsc::channel(1);
    let subscriber = tokio::spawn(subscribe(redis.clone(), notify));
    let refresher = tokio::spawn(refresh(target, redis, bootstrap, metrics, notices));
    vec![subscriber, refresher]
}

async fn subscribe(redis: RedisStore, notify: mpsc::Sender<()>) {
    let (_, _, channel) = redis.threshold_keys();
    let timeout = redis.config().connect_timeout;
    // On Redis Cluster a PUBLISH reaches the subscribers of every node (the cluster bus
    // forwards it), so one connection to any node hears every notice; when that node goes
    // away the next attempt tries the next seed node. Behind Sentinels each attempt goes to
    // the primary they name then. A notice lost meanwhile is covered by the poll.
    for attempt in 0usize.. {
        let Some(client) = redis.notice_client(attempt).await else {
            if notify.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let connected = tokio::time::timeout(timeout, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        match connected {
            Ok(Ok(pubsub)) => {
                tracing::debug!("threshold notices subscribed");
                // A notice after (re)subscribing: anything published meanwhile is read now.
                let _ = notify.try_send(());
                let mut messages = pubsub.into_on_message();
                while messages.next().await.is_some() {
                    // Full means a refresh is already due: one is enough.
                    let _ = notify.try_send(());
                }
                tracing::debug!("threshold notices connection closed");
            }
            Ok(Err(e)) => tracing::debug!(cause = %e, "threshold notices: cannot subscribe"),
            Err(_) => tracing::debug!("threshold notices: subscribe timed out"),
        }
        if notify.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn refresh(
    target: ThresholdTarget,
    redis: RedisStore,
    bootstrap: Thresholds,
    metrics: ThresholdSyncMetrics,
    mut notices: mpsc::Receiver<()>,
) {
    let mut tick = tokio::time::interval(redis.config().threshold_poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut confirmed: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(()) = notices.recv() => {}
        }
        match sync_once(&target, &redis, &bootstrap).await {
            Ok(applied) => {
                confirmed = Some(Instant::now());
                if applied {
                    metrics.updates_applied.inc();
                }
            }
            Err(e) => {
                metrics.refresh_errors.inc();
                tracing::warn!(cause = %e, version = target.cache.version(),
                    "thresholds refresh failed; keeping the version in force");
            }
        }
        // The fleet's forced window rides the same notice and poll ([`super::forced`]).
        if let Err(e) = super::forced::follow_forced_window(&redis, &target.policy).await {
            tracing::warn!(cause = %e, "forced window refresh failed; keeping the policy in force");
        }
        // And the fleet's staged shadow candidate.
        if let Some(follow) = &target.follow_candidate {
            match redis.staged_candidate().await {
                Ok(stored) => {
                    if let Err(e) = follow(stored.as_ref()) {
                        tracing::warn!(cause = %e, "cannot take the fleet's shadow candidate; none staged here");
                    }
                }
                Err(e) => {
                    tracing::warn!(cause = %e, "shadow candidate refresh failed; keeping the one held");
                }
            }
        }
        let since = confirmed.unwrap_or(started);
        metrics.staleness_seconds.set(since.elapsed().as_secs_f64());
    }
}

/// One refresh: answers whether a new version was swapped in.
async fn sync_once(
    target: &ThresholdTarget,
    redis: &RedisStore,
    bootstrap: &Thresholds,
) -> Result<bool> {
    let (version, json) = match redis.current_thresholds().await? {
        Some(found) => found,
        None => {
            redis.bootstrap_thresholds(bootstrap).await?;
            match redis.current_thresholds().await? {
                Some(found) => found,
                None => {
                    return Err(StoreError::Corrupt(
                        "thresholds vanished after bootstrap".into(),
                    ));
                }
            }
        }
    };
    if version <= target.cache.version() {
        return Ok(false);
    }
    let json = json.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "thresholds pointer names missing version {version}"
        ))
    })?;
    let th = validate(&json, version, &target.policy)?;
    apply(th, target)
}

fn validate(json: &str, version: u64, policy: &Policy) -> Result<Thresholds> {
    let th = Thresholds::from_json(json)
        .map_err(|e| StoreError::Corrupt(format!("thresholds version {version}: {e}")))?;
    if th.version() != version {
        return Err(StoreError::Corrupt(format!(
            "thresholds pointer says {version}, its document says {}",
            th.version()
        )));
    }
    th.require_profiles(policy.compiled().profiles())
        .map_err(|e| StoreError::Corrupt(format!("thresholds version {version}: {e}")))?;
    Ok(th)
}

fn apply(th: Thresholds, target: &ThresholdTarget) -> Result<bool> {
    match target.cache.publish(th) {
        Ok(published) => {
            tracing::info!(
                version = published.version(),
                "thresholds updated from Redis"
            );
            Ok(true)
        }
        // Someone (a PUT on this instance) got there first: nothing to do.
        Err(_) => Ok(false),
    }
}
