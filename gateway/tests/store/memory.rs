//! The contract on the memory store, and what only the memory store promises.
#![allow(clippy::unwrap_used)]

use crate::contract;
use gateway::store::{
    AnyStore, CommitOutcome, CommitRequest, DecisionRecord, Fingerprint, MemoryConfig, MemoryStore,
    Reservation, Store, new_decision_id,
};
use jiff::SignedDuration;
use risk_core::{Fen, Outcome, RiskGrade, UserId, UserState};
use std::time::Duration;

/// A store on a manual clock at the contract's `t0` (the time its commits carry), so the
/// sliding 24-hour drawdown count sees them as recent.
fn store() -> MemoryStore {
    MemoryStore::with_clock(MemoryConfig::default(), contract::t0_clock().shared()).unwrap()
}

#[tokio::test]
async fn replay_returns_the_stored_decision() {
    contract::replay_returns_the_stored_decision(store()).await;
}

#[tokio::test]
async fn replay_through_any_store() {
    contract::replay_returns_the_stored_decision(AnyStore::Memory(store())).await;
}

#[tokio::test]
async fn operator_changes() {
    contract::operator_changes(AnyStore::Memory(store())).await;
}

#[tokio::test]
async fn staged_candidate() {
    // Two handles on one store: as two parts of a process that share it.
    let s = AnyStore::Memory(store());
    contract::staged_candidate(s.clone(), s).await;
}

