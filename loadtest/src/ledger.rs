//! What clients were told about each drawdown, kept for the auditor ([`crate::audit`]).
//!
//! Every drawdown a journey sends ends in one [`LedgerEntry`]: its idempotency key, user
//! and amount, and what the client learnt. An approval is what the store must never lose;
//! an outcome the client never learnt (a timeout, a reset connection or a store failure on
//! some attempt, and no decision after) is what the auditor resolves by asking again with
//! the same key. The ledger also holds every user's seeded line, the start of the
//! reconciliation of `used_fen`.
//!
//! # Layout
//! - [`Ledger`]: a run's drawdowns and seeded users; written as `ledger.json`.
//! - [`LedgerEntry`], [`Told`]: one drawdown and what its client was told.
//! - [`SeededUser`]: a user's line as seeded before the run.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// A run's drawdowns and seeded users.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// The prefix of every idempotency key of the run (`lt-<nonce>-`): the run's own
    /// decisions in a store that holds other runs'.
    pub key_prefix: String,
    /// Every user as seeded before the run.
    pub users: Vec<SeededUser>,
    /// One entry per drawdown sent, in completion order.
    pub entries: Vec<LedgerEntry>,
}

/// A user's line as seeded before the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeededUser {
    /// User id.
    pub id: String,
    /// Credit line, fen.
    pub limit_fen: u64,
    /// Used at the start, fen.
    pub used_fen: u64,
}

/// One drawdown and what its client was told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// `Idempotency-Key`.
    pub key: String,
    /// User id.
    pub user: String,
    /// Amount asked, fen.
    pub amount_fen: u64,
    /// What the client learnt in the end.
    pub told: Told,
}

/// What a client learnt of its drawdown in the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Told {
    /// Approved (200, `outcome` approved): the store must hold this decision.
    Approved {
        /// `decision_id` of the answer.
        decision_id: String,
    },
    /// A decision other than an approval (rejected, review).
    Decided,
    /// A refusal that commits nothing (a rate limit, a capacity shed, an invalid request)
    /// on every attempt.
    Refused,
    /// No decision, and on some attempt an answer that may follow a commit (a timeout, a
    /// reset connection, `DEPENDENCY_UNAVAILABLE`, a 5xx): the outcome is unknown.
    Unknown,
}

impl Ledger {
    /// Writes `ledger.json` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), Error> {
        let json = serde_json::to_vec(self).map_err(|e| Error::Serialise(e.to_string()))?;
        let path = dir.join("ledger.json");
        std::fs::write(&path, json).map_err(|e| Error::io(path, e))
    }

    /// Reads `ledger.json` from `dir`.
    pub fn read(dir: &Path) -> Result<Ledger, Error> {
        let path = dir.join("ledger.json");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(path.clone(), e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Serialise(format!("{path:?}: {e}")))
    }
}
