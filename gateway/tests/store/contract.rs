//! What every store must do. Each function takes a fresh, empty store and panics on a
//! breach; time is driven through the `now` arguments, never by sleeping.
#![allow(clippy::unwrap_used)]

use gateway::store::{
    AppealCreated, AppealRecord, AppealResolved, AppealStatus, CommitOutcome, CommitRequest,
    DecisionRecord, Fingerprint, Reservation, Resolution, Store, StoreError, new_appeal_id,
    new_decision_id, user_slot,
};
use jiff::{SignedDuration, Timestamp};
use risk_core::{Category, Fen, Outcome, ReasonCode, RiskGrade, UserId, UserState};
use std::sync::Arc;
use std::time::Duration;

const CALLER: &str = "caller-1";

/// 2026-11-11T00:00:00+08:00, Double 11 at midnight.
pub(crate) fn t0() -> Timestamp {
    "2026-11-10T16:00:00Z".parse().unwrap()
}

fn at(hours: i64) -> Timestamp {
    t0() + SignedDuration::from_hours(hours)
}

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

fn fen(v: u64) -> Fen {
    Fen::new(v).unwrap()
}

fn fp(n: u8) -> Fingerprint {
    Fingerprint::from_bytes([n; 32])
}

async fn seed<S: Store>(store: &S, id: &UserId, limit: u64, used: u64) -> UserState {
    let mut state = UserState::clean(fen(limit), RiskGrade::B);
    state.used = fen(used);
    let stored = store.upsert_user(id, state.clone()).await.unwrap();
    assert_eq!(stored, state);
    state
}

async fn state<S: Store>(store: &S, id: &UserId) -> UserState {
    store.load(CALLER, id, None).await.unwrap().user.unwrap()
}

fn decision(u: &UserId, outcome: Outcome, amount: u64, now: Timestamp) -> DecisionRecord {
    let reasons = match outcome {
        Outcome::Approved => vec![],
        _ => {
            let e = ReasonCode::VelocityDrawdowns24h.entry();
            vec![gateway::store::ReasonRecord {
                code: e.code,
                category: Category::Risk,
                message: e.message.into(),
                message_zh: e.message_zh.into(),
                guidance: e.guidance.into(),
                guidance_zh: e.guidance_zh.into(),
                appealable: e.appealable,
                limit: Some(5),
                actual: Some(6),
                unit: Some("count".into()),
                suggested_amount_fen: None,
                retry_at: Some("2026-11-12T00:00:00+08:00".into()),
            }]
        }
    };
    DecisionRecord {
        decision_id: new_decision_id(u, now),
        user_id: u.to_string(),
        outcome,
        amount_fen: amount,
        appealable: reasons.iter().any(|r| r.appealable),
        reasons,
        available_fen: 0,
        drawable_now_fen: u64::MAX,
        threshold_version: 7,
        policy: "double11".into(),
        evaluated_at: now.display_with_offset(jiff::tz::offset(8)).to_string(),
    }
}

fn approve(u: &UserId, key: &str, f: Fingerprint, amount: u64, ceiling: u64) -> CommitRequest {
    approve_as(CALLER, u, key, f, amount, ceiling, t0())
}

fn approve_as(
    caller: &str,
    u: &UserId,
    key: &str,
    f: Fingerprint,
    amount: u64,
    ceiling: u64,
    now: Timestamp,
) -> CommitRequest {
    CommitRequest {
        caller: caller.into(),
        user: u.clone(),
        idempotency_key: key.into(),
        fingerprint: f,
        decision: decision(u, Outcome::Approved, amount, now),
        reserve: Some(Reservation {
            amount: fen(amount),
            ceiling: fen(ceiling),
        }),
        now,
    }
}

fn reject(u: &UserId, key: &str, f: Fingerprint, amount: u64, now: Timestamp) -> CommitRequest {
    CommitRequest {
        caller: CALLER.into(),
        user: u.clone(),
        idempotency_key: key.into(),
        fingerprint: f,
        decision: decision(u, Outcome::Rejected, amount, now),
        reserve: None,
        now,
    }
}

fn committed(outcome: CommitOutcome) -> DecisionRecord {
    match outcome {
        CommitOutcome::Committed(d) => d,
        other => panic!("expected Committed, got {other:?}"),
    }
}

