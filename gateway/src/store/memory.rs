//! The embedded in-memory store: sharded, bounded, with the Redis store's semantics.
//!
//! # Layout
//! - `shards` (default 64) mutex-guarded shards. A user's slot ([`user_slot`]) picks the
//!   shard (`slot % shards`); the shard holds the user's state, idempotency records (under
//!   the user, by caller, by key) and decisions (by id). A commit touches exactly one shard,
//!   under one lock held for a few map operations and never across an `.await`, so
//!   unrelated users do not contend. This is the layout Redis Cluster needs: one hash tag
//!   per slot.
//! - Decisions are found by id alone because the id names its slot ([`super::ids`]); no
//!   second index.
//! - Appeals are few: one global map in creation order, with an index of open ones.
//!   [`Store::create_appeal`] locks the decision's shard, then the appeals (always in that
//!   order).
//!
//! # Bounded memory
//! An idempotency record lives for [`MemoryConfig::idempotency_retention`] (at least 24 h)
//! from its commit, a decision for [`MemoryConfig::decision_retention`] (at least as long,
//! so a replay always finds its decision). Each commit drops up to
//! [`MemoryConfig::purge_batch`] expired records of its shard; [`Store::purge_expired`]
//! drops all of them and is meant to run on a schedule. A commit never replays an expired
//! record, purged or not; [`Store::load`] (which takes no time) answers a record until it is
//! purged.
//!
//! # The 24-hour drawdown count
//! A user's `drawdowns_24h`, which feeds the velocity rule, is a sliding count under the
//! store's clock (the gateway's injected clock): the count the upstream system set with the
//! user's state ([`Store::upsert_user`]), which is dropped 24 hours after it was set (every
//! drawdown it counts was then at least 24 hours old), plus each approval this store
//! committed in the last 24 hours. Approvals are counted per whole second (the API's
//! timestamps are whole seconds): one entry per second with approvals, so a user holds at
//! most 86,400 entries however many drawdowns it makes, and an idle user none.
//!
//! # Hashing
//! The hash maps (users, idempotency records) hash with `foldhash` (randomly seeded per
//! process), not std's SipHash: the keys are ids the gateway has validated (at most 64
//! characters), so flooding resistance buys nothing, and SipHash weighs on every commit
//! (`BENCHMARKS.md`, "gateway request path").
//!
//! # Poisoning
//! No code panics while holding a lock (no indexing, no unwrap); should one ever, the next
//! caller takes the lock anyway rather than fail every request of 1/64 of the users.

use super::ids::{SLOTS, id_slot, user_slot};
use super::{
    AppealCreated, AppealRecord, AppealResolved, AppealStatus, CommitOutcome, CommitRequest,
    DecisionRecord, DemoUser, Fingerprint, IdempotentRecord, Loaded, ReasonRecord, Resolution,
    Result, Store, StoreError, demo_users,
};
use super::{check_commit, format_like, invalid};
use crate::clock::{SharedClock, SystemClock};
use futures_util::future::Either;
use jiff::Timestamp;
use risk_core::{Outcome, UserId, UserState};
use std::collections::{BTreeMap, BTreeSet, VecDeque, btree_map};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The maps of the store (see the module docs, "Hashing").
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The memory store's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Number of shards: a power of two from 1 to 1024.
    pub shards: usize,
    /// How long an idempotency record is kept after its commit: at least 24 h.
    pub idempotency_retention: Duration,
    /// How long a decision is kept after its commit (for `GET` and appeals): at least
    /// `idempotency_retention`.
    pub decision_retention: Duration,
    /// At most this many expired records are dropped by each commit (lazy purge), so a
    /// commit's lock hold stays short. 0 turns lazy purging off.
    pub purge_batch: usize,
    /// The most decisions held (the memory a decision takes with its idempotency records:
    /// `BENCHMARKS.md`, "gateway request path"). When full, a new decision is refused with
    /// [`StoreError::Unavailable`] (the gateway answers `503 DEPENDENCY_UNAVAILABLE`, nothing
    /// written), as Redis does under `maxmemory` with `noeviction`; replays still answer.
    /// Evicting instead would forget idempotency keys within their retention and let a retry
    /// reserve twice. A soft limit: concurrent commits may pass it by a few.
    pub max_decisions: usize,
}

/// The shortest idempotency retention the API allows.
pub const MIN_IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Checks the retentions every store keeps, `(idempotency, decision)` with the names of their
/// fields: idempotency records at least 24 hours (the API's promise), decisions at least as
/// long (a replay answers with its decision) and at most a century (timestamps end in 9999:
/// anything longer is a configuration mistake). The error is the field and its problem.
pub(crate) fn check_retention(
    (idempotency, idempotency_field): (Duration, &'static str),
    (decision, decision_field): (Duration, &'static str),
) -> Result<(), (&'static str, &'static str)> {
    if idempotency < MIN_IDEMPOTENCY_RETENTION {
        return Err((idempotency_field, "must be at least 24 hours"));
    }
    if decision < idempotency {
        return Err((decision_field, "must be at least the idempotency retention"));
    }
    if decision > Duration::from_secs(100 * 366 * 24 * 3600) {
        return Err((decision_field, "must be at most 100 years"));
    }
    Ok(())
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            shards: 64,
            idempotency_retention: MIN_IDEMPOTENCY_RETENTION,
            decision_retention: Duration::from_secs(30 * 24 * 3600),
            purge_batch: 32,
            max_decisions: 4_000_000,
        }
    }
}

/// A [`MemoryConfig`] field out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store.memory.{field}: {problem}")]
pub struct MemoryConfigError {
    field: &'static str,
    problem: &'static str,
}

impl MemoryConfigError {
    /// The field at fault.
    pub const fn field(&self) -> &'static str {
        self.field
    }
}

