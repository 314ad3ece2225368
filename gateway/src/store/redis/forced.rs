//! The forced peak window, shared by every instance on this Redis.
//!
//! `PUT /admin/policy/force` on one instance stores what it forced in `P:{th}:force` (the
//! window's name, or `normal`; no key: the calendar decides) and announces it on the
//! thresholds channel; every instance's threshold refresher reads the key with the
//! thresholds pointer (on that notice and on every `threshold_poll_ms`) and forces the same
//! on its own [`Policy`]. So a force reaches every instance within one poll at most, and an
//! instance started later, or back from a restart, takes it on its first refresh. The last
//! write wins: two operators forcing different windows at once leave every instance on
//! whichever Redis holds.

use super::{RedisStore, StoreError};
use crate::policy::Policy;
use crate::store::Result;
use deadpool_redis::redis::{self, Script};

/// KEYS: the force key. ARGV: the forced window (empty: back to the calendar), the channel.
const STORE_FORCE: &str = r"
if ARGV[1] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[1]) end
redis.call('PUBLISH', ARGV[2], 'force')
return 1
";

impl RedisStore {
    fn force_key(&self) -> String {
        format!("{}:{{th}}:force", self.config().key_prefix)
    }

    /// Stores what an operator forced (`None`: back to the calendar; see
    /// [`Policy::forced_window`]) for every instance, and tells them at once.
    pub async fn store_forced_window(&self, window: Option<&str>) -> Result<()> {
        let (_, _, channel) = self.threshold_keys();
        let script = Script::new(STORE_FORCE);
        let mut inv = script.prepare_invoke();
        inv.key(self.force_key())
            .arg(window.unwrap_or(""))
            .arg(channel);
        let _: i64 = self
            .with_conn(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        Ok(())
    }

    /// The forced window every instance follows (`None`: the calendar decides).
    pub async fn forced_window(&self) -> Result<Option<String>> {
        let key = self.force_key();
        self.with_conn(|mut c| async move { redis::cmd("GET").arg(&key).query_async(&mut c).await })
            .await
    }
}

/// One refresh of the forced window: `policy` follows what Redis holds. Answers whether it
/// changed anything.
pub(super) async fn follow_forced_window(redis: &RedisStore, policy: &Policy) -> Result<bool> {
    // Counted before the read: a force through this instance while the read is out was
    // stored before it was applied here, so what the read answers is older than it.
    let forces = policy.forces();
    let stored = redis.forced_window().await?;
    if stored == policy.forced_window() {
        return Ok(false);
    }
    match policy.force_unless_forced_since(stored.as_deref(), forces) {
        Ok(Some(snapshot)) => {
            tracing::info!(window = %snapshot.window, forced = snapshot.forced,
                "policy forced through the store (another instance's operator)");
            Ok(true)
        }
        // Forced here meanwhile; that force's notice brings the next refresh.
        Ok(None) => Ok(false),
        // A window this instance's configuration does not have (the fleet is mid-reload):
        // it keeps its own policy, and says so on each refresh until they agree.
        Err(e) => Err(StoreError::Corrupt(format!(
            "the fleet's forced window: {e}; this instance keeps its own policy"
        ))),
    }
}