/// A replay answers the stored record (same id, reasons, version) and reserves nothing
/// again; `load` sees the record; rejections replay too.
pub(crate) async fn replay_returns_the_stored_decision<S: Store>(store: S) {
    let u = user("u-replay");
    seed(&store, &u, 100_000, 0).await;

    let first = committed(
        store
            .commit(approve(&u, "k1", fp(1), 1_000, 100_000))
            .await
            .unwrap(),
    );
    assert_eq!(
        first.available_fen, 99_000,
        "set from the state after the reservation"
    );
    assert_eq!(first.drawable_now_fen, 99_000, "capped at available");
    let after = state(&store, &u).await;
    assert_eq!((after.used, after.drawdowns_24h), (fen(1_000), 1));

    // The gateway mints a new id and may evaluate differently on a retry; the store answers
    // the first record.
    let mut retry = approve(&u, "k1", fp(1), 1_000, 100_000);
    retry.decision.threshold_version = 8;
    retry.now = at(1);
    assert_eq!(
        store.commit(retry).await.unwrap(),
        CommitOutcome::Replayed(first.clone())
    );
    assert_eq!(state(&store, &u).await, after, "nothing reserved again");

    let loaded = store.load(CALLER, &u, Some("k1")).await.unwrap();
    assert_eq!(loaded.user, Some(after.clone()));
    let idem = loaded.idempotent.unwrap();
    assert_eq!((idem.fingerprint, &idem.decision), (fp(1), &first));
    assert_eq!(
        store
            .get_decision(CALLER, &first.decision_id)
            .await
            .unwrap(),
        Some(first.clone())
    );
    assert!(
        store
            .load(CALLER, &u, Some("k2"))
            .await
            .unwrap()
            .idempotent
            .is_none()
    );

    // A state update from upstream keeps the records.
    let mut raised = after.clone();
    raised.limit = fen(200_000);
    store.upsert_user(&u, raised).await.unwrap();
    assert!(
        store
            .load(CALLER, &u, Some("k1"))
            .await
            .unwrap()
            .idempotent
            .is_some()
    );

    let rejected = committed(
        store
            .commit(reject(&u, "k2", fp(2), 5_000, t0()))
            .await
            .unwrap(),
    );
    assert_eq!(rejected.outcome, Outcome::Rejected);
    assert_eq!(rejected.available_fen, 199_000);
    assert_eq!(rejected.reasons.len(), 1);
    assert_eq!(
        store
            .commit(reject(&u, "k2", fp(2), 5_000, at(2)))
            .await
            .unwrap(),
        CommitOutcome::Replayed(rejected)
    );
    let end = state(&store, &u).await;
    assert_eq!((end.used, end.drawdowns_24h), (fen(1_000), 1));
}

/// The same key with another fingerprint is refused and changes nothing.
pub(crate) async fn reused_key_is_refused<S: Store>(store: S) {
    let u = user("u-reuse");
    seed(&store, &u, 100_000, 0).await;
    let first = committed(
        store
            .commit(approve(&u, "k1", fp(1), 1_000, 100_000))
            .await
            .unwrap(),
    );
    assert_eq!(
        store
            .commit(approve(&u, "k1", fp(2), 2_000, 100_000))
            .await
            .unwrap(),
        CommitOutcome::KeyReused
    );
    assert_eq!(
        store
            .commit(reject(&u, "k1", fp(3), 2_000, t0()))
            .await
            .unwrap(),
        CommitOutcome::KeyReused
    );
    assert_eq!(state(&store, &u).await.used, fen(1_000));
    let idem = store
        .load(CALLER, &u, Some("k1"))
        .await
        .unwrap()
        .idempotent
        .unwrap();
    assert_eq!((idem.fingerprint, idem.decision), (fp(1), first));
}

/// A key is scoped by caller and by user: the same key from two callers, or for two users,
/// is two requests.
pub(crate) async fn keys_are_scoped_by_caller_and_user<S: Store>(store: S) {
    let (u, v) = (user("u-scope-1"), user("u-scope-2"));
    seed(&store, &u, 100_000, 0).await;
    seed(&store, &v, 100_000, 0).await;
    let a = committed(
        store
            .commit(approve_as("caller-a", &u, "k", fp(1), 1_000, 100_000, t0()))
            .await
            .unwrap(),
    );
    let b = committed(
        store
            .commit(approve_as("caller-b", &u, "k", fp(2), 2_000, 100_000, t0()))
            .await
            .unwrap(),
    );
    let c = committed(
        store
            .commit(approve_as("caller-a", &v, "k", fp(3), 3_000, 100_000, t0()))
            .await
            .unwrap(),
    );
    assert_ne!(a.decision_id, b.decision_id);
    assert_eq!(state(&store, &u).await.used, fen(3_000));
    assert_eq!(state(&store, &v).await.used, fen(3_000));
    let get = |caller: &'static str, who: &UserId| {
        let who = who.clone();
        let store = &store;
        async move {
            store
                .load(caller, &who, Some("k"))
                .await
                .unwrap()
                .idempotent
                .map(|r| r.decision)
        }
    };
    assert_eq!(get("caller-a", &u).await, Some(a));
    assert_eq!(get("caller-b", &u).await, Some(b));
    assert_eq!(get("caller-a", &v).await, Some(c));
    assert_eq!(get("caller-b", &v).await, None);
}

