//! Per-request cost of the global rate limit shared through Redis (one script round trip to
//! a `redis-server` of the bench's own, on loopback) next to the local governor limiter it
//! replaces, in the same run:
//!
//! - `local`: the in-process limiter;
//! - `shared_serial`: one check at a time, each waiting for its round trip;
//! - `shared_64_in_flight`: 64 tasks checking at once, as under load, so the multiplexed
//!   connection pipelines them (time per check over all of them).
//!
//! ```text
//! cargo bench -p benches --bench global_limit
//! ```
//!
//! Needs `redis-server` on the `PATH`.
#![allow(missing_docs, clippy::unwrap_used)]

mod support;

#[path = "../../gateway/tests/support/redis_server.rs"]
mod redis_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gateway::ratelimit::{GlobalLimitMetrics, GlobalLimiter, SharedGlobalLimiter};
use gateway::request::RouteClass;
use redis_server::{Options, RedisServer};

const IN_FLIGHT: u64 = 64;

/// Every limit far above what one core can send.
const NORMAL: &str = "\
    global.drawdown = { per_second = 4000000000, burst = 4000000000 }\n\
";

fn global_limit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let redis = rt
        .block_on(RedisServer::start(Options::default()))
        .expect("redis-server");
    let policy = support::policy(NORMAL);
    let local = GlobalLimiter::new(&policy);
    let shared = Arc::new(SharedGlobalLimiter::new(
        redis.store(),
        &policy,
        1,
        Duration::from_secs(1),
        GlobalLimitMetrics::default(),
    ));
    let mut g = c.benchmark_group("global_limit");
    g.throughput(Throughput::Elements(1));
    g.bench_function("local", |b| {
        b.iter(|| local.check(RouteClass::Drawdown).unwrap());
    });
    g.bench_function("shared_serial", |b| {
        b.to_async(&rt)
            .iter(|| async { shared.check(RouteClass::Drawdown).await.unwrap() });
    });
    g.bench_function("shared_64_in_flight", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let shared = Arc::clone(&shared);
            async move {
                let per_task = iters.div_ceil(IN_FLIGHT);
                let start = Instant::now();
                let tasks: Vec<_> = (0..IN_FLIGHT)
                    .map(|_| {
                        let shared = Arc::clone(&shared);
                        tokio::spawn(async move {
                            for _ in 0..per_task {
                                shared.check(RouteClass::Drawdown).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
                // The checks made, scaled back to the `iters` criterion asked for.
                let made = u32::try_from(per_task * IN_FLIGHT).unwrap();
                start.elapsed() / made * u32::try_from(iters).unwrap()
            }
        });
    });
    g.finish();
    drop(redis);
}

criterion_group!(benches, global_limit);
criterion_main!(benches);
