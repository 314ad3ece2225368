//! One test per rule, on both sides of its boundary.

use super::*;
use crate::{Channel, RiskGrade};

fn t() -> &'static Thresholds {
    static T: std::sync::OnceLock<Thresholds> = std::sync::OnceLock::new();
    T.get_or_init(Thresholds::embedded_default)
}

const NORMAL: Context<'static> = Context {
    profile: "normal",
    window_ends_at: None,
    bureau: BureauSignal::NotConsulted,
};
const PEAK: Context<'static> = Context {
    profile: "peak",
    window_ends_at: None,
    bureau: BureauSignal::NotConsulted,
};

fn fen(v: u64) -> Fen {
    Fen::new(v).unwrap()
}

/// A clean grade-A user with a 10,000,000-fen line (above the single cap of 5,000,000).
fn user() -> UserState {
    UserState::clean(fen(10_000_000), RiskGrade::A)
}

fn draw<'t>(th: &'t Thresholds, ctx: &Context<'_>, u: &UserState, amount: u64) -> Decision<'t> {
    evaluate(
        th,
        ctx,
        u,
        &DrawdownRequest {
            amount: fen(amount),
            channel: Channel::App,
        },
    )
}

fn codes(d: &Decision<'_>) -> Vec<&'static str> {
    d.reasons.iter().map(|r| r.code.as_str()).collect()
}

#[test]
fn a_clean_user_within_every_cap_is_approved_with_no_reasons() {
    let d = draw(t(), &NORMAL, &user(), 100_000);
    assert_eq!(d.outcome, Outcome::Approved);
    assert!(d.reasons.is_empty());
    assert_eq!(d.drawable_now, fen(5_000_000));
    assert_eq!(d.threshold_version, 1);
    assert_eq!(d.profile, "normal");
    assert!(!d.appealable());
}

#[test]
fn blocklist() {
    let mut u = user();
    assert_eq!(draw(t(), &NORMAL, &u, 100).outcome, Outcome::Approved);
    u.blocklisted = true;
    let d = draw(t(), &NORMAL, &u, 100);
    assert_eq!(codes(&d), ["BLOCKLISTED"]);
    assert_eq!(d.drawable_now, Fen::ZERO);
    assert!(d.appealable());
}

#[test]
fn overdue_tolerance() {
    let mut u = user();
    u.days_overdue = 0;
    assert_eq!(draw(t(), &NORMAL, &u, 100).outcome, Outcome::Approved);
    u.days_overdue = 1;
    let d = draw(t(), &NORMAL, &u, 100);
    assert_eq!(codes(&d), ["OVERDUE_BALANCE"]);
    assert_eq!((d.reasons[0].limit, d.reasons[0].actual), (0, 1));
}

#[test]
fn account_age_tightened_in_the_peak_profile() {
    let mut u = user();
    u.account_age_days = 30;
    assert_eq!(draw(t(), &PEAK, &u, 100).outcome, Outcome::Approved);
    u.account_age_days = 29;
    let d = draw(t(), &PEAK, &u, 100);
    assert_eq!(codes(&d), ["PEAK_WINDOW_TIGHTENED"]);
    assert_eq!(d.reasons[0].rule, Rule::AccountAge);
    // Outside the window the same account passes.
    assert_eq!(draw(t(), &NORMAL, &u, 100).outcome, Outcome::Approved);
}

#[test]
fn account_age_in_the_base_profile_is_its_own_code() {
    let mut doc = t().document().clone();
    doc.profiles.get_mut("normal").unwrap().min_account_age_days = 10;
    let th = Thresholds::compile(doc).unwrap();
    let mut u = user();
    u.account_age_days = 10;
    assert_eq!(draw(&th, &NORMAL, &u, 100).outcome, Outcome::Approved);
    u.account_age_days = 9;
    assert_eq!(codes(&draw(&th, &NORMAL, &u, 100)), ["ACCOUNT_TOO_NEW"]);
}

#[test]
fn available_line() {
    let mut u = UserState::clean(fen(1_000_000), RiskGrade::A);
    u.used = fen(400_000);
    assert_eq!(draw(t(), &NORMAL, &u, 600_000).outcome, Outcome::Approved);
    let d = draw(t(), &NORMAL, &u, 600_001);
    assert_eq!(codes(&d), ["INSUFFICIENT_AVAILABLE_LINE"]);
    let r = &d.reasons[0];
    assert_eq!((r.limit, r.actual, r.unit), (600_000, 600_001, Unit::Fen));
    assert_eq!(r.suggested_amount, Some(fen(600_000)));
    assert!(!d.appealable());
    assert!(
        r.guidance().contains("You can draw up to 6000.00 yuan now"),
        "{}",
        r.guidance()
    );
    assert!(
        r.guidance_zh().contains("当前最多可借 6000.00 元"),
        "{}",
        r.guidance_zh()
    );
}

#[test]
fn single_drawdown_limit() {
    assert_eq!(
        draw(t(), &NORMAL, &user(), 5_000_000).outcome,
        Outcome::Approved
    );
    let d = draw(t(), &NORMAL, &user(), 5_000_001);
    assert_eq!(codes(&d), ["SINGLE_DRAWDOWN_LIMIT"]);
    assert_eq!(d.reasons[0].limit, 5_000_000);
    assert_eq!(d.reasons[0].suggested_amount, Some(fen(5_000_000)));
}

#[test]
fn utilisation_limit() {
    // Grade C: at most 90 % of the line in use.
    let mut u = UserState::clean(fen(1_000_000), RiskGrade::C);
    u.used = fen(500_000);
    assert_eq!(draw(t(), &NORMAL, &u, 400_000).outcome, Outcome::Approved);
    let d = draw(t(), &NORMAL, &u, 400_001);
    assert_eq!(codes(&d), ["UTILISATION_LIMIT"]);
    assert_eq!(d.reserve_ceiling, fen(900_000));
    // Figures: the most that may be in use, and what this drawdown would bring it to.
    assert_eq!(
        (d.reasons[0].limit, d.reasons[0].actual),
        (900_000, 900_001)
    );
    assert!(
        d.reasons[0]
            .guidance()
            .contains("At most 9000.00 yuan of the line may be in use")
    );
}

#[test]
fn velocity_drawdowns_24h() {
    let mut u = user();
    u.drawdowns_24h = 9;
    assert_eq!(draw(t(), &NORMAL, &u, 100).outcome, Outcome::Approved);
    u.drawdowns_24h = 10;
    let d = draw(t(), &NORMAL, &u, 100);
    assert_eq!(codes(&d), ["VELOCITY_DRAWDOWNS_24H"]);
    assert!(d.appealable());
}

#[test]
fn velocity_applications_1h() {
    let mut u = user();
    u.applications_1h = 9;
    assert_eq!(draw(t(), &NORMAL, &u, 100).outcome, Outcome::Approved);
    u.applications_1h = 10;
    assert_eq!(
        codes(&draw(t(), &NORMAL, &u, 100)),
        ["VELOCITY_APPLICATIONS_1H"]
    );
}

#[test]
fn frequent_logins_alone_never_reject() {
    let mut u = user();
    u.logins_30d = 10_000;
    let d = draw(t(), &NORMAL, &u, 100);
    assert_eq!(d.outcome, Outcome::Approved, "{:?}", codes(&d));
}

#[test]
fn frequent_logins_with_a_new_device_go_to_review() {
    let mut u = user();
    u.new_device = true;
    u.logins_30d = 59;
    assert_eq!(draw(t(), &NORMAL, &u, 100).outcome, Outcome::Approved);
    u.logins_30d = 60;
    let d = draw(t(), &NORMAL, &u, 100);
    assert_eq!(d.outcome, Outcome::Review);
    assert_eq!(codes(&d), ["LOGIN_PATTERN_REVIEW"]);
    assert_eq!(d.drawable_now, Fen::ZERO);
}

#[test]
fn frequent_logins_with_an_application_burst_go_to_review() {
    let mut u = user();
    u.logins_30d = 60;
    u.applications_1h = 2;
    assert_eq!(draw(t(), &NORMAL, &u, 100).outcome, Outcome::Approved);
    u.applications_1h = 3;
    assert_eq!(draw(t(), &NORMAL, &u, 100).outcome, Outcome::Review);
}

#[test]
fn review_does_not_hide_an_amount_refusal() {
    let mut u = user();
    u.logins_30d = 60;
    u.new_device = true;
    let d = draw(t(), &NORMAL, &u, 5_000_001);
    assert_eq!(d.outcome, Outcome::Rejected);
    assert_eq!(codes(&d), ["SINGLE_DRAWDOWN_LIMIT"]);
}

#[test]
fn the_legacy_login_rule_rejects_alone() {
    let mut doc = t().document().clone();
    doc.profiles.get_mut("normal").unwrap().login_pattern.mode = LoginMode::RejectAlone;
    let th = Thresholds::compile(doc).unwrap();
    let mut u = user();
    u.logins_30d = 59;
    assert_eq!(draw(&th, &NORMAL, &u, 100).outcome, Outcome::Approved);
    u.logins_30d = 60;
    assert_eq!(
        codes(&draw(&th, &NORMAL, &u, 100)),
        ["LOGIN_PATTERN_ANOMALY"]
    );
}

#[test]
fn a_peak_cap_that_passes_under_the_base_profile_is_a_peak_tightening() {
    let end = jiff::civil::date(2026, 11, 11)
        .at(2, 0, 0, 0)
        .in_tz("Asia/Shanghai")
        .unwrap();
    let ctx = Context {
        profile: "peak",
        window_ends_at: Some(&end),
        bureau: BureauSignal::NotConsulted,
    };
    // Peak grade A: single cap 2,000,000 (normal 5,000,000).
    assert_eq!(
        draw(t(), &ctx, &user(), 2_000_000).outcome,
        Outcome::Approved
    );
    let d = draw(t(), &ctx, &user(), 2_000_001);
    assert_eq!(codes(&d), ["PEAK_WINDOW_TIGHTENED"]);
    let r = &d.reasons[0];
    assert_eq!(r.rule, Rule::SingleDrawdown);
    assert_eq!(r.suggested_amount, Some(fen(2_000_000)));
    assert_eq!(r.retry_at.as_ref(), Some(&end));
    assert!(
        r.guidance().contains("2026-11-11 02:00 +08:00"),
        "{}",
        r.guidance()
    );
    // Above the base cap too: the standing limit is the principal reason.
    assert_eq!(
        codes(&draw(t(), &ctx, &user(), 5_000_001)),
        ["SINGLE_DRAWDOWN_LIMIT"]
    );
}

#[test]
fn reasons_are_ordered_and_capped_at_four() {
    let mut u = UserState::clean(fen(1_000_000), RiskGrade::E);
    u.used = fen(400_000);
    u.blocklisted = true;
    u.days_overdue = 5;
    u.drawdowns_24h = 9;
    u.applications_1h = 9;
    let d = draw(t(), &NORMAL, &u, 900_000);
    assert_eq!(
        codes(&d),
        [
            "BLOCKLISTED",
            "OVERDUE_BALANCE",
            "VELOCITY_DRAWDOWNS_24H",
            "VELOCITY_APPLICATIONS_1H"
        ]
    );
}

#[test]
fn the_quote_lists_binding_constraints() {
    let end = jiff::civil::date(2026, 11, 11)
        .at(2, 0, 0, 0)
        .in_tz("Asia/Shanghai")
        .unwrap();
    let ctx = Context {
        profile: "peak",
        window_ends_at: Some(&end),
        bureau: BureauSignal::NotConsulted,
    };
    let q = quote(t(), &ctx, &user());
    assert_eq!(q.available, fen(10_000_000));
    assert_eq!(q.drawable_now, fen(2_000_000));
    let c: Vec<_> = q
        .constraints
        .iter()
        .map(|r| (r.code.as_str(), r.rule))
        .collect();
    // Single cap binds below the line (standing limit 5,000,000 binds too, so it is not only
    // the window), and the peak utilisation cap (90 %) binds only because of the window.
    assert_eq!(
        c,
        [
            ("SINGLE_DRAWDOWN_LIMIT", Rule::SingleDrawdown),
            ("PEAK_WINDOW_TIGHTENED", Rule::Utilisation)
        ]
    );
    let q = quote(
        t(),
        &NORMAL,
        &UserState::clean(fen(1_000_000), RiskGrade::A),
    );
    assert_eq!(q.drawable_now, fen(1_000_000));
    assert!(q.constraints.is_empty());
}

#[test]
fn an_unknown_profile_falls_back_to_the_base_and_says_so() {
    let ctx = Context {
        profile: "nope",
        window_ends_at: None,
        bureau: BureauSignal::NotConsulted,
    };
    let d = draw(t(), &ctx, &user(), 100);
    assert_eq!(d.profile, "normal");
}

fn report(score: u16, overdue_accounts: u32, max_days_overdue: u32) -> crate::BureauReport {
    crate::BureauReport {
        score,
        overdue_accounts,
        max_days_overdue,
        inquiries_90d: 0,
    }
}

fn with(signal: BureauSignal) -> Context<'static> {
    Context {
        bureau: signal,
        ..NORMAL
    }
}