/// A reservation past the ceiling, or past the current limit, answers the current state
/// and writes nothing; one that lands exactly on the ceiling passes.
pub(crate) async fn line_changed_writes_nothing<S: Store>(store: S) {
    let u = user("u-line");
    let seeded = seed(&store, &u, 10_000, 9_000).await;

    let req = approve(&u, "k1", fp(1), 2_000, 10_000);
    let id = req.decision.decision_id.clone();
    assert_eq!(
        store.commit(req).await.unwrap(),
        CommitOutcome::LineChanged(seeded.clone())
    );
    assert_eq!(state(&store, &u).await, seeded);
    assert!(
        store
            .load(CALLER, &u, Some("k1"))
            .await
            .unwrap()
            .idempotent
            .is_none()
    );
    assert_eq!(store.get_decision(CALLER, &id).await.unwrap(), None);

    // The ceiling binds below the limit (a utilisation cap).
    let fresh = seed(&store, &u, 10_000, 0).await;
    assert_eq!(
        store
            .commit(approve(&u, "k2", fp(2), 6_000, 5_000))
            .await
            .unwrap(),
        CommitOutcome::LineChanged(fresh.clone())
    );
    // A stale ceiling above a limit lowered since: the limit still binds.
    assert_eq!(
        store
            .commit(approve(&u, "k3", fp(3), 10_500, 20_000))
            .await
            .unwrap(),
        CommitOutcome::LineChanged(fresh.clone())
    );
    // After LineChanged the key is free: the gateway re-evaluates and commits again.
    let d = committed(
        store
            .commit(approve(&u, "k2", fp(2), 5_000, 5_000))
            .await
            .unwrap(),
    );
    assert_eq!(d.available_fen, 5_000);
    assert_eq!(state(&store, &u).await.used, fen(5_000));
}

/// Outcome counts of [`concurrent_commits_never_over_reserve`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) approved: u64,
    pub(crate) rejected: u64,
    pub(crate) line_changed: u64,
}

/// 500 concurrent drawdowns of 1,000 fen against a 100,000-fen line, each doing what the
/// gateway does (load, decide, commit, re-decide on `LineChanged`): exactly 100 approved.
/// Every task loads before any commits, so all 500 first try to approve on a stale state.
/// Run it on a multi-thread runtime.
pub(crate) async fn concurrent_commits_never_over_reserve<S: Store>(store: S) -> Counts {
    const N: usize = 500;
    let u = user("u-race");
    seed(&store, &u, 100_000, 0).await;
    let store = Arc::new(store);
    let start = Arc::new(tokio::sync::Barrier::new(N));
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let (store, start, u) = (Arc::clone(&store), Arc::clone(&start), u.clone());
            tokio::spawn(async move {
                let key = format!("race-{i}");
                let f = Fingerprint::from_bytes(*blake3::hash(key.as_bytes()).as_bytes());
                let mut state = store
                    .load(CALLER, &u, Some(&key))
                    .await
                    .unwrap()
                    .user
                    .unwrap();
                start.wait().await;
                let mut retries = 0;
                loop {
                    let fits = state
                        .used
                        .checked_add(fen(1_000))
                        .is_some_and(|used| used <= state.limit);
                    let req = if fits {
                        approve(&u, &key, f, 1_000, state.limit.get())
                    } else {
                        reject(&u, &key, f, 1_000, t0())
                    };
                    match store.commit(req).await.unwrap() {
                        CommitOutcome::Committed(d) => return (d, retries),
                        CommitOutcome::LineChanged(now) => {
                            retries += 1;
                            state = now;
                        }
                        other => panic!("{other:?}"),
                    }
                }
            })
        })
        .collect();
    let mut counts = Counts::default();
    let mut approved = Vec::new();
    for t in tasks {
        let (d, retries) = t.await.unwrap();
        counts.line_changed += retries;
        match d.outcome {
            Outcome::Approved => {
                counts.approved += 1;
                approved.push(d);
            }
            _ => counts.rejected += 1,
        }
    }
    assert_eq!((counts.approved, counts.rejected), (100, 400));
    assert!(counts.line_changed >= 400, "{counts:?}");
    let end = state(&*store, &u).await;
    assert_eq!((end.used, end.drawdowns_24h), (fen(100_000), 100));
    // Every approval saw a distinct point of the line: available_fen runs 99,000 down to 0.
    let mut seen: Vec<u64> = approved.iter().map(|d| d.available_fen).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..100).map(|i| i * 1_000).collect::<Vec<_>>());
    for d in &approved {
        assert_eq!(
            store
                .get_decision(CALLER, &d.decision_id)
                .await
                .unwrap()
                .as_ref(),
            Some(d)
        );
    }
    counts
}

