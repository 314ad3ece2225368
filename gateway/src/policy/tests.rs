use std::time::Duration;

use jiff::Timestamp;
use risk_core::RiskGrade;

use super::*;
use crate::clock::ManualClock;

const CONFIG: &str = r#"
    [[windows]]
    name = "double11"
    start = "2026-11-10T23:30"
    end = "2026-11-11T02:00"
    [windows.limits]
    concurrency = 48
    user = { per_minute = 3 }

    [[windows]]
    name = "evening"
    daily_start = "20:00"
    daily_end = "22:00"

    [[windows]]
    name = "night"
    daily_start = "23:00"
    daily_end = "01:00"
"#;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn config(toml_text: &str) -> PolicyConfig {
    toml::from_str(toml_text).unwrap()
}

fn policy_at(toml_text: &str, now: &str) -> (Policy, ManualClock) {
    let clock = ManualClock::new(ts(now));
    let policy = Policy::new(&config(toml_text), clock.shared()).unwrap();
    (policy, clock)
}

fn window_at(policy: &Policy, now: &str) -> String {
    policy.evaluate_at(ts(now));
    policy.current().window.clone()
}

fn error(toml_text: &str) -> String {
    config(toml_text).validate().unwrap_err().to_string()
}

#[test]
fn defaults_are_the_normal_preset() {
    let (policy, _) = policy_at("", "2026-01-01T00:00:00Z");
    let now = policy.current();
    assert_eq!(now.window, "normal");
    assert_eq!(now.profile, "normal");
    assert_eq!(now.why, "no window active");
    assert_eq!(now.generation, 1);
    assert!(!now.forced);
    assert!(now.ends_at.is_none());
    assert_eq!(now.limits, WindowLimits::normal());
    assert_eq!(now.limits.global.drawdown.per_second, 2000);
    assert_eq!(now.limits.user.per_minute, 30);
    assert_eq!(now.limits.user.burst, 10);
    assert_eq!((now.limits.concurrency, now.limits.queue), (64, 256));
    assert_eq!(now.since.time_zone().iana_name(), Some("Asia/Shanghai"));
}

#[test]
fn fixed_window_boundaries_start_inclusive_end_exclusive() {
    // 23:30 Shanghai is 15:30 UTC. Just before, the daily "night" (from 23:00) is active;
    // from 23:30 double11 wins because it is listed first.
    let (policy, _) = policy_at(CONFIG, "2026-11-10T15:29:59Z");
    assert_eq!(policy.current().window, "night");
    assert_eq!(window_at(&policy, "2026-11-10T15:30:00Z"), "double11");
    let now = policy.current();
    assert_eq!(now.profile, "peak");
    assert_eq!(now.limits.concurrency, 48);
    // The patch replaced only per_minute; burst and grade overrides keep the peak preset.
    assert_eq!((now.limits.user.per_minute, now.limits.user.burst), (3, 6));
    assert_eq!(now.limits.user.for_grade(Some(RiskGrade::E)).per_minute, 6);
    assert_eq!(now.limits.user.for_grade(Some(RiskGrade::A)).per_minute, 3);
    assert_eq!(
        now.why,
        "calendar: window double11 2026-11-10T23:30+08:00 → 2026-11-11T02:00+08:00"
    );
    assert_eq!(now.since.timestamp(), ts("2026-11-10T15:30:00Z"));
    assert_eq!(
        now.ends_at.as_ref().map(|e| e.timestamp()),
        Some(ts("2026-11-10T18:00:00Z"))
    );
    assert_eq!(window_at(&policy, "2026-11-10T17:59:59.999Z"), "double11");
    assert_eq!(window_at(&policy, "2026-11-10T18:00:00Z"), "normal");
}

#[test]
fn daily_window_every_day() {
    let (policy, _) = policy_at(CONFIG, "2026-03-01T11:59:59Z");
    assert_eq!(policy.current().window, "normal");
    // 20:00 Shanghai = 12:00 UTC.
    assert_eq!(window_at(&policy, "2026-03-01T12:00:00Z"), "evening");
    let now = policy.current();
    assert_eq!(
        now.ends_at.as_ref().unwrap().timestamp(),
        ts("2026-03-01T14:00:00Z")
    );
    assert_eq!(window_at(&policy, "2026-03-01T14:00:00Z"), "normal");
    assert_eq!(window_at(&policy, "2026-03-02T13:00:00Z"), "evening");
}