#[tokio::test]
async fn decision_inputs_are_bounded_over_the_store() {
    contract::decision_inputs_are_bounded_over_the_store(AnyStore::Memory(
        MemoryStore::with_clock(MemoryConfig::default(), contract::t0_clock().shared()).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn reused_key_is_refused() {
    contract::reused_key_is_refused(store()).await;
}

#[tokio::test]
async fn keys_are_scoped_by_caller_and_user() {
    contract::keys_are_scoped_by_caller_and_user(store()).await;
}

#[tokio::test]
async fn line_changed_writes_nothing() {
    contract::line_changed_writes_nothing(store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_never_over_reserve() {
    let counts = contract::concurrent_commits_never_over_reserve(store()).await;
    assert_eq!(counts.approved, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_on_a_single_shard() {
    let one = MemoryStore::with_clock(
        MemoryConfig {
            shards: 1,
            ..MemoryConfig::default()
        },
        contract::t0_clock().shared(),
    )
    .unwrap();
    contract::concurrent_commits_never_over_reserve(AnyStore::Memory(one)).await;
}

#[tokio::test]
async fn unknown_user() {
    contract::unknown_user(store()).await;
}

#[tokio::test]
async fn invalid_commits_are_refused() {
    contract::invalid_commits_are_refused(store()).await;
}

#[tokio::test]
async fn appeals() {
    contract::appeals(store()).await;
}

#[tokio::test]
async fn decisions_and_appeals_belong_to_their_caller() {
    contract::decisions_and_appeals_belong_to_their_caller(store()).await;
}

#[tokio::test]
async fn retention_default() {
    let s = store();
    let retention = s.config().idempotency_retention;
    contract::retention(s, retention).await;
}

#[tokio::test]
async fn retention_configured() {
    let config = MemoryConfig {
        idempotency_retention: Duration::from_secs(48 * 3600),
        decision_retention: Duration::from_secs(72 * 3600),
        purge_batch: 0,
        ..MemoryConfig::default()
    };
    contract::retention(
        MemoryStore::new(config).unwrap(),
        Duration::from_secs(48 * 3600),
    )
    .await;
}

fn commit(u: &UserId, key: &str, now: jiff::Timestamp) -> CommitRequest {
    CommitRequest {
        caller: "c".into(),
        user: u.clone(),
        idempotency_key: key.into(),
        fingerprint: Fingerprint::from_bytes([1; 32]),
        decision: DecisionRecord {
            decision_id: new_decision_id(u, now),
            user_id: u.to_string(),
            outcome: Outcome::Approved,
            amount_fen: 1,
            reasons: vec![],
            available_fen: 0,
            drawable_now_fen: 0,
            threshold_version: 1,
            policy: "standard".into(),
            evaluated_at: now.to_string(),
            appealable: false,
        },
        reserve: Some(Reservation {
            amount: Fen::new(1).unwrap(),
            ceiling: Fen::MAX,
        }),
        now,
    }
}

/// Memory stays bounded without a scheduled purge: commits drop expired records as they go,
/// and a purge drops the rest; decisions go after their own retention.
#[tokio::test]
async fn memory_is_bounded_by_lazy_and_scheduled_purges() {
    let s = store();
    let users: Vec<UserId> = (0..50)
        .map(|i| UserId::parse(&format!("u-bound-{i}")).unwrap())
        .collect();
    for u in &users {
        s.upsert_user(
            u,
            UserState::clean(Fen::new(1_000_000).unwrap(), RiskGrade::A),
        )
        .await
        .unwrap();
    }
    let t0 = contract::t0();
    for (i, u) in users.iter().enumerate() {
        for k in 0..20 {
            let out = s.commit(commit(u, &format!("k{k}"), t0)).await.unwrap();
            assert!(matches!(out, CommitOutcome::Committed(_)), "{i} {out:?}");
        }
    }
    let full = s.stats();
    assert_eq!(
        (full.users, full.idempotency_records, full.decisions),
        (50, 1_000, 1_000)
    );

    // A day later, fresh traffic purges the old records of the shards it touches.
    let later = t0 + SignedDuration::from_hours(25);
    for u in &users {
        s.commit(commit(u, "fresh", later)).await.unwrap();
    }
    let lazily = s.stats();
    assert!(lazily.idempotency_records < 1_000, "{lazily:?}");
    assert_eq!(lazily.decisions, 1_050, "decisions are kept for 30 days");

    let purged_now = s.purge_expired(later).await.unwrap();
    assert_eq!(purged_now, lazily.idempotency_records - 50);
    let purged = s.stats();
    assert_eq!(purged.idempotency_records, 50);

    let month = t0 + SignedDuration::from_hours(32 * 24);
    s.purge_expired(month).await.unwrap();
    let empty = s.stats();
    assert_eq!(
        (empty.idempotency_records, empty.decisions, empty.users),
        (0, 0, 50)
    );
}

#[test]
fn config_errors_name_the_field() {
    let bad = |c: MemoryConfig| MemoryStore::new(c).unwrap_err();
    let d = MemoryConfig::default();
    let e = bad(MemoryConfig {
        shards: 48,
        ..d.clone()
    });
    assert_eq!(e.field(), "shards");
    assert!(e.to_string().starts_with("store.memory.shards:"), "{e}");
    assert_eq!(
        bad(MemoryConfig {
            shards: 0,
            ..d.clone()
        })
        .field(),
        "shards"
    );
    assert_eq!(
        bad(MemoryConfig {
            shards: 2048,
            ..d.clone()
        })
        .field(),
        "shards"
    );
    let short = MemoryConfig {
        idempotency_retention: Duration::from_secs(23 * 3600),
        ..d.clone()
    };
    assert_eq!(bad(short).field(), "idempotency_retention");
    let inverted = MemoryConfig {
        idempotency_retention: Duration::from_secs(48 * 3600),
        decision_retention: Duration::from_secs(47 * 3600),
        ..d.clone()
    };
    assert_eq!(bad(inverted).field(), "decision_retention");
    let zero = MemoryConfig {
        max_decisions: 0,
        ..d.clone()
    };
    assert_eq!(bad(zero).field(), "max_decisions");
    assert!(MemoryStore::new(MemoryConfig { shards: 1024, ..d }).is_ok());
}

#[tokio::test]
async fn demo_users_are_seeded() {
    let s = store();
    let demo = s.seed_demo();
    assert!(demo.len() >= 8);
    for u in &demo {
        let loaded = s.load("c", &u.id, None).await.unwrap();
        assert_eq!(loaded.user.as_ref(), Some(&u.state), "{}", u.id);
    }
    let a = demo.iter().find(|u| u.id.as_str() == "u-demo-a").unwrap();
    assert_eq!(a.state.limit, Fen::new(5_000_000).unwrap());
    assert_eq!(s.stats().users, demo.len());
}

#[tokio::test]
async fn drawdowns_24h_slides_with_the_clock() {
    let clock = contract::t0_clock();
    let s = MemoryStore::with_clock(MemoryConfig::default(), clock.shared()).unwrap();
    contract::drawdowns_24h_slides_with_the_clock(s, &clock).await;
}