/// Unknown users: nothing to load, nothing committed.
pub(crate) async fn unknown_user<S: Store>(store: S) {
    let u = user("u-nobody");
    let loaded = store.load(CALLER, &u, Some("k1")).await.unwrap();
    assert_eq!((loaded.user, loaded.idempotent), (None, None));
    let req = approve(&u, "k1", fp(1), 1_000, 100_000);
    let id = req.decision.decision_id.clone();
    assert_eq!(
        store.commit(req).await.unwrap(),
        CommitOutcome::UserNotFound
    );
    assert_eq!(
        store
            .commit(reject(&u, "k1", fp(1), 1_000, t0()))
            .await
            .unwrap(),
        CommitOutcome::UserNotFound
    );
    assert_eq!(store.get_decision(CALLER, &id).await.unwrap(), None);
    assert_eq!(
        store.get_decision(CALLER, "dd_not-an-id").await.unwrap(),
        None
    );
    store.ping().await.unwrap();
}

/// A request the contract does not allow is refused as the caller's bug, and writes nothing.
pub(crate) async fn invalid_commits_are_refused<S: Store>(store: S) {
    let (u, v) = (user("u-invalid"), user("u-other"));
    seed(&store, &u, 100_000, 0).await;
    let cases = [
        {
            let mut r = approve(&u, "k1", fp(1), 1_000, 100_000);
            r.reserve = None;
            r
        },
        {
            let mut r = reject(&u, "k1", fp(1), 1_000, t0());
            r.reserve = Some(Reservation {
                amount: fen(1_000),
                ceiling: fen(100_000),
            });
            r
        },
        {
            let mut r = approve(&u, "k1", fp(1), 1_000, 100_000);
            r.decision.amount_fen = 2_000;
            r
        },
        {
            // An id minted for a user of another slot.
            let elsewhere = (0..)
                .map(|i| user(&format!("u-elsewhere-{i}")))
                .find(|x| user_slot(x) != user_slot(&u))
                .unwrap();
            let mut r = approve(&u, "k1", fp(1), 1_000, 100_000);
            r.decision.decision_id = new_decision_id(&elsewhere, t0());
            r
        },
        {
            let mut r = approve(&u, "k1", fp(1), 1_000, 100_000);
            r.decision.decision_id = "dd_not-a-ulid".into();
            r
        },
        {
            let mut r = approve(&u, "k1", fp(1), 1_000, 100_000);
            r.decision.user_id = v.to_string();
            r
        },
    ];
    for (i, req) in cases.into_iter().enumerate() {
        let err = store.commit(req).await;
        assert!(
            matches!(err, Err(StoreError::Invalid(_))),
            "case {i}: {err:?}"
        );
    }
    assert_eq!(state(&store, &u).await.used, Fen::ZERO);
    assert!(
        store
            .load(CALLER, &u, Some("k1"))
            .await
            .unwrap()
            .idempotent
            .is_none()
    );
}

fn appeal(u: &UserId, decision_id: &str, now: Timestamp) -> AppealRecord {
    AppealRecord {
        appeal_id: new_appeal_id(u, now),
        decision_id: decision_id.into(),
        user_id: u.to_string(),
        message: "I log in often because I use the app daily.".into(),
        status: AppealStatus::Open,
        created_at: now.display_with_offset(jiff::tz::offset(8)).to_string(),
        due_at: (now + SignedDuration::from_hours(15 * 24))
            .display_with_offset(jiff::tz::offset(8))
            .to_string(),
        resolved_at: None,
        resolution_note: None,
    }
}