fn fresh(score: u16, accounts: u32, days: u32) -> Context<'static> {
    with(BureauSignal::Fresh(report(score, accounts, days)))
}

/// Thresholds whose normal profile has these bureau rules (the default's otherwise).
fn bureau_rules(rules: crate::thresholds::BureauRulesDocument) -> Thresholds {
    let mut doc = t().document().clone();
    doc.profiles.get_mut("normal").unwrap().bureau = Some(rules);
    Thresholds::compile(doc).unwrap()
}

#[test]
fn bureau_score_below_the_reject_bound_rejects() {
    // Default normal profile: reject below 550, review below 620.
    assert_eq!(
        draw(t(), &fresh(620, 0, 0), &user(), 100).outcome,
        Outcome::Approved
    );
    assert_eq!(
        draw(t(), &fresh(550, 0, 0), &user(), 100).outcome,
        Outcome::Review
    );
    let d = draw(t(), &fresh(549, 0, 0), &user(), 100);
    assert_eq!(d.outcome, Outcome::Rejected);
    assert_eq!(codes(&d), ["BUREAU_SCORE_LOW"]);
    let r = &d.reasons[0];
    assert_eq!(
        (r.rule, r.limit, r.actual, r.unit),
        (Rule::BureauScore, 550, 549, Unit::Score)
    );
    assert!(
        r.guidance().contains("score is 549; the threshold is 550"),
        "{}",
        r.guidance()
    );
    assert!(
        r.guidance_zh().contains("征信评分 549"),
        "{}",
        r.guidance_zh()
    );
    assert!(d.appealable());
    assert_eq!(d.drawable_now, Fen::ZERO);
}

