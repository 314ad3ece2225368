//! The staged shadow candidate on Redis ([`crate::store::candidate`]): the hash
//! `P:{th}:shadow` (`id`, `rec`: the record as JSON), beside the thresholds (same hash tag).

use super::{RedisStore, StoreError};
use crate::store::Result;
use crate::store::candidate::StagedCandidate;
use deadpool_redis::redis::{self, Script};

/// KEYS: the candidate hash. ARGV: id, record, the thresholds channel.
const STAGE: &str = r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'rec', ARGV[2])
redis.call('PUBLISH', ARGV[3], 'shadow')
return 1
";

/// KEYS: the candidate hash. ARGV: id, the thresholds channel. 1 when it was that id.
const UNSTAGE: &str = r"
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], 'shadow')
return 1
";

impl RedisStore {
    fn candidate_key(&self) -> String {
        format!("{}:{{th}}:shadow", self.config().key_prefix)
    }

    /// Stores `candidate` for every instance and tells them at once.
    pub async fn stage_candidate(&self, candidate: &StagedCandidate) -> Result<()> {
        let rec = serde_json::to_string(candidate)
            .map_err(|e| StoreError::Invalid(format!("candidate does not serialise: {e}")))?;
        let (_, _, channel) = self.threshold_keys();
        let script = Script::new(STAGE);
        let mut inv = script.prepare_invoke();
        inv.key(self.candidate_key())
            .arg(&candidate.id)
            .arg(rec)
            .arg(channel);
        let _: i64 = self
            .with_conn(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        Ok(())
    }

    /// The candidate every instance evaluates, if one is staged.
    pub async fn staged_candidate(&self) -> Result<Option<StagedCandidate>> {
        let key = self.candidate_key();
        let rec: Option<String> = self
            .with_conn(|mut c| async move {
                redis::cmd("HGET")
                    .arg(&key)
                    .arg("rec")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        rec.map(|json| {
            serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("the staged candidate: {e}")))
        })
        .transpose()
    }

    /// Clears the staged candidate if it is `id`; answers whether it was.
    pub async fn unstage_candidate(&self, id: &str) -> Result<bool> {
        let (_, _, channel) = self.threshold_keys();
        let script = Script::new(UNSTAGE);
        let mut inv = script.prepare_invoke();
        inv.key(self.candidate_key()).arg(id).arg(channel);
        let cleared: i64 = self
            .with_conn(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        Ok(cleared == 1)
    }
}
