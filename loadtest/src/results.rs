//! The results file: one JSON document with a schema version, everything the report needs.
//!
//! Histograms are stored as HdrHistogram V2 (deflate) blobs in base64, so the per-second
//! histograms of several generator processes can be merged into one report later
//! ([`decode_histogram`] then `Histogram::add`).
//!
//! # Layout
//! - [`SCHEMA_VERSION`]: bumped on any change a reader of an older file would misread.
//! - [`Results`]: a whole run.
//! - [`BureauResult`]: the bureau simulator's part of a run.
//! - [`FaultEvent`]: one command of a fault schedule as it ran (`--fault`).
//! - [`DrawdownSecond`]: the drawdown attempts whose intended send time fell in one second (unlike …
//! - [`PrioritySecond`]: the requests of one admission priority completed in one second.
//! - [`ScenarioInfo`]: the scenario as run.
//! - [`PhaseInfo`]: one phase as run.
//! - [`WindowSpan`]: a span with a forced peak window.
//! - [`Percentiles`]: latency percentiles in milliseconds.
//! - [`LatencySummary`]: whole-run latency.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::bureau::{BureauChange, BureauOptions, BureauSample};
use crate::classify::Cause;

/// Bumped on any change a reader of an older file would misread.
pub const SCHEMA_VERSION: u32 = 1;

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// What ran.
    pub scenario: ScenarioInfo,
    /// The gateway it ran against (`embedded` or a URL).
    pub target: String,
    /// RFC 3339 start time.
    pub started_at: String,
    /// The phases as run (after `--scale`).
    pub phases: Vec<PhaseInfo>,
    /// Spans of the run with a forced peak window (shaded in charts).
    pub windows: Vec<WindowSpan>,
    /// One entry per second of the run.
    pub seconds: Vec<SecondResult>,
    /// Whole-run latency from intended send time (coordinated omission corrected).
    pub latency_ms: LatencySummary,
    /// Whole-run latency from actual send time (not corrected; for comparison only).
    pub service_time_ms: LatencySummary,
    /// Whether the generator kept up.
    pub generator: GeneratorHealth,
    /// The measures per population group.
    pub populations: Vec<PopulationResult>,
    /// The headline measures over all groups.
    pub totals: Totals,
    /// Gates evaluated on this run.
    #[serde(default)]
    pub gates: Vec<GateOutcome>,
    /// Things that went wrong without stopping the run (a failed admin action, ...).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The credit-bureau simulator of the run, when the scenario started one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bureau: Option<BureauResult>,
    /// The fault schedule as it ran (`--fault`), with each fault's recovery time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultEvent>,
}

/// One command as it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultEvent {
    /// The command line.
    pub command: String,
    /// Seconds from the run start when it was started.
    pub at_s: f64,
    /// Seconds it ran.
    pub took_s: f64,
    /// Its exit status; `None` when it could not start, died of a signal or was still
    /// running at the end of the run.
    pub exit_code: Option<i32>,
    /// Seconds from `at_s` until goodput was back to 95 % of the 5 s before it (see
    /// `faults::recovery_s`); `None` when it never was within the run.
    #[serde(default)]
    pub recovery_s: Option<f64>,
}

impl FaultEvent {
    /// A short name: the command's last words that are not paths (`fault kill-primary 5`
    /// gives `kill-primary 5`).
    pub fn label(&self) -> String {
        let words: Vec<&str> = self.command.split_whitespace().collect();
        match words.iter().position(|w| *w == "fault") {
            Some(i) if i + 1 < words.len() => words[i + 1..].join(" "),
            _ => self.command.clone(),
        }
    }
}

/// The bureau simulator's part of a run: its settings, the changes made to it, and a sample
/// every second of its counters and of the gateway's `gateway_bureau_*` metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BureauResult {
    /// The simulator's options at the start.
    pub options: BureauOptions,
    /// The changes made while the run went (after `--scale`).
    pub changes: Vec<BureauChange>,
    /// The drawdowns' `X-Request-Deadline-Ms`.
    pub deadline_ms: u64,
    /// The gateway settings merged over its configuration (TOML), bureau URL included.
    pub gateway_overrides: String,
    /// Samples, at the run start, every second after it, and once after the drain.
    pub samples: Vec<BureauSample>,
}