#[test]
fn bureau_score_in_the_review_band_goes_to_review() {
    assert_eq!(
        draw(t(), &fresh(620, 0, 0), &user(), 100).outcome,
        Outcome::Approved
    );
    let d = draw(t(), &fresh(619, 0, 0), &user(), 100);
    assert_eq!(d.outcome, Outcome::Review);
    assert_eq!(codes(&d), ["BUREAU_SCORE_REVIEW"]);
    assert_eq!((d.reasons[0].limit, d.reasons[0].actual), (620, 619));
    assert_eq!(d.drawable_now, Fen::ZERO);
    // A review never hides an amount refusal.
    let d = draw(t(), &fresh(619, 0, 0), &user(), 5_000_001);
    assert_eq!(codes(&d), ["SINGLE_DRAWDOWN_LIMIT"]);
}

#[test]
fn bureau_overdue_accounts_reject() {
    let th = bureau_rules(crate::thresholds::BureauRulesDocument {
        max_overdue_accounts: Some(1),
        ..Default::default()
    });
    assert_eq!(
        draw(&th, &fresh(800, 1, 5), &user(), 100).outcome,
        Outcome::Approved
    );
    let d = draw(&th, &fresh(800, 2, 5), &user(), 100);
    assert_eq!(codes(&d), ["BUREAU_OVERDUE"]);
    let r = &d.reasons[0];
    assert_eq!(
        (r.rule, r.limit, r.actual, r.unit),
        (Rule::BureauOverdueAccounts, 1, 2, Unit::Count)
    );
    assert!(
        r.guidance().contains("2 overdue accounts elsewhere"),
        "{}",
        r.guidance()
    );
}

