//! loadtest: the open-loop surge generator and report writer for loan-gateway.
//!
//! It reproduces a holiday surge against the gateway, sorts every refusal by its true cause
//! (using the reason-code families of `risk_core`), judges the answers against a population
//! whose ground truth the gateway never sees, and writes results JSON, an HTML report with
//! inline SVG charts and a Markdown summary.
//!
//! The generator is open loop: every request has an intended send time taken from the
//! scenario's rate shape, and latency counts from that time (coordinated omission corrected,
//! as wrk2 does). Journeys are partly open: they arrive as an open process; inside a journey
//! the next step's intended time follows the previous step's intended time plus think time.
//!
//! # Layout
//! - [`scenario`]: TOML scenarios, rate shapes and their arithmetic, `--scale`.
//! - [`population`]: ground-truth profiles, client behaviours, seeded credit lines.
//! - [`classify`]: answers to true causes ([`classify::Cause`]).
//! - [`client`]: the generator's own HTTP/1.1 connections (one per worker).
//! - [`engine`]: the open-loop run (dispatcher, journeys, workers, retries, window actions).
//! - [`recorder`]: per-second buckets, HDR histograms, generator health, population tallies.
//! - [`results`]: the results JSON schema (versioned, mergeable histograms).
//! - [`report`]: HTML (plotters SVG) and Markdown, single and side by side.
//! - [`gate`]: CI gates and their exit code.
//! - [`rehearse`]: a peak rehearsal: live and candidate policy bundles under the same traffic.
//! - [`target`]: remote or in-process gateway, seeding, admin actions.
//! - [`blast`]: raw open-loop mode and the trivial server, to measure the generator.
//! - [`bureau`]: the credit-bureau simulator (finite slots, FIFO queue, deterministic answers).
//! - [`faults`]: a schedule of fault commands run during a run, and recovery times.
//! - [`ledger`]: what clients were told of each drawdown, for the auditor.
//! - [`audit`]: `loadtest audit`, reconciling the ledger with the store.
//! - [`cli`]: the command line.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), loadtest::Error> {
//! use loadtest::{client::TargetAddr, engine::{RunOptions, run}, scenario::Scenario};
//! let sc = Scenario::load("steady")?.scaled(0.5)?;
//! let opts = RunOptions {
//!     target: TargetAddr::resolve("http://127.0.0.1:8080").await?,
//!     target_label: "http://127.0.0.1:8080".into(),
//!     api_key: "key".into(),
//!     admin_token: "admin".into(),
//!     scale: 0.5,
//!     started_at: "2026-11-11T00:00:00Z".into(),
//!     run_nonce: 1,
//!     progress: false,
//!     bureau: None,
//!     faults: Vec::new(),
//! };
//! let results = run(&sc, &opts).await?;
//! loadtest::report::write_report(&results, std::path::Path::new("out"))?;
//! # Ok(()) }
//! ```

pub mod audit;
pub mod blast;
pub mod bureau;
pub mod classify;
pub mod cli;
pub mod client;
pub mod engine;
mod error;
pub mod faults;
pub mod gate;
pub mod ledger;
pub mod population;
mod progress;
pub mod recorder;
pub mod rehearse;
pub mod report;
pub mod results;
pub mod scenario;
pub mod target;

pub use error::Error;
