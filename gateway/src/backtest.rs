//! Backtests: the staged shadow candidate ([`crate::shadow`]) replayed over stored decisions,
//! without traffic.
//!
//! Each committed drawdown's inputs are kept in a bounded record beside it
//! ([`crate::store::inputs`]). A backtest selects the last N decisions or a time range,
//! decides each again against the candidate on exactly its stored inputs (state, request,
//! bureau answer or its absence, profile and window end), and counts the outcome changes
//! against the live outcome stored with them, in the live report's shape
//! ([`crate::shadow::Report`]): by transition, reason, grade and channel, in requests and
//! distinct users, with samples. A selected decision whose inputs are not held (kept before
//! the record existed, pushed out of the bound, or a lost write) is counted as skipped, never
//! guessed.
//!
//! # Cost
//! One engine evaluation per replayed decision, and a distinct-user sketch insert per change
//! (`BENCHMARKS.md`, "backtest").

use crate::shadow::{
    Explanation, Header, Report, Sample, Tally, Transition, channel_name, stricter_reason,
};
use crate::store::{ReasonRecord, Selected};
use risk_core::{Reason, Thresholds, evaluate};
use serde::Serialize;

/// A backtest's report: the live report's shape, and what was replayed.
#[derive(Debug, Clone, Serialize)]
pub struct BacktestReport {
    /// The counts, as `GET /admin/shadow` reports them (`drawdowns_evaluated` are the
    /// decisions replayed; a backtest replays no quotes).
    #[serde(flatten)]
    pub report: Report,
    /// Decisions selected (committed, still held by the store).
    pub selected: u64,
    /// Replayed: selected with their inputs held.
    pub replayed: u64,
    /// Skipped: selected without inputs (never guessed).
    pub skipped: u64,
    /// Why each skipped decision was skipped; the three add up to `skipped`.
    pub skipped_by_cause: Skipped,
}

/// Why selected decisions were skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Older than every input the record still holds: pushed out of its bound
    /// (`[risk] decision_inputs_kept`), or decided before inputs were kept.
    pub pushed_out: u64,
    /// Newer than that, yet without inputs: the write was lost or had not arrived yet (it
    /// follows the commit, unawaited), or `decision_inputs_kept` was 0 when it was decided.
    pub not_recorded: u64,
    /// Inputs held but not a request the engine takes (an amount out of range): never
    /// replayed.
    pub unreadable: u64,
}

/// Replays `selected` against `candidate`. `render` writes a candidate's reason as the API
/// answers one (only for the samples). A sample's live reasons are its stored principal
/// reason's catalogue entry; the caller may replace them with the stored decision's
/// ([`BacktestReport::samples_mut`]).
pub fn run(
    candidate: &Thresholds,
    header: Header,
    selected: &Selected,
    render: impl Fn(&Reason) -> ReasonRecord,
) -> BacktestReport {
    let mut tally = Tally::default();
    let mut replayed = 0u64;
    let mut unreadable = 0u64;
    for inputs in &selected.inputs {
        let Some(request) = inputs.request() else {
            unreadable += 1;
            continue;
        };
        replayed += 1;
        let ctx = inputs.context();
        let d = evaluate(candidate, &ctx, &inputs.state, &request);
        let Some(t) = Transition::of(inputs.outcome, d.outcome) else {
            continue;
        };
        let reason = stricter_reason(t, inputs.reason, d.reasons.first().map(|r| r.code));
        let grade = inputs.state.grade;
        let channel = channel_name(inputs.channel);
        tally.change(t, reason, grade, channel, &inputs.user_id, || Sample {
            decision_id: inputs.decision_id.clone(),
            user_id: inputs.user_id.clone(),
            risk_grade: grade,
            channel,
            amount_fen: inputs.amount_fen,
            live: Explanation {
                outcome: inputs.outcome,
                reasons: inputs.reason.map(catalogued).into_iter().collect(),
            },
            candidate: Explanation {
                outcome: d.outcome,
                reasons: d.reasons.iter().map(&render).collect(),
            },
        });
    }
    let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
    let selected_n = n(selected.decisions);
    let pushed_out = n(selected.pushed_out);
    let without = selected_n.saturating_sub(n(selected.inputs.len()));
    BacktestReport {
        report: tally.report(header, replayed, 0),
        selected: selected_n,
        replayed,
        skipped: selected_n.saturating_sub(replayed),
        skipped_by_cause: Skipped {
            pushed_out,
            not_recorded: without.saturating_sub(pushed_out),
            unreadable,
        },
    }
}

impl BacktestReport {
    /// The samples, to complete with the stored decisions' own explanations.
    pub fn samples_mut(&mut self) -> &mut [Sample] {
        &mut self.report.samples
    }
}

/// A reason known only by its code: its catalogue entry, no figures.
fn catalogued(code: risk_core::ReasonCode) -> ReasonRecord {
    let e = code.entry();
    ReasonRecord {
        code,
        category: e.category,
        message: e.message.to_owned(),
        message_zh: e.message_zh.to_owned(),
        guidance: e.guidance.to_owned(),
        guidance_zh: e.guidance_zh.to_owned(),
        appealable: e.appealable,
        limit: None,
        actual: None,
        unit: None,
        suggested_amount_fen: None,
        retry_at: None,
    }
}
