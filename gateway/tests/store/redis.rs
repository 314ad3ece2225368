//! The contract on the Redis store (each test on its own `redis-server`, or `REDIS_URL`
//! under a fresh key prefix), and what only the Redis store promises: the audit streams,
//! the key layout, bounded failures.
#![allow(clippy::unwrap_used)]

use crate::contract;
use crate::redis_server::{AnyRedis, Options, RedisServer, config};
use gateway::clock::Clock;
use gateway::store::{
    AnyStore, CommitOutcome, CommitRequest, DecisionRecord, Fingerprint, RedisConfig, RedisStore,
    Reservation, Store, StoreError, new_decision_id, user_slot,
};
use risk_core::{Fen, Outcome, RiskGrade, UserId, UserState};
use std::time::Duration;

/// A store on a Redis of this test's own (or `REDIS_URL`); `None`: skipped.
macro_rules! redis_or_skip {
    () => {
        match AnyRedis::get().await {
            Some(r) => r,
            None => {
                eprintln!("skipped: LOAN_GATEWAY_SKIP_REDIS_TESTS=1");
                return;
            }
        }
    };
}

#[tokio::test]
async fn replay_returns_the_stored_decision() {
    let r = redis_or_skip!();
    contract::replay_returns_the_stored_decision(at_t0(config(r.url.clone()))).await;
}

#[tokio::test]
async fn replay_through_any_store() {
    let r = redis_or_skip!();
    contract::replay_returns_the_stored_decision(AnyStore::Redis(at_t0(config(r.url.clone()))))
        .await;
}

#[tokio::test]
async fn operator_changes() {
    let r = redis_or_skip!();
    contract::operator_changes(AnyStore::Redis(r.store())).await;
}

#[tokio::test]
async fn staged_candidate() {
    let r = redis_or_skip!();
    // Two stores on one prefix: two instances of a fleet.
    let c = config(r.url.clone());
    contract::staged_candidate(AnyStore::Redis(at_t0(c.clone())), AnyStore::Redis(at_t0(c))).await;
}

#[tokio::test]
async fn decision_inputs_are_bounded_over_the_store() {
    let r = redis_or_skip!();
    contract::decision_inputs_are_bounded_over_the_store(AnyStore::Redis(at_t0(config(
        r.url.clone(),
    ))))
    .await;
}

#[tokio::test]
async fn reused_key_is_refused() {
    let r = redis_or_skip!();
    contract::reused_key_is_refused(at_t0(config(r.url.clone()))).await;
}

#[tokio::test]
async fn keys_are_scoped_by_caller_and_user() {
    let r = redis_or_skip!();
    contract::keys_are_scoped_by_caller_and_user(at_t0(config(r.url.clone()))).await;
}

