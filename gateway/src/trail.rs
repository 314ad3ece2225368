//! The per-user trail: what this instance answered each user lately, decisions and
//! transient refusals (429/503) alike, for the console's customer page.
//!
//! A decision is also in the store, but the store keeps no index by user; a 429 or 503
//! leaves no record anywhere else. The trail is bounded twice: at most `users` users (the
//! least recently recorded go first, moka's eviction) and at most `per_user` entries each
//! (the oldest go first). It lives in this process only: in a fleet each instance keeps what
//! it answered, and a restart forgets it. A request refused before the user it acts for was
//! read (a shed at the edge, before its body) names no user and is not in any trail.
//!
//! # Layout
//! - [`Trail`]: the bounded map of users to their recent entries.
//! - [`TrailEntry`], [`TrailKind`]: one answer.

use crate::store::DecisionRecord;
use jiff::Timestamp;
use risk_core::{Outcome, ReasonCode};
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// One answer to a user's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailEntry {
    /// When it was answered (the injected clock).
    pub at: Timestamp,
    /// What was answered.
    pub kind: TrailKind,
}

/// A decision or a transient refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrailKind {
    /// A committed decision (a replay is not recorded again).
    Decision {
        /// Its id.
        decision_id: String,
        /// Approved, rejected or review.
        outcome: Outcome,
        /// The amount asked for.
        amount_fen: u64,
        /// Its reasons' codes, most decisive first.
        reasons: Vec<ReasonCode>,
        /// The policy it was decided under.
        policy: String,
    },
    /// A 429 or 503: rate limited, shed, or a dependency unavailable.
    Refused {
        /// The route class (`drawdown`, `credit_line`, `appeal`).
        route: &'static str,
        /// 429 or 503.
        status: u16,
        /// The refusal's code (`RATE_LIMITED_USER`, `CAPACITY_SHED`, …).
        code: &'static str,
    },
}

type Entries = Arc<Mutex<VecDeque<TrailEntry>>>;

/// The per-user trail (see the module docs). Cheap to clone; off when built with 0 users.
#[derive(Clone)]
pub struct Trail {
    users: Option<moka::sync::Cache<Arc<str>, Entries>>,
    per_user: usize,
}

impl fmt::Debug for Trail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trail")
            .field(
                "users",
                &self.users.as_ref().map(moka::sync::Cache::entry_count),
            )
            .field("per_user", &self.per_user)
            .finish()
    }
}

impl Trail {
    /// A trail of at most `users` users and `per_user` entries each (either 0: off).
    pub fn new(users: u64, per_user: usize) -> Trail {
        let users = (users > 0 && per_user > 0)
            .then(|| moka::sync::Cache::builder().max_capacity(users).build());
        Trail { users, per_user }
    }

    /// Whether entries are kept.
    pub fn is_on(&self) -> bool {
        self.users.is_some()
    }

    fn push(&self, user: &str, entry: TrailEntry) {
        let Some(users) = &self.users else {
            return;
        };
        let entries = match users.get(user) {
            Some(e) => e,
            None => users.get_with(Arc::from(user), Entries::default),
        };
        // Held for a push and a pop only; a panic there leaves a valid deque.
        let mut q = entries.lock().unwrap_or_else(PoisonError::into_inner);
        if q.len() >= self.per_user {
            q.pop_front();
        }
        q.push_back(entry);
    }

    /// Records a committed decision for its user.
    pub fn decision(&self, d: &DecisionRecord, at: Timestamp) {
        if !self.is_on() {
            return;
        }
        self.push(
            &d.user_id,
            TrailEntry {
                at,
                kind: TrailKind::Decision {
                    decision_id: d.decision_id.clone(),
                    outcome: d.outcome,
                    amount_fen: d.amount_fen,
                    reasons: d.reasons.iter().map(|r| r.code).collect(),
                    policy: d.policy.clone(),
                },
            },
        );
    }

    /// Records a transient refusal of a request acting for `user`.
    pub fn refused(
        &self,
        user: &str,
        route: &'static str,
        status: u16,
        code: &'static str,
        at: Timestamp,
    ) {
        self.push(
            user,
            TrailEntry {
                at,
                kind: TrailKind::Refused {
                    route,
                    status,
                    code,
                },
            },
        );
    }

    /// The user's entries, newest first.
    pub fn of(&self, user: &str) -> Vec<TrailEntry> {
        let Some(entries) = self.users.as_ref().and_then(|u| u.get(user)) else {
            return Vec::new();
        };
        let q = entries.lock().unwrap_or_else(PoisonError::into_inner);
        q.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn each_user_keeps_their_newest_entries() {
        let trail = Trail::new(100, 3);
        for i in 0..5 {
            trail.refused("u-1", "drawdown", 429, "RATE_LIMITED_USER", at(i));
        }
        trail.refused("u-2", "credit_line", 503, "CAPACITY_SHED", at(9));
        let got = trail.of("u-1");
        assert_eq!(
            got.iter().map(|e| e.at).collect::<Vec<_>>(),
            [at(4), at(3), at(2)]
        );
        assert_eq!(trail.of("u-2").len(), 1);
        assert!(trail.of("u-3").is_empty());
    }

    #[test]
    fn an_off_trail_keeps_nothing() {
        let trail = Trail::new(0, 20);
        assert!(!trail.is_on());
        trail.refused("u-1", "drawdown", 429, "RATE_LIMITED_USER", at(0));
        assert!(trail.of("u-1").is_empty());
    }

    #[test]
    fn the_number_of_users_is_bounded() {
        let trail = Trail::new(10, 2);
        for i in 0..200 {
            trail.refused(
                &format!("u-{i}"),
                "drawdown",
                429,
                "RATE_LIMITED_USER",
                at(i),
            );
        }
        let users = trail.users.as_ref().unwrap();
        users.run_pending_tasks();
        assert!(users.entry_count() <= 10, "{}", users.entry_count());
    }
}
