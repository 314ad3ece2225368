//! Laws of the engine, for any user and any valid thresholds.
#![allow(clippy::unwrap_used, missing_docs)]

use proptest::prelude::*;
use risk_core::thresholds::{
    BureauRulesDocument, GradeDocument, LoginPatternDocument, ProfileDocument,
};
use risk_core::*;
use std::collections::BTreeMap;

fn grade_doc() -> impl Strategy<Value = GradeDocument> {
    (0i64..20_000_000, 0u32..=10_000, 0i64..12, 0i64..12, 0i64..5).prop_map(
        |(single, bps, d24, a1, overdue)| GradeDocument {
            max_single_fen: single,
            max_utilisation: f64::from(bps) / 10_000.0,
            max_drawdowns_24h: d24,
            max_applications_1h: a1,
            max_days_overdue: overdue,
        },
    )
}

/// Bureau rules: absent, or each rule on or off, the reject bound at or below the review bound.
fn bureau_doc() -> impl Strategy<Value = Option<BureauRulesDocument>> {
    let rules = (
        proptest::option::of(300i64..=850),
        proptest::option::of(0i64..=200),
        proptest::option::of(0i64..3),
        proptest::option::of(0i64..60),
    )
        .prop_map(|(a, gap, accounts, days)| BureauRulesDocument {
            reject_below_score: a,
            review_below_score: a
                .zip(gap)
                .map(|(a, g)| (a + g).min(850))
                .or(gap.map(|g| 600 + g)),
            max_overdue_accounts: accounts,
            max_days_overdue: days,
        });
    proptest::option::of(rules)
}

/// Every kind of bureau signal, with reports across the whole score range.
fn signal() -> impl Strategy<Value = BureauSignal> {
    let report = (300u16..=850, 0u32..3, 0u32..90, 0u32..10).prop_map(|(score, acc, days, inq)| {
        BureauReport {
            score,
            overdue_accounts: acc,
            max_days_overdue: if acc == 0 { 0 } else { days },
            inquiries_90d: inq,
        }
    });
    prop_oneof![
        Just(BureauSignal::NotConsulted),
        report.clone().prop_map(BureauSignal::Fresh),
        (report, 0u32..600)
            .prop_map(|(report, age_secs)| BureauSignal::Cached { report, age_secs }),
        prop_oneof![
            Just(UnavailableCause::Timeout),
            Just(UnavailableCause::Error),
            Just(UnavailableCause::BreakerOpen),
            Just(UnavailableCause::BulkheadFull),
            Just(UnavailableCause::NoBudget),
        ]
        .prop_map(BureauSignal::Unavailable),
    ]
}

fn profile_doc() -> impl Strategy<Value = ProfileDocument> {
    (
        proptest::collection::vec(grade_doc(), 5),
        0i64..60,
        prop_oneof![
            Just(LoginMode::ReviewWhenCombined),
            Just(LoginMode::RejectAlone),
            Just(LoginMode::Off)
        ],
        1i64..100,
        0i64..6,
        bureau_doc(),
    )
        .prop_map(
            |(grades, age, mode, logins, combine, bureau)| ProfileDocument {
                min_account_age_days: age,
                login_pattern: LoginPatternDocument {
                    mode,
                    logins_30d: logins,
                    combine_applications_1h: combine,
                },
                grades: RiskGrade::ALL
                    .iter()
                    .zip(grades)
                    .map(|(g, d)| (g.as_str().to_owned(), d))
                    .collect::<BTreeMap<_, _>>(),
                bureau,
            },
        )
}

fn thresholds() -> impl Strategy<Value = Thresholds> {
    (profile_doc(), profile_doc(), 1u64..1000).prop_map(|(normal, peak, version)| {
        let doc = ThresholdsDocument {
            version,
            base_profile: "normal".into(),
            profiles: [("normal".to_owned(), normal), ("peak".to_owned(), peak)].into(),
        };
        Thresholds::compile(doc).unwrap()
    })
}

fn user() -> impl Strategy<Value = UserState> {
    (
        0u64..20_000_000,
        0u64..=100,
        0usize..5,
        0u32..150,
        (0u32..15, 0u32..15, 0u32..100),
        any::<bool>(),
        0u32..6,
        prop::bool::weighted(0.05),
    )
        .prop_map(
            |(limit, used_pct, g, logins, (d24, a1, age), new_device, overdue, bl)| {
                let limit = Fen::new(limit).unwrap();
                UserState {
                    limit,
                    used: Fen::new(limit.get() * used_pct / 100).unwrap(),
                    grade: RiskGrade::ALL[g],
                    logins_30d: logins,
                    drawdowns_24h: d24,
                    applications_1h: a1,
                    account_age_days: age,
                    new_device,
                    days_overdue: overdue,
                    blocklisted: bl,
                }
            },
        )
}

fn profile() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("normal"), Just("peak")]
}

