//! `[redis]`: where the Redis store is, its pool and timeouts, what it keeps how long, and how
//! the global rate limits share it.

use super::super::memory::{MIN_IDEMPOTENCY_RETENTION, check_retention};
use crate::setting;
use deadpool_redis::redis;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[redis]`: the Redis store's settings (with `store` a `redis://` URL), and how the global
/// rate limits share it. Durations are written in the unit their key names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port/db` (or `rediss://`); on a cluster, one of the seed nodes. Not a
    /// key of `[redis]`: the configuration's `store`.
    #[serde(skip)]
    pub url: String,
    /// Redis Cluster: `url` and [`Self::cluster_nodes`] are seed nodes of one cluster, and
    /// each command goes to the node that owns its slot (see the module docs).
    pub cluster: bool,
    /// More seed nodes of the cluster besides `url` (`redis://host:port`), so the store
    /// starts while some of them are down. Only with `cluster`.
    pub cluster_nodes: Vec<String>,
    /// Redis Sentinel: the Sentinels (`redis://host:port`) that watch the primary named
    /// [`Self::sentinel_master`]. Each connection goes to the primary they name (checked with
    /// `ROLE`), so after a failover new connections reach the promoted replica; `url` then
    /// gives only the database and credentials, its host is not used (see `sentinel.rs`).
    pub sentinels: Vec<String>,
    /// The name the Sentinels monitor the primary under (`sentinel monitor <name> …`).
    /// Only with [`Self::sentinels`], and needed with them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinel_master: Option<String>,
    /// Most connections in the pool; each is shared by the operations in flight, whose
    /// commands it pipelines.
    pub pool_size: usize,
    /// Longest wait for a pooled connection before answering `Unavailable`
    /// (`pool_wait_timeout_ms`).
    #[serde(rename = "pool_wait_timeout_ms", with = "setting::millis")]
    pub pool_wait_timeout: Duration,
    /// Longest time to open a connection (`connect_timeout_ms`).
    #[serde(rename = "connect_timeout_ms", with = "setting::millis")]
    pub connect_timeout: Duration,
    /// Longest time one operation (one round trip) may take before answering `Timeout`
    /// (`command_timeout_ms`).
    #[serde(rename = "command_timeout_ms", with = "setting::millis")]
    pub command_timeout: Duration,
    /// Prefix of every key (no `{` or `}`), so several deployments or tests share a server.
    pub key_prefix: String,
    /// How long an idempotency record is kept after its commit: at least 24 h. Not a key of
    /// `[redis]`: the configuration's `server.idempotency_retention_hours`.
    #[serde(skip)]
    pub idempotency_retention: Duration,
    /// How long a decision is kept (for `GET` and appeals): at least `idempotency_retention`
    /// (`decision_retention_days`). An appealed decision is kept with its appeal.
    #[serde(rename = "decision_retention_days", with = "setting::days")]
    pub decision_retention: Duration,
    /// How often each instance reads the thresholds pointer besides pub/sub notices
    /// (`threshold_poll_ms`).
    #[serde(rename = "threshold_poll_ms", with = "setting::millis")]
    pub threshold_poll: Duration,
    /// How often [`super::spawn_health_check`] pings Redis through the pool: connections that
    /// died with a Redis restart are gone within one interval of it, and outages are logged
    /// once (`health_check_interval_ms`).
    #[serde(rename = "health_check_interval_ms", with = "setting::millis")]
    pub health_check_interval: Duration,
    /// The global per-route rate limits are shared by every instance (one GCRA bucket per
    /// route class in this Redis) instead of applying to each instance alone.
    pub shared_global_limit: bool,
    /// Longest wait for the shared limit's answer (`global_limit_timeout_ms`, 1 to 1000);
    /// later, the request is decided by the local fallback.
    #[serde(rename = "global_limit_timeout_ms", with = "setting::millis")]
    pub global_limit_timeout: Duration,
    /// Instances sharing the global limit: the local fallback admits `1 / instances` of it.
    pub global_limit_instances: u32,
    /// Users whose last seen state (with its version) this instance keeps, so that their
    /// drawdowns need no load: one round trip each (see the store's module docs); 0 keeps
    /// none, and every drawdown loads first.
    pub user_cache: usize,
    /// With a `rediss://` store: CA certificates (PEM) the server's certificate must chain
    /// to, instead of the system's trust store (`tls_ca_file`; relative to the working
    /// directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Replicas that must hold a commit reserving credit before the approval is answered
    /// (Redis `WAIT`, see `durable.rs`); unset: 1 on a cluster or behind Sentinels, 0 on
    /// one server. More than 0 only with `cluster` or `sentinels`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_acks: Option<u32>,
    /// Longest wait for [`Self::replica_acks`] (`replica_ack_timeout_ms`, 1 to 5000); then
    /// the approval is answered `503 DEPENDENCY_UNAVAILABLE`, replayable with its key.
    #[serde(rename = "replica_ack_timeout_ms", with = "setting::millis")]
    pub replica_ack_timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            cluster: false,
            cluster_nodes: Vec::new(),
            sentinels: Vec::new(),
            sentinel_master: None,
            pool_size: 32,
            pool_wait_timeout: Duration::from_millis(250),
            connect_timeout: Duration::from_millis(500),
            command_timeout: Duration::from_millis(500),
            key_prefix: "lg".into(),
            idempotency_retention: MIN_IDEMPOTENCY_RETENTION,
            decision_retention: Duration::from_secs(30 * 24 * 3600),
            threshold_poll: Duration::from_secs(2),
            health_check_interval: Duration::from_secs(1),
            shared_global_limit: false,
            global_limit_timeout: Duration::from_millis(5),
            global_limit_instances: 1,
            user_cache: 100_000,
            tls_ca_file: None,
            replica_acks: None,
            replica_ack_timeout: Duration::from_millis(100),
        }
    }
}