impl MemoryConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), MemoryConfigError> {
        let err = |field, problem| Err(MemoryConfigError { field, problem });
        if !self.shards.is_power_of_two() || self.shards > usize::from(SLOTS) {
            return err("shards", "must be a power of two from 1 to 1024");
        }
        check_retention(
            (self.idempotency_retention, "idempotency_retention"),
            (self.decision_retention, "decision_retention"),
        )
        .or_else(|(field, problem)| err(field, problem))?;
        if self.max_decisions == 0 {
            return err("max_decisions", "must be at least 1");
        }
        Ok(())
    }
}

/// Record counts, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryStats {
    /// Users.
    pub users: usize,
    /// Live idempotency records.
    pub idempotency_records: usize,
    /// Stored decisions.
    pub decisions: usize,
    /// Appeals (all statuses).
    pub appeals: usize,
}

/// The sharded in-memory store. Cloning is cheap and shares the data.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: MemoryConfig,
    shards: Box<[Mutex<Shard>]>,
    appeals: Mutex<Appeals>,
    /// Decisions held, against `config.max_decisions`. Relaxed: a soft limit that orders
    /// nothing else; the shard mutexes publish the records themselves.
    decisions: AtomicUsize,
    /// Injected latency and outages (off unless a test or demo turns them on).
    faults: super::Faults,
    /// Now, for the sliding 24-hour drawdown count when a state is read.
    clock: SharedClock,
    /// The audit trail of operator changes ([`super::audit`]).
    operator_log: Mutex<super::audit::MemoryLog>,
    /// The inputs of recent decisions ([`super::inputs`]): one ring for the whole store, in
    /// the order they were kept, so that its bound is the store's.
    inputs: Mutex<InputsRing>,
    /// The staged shadow candidate ([`super::candidate`]).
    candidate: Mutex<Option<super::StagedCandidate>>,
}

/// Kept decision inputs with their decision keys, oldest kept first.
type InputsRing = VecDeque<(u128, super::DecisionInputs)>;

#[derive(Default)]
struct Shard {
    users: HashMap<UserId, UserEntry>,
    /// By [`decision_key`], in key order. The keys are ULIDs, which begin with the time they
    /// were minted, so a new decision goes in at the right edge of the tree (no table to
    /// grow and rehash, as a hash map does with every record it holds: `BENCHMARKS.md`,
    /// "gateway request path"), and the oldest, which expire first, are at the left, where
    /// the purge takes them.
    decisions: BTreeMap<u128, DecisionEntry>,
    /// The idempotency records in the order they were committed, which is the order they
    /// expire in while the clock does not step back: the purge takes them from the front. An
    /// entry whose record was since replaced (different seq) is skipped.
    key_expiry: VecDeque<KeyExpiry>,
    next_seq: u64,
    /// The policy name and `evaluated_at` of the last decision stored ([`share`]).
    last_policy: Option<Arc<str>>,
    last_evaluated_at: Option<Arc<str>>,
}

struct UserEntry {
    /// The user's id, shared by the user's stored decisions.
    id: Arc<str>,
    /// The state as last set, but for `drawdowns_24h`, which is the upstream count as set:
    /// the state answered is [`UserEntry::state_at`].
    state: UserState,
    /// When the upstream count in `state.drawdowns_24h` is dropped: 24 hours after it was set.
    upstream_until: Timestamp,
    /// Approvals committed here: (unix second, approvals in it), oldest first.
    approvals: VecDeque<(i64, u32)>,
    /// caller -> key -> record. The caller, key and decision id strings are shared with
    /// the commit request and the expiry entries (one allocation each, or none).
    keys: HashMap<Arc<str>, HashMap<Arc<str>, KeyEntry>>,
}

/// The window of `drawdowns_24h`, in seconds.
const DAY_SECONDS: i64 = 24 * 3600;

/// 24 hours after `now` (the last instant there is, past the end of time).
fn day_after(now: Timestamp) -> Timestamp {
    now.checked_add(jiff::SignedDuration::from_hours(24))
        .unwrap_or(Timestamp::MAX)
}

impl UserEntry {
    fn new(id: &UserId, state: UserState, now: Timestamp) -> UserEntry {
        UserEntry {
            id: Arc::from(id.as_str()),
            state,
            upstream_until: day_after(now),
            approvals: VecDeque::new(),
            keys: HashMap::default(),
        }
    }

    /// A new state from upstream: its `drawdowns_24h` replaces everything counted so far.
    fn set(&mut self, state: UserState, now: Timestamp) {
        self.state = state;
        self.upstream_until = day_after(now);
        self.approvals.clear();
    }

    /// The drawdowns of the 24 hours up to `now`: approvals in `(now - 24 h, now]` (and any
    /// later, should the clock step back), plus the upstream count until it lapses.
    fn drawdowns_24h(&self, now: Timestamp) -> u32 {
        let since = now.as_second() - DAY_SECONDS;
        let first = self.approvals.partition_point(|&(sec, _)| sec <= since);
        let upstream = if now < self.upstream_until {
            self.state.drawdowns_24h
        } else {
            0
        };
        self.approvals
            .range(first..)
            .fold(upstream, |n, &(_, k)| n.saturating_add(k))
    }

    /// The state as of `now`.
    fn state_at(&self, now: Timestamp) -> UserState {
        self.state_with(|| now)
    }

    /// The state as of `now()`, which is only read when there is a count to slide (a clock
    /// read is a few dozen nanoseconds on the drawdown path).
    fn state_with(&self, now: impl FnOnce() -> Timestamp) -> UserState {
        let mut state = self.state.clone();
        if !self.approvals.is_empty() || state.drawdowns_24h > 0 {
            state.drawdowns_24h = self.drawdowns_24h(now());
        }
        state
    }

    /// Counts an approval at `now`, and forgets approvals out of the window.
    fn record_approval(&mut self, now: Timestamp) {
        let sec = now.as_second();
        let since = sec - DAY_SECONDS;
        while self.approvals.front().is_some_and(|&(s, _)| s <= since) {
            self.approvals.pop_front();
        }
        match self.approvals.back_mut() {
            Some((last, n)) if *last == sec => *n = n.saturating_add(1),
            _ => self.approvals.push_back((sec, 1)),
        }
    }
}

