//! A scenario with a `[bureau]` block against the mock gateway: the simulator's changes are
//! applied on time and sampled, drawdowns are accounted per second, and the report carries
//! the bureau section. (The mock never calls the bureau; the real gateway's bureau client is
//! exercised by the `bureau-slowdown` scenario.)
#![allow(clippy::unwrap_used)]

mod support;

use loadtest::bureau::{BureauOptions, start};
use loadtest::client::TargetAddr;
use loadtest::engine::{BureauHandle, RunOptions, run};
use loadtest::report::{summary_markdown, write_report};
use loadtest::scenario::Scenario;
use support::{ADMIN, API_KEY, SCENARIO, start_mock};

const BUREAU: &str = r#"
[bureau]
slots = 2
service_ms = 20
jitter = "uniform:0-2"

[[bureau.change]]
at_s = 1.5
service_ms = 100

[[bureau.change]]
at_s = 2.5
error_rate = 0.5
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bureau_scenario_applies_its_changes_and_reports_them() {
    let (addr, state) = start_mock().await;
    let sc = Scenario::from_toml("mock-bureau", &format!("{SCENARIO}{BUREAU}")).unwrap();
    let b = sc.bureau.as_ref().unwrap();
    assert_eq!(b.changes.len(), 2);
    let sim = start(&b.options(sc.seed)).await.unwrap();
    assert_eq!(
        sim.bureau.stats().jitter.to_string(),
        "uniform:0-2",
        "the scenario's options reach the simulator"
    );
    let opts = RunOptions {
        target: TargetAddr::from_addr(addr),
        target_label: format!("http://{addr}"),
        api_key: API_KEY.into(),
        admin_token: ADMIN.into(),
        scale: 1.0,
        started_at: "2026-11-11T00:00:00+08:00".into(),
        run_nonce: 11,
        progress: false,
        bureau: Some(BureauHandle {
            bureau: sim.bureau.clone(),
            gateway_overrides: format!("bureau.url = \"{}\"", sim.base_url()),
        }),
        faults: Vec::new(),
    };
    let r = run(&sc, &opts).await.unwrap();
    let br = r.bureau.as_ref().unwrap();

    // A sample at the start and every second (3 s run plus the drain) and one at the end.
    assert!(br.samples.len() >= 4, "{}", br.samples.len());
    assert!(br.samples[0].t < 0.5);
    let at = |t: f64| {
        br.samples
            .iter()
            .min_by(|a, b| (a.t - t).abs().total_cmp(&(b.t - t).abs()))
            .unwrap()
    };
    assert_eq!((at(1.0).sim.service_ms, at(1.0).sim.error_rate), (20, 0.0));
    assert_eq!((at(2.0).sim.service_ms, at(2.0).sim.error_rate), (100, 0.0));
    let last = br.samples.last().unwrap();
    assert_eq!((last.sim.service_ms, last.sim.error_rate), (100, 0.5));
    assert_eq!(br.deadline_ms, sc.request_timeout_ms);
    assert_eq!(
        br.options,
        BureauOptions {
            ..b.options(sc.seed)
        }
    );
    // The mock serves no /metrics: said once, the run goes on.
    assert_eq!(
        r.warnings.iter().filter(|w| w.contains("/metrics")).count(),
        1,
        "{:?}",
        r.warnings
    );

    // Drawdowns are accounted per second: every one the mock answered, by outcome.
    let answered = state.lock().unwrap().drawdowns;
    let count: u64 = r.seconds.iter().map(|s| s.drawdowns.count).sum();
    assert_eq!(count, answered);
    let by_outcome: u64 = r
        .seconds
        .iter()
        .map(|s| {
            let d = &s.drawdowns;
            d.approved + d.review + d.rejected + d.refused
        })
        .sum();
    assert_eq!(by_outcome, count);
    let approved: u64 = r.seconds.iter().map(|s| s.drawdowns.approved).sum();
    assert_eq!(approved, r.seconds.iter().map(|s| s.approved).sum::<u64>());

    // The report tells the bureau's story per phase.
    let md = summary_markdown(&r);
    assert!(md.contains("**Credit bureau**"), "{md}");
    assert!(md.contains("At 1.5 s: service 100 ms."), "{md}");
    assert!(md.contains("| calm | 20 |"), "{md}");
    assert!(md.contains("| peak | 100 |"), "{md}");
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bureau-run");
    let _ = std::fs::remove_dir_all(&dir);
    let w = write_report(&r, &dir).unwrap();
    let html = std::fs::read_to_string(&w.html).unwrap();
    assert!(html.contains("id=\"chart-bureau\""));
    assert!(html.contains("bureau service time"));
    // The results file keeps it.
    let json = dir.join("results.json");
    r.write(&json).unwrap();
    let back = loadtest::results::Results::read(&json).unwrap();
    assert_eq!(back.bureau, r.bureau);
    sim.shutdown().await;
}