/// A [`RedisConfig`] field out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store.redis.{field}: {problem}")]
pub struct RedisConfigError {
    field: &'static str,
    problem: String,
}

impl RedisConfigError {
    pub(super) fn new(field: &'static str, problem: impl Into<String>) -> Self {
        RedisConfigError {
            field,
            problem: problem.into(),
        }
    }

    /// The key at fault, within `[redis]` (`url` is the configuration's `store`,
    /// `idempotency_retention` its `server.idempotency_retention_hours`).
    pub const fn field(&self) -> &'static str {
        self.field
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

impl RedisConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), RedisConfigError> {
        let err = |field, problem: &str| Err(RedisConfigError::new(field, problem));
        if let Err(e) = redis::Client::open(self.url.as_str()) {
            return Err(RedisConfigError::new(
                "url",
                format!("not a Redis URL: {e}"),
            ));
        }
        if self.tls_ca_file.is_some() && !self.seeds().iter().all(|u| u.starts_with("rediss://")) {
            return err(
                "tls_ca_file",
                "only with TLS: the store and every seed node rediss://",
            );
        }
        if !self.cluster && !self.cluster_nodes.is_empty() {
            return err("cluster_nodes", "only with cluster = true");
        }
        if self.cluster_nodes.len() > 64 {
            return err("cluster_nodes", "at most 64 seed nodes");
        }
        for node in &self.cluster_nodes {
            if let Err(e) = redis::Client::open(node.as_str()) {
                return Err(RedisConfigError::new(
                    "cluster_nodes",
                    format!("{node:?} is not a Redis URL: {e}"),
                ));
            }
        }
        if self.cluster
            && self
                .seeds()
                .iter()
                .any(|u| !matches!(u.split('/').nth(3), None | Some("" | "0")))
        {
            return err("url", "Redis Cluster has only database 0");
        }
        if self.pool_size == 0 || self.pool_size > 1024 {
            return err("pool_size", "must be from 1 to 1024");
        }
        let bounded = |d: Duration| !d.is_zero() && d <= Duration::from_secs(60);
        if !bounded(self.pool_wait_timeout) {
            return err("pool_wait_timeout_ms", "must be from 1 ms to 60 s");
        }
        if !bounded(self.connect_timeout) {
            return err("connect_timeout_ms", "must be from 1 ms to 60 s");
        }
        if !bounded(self.command_timeout) {
            return err("command_timeout_ms", "must be from 1 ms to 60 s");
        }
        if self.threshold_poll < Duration::from_millis(10)
            || self.threshold_poll > Duration::from_secs(3600)
        {
            return err("threshold_poll_ms", "must be from 10 ms to 1 hour");
        }
        if self.health_check_interval < Duration::from_millis(10)
            || self.health_check_interval > Duration::from_secs(60)
        {
            return err("health_check_interval_ms", "must be from 10 ms to 60 s");
        }
        self.validate_sentinels()?;
        if self.replica_acks.is_some_and(|n| n > 0) && !self.cluster && !self.is_sentinel() {
            return err(
                "replica_acks",
                "more than 0 only with cluster = true or sentinels",
            );
        }
        if self.replica_acks.is_some_and(|n| n > 5) {
            return err("replica_acks", "must be from 0 to 5");
        }
        if self.replica_ack_timeout.is_zero() || self.replica_ack_timeout > Duration::from_secs(5) {
            return err("replica_ack_timeout_ms", "must be from 1 ms to 5 s");
        }
        if self.user_cache > 10_000_000 {
            return err("user_cache", "must be at most 10,000,000 users");
        }
        if self.key_prefix.is_empty()
            || self.key_prefix.len() > 64
            || self.key_prefix.contains(['{', '}'])
        {
            return err(
                "key_prefix",
                "must be 1 to 64 characters without `{` or `}`",
            );
        }
        check_retention(
            (self.idempotency_retention, "idempotency_retention"),
            (self.decision_retention, "decision_retention_days"),
        )
        .or_else(|(field, problem)| err(field, problem))?;
        self.validate_shared_limit()
    }

    /// Checks the shared global limit's settings (read whatever the store, as the limit
    /// falls back to each instance's share of it).
    pub fn validate_shared_limit(&self) -> Result<(), RedisConfigError> {
        if self.global_limit_timeout.is_zero() || self.global_limit_timeout > Duration::from_secs(1)
        {
            return Err(RedisConfigError::new(
                "global_limit_timeout_ms",
                "must be from 1 to 1000",
            ));
        }
        if !(1..=1024).contains(&self.global_limit_instances) {
            return Err(RedisConfigError::new(
                "global_limit_instances",
                "must be from 1 to 1024",
            ));
        }
        Ok(())
    }

    /// Whether the primary is found through Sentinels ([`Self::sentinels`]).
    pub fn is_sentinel(&self) -> bool {
        !self.sentinels.is_empty()
    }

    /// Checks `sentinels` and `sentinel_master` together: both or neither, not with a
    /// cluster, plain `redis://` URLs.
    fn validate_sentinels(&self) -> Result<(), RedisConfigError> {
        let err = |field, problem: &str| Err(RedisConfigError::new(field, problem));
        match (self.sentinels.is_empty(), &self.sentinel_master) {
            (true, None) => return Ok(()),
            (true, Some(_)) => {
                return err("sentinel_master", "only with sentinels (their addresses)");
            }
            (false, None) => {
                return err(
                    "sentinel_master",
                    "needed with sentinels: the name they monitor the primary under",
                );
            }
            (false, Some(name)) => {
                let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
                if name.is_empty() || name.len() > 64 || !name.chars().all(valid) {
                    return err(
                        "sentinel_master",
                        "must be 1 to 64 characters of A-Z a-z 0-9 - _ .",
                    );
                }
            }
        }
        if self.cluster {
            return err(
                "sentinels",
                "not with cluster = true (a cluster fails over by itself)",
            );
        }
        if self.sentinels.len() > 16 {
            return err("sentinels", "at most 16 Sentinels");
        }
        for s in &self.sentinels {
            if !s.starts_with("redis://") {
                return Err(RedisConfigError::new(
                    "sentinels",
                    format!(
                        "{s:?}: expected redis://host:port (TLS to Sentinels is not supported)"
                    ),
                ));
            }
            if let Err(e) = redis::Client::open(s.as_str()) {
                return Err(RedisConfigError::new(
                    "sentinels",
                    format!("{s:?} is not a Redis URL: {e}"),
                ));
            }
        }
        if !self.url.starts_with("redis://") {
            return err(
                "url",
                "with sentinels, a redis:// URL (TLS behind Sentinels is not supported)",
            );
        }
        Ok(())
    }

    /// The certificates of `tls_ca_file`, read now (`None` without it).
    pub(super) fn tls_certificates(
        &self,
    ) -> Result<Option<redis::TlsCertificates>, RedisConfigError> {
        let Some(path) = &self.tls_ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read(path).map_err(|e| {
            RedisConfigError::new("tls_ca_file", format!("{}: {e}", path.display()))
        })?;
        Ok(Some(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        }))
    }

    /// The nodes the store connects to first: `url`, then `cluster_nodes`.
    pub fn seeds(&self) -> Vec<&str> {
        std::iter::once(self.url.as_str())
            .chain(self.cluster_nodes.iter().map(String::as_str))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_field() {
        let d = RedisConfig::default();
        let bad = |c: RedisConfig| c.validate().unwrap_err().field();
        assert_eq!(
            bad(RedisConfig {
                url: "http://x".into(),
                ..d.clone()
            }),
            "url"
        );
        assert_eq!(
            bad(RedisConfig {
                pool_size: 0,
                ..d.clone()
            }),
            "pool_size"
        );
        assert_eq!(
            bad(RedisConfig {
                command_timeout: Duration::ZERO,
                ..d.clone()
            }),
            "command_timeout_ms"
        );
        assert_eq!(
            bad(RedisConfig {
                key_prefix: "a{b}".into(),
                ..d.clone()
            }),
            "key_prefix"
        );
        assert_eq!(
            bad(RedisConfig {
                idempotency_retention: Duration::from_secs(3600),
                ..d.clone()
            }),
            "idempotency_retention"
        );
        assert_eq!(
            bad(RedisConfig {
                replica_acks: Some(1),
                ..d.clone()
            }),
            "replica_acks"
        );
        assert_eq!(
            bad(RedisConfig {
                replica_ack_timeout: Duration::ZERO,
                ..d.clone()
            }),
            "replica_ack_timeout_ms"
        );
        assert!(d.validate().is_ok());
    }

    #[test]
    fn sentinel_settings_go_together() {
        let d = RedisConfig::default();
        let sentinel = RedisConfig {
            sentinels: vec!["redis://127.0.0.1:26379".into()],
            sentinel_master: Some("lg-primary".into()),
            ..d.clone()
        };
        assert!(sentinel.validate().is_ok());
        assert!(sentinel.is_sentinel());
        let bad = |c: RedisConfig| {
            let e = c.validate().unwrap_err();
            (e.field(), e.problem().to_owned())
        };
        assert_eq!(
            bad(RedisConfig {
                sentinel_master: None,
                ..sentinel.clone()
            })
            .0,
            "sentinel_master"
        );
        assert_eq!(
            bad(RedisConfig {
                sentinels: Vec::new(),
                ..sentinel.clone()
            })
            .0,
            "sentinel_master"
        );
        assert_eq!(
            bad(RedisConfig {
                sentinel_master: Some("a b".into()),
                ..sentinel.clone()
            })
            .0,
            "sentinel_master"
        );
        let (field, problem) = bad(RedisConfig {
            cluster: true,
            ..sentinel.clone()
        });
        assert_eq!(field, "sentinels");
        assert!(problem.contains("cluster"), "{problem}");
        assert_eq!(
            bad(RedisConfig {
                sentinels: vec!["rediss://127.0.0.1:26379".into()],
                ..sentinel.clone()
            })
            .0,
            "sentinels"
        );
        assert_eq!(
            bad(RedisConfig {
                sentinels: vec!["redis://[::1".into()],
                ..sentinel.clone()
            })
            .0,
            "sentinels"
        );
        assert_eq!(
            bad(RedisConfig {
                url: "rediss://127.0.0.1:6380".into(),
                ..sentinel.clone()
            })
            .0,
            "url"
        );
        // Replica acknowledgements are what Sentinel failover needs too.
        assert!(
            RedisConfig {
                replica_acks: Some(1),
                ..sentinel
            }
            .validate()
            .is_ok()
        );
    }
}