struct KeyEntry {
    fingerprint: Fingerprint,
    /// The decision's [`decision_key`].
    decision_id: u128,
    expires_at: Timestamp,
    seq: u64,
}

/// A decision as the store keeps it: the [`DecisionRecord`] without the strings it can share
/// or rebuild. The id is the map key ([`decision_key`]); the user id is the user entry's; the
/// policy name and `evaluated_at` are shared with the shard's previous decision when equal
/// (they change once per policy switch and once a second). An approval needs no allocation
/// of its own, where a `DecisionRecord` holds four strings (`BENCHMARKS.md`, "gateway
/// request path").
struct DecisionEntry {
    user: Arc<str>,
    /// The caller that committed it (shared with its idempotency records): only this caller
    /// reads it or appeals it.
    caller: Arc<str>,
    policy: Arc<str>,
    evaluated_at: Arc<str>,
    /// Empty (no allocation) on an approval.
    reasons: Box<[ReasonRecord]>,
    amount_fen: u64,
    available_fen: u64,
    drawable_now_fen: u64,
    threshold_version: u64,
    expires_at: Timestamp,
    outcome: Outcome,
    appealable: bool,
}

impl DecisionEntry {
    /// The record as committed, with the id its key names.
    fn record(&self, key: u128) -> DecisionRecord {
        DecisionRecord {
            decision_id: decision_id(key),
            user_id: self.user.as_ref().to_owned(),
            outcome: self.outcome,
            amount_fen: self.amount_fen,
            reasons: self.reasons.to_vec(),
            available_fen: self.available_fen,
            drawable_now_fen: self.drawable_now_fen,
            threshold_version: self.threshold_version,
            policy: self.policy.as_ref().to_owned(),
            evaluated_at: self.evaluated_at.as_ref().to_owned(),
            appealable: self.appealable,
        }
    }
}

/// `text` as an `Arc<str>`: the one in `last` when it is the same text, else a new one that
/// becomes `last`.
fn share(last: &mut Option<Arc<str>>, text: &str) -> Arc<str> {
    match last {
        Some(l) if **l == *text => Arc::clone(l),
        _ => Arc::clone(last.insert(Arc::from(text))),
    }
}

/// Where an idempotency record is, and when it expires.
struct KeyExpiry {
    expires_at: Timestamp,
    seq: u64,
    user: UserId,
    caller: Arc<str>,
    key: Arc<str>,
}

#[derive(Default)]
struct Appeals {
    next_seq: u64,
    by_seq: BTreeMap<u64, AppealRecord>,
    by_id: HashMap<Box<str>, u64>,
    by_decision: HashMap<Box<str>, u64>,
    /// The caller that filed each appeal (the decision's caller).
    owners: HashMap<u64, Arc<str>>,
    open: BTreeSet<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::build(MemoryConfig::default(), SystemClock::shared())
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// The fault switches of this store (latency, outage), for tests and demos.
    pub fn faults(&self) -> &super::Faults {
        &self.inner.faults
    }