/// The drawdown attempts whose intended send time fell in one second (unlike the other
/// per-second latency, which is by completion time): a slow answer stays with the second that
/// asked for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DrawdownSecond {
    /// Drawdown attempts (answered, timed out or failed to connect).
    pub count: u64,
    /// Decisions `approved`.
    pub approved: u64,
    /// Decisions `review`.
    pub review: u64,
    /// Decisions `rejected`.
    pub rejected: u64,
    /// No decision: a transient refusal (429, 503), another error, a timeout.
    pub refused: u64,
    /// Latency from intended send time, ms.
    pub latency_ms: Percentiles,
    /// Its histogram (microseconds), V2 deflate, base64 (empty when `count` is 0).
    pub histogram: String,
    /// Unlike the fields above, this and the two below count by COMPLETION second, like
    /// [`SecondResult::priorities`] (the step table of `report::steps`): decisions answered
    /// within the drawdown's deadline (from the intended send time), the bureau-fallback
    /// review (`BUREAU_UNAVAILABLE_REVIEW`) left out: the goodput.
    #[serde(default)]
    pub in_deadline: u64,
    /// Attempts admitted by the gateway (everything but a 503 `CAPACITY_SHED`; a timeout
    /// counts at the time the client gave up), by completion second.
    #[serde(default)]
    pub admitted: u64,
    /// Their histogram (microseconds), V2 deflate, base64 (empty when `admitted` is 0).
    #[serde(default)]
    pub admitted_histogram: String,
    /// The same attempts' latency from their actual send instead of their intended one
    /// (what delayed the send left out: the journey's quote answered after the think time,
    /// or the generator's own lateness), in the same form.
    #[serde(default)]
    pub admitted_sent_histogram: String,
}

/// The requests of one admission priority completed in one second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrioritySecond {
    /// First attempts.
    pub first: u64,
    /// All attempts (first and retries).
    pub sent: u64,
    /// Shed by admission (503 `CAPACITY_SHED`).
    pub shed: u64,
    /// Answered (a quote or a decision other than the bureau-fallback review) within the
    /// deadline: with `first`, the success rate per intent.
    pub ok: u64,
}

/// The scenario as run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioInfo {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// `--scale`.
    pub scale: f64,
    /// Total length in seconds.
    pub duration_s: f64,
    /// Random seed.
    pub seed: u64,
    /// Client connections.
    pub connections: usize,
    /// `--capacity`: the journeys per second the rates are multiples of (measured with
    /// `steady`); goodput is reported as a share of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<f64>,
}

/// One phase as run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseInfo {
    /// Name.
    pub name: String,
    /// Start, seconds from the run start.
    pub start_s: f64,
    /// End, seconds from the run start.
    pub end_s: f64,
    /// Journeys the shape implies.
    pub expected_journeys: f64,
    /// Journeys started.
    pub journeys: u64,
    /// The window action at its start (`"off"` for a release).
    pub force_window: Option<String>,
}

/// A span with a forced peak window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSpan {
    /// Window name.
    pub name: String,
    /// Start, seconds from the run start.
    pub start_s: f64,
    /// End, seconds from the run start.
    pub end_s: f64,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
}

impl Percentiles {
    /// From a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Self {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
        }
    }
}

/// Whole-run latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Recorded requests.
    pub count: u64,
    /// Mean, ms.
    pub mean: f64,
    /// Percentiles, ms.
    #[serde(flatten)]
    pub percentiles: Percentiles,
    /// Maximum, ms.
    pub max: f64,
    /// The histogram (microseconds), V2 deflate, base64.
    pub histogram: String,
}

impl LatencySummary {
    /// From a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Result<Self, Error> {
        Ok(Self {
            count: h.len(),
            mean: h.mean() / 1000.0,
            percentiles: Percentiles::of(h),
            max: h.max() as f64 / 1000.0,
            histogram: encode_histogram(h)?,
        })
    }
}

/// One second of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecondResult {
    /// Seconds from the run start.
    pub t: u64,
    /// Requests whose intended send time fell in this second (first tries and retries).
    pub offered: u64,
    /// Requests actually sent in this second.
    pub sent: u64,
    /// Answers completed in this second, by HTTP status (`timeout`, `connection` otherwise).
    pub completed: BTreeMap<String, u64>,
    /// Answers by reason or error code (the first reason of a rejection).
    pub codes: BTreeMap<String, u64>,
    /// Refusals by true cause.
    pub refusals: BTreeMap<Cause, u64>,
    /// Successful answers (quotes, approvals, reviews).
    pub goodput: u64,
    /// Approved drawdowns.
    pub approved: u64,
    /// Latency of the answers completed in this second, ms.
    pub latency_ms: Percentiles,
    /// Their histogram (microseconds), V2 deflate, base64.
    pub histogram: String,
    /// The drawdown attempts intended in this second.
    #[serde(default)]
    pub drawdowns: DrawdownSecond,
    /// The same answers by the admission priority they were sent with (`X-Priority`, else
    /// the gateway's default: drawdowns `critical`, quotes `default`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub priorities: BTreeMap<String, PrioritySecond>,
}

/// Whether the generator kept up with its schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratorHealth {
    /// Journeys the schedule started.
    pub journeys: u64,
    /// Journeys still running when the drain deadline passed.
    pub journeys_unfinished: u64,
    /// Requests scheduled (first tries and retries).
    pub requests_scheduled: u64,
    /// Requests sent.
    pub requests_sent: u64,
    /// Requests scheduled but never sent.
    pub missed_sends: u64,
    /// Requests sent later than `late_threshold_ms` after their intended time.
    pub late_sends: u64,
    /// The lateness that counts as late.
    pub late_threshold_ms: f64,
    /// How late the generator's timers fired (its own lag, not the gateway's).
    pub timer_lag_ms: Percentiles,
    /// The largest timer lag.
    pub timer_lag_max_ms: f64,
    /// Intended time to actual send (includes waiting for a free connection).
    pub send_delay_ms: Percentiles,
    /// The largest send delay.
    pub send_delay_max_ms: f64,
    /// Worker connections.
    pub connections: usize,
    /// TCP connections opened (re-opens after errors included).
    pub connections_opened: u64,
    /// True when nothing was missed and the timers' p99 lag stayed under the threshold.
    pub kept_up: bool,
}

