//! risk-core benchmarks: evaluate (approve and reject, with and without a bureau answer),
//! quote, snapshot load (against a
//! `Mutex<Arc<_>>` baseline), and aggregate evaluation throughput on 1 and 2 threads.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use risk_core::*;
use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

fn fixtures() -> (ThresholdCache, UserState, DrawdownRequest, DrawdownRequest) {
    let cache = ThresholdCache::new(Thresholds::embedded_default());
    let user = UserState::clean(Fen::new(10_000_000).unwrap(), RiskGrade::B);
    let approve = DrawdownRequest {
        amount: Fen::new(500_000).unwrap(),
        channel: Channel::App,
    };
    // Above the grade-B single cap and the utilisation cap: two reasons with guidance figures.
    let reject = DrawdownRequest {
        amount: Fen::new(9_800_000).unwrap(),
        channel: Channel::App,
    };
    (cache, user, approve, reject)
}

const CTX: Context<'static> = Context {
    profile: "normal",
    window_ends_at: None,
    bureau: BureauSignal::NotConsulted,
};

fn evaluate_paths(c: &mut Criterion) {
    let (cache, user, approve, reject) = fixtures();
    let mut g = c.benchmark_group("evaluate");
    g.bench_function("approve", |b| {
        b.iter(|| {
            let th = cache.load();
            let th = th.as_ref().unwrap();
            let out = evaluate(th, &CTX, black_box(&user), black_box(&approve));
            black_box(&out);
        });
    });
    g.bench_function("reject", |b| {
        b.iter(|| {
            let th = cache.load();
            let th = th.as_ref().unwrap();
            let out = evaluate(th, &CTX, black_box(&user), black_box(&reject));
            black_box(&out);
        });
    });
    // The same approval with a fresh bureau answer the rules read (score, overdue), and the
    // review an unavailable bureau leads to: the cost of the bureau rules in the engine.
    let fresh = Context {
        bureau: BureauSignal::Fresh(BureauReport {
            score: 720,
            overdue_accounts: 0,
            max_days_overdue: 0,
            inquiries_90d: 2,
        }),
        ..CTX
    };
    g.bench_function("approve_with_bureau", |b| {
        b.iter(|| {
            let th = cache.load();
            let th = th.as_ref().unwrap();
            let out = evaluate(th, black_box(&fresh), black_box(&user), black_box(&approve));
            black_box(&out);
        });
    });
    let down = Context {
        bureau: BureauSignal::Unavailable(UnavailableCause::Timeout),
        ..CTX
    };
    g.bench_function("review_bureau_unavailable", |b| {
        b.iter(|| {
            let th = cache.load();
            let th = th.as_ref().unwrap();
            let out = evaluate(th, black_box(&down), black_box(&user), black_box(&approve));
            black_box(&out);
        });
    });
    g.bench_function("quote", |b| {
        b.iter(|| {
            let th = cache.load();
            let th = th.as_ref().unwrap();
            let out = quote(th, &CTX, black_box(&user));
            black_box(&out);
        });
    });
    g.finish();
}

fn snapshot_load(c: &mut Criterion) {
    let cache = ThresholdCache::new(Thresholds::embedded_default());
    let baseline = Mutex::new(Arc::new(Thresholds::embedded_default()));
    let mut g = c.benchmark_group("snapshot_load");
    g.bench_function("arc_swap", |b| {
        b.iter(|| black_box(cache.load().as_ref().map(|t| t.version())));
    });
    g.bench_function("mutex_arc_baseline", |b| {
        b.iter(|| black_box(Arc::clone(&baseline.lock().unwrap()).version()));
    });
    g.finish();
}

/// Evaluations per second with `threads` threads sharing one cache; `iter_custom` times the
/// slowest thread, so the figure is the aggregate rate.
fn throughput(c: &mut Criterion) {
    let (cache, user, approve, _) = fixtures();
    let cache = Arc::new(cache);
    let mut g = c.benchmark_group("throughput");
    const PER_THREAD: u64 = 10_000;
    for threads in [1u64, 2] {
        g.throughput(Throughput::Elements(PER_THREAD * threads));
        g.bench_with_input(
            BenchmarkId::from_parameter(threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    let barrier = Arc::new(Barrier::new(usize::try_from(threads).unwrap() + 1));
                    let workers: Vec<_> = (0..threads)
                        .map(|_| {
                            let (cache, user, barrier) =
                                (Arc::clone(&cache), user.clone(), Arc::clone(&barrier));
                            std::thread::spawn(move || {
                                barrier.wait();
                                let start = Instant::now();
                                for _ in 0..iters * PER_THREAD {
                                    let th = cache.load();
                                    let th = th.as_ref().unwrap();
                                    black_box(evaluate(th, &CTX, &user, black_box(&approve)));
                                }
                                start.elapsed()
                            })
                        })
                        .collect();
                    barrier.wait();
                    workers
                        .into_iter()
                        .map(|w| w.join().unwrap())
                        .max()
                        .unwrap_or(Duration::ZERO)
                });
            },
        );
    }
    g.finish();
}

criterion_group!(benches, evaluate_paths, snapshot_load, throughput);
criterion_main!(benches);
