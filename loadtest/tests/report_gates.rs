//! Reports from a fixed results file, and the gates' exit codes.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use loadtest::gate::{GATE_EXIT_CODE, Gates, all_passed};
use loadtest::results::Results;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/results.json");

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn loadtest(args: &[&str], out: &Path) -> Option<i32> {
    Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
        .status
        .code()
}

#[test]
fn the_report_holds_every_chart_and_the_population_table() {
    let r = Results::read(Path::new(FIXTURE)).unwrap();
    let html = loadtest::report::report_html(&r).unwrap();
    for id in [
        "chart-offered-goodput",
        "chart-refusals-by-cause",
        "chart-latency",
        "class=\"populations\"",
    ] {
        assert!(html.contains(id), "{id}");
    }
    assert_eq!(html.matches("<svg").count(), 3);
    for caption in [
        "Offered load vs goodput",
        "Refusals by true cause",
        "Latency percentiles",
    ] {
        assert!(html.contains(caption), "{caption}");
    }
    // Every group and every cause that refused someone is on the page.
    for p in &r.populations {
        assert!(html.contains(&format!("<td>{}</td>", p.name)), "{}", p.name);
    }
    assert!(html.contains("peak_window") && html.contains("anomaly"));
    // Self-contained: nothing is fetched when the page is opened.
    // (The SVG namespace URI is a name, not a fetch.)
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href=\"http"));
    let md = loadtest::report::summary_markdown(&r);
    assert!(md.contains("| good-user refusal rate |"));
    assert!(md.contains("| frequent_login |"));
}

#[test]
fn compare_writes_both_runs_side_by_side() {
    let out = tmp("compare");
    assert_eq!(loadtest(&["compare", FIXTURE, FIXTURE], &out), Some(0));
    let html = std::fs::read_to_string(out.join("compare.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 6);
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(md.contains("**A per population**") && md.contains("**B per population**"));
    assert!(md.contains("(+0.0 points)"));
}

#[test]
fn gates_set_the_exit_code() {
    let r = Results::read(Path::new(FIXTURE)).unwrap();
    let p99 = r.latency_ms.percentiles.p99;
    let good = r.totals.good_refusal_rate;
    assert!(p99 > 0.0 && good > 0.0);

    let pass = Gates {
        max_p99_ms: Some(p99 + 1.0),
        max_good_refusal_rate: Some(good + 0.01),
    };
    assert!(all_passed(&pass.evaluate(&r)));
    let fail = Gates {
        max_p99_ms: Some(p99 / 2.0),
        max_good_refusal_rate: None,
    };
    let outcome = fail.evaluate(&r);
    assert_eq!(outcome.len(), 1);
    assert!(!all_passed(&outcome));

    let out = tmp("gates");
    let ok = loadtest(
        &[
            "report",
            FIXTURE,
            "--max-p99-ms",
            "100000",
            "--max-good-refusal-rate",
            "1",
        ],
        &out,
    );
    assert_eq!(ok, Some(0));
    assert!(out.join("report.html").is_file() && out.join("summary.md").is_file());
    let p99_crossed = loadtest(&["report", FIXTURE, "--max-p99-ms", "0.001"], &out);
    assert_eq!(p99_crossed, Some(i32::from(GATE_EXIT_CODE)));
    let refusals_crossed = loadtest(
        &["report", FIXTURE, "--max-good-refusal-rate", "0.01"],
        &out,
    );
    assert_eq!(refusals_crossed, Some(i32::from(GATE_EXIT_CODE)));
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("max-good-refusal-rate") && md.contains("**FAIL**"));
    // A bad file is an error (1), not a gate failure.
    let missing = loadtest(&["report", "/nonexistent/results.json"], &out);
    assert_eq!(missing, Some(1));
}
