//! The store: users, decisions, idempotency records and appeals behind one interface.
//!
//! Shaped for Redis: every operation is one round trip, and [`Store::commit`] (idempotency
//! check, line check and reservation, decision, idempotency record) is one atomic operation
//! on one shard. The memory store ([`MemoryStore`]) is the embedded default; the Redis store
//! ([`RedisStore`], production) has the same semantics, proven by the same contract suite
//! (`gateway/tests/store/contract.rs`). Exception: [`Store::list_appeals`] and
//! [`Store::purge_expired`] on Redis read every slot (two and one pipelined round trips).
//!
//! # Layout
//! - [`audit`]: the audit trail of operator changes (both stores).
//! - [`candidate`]: the staged shadow candidate, one for the whole store (both stores).
//! - [`types`]: the stored records ([`DecisionRecord`], [`AppealRecord`], …), as JSON.
//! - [`inputs`]: the inputs each decision was made from, kept bounded for backtests.
//! - [`ids`]: user slots and decision / appeal ids that name their slot.
//! - [`memory`]: the sharded in-memory store.
//! - [`redis`]: the production store on Redis (Lua scripts, Cluster-ready keys).
//! - [`demo`]: deterministic demo users for the README walkthrough.
//! - [`warnings`]: store failures in the log at a bounded rate.
//!
//! # The drawdown path
//! ```
//! # use gateway::store::*;
//! # use risk_core::{Fen, Outcome, RiskGrade, UserId, UserState};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), StoreError> {
//! let store = AnyStore::Memory(MemoryStore::default());
//! let user = UserId::parse("u-1").expect("a valid id");
//! store.upsert_user(&user, UserState::clean(Fen::new(100_000).expect("in range"), RiskGrade::A)).await?;
//! let now = jiff::Timestamp::from_second(1_800_000_000).expect("in range");
//!
//! // 1 round trip: the state, and a stored decision if the key was seen.
//! let loaded = store.load("caller-1", &user, Some("key-1")).await?;
//! let state = loaded.user.expect("seeded");
//! assert!(loaded.idempotent.is_none());
//!
//! // ... risk-core decides: approve 1,000 fen ...
//! let decision = DecisionRecord {
//!     decision_id: new_decision_id(&user, now),
//!     user_id: user.to_string(),
//!     outcome: Outcome::Approved,
//!     amount_fen: 1_000,
//!     reasons: vec![],
//!     available_fen: 0, // set by the store
//!     drawable_now_fen: 99_000,
//!     threshold_version: 1,
//!     policy: "standard".into(),
//!     evaluated_at: "2027-01-15T16:00:00+08:00".into(),
//!     appealable: false,
//! };
//! // 1 atomic operation: key check, line check and reservation, decision, key record.
//! let outcome = store.commit(CommitRequest {
//!     caller: "caller-1".into(),
//!     user: user.clone(),
//!     idempotency_key: "key-1".into(),
//!     fingerprint: Fingerprint::from_bytes([7; 32]),
//!     decision,
//!     reserve: Some(Reservation { amount: Fen::new(1_000).expect("in range"), ceiling: state.limit }),
//!     now,
//! }).await?;
//! let CommitOutcome::Committed(stored) = outcome else { panic!("{outcome:?}") };
//! assert_eq!(stored.available_fen, 99_000);
//! # Ok(()) }
//! ```

pub mod audit;
pub mod candidate;
pub mod demo;
pub mod faults;
pub mod ids;
pub mod inputs;
pub mod memory;
pub mod redis;
pub mod types;
pub mod warnings;

pub use audit::{AuditCursor, AuditEntry, AuditPage, FieldChange, OperatorChange};
pub use candidate::StagedCandidate;
pub use demo::{DemoUser, demo_users};
pub use faults::Faults;
pub use ids::{Slot, new_appeal_id, new_decision_id, user_slot};
pub use inputs::{DecisionInputs, Selected, Selection};
pub use memory::{MemoryConfig, MemoryConfigError, MemoryStats, MemoryStore};
pub use redis::{
    AuditEvent, RedisConfig, RedisConfigError, RedisStore, ThresholdSyncMetrics, ThresholdTarget,
    ThresholdWrite, spawn_health_check, spawn_threshold_sync,
};
pub use types::{
    AppealRecord, AppealStatus, DecisionRecord, Fingerprint, ReasonRecord, Resolution,
};

