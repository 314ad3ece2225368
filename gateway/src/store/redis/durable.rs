//! Approvals acknowledged only once a replica holds them.
//!
//! Redis replicates asynchronously: a primary that dies after answering a commit, before
//! its replica received it, takes the commit with it, and the promoted replica knows
//! nothing of an approval a client was told about. On a cluster, a commit that reserves
//! credit is therefore sent as one pipeline with `WAIT <replica_acks> <timeout>` behind it,
//! on the same connection to the same primary: `WAIT` answers how many replicas hold every
//! write that connection made up to then (the commit included). Fewer than
//! [`RedisConfig::replica_acks`](super::RedisConfig::replica_acks) within
//! [`RedisConfig::replica_ack_timeout`](super::RedisConfig::replica_ack_timeout) answers
//! [`StoreError::Timeout`] (`503 DEPENDENCY_UNAVAILABLE`): the decision is committed on the
//! primary and a retry with the same idempotency key replays it, or, when the primary died
//! with it, finds no record and decides afresh. Either way no client holds an approval the
//! store may lose.
//!
//! A replay of an approval is an acknowledgement too, and the retry that follows such a
//! timeout is answered by a replay: so before an approval is replayed (found by the load
//! or by the commit script), [`RedisStore::ensure_replicated`] writes a marker in the
//! decision's slot (`P:{sNNNN}:repl`, expiring) and sends `WAIT` behind it, which covers
//! every write that primary took before, the original commit included; too few replicas
//! answer `Timeout` again, and the client retries again.
//!
//! `WAIT` makes the primary wait, it does not make the write synchronous: Redis calls this
//! "best effort" consistency, and a failover that promotes a replica that did not
//! acknowledge is still possible when several replicas exist (each primary here has one).

use super::{Conn, RedisStore, duration_ms, evalsha, redis_error};
use crate::store::{Result, Slot, StoreError};
use deadpool_redis::redis::{self, Script, Value};

impl RedisStore {
    /// Replicas a reserving commit waits for: [`super::RedisConfig::replica_acks`], which
    /// defaults to 1 on a cluster or behind Sentinels and 0 on one server (configuration
    /// allows more than 0 only on those two).
    pub fn replica_acks(&self) -> u32 {
        let c = self.config();
        c.replica_acks
            .unwrap_or(u32::from(c.cluster || c.is_sentinel()))
    }

    /// `EVALSHA` of `script` (keys `keys`, arguments added by `args`) followed on the same
    /// connection by `WAIT` (on a cluster, to the node of `keys`): the reply and how many replicas acknowledged. As
    /// [`RedisStore::eval`], a node without the script gets it and the call is sent again.
    pub(super) async fn eval_acked(
        &self,
        script: &Script,
        keys: &[String],
        args: impl Fn(&mut redis::Cmd),
    ) -> Result<(Value, i64)> {
        let replicas = self.replica_acks();
        let timeout = self.ack_timeout_ms();
        let args = &args;
        self.with_script(script, move || async move {
            let mut pipe = redis::pipe();
            let mut cmd = evalsha(script, keys);
            args(&mut cmd);
            pipe.add_command(cmd);
            pipe.cmd("WAIT").arg(replicas).arg(timeout);
            // The pipeline goes to the node of the script's keys (`WAIT` names none), so the
            // replicas counted are that primary's.
            let replies: Vec<Value> = self
                .with_conn(|mut c: Conn| async move {
                    use redis::aio::ConnectionLike;
                    c.req_packed_commands(&pipe, 0, 2).await
                })
                .await?;
            let mut replies = replies.into_iter();
            let (Some(reply), Some(acked)) = (replies.next(), replies.next()) else {
                return Err(StoreError::Corrupt(
                    "a pipeline of two got fewer replies".into(),
                ));
            };
            if let Value::ServerError(e) = reply {
                return Ok(Err(e.into()));
            }
            match acked {
                Value::Int(n) => Ok(Ok((reply, n))),
                Value::ServerError(e) => Err(redis_error(&e.into())),
                _ => Err(StoreError::Corrupt("WAIT answered no count".into())),
            }
        })
        .await
    }

    /// [`super::RedisConfig::replica_ack_timeout`] in whole milliseconds, at least one (what
    /// `WAIT` takes; 0 would wait for ever).
    fn ack_timeout_ms(&self) -> u64 {
        duration_ms(self.config().replica_ack_timeout).max(1)
    }

    /// Before an approval stored in `slot` is replayed: a marker written in the slot, then
    /// `WAIT`, one pipeline to the slot's primary; [`StoreError::Timeout`] when fewer than
    /// [`Self::replica_acks`] replicas hold everything that primary took before it (see
    /// the module docs). Nothing to do with `replica_acks = 0` (always so on one server
    /// without Sentinels).
    pub(super) async fn ensure_replicated(&self, slot: Slot) -> Result<()> {
        let replicas = self.replica_acks();
        if replicas == 0 {
            return Ok(());
        }
        let timeout = self.ack_timeout_ms();
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(format!("{}repl", self.tag(slot)))
            .arg(1)
            .arg("PX")
            .arg(60_000)
            .ignore();
        pipe.cmd("WAIT").arg(replicas).arg(timeout);
        let (acked,): (i64,) = self
            .with_conn(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        if acked < i64::from(replicas) {
            return Err(self.unacknowledged(acked));
        }
        Ok(())
    }

    /// A committed reservation that fewer than [`Self::replica_acks`] replicas hold: the
    /// error to answer (a retry with the same key replays it, see the module docs).
    pub(super) fn unacknowledged(&self, acked: i64) -> StoreError {
        tracing::warn!(
            acked,
            wanted = self.replica_acks(),
            timeout_ms = self.config().replica_ack_timeout.as_millis(),
            "an approval committed on the primary is not on a replica in time: \
             answered as a timeout, replayable with its key"
        );
        StoreError::Timeout
    }
}