    /// The audit trail of operator changes ([`super::audit`]), locked, once the injected
    /// faults let the call through (as every store call).
    pub(crate) fn operator_log(&self) -> Result<MutexGuard<'_, super::audit::MemoryLog>> {
        self.faults().check()?;
        self.inner
            .operator_log
            .lock()
            .map_err(super::audit::poisoned)
    }

    /// The staged shadow candidate ([`super::candidate`]).
    pub(crate) fn staged_candidate(&self) -> MutexGuard<'_, Option<super::StagedCandidate>> {
        lock(&self.inner.candidate)
    }

    /// An empty store on the system clock.
    pub fn new(config: MemoryConfig) -> Result<MemoryStore, MemoryConfigError> {
        MemoryStore::with_clock(config, SystemClock::shared())
    }

    /// An empty store on `clock` (the gateway's injected clock): it times the sliding
    /// 24-hour drawdown count (see the module docs).
    pub fn with_clock(
        config: MemoryConfig,
        clock: SharedClock,
    ) -> Result<MemoryStore, MemoryConfigError> {
        config.validate()?;
        Ok(MemoryStore::build(config, clock))
    }

    fn build(config: MemoryConfig, clock: SharedClock) -> MemoryStore {
        let shards = (0..config.shards).map(|_| Mutex::default()).collect();
        MemoryStore {
            inner: Arc::new(Inner {
                config,
                shards,
                appeals: Mutex::default(),
                decisions: AtomicUsize::new(0),
                faults: super::Faults::default(),
                clock,
                operator_log: Mutex::default(),
                inputs: Mutex::default(),
                candidate: Mutex::default(),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &MemoryConfig {
        &self.inner.config
    }

    /// Stores the deterministic demo users (replacing any state they had) and returns them,
    /// for the start-up banner and the README walkthrough.
    pub fn seed_demo(&self) -> Vec<DemoUser> {
        let users = demo_users();
        for u in &users {
            self.upsert_now(&u.id, u.state.clone());
        }
        users
    }

    /// Counts the records held (takes every lock in turn: for tests and occasional metrics).
    pub fn stats(&self) -> MemoryStats {
        let mut stats = MemoryStats::default();
        for shard in &self.inner.shards {
            let shard = lock(shard);
            stats.users += shard.users.len();
            stats.decisions += shard.decisions.len();
            stats.idempotency_records += shard
                .users
                .values()
                .flat_map(|u| u.keys.values())
                .map(HashMap::len)
                .sum::<usize>();
        }
        stats.appeals = lock(&self.inner.appeals).by_seq.len();
        stats
    }

    /// Keeps the inputs of a committed decision, in the store's ring of at most
    /// [`super::inputs::bound`]`(kept)` records: the oldest kept goes when it is full.
    /// `kept == 0` keeps nothing. The ring's lock is held for a push and a pop.
    pub fn keep_inputs(&self, inputs: super::DecisionInputs, kept: usize) {
        let Some(key) = decision_key(&inputs.decision_id) else {
            return;
        };
        let bound = super::inputs::bound(kept);
        if bound == 0 {
            return;
        }
        let mut ring = lock(&self.inner.inputs);
        while ring.len() >= bound {
            ring.pop_front();
        }
        ring.push_back((key, inputs));
    }

    /// The decisions `selection` names that this store still holds, and the inputs kept for
    /// them (oldest first). Takes each shard's lock in turn, then the ring's, never two at
    /// once.
    pub fn select_inputs(&self, selection: super::Selection) -> super::Selected {
        use super::Selection;
        let mut keys: Vec<u128> = Vec::new();
        for shard in &self.inner.shards {
            let shard = lock(shard);
            match selection {
                Selection::Last(n) => keys.extend(shard.decisions.keys().rev().take(n)),
                Selection::Range { from, to } => {
                    // A ULID's top 48 bits are its time in ms: the keys of [from, to] lie
                    // between these two.
                    let ms =
                        |t: Timestamp| u128::from(u64::try_from(t.as_millisecond()).unwrap_or(0));
                    let lo = ms(from) << 80;
                    let hi = (ms(to) << 80) | ((1u128 << 80) - 1);
                    if lo <= hi {
                        keys.extend(shard.decisions.range(lo..=hi).map(|(k, _)| *k));
                    }
                }
            }
        }
        keys.sort_unstable();
        if let Selection::Last(n) = selection {
            keys.drain(..keys.len().saturating_sub(n));
        }
        let wanted: std::collections::HashSet<u128, foldhash::fast::RandomState> =
            keys.iter().copied().collect();
        let mut inputs: Vec<(u128, super::DecisionInputs)> = Vec::new();
        let oldest_held = {
            let ring = lock(&self.inner.inputs);
            inputs.extend(
                ring.iter()
                    .filter(|(k, _)| wanted.contains(k))
                    .map(|(k, i)| (*k, i.clone())),
            );
            ring.iter().map(|(k, _)| *k).min()
        };
        inputs.sort_unstable_by_key(|(k, _)| *k);
        super::Selected::new(
            &keys,
            oldest_held,
            inputs.into_iter().map(|(_, i)| i).collect(),
        )
    }

    /// The shard index of a slot.
    fn shard_index(&self, slot: super::Slot) -> usize {
        // `shards` is a power of two <= SLOTS, so this is `slot % shards`.
        usize::from(slot.get()) & (self.inner.shards.len() - 1)
    }

    fn shard(&self, slot: super::Slot) -> MutexGuard<'_, Shard> {
        // The index is masked below the length: never out of bounds.
        lock(&self.inner.shards[self.shard_index(slot)])
    }

    fn upsert_now(&self, user: &UserId, state: UserState) -> UserState {
        let now = self.inner.clock.now();
        let mut shard = self.shard(user_slot(user));
        match shard.users.get_mut(user) {
            Some(entry) => entry.set(state.clone(), now),
            None => {
                shard
                    .users
                    .insert(user.clone(), UserEntry::new(user, state.clone(), now));
            }
        }
        state
    }

    fn load_now(&self, caller: &str, user: &UserId, key: Option<&str>) -> Result<Loaded> {
        let shard = self.shard(user_slot(user));
        let Some(entry) = shard.users.get(user) else {
            return Ok(Loaded {
                user: None,
                idempotent: None,
            });
        };
        let idempotent = match key.and_then(|k| entry.keys.get(caller)?.get(k)) {
            None => None,
            Some(k) => Some(IdempotentRecord {
                fingerprint: k.fingerprint,
                decision: shard.stored_decision(k.decision_id)?,
            }),
        };
        Ok(Loaded {
            user: Some(entry.state_with(|| self.inner.clock.now())),
            idempotent,
        })
    }

    fn commit_now(&self, req: CommitRequest) -> Result<CommitOutcome> {
        check_commit(&req)?;
        let CommitRequest {
            caller,
            user,
            idempotency_key,
            fingerprint,
            mut decision,
            reserve,
            now,
        } = req;
        let config = &self.inner.config;
        let key_expires = now
            .checked_add(config.idempotency_retention)
            .map_err(|_| invalid("`now` is too late for the idempotency retention"))?;
        let decision_expires = now
            .checked_add(config.decision_retention)
            .map_err(|_| invalid("`now` is too late for the decision retention"))?;

        let mut guard = self.shard(user_slot(&user));
        let shard = &mut *guard;
        shard.purge(now, config.purge_batch, &self.inner.decisions);

        let Some(entry) = shard.users.get_mut(&user) else {
            return Ok(CommitOutcome::UserNotFound);
        };
        let seen = entry
            .keys
            .get(&*caller)
            .and_then(|keys| keys.get(&*idempotency_key));
        // An expired record not yet purged is gone for the API: the insert below replaces
        // it, and its expiry entry, no longer matching a record, is skipped when reached.
        if let Some(seen) = seen.filter(|k| k.expires_at > now) {
            if seen.fingerprint != fingerprint {
                return Ok(CommitOutcome::KeyReused);
            }
            let id = seen.decision_id;
            return shard.stored_decision(id).map(CommitOutcome::Replayed);
        }
        // Only the canonical spelling of an id: the store rebuilds the id from its key.
        let id = decision_key(&decision.decision_id)
            .ok_or_else(|| invalid("the decision id is not a decision id"))?;
        // One walk down the tree, for the check and the insert below.
        let btree_map::Entry::Vacant(slot) = shard.decisions.entry(id) else {
            return Err(invalid("the decision id is already stored"));
        };
        if self.inner.decisions.load(Ordering::Relaxed) >= config.max_decisions {
            return Err(StoreError::Unavailable(
                "memory store full (max_decisions); purge expired records".into(),
            ));
        }

        if let Some(r) = reserve {
            let state = &mut entry.state;
            match state.used.checked_add(r.amount) {
                Some(used)
                    if used <= r.ceiling
                        && used <= state.limit
                        && !self.inner.faults.contended() =>
                {
                    state.used = used;
                    entry.record_approval(now);
                }
                _ => return Ok(CommitOutcome::LineChanged(entry.state_at(now))),
            }
        }
        let available = entry.state.available().get();
        decision.available_fen = available;
        decision.drawable_now_fen = decision.drawable_now_fen.min(available);

        // With equal retentions the key and its decision are due together; the purge takes the
        // key first, so a replay never finds a key without its decision.
        let key_seq = shard.next_seq;
        shard.next_seq += 1;
        let keys = match entry.keys.get_mut(&*caller) {
            Some(keys) => keys,
            None => entry.keys.entry(Arc::clone(&caller)).or_default(),
        };
        keys.insert(
            Arc::clone(&idempotency_key),
            KeyEntry {
                fingerprint,
                decision_id: id,
                expires_at: key_expires,
                seq: key_seq,
            },
        );
        shard.key_expiry.push_back(KeyExpiry {
            expires_at: key_expires,
            seq: key_seq,
            user,
            caller: Arc::clone(&caller),
            key: idempotency_key,
        });
        let stored = DecisionEntry {
            user: Arc::clone(&entry.id),
            caller: Arc::clone(&caller),
            policy: share(&mut shard.last_policy, &decision.policy),
            evaluated_at: share(&mut shard.last_evaluated_at, &decision.evaluated_at),
            reasons: decision.reasons.as_slice().into(),
            amount_fen: decision.amount_fen,
            available_fen: decision.available_fen,
            drawable_now_fen: decision.drawable_now_fen,
            threshold_version: decision.threshold_version,
            expires_at: decision_expires,
            outcome: decision.outcome,
            appealable: decision.appealable,
        };
        slot.insert(stored);
        self.inner.decisions.fetch_add(1, Ordering::Relaxed);
        Ok(CommitOutcome::Committed(decision))
    }

    fn get_decision_now(&self, caller: &str, decision_id: &str) -> Option<DecisionRecord> {
        self.decision_of(Some(caller), decision_id)
    }

    /// The decision `decision_id`, if `caller` committed it (`None`: whoever did).
    fn decision_of(&self, caller: Option<&str>, decision_id: &str) -> Option<DecisionRecord> {
        let slot = id_slot(decision_id)?;
        let shard = self.shard(slot);
        let key = decision_key(decision_id)?;
        shard
            .decisions
            .get(&key)
            .filter(|d| caller.is_none_or(|c| *d.caller == *c))
            .map(|d| d.record(key))
    }

    fn create_appeal_now(&self, caller: &str, appeal: AppealRecord) -> Result<AppealCreated> {
        let user =
            UserId::parse(&appeal.user_id).map_err(|e| invalid(format!("appeal user_id: {e}")))?;
        if id_slot(&appeal.appeal_id) != Some(user_slot(&user))
            || !appeal.appeal_id.starts_with(super::ids::APPEAL_PREFIX)
        {
            return Err(invalid("the appeal id was not minted for its user"));
        }
        if appeal.status != AppealStatus::Open
            || appeal.resolved_at.is_some()
            || appeal.resolution_note.is_some()
        {
            return Err(invalid("a new appeal is open and unresolved"));
        }
        // A decision of this user lives in the user's slot; any other slot is someone else's.
        if id_slot(&appeal.decision_id) != Some(user_slot(&user)) {
            return Ok(AppealCreated::DecisionNotFound);
        }
        let shard = self.shard(user_slot(&user));
        let Some(decision) =
            decision_key(&appeal.decision_id).and_then(|key| shard.decisions.get(&key))
        else {
            return Ok(AppealCreated::DecisionNotFound);
        };
        if *decision.user != *appeal.user_id || *decision.caller != *caller {
            return Ok(AppealCreated::DecisionNotFound);
        }
        if !decision.appealable {
            return Ok(AppealCreated::NotAppealable);
        }
        // Lock order: shard, then appeals.
        let mut appeals = lock(&self.inner.appeals);
        if let Some(existing) = appeals
            .by_decision
            .get(appeal.decision_id.as_str())
            .and_then(|seq| appeals.by_seq.get(seq))
        {
            return Ok(AppealCreated::AlreadyAppealed(existing.clone()));
        }
        if appeals.by_id.contains_key(appeal.appeal_id.as_str()) {
            return Err(invalid("the appeal id is already stored"));
        }
        let seq = appeals.next_seq;
        appeals.next_seq += 1;
        appeals.by_id.insert(appeal.appeal_id.as_str().into(), seq);
        appeals
            .by_decision
            .insert(appeal.decision_id.as_str().into(), seq);
        appeals.open.insert(seq);
        appeals.owners.insert(seq, Arc::clone(&decision.caller));
        appeals.by_seq.insert(seq, appeal.clone());
        drop(shard);
        Ok(AppealCreated::Created(appeal))
    }

    fn get_appeal_now(&self, caller: &str, appeal_id: &str) -> Option<AppealRecord> {
        self.appeal_of(Some(caller), appeal_id)
    }

    /// The appeal `appeal_id`, if `caller` filed it (`None`: whoever did).
    fn appeal_of(&self, caller: Option<&str>, appeal_id: &str) -> Option<AppealRecord> {
        let appeals = lock(&self.inner.appeals);
        let seq = appeals.by_id.get(appeal_id)?;
        if let Some(caller) = caller
            && appeals
                .owners
                .get(seq)
                .is_none_or(|owner| **owner != *caller)
        {
            return None;
        }
        appeals.by_seq.get(seq).cloned()
    }

    fn list_appeals_now(&self, status: Option<AppealStatus>, limit: usize) -> Vec<AppealRecord> {
        let appeals = lock(&self.inner.appeals);
        match status {
            Some(AppealStatus::Open) => appeals
                .open
                .iter()
                .filter_map(|seq| appeals.by_seq.get(seq))
                .take(limit)
                .cloned()
                .collect(),
            Some(status) => appeals
                .by_seq
                .values()
                .filter(|a| a.status == status)
                .take(limit)
                .cloned()
                .collect(),
            None => appeals.by_seq.values().take(limit).cloned().collect(),
        }
    }

    fn resolve_appeal_now(
        &self,
        appeal_id: &str,
        resolution: Resolution,
        note: Option<String>,
        now: Timestamp,
    ) -> AppealResolved {
        let mut guard = lock(&self.inner.appeals);
        let appeals = &mut *guard;
        let Some(&seq) = appeals.by_id.get(appeal_id) else {
            return AppealResolved::NotFound;
        };
        let Some(appeal) = appeals.by_seq.get_mut(&seq) else {
            return AppealResolved::NotFound;
        };
        if appeal.status != AppealStatus::Open {
            return AppealResolved::AlreadyResolved(appeal.clone());
        }
        appeal.status = resolution.into();
        appeal.resolved_at = Some(format_like(now, &appeal.created_at));
        appeal.resolution_note = note;
        appeals.open.remove(&seq);
        AppealResolved::Resolved(appeal.clone())
    }

    fn purge_now(&self, now: Timestamp) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| lock(s).purge(now, usize::MAX, &self.inner.decisions))
            .sum()
    }
}

