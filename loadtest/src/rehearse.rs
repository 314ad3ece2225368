//! Peak-policy rehearsal: a scenario run against a candidate policy bundle (peak windows,
//! limits, thresholds) and against the live one, and what the candidate changes for good
//! users, by cause, before the window opens for real.
//!
//! # Honesty
//! Both sides get the same traffic: the scenario is replayed, with the same seed, against two
//! fresh in-process gateways, one after the other (never at once: they would compete for the
//! same CPU). The seed fixes everything the generator chooses (arrivals, users, amounts,
//! think times, retries), so each side is offered the same journeys of the same users, and
//! each answers them from an empty store seeded with the same credit lines. What differs is
//! the policy bundle, and what each gateway's own timing makes of the same offered load (that
//! is part of what a policy does: a tighter limit sheds earlier). The report shows the
//! journeys each side was offered and whether the generator kept up on each: when it did not,
//! the two sides were not offered exactly the same load, and the report says so.
//!
//! A shadow candidate ([`gateway::shadow`]) could not stand in for this: it evaluates the
//! thresholds only, never the windows and rate limits, and never what a refusal does to the
//! traffic after it (retries, a user who comes back).
//!
//! # The bundle
//! A TOML file of the gateway's `[policy]` (zone, normal limits, `[[policy.windows]]`) and
//! `[risk]` (`thresholds_file`, relative to the bundle's folder) keys, merged over the live
//! configuration (tables key by key; an array such as `policy.windows` replaces the live one
//! whole). Any other key is refused: a rehearsal compares policies, not deployments.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::engine::{BureauHandle, RunOptions, run};
use crate::results::Results;
use crate::scenario::Scenario;
use crate::target::{
    EmbeddedOptions, dotted_lines, merge_toml, scenario_overrides, start_embedded,
};

/// The top-level keys a policy bundle may set.
const BUNDLE_KEYS: [&str; 2] = ["policy", "risk"];

/// A candidate policy bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its settings, `risk.thresholds_file` made absolute.
    pub table: toml::Table,
}

impl Bundle {
    /// Reads a bundle: only `[policy]` and `[risk]`; a relative `risk.thresholds_file` is
    /// relative to the bundle's folder.
    pub fn load(path: &Path) -> Result<Bundle, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut table: toml::Table = text
            .parse()
            .map_err(|e| Error::Embedded(format!("bundle {}: {e}", path.display())))?;
        if let Some(k) = table.keys().find(|k| !BUNDLE_KEYS.contains(&k.as_str())) {
            return Err(Error::Embedded(format!(
                "bundle {}: `{k}` is not a policy setting (a bundle sets [policy] and [risk] only)",
                path.display()
            )));
        }
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        if let Some(toml::Value::Table(risk)) = table.get_mut("risk")
            && let Some(toml::Value::String(file)) = risk.get_mut("thresholds_file")
            && Path::new(file.as_str()).is_relative()
        {
            *file = dir.join(file.as_str()).display().to_string();
        }
        Ok(Bundle {
            path: path.to_path_buf(),
            table,
        })
    }
}

/// What a rehearsal needs.
#[derive(Debug, Clone)]
pub struct RehearseOptions {
    /// The scenario (already scaled).
    pub scenario: Scenario,
    /// The `--scale` applied to it.
    pub scale: f64,
    /// The live configuration (default: the gateway's defaults).
    pub gateway_config: Option<PathBuf>,
    /// The candidate bundle, merged over the live configuration.
    pub candidate: Bundle,
    /// The caller API key the in-process gateways accept.
    pub api_key: String,
    /// Their admin token.
    pub admin_token: String,
    /// Draw the progress line.
    pub progress: bool,
}

/// Both runs of a rehearsal.
#[derive(Debug, Clone)]
pub struct Rehearsal {
    /// The live policy's run.
    pub live: Results,
    /// The candidate's.
    pub candidate: Results,
    /// The candidate bundle's path, for the report.
    pub bundle: PathBuf,
}

/// Runs the scenario against the live bundle, then the same traffic against the candidate.
pub async fn rehearse(opts: &RehearseOptions) -> Result<Rehearsal, Error> {
    let started = jiff::Timestamp::now();
    // One nonce for both: the same idempotency keys, byte for byte the same requests.
    let nonce = u64::try_from(started.as_millisecond()).unwrap_or(0);
    let live = run_side(opts, None, nonce).await?;
    let candidate = run_side(opts, Some(&opts.candidate), nonce).await?;
    Ok(Rehearsal {
        live,
        candidate,
        bundle: opts.candidate.path.clone(),
    })
}

/// One side: a fresh in-process gateway (and bureau simulator, when the scenario has one).
async fn run_side(
    opts: &RehearseOptions,
    bundle: Option<&Bundle>,
    nonce: u64,
) -> Result<Results, Error> {
    let sc = &opts.scenario;
    let sim = match &sc.bureau {
        Some(b) => Some(crate::bureau::start(&b.options(sc.seed)).await?),
        None => None,
    };
    let mut overrides =
        scenario_overrides(sc, sim.as_ref().map(crate::bureau::RunningBureau::base_url))?;
    if let Some(b) = bundle {
        merge_toml(&mut overrides, &b.table);
    }
    let e = start_embedded(&EmbeddedOptions {
        config_path: opts.gateway_config.clone(),
        api_key: opts.api_key.clone(),
        admin_token: opts.admin_token.clone(),
        overrides: overrides.clone(),
    })
    .await?;
    let side = match bundle {
        Some(b) => format!("candidate {}", b.path.display()),
        None => "live".to_owned(),
    };
    let run_opts = RunOptions {
        target: e.target.clone(),
        target_label: format!("embedded ({side})"),
        api_key: opts.api_key.clone(),
        admin_token: opts.admin_token.clone(),
        scale: opts.scale,
        started_at: jiff::Timestamp::now().to_string(),
        run_nonce: nonce,
        progress: opts.progress,
        bureau: sim.as_ref().map(|s| BureauHandle {
            bureau: s.bureau.clone(),
            gateway_overrides: dotted_lines(&overrides).join("\n"),
        }),
        faults: Vec::new(),
    };
    eprintln!(
        "rehearsal: {} ({:.0} s) against the {side} policy",
        sc.name,
        sc.duration().as_secs_f64()
    );
    let results = run(sc, &run_opts).await;
    e.shutdown().await;
    if let Some(sim) = sim {
        sim.shutdown().await;
    }
    results
}
