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
};
const PEAK: Context<'static> = Context {
    profile: "peak",
    window_ends_at: None,
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
    };
    let d = draw(t(), &ctx, &user(), 100);
    assert_eq!(d.profile, "normal");
}