/// The measures for one population group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PopulationResult {
    /// Group name.
    pub name: String,
    /// Ground truth.
    pub profile: String,
    /// Client behaviour.
    pub behaviour: String,
    /// Users in the group.
    pub users: usize,
    /// Journeys (user intents).
    pub intents: u64,
    /// Journeys that ended approved.
    pub approved: u64,
    /// Journeys that ended in review.
    pub review: u64,
    /// Journeys that ended refused.
    pub refused: u64,
    /// Journeys cut by the drain deadline.
    pub unfinished: u64,
    /// `refused / intents`.
    pub refusal_rate: f64,
    /// Refused journeys by the cause of their last refusal.
    pub refused_by_cause: BTreeMap<Cause, u64>,
    /// `refused_by_cause / intents`.
    pub refusal_rate_by_cause: BTreeMap<Cause, f64>,
    /// `approved / intents`.
    pub approval_rate: f64,
    /// Requests sent (first tries and retries, both steps).
    pub requests_sent: u64,
    /// `requests_sent / intents` (2.0 = no retries).
    pub retry_amplification: f64,
    /// Drawdowns attempted.
    pub drawdowns: u64,
    /// Drawdowns whose preceding quote said the amount was drawable now.
    pub promised: u64,
    /// Of those, refused (any cause).
    pub promised_refused: u64,
    /// Of those, by cause.
    pub promised_refused_by_cause: BTreeMap<Cause, u64>,
    /// `promised_refused / promised`: how often the quote did not tell the truth.
    pub quota_untruthful_rate: f64,
    /// Distinct users with at least one journey refused (0 in results written before it was
    /// counted).
    #[serde(default)]
    pub refused_users: u64,
    /// Distinct users with a journey refused for each cause (a user refused for two causes
    /// is in both).
    #[serde(default)]
    pub refused_users_by_cause: BTreeMap<Cause, u64>,
}

/// Headline measures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Refused journeys of users who should be approved, over their intents.
    pub good_refusal_rate: f64,
    /// The same, split by cause.
    pub good_refusal_rate_by_cause: BTreeMap<Cause, f64>,
    /// Approved journeys of risky users over their intents.
    pub risky_approval_rate: f64,
    /// Requests sent per intent, all groups.
    pub retry_amplification: f64,
    /// Promised-then-refused over promised drawdowns, all groups.
    pub quota_untruthful_rate: f64,
    /// Journeys of users who should be approved.
    pub good_intents: u64,
    /// Their refused journeys, by cause.
    #[serde(default)]
    pub good_refused_by_cause: BTreeMap<Cause, u64>,
    /// Users who should be approved.
    #[serde(default)]
    pub good_users: u64,
    /// Of them, distinct users with at least one journey refused.
    #[serde(default)]
    pub good_refused_users: u64,
    /// The same, by cause (a user refused for two causes is in both).
    #[serde(default)]
    pub good_refused_users_by_cause: BTreeMap<Cause, u64>,
}

/// One CI gate and whether the run passed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateOutcome {
    /// Which gate.
    pub name: String,
    /// The limit.
    pub limit: f64,
    /// The measured value.
    pub value: f64,
    /// Whether the value is within the limit.
    pub passed: bool,
}

/// Serialises a histogram as V2 deflate, base64.
pub fn encode_histogram(h: &Histogram<u64>) -> Result<String, Error> {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .map_err(|e| Error::Serialise(format!("{e:?}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}

/// Reads a histogram written by [`encode_histogram`].
pub fn decode_histogram(s: &str) -> Result<Histogram<u64>, Error> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| Error::Serialise(e.to_string()))?;
    Deserializer::new()
        .deserialize(&mut Cursor::new(bytes))
        .map_err(|e| Error::Serialise(format!("{e:?}")))
}

impl Results {
    /// Reads a results file, refusing a schema it does not know.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let v: serde_json::Value =
            serde_json::from_slice(&text).map_err(|source| Error::Results {
                path: path.into(),
                source,
            })?;
        let version = v.get("schema_version").and_then(serde_json::Value::as_u64);
        if version != Some(u64::from(SCHEMA_VERSION)) {
            return Err(Error::Serialise(format!(
                "{}: schema_version {version:?}, this loadtest reads {SCHEMA_VERSION}",
                path.display()
            )));
        }
        serde_json::from_value(v).map_err(|source| Error::Results {
            path: path.into(),
            source,
        })
    }

    /// Writes the results as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| Error::Serialise(e.to_string()))?;
        std::fs::write(path, text).map_err(|e| Error::io(path, e))
    }
}
