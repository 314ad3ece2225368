//! The bureau simulator behind the real in-process gateway: a short slowdown, guarded and
//! unguarded. Timings are lower bounds only (the machine is shared); the guarded run is
//! judged by what the gateway counted and answered, not by how fast.
#![allow(clippy::unwrap_used)]

use loadtest::bureau::start;
use loadtest::engine::{BureauHandle, RunOptions, run};
use loadtest::report::bureau::phase_spans;
use loadtest::results::Results;
use loadtest::scenario::Scenario;
use loadtest::target::{EmbeddedOptions, dotted_lines, parse_setting, set_dotted, start_embedded};

const KEY: &str = "test-api-key-000001";
const ADMIN: &str = "test-admin-token-000001";

const SCENARIO: &str = r#"
name = "bureau-mini"
seed = 5
connections = 64
request_timeout_ms = 10000

[population]
users = 500

[[population.group]]
name = "good"
profile = "good"
share = 1.0

[journey]
think_ms = 100
amount_min_fen = 50000
amount_max_fen = 200000
deadline_ms = 800

[[phase]]
name = "before"
duration_s = 2
rate = { shape = "constant", rate = 10 }
force_window = "off"

[[phase]]
name = "slowdown"
duration_s = 3
rate = { shape = "constant", rate = 10 }

[bureau]
slots = 2
service_ms = 5

[[bureau.change]]
at_s = 2
service_ms = 500

[gateway.bureau]
cache_ttl_ms = 0
breaker = { min_calls = 5, window_ms = 2000, open_ms = 60000 }
"#;

async fn run_with(settings: &[&str]) -> Results {
    let sc = Scenario::from_toml("bureau-mini", SCENARIO).unwrap();
    let sim = start(&sc.bureau.as_ref().unwrap().options(sc.seed))
        .await
        .unwrap();
    let mut overrides = sc.gateway.clone().unwrap();
    set_dotted(&mut overrides, "bureau.url", sim.base_url().into()).unwrap();
    for s in settings {
        let (k, v) = parse_setting(s).unwrap();
        set_dotted(&mut overrides, &k, v).unwrap();
    }
    let g = start_embedded(&EmbeddedOptions {
        config_path: None,
        api_key: KEY.into(),
        admin_token: ADMIN.into(),
        overrides: overrides.clone(),
    })
    .await
    .unwrap();
    let opts = RunOptions {
        target: g.target.clone(),
        target_label: "embedded".into(),
        api_key: KEY.into(),
        admin_token: ADMIN.into(),
        scale: 1.0,
        started_at: "2026-11-28T00:00:00Z".into(),
        run_nonce: 3,
        progress: false,
        bureau: Some(BureauHandle {
            bureau: sim.bureau.clone(),
            gateway_overrides: dotted_lines(&overrides).join("\n"),
        }),
        faults: Vec::new(),
    };
    let r = run(&sc, &opts).await.unwrap();
    g.shutdown().await;
    sim.shutdown().await;
    r
}

fn sum(m: &std::collections::BTreeMap<String, f64>) -> f64 {
    m.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guarded_the_gateway_falls_back_and_counts_it_by_kind() {
    let r = run_with(&[]).await;
    let spans = phase_spans(&r);
    let (before, slow) = (&spans[0], &spans[1]);
    // Before the slowdown the gateway called the simulator and got answers.
    assert!(before.drawdowns > 0);
    assert!(
        before.calls.get("ok").copied().unwrap_or(0.0) > 0.0,
        "{before:?}"
    );
    let sim = &r.bureau.as_ref().unwrap().samples.last().unwrap().sim;
    assert!(sim.served > 0, "{sim:?}");
    // During it, calls time out at their budget and the breaker opens: fallbacks, counted
    // by kind, and drawdowns sent to review rather than approved without the check.
    assert!(sum(&slow.fallbacks) > 0.0, "{slow:?}");
    assert!(
        slow.fallbacks.keys().any(|k| k.ends_with("/timeout")),
        "{slow:?}"
    );
    assert!(
        slow.fallbacks.keys().any(|k| k.ends_with("/breaker_open")),
        "{slow:?}"
    );
    assert!(
        slow.outcomes[1] > 0.0,
        "some drawdowns went to review: {slow:?}"
    );
    let codes: u64 = r
        .seconds
        .iter()
        .filter_map(|s| s.codes.get("BUREAU_UNAVAILABLE_REVIEW"))
        .sum();
    assert!(codes > 0, "the review names its code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unguarded_drawdown_latency_follows_the_bureau_up() {
    let r = run_with(&["bureau.guard=false"]).await;
    let spans = phase_spans(&r);
    let slow = &spans[1];
    assert!(slow.fallbacks.is_empty(), "{slow:?}");
    // 500 ms per call, two slots, about twenty calls a second: every drawdown waits at least
    // one service time, most far longer.
    assert!(slow.p50 >= 500.0, "{slow:?}");
    assert!(slow.within_deadline < 0.5, "{slow:?}");
}