fn req(amount: u64) -> DrawdownRequest {
    DrawdownRequest {
        amount: Fen::new(amount).unwrap(),
        channel: Channel::App,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// The quote tells the truth: exactly the amounts up to `drawable_now` are approved.
    #[test]
    fn the_quote_tells_the_truth(th in thresholds(), u in user(), p in profile(), b in signal(), extra in 1u64..1_000_000) {
        let ctx = Context { profile: p, window_ends_at: None, bureau: b };
        let q = quote(&th, &ctx, &u);
        let d = q.drawable_now.get();
        if d >= 1 {
            prop_assert_eq!(evaluate(&th, &ctx, &u, &req(d)).outcome, Outcome::Approved);
            prop_assert_eq!(evaluate(&th, &ctx, &u, &req(1)).outcome, Outcome::Approved);
            prop_assert_eq!(evaluate(&th, &ctx, &u, &req(d / 2 + 1)).outcome, Outcome::Approved);
        }
        prop_assert_ne!(evaluate(&th, &ctx, &u, &req(d + 1)).outcome, Outcome::Approved);
        prop_assert_ne!(evaluate(&th, &ctx, &u, &req(d + extra)).outcome, Outcome::Approved);
        // A quote below the line names what binds it.
        if q.drawable_now < q.available {
            prop_assert!(!q.constraints.is_empty());
        }
    }

    /// Approval never exceeds the available line; refusals give 1 to 4 reasons; approvals none.
    #[test]
    fn decisions_are_well_formed(th in thresholds(), u in user(), p in profile(), b in signal(), amount in 1u64..25_000_000) {
        let ctx = Context { profile: p, window_ends_at: None, bureau: b };
        let d = evaluate(&th, &ctx, &u, &req(amount));
        match d.outcome {
            Outcome::Approved => {
                prop_assert!(d.amount <= u.available());
                prop_assert!(d.reasons.is_empty());
                prop_assert!(u.used.get() + amount <= d.reserve_ceiling.get());
            }
            Outcome::Rejected | Outcome::Review => {
                prop_assert!((1..=MAX_REASONS).contains(&d.reasons.len()), "{:?}", d.reasons);
                for r in &d.reasons {
                    prop_assert_eq!(r.code.entry().category, Category::Risk);
                }
            }
        }
        prop_assert_eq!(d.threshold_version, th.version());
    }

    /// Outcome is monotone in the amount: if an amount is approved, every smaller one is.
    #[test]
    fn outcome_is_monotone_in_amount(th in thresholds(), u in user(), p in profile(), sig in signal(), a in 1u64..20_000_000, b in 1u64..20_000_000) {
        let ctx = Context { profile: p, window_ends_at: None, bureau: sig };
        let (lo, hi) = (a.min(b), a.max(b));
        if evaluate(&th, &ctx, &u, &req(hi)).outcome == Outcome::Approved {
            prop_assert_eq!(evaluate(&th, &ctx, &u, &req(lo)).outcome, Outcome::Approved);
        }
    }

    /// Frequent logins alone never reject under the default rule.
    #[test]
    fn logins_alone_never_reject(u in user(), logins in 0u32..100_000, amount in 1u64..1_000_000) {
        let th = Thresholds::embedded_default();
        let ctx = Context { profile: "normal", window_ends_at: None, bureau: BureauSignal::NotConsulted };
        let mut quiet = u.clone();
        quiet.logins_30d = 0;
        quiet.new_device = false;
        quiet.applications_1h = 0;
        let mut busy = quiet.clone();
        busy.logins_30d = logins;
        prop_assert_eq!(
            evaluate(&th, &ctx, &quiet, &req(amount)).outcome,
            evaluate(&th, &ctx, &busy, &req(amount)).outcome
        );
    }

    /// The bureau only ever takes away: whatever it says (or fails to say), an amount it lets
    /// through is one that would pass without it.
    #[test]
    fn the_bureau_never_loosens(th in thresholds(), u in user(), p in profile(), b in signal(), amount in 1u64..20_000_000) {
        let with = Context { profile: p, window_ends_at: None, bureau: b };
        let without = Context { bureau: BureauSignal::NotConsulted, ..with };
        if evaluate(&th, &with, &u, &req(amount)).outcome == Outcome::Approved {
            prop_assert_eq!(evaluate(&th, &without, &u, &req(amount)).outcome, Outcome::Approved);
        }
    }

    /// An unavailable bureau under bureau rules never approves; where the user would otherwise
    /// have been approved, the answer is a review naming BUREAU_UNAVAILABLE_REVIEW.
    #[test]
    fn an_unavailable_bureau_sends_to_review(th in thresholds(), u in user(), p in profile(), amount in 1u64..20_000_000) {
        let rules_on = th.profile(p).unwrap().bureau.is_on();
        let down = Context { profile: p, window_ends_at: None, bureau: BureauSignal::Unavailable(UnavailableCause::Timeout) };
        let off = Context { bureau: BureauSignal::NotConsulted, ..down };
        let d = evaluate(&th, &down, &u, &req(amount));
        let baseline = evaluate(&th, &off, &u, &req(amount)).outcome;
        if !rules_on {
            prop_assert_eq!(d.outcome, baseline);
        } else {
            prop_assert_ne!(d.outcome, Outcome::Approved);
            if baseline == Outcome::Approved {
                prop_assert_eq!(d.outcome, Outcome::Review);
                prop_assert!(d.reasons.iter().any(|r| r.code == ReasonCode::BureauUnavailableReview));
            }
        }
    }
}
