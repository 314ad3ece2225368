//! Per-request cost of the rate-limit and admission layers, each around a bare service that
//! answers at once, next to the bare service alone in the same run: `rate_limits - bare`,
//! `admission - bare` and `both - bare` are what each layer adds to a request.
//!
//! Every request is a drawdown (`critical`) of one of 10,000 users, in turn, so the per-user
//! limiter keeps that many buckets; every limit is far above what one core can send, so
//! nothing is refused and admission takes its fast path (a free slot, no queue).
//!
//! ```text
//! cargo bench -p benches --bench middleware
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

mod support;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gateway::admission::Admission;
use gateway::ratelimit::RateLimits;
use gateway::request::{Priority, RequestFacts, RouteClass, UserKey};
use tower::{Layer, Service, ServiceExt};

const USERS: usize = 10_000;

/// Every limit far above what one core can send.
const NORMAL: &str = "\
    global.drawdown = { per_second = 4000000000, burst = 4000000000 }\n\
    user = { per_minute = 4000000000, burst = 4000000000 }\n\
    concurrency = 64\n\
    queue = 256\n\
";

fn bare() -> impl Service<http::Request<()>, Response = (), Error = Infallible, Future: Send> + Clone
{
    tower::service_fn(|_req: http::Request<()>| async { Ok::<_, Infallible>(()) })
}

/// Sends `iters` drawdowns through `svc`, the users in turn; only the calls are timed.
async fn timed<S>(mut svc: S, users: &[UserKey], iters: u64) -> Duration
where
    S: Service<http::Request<()>>,
    S::Error: std::fmt::Debug,
{
    let requests: Vec<_> = users
        .iter()
        .cycle()
        .take(usize::try_from(iters).unwrap())
        .map(|user| {
            let mut req = http::Request::new(());
            req.extensions_mut().insert(RequestFacts {
                class: Some(RouteClass::Drawdown),
                priority: Some(Priority::Critical),
                user: Some(user.clone()),
                ..RequestFacts::NONE
            });
            req
        })
        .collect();
    let start = Instant::now();
    for req in requests {
        svc.ready().await.unwrap().call(req).await.unwrap();
    }
    start.elapsed()
}

fn layers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let users: Vec<UserKey> = (0..USERS)
        .map(|i| UserKey::new(&format!("user-{i}")))
        .collect();
    let policy = support::policy(NORMAL);
    let limits = RateLimits::new(&policy, 100_000);
    let admission = Admission::new(&policy);
    let users = &users;
    let mut g = c.benchmark_group("middleware");
    g.throughput(Throughput::Elements(1));
    g.bench_function("bare", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| timed(bare(), users, iters));
    });
    g.bench_function("rate_limits", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| timed(limits.layer().layer(bare()), users, iters));
    });
    g.bench_function("admission", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| timed(admission.layer().layer(bare()), users, iters));
    });
    g.bench_function("both", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            timed(
                limits.layer().layer(admission.layer().layer(bare())),
                users,
                iters,
            )
        });
    });
    g.finish();
    assert_eq!(admission.in_flight(), 0, "every permit was given back");
}

criterion_group!(benches, layers);
criterion_main!(benches);