#[test]
fn bureau_days_overdue_reject() {
    let th = bureau_rules(crate::thresholds::BureauRulesDocument {
        max_days_overdue: Some(30),
        ..Default::default()
    });
    assert_eq!(
        draw(&th, &fresh(800, 3, 30), &user(), 100).outcome,
        Outcome::Approved
    );
    let d = draw(&th, &fresh(800, 3, 31), &user(), 100);
    assert_eq!(codes(&d), ["BUREAU_OVERDUE"]);
    assert_eq!(
        (d.reasons[0].rule, d.reasons[0].limit, d.reasons[0].actual),
        (Rule::BureauOverdueDays, 30, 31)
    );
}

#[test]
fn bureau_refusals_come_after_internal_eligibility_and_before_velocity() {
    let mut u = user();
    u.days_overdue = 3;
    u.drawdowns_24h = 10;
    let d = draw(t(), &fresh(400, 1, 10), &u, 100);
    assert_eq!(
        codes(&d),
        [
            "OVERDUE_BALANCE",
            "BUREAU_OVERDUE",
            "BUREAU_OVERDUE",
            "BUREAU_SCORE_LOW"
        ]
    );
}

#[test]
fn a_cached_answer_is_judged_like_a_fresh_one() {
    let cached = |score| {
        with(BureauSignal::Cached {
            report: report(score, 0, 0),
            age_secs: 120,
        })
    };
    assert_eq!(
        draw(t(), &cached(700), &user(), 100).outcome,
        Outcome::Approved
    );
    assert_eq!(
        codes(&draw(t(), &cached(600), &user(), 100)),
        ["BUREAU_SCORE_REVIEW"]
    );
    assert_eq!(
        codes(&draw(t(), &cached(500), &user(), 100)),
        ["BUREAU_SCORE_LOW"]
    );
}

