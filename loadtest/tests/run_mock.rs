//! A whole run against the mock gateway: seeding, schedule, window actions, ground-truth
//! attribution, retry amplification, quota truthfulness, the written report, the CLI gate.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;

use loadtest::classify::Cause;
use loadtest::client::TargetAddr;
use loadtest::engine::{RunOptions, run};
use loadtest::scenario::Scenario;
use risk_core::Family;
use support::{ADMIN, API_KEY, SCENARIO, start_mock};

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_attributes_every_refusal_to_its_true_cause() {
    let (addr, state) = start_mock().await;
    let sc = Scenario::from_toml("mock", SCENARIO).unwrap();
    let opts = RunOptions {
        target: TargetAddr::from_addr(addr),
        target_label: format!("http://{addr}"),
        api_key: API_KEY.into(),
        admin_token: ADMIN.into(),
        scale: 1.0,
        started_at: "2026-11-11T00:00:00+08:00".into(),
        run_nonce: 7,
        progress: false,
        bureau: None,
        faults: Vec::new(),
    };
    let r = run(&sc, &opts).await.unwrap();
    let st = state.lock().unwrap();

    // Seeding and authentication.
    assert_eq!(st.users.len(), 100);
    assert_eq!(st.unauthorised, 0);
    // The schedule: 60/s for 1.5 s, then 60 -> 140/s over 1.5 s = 240 journeys, each one
    // quote (quotes are never refused by the mock, so never retried).
    let expected = sc.expected_journeys(0) + sc.expected_journeys(1);
    assert_eq!(expected, 240.0);
    assert!(
        (st.quotes as f64 - expected).abs() / expected < 0.01,
        "{}",
        st.quotes
    );
    assert_eq!(r.generator.journeys, 240);
    assert_eq!(r.phases[0].journeys, 90);
    assert_eq!(r.phases[1].journeys, 150);
    // Window actions: off at the start, double11 at the peak, released at the end.
    assert_eq!(
        st.force_calls,
        vec![
            serde_json::Value::Null,
            "double11".into(),
            serde_json::Value::Null
        ]
    );
    assert_eq!(r.windows.len(), 1);
    assert_eq!((r.windows[0].start_s, r.windows[0].end_s), (1.5, 3.0));

    let g = |name: &str| r.populations.iter().find(|p| p.name == name).unwrap();
    let intents: u64 = r.populations.iter().map(|p| p.intents).sum();
    assert_eq!(intents, 240);
    assert_eq!(r.generator.journeys_unfinished, 0);
    assert_eq!(r.generator.missed_sends, 0);

    // Good users: approved, or refused by the peak-window rule only.
    let good = g("good");
    assert!(good.intents > 0);
    assert_eq!(good.approved + good.refused, good.intents);
    assert!(
        good.refused_by_cause
            .keys()
            .all(|c| *c == Cause::Coded(Family::PeakWindow))
    );
    assert!(
        good.refused > 0,
        "some good users drew over 300000 in the peak"
    );
    // The mock's quotes ignore the window: every peak refusal broke a promise.
    assert_eq!(good.promised_refused, good.refused);
    assert_eq!(good.retry_amplification, 2.0);

    // Frequent logins: the anomaly rule refuses all of them, after a quote that promised.
    let fl = g("frequent_login");
    assert_eq!(
        fl.refused_by_cause.get(&Cause::Coded(Family::Anomaly)),
        Some(&fl.intents)
    );
    assert_eq!(fl.quota_untruthful_rate, 1.0);

    // Risky users: never approved, refused for eligibility, never promised anything.
    let risky = g("risky");
    assert_eq!(risky.approval_rate, 0.0);
    assert_eq!(
        risky
            .refused_by_cause
            .get(&Cause::Coded(Family::Eligibility)),
        Some(&risky.intents)
    );
    assert_eq!(risky.promised, 0);
    assert_eq!(r.totals.risky_approval_rate, 0.0);

    // Retry storm against shedding: 1 quote + 4 attempts per intent.
    let storm = g("shed_storm");
    assert_eq!(
        storm.refused_by_cause.get(&Cause::Coded(Family::Capacity)),
        Some(&storm.intents)
    );
    assert_eq!(storm.retry_amplification, 5.0);
    // Polite clients against a rate limit: 1 quote + 3 attempts.
    let polite = g("limited_polite");
    assert_eq!(
        polite
            .refused_by_cause
            .get(&Cause::Coded(Family::RateLimit)),
        Some(&polite.intents)
    );
    assert_eq!(polite.retry_amplification, 4.0);

    // The per-second series add up to what the server saw.
    let sent: u64 = r.seconds.iter().map(|s| s.sent).sum();
    assert_eq!(sent, st.quotes + st.drawdowns);
    let codes: u64 = r
        .seconds
        .iter()
        .map(|s| s.codes.get("CAPACITY_SHED").copied().unwrap_or(0))
        .sum();
    assert_eq!(codes, storm.intents * 4);
    assert!(
        r.seconds
            .iter()
            .any(|s| s.refusals.contains_key(&Cause::Coded(Family::PeakWindow)))
    );
    // Good-user refusals: good, frequent_login, shed_storm and limited_polite are all
    // users who should be approved.
    let good_intents = good.intents + fl.intents + storm.intents + polite.intents;
    assert_eq!(r.totals.good_intents, good_intents);
    let refused = good.refused + fl.refused + storm.refused + polite.refused;
    assert_eq!(
        r.totals.good_refusal_rate,
        refused as f64 / good_intents as f64
    );

    let out = tmp("mock-run");
    std::fs::create_dir_all(&out).unwrap();
    r.write(&out.join("results.json")).unwrap();
    let w = loadtest::report::write_report(&r, &out).unwrap();
    let html = std::fs::read_to_string(w.html).unwrap();
    assert!(html.contains("chart-refusals-by-cause") && html.contains("<svg"));
    let back = loadtest::results::Results::read(&out.join("results.json")).unwrap();
    assert_eq!(back, r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_command_exits_non_zero_when_a_gate_is_crossed() {
    let (addr, _state) = start_mock().await;
    let dir = tmp("cli-run");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mock.toml");
    std::fs::write(&file, SCENARIO).unwrap();
    let out = dir.join("out");
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["run", "--scenario"])
        .arg(&file)
        .args(["--target", &format!("http://{addr}")])
        .args([
            "--api-key",
            API_KEY,
            "--admin-token",
            ADMIN,
            "--scale",
            "0.5",
        ])
        .arg("--out")
        .arg(&out)
        .args(["--max-good-refusal-rate", "0.05", "--max-p99-ms", "60000"])
        .status()
        .await
        .unwrap();
    assert_eq!(status.code(), Some(3));
    for f in ["results.json", "report.html", "summary.md"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let r = loadtest::results::Results::read(&out.join("results.json")).unwrap();
    assert_eq!(r.scenario.scale, 0.5);
    let names: Vec<_> = r
        .gates
        .iter()
        .map(|g| (g.name.as_str(), g.passed))
        .collect();
    assert_eq!(
        names,
        [("max-p99-ms", true), ("max-good-refusal-rate", false)]
    );
}
