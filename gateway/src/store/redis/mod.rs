//! The production store on Redis (deadpool-redis): the memory store's semantics, one round
//! trip per operation, atomic Lua scripts, keys ready for Redis Cluster.
//!
//! # Key layout
//! Every key of a user carries the user's slot ([`user_slot`], 1,024 slots) as its hash
//! tag, so everything one commit touches lives in one Redis Cluster slot:
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `P:{sNNNN}:u:<user>` | hash | the user's state, one field per [`UserState`] field (`drawdowns_24h`: the upstream count, until `up_until`), its version `v` (bumped by every write), and `a0`, `ax` describing its approvals (see [`scripts::COMMIT`]) |
//! | `P:{sNNNN}:u-ap:<user>` | zset | the user's approvals of the last 24 hours: the version each made, by unix second; expires a day after the last |
//! | `P:{sNNNN}:k:<digest>` | string | an idempotency record: `<expiry ms> <fingerprint> <decision id>` (a hash of the three before); TTL = retention |
//! | `P:{sNNNN}:k-due` | list | the slot's idempotency records in commit order, `<expiry ms> <key>` (for [`Store::purge_expired`]; `k-exp`, a zset by expiry, before) |
//! | `P:{sNNNN}:d:<decision_id>` | string | a decision: JSON, available, appealable, user, appeal, caller, one a line (a hash of them before); TTL = decision retention, none once appealed |
//! | `P:{sNNNN}:audit` | stream | one event per committed decision, its values packed in one field (below); never trimmed by the gateway |
//! | `P:{sNNNN}:repl` | string | a marker written before an approval is replayed, so that `WAIT` covers it ([`durable`]); expires in a minute |
//! | `P:{th}:shadow` | hash | the staged shadow candidate every instance evaluates: `id`, `rec` ([`candidate`]) |
//! | `P:{th}:force` | string | the peak window an operator forced for every instance (or `normal`; none: the calendar) ([`forced`]) |
//! | `P:{admin}:audit` | stream | one entry per operator change ([`audit`]); never trimmed by the gateway |
//! | `P:{sNNNN}:a:<appeal_id>` | string | an appeal (JSON); kept |
//! | `P:{sNNNN}:a-by:<appeal_id>` | string | the caller that filed the appeal (the decision's); kept |
//! | `P:{sNNNN}:a-idx:<status>` | zset | the slot's appeal ids by status (and `all`), lexical = creation order |
//!
//! `P` is [`RedisConfig::key_prefix`]; `<digest>` is BLAKE3 of (caller, user, key), so any
//! caller or key text makes a safe key name. Decision and appeal ids name their slot
//! ([`super::ids`]), so a lookup by id finds its keys with no second index. A decision and
//! its appeal belong to the caller that committed the decision: a caller reads, and
//! appeals, only its own (a decision or appeal stored before callers were recorded has no
//! caller, and is no caller's).
//!
//! # The audit streams
//! A committed decision (approval, rejection or review; never a replay) appends one event to
//! its slot's stream in the same script that reserves the credit: `decision_id`, `user`,
//! `caller`, `idempotency_key`, `outcome`, `amount_fen`, `threshold_version`, `policy`,
//! `evaluated_at`, then `used_fen` and `available_fen` after the commit. The entry holds
//! them packed in one field, `p`: the eleven values in that order as consecutive
//! netstrings (`<byte length>:<bytes>,`, e.g. `3:u-1,`); entries written before hold one
//! field per value, under those names ([`events`] reads both). A downstream consumer reads the 1,024 streams `P:{s0000}:audit` … `P:{s1023}:audit` (one
//! `XREADGROUP` consumer group per stream, or [`RedisStore::read_audit`] with the last id
//! seen); on Redis Cluster each stream lives on the node that owns its slot. The gateway
//! never trims them: retention is the consumer's call (`XTRIM MINID` after archiving).
//!
//! # A drawdown in one round trip
//! Each instance keeps the state of the users it has read or written with its version (the
//! user hash's `v`, bumped by every reservation and every upsert), bounded
//! ([`RedisConfig::user_cache`]). A drawdown of such a user evaluates against that state with
//! no load and commits with a compare-and-set on the version ([`Store::commit_seen`]): the
//! commit script replays or refuses a seen key first (as a load would have), then lands only
//! on exactly the state the decision was made on, else answers the fresh state (read in the
//! script) to evaluate again and commit with the line checked, as after a load. A stale entry
//! (another instance wrote the user) costs one more round trip, never a decision on a state
//! older than a load would have read. Within an instance, one drawdown per
//! user slot at a time holds the slot's turn from evaluation to commit, so checked commits
//! never fail each other's check; a drawdown that finds the turn taken (a hot user) and one
//! of a user not kept load first and commit with the line checked, not the version (two round
//! trips, as every drawdown before the cache).
//!
//! # The 24-hour drawdown count
//! `drawdowns_24h` slides as in the memory store, under the gateway's clock: the count set
//! with the state by [`Store::upsert_user`] until 24 hours after it was set, plus each
//! approval committed in the last 24 hours (counted per whole second). The scripts answer
//! a state with the count as of `now` and the instant it next changes; a kept state is used
//! only before that instant, since an approval ageing out does not move the version.
//!
//! # Time
//! Retention is checked against the `now` each call carries (the record's logical expiry is
//! stored beside it), as in the memory store, so a driven clock behaves the same on both.
//! Redis TTLs back this up in wall time: a record whose logical expiry was never reached by a
//! purge still leaves Redis after its retention.
//!
//! Thresholds live here too: see [`thresholds`].
//!
//! # Redis Cluster
//! With [`RedisConfig::cluster`] the pool holds redis-rs cluster connections (one
//! multiplexed connection per node, commands routed by key slot, `MOVED`/`ASK` followed);
//! the key layout and the scripts are the same. What that takes:
//! - Scripts: every key a script names (or builds from a prefix argument) carries one hash
//!   tag, so each runs on the node owning that slot. `EVALSHA` is routed by its first key; on
//!   `NOSCRIPT` redis-rs sends `SCRIPT LOAD` to every primary and retries, so a node that
//!   restarted or took over a slot loads the script on first use.
//! - Operations over all 1,024 shards ([`Store::list_appeals`], [`Store::purge_expired`]):
//!   on one server one pipeline; on a cluster no pipeline may cross slots, so one command
//!   per shard, each routed to its node, all in flight at once (`query_each`).
//! - Audit streams: [`RedisStore::read_audit`] names one shard's stream, routed to its
//!   node; a consumer iterates the shards (or runs one consumer group per stream, each on
//!   the node that owns it).
//! - Threshold notices: classic pub/sub is cluster-wide (the cluster bus forwards a
//!   `PUBLISH`), so the subscriber holds a plain connection to one seed node and moves to the
//!   next when it drops; the poll covers notices lost meanwhile.
//!
//! # Failure
//! Pool waits, connection set-up and every command are bounded ([`RedisConfig`]); any
//! failure answers [`StoreError::Unavailable`] or, for a command that was sent but not
//! answered in time, [`StoreError::Timeout`]. Scripts check everything before they write
//! (the commit script's first write, the idempotency record, is deleted again by a commit
//! refused after it, in the same atomic step), so a refused commit leaves nothing written.
//!
//! Connections are shared: a request takes a pooled connection's handle and returns the
//! connection at once, so concurrent requests' commands go out pipelined on one connection.
//! A connection whose command failed is taken out of the pool (requests already waiting on
//! it keep their handles), never handed out again. One that
//! failed at the connection level (I/O error, dropped, refused) says the server went away,
//! so every idle connection opened before it is dropped too: after a Redis restart the
//! pool does not hand out its dead connections one request at a time. Without traffic, the
//! health check ([`spawn_health_check`], every [`RedisConfig::health_check_interval`])
//! finds the dead connection instead, and logs the outage and the recovery once each;
//! [`Store::ping`] (readiness) tries once more on a fresh connection after such a
//! failure, so `/readyz` answers for Redis as it is, not for a connection it outlived.

