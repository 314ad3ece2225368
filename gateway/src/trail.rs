//! The per-user trail: what this instance answered each user lately, decisions and
//! transient refusals (429/503) alike, for the console's customer page.
//!
//! A decision is also in the store, but the store keeps no index by user; a 429 or 503
//! leaves no record anywhere else. The trail is bounded twice: at most `users` users (past it,
//! the user first recorded longest ago goes) and at most `per_user` entries each (the oldest
//! go first). It lives in this process only: in a fleet each instance keeps what
//! it answered, and a restart forgets it. A request refused before the user it acts for was
//! read (a shed at the edge, before its body) names no user and is not in any trail.
//!
//! Recording is on every drawdown's path, so it is a sharded map of `std` mutexes hashed
//! with `foldhash` (as the memory store's), held for one lookup and one push: a general
//! cache (moka) would keep recency bookkeeping on every drawdown that a trail, which only
//! ever drops its oldest, does not need (BENCHMARKS.md, "What each design choice was
//! measured to give").
//!
//! # Layout
//! - [`Trail`]: the bounded map of users to their recent entries.
//! - [`TrailEntry`], [`TrailKind`]: one answer.

use crate::store::DecisionRecord;
use jiff::Timestamp;
use risk_core::{Outcome, ReasonCode};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::BuildHasher;
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

/// Shards of the map: a power of two, so a hash picks one with a mask.
const SHARDS: usize = 64;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Default)]
struct Shard {
    users: Map<Arc<str>, VecDeque<TrailEntry>>,
    /// The shard's users in the order they were first recorded: the eviction order.
    order: VecDeque<Arc<str>>,
}

/// The per-user trail (see the module docs). Cheap to clone; off when built with 0 users.
#[derive(Clone)]
pub struct Trail {
    shards: Option<Arc<[Mutex<Shard>]>>,
    hasher: foldhash::fast::RandomState,
    users_per_shard: usize,
    per_user: usize,
}

impl fmt::Debug for Trail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trail")
            .field("on", &self.is_on())
            .field("users_per_shard", &self.users_per_shard)
            .field("per_user", &self.per_user)
            .finish()
    }
}

impl Trail {
    /// A trail of at most `users` users (rounded up to a multiple of its shards) and
    /// `per_user` entries each (either 0: off).
    pub fn new(users: u64, per_user: usize) -> Trail {
        let users_per_shard = usize::try_from(users.div_ceil(SHARDS as u64)).unwrap_or(usize::MAX);
        let shards = (users > 0 && per_user > 0)
            .then(|| (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect());
        Trail {
            shards,
            hasher: foldhash::fast::RandomState::default(),
            users_per_shard,
            per_user,
        }
    }

    /// Whether entries are kept.
    pub fn is_on(&self) -> bool {
        self.shards.is_some()
    }

    fn shard(&self, user: &str) -> Option<std::sync::MutexGuard<'_, Shard>> {
        let shards = self.shards.as_ref()?;
        // The low bits of a 64-bit hash (`SHARDS` is a power of two): masked first, so the
        // conversion cannot fail.
        let i = usize::try_from(self.hasher.hash_one(user) & (SHARDS as u64 - 1)).unwrap_or(0);
        // Every operation under the lock is one insert, remove or push: a panic there
        // leaves a consistent shard.
        Some(shards[i].lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn push(&self, user: &str, entry: TrailEntry) {
        let Some(mut shard) = self.shard(user) else {
            return;
        };
        if let Some(q) = shard.users.get_mut(user) {
            if q.len() >= self.per_user {
                q.pop_front();
            }
            q.push_back(entry);
            return;
        }
        if shard.users.len() >= self.users_per_shard
            && let Some(first) = shard.order.pop_front()
        {
            shard.users.remove(&first);
        }
        let key: Arc<str> = Arc::from(user);
        shard.order.push_back(Arc::clone(&key));
        shard.users.insert(key, VecDeque::from([entry]));
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
        self.shard(user)
            .and_then(|s| s.users.get(user).map(|q| q.iter().rev().cloned().collect()))
            .unwrap_or_default()
    }

    /// Users held.
    pub fn users(&self) -> usize {
        self.shards.as_ref().map_or(0, |shards| {
            shards
                .iter()
                .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).users.len())
                .sum()
        })
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
        for i in 0..2000 {
            trail.refused(
                &format!("u-{i}"),
                "drawdown",
                429,
                "RATE_LIMITED_USER",
                at(i),
            );
        }
        // 10 users round up to one per shard.
        assert!(trail.users() <= 64, "{}", trail.users());
        assert!(trail.users() > 0);
    }
}