#[test]
fn an_unavailable_bureau_sends_to_review_never_approves() {
    for cause in [
        crate::UnavailableCause::Timeout,
        crate::UnavailableCause::Error,
        crate::UnavailableCause::BreakerOpen,
        crate::UnavailableCause::BulkheadFull,
        crate::UnavailableCause::NoBudget,
    ] {
        let ctx = with(BureauSignal::Unavailable(cause));
        let d = draw(t(), &ctx, &user(), 100);
        assert_eq!(d.outcome, Outcome::Review, "{cause:?}");
        assert_eq!(codes(&d), ["BUREAU_UNAVAILABLE_REVIEW"]);
        assert_eq!(d.reasons[0].rule, Rule::BureauUnavailable);
        assert_eq!(d.drawable_now, Fen::ZERO);
        assert!(!d.appealable());
        let g = d.reasons[0].guidance();
        assert!(g.starts_with("Nothing is refused"), "{g}");
        // The quote says the same: nothing drawable now, and why.
        let q = quote(t(), &ctx, &user());
        assert_eq!(q.drawable_now, Fen::ZERO);
        let c: Vec<_> = q.constraints.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(c, ["SINGLE_DRAWDOWN_LIMIT", "BUREAU_UNAVAILABLE_REVIEW"]);
    }
}

#[test]
fn an_unavailable_bureau_does_not_hide_a_refusal() {
    let ctx = with(BureauSignal::Unavailable(crate::UnavailableCause::Timeout));
    let mut u = user();
    u.blocklisted = true;
    assert_eq!(codes(&draw(t(), &ctx, &u, 100)), ["BLOCKLISTED"]);
    assert_eq!(
        codes(&draw(t(), &ctx, &user(), 5_000_001)),
        ["SINGLE_DRAWDOWN_LIMIT"]
    );
    // Reviews for two causes list both.
    let mut u = user();
    u.logins_30d = 60;
    u.new_device = true;
    assert_eq!(
        codes(&draw(t(), &ctx, &u, 100)),
        ["LOGIN_PATTERN_REVIEW", "BUREAU_UNAVAILABLE_REVIEW"]
    );
}

#[test]
fn without_bureau_rules_the_signal_is_ignored() {
    let mut doc = t().document().clone();
    doc.profiles.get_mut("normal").unwrap().bureau = None;
    let th = Thresholds::compile(doc).unwrap();
    for signal in [
        BureauSignal::Unavailable(crate::UnavailableCause::Error),
        BureauSignal::Fresh(report(300, 5, 90)),
    ] {
        assert_eq!(
            draw(&th, &with(signal), &user(), 100).outcome,
            Outcome::Approved
        );
    }
    // And with rules on, not consulting the bureau leaves every bureau rule silent.
    assert_eq!(draw(t(), &NORMAL, &user(), 100).outcome, Outcome::Approved);
}

#[test]
fn a_bureau_rule_only_the_peak_profile_sets_is_a_peak_tightening() {
    let mut doc = t().document().clone();
    doc.profiles.get_mut("peak").unwrap().bureau = Some(crate::thresholds::BureauRulesDocument {
        reject_below_score: Some(650),
        ..Default::default()
    });
    let th = Thresholds::compile(doc).unwrap();
    let mut u = user();
    u.account_age_days = 365;
    let peak = |score| Context {
        bureau: BureauSignal::Fresh(report(score, 0, 0)),
        ..PEAK
    };
    assert_eq!(draw(&th, &peak(650), &u, 100).outcome, Outcome::Approved);
    let d = draw(&th, &peak(649), &u, 100);
    assert_eq!(codes(&d), ["PEAK_WINDOW_TIGHTENED"]);
    assert_eq!(d.reasons[0].rule, Rule::BureauScore);
    // Below the base profile's own bound, the bureau code itself.
    assert_eq!(codes(&draw(&th, &peak(549), &u, 100)), ["BUREAU_SCORE_LOW"]);
}