mod audit;
mod candidate;
mod coalesce;
mod config;
mod durable;
mod events;
mod forced;
mod inputs;
mod reconcile;
mod scripts;
mod sentinel;
mod shared_users;
pub mod thresholds;

pub use config::{RedisConfig, RedisConfigError};

pub use thresholds::{ThresholdSyncMetrics, ThresholdTarget, ThresholdWrite, spawn_threshold_sync};

use super::ids::{APPEAL_PREFIX, DECISION_PREFIX, SLOTS, id_slot, user_slot};
use super::{
    AppealCreated, AppealRecord, AppealResolved, AppealStatus, CommitOutcome, CommitRequest,
    DecisionRecord, Fingerprint, IdempotentRecord, Loaded, Resolution, Result, Seen, Slot, Store,
    StoreError,
};
use super::{check_commit, format_like, invalid};
use crate::clock::{SharedClock, SystemClock};
use deadpool::managed::{self, Object, PoolError};
use deadpool_redis::redis::{self, Script, Value};
use deadpool_redis::{Manager, Runtime};
use jiff::Timestamp;
use risk_core::{Fen, RiskGrade, UserId, UserState};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The Redis store. Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

type Pool = managed::Pool<Pooled>;

/// deadpool-redis's managers without their per-checkout `PING`: that would double the round
/// trips of every operation. A connection that fails is taken out of the pool instead
/// ([`RedisStore::with_conn`]), so a dead one is dropped on first use and the next request
/// opens a fresh one (how the store recovers from a Redis restart by itself).
enum Pooled {
    /// One server.
    Single(Manager),
    /// Redis Cluster: each pooled connection is a cluster connection (one multiplexed
    /// connection per node, commands routed by slot, `MOVED`/`ASK` followed). The client is
    /// built here rather than by deadpool-redis's cluster manager so that the connect and
    /// response timeouts apply.
    Cluster(redis::cluster::ClusterClient),
    /// One primary behind Sentinels: each connection goes to the primary they name now
    /// ([`sentinel`]).
    Sentinel(Arc<sentinel::Sentinels>),
}

/// Which way [`RedisStore::stream_page`] reads a stream.
#[derive(Debug, Clone, Copy)]
pub(super) enum Way {
    /// Oldest first (`XRANGE`).
    Forward,
    /// Newest first (`XREVRANGE`).
    Back,
}

/// A pooled connection: to one server or to a cluster. Both multiplex.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl managed::Manager for Pooled {
    type Type = Conn;
    type Error = redis::RedisError;

    async fn create(&self) -> Result<Self::Type, Self::Error> {
        match self {
            Pooled::Single(m) => managed::Manager::create(m).await.map(Conn::Single),
            Pooled::Cluster(c) => c.get_async_connection().await.map(Conn::Cluster),
            Pooled::Sentinel(s) => s.connect().await.map(Conn::Single),
        }
    }

    async fn recycle(
        &self,
        _: &mut Self::Type,
        _: &managed::Metrics,
    ) -> managed::RecycleResult<Self::Error> {
        Ok(())
    }
}

struct Inner {
    config: RedisConfig,
    pool: Pool,
    /// For `url`, for connections the pool does not serve (pub/sub).
    client: redis::Client,
    /// One per seed node (`client` first).
    clients: Vec<redis::Client>,
    /// Behind Sentinels: how the primary is found (the pool's too).
    sentinels: Option<Arc<sentinel::Sentinels>>,
    scripts: Scripts,
    users: UserCache,
    /// The gateway's clock: what "the last 24 hours" of `drawdowns_24h` are counted up to.
    clock: SharedClock,
    /// The queue of script calls sent together ([`coalesce`]; one server only).
    coalescer: Arc<coalesce::Coalescer>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.coalescer.close();
    }
}

/// This instance's last view of users' states, each with its version (the user hash's `v`,
/// bumped by every write), so that a drawdown evaluates without a load and commits with a
/// compare-and-set on the version ([`Store::commit_seen`]): one round trip. A stale entry
/// costs a refused commit that answers the fresh state, never a wrong decision; so the
/// cache is bounded by evicting any entry of a full shard, and is kept only from what this
/// instance read or wrote.
///
/// Shards and turns are per user slot. A drawdown holds its slot's turn ([`Seen`]) from
/// evaluation to commit, so this instance's checked commits of one slot never fail each
/// other's version check; a drawdown that finds the turn taken loads afresh and commits
/// unchecked instead (the line still checked), as every drawdown did before the cache.
struct UserCache {
    shards: Box<[std::sync::Mutex<CacheShard>]>,
    turns: Box<[Arc<tokio::sync::Mutex<()>>]>,
    per_shard: usize,
}

type CacheShard = std::collections::HashMap<String, Kept, foldhash::fast::RandomState>;

/// A user's state as this instance last read or wrote it.
#[derive(Debug, Clone)]
struct Kept {
    state: UserState,
    /// The user hash's `v` the state was read or written at.
    version: u64,
    /// When the state's sliding `drawdowns_24h` next changes (unix ms; `None`: never). The
    /// version does not move as approvals age out, so the state is good only until then.
    stable_until: Option<i64>,
}

impl Kept {
    fn fresh_at(&self, now_ms: i64) -> bool {
        self.stable_until.is_none_or(|t| now_ms < t)
    }
}

impl UserCache {
    fn new(capacity: usize) -> UserCache {
        UserCache {
            shards: (0..SLOTS).map(|_| Default::default()).collect(),
            turns: (0..SLOTS).map(|_| Default::default()).collect(),
            per_shard: capacity.div_ceil(usize::from(SLOTS)),
        }
    }

    fn shard(&self, user: &UserId) -> std::sync::MutexGuard<'_, CacheShard> {
        let i = usize::from(user_slot(user).get());
        // No code panics while holding it; a poisoned shard is still a valid map.
        self.shards[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The kept state of `user`, unless its sliding counts changed since (by `now_ms`).
    fn get(&self, user: &UserId, now_ms: i64) -> Option<Kept> {
        self.shard(user)
            .get(user.as_str())
            .filter(|k| k.fresh_at(now_ms))
            .cloned()
    }

    /// Keeps `kept` unless a newer version is kept already.
    fn put(&self, user: &UserId, kept: Kept) {
        if self.per_shard == 0 {
            return;
        }
        let mut shard = self.shard(user);
        if let Some(old) = shard.get_mut(user.as_str()) {
            if old.version <= kept.version {
                *old = kept;
            }
            return;
        }
        if shard.len() >= self.per_shard {
            let any = shard.keys().next().cloned();
            if let Some(k) = any {
                shard.remove(&k);
            }
        }
        shard.insert(user.as_str().to_owned(), kept);
    }

    /// The slot's turn, if no other drawdown of this instance holds it.
    fn turn(&self, user: &UserId) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let i = usize::from(user_slot(user).get());
        Arc::clone(&self.turns[i]).try_lock_owned().ok()
    }
}

struct Scripts {
    load: Script,
    commit: Script,
    upsert: Script,
    purge: Script,
    create_appeal: Script,
    get_decision: Script,
    resolve_appeal: Script,
    thresholds_publish: Script,
    thresholds_current: Script,
    gcra: Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// One event of an audit stream, as [`RedisStore::read_audit`] answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// The stream entry id (`<ms>-<seq>`): pass the last one seen to read on.
    pub id: String,
    /// The event's fields (`decision_id`, `user`, `outcome`, `amount_fen`, …), by name
    /// whether the entry holds them packed or one stream field each (written before).
    pub fields: HashMap<String, String>,
}

