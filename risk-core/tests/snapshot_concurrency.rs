//! Readers evaluating while a writer swaps thresholds a thousand times never see a torn
//! document: every decision names a published version and has the outcome that version gives.
#![allow(clippy::unwrap_used, missing_docs)]

use risk_core::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const VERSIONS: u64 = 1_000;

/// Version v caps a single grade-A drawdown at `cap(v)`; the probe amount is approved only
/// under even versions, so a mix of two documents would show up as a wrong outcome.
fn cap(v: u64) -> u64 {
    if v.is_multiple_of(2) {
        2_000_000
    } else {
        1_000_000
    }
}

fn version(v: u64) -> Thresholds {
    let mut doc = Thresholds::embedded_default().document().clone();
    doc.version = v;
    let a = doc
        .profiles
        .get_mut("normal")
        .unwrap()
        .grades
        .get_mut("A")
        .unwrap();
    a.max_single_fen = i64::try_from(cap(v)).unwrap();
    Thresholds::compile(doc).unwrap()
}

#[test]
fn no_torn_reads_while_swapping() {
    let cache = Arc::new(ThresholdCache::new(version(1)));
    let done = Arc::new(AtomicBool::new(false));
    let evaluations = Arc::new(AtomicU64::new(0));
    let user = UserState::clean(Fen::new(10_000_000).unwrap(), RiskGrade::A);
    let probe = DrawdownRequest {
        amount: Fen::new(1_500_000).unwrap(),
        channel: Channel::App,
    };
    let ctx = Context {
        profile: "normal",
        window_ends_at: None,
        bureau: BureauSignal::NotConsulted,
    };

    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (cache, done, user) = (Arc::clone(&cache), Arc::clone(&done), user.clone());
            let evaluations = Arc::clone(&evaluations);
            std::thread::spawn(move || {
                let mut seen: HashMap<u64, Outcome> = HashMap::new();
                // Relaxed is enough: the flag and the counter only pace the threads, they
                // publish no data (the thresholds themselves go through the ArcSwap).
                while !done.load(Ordering::Relaxed) {
                    let guard = cache.load();
                    let th = guard.as_ref().unwrap();
                    let d = evaluate(th, &ctx, &user, &probe);
                    seen.insert(d.threshold_version, d.outcome);
                    evaluations.fetch_add(1, Ordering::Relaxed);
                }
                seen
            })
        })
        .collect();

    let mut published = vec![1];
    for v in 2..=VERSIONS {
        // Let the readers evaluate at least once under the previous version before swapping,
        // so readers and writer really interleave even on a busy machine.
        let before = evaluations.load(Ordering::Relaxed);
        while evaluations.load(Ordering::Relaxed) == before {
            std::thread::yield_now();
        }
        cache.publish(version(v)).unwrap();
        published.push(v);
        if v.is_multiple_of(250) {
            assert!(
                cache.publish(version(v - 1)).is_err(),
                "an older version must be refused"
            );
        }
    }
    done.store(true, Ordering::Relaxed);

    let mut versions_seen = std::collections::HashSet::new();
    for r in readers {
        for (v, outcome) in r.join().unwrap() {
            assert!(published.contains(&v), "version {v} was never published");
            let expected = if cap(v) >= 1_500_000 {
                Outcome::Approved
            } else {
                Outcome::Rejected
            };
            assert_eq!(outcome, expected, "version {v}");
            versions_seen.insert(v);
        }
    }
    assert!(
        versions_seen.len() > 50,
        "readers saw only {} versions",
        versions_seen.len()
    );
    assert_eq!(cache.version(), VERSIONS);
}
