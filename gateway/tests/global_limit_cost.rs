//! Per-request cost of the cluster-wide global limit (one script round trip to a local
//! `redis-server`) next to the local governor limiter it replaces, in the same run.
//! A measurement, not a timed test (ignored by default):
//!
//! ```text
//! cargo test --release -p gateway --test global_limit_cost -- --ignored --nocapture
//! ```
#![allow(clippy::unwrap_used)]

#[path = "support/redis_server.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use gateway::clock::ManualClock;
use gateway::policy::{Policy, PolicyConfig};
use gateway::ratelimit::{GlobalLimitMetrics, GlobalLimiter, SharedGlobalLimiter};
use gateway::request::RouteClass;
use redis_server::{Options, RedisServer};

const ROUNDS: usize = 5;
const LOCAL_N: u32 = 1_000_000;
const SHARED_N: u32 = 20_000;
const CONCURRENT: u32 = 64;

fn policy() -> Policy {
    let config: PolicyConfig = toml::from_str(
        r#"
        [normal]
        global.drawdown = { per_second = 4000000000, burst = 4000000000 }
        "#,
    )
    .unwrap();
    let clock = ManualClock::new("2026-03-01T00:00:00Z".parse().unwrap());
    Policy::new(&config, clock.shared()).unwrap()
}

fn per_call(d: Duration, n: u32) -> f64 {
    d.as_secs_f64() * 1e9 / f64::from(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
async fn global_limit_cost() {
    let Some(redis) = RedisServer::start(Options::default()).await else {
        return;
    };
    let policy = policy();
    let local = GlobalLimiter::new(&policy);
    let shared = std::sync::Arc::new(SharedGlobalLimiter::new(
        redis.store(),
        &policy,
        1,
        Duration::from_secs(1),
        GlobalLimitMetrics::default(),
    ));
    // Warm up: the script is loaded, the pool has a connection.
    for _ in 0..1_000 {
        shared.check(RouteClass::Drawdown).await.unwrap();
    }
    let (mut l, mut s, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..LOCAL_N {
            local.check(RouteClass::Drawdown).unwrap();
        }
        l.push(per_call(t.elapsed(), LOCAL_N));

        // One request at a time: the round trip each request waits for.
        let t = Instant::now();
        for _ in 0..SHARED_N {
            shared.check(RouteClass::Drawdown).await.unwrap();
        }
        s.push(per_call(t.elapsed(), SHARED_N));

        // Many at once, as under load: the multiplexed connection pipelines them.
        let t = Instant::now();
        let tasks: Vec<_> = (0..CONCURRENT)
            .map(|_| {
                let shared = std::sync::Arc::clone(&shared);
                tokio::spawn(async move {
                    for _ in 0..SHARED_N / CONCURRENT {
                        shared.check(RouteClass::Drawdown).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        c.push(per_call(t.elapsed(), SHARED_N / CONCURRENT * CONCURRENT));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (l, s, c) = (median(&mut l), median(&mut s), median(&mut c));
    eprintln!("global limit check, median of {ROUNDS} rounds:");
    eprintln!("  local governor limiter:                {l:>10.1} ns/request");
    eprintln!(
        "  shared (Redis script), one at a time:  {s:>10.1} ns/request ({:.0}x local)",
        s / l
    );
    eprintln!(
        "  shared (Redis script), {CONCURRENT} in flight: {c:>10.1} ns/request ({:.0}x local)",
        c / l
    );
}
