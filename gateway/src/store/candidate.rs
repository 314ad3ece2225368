//! The staged shadow candidate ([`crate::shadow`]), kept in the store so that every instance
//! of a fleet evaluates, reports, promotes and discards the same one, and a restart keeps it.
//!
//! - Memory store: one slot beside the store's other records (it lives as long as the store).
//! - Redis store: one hash, `P:{th}:shadow` (`id`, `rec`), written and cleared by scripts that
//!   also announce the change on the thresholds channel; every instance's threshold refresher
//!   reads it with the thresholds pointer, on that notice and on every `threshold_poll_ms`
//!   ([`super::redis::thresholds`]). The admin routes read it before they act.
//!
//! A candidate is named by its `id`, minted when it is staged: an instance that holds the
//! same id keeps its counts; another id (staged again, on any instance) starts them afresh.
//! Clearing names the id it clears, so a promotion or discard never drops a candidate staged
//! meanwhile by another operator.

use super::{AnyStore, Result};
use serde::{Deserialize, Serialize};

/// A staged candidate as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedCandidate {
    /// Minted when staged ([`StagedCandidate::mint_id`]).
    pub id: String,
    /// The operator who staged it.
    pub staged_by: String,
    /// When (RFC 3339, the staging gateway's clock).
    pub staged_at: String,
    /// The thresholds document, as JSON.
    pub document: String,
}

impl StagedCandidate {
    /// A fresh candidate id: `sc_` and a ULID of `now` (its random part makes two stagings in
    /// the same millisecond distinct).
    pub fn mint_id(now: jiff::Timestamp) -> String {
        let ms = u64::try_from(now.as_millisecond()).unwrap_or(0);
        let random = rand::random::<u128>();
        format!("sc_{}", ulid::Ulid::from_parts(ms, random))
    }
}

impl AnyStore {
    /// Stores `candidate` as the staged one, replacing any. One round trip.
    pub async fn stage_candidate(&self, candidate: &StagedCandidate) -> Result<()> {
        match self {
            AnyStore::Memory(m) => {
                m.faults().check()?;
                *m.staged_candidate() = Some(candidate.clone());
                Ok(())
            }
            AnyStore::Redis(r) => r.stage_candidate(candidate).await,
        }
    }

    /// The staged candidate, if any. One round trip.
    pub async fn staged_candidate(&self) -> Result<Option<StagedCandidate>> {
        match self {
            AnyStore::Memory(m) => {
                m.faults().check()?;
                Ok(m.staged_candidate().clone())
            }
            AnyStore::Redis(r) => r.staged_candidate().await,
        }
    }

    /// Clears the staged candidate if it is `id`; answers whether it was (a candidate staged
    /// since under another id stays). One round trip.
    pub async fn unstage_candidate(&self, id: &str) -> Result<bool> {
        match self {
            AnyStore::Memory(m) => {
                m.faults().check()?;
                let mut slot = m.staged_candidate();
                if slot.as_ref().is_some_and(|c| c.id == id) {
                    *slot = None;
                    return Ok(true);
                }
                Ok(false)
            }
            AnyStore::Redis(r) => r.unstage_candidate(id).await,
        }
    }
}