/// Appeals: create, not found, wrong user, not appealable, one per decision, list by status
/// oldest first, resolve once, resolve twice, resolve unknown.
pub(crate) async fn appeals<S: Store>(store: S) {
    let (u, v) = (user("u-appeal"), user("u-appeal-other"));
    seed(&store, &u, 100_000, 0).await;
    seed(&store, &v, 100_000, 0).await;
    let mut rejected = Vec::new();
    for i in 0..3 {
        let key = format!("k{i}");
        let d = committed(
            store
                .commit(reject(&u, &key, fp(i), 1_000, at(i.into())))
                .await
                .unwrap(),
        );
        assert!(d.appealable);
        rejected.push(d);
    }
    let approved = committed(
        store
            .commit(approve(&u, "ka", fp(9), 1_000, 100_000))
            .await
            .unwrap(),
    );
    assert!(!approved.appealable);

    // Not found: an id of the right shape that was never stored, and garbage.
    let ghost = new_decision_id(&u, t0());
    assert_eq!(
        store
            .create_appeal(CALLER, appeal(&u, &ghost, t0()))
            .await
            .unwrap(),
        AppealCreated::DecisionNotFound
    );
    assert_eq!(
        store
            .create_appeal(CALLER, appeal(&u, "dd_garbage", t0()))
            .await
            .unwrap(),
        AppealCreated::DecisionNotFound
    );
    // Another user's decision is not found, whatever its slot.
    assert_eq!(
        store
            .create_appeal(CALLER, appeal(&v, &rejected[0].decision_id, t0()))
            .await
            .unwrap(),
        AppealCreated::DecisionNotFound
    );
    assert_eq!(
        store
            .create_appeal(CALLER, appeal(&u, &approved.decision_id, t0()))
            .await
            .unwrap(),
        AppealCreated::NotAppealable
    );
    assert_eq!(store.list_appeals(None, 10).await.unwrap(), vec![]);

    let mut created = Vec::new();
    for (i, d) in rejected.iter().enumerate() {
        let a = appeal(&u, &d.decision_id, at(10 + i64::try_from(i).unwrap()));
        assert_eq!(
            store.create_appeal(CALLER, a.clone()).await.unwrap(),
            AppealCreated::Created(a.clone())
        );
        assert_eq!(
            store.get_appeal(CALLER, &a.appeal_id).await.unwrap(),
            Some(a.clone())
        );
        created.push(a);
    }
    // One appeal per decision: a second answers the first, unchanged.
    assert_eq!(
        store
            .create_appeal(CALLER, appeal(&u, &rejected[0].decision_id, at(20)))
            .await
            .unwrap(),
        AppealCreated::AlreadyAppealed(created[0].clone())
    );
    assert_eq!(store.get_appeal(CALLER, "ap_unknown").await.unwrap(), None);

    // Resolve the middle one.
    let now = at(30);
    let resolved = match store
        .resolve_appeal(
            &created[1].appeal_id,
            Resolution::Overturned,
            Some("login count alone is not a risk".into()),
            now,
        )
        .await
        .unwrap()
    {
        AppealResolved::Resolved(a) => a,
        other => panic!("{other:?}"),
    };
    assert_eq!(resolved.status, AppealStatus::Overturned);
    assert_eq!(
        resolved.resolution_note.as_deref(),
        Some("login count alone is not a risk")
    );
    let resolved_at = resolved.resolved_at.clone().unwrap();
    assert!(resolved_at.ends_with("+08:00"), "{resolved_at}");
    assert_eq!(resolved_at.parse::<Timestamp>().unwrap(), now);
    assert_eq!(
        store
            .get_appeal(CALLER, &created[1].appeal_id)
            .await
            .unwrap(),
        Some(resolved.clone())
    );

    // Twice: the first resolution stands.
    assert_eq!(
        store
            .resolve_appeal(&created[1].appeal_id, Resolution::Upheld, None, at(31))
            .await
            .unwrap(),
        AppealResolved::AlreadyResolved(resolved.clone())
    );
    assert_eq!(
        store
            .resolve_appeal("ap_unknown", Resolution::Upheld, None, at(31))
            .await
            .unwrap(),
        AppealResolved::NotFound
    );

    let ids = |v: Vec<AppealRecord>| v.into_iter().map(|a| a.appeal_id).collect::<Vec<_>>();
    let open = store
        .list_appeals(Some(AppealStatus::Open), 10)
        .await
        .unwrap();
    assert_eq!(
        ids(open),
        vec![created[0].appeal_id.clone(), created[2].appeal_id.clone()]
    );
    assert_eq!(
        store
            .list_appeals(Some(AppealStatus::Overturned), 10)
            .await
            .unwrap(),
        vec![resolved.clone()]
    );
    assert_eq!(
        store
            .list_appeals(Some(AppealStatus::Upheld), 10)
            .await
            .unwrap(),
        vec![]
    );
    let all = store.list_appeals(None, 2).await.unwrap();
    assert_eq!(
        ids(all),
        vec![created[0].appeal_id.clone(), created[1].appeal_id.clone()]
    );
    assert_eq!(
        store
            .list_appeals(Some(AppealStatus::Open), 1)
            .await
            .unwrap(),
        vec![created[0].clone()]
    );
}