/// The key of a decision id in [`Shard::decisions`]: the id's ULID as a number, for the
/// canonical spelling only (what [`decision_id`] gives back); `None` for anything else. A
/// ULID decodes whatever the case of its letters, so the key is encoded again, on the stack,
/// and compared: an id from outside that differs from a minted one only in case names no
/// decision.
fn decision_key(id: &str) -> Option<u128> {
    let ulid = id.strip_prefix(super::ids::DECISION_PREFIX)?;
    if ulid.len() != ulid::ULID_LEN {
        return None;
    }
    let key = u128::from(ulid::Ulid::from_string(ulid).ok()?);
    let mut buf = [0; ulid::ULID_LEN];
    (ulid::Ulid(key).array_to_str(&mut buf) == ulid).then_some(key)
}

/// The canonical decision id of a key: `dd_` and the ULID in upper case, as
/// [`super::new_decision_id`] mints it.
fn decision_id(key: u128) -> String {
    let mut buf = [0; ulid::ULID_LEN];
    let ulid = ulid::Ulid(key).array_to_str(&mut buf);
    let mut id = String::with_capacity(super::ids::DECISION_PREFIX.len() + ulid.len());
    id.push_str(super::ids::DECISION_PREFIX);
    id.push_str(ulid);
    id
}

