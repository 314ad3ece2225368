//! The contract on the Redis store over a 3-node Redis Cluster of the test's own, and what
//! a cluster adds: operations over every shard (`list_appeals`, `purge_expired`, reading the
//! audit streams) find what lives on every node.
#![allow(clippy::unwrap_used)]

use crate::contract;
use crate::redis::at_t0;
use crate::redis_server::RedisCluster;
use deadpool_redis::redis;
use gateway::store::{
    AppealCreated, AppealRecord, AppealStatus, CommitOutcome, CommitRequest, DecisionRecord,
    Fingerprint, RedisConfig, RedisStore, Store, new_appeal_id, new_decision_id, user_slot,
};
use jiff::SignedDuration;
use risk_core::{Fen, Outcome, RiskGrade, UserId, UserState};
use std::collections::BTreeSet;
use std::time::Duration;

/// A cluster of this test's own; `None`: skipped.
macro_rules! cluster_or_skip {
    () => {
        match RedisCluster::start().await {
            Some(c) => c,
            None => {
                eprintln!("skipped: LOAN_GATEWAY_SKIP_REDIS_TESTS=1");
                return;
            }
        }
    };
}

/// The whole contract suite, each part on a fresh store (its own key prefix) over one
/// cluster: three servers per test would crowd a small machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_contract_holds_on_a_cluster() {
    let c = cluster_or_skip!();
    contract::replay_returns_the_stored_decision(at_t0(c.config())).await;
    contract::reused_key_is_refused(at_t0(c.config())).await;
    contract::keys_are_scoped_by_caller_and_user(at_t0(c.config())).await;
    contract::line_changed_writes_nothing(at_t0(c.config())).await;
    let counts = contract::concurrent_commits_never_over_reserve(at_t0(c.config())).await;
    assert_eq!(counts.approved, 100);
    contract::unknown_user(at_t0(c.config())).await;
    contract::invalid_commits_are_refused(at_t0(c.config())).await;
    contract::appeals(at_t0(c.config())).await;
    contract::operator_changes(gateway::store::AnyStore::Redis(at_t0(c.config()))).await;
    let fleet = c.config();
    contract::staged_candidate(
        gateway::store::AnyStore::Redis(at_t0(fleet.clone())),
        gateway::store::AnyStore::Redis(at_t0(fleet)),
    )
    .await;
    contract::decision_inputs_are_bounded_over_the_store(gateway::store::AnyStore::Redis(at_t0(
        c.config(),
    )))
    .await;
    let clock = contract::t0_clock();
    contract::drawdowns_24h_slides_with_the_clock(
        RedisStore::with_clock(c.config(), clock.shared()).unwrap(),
        &clock,
    )
    .await;
    let s = at_t0(c.config());
    let retention = s.config().idempotency_retention;
    contract::retention(s, retention).await;
    let s = at_t0(RedisConfig {
        idempotency_retention: Duration::from_secs(48 * 3600),
        decision_retention: Duration::from_secs(72 * 3600),
        ..c.config()
    });
    contract::retention(s, Duration::from_secs(48 * 3600)).await;
    at_t0(c.config()).ping().await.unwrap();
}

fn rejection(u: &UserId, key: &str, at: jiff::Timestamp) -> CommitRequest {
    CommitRequest {
        caller: "c".into(),
        user: u.clone(),
        idempotency_key: key.into(),
        fingerprint: Fingerprint::from_bytes(*blake3::hash(key.as_bytes()).as_bytes()),
        decision: DecisionRecord {
            decision_id: new_decision_id(u, at),
            user_id: u.to_string(),
            outcome: Outcome::Rejected,
            amount_fen: 1_000,
            reasons: vec![],
            available_fen: 0,
            drawable_now_fen: u64::MAX,
            threshold_version: 3,
            policy: "standard".into(),
            evaluated_at: at.to_string(),
            appealable: true,
        },
        reserve: None,
        now: at,
    }
}