use futures_util::future::Either;
use jiff::Timestamp;
use risk_core::{Fen, UserId, UserState};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Why a store could not answer. The memory store fails only by injected faults.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store is unreachable (no connection, pool exhausted); nothing was written.
    /// The API answers `503 DEPENDENCY_UNAVAILABLE`.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store did not answer within the request's budget. A commit may or may not have
    /// been applied; a retry with the same idempotency key resolves it.
    #[error("store timed out")]
    Timeout,
    /// The store holds something it cannot read back.
    #[error("store data corrupt: {0}")]
    Corrupt(String),
    /// The caller passed a record that breaks the store's contract (a bug in the caller):
    /// an id not minted for the user, an approval without a reservation, …
    #[error("invalid store request: {0}")]
    Invalid(String),
}

impl StoreError {
    /// What kind of failure, in one word (`unavailable`, `timeout`, `corrupt`, `invalid`).
    pub const fn kind(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Timeout => "timeout",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::Invalid(_) => "invalid",
        }
    }
}

/// The result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What [`Store::load`] read in its one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The user's state, if the user exists.
    pub user: Option<UserState>,
    /// The stored decision for (caller, user, key), when a key was given and seen.
    pub idempotent: Option<IdempotentRecord>,
}

/// A stored idempotency record: the request's fingerprint and the decision answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentRecord {
    /// The fingerprint of the first request with this key.
    pub fingerprint: Fingerprint,
    /// The decision it got.
    pub decision: DecisionRecord,
}

/// Credit to reserve with an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// The amount; equals the decision's `amount_fen`.
    pub amount: Fen,
    /// The highest `used` this approval allows: the gateway passes
    /// `min(limit, utilisation cap)` of the state it evaluated. The store also never lets
    /// `used` pass the current `limit`.
    pub ceiling: Fen,
}

/// Everything one atomic commit needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRequest {
    /// The authenticated caller: idempotency keys are scoped by it. Shared (the gateway's
    /// caller id, the memory store's records), so a commit does not copy it.
    pub caller: Arc<str>,
    /// The user.
    pub user: UserId,
    /// The caller's `Idempotency-Key`. Shared, so a retried commit and the memory store's
    /// records do not copy it.
    pub idempotency_key: Arc<str>,
    /// The request's fingerprint.
    pub fingerprint: Fingerprint,
    /// The decision to store. Its `decision_id` comes from [`new_decision_id`] for `user`,
    /// its `user_id` is `user`; the store sets `available_fen` and caps `drawable_now_fen`.
    pub decision: DecisionRecord,
    /// `Some` exactly when the decision is an approval.
    pub reserve: Option<Reservation>,
    /// Now: the idempotency record is kept from now for the retention.
    pub now: Timestamp,
}

/// A user's state as a drawdown evaluates it, and what [`Store::commit_seen`] needs to make
/// the commit land on exactly that state (the Redis store: the state's version, and this
/// instance's turn for the user's slot). Without a version a commit is checked as
/// [`Store::commit`] checks one.
#[derive(Debug)]
pub struct Seen {
    /// The state the decision is evaluated against.
    pub state: UserState,
    /// The store's version of `state`, when it has one.
    version: Option<u64>,
    /// When `state`'s sliding counts next change as time passes (unix ms; `None`: never):
    /// the version does not move as approvals age out, so a kept state is good until then.
    stable_until: Option<i64>,
    /// Held until the commit is done: no other checked commit of this instance for a user
    /// of the same stripe runs meanwhile.
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Seen {
    /// `state`, with no version: its commit is checked as [`Store::commit`] checks one.
    pub fn unversioned(state: UserState) -> Seen {
        Seen {
            state,
            version: None,
            stable_until: None,
            _turn: None,
        }
    }
}

/// What [`Store::commit`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Stored; this is the record as stored (and as answered).
    Committed(DecisionRecord),
    /// The key was seen with the same fingerprint: the stored decision, nothing written.
    Replayed(DecisionRecord),
    /// The key was seen with another fingerprint (`422 IDEMPOTENCY_KEY_REUSED`).
    KeyReused,
    /// No such user (`404 USER_NOT_FOUND`).
    UserNotFound,
    /// The reservation would pass the ceiling or the limit of the state as it is now;
    /// nothing was written. Re-evaluate against this state and commit again.
    LineChanged(UserState),
}