#[test]
fn daily_window_wrapping_midnight() {
    let (policy, _) = policy_at(CONFIG, "2026-03-01T14:59:59Z");
    assert_eq!(policy.current().window, "normal");
    // 23:00 Shanghai = 15:00 UTC, ends 01:00 next day = 17:00 UTC.
    assert_eq!(window_at(&policy, "2026-03-01T15:00:00Z"), "night");
    let before_midnight = policy.current();
    // After midnight it is still the occurrence that started yesterday: no new snapshot.
    assert_eq!(window_at(&policy, "2026-03-01T16:30:00Z"), "night");
    let after_midnight = policy.current();
    assert_eq!(before_midnight.generation, after_midnight.generation);
    assert_eq!(
        after_midnight.why,
        "calendar: window night 2026-03-01T23:00+08:00 → 2026-03-02T01:00+08:00"
    );
    assert_eq!(window_at(&policy, "2026-03-01T17:00:00Z"), "normal");
}

#[test]
fn first_listed_window_wins_overlaps() {
    // 2026-11-10 23:45 Shanghai: both double11 and night are active; double11 is listed first.
    let (policy, _) = policy_at(CONFIG, "2026-11-10T15:45:00Z");
    assert_eq!(policy.current().window, "double11");
    // From 02:00 on the 11th, double11 is over and night (23:00–01:00) is too.
    assert_eq!(window_at(&policy, "2026-11-10T18:00:00Z"), "normal");
}

#[test]
fn daily_window_in_a_dst_zone() {
    let text = r#"
        zone = "America/New_York"
        [[windows]]
        name = "late"
        daily_start = "22:00"
        daily_end = "03:00"
    "#;
    // 2026-03-08 is the spring-forward day in New York (02:00 EST -> 03:00 EDT).
    // 22:00 EST on the 7th = 03:00Z on the 8th; 03:00 EDT on the 8th = 07:00Z: 4 hours.
    let (policy, _) = policy_at(text, "2026-03-08T02:59:59Z");
    assert_eq!(policy.current().window, "normal");
    assert_eq!(window_at(&policy, "2026-03-08T03:00:00Z"), "late");
    let now = policy.current();
    assert_eq!(
        now.ends_at.as_ref().unwrap().timestamp(),
        ts("2026-03-08T07:00:00Z")
    );
    assert_eq!(window_at(&policy, "2026-03-08T06:59:59Z"), "late");
    assert_eq!(window_at(&policy, "2026-03-08T07:00:00Z"), "normal");
    // 2026-11-01 falls back (02:00 EDT -> 01:00 EST): 22:00 EDT on Oct 31 = 02:00Z,
    // 03:00 EST on Nov 1 = 08:00Z: a 6-hour night.
    assert_eq!(window_at(&policy, "2026-11-01T02:00:00Z"), "late");
    assert_eq!(window_at(&policy, "2026-11-01T07:59:59Z"), "late");
    assert_eq!(window_at(&policy, "2026-11-01T08:00:00Z"), "normal");
}

#[test]
fn fixed_window_in_a_dst_zone() {
    let text = r#"
        zone = "America/New_York"
        [[windows]]
        name = "sale"
        start = "2026-03-07T12:00"
        end = "2026-03-08T12:00"
    "#;
    // 12:00 EST = 17:00Z; 12:00 EDT = 16:00Z: the window lasts 23 hours.
    let (policy, _) = policy_at(text, "2026-03-07T17:00:00Z");
    let now = policy.current();
    assert_eq!(now.window, "sale");
    assert_eq!(
        now.ends_at.as_ref().unwrap().timestamp(),
        ts("2026-03-08T16:00:00Z")
    );
    assert_eq!(window_at(&policy, "2026-03-08T16:00:00Z"), "normal");
}

#[test]
fn generation_bumps_only_on_change_and_subscribers_hear() {
    let (policy, clock) = policy_at(CONFIG, "2026-11-10T15:00:00Z");
    let mut rx = policy.subscribe();
    assert_eq!(rx.borrow_and_update().generation, 1);
    assert!(!policy.evaluate());
    assert!(!policy.evaluate_at(ts("2026-11-10T15:10:00Z")));
    assert!(!rx.has_changed().unwrap());
    clock.set(ts("2026-11-10T15:30:00Z"));
    assert!(policy.evaluate());
    assert!(rx.has_changed().unwrap());
    let seen = rx.borrow_and_update().clone();
    assert_eq!((seen.window.as_str(), seen.generation), ("double11", 2));
    assert_eq!(policy.current().generation, 2);
    assert!(!policy.evaluate());
    clock.set(ts("2026-11-10T18:00:00Z"));
    assert!(policy.evaluate());
    assert_eq!(policy.current().generation, 3);
}