/// Keys on each node of the cluster (`DBSIZE` of each).
async fn keys_per_node(c: &RedisCluster) -> Vec<u64> {
    let mut out = Vec::new();
    for node in &c.nodes {
        let client = redis::Client::open(node.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        out.push(redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap());
    }
    out
}

/// Thirty users in (about) thirty shards, spread over the three nodes: listing appeals, purging
/// expired idempotency records and reading the audit streams each find what every node holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_shard_operations_reach_every_node() {
    let c = cluster_or_skip!();
    let s = at_t0(c.config());
    let t0 = contract::t0();
    let users: Vec<UserId> = (0..30)
        .map(|i| UserId::parse(&format!("u-spread-{i:02}")).unwrap())
        .collect();
    let mut appeal_ids = Vec::new();
    for (i, u) in users.iter().enumerate() {
        s.upsert_user(u, UserState::clean(Fen::new(10_000).unwrap(), RiskGrade::A))
            .await
            .unwrap();
        let at = t0 + SignedDuration::from_secs(i64::try_from(i).unwrap());
        let d = match s.commit(rejection(u, "k", at)).await.unwrap() {
            CommitOutcome::Committed(d) => d,
            other => panic!("{other:?}"),
        };
        let appeal = AppealRecord {
            appeal_id: new_appeal_id(u, at),
            decision_id: d.decision_id.clone(),
            user_id: u.to_string(),
            message: "please".into(),
            status: AppealStatus::Open,
            created_at: at.to_string(),
            due_at: (at + SignedDuration::from_hours(24)).to_string(),
            resolved_at: None,
            resolution_note: None,
        };
        appeal_ids.push(appeal.appeal_id.clone());
        assert!(matches!(
            s.create_appeal("c", appeal).await.unwrap(),
            AppealCreated::Created(_)
        ));
    }
    // The shards really live on different nodes.
    let per_node = keys_per_node(&c).await;
    assert!(
        per_node.iter().all(|&n| n > 0),
        "keys per node: {per_node:?}"
    );

    // Appeals from every node, oldest first, limited.
    let all = s.list_appeals(None, 100).await.unwrap();
    let listed: Vec<_> = all.iter().map(|a| a.appeal_id.clone()).collect();
    assert_eq!(listed, appeal_ids);
    let open = s.list_appeals(Some(AppealStatus::Open), 7).await.unwrap();
    let first7: Vec<_> = open.iter().map(|a| a.appeal_id.clone()).collect();
    assert_eq!(first7, appeal_ids[..7]);

    // The audit streams: one event per user, each in its own shard's stream.
    let events = s.read_all_audit().await.unwrap();
    let audited: BTreeSet<_> = events.iter().map(|e| e.fields["user"].clone()).collect();
    let expected: BTreeSet<_> = users.iter().map(ToString::to_string).collect();
    assert_eq!(audited, expected);
    assert_eq!(events.len(), users.len());
    for u in &users {
        let own = s.read_audit(user_slot(u), "0", 10).await.unwrap();
        let mine = own
            .iter()
            .filter(|e| e.fields["user"] == u.as_str())
            .count();
        assert_eq!(mine, 1, "{u}: {own:?}");
    }

    // Purging past the retention drops the record of every user, on every node.
    let retention = SignedDuration::try_from(s.config().idempotency_retention).unwrap();
    let early = t0 + retention - SignedDuration::from_secs(60);
    assert_eq!(s.purge_expired(early).await.unwrap(), 0);
    let late = t0 + retention + SignedDuration::from_secs(60);
    assert_eq!(s.purge_expired(late).await.unwrap(), users.len());
    for u in &users {
        assert!(
            s.load("c", u, Some("k"))
                .await
                .unwrap()
                .idempotent
                .is_none()
        );
    }
    assert_eq!(s.purge_expired(late).await.unwrap(), 0);
}

/// A script flushed from every node (as after a restart) is loaded again on first use:
/// the commit and the cross-shard purge both recover from NOSCRIPT by themselves.
#[tokio::test]
async fn scripts_reload_after_a_flush() {
    let c = cluster_or_skip!();
    let s = at_t0(c.config());
    let u = UserId::parse("u-noscript").unwrap();
    s.upsert_user(
        &u,
        UserState::clean(Fen::new(10_000).unwrap(), RiskGrade::A),
    )
    .await
    .unwrap();
    for node in &c.nodes {
        let client = redis::Client::open(node.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    assert!(matches!(
        s.commit(rejection(&u, "k", contract::t0())).await.unwrap(),
        CommitOutcome::Committed(_)
    ));
    for node in &c.nodes {
        let client = redis::Client::open(node.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let late = contract::t0() + SignedDuration::from_hours(49);
    assert_eq!(s.purge_expired(late).await.unwrap(), 1);
}

/// One stopped node does not make the store unready: readiness asks every node and the
/// first answer stands (a `PING` goes to every primary, and waited for the stopped one).
/// The users of the stopped node's slots answer `Unavailable` meanwhile.
#[tokio::test]
async fn one_stopped_node_leaves_the_store_ready() {
    let c = cluster_or_skip!();
    let s = at_t0(RedisConfig {
        command_timeout: Duration::from_millis(500),
        ..c.config()
    });
    s.ping().await.unwrap();
    c.nodes[2].signal("STOP");
    let ready = s.ping().await;
    c.nodes[2].signal("CONT");
    ready.unwrap();
}

fn approval(u: &UserId, key: &str, amount: u64, at: jiff::Timestamp) -> CommitRequest {
    let mut req = rejection(u, key, at);
    req.decision.outcome = Outcome::Approved;
    req.decision.amount_fen = amount;
    req.decision.appealable = false;
    req.reserve = Some(gateway::store::Reservation {
        amount: Fen::new(amount).unwrap(),
        ceiling: Fen::new(1_000_000).unwrap(),
    });
    req
}

/// `CLUSTER NODES` of `port`: (id, port, primary id when a replica, flags) per node.
async fn cluster_nodes(port: u16) -> Vec<(String, u16, Option<String>, String)> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let table: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut c)
        .await
        .unwrap();
    table
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = f[1].split([':', '@']).nth(1).unwrap().parse().unwrap();
            let primary = (f[3] != "-").then(|| f[3].to_owned());
            (f[0].to_owned(), port, primary, f[2].to_owned())
        })
        .collect()
}