/// What [`Store::create_appeal`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppealCreated {
    /// Stored.
    Created(AppealRecord),
    /// No such decision, or it is another user's or another caller's
    /// (`404 DECISION_NOT_FOUND`).
    DecisionNotFound,
    /// The decision is not appealable (`422 NOT_APPEALABLE`).
    NotAppealable,
    /// The decision already has an appeal (one per decision); this is it, unchanged.
    /// The API may answer it as is (a repeated POST) rather than file a second one.
    AlreadyAppealed(AppealRecord),
}

/// What [`Store::resolve_appeal`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppealResolved {
    /// The open appeal is now resolved; this is the stored record.
    Resolved(AppealRecord),
    /// No such appeal (`404 APPEAL_NOT_FOUND`).
    NotFound,
    /// It was resolved before; this is the record, unchanged (the first resolution stands).
    AlreadyResolved(AppealRecord),
}

/// The store interface. Each method is one round trip; [`Store::commit`] and
/// [`Store::create_appeal`] are atomic.
pub trait Store: Send + Sync + 'static {
    /// The user's state and, when `idempotency_key` is given, the stored decision for
    /// (caller, user, key), in one round trip. A record past its retention may still be
    /// answered until it is purged ([`Store::commit`] never replays one).
    fn load(
        &self,
        caller: &str,
        user: &UserId,
        idempotency_key: Option<&str>,
    ) -> impl Future<Output = Result<Loaded>> + Send;

    /// Atomically: replay or refuse a seen key; refuse an unknown user; check and reserve
    /// the line (`used += amount`, `drawdowns_24h += 1`); store the decision with
    /// `available_fen` of the new state; store the idempotency record. Rejections and
    /// reviews are committed too (no reservation) so that a replay returns them.
    fn commit(&self, req: CommitRequest) -> impl Future<Output = Result<CommitOutcome>> + Send;

    /// [`Store::load`] for a drawdown: a store that keeps this instance's last view of the
    /// user's state may answer from it with no round trip. `idempotent` is then `None`: a
    /// key seen before is found by the commit, which replays or refuses it as `load` would.
    fn load_for_drawdown(
        &self,
        caller: &str,
        user: &UserId,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Loaded>> + Send {
        self.load(caller, user, Some(idempotency_key))
    }

    /// The state a drawdown's decision is evaluated against before [`Store::commit_seen`]:
    /// `loaded` (from [`Store::load_for_drawdown`]), or a newer or fresher one the store has.
    fn seen(&self, user: &UserId, loaded: UserState) -> impl Future<Output = Result<Seen>> + Send {
        let _ = user;
        std::future::ready(Ok(Seen::unversioned(loaded)))
    }

    /// [`Store::commit`] of a decision evaluated against `seen.state`. When `seen` carries
    /// a version, the commit lands only on exactly that state: after any other write to the
    /// user it answers [`CommitOutcome::LineChanged`] with the state as it is now (the
    /// caller sets `seen.state` to it and evaluates again), and the next commit is checked as
    /// [`Store::commit`] checks one, as after a load.
    fn commit_seen(
        &self,
        req: CommitRequest,
        seen: &mut Seen,
    ) -> impl Future<Output = Result<CommitOutcome>> + Send {
        let _ = seen;
        self.commit(req)
    }

    /// Creates or replaces a user's state; answers the stored state.
    fn upsert_user(
        &self,
        user: &UserId,
        state: UserState,
    ) -> impl Future<Output = Result<UserState>> + Send;

    /// A stored decision by id, if `caller` committed it (another caller's is `None`, as
    /// if it did not exist).
    fn get_decision(
        &self,
        caller: &str,
        decision_id: &str,
    ) -> impl Future<Output = Result<Option<DecisionRecord>>> + Send;

    /// A stored decision by id, whichever caller committed it: for operators (the console
    /// opens the decision an appeal contests), never for a caller.
    fn get_decision_any(
        &self,
        decision_id: &str,
    ) -> impl Future<Output = Result<Option<DecisionRecord>>> + Send;

    /// Atomically checks that the decision exists, was committed by `caller`, is the
    /// appeal's user's, is appealable and has no appeal yet, then stores the appeal as
    /// `caller`'s. `appeal.appeal_id` comes from [`new_appeal_id`] for the user; its status
    /// is `open`.
    fn create_appeal(
        &self,
        caller: &str,
        appeal: AppealRecord,
    ) -> impl Future<Output = Result<AppealCreated>> + Send;

    /// An appeal by id, if `caller` filed it (another caller's is `None`).
    fn get_appeal(
        &self,
        caller: &str,
        appeal_id: &str,
    ) -> impl Future<Output = Result<Option<AppealRecord>>> + Send;

    /// An appeal by id, whichever caller filed it: for operators (the console), never for a
    /// caller.
    fn get_appeal_any(
        &self,
        appeal_id: &str,
    ) -> impl Future<Output = Result<Option<AppealRecord>>> + Send;

    /// Up to `limit` appeals, oldest first, of one status or all.
    fn list_appeals(
        &self,
        status: Option<AppealStatus>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<AppealRecord>>> + Send;

    /// Resolves an open appeal; `resolved_at` is `now` in the offset of `created_at`.
    fn resolve_appeal(
        &self,
        appeal_id: &str,
        resolution: Resolution,
        note: Option<String>,
        now: Timestamp,
    ) -> impl Future<Output = Result<AppealResolved>> + Send;

    /// Drops idempotency records (and, in the memory store, decisions) past their retention
    /// at `now`; answers how many records went. Call it on a schedule.
    fn purge_expired(&self, now: Timestamp) -> impl Future<Output = Result<usize>> + Send;

    /// Whether the store answers (readiness).
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;
}

/// The store the gateway holds: one concrete type; only the Redis store's futures are boxed
/// (see [`AnyFuture`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyStore {
    /// The embedded in-memory store.
    Memory(MemoryStore),
    /// The Redis store (production).
    Redis(RedisStore),
}