#[test]
fn forcing_on_and_off() {
    let (policy, _) = policy_at(CONFIG, "2026-01-01T00:00:00Z");
    let forced = policy.force(Some("double11")).unwrap();
    assert_eq!(forced.window, "double11");
    assert!(forced.forced);
    assert_eq!(forced.why, "forced by admin");
    assert_eq!(forced.profile, "peak");
    assert_eq!(forced.generation, 2);
    // The calendar does not override a forced window.
    assert!(!policy.evaluate_at(ts("2026-03-01T12:30:00Z")));
    assert_eq!(policy.current().window, "double11");
    // Forcing the same again changes nothing.
    assert_eq!(policy.force(Some("double11")).unwrap().generation, 2);
    // Back to the calendar (the clock says 08:00 Shanghai: no window).
    let back = policy.force(None).unwrap();
    assert_eq!((back.window.as_str(), back.forced), ("normal", false));
    assert_eq!(back.generation, 3);
    let err = policy.force(Some("nope")).unwrap_err();
    assert_eq!(err.name(), "nope");
    assert_eq!(err.to_string(), "unknown window \"nope\"");
    assert_eq!(policy.current().generation, 3);
}

#[test]
fn forcing_every_window_off() {
    let (policy, _) = policy_at(CONFIG, "2026-11-10T15:45:00Z");
    assert_eq!(policy.current().window, "double11");
    let off = policy.force(Some(NORMAL)).unwrap();
    assert_eq!((off.window.as_str(), off.forced), ("normal", true));
    assert!(!policy.evaluate());
    let back = policy.force(None).unwrap();
    assert_eq!((back.window.as_str(), back.forced), ("double11", false));
}

#[test]
fn snapshot_serialises_for_the_admin_api() {
    let (policy, _) = policy_at(CONFIG, "2026-11-10T15:30:00Z");
    let json = serde_json::to_value(&*policy.current()).unwrap();
    assert_eq!(json["window"], "double11");
    assert_eq!(json["profile"], "peak");
    assert_eq!(json["forced"], false);
    assert_eq!(json["generation"], 1);
    assert_eq!(json["limits"]["concurrency"], 48);
    assert_eq!(json["limits"]["user"]["grades"]["E"]["per_minute"], 6);
    assert!(
        json["ends_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-11T02:00:00+08:00")
    );
}

#[tokio::test(start_paused = true)]
async fn scheduler_follows_a_manual_clock() {
    let (policy, clock) = policy_at(CONFIG, "2026-11-10T15:29:00Z");
    let mut rx = policy.subscribe();
    let task = spawn_scheduler(policy.clone(), Duration::from_secs(1));
    clock.advance(Duration::from_secs(60));
    rx.changed().await.unwrap();
    assert_eq!(rx.borrow().window, "double11");
    task.abort();
}

