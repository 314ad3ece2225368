//! Per-request cost of the rate-limit and admission layers, next to a bare service.
//! A measurement, not a timed test (ignored by default):
//!
//! ```text
//! cargo test --release -p gateway --test admission_overhead -- --ignored --nocapture
//! ```
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::time::Instant;

use gateway::admission::Admission;
use gateway::clock::ManualClock;
use gateway::policy::{Policy, PolicyConfig};
use gateway::ratelimit::RateLimits;
use gateway::request::{Priority, RequestFacts, RouteClass, UserKey};
use tower::{Layer, Service, ServiceExt};

const N: u32 = 1_000_000;
const USERS: u32 = 10_000;

fn policy() -> Policy {
    let config: PolicyConfig = toml::from_str(
        r#"
        [normal]
        global.drawdown = { per_second = 4000000000, burst = 4000000000 }
        user = { per_minute = 4000000000, burst = 4000000000 }
        concurrency = 64
        queue = 256
        "#,
    )
    .unwrap();
    let clock = ManualClock::new("2026-03-01T00:00:00Z".parse().unwrap());
    Policy::new(&config, clock.shared()).unwrap()
}

fn requests() -> Vec<http::Request<()>> {
    let users: Vec<UserKey> = (0..USERS)
        .map(|i| UserKey::new(&format!("user-{i}")))
        .collect();
    (0..N)
        .map(|i| {
            let mut req = http::Request::new(());
            req.extensions_mut().insert(RequestFacts {
                class: Some(RouteClass::Drawdown),
                priority: Some(Priority::Critical),
                user: Some(users[(i % USERS) as usize].clone()),
                ..RequestFacts::NONE
            });
            req
        })
        .collect()
}

async fn run<S>(name: &str, mut svc: S) -> f64
where
    S: Service<http::Request<()>>,
    S::Error: std::fmt::Debug,
{
    let reqs = requests();
    let start = Instant::now();
    for req in reqs {
        svc.ready().await.unwrap().call(req).await.unwrap();
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(N);
    println!("{name:<32} {ns:>8.1} ns/request");
    ns
}

#[tokio::test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
async fn layer_overhead() {
    let bare = || tower::service_fn(|_req: http::Request<()>| async { Ok::<_, Infallible>(()) });
    let policy = policy();
    let limits = RateLimits::new(&policy, 100_000);
    let admission = Admission::new(&policy);
    let base = run("bare service", bare()).await;
    let rl = run("rate limits (global + user)", limits.layer().layer(bare())).await;
    let adm = run("admission (fast path)", admission.layer().layer(bare())).await;
    let both = run(
        "rate limits + admission",
        limits.layer().layer(admission.layer().layer(bare())),
    )
    .await;
    println!(
        "added: rate limits {:.1} ns, admission {:.1} ns, both {:.1} ns",
        rl - base,
        adm - base,
        both - base
    );
    assert_eq!(admission.in_flight(), 0);
}
