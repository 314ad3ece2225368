//! A peak rehearsal: the same traffic against the live policy and a candidate bundle that
//! tightens the per-user limit and the login rule; the report counts the good users the
//! candidate refuses, by cause.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use loadtest::classify::Cause;
use loadtest::rehearse::{Bundle, RehearseOptions, rehearse};
use loadtest::scenario::Scenario;
use risk_core::Family;

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_candidate_is_rehearsed_on_the_same_traffic() {
    let dir = tmp("rehearse");
    // The candidate: frequent logins reject alone, and two requests per user per minute (one
    // journey: a quote and a drawdown); 20 users share 30 journeys, so some users' second
    // journey meets the limit.
    let mut doc = risk_core::Thresholds::embedded_default().document().clone();
    for p in doc.profiles.values_mut() {
        p.login_pattern.mode = risk_core::LoginMode::RejectAlone;
    }
    std::fs::write(
        dir.join("candidate.json"),
        serde_json::to_string(&doc).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("bundle.toml"),
        r#"
[risk]
thresholds_file = "candidate.json"   # relative to the bundle
[policy.normal]
user = { per_minute = 2, burst = 2 }
"#,
    )
    .unwrap();
    let scenario = Scenario::from_toml(
        "rehearse",
        r#"
name = "rehearse"
seed = 20
connections = 32
request_timeout_ms = 3000
[population]
users = 20
[[population.group]]
name = "good"
profile = "good"
behaviour = "polite"
share = 0.5
[[population.group]]
name = "frequent_login"
profile = "frequent_login"
behaviour = "polite"
share = 0.5
[journey]
think_ms = 100
amount_min_fen = 10000
amount_max_fen = 20000
[retry]
storm_max_attempts = 2
polite_max_attempts = 2
polite_backoff_ms = 50
polite_cap_ms = 100
[[phase]]
name = "evening"
duration_s = 2
rate = { shape = "constant", rate = 15 }
"#,
    )
    .unwrap();
    let r = rehearse(&RehearseOptions {
        scenario,
        scale: 1.0,
        gateway_config: None,
        candidate: Bundle::load(&dir.join("bundle.toml")).unwrap(),
        api_key: "rehearse-api-key-0001".into(),
        admin_token: "rehearse-admin-token-01".into(),
        progress: false,
    })
    .await
    .unwrap();
    let (live, cand) = (&r.live.totals, &r.candidate.totals);
    // The same traffic: the same journeys of the same users.
    assert_eq!(r.live.generator.journeys, r.candidate.generator.journeys);
    assert!(
        r.live.generator.journeys >= 20,
        "{}",
        r.live.generator.journeys
    );
    assert_eq!((live.good_users, cand.good_users), (20, 20));
    let users = |t: &loadtest::results::Totals, f: Family| {
        t.good_refused_users_by_cause
            .get(&Cause::Coded(f))
            .copied()
            .unwrap_or(0)
    };
    // The candidate refuses good users live lets through, for each of its two changes.
    assert_eq!(
        (users(live, Family::RateLimit), users(live, Family::Anomaly)),
        (0, 0),
        "{live:?}"
    );
    assert!(users(cand, Family::RateLimit) > 0, "{cand:?}");
    assert!(users(cand, Family::Anomaly) > 0, "{cand:?}");
    assert!(
        cand.good_refused_users > live.good_refused_users,
        "{cand:?}"
    );
    // The report leads with it.
    let out = dir.join("out");
    let w = loadtest::report::write_rehearsal(&r, &out).unwrap();
    let html = std::fs::read_to_string(&w.html).unwrap();
    for needle in [
        "id=\"rehearsal-causes\"",
        "<td>rate_limit</td>",
        "<td>anomaly</td>",
        "<td>any cause</td>",
    ] {
        assert!(html.contains(needle), "{needle}");
    }
    let md = std::fs::read_to_string(&w.markdown).unwrap();
    let any = format!("| any cause | {} |", live.good_refused_users);
    assert!(md.contains(&any), "{md}");
}

#[test]
fn a_bundle_sets_policy_and_risk_only() {
    let dir = tmp("rehearse-bundle");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[admission]\nmode = \"fixed\"\n").unwrap();
    let e = Bundle::load(&path).unwrap_err().to_string();
    assert!(e.contains("`admission` is not a policy setting"), "{e}");
    std::fs::write(&path, "[risk]\nthresholds_file = \"t.json\"\n").unwrap();
    let b = Bundle::load(&path).unwrap();
    assert_eq!(
        b.table["risk"]["thresholds_file"].as_str(),
        Some(dir.join("t.json").display().to_string().as_str())
    );
}