/// Expired idempotency records looked at per slot by one purge call.
const PURGE_BATCH: u32 = 10_000;

impl RedisStore {
    /// A store on the server at `config.url`, on the system clock. Connects lazily: this
    /// fails only on an invalid configuration; an unreachable server shows in
    /// [`Store::ping`] and each operation.
    pub fn new(config: RedisConfig) -> Result<RedisStore, RedisConfigError> {
        RedisStore::with_clock(config, SystemClock::shared())
    }

    /// [`RedisStore::new`] on `clock` (the gateway's injected clock), which times the
    /// sliding 24-hour drawdown count as the memory store's does.
    pub fn with_clock(
        config: RedisConfig,
        clock: SharedClock,
    ) -> Result<RedisStore, RedisConfigError> {
        config.validate()?;
        let bad_url = |e: redis::RedisError| RedisConfigError::new("url", e.to_string());
        // `rediss://`: TLS, the server's certificate checked against `tls_ca_file` when set,
        // else the system's trust store.
        let tls = config.tls_certificates()?;
        let open = |url: &str| match &tls {
            Some(certs) => redis::Client::build_with_tls(url, certs.clone()),
            None => redis::Client::open(url),
        };
        let connection = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout));
        let sentinels = if config.is_sentinel() {
            Some(Arc::new(sentinel::Sentinels::new(
                &config,
                connection.clone(),
            )?))
        } else {
            None
        };
        let manager = if let Some(s) = &sentinels {
            Pooled::Sentinel(Arc::clone(s))
        } else if config.cluster {
            let mut cluster = redis::cluster::ClusterClientBuilder::new(config.seeds())
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.command_timeout);
            if let Some(certs) = &tls {
                cluster = cluster.certs(certs.clone());
            }
            let cluster = cluster.build().map_err(bad_url)?;
            Pooled::Cluster(cluster)
        } else {
            Pooled::Single(
                Manager::new_with_config(
                    open(&config.url)
                        .map_err(bad_url)?
                        .get_connection_info()
                        .clone(),
                    connection,
                )
                .map_err(bad_url)?,
            )
        };
        let client = open(&config.url).map_err(bad_url)?;
        let clients = config
            .seeds()
            .into_iter()
            .map(open)
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad_url)?;
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .wait_timeout(Some(config.pool_wait_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.command_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| RedisConfigError::new("pool_size", e.to_string()))?;
        let config_cache = config.user_cache;
        let scripts = Scripts {
            load: Script::new(scripts::LOAD),
            commit: Script::new(scripts::COMMIT),
            upsert: Script::new(scripts::UPSERT),
            purge: Script::new(scripts::PURGE),
            create_appeal: Script::new(scripts::CREATE_APPEAL),
            get_decision: Script::new(scripts::GET_DECISION),
            resolve_appeal: Script::new(scripts::RESOLVE_APPEAL),
            thresholds_publish: Script::new(thresholds::PUBLISH),
            thresholds_current: Script::new(thresholds::CURRENT),
            gcra: Script::new(scripts::GCRA),
        };
        Ok(RedisStore {
            inner: Arc::new(Inner {
                config,
                pool,
                client,
                clients,
                sentinels,
                scripts,
                users: UserCache::new(config_cache),
                clock,
                coalescer: Arc::default(),
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    async fn ping_once(&self) -> Result<()> {
        if self.is_cluster() {
            return self.cluster_serves().await;
        }
        if self.is_sentinel() {
            return self.primary_serves().await;
        }
        let pong: String = self
            .with_conn(|mut c| async move { redis::cmd("PING").query_async(&mut c).await })
            .await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!("redis answered {pong}")))
        }
    }

    /// Readiness on a cluster: every node is asked `CLUSTER INFO` at once, and the first to
    /// answer says whether the cluster serves all its slots (`cluster_state:ok`). One node
    /// out of reach (stopped, or a primary being failed over) is the cluster's to handle:
    /// the requests for its slots answer `Unavailable` meanwhile, and every other user is
    /// served, so it is no reason to take every instance out of the load balancer at once,
    /// as a `PING`, which a cluster sends to every primary, would.
    async fn cluster_serves(&self) -> Result<()> {
        use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("INFO");
        let info = self
            .with_conn(|c| async move {
                match c {
                    Conn::Cluster(mut c) => {
                        let any = RoutingInfo::MultiNode((
                            MultipleNodeRoutingInfo::AllNodes,
                            Some(ResponsePolicy::OneSucceeded),
                        ));
                        c.route_command(cmd, any).await
                    }
                    Conn::Single(mut c) => {
                        use redis::aio::ConnectionLike;
                        c.req_packed_command(&cmd).await
                    }
                }
            })
            .await?;
        let info: String = redis::from_redis_value(info)
            .map_err(|e| StoreError::Unavailable(format!("redis CLUSTER INFO: {e}")))?;
        if info.lines().any(|l| l.trim() == "cluster_state:ok") {
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                "redis cluster does not serve every slot (cluster_state is not ok)".into(),
            ))
        }
    }

    /// A client for the same server (on a cluster: for its first seed node), for connections
    /// the pool does not serve (pub/sub).
    pub fn client(&self) -> &redis::Client {
        &self.inner.client
    }

    /// A client per seed node (one on a single server): the threshold subscriber moves to the
    /// next one when its node is unreachable.
    pub(crate) fn clients(&self) -> &[redis::Client] {
        &self.inner.clients
    }

    /// Whether the store runs on Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.config.cluster
    }

    /// Runs `f` on a pooled connection, bounded by the command timeout.
    pub(crate) async fn with_conn<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let timeout = self.inner.config.command_timeout;
        // Boxed: the pool's and the client's futures are large, and would make every
        // handler future that awaits a store operation large too (one allocation per round
        // trip, next to a network round trip).
        Box::pin(async move {
            let pooled = self.inner.pool.get().await.map_err(pool_error)?;
            // A multiplexed connection is a cheap handle, shared: the pooled object goes
            // back at once, so the next request sends on the same connection while this one
            // waits, and the commands of concurrent requests leave together (one write, one
            // read on each side for many commands). The pool opens another connection only
            // when none is idle, and takes out one that failed.
            let conn = (*pooled).clone();
            let born = Object::metrics(&pooled).created;
            drop(pooled);
            let (out, server_gone) = match tokio::time::timeout(timeout, f(conn)).await {
                Ok(Ok(v)) => return Ok(v),
                // Behind Sentinels, a demoted primary is as gone as a dead one.
                Ok(Err(e)) => (
                    redis_error(&e),
                    connection_lost(&e) || sentinel::demoted(&e),
                ),
                Err(_) => (StoreError::Timeout, false),
            };
            if !matches!(out, StoreError::Corrupt(_)) {
                // The connection may be dead (or stuck behind a slow reply): never reuse it.
                // Requests already waiting on it keep their handles and their answers.
                self.inner.pool.retain(|_, m| m.created != born);
            }
            if server_gone {
                // The idle ones opened before are to the same server, as dead (not on a
                // timeout: a slow Redis is not helped by reconnecting every connection).
                self.forget_connections();
            }
            Err(out)
        })
        .await
    }

    /// Drops every pooled connection opened until now: the server they lead to is gone (or,
    /// behind Sentinels, no longer the primary). Requests holding one keep it.
    fn forget_connections(&self) {
        let lost_at = std::time::Instant::now();
        self.inner.pool.retain(|_, m| m.created > lost_at);
    }

    /// Runs one command per slot (or per key), answering in order: on one server as one
    /// pipeline, one round trip; on a cluster (where no pipeline may cross slots) each command
    /// goes to the node that owns its key, all in flight at once over the nodes' multiplexed
    /// connections, so the cost is about one round trip per node.
    async fn query_each<T>(&self, cmds: Vec<redis::Cmd>) -> Result<Vec<T>>
    where
        T: redis::FromRedisValue + Send + 'static,
    {
        if self.is_cluster() {
            self.with_conn(|c| async move {
                futures_util::future::try_join_all(cmds.iter().map(|cmd| {
                    let mut c = c.clone();
                    async move { cmd.query_async::<T>(&mut c).await }
                }))
                .await
            })
            .await
        } else {
            let mut pipe = redis::pipe();
            for cmd in cmds {
                pipe.add_command(cmd);
            }
            self.with_conn(|mut c| async move { pipe.query_async(&mut c).await })
                .await
        }
    }

    /// `EVALSHA` of `script`, the command built by `build`: on one server sent with the
    /// calls of concurrent requests ([`coalesce`]), on a cluster to the node of its first key.
    /// A script's error is `Unavailable`, as any failed command.
    async fn eval(&self, script: &Script, build: impl Fn() -> redis::Cmd) -> Result<Value> {
        use redis::aio::ConnectionLike;
        let build = &build;
        self.with_script(script, move || async move {
            let cmd = build();
            let reply = if self.is_cluster() {
                self.with_conn(|mut c| async move { c.req_packed_command(&cmd).await })
                    .await?
            } else {
                self.coalesced(cmd).await?
            };
            Ok(match reply {
                Value::ServerError(e) => Err(e.into()),
                v => Ok(v),
            })
        })
        .await
    }

    /// Sends a script call with `send` (the call's reply, or the script's error): a server
    /// that does not hold `script` (restarted, flushed, or a node that took the slot over)
    /// gets it with `SCRIPT LOAD` (on a cluster: every primary), and the call is sent again,
    /// once. Any other error of the script is `Unavailable`.
    pub(super) async fn with_script<T, Fut>(
        &self,
        script: &Script,
        send: impl Fn() -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = Result<redis::RedisResult<T>>>,
    {
        let mut loaded = false;
        loop {
            match send().await? {
                Ok(v) => return Ok(v),
                Err(e) if e.code() == Some("NOSCRIPT") && !loaded => {
                    loaded = true;
                    self.with_conn(|mut c| async move { script.load_async(&mut c).await })
                        .await?;
                }
                Err(e) => {
                    if sentinel::demoted(&e) {
                        self.forget_connections();
                    }
                    return Err(redis_error(&e));
                }
            }
        }
    }

    /// Takes one request from the cluster-wide GCRA bucket `name` (one key, its own hash tag
    /// `P:{gl-<name>}:gcra`): `None` when admitted, else how long until one would conform.
    /// The whole call, pool wait included, gives up after `within` (`Timeout`); a connection
    /// given up on that way goes back to the pool (a late answer is not a dead connection),
    /// one that fails is dropped as in every operation.
    pub async fn gcra(
        &self,
        name: &str,
        interval: Duration,
        burst: u32,
        within: Duration,
    ) -> Result<Option<Duration>> {
        let mut inv = self.inner.scripts.gcra.prepare_invoke();
        inv.key(format!(
            "{}:{{gl-{name}}}:gcra",
            self.inner.config.key_prefix
        ))
        .arg(
            u64::try_from(interval.as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
        )
        .arg(burst.max(1));
        let call =
            self.with_conn(|mut c| async move { inv.invoke_async::<(i64, i64)>(&mut c).await });
        let (admitted, wait_us) = tokio::time::timeout(within, call)
            .await
            .map_err(|_| StoreError::Timeout)??;
        Ok((admitted != 1).then(|| Duration::from_micros(u64::try_from(wait_us).unwrap_or(0))))
    }

    /// The key of everything in `slot`: `P:{sNNNN}:`.
    fn tag(&self, slot: Slot) -> String {
        format!("{}:{{s{slot}}}:", self.inner.config.key_prefix)
    }

    fn user_key(&self, user: &UserId) -> String {
        format!("{}u:{}", self.tag(user_slot(user)), user.as_str())
    }

    /// The user's approvals of the last 24 hours (see [`scripts::LOAD`]'s `view`).
    fn approvals_key(&self, user: &UserId) -> String {
        format!("{}u-ap:{}", self.tag(user_slot(user)), user.as_str())
    }

    fn now_ms(&self) -> i64 {
        self.inner.clock.now().as_millisecond()
    }

    fn idem_key(&self, caller: &str, user: &UserId, key: &str) -> String {
        let mut h = blake3::Hasher::new();
        for part in [caller, user.as_str(), key] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let digest = h.finalize().to_hex();
        format!("{}k:{}", self.tag(user_slot(user)), &digest[..32])
    }

    /// The key of the audit stream of `slot`.
    pub fn audit_key(&self, slot: Slot) -> String {
        format!("{}audit", self.tag(slot))
    }

    fn appeal_index(&self, slot: Slot, status: Option<AppealStatus>) -> String {
        let name = status.map_or("all", AppealStatus::as_str);
        format!("{}a-idx:{name}", self.tag(slot))
    }

    fn all_slots() -> impl Iterator<Item = Slot> {
        (0..SLOTS).filter_map(Slot::new)
    }

    /// Up to `count` events of `slot`'s audit stream after entry `after` (`"0"`: from the
    /// start), oldest first: how a downstream consumer reads the streams.
    pub async fn read_audit(
        &self,
        slot: Slot,
        after: &str,
        count: usize,
    ) -> Result<Vec<AuditEvent>> {
        let raw = self
            .stream_page(
                self.audit_key(slot),
                (after != "0").then_some(after),
                Way::Forward,
                count,
            )
            .await?;
        raw.into_iter()
            .map(|(id, fields)| {
                Ok(AuditEvent {
                    id,
                    fields: events::fields(fields)?,
                })
            })
            .collect()
    }

    /// Up to `count` entries of stream `key` from the id `from` on, exclusive (`None`: from
    /// the stream's start, or its end when reading [`Way::Back`]), each as its id and fields.
    pub(super) async fn stream_page(
        &self,
        key: String,
        from: Option<&str>,
        way: Way,
        count: usize,
    ) -> Result<Vec<(String, Vec<(String, String)>)>> {
        let (command, start, end) = match way {
            Way::Forward => ("XRANGE", "-", "+"),
            Way::Back => ("XREVRANGE", "+", "-"),
        };
        let from = from.map_or_else(|| start.to_owned(), |id| format!("({id}"));
        self.with_conn(|mut c| async move {
            redis::cmd(command)
                .arg(&key)
                .arg(&from)
                .arg(end)
                .arg("COUNT")
                .arg(count)
                .query_async(&mut c)
                .await
        })
        .await
    }

    /// Every audit event of every slot (for tests and small reconciliations: it reads all
    /// 1,024 streams in full).
    pub async fn read_all_audit(&self) -> Result<Vec<AuditEvent>> {
        let mut all = Vec::new();
        for slot in Self::all_slots() {
            let mut after = "0".to_owned();
            loop {
                let page = self.read_audit(slot, &after, 1_000).await?;
                let Some(last) = page.last() else { break };
                after = last.id.clone();
                all.extend(page);
            }
        }
        Ok(all)
    }
}

fn pool_error(e: PoolError<redis::RedisError>) -> StoreError {
    match e {
        PoolError::Backend(e) => redis_error(&e),
        PoolError::Timeout(t) => StoreError::Unavailable(format!("redis pool: {t:?} timed out")),
        other => StoreError::Unavailable(format!("redis pool: {other}")),
    }
}

/// Whether `e` says the connection (and so, likely, the server) is gone, rather than one
/// command failing.
fn connection_lost(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()
}

fn redis_error(e: &redis::RedisError) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout
    } else {
        StoreError::Unavailable(format!("redis: {e}"))
    }
}

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