impl Shard {
    fn stored_decision(&self, id: u128) -> Result<DecisionRecord> {
        self.decisions
            .get(&id)
            .map(|d| d.record(id))
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "idempotency record names missing decision {}",
                    ulid::Ulid(id)
                ))
            })
    }

    /// Looks at up to `budget` records due at `now`, oldest first (an idempotency record
    /// before a decision due at the same time), dropping them; answers how many records went.
    /// `held` counts decisions.
    ///
    /// Each kind is taken from the front of its order (commit order for the idempotency
    /// records, id order for the decisions), so a record whose clock reading was earlier than
    /// the one before it (the clock stepped back, or a commit retried) waits until the one
    /// in front of it is due: it is dropped that much late, never early, and a commit never
    /// replays it meanwhile (it checks the expiry itself).
    fn purge(&mut self, now: Timestamp, budget: usize, held: &AtomicUsize) -> usize {
        let mut dropped = 0;
        for _ in 0..budget {
            let key_due = self
                .key_expiry
                .front()
                .map(|k| k.expires_at)
                .filter(|&at| at <= now);
            let decision_due = self
                .decisions
                .first_key_value()
                .map(|(_, d)| d.expires_at)
                .filter(|&at| at <= now);
            match (key_due, decision_due) {
                (None, None) => break,
                (Some(k), d) if d.is_none_or(|d| k <= d) => {
                    let Some(KeyExpiry {
                        seq,
                        user,
                        caller,
                        key,
                        ..
                    }) = self.key_expiry.pop_front()
                    else {
                        break;
                    };
                    let Some(u) = self.users.get_mut(&user) else {
                        continue;
                    };
                    let Some(keys) = u.keys.get_mut(&caller) else {
                        continue;
                    };
                    if keys.get(&key).is_some_and(|k| k.seq == seq) {
                        keys.remove(&key);
                        dropped += 1;
                        if keys.is_empty() {
                            u.keys.remove(&caller);
                        }
                    }
                }
                _ => {
                    if self.decisions.pop_first().is_some() {
                        held.fetch_sub(1, Ordering::Relaxed);
                        dropped += 1;
                    }
                }
            }
        }
        dropped
    }
}

impl MemoryStore {
    /// `op` as a store operation's future: run on the first poll, after the injected faults.
    /// Without injected latency the future is `op` and its captures alone (no timer state),
    /// so a commit's future is about the size of its request: the gateway's drawdown future
    /// holds it, and every move of that future copies it (`BENCHMARKS.md`, "gateway request
    /// path"). With latency (tests, demos), a boxed sleep comes first.
    fn run<T: Send>(
        &self,
        op: impl FnOnce(&MemoryStore) -> Result<T> + Send,
    ) -> impl Future<Output = Result<T>> + Send {
        let faults = &self.inner.faults;
        match faults.latency() {
            None => Either::Left(futures_util::future::lazy(move |_| {
                faults.check()?;
                op(self)
            })),
            Some(wait) => Either::Right(Box::pin(async move {
                tokio::time::sleep(wait).await;
                faults.check()?;
                op(self)
            })),
        }
    }
}

impl Store for MemoryStore {
    fn load(
        &self,
        caller: &str,
        user: &UserId,
        idempotency_key: Option<&str>,
    ) -> impl Future<Output = Result<Loaded>> + Send {
        self.run(move |s| s.load_now(caller, user, idempotency_key))
    }

    fn commit(&self, req: CommitRequest) -> impl Future<Output = Result<CommitOutcome>> + Send {
        self.run(move |s| s.commit_now(req))
    }

    fn upsert_user(
        &self,
        user: &UserId,
        state: UserState,
    ) -> impl Future<Output = Result<UserState>> + Send {
        self.run(move |s| Ok(s.upsert_now(user, state)))
    }

