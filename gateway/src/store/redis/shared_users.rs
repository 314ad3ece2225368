//! Distinct users counted across instances: one Redis HyperLogLog per key (`PFADD`,
//! `PFCOUNT`), so every instance's users of one shadow candidate's outcome change are counted
//! once ([`crate::shadow`]). The keys carry the hash tag `{shadow}` (one node on a cluster)
//! and expire a week after their last addition.

use super::RedisStore;
use crate::store::Result;
use deadpool_redis::redis;

/// How long a sketch outlives its last addition, in ms.
const TTL_MS: u64 = 7 * 24 * 3600 * 1000;

impl RedisStore {
    /// The sketch of `candidate` (a digest of its document) and `change` (a transition).
    pub fn shared_users_key(&self, candidate: &str, change: &str) -> String {
        format!(
            "{}:{{shadow}}:users:{candidate}:{change}",
            self.config().key_prefix
        )
    }

    /// Adds `user` to the sketch `key` (and renews its expiry); sent with the next batch,
    /// not awaited: a lost addition only makes the shared count an undercount.
    pub fn add_shared_user(&self, key: String, user: &str) {
        let mut add = redis::cmd("PFADD");
        add.arg(&key).arg(user);
        let mut ttl = redis::cmd("PEXPIRE");
        ttl.arg(&key).arg(TTL_MS);
        if self.is_cluster() {
            let store = self.clone();
            tokio::spawn(async move {
                let _ = store
                    .with_conn(|mut c| async move {
                        add.query_async::<redis::Value>(&mut c).await?;
                        ttl.query_async::<redis::Value>(&mut c).await
                    })
                    .await;
            });
        } else {
            self.coalesced_detached(add);
            self.coalesced_detached(ttl);
        }
    }

    /// The estimates of `keys`, in order (0 for a key that does not exist), in one round
    /// trip.
    pub async fn shared_users(&self, keys: Vec<String>) -> Result<Vec<u64>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let cmds = keys
            .into_iter()
            .map(|k| {
                let mut cmd = redis::cmd("PFCOUNT");
                cmd.arg(k);
                cmd
            })
            .collect();
        self.query_each(cmds).await
    }
}