/// Retention: a record older than the retention is purged and a newer one survives; a
/// commit never replays an expired record, purged or not; decisions outlive their records.
/// `retention` is the store's idempotency retention.
pub(crate) async fn retention<S: Store>(store: S, retention: Duration) {
    let retention = SignedDuration::try_from(retention).unwrap();
    let hour = SignedDuration::from_hours(1);
    let u = user("u-retention");
    seed(&store, &u, 100_000, 0).await;
    let old = committed(
        store
            .commit(approve_as(CALLER, &u, "old", fp(1), 1_000, 100_000, t0()))
            .await
            .unwrap(),
    );
    let newer_at = t0() + retention - hour;
    committed(
        store
            .commit(approve_as(
                CALLER,
                &u,
                "new",
                fp(2),
                1_000,
                100_000,
                newer_at,
            ))
            .await
            .unwrap(),
    );
    // Just before the retention ends, the old record still replays.
    let almost = t0() + retention - SignedDuration::from_secs(1);
    assert!(store.purge_expired(almost).await.unwrap() == 0);
    assert_eq!(
        store
            .commit(approve_as(CALLER, &u, "old", fp(1), 1_000, 100_000, almost))
            .await
            .unwrap(),
        CommitOutcome::Replayed(old.clone())
    );

    let past = t0() + retention + SignedDuration::from_secs(1);
    assert!(store.purge_expired(past).await.unwrap() >= 1);
    let load = |key: &'static str| {
        let (store, u) = (&store, u.clone());
        async move { store.load(CALLER, &u, Some(key)).await.unwrap().idempotent }
    };
    assert_eq!(load("old").await, None, "purged");
    assert!(load("new").await.is_some(), "still within its retention");
    assert_eq!(
        store.get_decision(CALLER, &old.decision_id).await.unwrap(),
        Some(old.clone()),
        "decisions outlive their idempotency records"
    );
    // The key is free again: another request with it is a new decision.
    let again = committed(
        store
            .commit(approve_as(CALLER, &u, "old", fp(3), 1_000, 100_000, past))
            .await
            .unwrap(),
    );
    assert_ne!(again.decision_id, old.decision_id);

    // Without a purge, a commit past the retention does not replay either.
    let newer_expired = newer_at + retention + SignedDuration::from_secs(1);
    committed(
        store
            .commit(approve_as(
                CALLER,
                &u,
                "new",
                fp(4),
                1_000,
                100_000,
                newer_expired,
            ))
            .await
            .unwrap(),
    );
    assert_eq!(state(&store, &u).await.used, fen(4_000));
}

/// A decision and its appeal are the committing caller's: another caller neither reads the
/// decision, nor appeals it, nor reads (or is answered) its appeal, exactly as if they did
/// not exist.
pub(crate) async fn decisions_and_appeals_belong_to_their_caller<S: Store>(store: S) {
    let u = user("u-owned");
    seed(&store, &u, 100_000, 0).await;
    let mut req = reject(&u, "k", fp(1), 1_000, t0());
    req.caller = "caller-a".into();
    let d = committed(store.commit(req).await.unwrap());
    assert!(d.appealable);
    assert_eq!(
        store
            .get_decision("caller-a", &d.decision_id)
            .await
            .unwrap(),
        Some(d.clone())
    );
    assert_eq!(
        store
            .get_decision("caller-b", &d.decision_id)
            .await
            .unwrap(),
        None
    );
    // Operators read it whoever committed it; an unknown or malformed id is still none.
    assert_eq!(
        store.get_decision_any(&d.decision_id).await.unwrap(),
        Some(d.clone())
    );
    assert_eq!(store.get_decision_any("dd_not-an-id").await.unwrap(), None);
    // Caller B may not appeal A's decision, even naming the right user.
    let theirs = appeal(&u, &d.decision_id, at(1));
    assert_eq!(
        store.create_appeal("caller-b", theirs).await.unwrap(),
        AppealCreated::DecisionNotFound
    );
    let a = appeal(&u, &d.decision_id, at(2));
    assert_eq!(
        store.create_appeal("caller-a", a.clone()).await.unwrap(),
        AppealCreated::Created(a.clone())
    );
    // Once appealed, B is still answered "not found", never A's appeal.
    assert_eq!(
        store
            .create_appeal("caller-b", appeal(&u, &d.decision_id, at(3)))
            .await
            .unwrap(),
        AppealCreated::DecisionNotFound
    );
    assert_eq!(
        store.get_appeal_any(&a.appeal_id).await.unwrap(),
        Some(a.clone()),
        "operators read every caller's appeals"
    );
    assert_eq!(
        store.get_appeal("caller-a", &a.appeal_id).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        store.get_appeal("caller-b", &a.appeal_id).await.unwrap(),
        None
    );
    // The admin views are not scoped.
    assert_eq!(store.list_appeals(None, 10).await.unwrap(), vec![a]);
}