    fn get_decision(
        &self,
        caller: &str,
        decision_id: &str,
    ) -> impl Future<Output = Result<Option<DecisionRecord>>> + Send {
        self.run(move |s| Ok(s.get_decision_now(caller, decision_id)))
    }

    fn get_decision_any(
        &self,
        decision_id: &str,
    ) -> impl Future<Output = Result<Option<DecisionRecord>>> + Send {
        self.run(move |s| Ok(s.decision_of(None, decision_id)))
    }

    fn create_appeal(
        &self,
        caller: &str,
        appeal: AppealRecord,
    ) -> impl Future<Output = Result<AppealCreated>> + Send {
        self.run(move |s| s.create_appeal_now(caller, appeal))
    }

    fn get_appeal(
        &self,
        caller: &str,
        appeal_id: &str,
    ) -> impl Future<Output = Result<Option<AppealRecord>>> + Send {
        self.run(move |s| Ok(s.get_appeal_now(caller, appeal_id)))
    }

    fn get_appeal_any(
        &self,
        appeal_id: &str,
    ) -> impl Future<Output = Result<Option<AppealRecord>>> + Send {
        self.run(move |s| Ok(s.appeal_of(None, appeal_id)))
    }

    fn list_appeals(
        &self,
        status: Option<AppealStatus>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<AppealRecord>>> + Send {
        self.run(move |s| Ok(s.list_appeals_now(status, limit)))
    }

    fn resolve_appeal(
        &self,
        appeal_id: &str,
        resolution: Resolution,
        note: Option<String>,
        now: Timestamp,
    ) -> impl Future<Output = Result<AppealResolved>> + Send {
        self.run(move |s| Ok(s.resolve_appeal_now(appeal_id, resolution, note, now)))
    }

    fn purge_expired(&self, now: Timestamp) -> impl Future<Output = Result<usize>> + Send {
        self.run(move |s| Ok(s.purge_now(now)))
    }

    fn ping(&self) -> impl Future<Output = Result<()>> + Send {
        self.run(|_| Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Reservation, new_decision_id};
    use risk_core::{Fen, Outcome, RiskGrade};

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn t0() -> Timestamp {
        "2026-11-10T16:00:00Z".parse().unwrap()
    }

    fn approval(u: &UserId, key: &str, now: Timestamp) -> CommitRequest {
        CommitRequest {
            caller: "c".into(),
            user: u.clone(),
            idempotency_key: key.into(),
            fingerprint: Fingerprint::from_bytes([0; 32]),
            decision: DecisionRecord {
                decision_id: new_decision_id(u, now),
                user_id: u.to_string(),
                outcome: Outcome::Approved,
                amount_fen: 10,
                reasons: vec![],
                available_fen: 0,
                drawable_now_fen: 0,
                threshold_version: 1,
                policy: "standard".into(),
                evaluated_at: now.to_string(),
                appealable: false,
            },
            reserve: Some(Reservation {
                amount: Fen::new(10).unwrap(),
                ceiling: Fen::MAX,
            }),
            now,
        }
    }

    /// What `u` has drawn, as a read answers it.
    fn used_fen(store: &MemoryStore, u: &UserId) -> u64 {
        store
            .load_now("c", u, None)
            .unwrap()
            .user
            .unwrap()
            .used
            .get()
    }

    fn shard_of(store: &MemoryStore, u: &UserId) -> usize {
        store.shard_index(user_slot(u))
    }

    #[test]
    fn a_users_records_live_in_the_users_shard() {
        let store = MemoryStore::default();
        let u = user("u-layout");
        store.upsert_now(&u, UserState::clean(Fen::new(1_000).unwrap(), RiskGrade::A));
        let d = match store.commit_now(approval(&u, "k", t0())).unwrap() {
            CommitOutcome::Committed(d) => d,
            other => panic!("{other:?}"),
        };
        let home = shard_of(&store, &u);
        assert_eq!(home, usize::from(user_slot(&u).get()) % 64);
        for (i, shard) in store.inner.shards.iter().enumerate() {
            let shard = lock(shard);
            let here = i == home;
            assert_eq!(shard.users.contains_key(&u), here, "shard {i}");
            let key = decision_key(&d.decision_id).unwrap();
            assert_eq!(shard.decisions.contains_key(&key), here);
            assert_eq!(shard.key_expiry.len(), usize::from(here));
        }
        // The id alone leads back to the shard.
        assert_eq!(store.shard_index(id_slot(&d.decision_id).unwrap()), home);
    }

    #[test]
    fn shards_follow_slots_for_every_shard_count() {
        for shards in [1, 2, 64, 1024] {
            let store = MemoryStore::new(MemoryConfig {
                shards,
                ..MemoryConfig::default()
            })
            .unwrap();
            let mut used = vec![false; shards];
            for i in 0..4_096 {
                let u = user(&format!("u-{i}"));
                let s = shard_of(&store, &u);
                assert_eq!(s, usize::from(user_slot(&u).get()) % shards);
                used[s] = true;
            }
            if shards <= 64 {
                assert!(used.iter().all(|u| *u), "{shards}: every shard gets users");
            }
        }
    }

    #[test]
    fn purge_skips_a_record_replaced_since() {
        let store = MemoryStore::new(MemoryConfig {
            purge_batch: 0,
            ..MemoryConfig::default()
        })
        .unwrap();
        let u = user("u-replaced");
        store.upsert_now(&u, UserState::clean(Fen::new(1_000).unwrap(), RiskGrade::A));
        let day = jiff::SignedDuration::from_hours(24);
        store.commit_now(approval(&u, "k", t0())).unwrap();
        // Past the retention the key is free; with no lazy purge, the new record replaces
        // the old one in place, and the old one's expiry entry stays behind.
        let t1 = t0() + day + jiff::SignedDuration::from_secs(1);
        let mut again = approval(&u, "k", t1);
        again.fingerprint = Fingerprint::from_bytes([1; 32]);
        assert!(matches!(
            store.commit_now(again).unwrap(),
            CommitOutcome::Committed(_)
        ));
        // At t1 the stale entry (due at t0 + 24 h) is met and skipped: the new record stays.
        assert_eq!(store.purge_now(t1), 0);
        let loaded = store.load_now("c", &u, Some("k")).unwrap();
        assert_eq!(
            loaded.idempotent.unwrap().fingerprint,
            Fingerprint::from_bytes([1; 32])
        );
        assert_eq!(store.purge_now(t1 + day), 1);
        assert_eq!(store.stats().idempotency_records, 0);
    }

    #[test]
    fn a_record_from_a_clock_stepped_back_is_purged_late_never_replayed() {
        let store = MemoryStore::new(MemoryConfig {
            purge_batch: 0,
            ..MemoryConfig::default()
        })
        .unwrap();
        let u = user("u-step-back");
        store.upsert_now(&u, UserState::clean(Fen::new(1_000).unwrap(), RiskGrade::A));
        let hour = jiff::SignedDuration::from_hours(1);
        let day = jiff::SignedDuration::from_hours(24);
        // "late" is committed first, then the clock steps back an hour for "early".
        store.commit_now(approval(&u, "late", t0() + hour)).unwrap();
        store.commit_now(approval(&u, "early", t0())).unwrap();
        // "early" is due, but waits behind "late" in commit order...
        let between = t0() + day + hour / 2;
        assert_eq!(store.purge_now(between), 0);
        // ...and is not replayed meanwhile: past its retention the key is free again.
        let mut again = approval(&u, "early", between);
        again.fingerprint = Fingerprint::from_bytes([9; 32]);
        assert!(matches!(
            store.commit_now(again).unwrap(),
            CommitOutcome::Committed(_)
        ));
        // Once "late" is due, both stale entries go: "late" is dropped, and the entry of
        // the first "early" names a record since replaced, so it is skipped.
        assert_eq!(store.purge_now(t0() + day + hour), 1);
        assert_eq!(store.stats().idempotency_records, 1);
    }

    #[test]
    fn only_the_canonical_spelling_of_a_decision_id_is_committed() {
        let store = MemoryStore::default();
        let u = user("u-canon-1");
        store.upsert_now(&u, UserState::clean(Fen::new(1_000).unwrap(), RiskGrade::A));
        let minted = approval(&u, "k", t0());
        // The same key in lower case, and with the prefix alone upper-cased.
        let lower = format!("dd_{}", minted.decision.decision_id[3..].to_lowercase());
        let prefix = minted.decision.decision_id.replacen("dd_", "DD_", 1);
        for id in [&lower, &prefix] {
            let mut req = approval(&u, "k", t0());
            req.decision.decision_id.clone_from(id);
            assert!(
                matches!(store.commit_now(req), Err(StoreError::Invalid(_))),
                "{id}"
            );
        }
        let snapshot = store.stats();
        assert_eq!((snapshot.decisions, snapshot.idempotency_records), (0, 0));
        assert_eq!(used_fen(&store, &u), 0);
        let id = minted.decision.decision_id.clone();
        assert!(matches!(
            store.commit_now(minted).unwrap(),
            CommitOutcome::Committed(_)
        ));
        // A lookup finds the decision by its id only as minted.
        assert!(store.get_decision_now("c", &id).is_some());
        assert!(store.get_decision_now("c", &lower).is_none());
        assert!(store.get_decision_now("c", &prefix).is_none());
    }

    #[test]
    fn a_full_store_refuses_new_decisions_but_replays() {
        let store = MemoryStore::new(MemoryConfig {
            max_decisions: 3,
            ..MemoryConfig::default()
        })
        .unwrap();
        let (u, v) = (user("u-full-1"), user("u-full-2"));
        for x in [&u, &v] {
            store.upsert_now(x, UserState::clean(Fen::new(1_000).unwrap(), RiskGrade::A));
        }
        for key in ["a", "b"] {
            store.commit_now(approval(&u, key, t0())).unwrap();
        }
        store.commit_now(approval(&v, "a", t0())).unwrap();
        assert!(matches!(
            store.commit_now(approval(&v, "b", t0())),
            Err(StoreError::Unavailable(_))
        ));
        assert_eq!(used_fen(&store, &v), 10);
        assert!(matches!(
            store.commit_now(approval(&u, "a", t0())).unwrap(),
            CommitOutcome::Replayed(_)
        ));
        let month = t0() + jiff::SignedDuration::from_hours(31 * 24);
        assert_eq!(store.purge_now(month), 6, "3 keys and 3 decisions");
        assert_eq!(store.inner.decisions.load(Ordering::Relaxed), 0);
        assert!(matches!(
            store.commit_now(approval(&v, "b", month)).unwrap(),
            CommitOutcome::Committed(_)
        ));
        assert_eq!(store.inner.decisions.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn resolution_times_take_the_offset_of_creation() {
        let now = t0();
        assert_eq!(
            format_like(now, "2026-11-11T00:00:00+08:00"),
            "2026-11-11T00:00:00+08:00"
        );
        assert_eq!(
            format_like(now, "2026-11-10T11:00:00-05:00"),
            "2026-11-10T11:00:00-05:00"
        );
        assert_eq!(
            format_like(now, "2026-11-10T16:00:00Z"),
            "2026-11-10T16:00:00+00:00"
        );
        assert_eq!(format_like(now, "garbage"), "2026-11-10T16:00:00+00:00");
    }

    #[test]
    fn a_poisoned_shard_still_serves() {
        let store = MemoryStore::default();
        let u = user("u-poison");
        store.upsert_now(&u, UserState::clean(Fen::new(1_000).unwrap(), RiskGrade::A));
        let shard = &store.inner.shards[shard_of(&store, &u)];
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                let _guard = shard.lock();
                panic!("poison the shard");
            })
            .join()
        });
        assert!(shard.is_poisoned());
        assert!(store.load_now("c", &u, None).unwrap().user.is_some());
    }
}
