//! Reads for reconciling what clients were told with what the store holds (the loadtest's
//! auditor): whether a decision is stored, whoever's it is.

use super::RedisStore;
use crate::store::Result;
use crate::store::ids::{DECISION_PREFIX, id_slot};
use deadpool_redis::redis;

impl RedisStore {
    /// Whether decision `decision_id` is stored, whichever caller committed it (`false` for
    /// an id no decision of this store could have). One round trip, to the node of its slot.
    pub async fn decision_stored(&self, decision_id: &str) -> Result<bool> {
        let Some(slot) = id_slot(decision_id).filter(|_| decision_id.starts_with(DECISION_PREFIX))
        else {
            return Ok(false);
        };
        let key = format!("{}d:{decision_id}", self.tag(slot));
        self.with_conn(|mut c| async move {
            redis::cmd("EXISTS")
                .arg(&key)
                .query_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|n| n == 1)
    }
}