/// A future of [`AnyStore`]: the memory store's inline, the Redis store's boxed. The Redis
/// futures are large and each awaits a network round trip,
/// against which one allocation is nothing; inline, they would make every memory-store future
/// (and the gateway's drawdown future that holds one) as large, and every move of it a copy
/// of that size (`BENCHMARKS.md`, "gateway request path").
type AnyFuture<M, R> = Either<M, Pin<Box<R>>>;

/// Dispatches one [`Store`] call to the store in use.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {{
        let f: AnyFuture<_, _> = match $self {
            AnyStore::Memory(s) => Either::Left(s.$method($($arg),*)),
            AnyStore::Redis(s) => Either::Right(Box::pin(s.$method($($arg),*))),
        };
        f
    }};
}

impl Store for AnyStore {
    fn load(
        &self,
        caller: &str,
        user: &UserId,
        idempotency_key: Option<&str>,
    ) -> impl Future<Output = Result<Loaded>> + Send {
        dispatch!(self.load(caller, user, idempotency_key))
    }

    fn commit(&self, req: CommitRequest) -> impl Future<Output = Result<CommitOutcome>> + Send {
        dispatch!(self.commit(req))
    }

    fn upsert_user(
        &self,
        user: &UserId,
        state: UserState,
    ) -> impl Future<Output = Result<UserState>> + Send {
        dispatch!(self.upsert_user(user, state))
    }