/// With replicas, an approval is answered once a replica holds it; with the primary's
/// replica gone, it is answered `Timeout` (503) yet committed on the primary, so the retry
/// with the same key replays it once the replica is back, and nothing is reserved twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_wait_for_a_replica_and_stay_replayable_without_one() {
    let Some(mut c) = RedisCluster::start_replicated().await else {
        eprintln!("skipped: LOAN_GATEWAY_SKIP_REDIS_TESTS=1");
        return;
    };
    let store = RedisStore::new(RedisConfig {
        replica_acks: None,
        replica_ack_timeout: Duration::from_millis(200),
        ..c.config()
    })
    .unwrap();
    assert_eq!(
        store.replica_acks(),
        1,
        "one replica by default on a cluster"
    );
    let u = UserId::parse("u-durable").unwrap();
    store
        .upsert_user(
            &u,
            UserState::clean(Fen::new(1_000_000).unwrap(), RiskGrade::B),
        )
        .await
        .unwrap();
    let now = jiff::Timestamp::now();
    let first = store.commit(approval(&u, "k-1", 1_000, now)).await.unwrap();
    assert!(matches!(first, CommitOutcome::Committed(_)), "{first:?}");

    // The replica of the primary that owns the user's slot.
    let key = format!("{}:{{s{}}}:u:{u}", store.config().key_prefix, user_slot(&u));
    let client = redis::Client::open(c.nodes[0].url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let shards = cluster_nodes(c.nodes[0].port).await;
    let owner = {
        let owner_client = redis::Client::open(c.nodes[0].url()).unwrap();
        let mut oc = owner_client
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let slots: redis::Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut oc)
            .await
            .unwrap();
        let redis::Value::Array(ranges) = slots else {
            panic!("CLUSTER SLOTS: {slots:?}")
        };
        ranges
            .iter()
            .find_map(|r| {
                let redis::Value::Array(r) = r else {
                    return None;
                };
                let (redis::Value::Int(lo), redis::Value::Int(hi), redis::Value::Array(p)) =
                    (&r[0], &r[1], &r[2])
                else {
                    return None;
                };
                let redis::Value::Int(port) = p[1] else {
                    return None;
                };
                (i64::from(slot) >= *lo && i64::from(slot) <= *hi)
                    .then(|| u16::try_from(port).unwrap())
            })
            .unwrap()
    };
    let owner_id = shards.iter().find(|n| n.1 == owner).unwrap().0.clone();
    // Node 0 learns of the replica by gossip, which may trail the cluster's start: ask again,
    // for at most 10 s.
    let mut shards = shards;
    let mut replica_port = None;
    for _ in 0..100 {
        replica_port = shards
            .iter()
            .find(|n| n.2.as_deref() == Some(owner_id.as_str()))
            .map(|n| n.1);
        if replica_port.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        shards = cluster_nodes(c.nodes[0].port).await;
    }
    let replica_port = replica_port.expect("node 0 knows the owner's replica within 10 s");
    let replica = c.nodes.iter().position(|n| n.port == replica_port).unwrap();
    c.nodes[replica].kill().await;

    let started = std::time::Instant::now();
    let req = approval(&u, "k-2", 2_000, now);
    let id = req.decision.decision_id.clone();
    let second = store.commit(req).await;
    assert!(
        matches!(second, Err(gateway::store::StoreError::Timeout)),
        "no replica: {second:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    // Committed on the primary all the same, and reserved once.
    assert!(store.decision_stored(&id).await.unwrap());
    let loaded = store.load("c", &u, None).await.unwrap();
    assert_eq!(loaded.user.unwrap().used.get(), 3_000);
    // A replay is an acknowledgement too: it waits for a replica as well.
    let replay = store.load("c", &u, Some("k-2")).await;
    assert!(
        matches!(replay, Err(gateway::store::StoreError::Timeout)),
        "a replay without a replica: {replay:?}"
    );

    // A rejection reserves nothing and is not waited for.
    let rejected = store.commit(rejection(&u, "k-3", now)).await.unwrap();
    assert!(
        matches!(rejected, CommitOutcome::Committed(_)),
        "{rejected:?}"
    );

    c.nodes[replica].restart().await;
    c.wait_replicas_synced(3).await;
    let again = store.commit(approval(&u, "k-2", 2_000, now)).await.unwrap();
    match again {
        CommitOutcome::Replayed(d) => assert_eq!(d.decision_id, id),
        other => panic!("expected the replay, got {other:?}"),
    }
    let state = store.load("c", &u, None).await.unwrap().user.unwrap();
    assert_eq!(state.used.get(), 3_000, "nothing reserved twice");
    // Approved with the replica back.
    let third = store.commit(approval(&u, "k-4", 4_000, now)).await.unwrap();
    assert!(matches!(third, CommitOutcome::Committed(_)), "{third:?}");
}