// ---------------------------------------------------------------------------------------
// Encoding

fn state_fields(s: &UserState) -> Vec<(&'static str, String)> {
    let flag = |b: bool| if b { "1" } else { "0" }.to_owned();
    vec![
        ("limit", s.limit.get().to_string()),
        ("used", s.used.get().to_string()),
        ("grade", s.grade.as_str().to_owned()),
        ("logins_30d", s.logins_30d.to_string()),
        ("drawdowns_24h", s.drawdowns_24h.to_string()),
        ("applications_1h", s.applications_1h.to_string()),
        ("account_age_days", s.account_age_days.to_string()),
        ("new_device", flag(s.new_device)),
        ("days_overdue", s.days_overdue.to_string()),
        ("blocklisted", flag(s.blocklisted)),
    ]
}

fn parse_state(fields: &HashMap<String, String>) -> Result<UserState> {
    let get = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| corrupt(format!("user state without `{name}`")))
    };
    let fen = |name: &str| {
        get(name)?
            .parse::<u64>()
            .ok()
            .and_then(Fen::new)
            .ok_or_else(|| corrupt(format!("user state `{name}` is not an amount")))
    };
    let count = |name: &str| {
        get(name)?
            .parse::<u32>()
            .map_err(|_| corrupt(format!("user state `{name}` is not a count")))
    };
    let flag = |name: &str| Ok::<_, StoreError>(get(name)? == "1");
    let grade = get("grade")?;
    let grade = grade
        .parse::<RiskGrade>()
        .map_err(|()| corrupt(format!("user state grade `{grade}`")))?;
    Ok(UserState {
        limit: fen("limit")?,
        used: fen("used")?,
        grade,
        logins_30d: count("logins_30d")?,
        drawdowns_24h: count("drawdowns_24h")?,
        applications_1h: count("applications_1h")?,
        account_age_days: count("account_age_days")?,
        new_device: flag("new_device")?,
        days_overdue: count("days_overdue")?,
        blocklisted: flag("blocklisted")?,
    })
}

