//! One primary behind Redis Sentinel: connections go to the primary the Sentinels name, and
//! move to the promoted replica after a failover.
//!
//! # How the primary is found
//! Each new pooled connection asks the Sentinels ([`RedisConfig::sentinels`], in order, up
//! to three at once; redis-rs' `sentinel` feature) for the address of
//! [`RedisConfig::sentinel_master`], and connects only to a node that answers `ROLE` as a
//! primary. The store URL gives the database and credentials, not the host.
//!
//! # After a failover
//! A connection to the old primary does not move by itself; it is given up on in one of
//! three ways, whichever comes first:
//! - the old primary died (`kill -9`, a crash): the connection fails at the I/O level, and
//!   [`RedisStore::with_conn`] drops it with every idle connection opened before it;
//! - the old primary came back and the Sentinels turned it into a replica: a write answers
//!   `READONLY`, which drops every connection the same way ([`demoted`]);
//! - no write came meanwhile: the health check ([`RedisStore::primary_serves`], every
//!   `health_check_interval_ms`) asks `ROLE` and drops them when the node is not a primary.
//!
//! The next connection then goes through the Sentinels again. Until they have promoted a
//! replica (`down-after-milliseconds` plus the election) the old address is all they know,
//! and requests answer `503 DEPENDENCY_UNAVAILABLE`, replayable with their keys.
//!
//! # What a failover may lose
//! Replication is asynchronous, so an approval is answered only once a replica holds it
//! (`WAIT`, [`super::durable`]; `replica_acks` defaults to 1 here as on a cluster). The
//! promoted replica has no replica of its own until the old primary rejoins: until then
//! approvals answer `503` (committed on the primary, replayable with the key), never an
//! approval the next failover could lose.

use super::{RedisConfig, RedisConfigError, RedisStore, StoreError};
use crate::store::Result;
use deadpool_redis::redis::{self, Value};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};

/// The Sentinels of one primary, and how to connect to the node they name.
pub(super) struct Sentinels {
    /// `SentinelClient` asks through `&mut self` (it keeps a connection per Sentinel).
    client: tokio::sync::Mutex<SentinelClient>,
    /// Timeouts of the connections to the primary.
    connection: redis::AsyncConnectionConfig,
}

impl Sentinels {
    /// From the validated `config` (`sentinels` set).
    pub(super) fn new(
        config: &RedisConfig,
        connection: redis::AsyncConnectionConfig,
    ) -> Result<Sentinels, RedisConfigError> {
        let bad = |field| move |e: redis::RedisError| RedisConfigError::new(field, e.to_string());
        let url = redis::Client::open(config.url.as_str()).map_err(bad("url"))?;
        let node = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(url.get_connection_info().redis_settings().clone());
        let master = config
            .sentinel_master
            .clone()
            .ok_or_else(|| RedisConfigError::new("sentinel_master", "needed with sentinels"))?;
        let client = SentinelClient::build(
            config.sentinels.clone(),
            master,
            Some(node),
            SentinelServerType::Master,
        )
        .map_err(bad("sentinels"))?;
        Ok(Sentinels {
            client: tokio::sync::Mutex::new(client),
            connection,
        })
    }

    /// A new connection to the primary the Sentinels name now.
    pub(super) async fn connect(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let client = self.primary().await?;
        client
            .get_multiplexed_async_connection_with_config(&self.connection)
            .await
    }

    /// A client for the primary the Sentinels name now (checked with `ROLE`).
    pub(super) async fn primary(&self) -> redis::RedisResult<redis::Client> {
        self.client.lock().await.async_get_client().await
    }
}

/// Whether `e` says the node answering is no longer the primary: the Sentinels made it a
/// replica (`READONLY`). Every connection to it is then as useless as a dead one.
pub(super) fn demoted(e: &redis::RedisError) -> bool {
    e.code() == Some("READONLY")
}

impl RedisStore {
    /// Whether the primary is found through Sentinels.
    pub fn is_sentinel(&self) -> bool {
        self.inner.sentinels.is_some()
    }

    /// Readiness behind Sentinels: the node the pool talks to answers `ROLE` as the primary.
    /// One that does not (a demoted primary) has its connections dropped, so the next ones
    /// go through the Sentinels to the promoted replica.
    pub(super) async fn primary_serves(&self) -> Result<()> {
        let role: Vec<Value> = self
            .with_conn(|mut c| async move { redis::cmd("ROLE").query_async(&mut c).await })
            .await?;
        match role.first().and_then(super::text).as_deref() {
            Some("master") => Ok(()),
            other => {
                self.forget_connections();
                Err(StoreError::Unavailable(format!(
                    "redis behind Sentinels: the node answers ROLE {other:?}, not master; \
                     reconnecting through the Sentinels"
                )))
            }
        }
    }

    /// A client for threshold notices: behind Sentinels the primary they name now (`None`
    /// while none can be found), else seed node `i` (cycling).
    pub(super) async fn notice_client(&self, i: usize) -> Option<redis::Client> {
        match &self.inner.sentinels {
            Some(s) => match s.primary().await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::debug!(cause = %e, "threshold notices: no primary from the Sentinels");
                    None
                }
            },
            None => {
                let clients = self.clients();
                clients.get(i % clients.len().max(1)).cloned()
            }
        }
    }
}
