//! How long a backtest (`POST /admin/shadow/backtest`) takes over N stored decisions: the
//! store's selection (decisions and their kept inputs) and the replay against a candidate,
//! timed apart, three times each, on the memory store or on a `redis-server` this example
//! starts on a free loopback port (stopped when it ends).
//!
//! The store is filled first (not timed): N drawdown decisions of N / 5 users (one in seven
//! with frequent logins), each committed and its inputs kept (`decision_inputs_kept = N`),
//! decided by the default thresholds; the candidate rejects frequent logins alone.
//!
//! ```sh
//! cargo run --profile bench -p benches --example backtest -- memory 100000
//! cargo run --profile bench -p benches --example backtest -- redis 100000
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../../gateway/tests/support/redis_server.rs"]
mod redis_server;

use gateway::shadow::Header;
use gateway::store::{
    AnyStore, CommitOutcome, CommitRequest, DecisionInputs, DecisionRecord, Fingerprint,
    MemoryStore, ReasonRecord, Reservation, Selection, Store, new_decision_id,
};
use risk_core::{
    Channel, Context, DrawdownRequest, Fen, Outcome, RiskGrade, Thresholds, UserId, UserState,
    evaluate,
};
use std::time::Instant;

fn state(i: usize) -> UserState {
    let mut s = UserState::clean(Fen::new(100_000_000).unwrap(), RiskGrade::ALL[i % 5]);
    s.logins_30d = if i.is_multiple_of(7) { 120 } else { 6 };
    s.account_age_days = 400;
    s
}

async fn fill(store: &AnyStore, n: usize, live: &Thresholds) {
    let users: Vec<UserId> = (0..n.div_ceil(5).max(1))
        .map(|i| UserId::parse(&format!("u-bt-{i:06}")).unwrap())
        .collect();
    for (i, u) in users.iter().enumerate() {
        store.upsert_user(u, state(i)).await.unwrap();
    }
    let t0 = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    let ctx = Context {
        profile: "normal",
        window_ends_at: None,
        bureau: risk_core::BureauSignal::NotConsulted,
    };
    // Committed 256 at a time (on Redis, one batch of commits each).
    for chunk in (0..n).collect::<Vec<_>>().chunks(256) {
        let commits = chunk.iter().map(|&i| {
            let ui = i % users.len();
            let user = &users[ui];
            let st = state(ui);
            let now = t0
                .checked_add(jiff::SignedDuration::from_millis(i as i64))
                .unwrap();
            let request = DrawdownRequest {
                amount: Fen::new(100 + (i as u64 % 50) * 1_000).unwrap(),
                channel: [Channel::App, Channel::Web, Channel::Partner][i % 3],
            };
            let d = evaluate(live, &ctx, &st, &request);
            let record = DecisionRecord {
                decision_id: new_decision_id(user, now),
                user_id: user.to_string(),
                outcome: d.outcome,
                amount_fen: d.amount.get(),
                reasons: vec![],
                available_fen: 0,
                drawable_now_fen: d.drawable_now.get(),
                threshold_version: d.threshold_version,
                policy: "standard".into(),
                evaluated_at: "2027-01-15T16:00:00+08:00".into(),
                appealable: false,
            };
            let inputs = DecisionInputs {
                decision_id: record.decision_id.clone(),
                user_id: record.user_id.clone(),
                state: st,
                amount_fen: record.amount_fen,
                channel: request.channel,
                bureau: ctx.bureau.into(),
                profile: "normal".into(),
                window_ends_at: None,
                threshold_version: d.threshold_version,
                outcome: d.outcome,
                reason: d.reasons.first().map(|r| r.code),
            };
            let commit = CommitRequest {
                caller: "bench".into(),
                user: user.clone(),
                idempotency_key: format!("k-{i}").into(),
                fingerprint: Fingerprint::from_bytes([0; 32]),
                decision: record,
                reserve: (d.outcome == Outcome::Approved).then_some(Reservation {
                    amount: d.amount,
                    ceiling: d.reserve_ceiling,
                }),
                now,
            };
            let store = store.clone();
            tokio::spawn(async move {
                let out = store.commit(commit).await.unwrap();
                assert!(matches!(out, CommitOutcome::Committed(_)), "{out:?}");
                store.keep_inputs(inputs, n);
            })
        });
        let tasks: Vec<_> = commits.collect();
        for t in tasks {
            t.await.unwrap();
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "memory".to_owned());
    let n: usize = args.next().map_or(100_000, |s| s.parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _redis;
    let store = match which.as_str() {
        "memory" => AnyStore::Memory(MemoryStore::default()),
        "redis" => {
            let server = rt
                .block_on(redis_server::RedisServer::start(
                    redis_server::Options::default(),
                ))
                .expect("redis-server");
            let store = AnyStore::Redis(server.store());
            _redis = server;
            store
        }
        other => panic!("unknown store {other:?}: memory or redis"),
    };
    let live = Thresholds::embedded_default();
    let filled = Instant::now();
    rt.block_on(fill(&store, n, &live));
    println!("filled {n} decisions in {:.2?}", filled.elapsed());
    println!(
        "memory store: {} bytes of struct per kept record (plus its strings' allocations)",
        std::mem::size_of::<(u128, DecisionInputs)>()
    );
    if let AnyStore::Redis(r) = &store {
        // What the inputs stream takes in Redis, per record kept.
        let (bytes, entries) = rt.block_on(async {
            let mut c = r.client().get_multiplexed_async_connection().await.unwrap();
            let key = r.inputs_key();
            let used: Option<u64> = deadpool_redis::redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&key)
                .arg("SAMPLES")
                .arg(0)
                .query_async(&mut c)
                .await
                .unwrap();
            let len: u64 = deadpool_redis::redis::cmd("XLEN")
                .arg(&key)
                .query_async(&mut c)
                .await
                .unwrap();
            (used.unwrap_or(0), len)
        });
        println!(
            "redis: {entries} inputs entries in {bytes} bytes ({} bytes each)",
            bytes / entries.max(1)
        );
    }
    let mut doc = live.document().clone();
    for p in doc.profiles.values_mut() {
        p.login_pattern.mode = risk_core::LoginMode::RejectAlone;
    }
    let candidate = Thresholds::compile(doc).unwrap();
    for round in 0..3 {
        let t = Instant::now();
        let selected = rt
            .block_on(store.select_inputs(Selection::Last(n)))
            .unwrap();
        let selecting = t.elapsed();
        let header = Header {
            candidate_version: candidate.version(),
            staged_by: "bench".into(),
            staged_at: "2027-01-15T16:00:00+08:00".into(),
        };
        let r = Instant::now();
        let report = gateway::backtest::run(&candidate, header, &selected, ReasonRecord::of);
        let replaying = r.elapsed();
        let changed: u64 = report.report.changes.iter().map(|c| c.count.requests).sum();
        println!(
            "round {round}: {which}, selected {} replayed {} skipped {} changed {changed}: select {selecting:.2?}, replay {replaying:.2?}, total {:.2?}",
            report.selected,
            report.replayed,
            report.skipped,
            t.elapsed()
        );
        assert_eq!(report.selected, n as u64);
    }
}