/// The audit trail of operator changes: appended in order, paged by cursor, read back as
/// written, never trimmed by a page.
pub(crate) async fn operator_changes(store: gateway::store::AnyStore) {
    use gateway::store::{AuditCursor, FieldChange, OperatorChange};
    let change = |n: u32| OperatorChange {
        operator: if n.is_multiple_of(2) { "alice" } else { "bob" }.into(),
        at: format!("2026-11-11T00:00:{:02}+08:00", n % 60),
        action: "credit_line.upsert".into(),
        route: "PUT /admin/credit-lines/{user_id}".into(),
        target: format!("u-{n}"),
        changes: vec![FieldChange {
            path: "/limit_fen".into(),
            before: serde_json::json!(n),
            after: serde_json::json!(n + 1),
        }],
    };
    let empty = store
        .operator_changes(AuditCursor::START, 10)
        .await
        .unwrap();
    assert!(empty.entries.is_empty());
    let mut ids = Vec::new();
    for n in 0..25 {
        ids.push(store.append_operator_change(change(n)).await.unwrap());
    }
    // Ids are cursors, in order.
    let cursors: Vec<AuditCursor> = ids.iter().map(|i| AuditCursor::parse(i).unwrap()).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // Paging by 10 reads every entry once, in order, as written.
    let mut read = Vec::new();
    let mut after = AuditCursor::START;
    loop {
        let page = store.operator_changes(after, 10).await.unwrap();
        assert_eq!(page.dropped, 0);
        let Some(last) = page.entries.last() else {
            break;
        };
        after = AuditCursor::parse(&last.id).unwrap();
        assert!(page.entries.len() <= 10);
        read.extend(page.entries);
    }
    assert_eq!(read.len(), 25);
    for (n, e) in read.iter().enumerate() {
        assert_eq!(e.id, ids[n]);
        assert_eq!(e.change, change(u32::try_from(n).unwrap()));
    }
    // A cursor in the middle: the entries after it.
    let page = store.operator_changes(cursors[19], 100).await.unwrap();
    assert_eq!(page.entries.len(), 5);
    assert_eq!(page.entries[0].id, ids[20]);
    // Paging back by 10 from the newest reads every entry once, newest first.
    let mut back = Vec::new();
    let mut before = None;
    loop {
        let page = store.operator_changes_back(before, 10).await.unwrap();
        let Some(last) = page.entries.last() else {
            break;
        };
        before = AuditCursor::parse(&last.id);
        assert!(page.entries.len() <= 10);
        back.extend(page.entries.into_iter().map(|e| e.id));
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(back, newest_first);
    // A cursor in the middle: the entries before it.
    let page = store
        .operator_changes_back(Some(cursors[3]), 100)
        .await
        .unwrap();
    let got: Vec<&str> = page.entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(got, [&ids[2], &ids[1], &ids[0]]);
}

/// A manual clock at [`t0`], the time the contract's commits carry: a store on it counts
/// those commits in its sliding 24-hour drawdown count.
pub(crate) fn t0_clock() -> gateway::clock::ManualClock {
    gateway::clock::ManualClock::new(t0())
}

/// `drawdowns_24h` is a sliding count under the store's clock (`clock`, which `store` runs
/// on): the upstream count lapses 24 hours after it was set, each approval 24 hours after it
/// was committed (rejections count nothing), and a new upstream state replaces both. Each
/// count is read as a quote reads it ([`Store::load`]) and as a drawdown does
/// ([`Store::load_for_drawdown`], then [`Store::seen`]), which a store may answer from what it
/// keeps: kept states slide too.
pub(crate) async fn drawdowns_24h_slides_with_the_clock<S: Store>(
    store: S,
    clock: &gateway::clock::ManualClock,
) {
    let u = user("u-slide");
    let mut upstream = UserState::clean(fen(1_000_000), RiskGrade::A);
    upstream.drawdowns_24h = 2;
    clock.set(t0());
    store.upsert_user(&u, upstream.clone()).await.unwrap();
    let at = |h: i64, s: i64| t0() + SignedDuration::from_hours(h) + SignedDuration::from_secs(s);
    async fn count<S: Store>(store: &S, u: &UserId) -> u32 {
        let quoted = store.load(CALLER, u, None).await.unwrap().user.unwrap();
        let loaded = store.load_for_drawdown(CALLER, u, "probe").await.unwrap();
        let seen = store.seen(u, loaded.user.unwrap()).await.unwrap();
        assert_eq!(
            quoted.drawdowns_24h, seen.state.drawdowns_24h,
            "a quote and a drawdown count alike"
        );
        quoted.drawdowns_24h
    }
    assert_eq!(count(&store, &u).await, 2, "the upstream count");
    for (i, when) in [at(1, 0), at(1, 0), at(10, 0)].into_iter().enumerate() {
        clock.set(when);
        let key = format!("k{i}");
        committed(
            store
                .commit(approve_as(CALLER, &u, &key, fp(1), 1, 1_000_000, when))
                .await
                .unwrap(),
        );
        // A drawdown's path: this keeps the state the commit left, if the store keeps any.
        count(&store, &u).await;
    }
    clock.set(at(10, 1));
    committed(
        store
            .commit(reject(&u, "rejected", fp(2), 1, at(10, 1)))
            .await
            .unwrap(),
    );
    assert_eq!(count(&store, &u).await, 5, "2 upstream + 3 approvals");
    clock.set(at(23, 3599));
    assert_eq!(count(&store, &u).await, 5);
    clock.set(at(24, 0));
    assert_eq!(count(&store, &u).await, 3, "the upstream count lapsed");
    clock.set(at(25, 0));
    assert_eq!(
        count(&store, &u).await,
        1,
        "the two approvals of hour 1 are 24 h old"
    );
    clock.set(at(34, 0));
    assert_eq!(count(&store, &u).await, 0);
    // Counting again from zero; then an upstream refresh replaces what was counted.
    committed(
        store
            .commit(approve_as(CALLER, &u, "k9", fp(1), 1, 1_000_000, at(34, 0)))
            .await
            .unwrap(),
    );
    assert_eq!(count(&store, &u).await, 1);
    store.upsert_user(&u, upstream).await.unwrap();
    assert_eq!(count(&store, &u).await, 2);
    clock.set(at(58, 0));
    assert_eq!(count(&store, &u).await, 0);
}

/// The staged shadow candidate is the store's, one for every handle on it (every instance of
/// a fleet): what `a` stages `b` reads; staging again replaces it; clearing names the id it
/// clears, so a candidate staged meanwhile stays.
pub(crate) async fn staged_candidate(a: gateway::store::AnyStore, b: gateway::store::AnyStore) {
    use gateway::store::StagedCandidate;
    let candidate = |n: u64, by: &str| StagedCandidate {
        id: StagedCandidate::mint_id(t0()),
        staged_by: by.into(),
        staged_at: "2026-11-11T00:00:00+08:00".into(),
        document: format!(r#"{{"version": {n}}}"#),
    };
    assert_eq!(a.staged_candidate().await.unwrap(), None);
    assert!(!a.unstage_candidate("sc_none").await.unwrap());
    let first = candidate(2, "alice");
    a.stage_candidate(&first).await.unwrap();
    assert_eq!(b.staged_candidate().await.unwrap(), Some(first.clone()));
    let second = candidate(3, "bob");
    assert_ne!(first.id, second.id, "ids minted in one millisecond differ");
    b.stage_candidate(&second).await.unwrap();
    assert_eq!(a.staged_candidate().await.unwrap(), Some(second.clone()));
    // A discard meant for the first leaves the second.
    assert!(!a.unstage_candidate(&first.id).await.unwrap());
    assert_eq!(b.staged_candidate().await.unwrap(), Some(second.clone()));
    assert!(a.unstage_candidate(&second.id).await.unwrap());
    assert_eq!(b.staged_candidate().await.unwrap(), None);
    assert!(!b.unstage_candidate(&second.id).await.unwrap());
}

/// The decision-inputs record is bounded over the whole store, not per shard or slot: after
/// 120 decisions of 40 users (on as many shards and slots), the last `kept` = 64 all have their
/// inputs, the record holds `bound(64)` = 65, and the 55 older ones are skipped as pushed out.
pub(crate) async fn decision_inputs_are_bounded_over_the_store(store: gateway::store::AnyStore) {
    use gateway::store::inputs::{BureauInput, DecisionInputs, bound};
    use gateway::store::{Selected, Selection};
    const KEPT: usize = 64;
    assert_eq!(bound(KEPT), 65);
    let users: Vec<UserId> = (0..40).map(|n| user(&format!("u-din-{n}"))).collect();
    for u in &users {
        seed(&store, u, 1_000_000, 0).await;
    }
    let mut ids = Vec::new();
    for round in 0..3 {
        for (n, u) in users.iter().enumerate() {
            let now = t0() + SignedDuration::from_millis(i64::try_from(round * 40 + n).unwrap());
            let d = committed(
                store
                    .commit(reject(u, &format!("din-{round}"), fp(9), 1_000, now))
                    .await
                    .unwrap(),
            );
            store.keep_inputs(
                DecisionInputs {
                    decision_id: d.decision_id.clone(),
                    user_id: u.to_string(),
                    state: UserState::clean(fen(1_000_000), RiskGrade::B),
                    amount_fen: 1_000,
                    channel: risk_core::Channel::App,
                    bureau: BureauInput::NotConsulted,
                    profile: "normal".into(),
                    window_ends_at: None,
                    threshold_version: 1,
                    outcome: Outcome::Rejected,
                    reason: Some(ReasonCode::VelocityDrawdowns24h),
                },
                KEPT,
            );
            ids.push(d.decision_id);
        }
    }
    // The Redis store sends the inputs after the commit, unawaited: wait (bounded) for them.
    let mut last: Selected = Selected::default();
    for _ in 0..250 {
        last = store.select_inputs(Selection::Last(KEPT)).await.unwrap();
        if last.inputs.len() == KEPT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        (last.decisions, last.inputs.len(), last.pushed_out),
        (KEPT, KEPT, 0)
    );
    let got: Vec<&str> = last.inputs.iter().map(|i| i.decision_id.as_str()).collect();
    let want: Vec<&str> = ids[ids.len() - KEPT..].iter().map(String::as_str).collect();
    assert_eq!(got, want, "the last 64, oldest first");
    let all = store.select_inputs(Selection::Last(200)).await.unwrap();
    assert_eq!(
        (all.decisions, all.inputs.len(), all.pushed_out),
        (120, 65, 55)
    );
    assert_eq!(all.inputs[0].decision_id, ids[120 - 65]);
}