    fn load_for_drawdown(
        &self,
        caller: &str,
        user: &UserId,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Loaded>> + Send {
        dispatch!(self.load_for_drawdown(caller, user, idempotency_key))
    }

    fn seen(&self, user: &UserId, loaded: UserState) -> impl Future<Output = Result<Seen>> + Send {
        dispatch!(self.seen(user, loaded))
    }

    fn commit_seen(
        &self,
        req: CommitRequest,
        seen: &mut Seen,
    ) -> impl Future<Output = Result<CommitOutcome>> + Send {
        dispatch!(self.commit_seen(req, seen))
    }

    fn get_decision(
        &self,
        caller: &str,
        decision_id: &str,
    ) -> impl Future<Output = Result<Option<DecisionRecord>>> + Send {
        dispatch!(self.get_decision(caller, decision_id))
    }

    fn get_decision_any(
        &self,
        decision_id: &str,
    ) -> impl Future<Output = Result<Option<DecisionRecord>>> + Send {
        dispatch!(self.get_decision_any(decision_id))
    }

    fn create_appeal(
        &self,
        caller: &str,
        appeal: AppealRecord,
    ) -> impl Future<Output = Result<AppealCreated>> + Send {
        dispatch!(self.create_appeal(caller, appeal))
    }

    fn get_appeal(
        &self,
        caller: &str,
        appeal_id: &str,
    ) -> impl Future<Output = Result<Option<AppealRecord>>> + Send {
        dispatch!(self.get_appeal(caller, appeal_id))
    }

    fn get_appeal_any(
        &self,
        appeal_id: &str,
    ) -> impl Future<Output = Result<Option<AppealRecord>>> + Send {
        dispatch!(self.get_appeal_any(appeal_id))
    }

    fn list_appeals(
        &self,
        status: Option<AppealStatus>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<AppealRecord>>> + Send {
        dispatch!(self.list_appeals(status, limit))
    }

    fn resolve_appeal(
        &self,
        appeal_id: &str,
        resolution: Resolution,
        note: Option<String>,
        now: Timestamp,
    ) -> impl Future<Output = Result<AppealResolved>> + Send {
        dispatch!(self.resolve_appeal(appeal_id, resolution, note, now))
    }

    fn purge_expired(&self, now: Timestamp) -> impl Future<Output = Result<usize>> + Send {
        dispatch!(self.purge_expired(now))
    }

    fn ping(&self) -> impl Future<Output = Result<()>> + Send {
        dispatch!(self.ping())
    }
}

/// The checks of a commit request that need no data, shared by every store: the record must
/// be the one the contract allows.
pub(crate) fn check_commit(req: &CommitRequest) -> Result<()> {
    use risk_core::Outcome;
    let d = &req.decision;
    if d.user_id != req.user.as_str() {
        return Err(invalid("decision.user_id is not the commit's user"));
    }
    if !d.decision_id.starts_with(ids::DECISION_PREFIX)
        || ids::id_slot(&d.decision_id) != Some(user_slot(&req.user))
    {
        return Err(invalid(
            "decision_id was not minted by new_decision_id for this user",
        ));
    }
    match (d.outcome, req.reserve) {
        (Outcome::Approved, Some(r)) if r.amount.get() == d.amount_fen => Ok(()),
        (Outcome::Approved, Some(_)) => {
            Err(invalid("the reservation is not the decision's amount"))
        }
        (Outcome::Approved, None) => Err(invalid("an approval must reserve its amount")),
        (_, Some(_)) => Err(invalid("only an approval reserves credit")),
        (_, None) => Ok(()),
    }
}

/// A request that breaks the store contract.
pub(crate) fn invalid(what: impl Into<String>) -> StoreError {
    StoreError::Invalid(what.into())
}

/// `now` as RFC 3339 in whole seconds (as every timestamp of the API), in the offset `like`
/// carries (UTC if it carries none).
pub(crate) fn format_like(now: Timestamp, like: &str) -> String {
    use jiff::fmt::temporal::{Pieces, PiecesOffset};
    let offset = match Pieces::parse(like).ok().and_then(|p| p.offset()) {
        Some(PiecesOffset::Numeric(n)) => n.offset(),
        _ => jiff::tz::Offset::UTC,
    };
    crate::clock::rfc3339(now, offset)
}