#[tokio::test]
async fn line_changed_writes_nothing() {
    let r = redis_or_skip!();
    contract::line_changed_writes_nothing(at_t0(config(r.url.clone()))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_never_over_reserve() {
    let r = redis_or_skip!();
    let counts =
        contract::concurrent_commits_never_over_reserve(at_t0(config(r.url.clone()))).await;
    assert_eq!(counts.approved, 100);
}

#[tokio::test]
async fn drawdowns_24h_slides_with_the_clock() {
    let r = redis_or_skip!();
    let clock = contract::t0_clock();
    let s = RedisStore::with_clock(config(r.url.clone()), clock.shared()).unwrap();
    contract::drawdowns_24h_slides_with_the_clock(s, &clock).await;
}

#[tokio::test]
async fn unknown_user() {
    let r = redis_or_skip!();
    contract::unknown_user(at_t0(config(r.url.clone()))).await;
}

#[tokio::test]
async fn invalid_commits_are_refused() {
    let r = redis_or_skip!();
    contract::invalid_commits_are_refused(at_t0(config(r.url.clone()))).await;
}

#[tokio::test]
async fn appeals() {
    let r = redis_or_skip!();
    contract::appeals(at_t0(config(r.url.clone()))).await;
}

#[tokio::test]
async fn decisions_and_appeals_belong_to_their_caller() {
    let r = redis_or_skip!();
    contract::decisions_and_appeals_belong_to_their_caller(at_t0(config(r.url.clone()))).await;
}

#[tokio::test]
async fn retention_default() {
    let r = redis_or_skip!();
    let s = at_t0(config(r.url.clone()));
    let retention = s.config().idempotency_retention;
    contract::retention(s, retention).await;
}

#[tokio::test]
async fn retention_configured() {
    let r = redis_or_skip!();
    let s = at_t0(RedisConfig {
        idempotency_retention: Duration::from_secs(48 * 3600),
        decision_retention: Duration::from_secs(72 * 3600),
        ..config(r.url.clone())
    });
    contract::retention(s, Duration::from_secs(48 * 3600)).await;
}

/// A store on `config` and a manual clock at the contract's `t0`, the time its commits carry.
pub(crate) fn at_t0(config: RedisConfig) -> RedisStore {
    RedisStore::with_clock(config, contract::t0_clock().shared()).unwrap()
}

fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn request(u: &UserId, key: &str, outcome: Outcome, amount: u64) -> CommitRequest {
    let now = contract::t0();
    CommitRequest {
        caller: "c".into(),
        user: u.clone(),
        idempotency_key: key.into(),
        fingerprint: Fingerprint::from_bytes(*blake3::hash(key.as_bytes()).as_bytes()),
        decision: DecisionRecord {
            decision_id: new_decision_id(u, now),
            user_id: u.to_string(),
            outcome,
            amount_fen: amount,
            reasons: vec![],
            available_fen: 0,
            drawable_now_fen: u64::MAX,
            threshold_version: 3,
            policy: "standard".into(),
            evaluated_at: now.to_string(),
            appealable: false,
        },
        reserve: (outcome == Outcome::Approved).then(|| Reservation {
            amount: Fen::new(amount).unwrap(),
            ceiling: Fen::MAX,
        }),
        now,
    }
}

/// Each committed decision appends one event to its slot's stream, in commit order; a
/// replay or a refusal appends nothing. The consumer reads on from the last id it saw.
#[tokio::test]
async fn commits_append_audit_events_to_the_users_slot_stream() {
    let r = redis_or_skip!();
    let s = at_t0(config(r.url.clone()));
    let u = user("u-audit");
    s.upsert_user(
        &u,
        UserState::clean(Fen::new(10_000).unwrap(), RiskGrade::A),
    )
    .await
    .unwrap();
    let a = request(&u, "a", Outcome::Approved, 4_000);
    let first = match s.commit(a.clone()).await.unwrap() {
        CommitOutcome::Committed(d) => d,
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        s.commit(a).await.unwrap(),
        CommitOutcome::Replayed(_)
    ));
    let too_much = request(&u, "b", Outcome::Approved, 7_000);
    assert!(matches!(
        s.commit(too_much).await.unwrap(),
        CommitOutcome::LineChanged(_)
    ));
    s.commit(request(&u, "c", Outcome::Rejected, 7_000))
        .await
        .unwrap();

    let slot = user_slot(&u);
    let events = s.read_audit(slot, "0", 100).await.unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    let e = &events[0].fields;
    assert_eq!(e["decision_id"], first.decision_id);
    assert_eq!(e["user"], "u-audit");
    assert_eq!(e["caller"], "c");
    assert_eq!(e["idempotency_key"], "a");
    assert_eq!(e["outcome"], "approved");
    assert_eq!(e["amount_fen"], "4000");
    assert_eq!(e["used_fen"], "4000");
    assert_eq!(e["available_fen"], "6000");
    assert_eq!(e["threshold_version"], "3");
    assert_eq!(events[1].fields["outcome"], "rejected");
    assert_eq!(events[1].fields["used_fen"], "4000");
    // Reading on from the last id seen answers nothing new; other slots are empty.
    assert!(
        s.read_audit(slot, &events[1].id, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let after_first = s.read_audit(slot, &events[0].id, 100).await.unwrap();
    assert_eq!(after_first, events[1..]);
    assert_eq!(s.read_all_audit().await.unwrap(), events);
}

/// A checked commit (the common case: on the state the instance keeps, at its version)
/// writes the same audit event as an unchecked one, with the line the gateway computed; a
/// checked commit whose version moved is refused and leaves no idempotency record.
#[tokio::test]
async fn a_checked_commit_audits_its_line_and_a_refused_one_leaves_no_record() {
    let r = redis_or_skip!();
    let s = at_t0(config(r.url.clone()));
    let u = user("u-audit-seen");
    let state = s
        .upsert_user(
            &u,
            UserState::clean(Fen::new(10_000).unwrap(), RiskGrade::A),
        )
        .await
        .unwrap();
    let mut seen = s.seen(&u, state).await.unwrap();
    let first = match s
        .commit_seen(request(&u, "a", Outcome::Approved, 4_000), &mut seen)
        .await
        .unwrap()
    {
        CommitOutcome::Committed(d) => d,
        other => panic!("{other:?}"),
    };
    assert_eq!(first.available_fen, 6_000);
    assert_eq!(seen.state.used.get(), 4_000);
    drop(seen);
    // Another commit moves the version under a state seen before it.
    let mut stale = s
        .seen(&u, UserState::clean(Fen::MAX, RiskGrade::A))
        .await
        .unwrap();
    assert_eq!(stale.state.used.get(), 4_000);
    s.commit(request(&u, "b", Outcome::Approved, 1_000))
        .await
        .unwrap();
    let refused = s
        .commit_seen(request(&u, "c", Outcome::Approved, 1_000), &mut stale)
        .await
        .unwrap();
    assert!(
        matches!(&refused, CommitOutcome::LineChanged(fresh) if fresh.used.get() == 5_000),
        "{refused:?}"
    );
    assert!(
        s.load("c", &u, Some("c"))
            .await
            .unwrap()
            .idempotent
            .is_none()
    );

    let events = s.read_audit(user_slot(&u), "0", 100).await.unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    fn line(e: &gateway::store::AuditEvent) -> Vec<&str> {
        [
            "user",
            "caller",
            "idempotency_key",
            "outcome",
            "amount_fen",
            "used_fen",
        ]
        .into_iter()
        .chain(["available_fen", "threshold_version", "policy"])
        .map(|f| e.fields[f].as_str())
        .collect::<Vec<_>>()
    }
    assert_eq!(events[0].fields["decision_id"], first.decision_id);
    assert_eq!(
        line(&events[0]),
        [
            "u-audit-seen",
            "c",
            "a",
            "approved",
            "4000",
            "4000",
            "6000",
            "3",
            "standard"
        ]
    );
    assert_eq!(events[1].fields["used_fen"], "5000");
    assert_eq!(events[1].fields["available_fen"], "5000");
}

/// An audit event written before events were packed (one stream field per value) reads as
/// a packed one does, beside packed ones, and a backtest selects its decision.
#[tokio::test]
async fn audit_events_stored_field_by_field_still_read() {
    let r = redis_or_skip!();
    let s = at_t0(config(r.url.clone()));
    let u = user("u-audit-old");
    s.upsert_user(
        &u,
        UserState::clean(Fen::new(10_000).unwrap(), RiskGrade::A),
    )
    .await
    .unwrap();
    let slot = user_slot(&u);
    let old = request(&u, "old", Outcome::Approved, 1_000);
    let old_fields = [
        ("decision_id", old.decision.decision_id.as_str()),
        ("user", "u-audit-old"),
        ("caller", "c"),
        ("idempotency_key", "old"),
        ("outcome", "approved"),
        ("amount_fen", "1000"),
        ("threshold_version", "3"),
        ("policy", "standard"),
        ("evaluated_at", old.decision.evaluated_at.as_str()),
        ("used_fen", "1000"),
        ("available_fen", "9000"),
    ];
    let mut c = deadpool_redis::redis::Client::open(r.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: String = deadpool_redis::redis::cmd("XADD")
        .arg(s.audit_key(slot))
        .arg("*")
        .arg(&old_fields)
        .query_async(&mut c)
        .await
        .unwrap();
    let new = match s
        .commit(request(&u, "new", Outcome::Rejected, 1_000))
        .await
        .unwrap()
    {
        CommitOutcome::Committed(d) => d,
        other => panic!("{other:?}"),
    };

    let events = s.read_audit(slot, "0", 100).await.unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    let expected: std::collections::HashMap<String, String> = old_fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    assert_eq!(events[0].fields, expected);
    assert_eq!(events[1].fields["decision_id"], new.decision_id);
    assert_eq!(events[1].fields["outcome"], "rejected");
    assert_eq!(events[1].fields.len(), expected.len());
    let selected = s
        .select_inputs(gateway::store::Selection::Last(10))
        .await
        .unwrap();
    assert_eq!(selected.decisions, 2, "both forms are selected");
}

/// Lines up to `Fen::MAX` are reserved to the fen.
#[tokio::test]
async fn large_amounts_are_exact() {
    let r = redis_or_skip!();
    let s = at_t0(config(r.url.clone()));
    let u = user("u-large");
    let mut state = UserState::clean(Fen::MAX, RiskGrade::A);
    state.used = Fen::new(999_999_999_999_000).unwrap();
    s.upsert_user(&u, state.clone()).await.unwrap();
    let d = match s
        .commit(request(&u, "a", Outcome::Approved, 999))
        .await
        .unwrap()
    {
        CommitOutcome::Committed(d) => d,
        other => panic!("{other:?}"),
    };
    assert_eq!(d.available_fen, 1);
    assert_eq!(d.drawable_now_fen, 1);
    assert!(matches!(
        s.commit(request(&u, "b", Outcome::Approved, 2))
            .await
            .unwrap(),
        CommitOutcome::LineChanged(st) if st.used.get() == 999_999_999_999_999
    ));
    assert!(matches!(
        s.commit(request(&u, "c", Outcome::Approved, 1))
            .await
            .unwrap(),
        CommitOutcome::Committed(d) if d.available_fen == 0
    ));
}

/// A stopped server answers `Unavailable` within the configured bounds, never hangs; a
/// restarted one serves again through the same store, with no new store built.
#[tokio::test]
async fn outage_is_bounded_and_recovers() {
    let Some(mut server) = RedisServer::start(Options::default()).await else {
        return;
    };
    let s = at_t0(config(server.url()));
    let u = user("u-outage");
    s.upsert_user(
        &u,
        UserState::clean(Fen::new(10_000).unwrap(), RiskGrade::A),
    )
    .await
    .unwrap();
    s.ping().await.unwrap();
    server.kill().await;
    let started = tokio::time::Instant::now();
    for _ in 0..3 {
        let err = s.ping().await.unwrap_err();
        assert!(
            matches!(err, StoreError::Unavailable(_) | StoreError::Timeout),
            "{err:?}"
        );
        let err = s
            .commit(request(&u, "k", Outcome::Approved, 1))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Unavailable(_) | StoreError::Timeout),
            "{err:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10), "bounded");
    server.restart().await;
    // The first use of each connection opened before the restart may fail; it is then
    // dropped and the next use opens a fresh one.
    let mut ok = false;
    for _ in 0..20 {
        if s.ping().await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok, "the store recovers after a restart");
    // Without persistence the data is gone: a new user state is needed.
    s.upsert_user(
        &u,
        UserState::clean(Fen::new(10_000).unwrap(), RiskGrade::A),
    )
    .await
    .unwrap();
    assert!(matches!(
        s.commit(request(&u, "k", Outcome::Approved, 1))
            .await
            .unwrap(),
        CommitOutcome::Committed(_)
    ));
}

/// A user hash written before the sliding count (no `up_until`, its `drawdowns_24h` counting
/// every approval ever) keeps that count, never under-counting, until its next reservation;
/// the old count then lapses 24 hours on and only the approvals of the last 24 hours stay.
#[tokio::test]
async fn a_state_stored_before_the_sliding_count_lapses_a_day_after_its_next_approval() {
    let r = redis_or_skip!();
    let clock = contract::t0_clock();
    let cfg = config(r.url.clone());
    let prefix = cfg.key_prefix.clone();
    let s = RedisStore::with_clock(cfg, clock.shared()).unwrap();
    let u = user("u-legacy");
    let key = format!("{prefix}:{{s{}}}:u:{}", user_slot(&u), u.as_str());
    let mut c = deadpool_redis::redis::Client::open(r.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = deadpool_redis::redis::cmd("HSET")
        .arg(&key)
        .arg(&[
            ("limit", "100000"),
            ("used", "0"),
            ("grade", "A"),
            ("logins_30d", "0"),
            ("drawdowns_24h", "4"),
            ("applications_1h", "0"),
            ("account_age_days", "365"),
            ("new_device", "0"),
            ("days_overdue", "0"),
            ("blocklisted", "0"),
            ("v", "7"),
        ])
        .query_async(&mut c)
        .await
        .unwrap();
    let count = async |s: &RedisStore| s.load("c", &u, None).await.unwrap().user.unwrap();
    clock.set(contract::t0() + jiff::SignedDuration::from_hours(48));
    assert_eq!(count(&s).await.drawdowns_24h, 4, "kept until a reservation");
    let mut approve = request(&u, "k-legacy", Outcome::Approved, 100);
    approve.now = clock.now();
    assert!(matches!(
        s.commit(approve).await.unwrap(),
        CommitOutcome::Committed(_)
    ));
    assert_eq!(count(&s).await.drawdowns_24h, 5);
    clock.advance(Duration::from_secs(24 * 3600 - 1));
    assert_eq!(count(&s).await.drawdowns_24h, 5);
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        count(&s).await.drawdowns_24h,
        0,
        "the old count and the approval are a day old"
    );
}