/// A user's state as a script's `view` answers it ([`scripts::LOAD`]): the stored fields,
/// with `drawdowns_24h` the sliding count `n24`, the version, and when the count next
/// changes (`n24_until`).
fn parse_view(fields: &HashMap<String, String>) -> Result<Kept> {
    let mut state = parse_state(fields)?;
    let number = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| corrupt(format!("user view without `{name}`")))?
            .parse::<i64>()
            .map_err(|_| corrupt(format!("user view `{name}` is not a number")))
    };
    state.drawdowns_24h =
        u32::try_from(number("n24")?).map_err(|_| corrupt("user view `n24` is not a count"))?;
    let until = number("n24_until")?;
    Ok(Kept {
        state,
        version: parse_version(fields)?,
        stable_until: (until >= 0).then_some(until),
    })
}

/// The version of a user's state (`v`; a user stored without one is at version 0).
fn parse_version(fields: &HashMap<String, String>) -> Result<u64> {
    fields.get("v").map_or(Ok(0), |v| {
        v.parse()
            .map_err(|_| corrupt("user state `v` is not a version"))
    })
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn pairs(v: &Value) -> Result<HashMap<String, String>> {
    let items = match v {
        Value::Array(items) => items.as_slice(),
        Value::Map(m) => {
            return m
                .iter()
                .map(|(k, v)| Ok((text(k).ok_or_else(bad)?, text(v).ok_or_else(bad)?)))
                .collect();
        }
        Value::Nil => &[],
        _ => return Err(bad()),
    };
    items
        .chunks_exact(2)
        .map(|kv| Ok((text(&kv[0]).ok_or_else(bad)?, text(&kv[1]).ok_or_else(bad)?)))
        .collect()
}

fn bad() -> StoreError {
    corrupt("unexpected reply from a script")
}

/// A stored decision: the JSON as committed, with the store's `available_fen` and the cap
/// on `drawable_now_fen` applied.
fn decision_from(json: &str, available: &str) -> Result<DecisionRecord> {
    let mut d: DecisionRecord =
        serde_json::from_str(json).map_err(|e| corrupt(format!("decision json: {e}")))?;
    let available = available
        .parse::<u64>()
        .map_err(|_| corrupt("decision `available` is not an amount"))?;
    d.available_fen = available;
    d.drawable_now_fen = d.drawable_now_fen.min(available);
    Ok(d)
}

fn millis(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn status_of(word: &Value) -> Result<String> {
    text(word).ok_or_else(bad)
}

/// What a checked commit ([`RedisStore::commit_inner`]) leaves, computed by the gateway on
/// the state it was evaluated against.
struct Checked {
    /// The version the state was read or written at.
    expected: u64,
    /// `used` after the commit.
    used: u64,
    /// `limit - used` after the commit.
    available: u64,
    /// The version after the commit.
    version: u64,
}

impl RedisStore {
    /// A commit; with `seen`, a compare-and-set on its version (see [`Store::commit_seen`]),
    /// and `seen` follows the state the commit left or found.
    async fn commit_inner(
        &self,
        req: CommitRequest,
        mut seen: Option<&mut Seen>,
    ) -> Result<CommitOutcome> {
        check_commit(&req)?;
        let config = &self.inner.config;
        let now_ms = millis(req.now);
        let exp_ms = req
            .now
            .checked_add(config.idempotency_retention)
            .map_err(|_| invalid("`now` is too late for the idempotency retention"))?
            .as_millisecond();
        let slot = user_slot(&req.user);
        let tag = self.tag(slot);
        let decision_key = format!("{tag}d:{}", req.decision.decision_id);
        let mut stored = req.decision.clone();
        stored.available_fen = 0;
        // The decision's value (see `scripts::COMMIT`'s `decision`): its JSON, then
        // `available` and the rest (added below).
        let mut value = serde_json::to_string(&stored)
            .map_err(|e| invalid(format!("decision does not serialise: {e}")))?;
        value.push('\n');
        let d = &req.decision;
        let keys = [
            self.user_key(&req.user),
            self.idem_key(&req.caller, &req.user, &req.idempotency_key),
            format!("{tag}k-due"),
            decision_key,
            self.audit_key(slot),
            self.approvals_key(&req.user),
        ];
        let amount = d.amount_fen.to_string();
        // The decision's fields after `available`.
        let tail = format!(
            "\n{}\n{}\n\n{}",
            if d.appealable { "1" } else { "0" },
            req.user.as_str(),
            req.caller
        );
        let record = format!("{exp_ms} {} {}", req.fingerprint, d.decision_id);
        let queued = format!("{exp_ms} {}", keys[1]);
        let threshold_version = d.threshold_version.to_string();
        // The audit event, packed ([`events`]); the line after the commit follows.
        let mut audit = events::pack([
            d.decision_id.as_str(),
            req.user.as_str(),
            &req.caller,
            &req.idempotency_key,
            d.outcome.as_str(),
            &amount,
            &threshold_version,
            &d.policy,
            &d.evaluated_at,
        ]);
        // A checked commit lands on exactly the state seen, so what it leaves is known here:
        // used, available and the version after it. Its line is checked here, on that
        // state; one this state cannot hold (the engine never approves such a one) goes
        // unchecked, for the script to check on the stored state.
        let checked = seen
            .as_ref()
            .and_then(|s| Some((&s.state, s.version?)))
            .and_then(|(state, version)| {
                let used = state
                    .used
                    .get()
                    .checked_add(req.reserve.map_or(0, |r| r.amount.get()))?;
                let holds = req
                    .reserve
                    .is_none_or(|r| used <= r.ceiling.get() && used <= state.limit.get());
                holds.then(|| Checked {
                    expected: version,
                    used,
                    available: state.limit.get().saturating_sub(used),
                    version: version + u64::from(req.reserve.is_some()),
                })
            });
        let mut args: Vec<String> = Vec::with_capacity(11);
        if let Some(c) = &checked {
            let available = c.available.to_string();
            events::push(&mut audit, &c.used.to_string());
            events::push(&mut audit, &available);
            value.push_str(&available);
            value.push_str(&tail);
        }
        args.push(value);
        args.push(now_ms.to_string());
        args.push(record);
        args.push(queued);
        args.push(duration_ms(config.idempotency_retention).to_string());
        args.push(duration_ms(config.decision_retention).to_string());
        args.push(audit);
        match &checked {
            Some(c) => {
                args.push(c.expected.to_string());
                args.push(if req.reserve.is_some() {
                    c.used.to_string()
                } else {
                    String::new()
                });
                args.push(c.version.to_string());
            }
            None => {
                args.push(String::new());
                args.push(tail);
                args.push(amount);
                // The store never lets `used` pass the limit either; the script checks both.
                args.push(
                    req.reserve
                        .map(|r| r.ceiling.get().to_string())
                        .unwrap_or_default(),
                );
            }
        }
        let script = &self.inner.scripts.commit;
        let args = |cmd: &mut redis::Cmd| {
            for a in &args {
                cmd.arg(a);
            }
        };
        // A reservation is answered only once a replica holds it (see [`durable`]).
        let acks = req.reserve.is_some() && self.replica_acks() > 0;
        let (reply, acked) = if acks {
            self.eval_acked(script, &keys, args).await?
        } else {
            let reply = self
                .eval(script, || {
                    let mut cmd = evalsha(script, &keys);
                    args(&mut cmd);
                    cmd
                })
                .await?;
            (reply, 0)
        };
        let reply = match reply {
            Value::Array(items) => items,
            _ => return Err(bad()),
        };
        let word = reply.first().map(status_of).transpose()?;
        match word.as_deref() {
            Some("committed") => {
                if acks && acked < i64::from(self.replica_acks()) {
                    return Err(self.unacknowledged(acked));
                }
                let number = |i: usize| {
                    reply
                        .get(i)
                        .and_then(text)
                        .and_then(|a| a.parse::<u64>().ok())
                        .ok_or_else(bad)
                };
                let available = match (&checked, seen.as_deref_mut()) {
                    (Some(c), Some(seen)) => {
                        // The commit landed on exactly `seen.state`: it is now that state
                        // with the reservation made.
                        if req.reserve.is_some() {
                            seen.state.used = Fen::new(c.used).ok_or_else(bad)?;
                            seen.state.drawdowns_24h = seen.state.drawdowns_24h.saturating_add(1);
                            // The new approval counts until 24 hours after its second.
                            let ends = (now_ms.div_euclid(1_000) + 86_400) * 1_000;
                            seen.stable_until =
                                Some(seen.stable_until.map_or(ends, |t| t.min(ends)));
                        }
                        seen.version = Some(c.version);
                        self.inner.users.put(
                            &req.user,
                            Kept {
                                state: seen.state.clone(),
                                version: c.version,
                                stable_until: seen.stable_until,
                            },
                        );
                        c.available
                    }
                    (_, seen) => {
                        if let Some(seen) = seen {
                            // Committed unchecked: the state it left is not known here.
                            seen.version = None;
                        }
                        number(1)?
                    }
                };
                let mut d = req.decision;
                d.available_fen = available;
                d.drawable_now_fen = d.drawable_now_fen.min(available);
                Ok(CommitOutcome::Committed(d))
            }
            Some("replayed") => {
                let (json, available) = (
                    reply.get(1).and_then(text).ok_or_else(bad)?,
                    reply.get(2).and_then(text).ok_or_else(bad)?,
                );
                let d = decision_from(&json, &available)?;
                if d.outcome == risk_core::Outcome::Approved {
                    self.ensure_replicated(slot).await?;
                }
                Ok(CommitOutcome::Replayed(d))
            }
            Some("key_reused") => Ok(CommitOutcome::KeyReused),
            Some("user_not_found") => Ok(CommitOutcome::UserNotFound),
            Some("line_changed") => {
                let kept = parse_view(&pairs(reply.get(1).ok_or_else(bad)?)?)?;
                let state = kept.state.clone();
                self.inner.users.put(&req.user, kept);
                // The decision is made again on this state, read in the script, and its
                // commit is checked on the line as before the cache: a hot user's other
                // drawdowns (which hold no turn) move the version between any two commits,
                // so checking it again could fail every attempt.
                if let Some(seen) = seen {
                    seen.version = None;
                }
                Ok(CommitOutcome::LineChanged(state))
            }
            Some("duplicate_id") => Err(invalid("the decision id is already stored")),
            Some("corrupt") => Err(corrupt(format!(
                "idempotency record names missing decision {}",
                reply.get(1).and_then(text).unwrap_or_default()
            ))),
            _ => Err(bad()),
        }
    }

    async fn load_inner(&self, caller: &str, user: &UserId, key: Option<&str>) -> Result<Loaded> {
        let mut keys = vec![self.user_key(user), self.approvals_key(user)];
        if let Some(k) = key {
            keys.push(self.idem_key(caller, user, k));
        }
        let prefix = format!("{}d:", self.tag(user_slot(user)));
        let now_ms = self.now_ms();
        let script = &self.inner.scripts.load;
        let reply = self
            .eval(script, || {
                let mut cmd = evalsha(script, &keys);
                cmd.arg(&prefix).arg(now_ms);
                cmd
            })
            .await?;
        let reply = match reply {
            Value::Array(items) => items,
            _ => return Err(bad()),
        };
        let fields = pairs(reply.first().ok_or_else(bad)?)?;
        if fields.is_empty() {
            return Ok(Loaded {
                user: None,
                idempotent: None,
            });
        }
        let kept = parse_view(&fields)?;
        let state = kept.state.clone();
        self.inner.users.put(user, kept);
        let idempotent = match reply.get(1).and_then(text) {
            None => None,
            Some(fp) => {
                let fingerprint = Fingerprint::from_hex(&fp)
                    .ok_or_else(|| corrupt("idempotency record fingerprint"))?;
                let id = reply.get(2).and_then(text).unwrap_or_default();
                let (Some(json), Some(available)) =
                    (reply.get(3).and_then(text), reply.get(4).and_then(text))
                else {
                    return Err(corrupt(format!(
                        "idempotency record names missing decision {id}"
                    )));
                };
                let decision = decision_from(&json, &available)?;
                if decision.outcome == risk_core::Outcome::Approved {
                    // A replay is an acknowledgement: see [`durable`].
                    self.ensure_replicated(user_slot(user)).await?;
                }
                Some(IdempotentRecord {
                    fingerprint,
                    decision,
                })
            }
        };
        Ok(Loaded {
            user: Some(state),
            idempotent,
        })
    }

    /// The decision `decision_id`, if `caller` committed it (`None`: whoever did).
    async fn get_decision_inner(
        &self,
        caller: Option<&str>,
        decision_id: &str,
    ) -> Result<Option<DecisionRecord>> {
        let Some(slot) = id_slot(decision_id).filter(|_| decision_id.starts_with(DECISION_PREFIX))
        else {
            return Ok(None);
        };
        let keys = [format!("{}d:{decision_id}", self.tag(slot))];
        let script = &self.inner.scripts.get_decision;
        let reply = self.eval(script, || evalsha(script, &keys)).await?;
        let (json, available, owner) = match reply {
            Value::Array(v) if v.len() == 3 => (text(&v[0]), text(&v[1]), text(&v[2])),
            _ => return Err(bad()),
        };
        match (json, available, owner) {
            (Some(j), Some(a), Some(o)) if caller.is_none_or(|c| o == c) => {
                decision_from(&j, &a).map(Some)
            }
            _ => Ok(None),
        }
    }

    async fn create_appeal_inner(
        &self,
        caller: &str,
        appeal: AppealRecord,
    ) -> Result<AppealCreated> {
        let user =
            UserId::parse(&appeal.user_id).map_err(|e| invalid(format!("appeal user_id: {e}")))?;
        let slot = user_slot(&user);
        if id_slot(&appeal.appeal_id) != Some(slot) || !appeal.appeal_id.starts_with(APPEAL_PREFIX)
        {
            return Err(invalid("the appeal id was not minted for its user"));
        }
        if appeal.status != AppealStatus::Open
            || appeal.resolved_at.is_some()
            || appeal.resolution_note.is_some()
        {
            return Err(invalid("a new appeal is open and unresolved"));
        }
        if id_slot(&appeal.decision_id) != Some(slot)
            || !appeal.decision_id.starts_with(DECISION_PREFIX)
        {
            return Ok(AppealCreated::DecisionNotFound);
        }
        let tag = self.tag(slot);
        let json = serde_json::to_string(&appeal)
            .map_err(|e| invalid(format!("appeal does not serialise: {e}")))?;
        let mut inv = self.inner.scripts.create_appeal.prepare_invoke();
        inv.key(format!("{tag}d:{}", appeal.decision_id))
            .key(format!("{tag}a:{}", appeal.appeal_id))
            .key(self.appeal_index(slot, Some(AppealStatus::Open)))
            .key(self.appeal_index(slot, None))
            .key(format!("{tag}a-by:{}", appeal.appeal_id))
            .arg(&appeal.user_id)
            .arg(&json)
            .arg(&appeal.appeal_id)
            .arg(format!("{tag}a:"))
            .arg(caller);
        let reply: Vec<Value> = self
            .with_conn(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        match reply.first().map(status_of).transpose()?.as_deref() {
            Some("created") => Ok(AppealCreated::Created(appeal)),
            Some("not_found") => Ok(AppealCreated::DecisionNotFound),
            Some("not_appealable") => Ok(AppealCreated::NotAppealable),
            Some("already") => {
                let json = reply.get(1).and_then(text).ok_or_else(bad)?;
                parse_appeal(&json).map(AppealCreated::AlreadyAppealed)
            }
            Some("duplicate_id") => Err(invalid("the appeal id is already stored")),
            Some("corrupt") => Err(corrupt("a decision names a missing appeal")),
            _ => Err(bad()),
        }
    }

    fn appeal_key(&self, appeal_id: &str) -> Option<(Slot, String)> {
        let slot = id_slot(appeal_id).filter(|_| appeal_id.starts_with(APPEAL_PREFIX))?;
        Some((slot, format!("{}a:{appeal_id}", self.tag(slot))))
    }

    /// The appeal `appeal_id`, if `caller` filed it (`None`: whoever did).
    async fn get_appeal_inner(
        &self,
        caller: Option<&str>,
        appeal_id: &str,
    ) -> Result<Option<AppealRecord>> {
        let Some((slot, key)) = self.appeal_key(appeal_id) else {
            return Ok(None);
        };
        let owner_key = format!("{}a-by:{appeal_id}", self.tag(slot));
        let (json, owner): (Option<String>, Option<String>) = self
            .with_conn(|mut c| async move {
                redis::cmd("MGET")
                    .arg(&key)
                    .arg(&owner_key)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        match (json, owner) {
            (Some(json), Some(owner)) if caller.is_none_or(|c| owner == c) => {
                parse_appeal(&json).map(Some)
            }
            _ => Ok(None),
        }
    }

    async fn list_appeals_inner(
        &self,
        status: Option<AppealStatus>,
        limit: usize,
    ) -> Result<Vec<AppealRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let stop = i64::try_from(limit).map_or(-1, |l| l - 1);
        let per_slot: Vec<Vec<String>> = self
            .query_each(
                Self::all_slots()
                    .map(|slot| {
                        let mut cmd = redis::cmd("ZRANGE");
                        cmd.arg(self.appeal_index(slot, status)).arg(0).arg(stop);
                        cmd
                    })
                    .collect(),
            )
            .await?;
        let mut ids: Vec<String> = per_slot.into_iter().flatten().collect();
        // Ids are ULIDs after a fixed prefix: lexical order is creation order.
        ids.sort_unstable();
        ids.truncate(limit);
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut gets = Vec::with_capacity(ids.len());
        for id in &ids {
            let (_, key) = self
                .appeal_key(id)
                .ok_or_else(|| corrupt(format!("appeal index holds `{id}`")))?;
            let mut cmd = redis::cmd("GET");
            cmd.arg(key);
            gets.push(cmd);
        }
        let jsons: Vec<Option<String>> = self.query_each(gets).await?;
        jsons
            .iter()
            .zip(&ids)
            .map(|(j, id)| {
                j.as_deref()
                    .ok_or_else(|| corrupt(format!("appeal index names missing appeal {id}")))
                    .and_then(parse_appeal)
            })
            .collect()
    }

    async fn resolve_appeal_inner(
        &self,
        appeal_id: &str,
        resolution: Resolution,
        note: Option<String>,
        now: Timestamp,
    ) -> Result<AppealResolved> {
        let Some((slot, key)) = self.appeal_key(appeal_id) else {
            return Ok(AppealResolved::NotFound);
        };
        // Compare and set: read, compute, write if unchanged. A lost race re-reads and finds
        // the appeal resolved by the winner.
        for _ in 0..8 {
            let k = key.clone();
            let old: Option<String> = self
                .with_conn(
                    |mut c| async move { redis::cmd("GET").arg(&k).query_async(&mut c).await },
                )
                .await?;
            let Some(old) = old else {
                return Ok(AppealResolved::NotFound);
            };
            let mut appeal = parse_appeal(&old)?;
            if appeal.status != AppealStatus::Open {
                return Ok(AppealResolved::AlreadyResolved(appeal));
            }
            appeal.status = resolution.into();
            appeal.resolved_at = Some(format_like(now, &appeal.created_at));
            appeal.resolution_note.clone_from(&note);
            let new = serde_json::to_string(&appeal)
                .map_err(|e| invalid(format!("appeal does not serialise: {e}")))?;
            let mut inv = self.inner.scripts.resolve_appeal.prepare_invoke();
            inv.key(&key)
                .key(self.appeal_index(slot, Some(AppealStatus::Open)))
                .key(self.appeal_index(slot, Some(appeal.status)))
                .arg(&old)
                .arg(&new)
                .arg(appeal_id);
            let done: i64 = self
                .with_conn(|mut c| async move { inv.invoke_async(&mut c).await })
                .await?;
            if done == 1 {
                return Ok(AppealResolved::Resolved(appeal));
            }
        }
        Err(StoreError::Unavailable(
            "appeal kept changing under resolution".into(),
        ))
    }

    async fn purge_inner(&self, now: Timestamp) -> Result<usize> {
        let now_ms = millis(now);
        let script = &self.inner.scripts.purge;
        let invocations: Vec<_> = Self::all_slots()
            .map(|slot| {
                let mut inv = script.prepare_invoke();
                inv.key(format!("{}k-due", self.tag(slot)))
                    .key(format!("{}k-exp", self.tag(slot)))
                    .arg(now_ms)
                    .arg(PURGE_BATCH);
                inv
            })
            .collect();
        let counts: Vec<u64> = if self.is_cluster() {
            // No pipeline may cross slots on a cluster: one script call per slot, each sent
            // to its slot's node, all in flight at once. `SCRIPT LOAD` first goes to every
            // primary, so none of them answers NOSCRIPT after a restart or SCRIPT FLUSH.
            self.with_conn(|mut c| async move {
                script.load_async(&mut c).await?;
                futures_util::future::try_join_all(invocations.iter().map(|inv| {
                    let mut c = c.clone();
                    async move { inv.invoke_async::<u64>(&mut c).await }
                }))
                .await
            })
            .await?
        } else {
            let mut pipe = redis::pipe();
            // Loading first makes the EVALSHAs below safe after a restart or SCRIPT FLUSH.
            pipe.load_script(script).ignore();
            for inv in &invocations {
                pipe.invoke_script(inv);
            }
            self.with_conn(|mut c| async move { pipe.query_async(&mut c).await })
                .await?
        };
        Ok(counts
            .into_iter()
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .fold(0, usize::saturating_add))
    }

    async fn upsert_inner(&self, user: &UserId, state: UserState) -> Result<UserState> {
        let now = self.inner.clock.now();
        // The upstream count is dropped 24 hours on: every drawdown it counts is then older.
        let up_until = now
            .checked_add(jiff::SignedDuration::from_hours(24))
            .map_or(i64::MAX, Timestamp::as_millisecond);
        let mut inv = self.inner.scripts.upsert.prepare_invoke();
        inv.key(self.user_key(user))
            .key(self.approvals_key(user))
            .arg(now.as_millisecond())
            .arg(up_until);
        for (name, value) in state_fields(&state) {
            inv.arg(name).arg(value);
        }
        let reply: Value = self
            .with_conn(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let kept = parse_view(&pairs(&reply)?)?;
        let state = kept.state.clone();
        self.inner.users.put(user, kept);
        Ok(state)
    }
}

fn parse_appeal(json: &str) -> Result<AppealRecord> {
    serde_json::from_str(json).map_err(|e| corrupt(format!("appeal json: {e}")))
}

impl Store for RedisStore {
    async fn load(
        &self,
        caller: &str,
        user: &UserId,
        idempotency_key: Option<&str>,
    ) -> Result<Loaded> {
        self.load_inner(caller, user, idempotency_key).await
    }

    async fn commit(&self, req: CommitRequest) -> Result<CommitOutcome> {
        self.commit_inner(req, None).await
    }

    async fn load_for_drawdown(
        &self,
        caller: &str,
        user: &UserId,
        idempotency_key: &str,
    ) -> Result<Loaded> {
        match self.inner.users.get(user, self.now_ms()) {
            Some(kept) => Ok(Loaded {
                user: Some(kept.state),
                idempotent: None,
            }),
            None => self.load_inner(caller, user, Some(idempotency_key)).await,
        }
    }

    async fn seen(&self, user: &UserId, loaded: UserState) -> Result<Seen> {
        let Some(turn) = self.inner.users.turn(user) else {
            // Another drawdown of the slot is between its evaluation and its commit: rather
            // than wait for it, or race it on the version, this one goes as every drawdown
            // went before the cache, on a fresh load and with the line checked at commit, so
            // a hot user's drawdowns still run side by side.
            let fresh = self.load_inner("", user, None).await?;
            return Ok(Seen::unversioned(fresh.user.unwrap_or(loaded)));
        };
        // The newest state this instance knows, taken in its turn: no commit of this
        // instance moves it until the turn is over.
        Ok(match self.inner.users.get(user, self.now_ms()) {
            Some(kept) => Seen {
                state: kept.state,
                version: Some(kept.version),
                stable_until: kept.stable_until,
                _turn: Some(turn),
            },
            None => Seen::unversioned(loaded),
        })
    }

    async fn commit_seen(&self, req: CommitRequest, seen: &mut Seen) -> Result<CommitOutcome> {
        self.commit_inner(req, Some(seen)).await
    }

    async fn upsert_user(&self, user: &UserId, state: UserState) -> Result<UserState> {
        self.upsert_inner(user, state).await
    }

    async fn get_decision(
        &self,
        caller: &str,
        decision_id: &str,
    ) -> Result<Option<DecisionRecord>> {
        self.get_decision_inner(Some(caller), decision_id).await
    }

    async fn get_decision_any(&self, decision_id: &str) -> Result<Option<DecisionRecord>> {
        self.get_decision_inner(None, decision_id).await
    }

    async fn create_appeal(&self, caller: &str, appeal: AppealRecord) -> Result<AppealCreated> {
        self.create_appeal_inner(caller, appeal).await
    }

    async fn get_appeal(&self, caller: &str, appeal_id: &str) -> Result<Option<AppealRecord>> {
        self.get_appeal_inner(Some(caller), appeal_id).await
    }

    async fn get_appeal_any(&self, appeal_id: &str) -> Result<Option<AppealRecord>> {
        self.get_appeal_inner(None, appeal_id).await
    }

    async fn list_appeals(
        &self,
        status: Option<AppealStatus>,
        limit: usize,
    ) -> Result<Vec<AppealRecord>> {
        self.list_appeals_inner(status, limit).await
    }

    async fn resolve_appeal(
        &self,
        appeal_id: &str,
        resolution: Resolution,
        note: Option<String>,
        now: Timestamp,
    ) -> Result<AppealResolved> {
        self.resolve_appeal_inner(appeal_id, resolution, note, now)
            .await
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<usize> {
        self.purge_inner(now).await
    }

    async fn ping(&self) -> Result<()> {
        // A first failure may be a connection the server outlived (now dropped, with its
        // idle peers): the second try opens a fresh one. A timeout is not retried.
        match self.ping_once().await {
            Err(StoreError::Unavailable(_)) => self.ping_once().await,
            other => other,
        }
    }
}

/// Pings Redis through the pool every [`RedisConfig::health_check_interval`]: a connection
/// that died with the server is found (and, with the idle ones opened before it, dropped)
/// within one interval even without traffic, and the outage and the recovery are logged
/// once each rather than per request.
pub fn spawn_health_check(store: RedisStore) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(store.inner.config.health_check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing: u64 = 0;
        loop {
            tick.tick().await;
            match store.ping().await {
                Ok(()) if failing > 0 => {
                    tracing::info!(failed_checks = failing, "redis reachable again");
                    failing = 0;
                }
                Ok(()) => {}
                Err(e) => {
                    if failing == 0 {
                        tracing::warn!(cause = %e, "redis unreachable; checking every interval");
                    }
                    failing += 1;
                }
            }
        }
    })
}

/// `EVALSHA` of `script` on `keys`, its arguments to follow.
fn evalsha(script: &redis::Script, keys: &[String]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_fields_round_trip() {
        let mut s = UserState::clean(Fen::MAX, RiskGrade::D);
        s.used = Fen::new(123).unwrap();
        s.new_device = true;
        s.days_overdue = 4;
        let fields: HashMap<String, String> = state_fields(&s)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(parse_state(&fields).unwrap(), s);
        let mut broken = fields.clone();
        broken.remove("grade");
        assert!(matches!(parse_state(&broken), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn keys_share_the_users_hash_tag() {
        let store = RedisStore::new(RedisConfig::default()).unwrap();
        let u = UserId::parse("u-000123").unwrap();
        let tag = format!("{{s{}}}", user_slot(&u));
        assert_eq!(tag, "{s0462}");
        for key in [
            store.user_key(&u),
            store.approvals_key(&u),
            store.idem_key("caller:{x}", &u, "k:{y}"),
            store.audit_key(user_slot(&u)),
        ] {
            assert!(key.starts_with(&format!("lg:{tag}:")), "{key}");
        }
        assert_ne!(store.idem_key("a", &u, "bc"), store.idem_key("ab", &u, "c"));
    }
}