#[test]
fn validation_names_the_field() {
    assert_eq!(
        error(r#"zone = "Mars/Olympus""#),
        "policy.zone: unknown time zone \"Mars/Olympus\""
    );
    assert_eq!(
        error(
            r#"
            [[windows]]
            name = "a"
            daily_start = "20:00"
            daily_end = "21:00"
            [[windows]]
            name = "b"
            start = "2026-11-11T02:00"
            end = "2026-11-10T23:30"
            "#
        ),
        "policy.windows[1].end: must be after start"
    );
    assert_eq!(
        error(
            r#"
            [[windows]]
            name = "a"
            start = "2026-11-11T02:00"
            end = "2026-11-11T02:00"
            "#
        ),
        "policy.windows[0].end: must be after start"
    );
    assert_eq!(
        error(
            r#"
            [[windows]]
            name = "a"
            start = "2026-11-31T02:00"
            end = "2026-12-01T02:00"
            "#
        ),
        "policy.windows[0].start: bad time \"2026-11-31T02:00\": expected a civil date-time \
         like 2026-11-10T23:30"
    );
    assert_eq!(
        error(
            r#"
            [[windows]]
            name = "a"
            daily_start = "25:00"
            daily_end = "01:00"
            "#
        ),
        "policy.windows[0].daily_start: bad time \"25:00\": expected a time of day like 20:00"
    );
    assert_eq!(
        error(
            r#"
            [[windows]]
            name = "a"
            daily_start = "20:00"
            daily_end = "20:00"
            "#
        ),
        "policy.windows[0].daily_end: must differ from daily_start"
    );
    assert_eq!(
        error(
            r#"
            [[windows]]
            name = "a"
            daily_start = "20:00"
            daily_end = "21:00"
            [[windows]]
            name = "a"
            daily_start = "22:00"
            daily_end = "23:00"
            "#
        ),
        "policy.windows[1].name: duplicate name \"a\" (also policy.windows[0])"
    );
    assert_eq!(
        error(
            r#"
            [[windows]]
            name = "normal"
            daily_start = "20:00"
            daily_end = "21:00"
            "#
        ),
        "policy.windows[0].name: \"normal\" is reserved for the policy outside every window"
    );
    assert_eq!(
        error(
            r#"
            [[windows]]
            name = "a"
            start = "2026-11-10T23:30"
            "#
        ),
        "policy.windows[0].end: required with start"
    );
    assert_eq!(
        error(
            r#"
            [[windows]]
            name = "a"
            start = "2026-11-10T23:30"
            end = "2026-11-11T02:00"
            daily_start = "20:00"
            "#
        ),
        "policy.windows[0]: give either start/end or daily_start/daily_end, not both"
    );
    assert_eq!(
        error(
            r#"
            [[windows]]
            name = "a"
            "#
        ),
        "policy.windows[0]: needs start and end (a fixed range) or daily_start and daily_end"
    );
}

#[test]
fn validation_rejects_zero_rates() {
    assert_eq!(
        error("[normal.global]\ndrawdown = { per_second = 0, burst = 10 }"),
        "policy.normal.global.drawdown.per_second: must be at least 1"
    );
    assert_eq!(
        error("[normal]\nconcurrency = 0"),
        "policy.normal.concurrency: must be at least 1"
    );
    assert_eq!(
        error(
            r#"
            [[windows]]
            name = "a"
            daily_start = "20:00"
            daily_end = "21:00"
            [windows.limits.user]
            burst = 0
            "#
        ),
        "policy.windows[0].limits.user.burst: must be at least 1"
    );
    assert_eq!(
        error(
            r#"
            [[windows]]
            name = "a"
            daily_start = "20:00"
            daily_end = "21:00"
            [windows.limits.user.grades.E]
            per_minute = 0
            burst = 1
            "#
        ),
        "policy.windows[0].limits.user.grades.E.per_minute: must be at least 1"
    );
    // A queue of zero is allowed: nothing waits.
    assert!(config("[normal]\nqueue = 0").validate().is_ok());
}

#[test]
fn unknown_fields_are_refused() {
    let err = toml::from_str::<PolicyConfig>("[normal]\nconcurency = 3").unwrap_err();
    assert!(
        err.to_string().contains("unknown field `concurency`"),
        "{err}"
    );
    let err = toml::from_str::<PolicyConfig>(
        "[[windows]]\nname = \"a\"\ndaily_start = \"20:00\"\ndaily_end = \"21:00\"\nstrat = \"x\"",
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown field `strat`"), "{err}");
}

#[test]
fn a_replaced_configuration_is_published_and_keeps_a_forced_window_it_still_names() {
    let (policy, _) = policy_at(CONFIG, "2026-11-10T15:45:00Z");
    let mut rx = policy.subscribe();
    rx.borrow_and_update();
    assert_eq!(policy.current().window, "double11");
    assert_eq!(policy.current().limits.user.per_minute, 3);
    // The same window stays active with its new limits, as a new generation.
    let changed = CONFIG.replace("per_minute = 3", "per_minute = 7");
    let (now, unforced) = policy.replace(config(&changed).validate().unwrap());
    assert_eq!((now.window.as_str(), now.generation), ("double11", 2));
    assert_eq!(now.limits.user.per_minute, 7);
    assert_eq!(unforced, None);
    assert!(rx.has_changed().unwrap());
    assert_eq!(
        policy.compiled().windows.len(),
        3,
        "the configuration itself is the new one"
    );
    // A forced window the new configuration still names stays forced.
    policy.force(Some("evening")).unwrap();
    let (now, unforced) = policy.replace(config(&changed).validate().unwrap());
    assert_eq!((now.window.as_str(), now.forced), ("evening", true));
    assert_eq!(unforced, None);
    // One it no longer names is dropped: the calendar decides, and the name is answered.
    let (now, unforced) = policy.replace(
        config(&CONFIG.replace("evening", "rush"))
            .validate()
            .unwrap(),
    );
    assert_eq!((now.window.as_str(), now.forced), ("double11", false));
    assert_eq!(unforced.as_deref(), Some("evening"));
    assert!(policy.force(Some("evening")).is_err());
    assert_eq!(policy.force(Some("rush")).unwrap().window, "rush");
}

#[test]
fn a_force_read_before_a_local_force_does_not_undo_it() {
    let (policy, _) = policy_at(CONFIG, "2026-11-10T15:45:00Z");
    // A follower counts the forces, then reads the fleet's force (none) ...
    let seen = policy.forces();
    // ... while an operator forces `normal` through this instance ...
    policy.force(Some(NORMAL)).unwrap();
    // ... so what the follower read is older, and is not applied.
    assert_eq!(policy.force_unless_forced_since(None, seen).unwrap(), None);
    assert_eq!(policy.forced_window().as_deref(), Some(NORMAL));
    // Read after the local force, it is.
    let seen = policy.forces();
    let s = policy
        .force_unless_forced_since(None, seen)
        .unwrap()
        .unwrap();
    assert_eq!(s.window, "double11");
    assert_eq!(policy.forced_window(), None);
}
