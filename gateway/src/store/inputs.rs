//! The inputs each drawdown decision was made from, kept beside the decision so that a
//! backtest ([`crate::backtest`]) can decide it again against a candidate.
//!
//! A committed drawdown's [`DecisionInputs`] (the user's state as evaluated, the request, the
//! bureau answer or its absence, the profile and window end, the thresholds version and the
//! live outcome) go to a bounded record of their own, never into the commit itself: the
//! commit's atomic step does not change, and a lost input record only means that decision is
//! skipped by a backtest, never guessed.
//!
//! The bound is the whole store's: the last `kept` decisions (`[risk] decision_inputs_kept`)
//! have their inputs, wherever their users live. (A bound per shard or slot, `kept / parts`
//! each, did not: decisions do not spread evenly over 1,024 slots, so the busier slots pushed
//! out inputs that a backtest over the last `kept` then skipped, 3 to 9 % of them.) The record
//! holds [`bound`]`(kept)`: `kept` and 1/64 more, because inputs arrive in commit order and
//! a backtest selects by id: a drawdown committed after one whose id is newer (concurrent
//! drawdowns, instances whose clocks differ) must not push out one of the last `kept`.
//!
//! - Memory store: one ring for the store; the oldest kept goes first.
//! - Redis store: one capped stream, `P:{din}:inputs` (`XADD … MAXLEN bound *`, exact
//!   trimming), queued after the commit on the commits' batch sender: it leaves with the next
//!   batch (alone when nothing else is queued), and no drawdown waits for it. On a cluster the
//!   stream is one key, on the node that owns `{din}`: one `XADD` there per committed
//!   drawdown, and all the record's memory.
//!
//! A selected decision without inputs is skipped, and the backtest says why
//! ([`Selected::pushed_out`]): older than every input the record still holds (pushed out of
//! the bound, or decided before inputs were kept), or not recorded although newer (the
//! write was lost or is still on its way, or `decision_inputs_kept` was 0 then).
//!
//! # Memory
//! A record costs its struct and strings in the memory store, and its JSON plus the stream's
//! per-entry overhead on Redis (measured: `BENCHMARKS.md`, "backtest"); `decision_inputs_kept`
//! bounds how many are kept.

use jiff::{Timestamp, ZonedDateTime};
use risk_core::{BureauReport, BureauSignal, Channel, Outcome, ReasonCode, UnavailableCause};
use risk_core::{Context, DrawdownRequest, Fen, UserState};
use serde::{Deserialize, Serialize};

/// The inputs one committed drawdown decision was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionInputs {
    /// The decision's id (names its slot and its time).
    pub decision_id: String,
    /// The user.
    pub user_id: String,
    /// The user's state as evaluated (the state the commit landed on).
    pub state: UserState,
    /// The amount asked for.
    pub amount_fen: u64,
    /// The channel.
    pub channel: Channel,
    /// The bureau's answer, or why there was none.
    pub bureau: BureauInput,
    /// The thresholds profile of the active policy.
    pub profile: String,
    /// When the active peak window ended, if one was active.
    pub window_ends_at: Option<ZonedDateTime>,
    /// The live thresholds version it was decided under.
    pub threshold_version: u64,
    /// The live outcome.
    pub outcome: Outcome,
    /// The live decision's principal reason, if any.
    pub reason: Option<ReasonCode>,
}

impl DecisionInputs {
    /// The request as the engine takes it; `None` for a stored amount the engine cannot take
    /// (not a validated amount: such a record is skipped).
    pub fn request(&self) -> Option<DrawdownRequest> {
        Some(DrawdownRequest {
            amount: Fen::new(self.amount_fen)?,
            channel: self.channel,
        })
    }

    /// The evaluation context the decision had.
    pub fn context(&self) -> Context<'_> {
        Context {
            profile: &self.profile,
            window_ends_at: self.window_ends_at.as_ref(),
            bureau: self.bureau.signal(),
        }
    }

    /// When the decision was made (its id's time, the gateway's clock), in unix ms.
    pub fn at_ms(&self) -> Option<u64> {
        decision_ms(&self.decision_id)
    }
}

/// The time a decision id was minted at (unix ms), if it is a decision id.
pub fn decision_ms(id: &str) -> Option<u64> {
    let ulid = id.strip_prefix(super::ids::DECISION_PREFIX)?;
    Some(ulid::Ulid::from_string(ulid).ok()?.timestamp_ms())
}

/// [`BureauSignal`] as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BureauInput {
    /// Not asked.
    NotConsulted,
    /// Answered for this request.
    Fresh(Report),
    /// An earlier answer stood in.
    Cached {
        /// The answer.
        #[serde(flatten)]
        report: Report,
        /// Its age in seconds.
        age_secs: u32,
    },
    /// No usable answer.
    Unavailable {
        /// Why.
        cause: Cause,
    },
}

/// [`BureauReport`] as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Score.
    pub score: u16,
    /// Overdue accounts elsewhere.
    pub overdue_accounts: u32,
    /// Days the most overdue of them is overdue.
    pub max_days_overdue: u32,
    /// Inquiries over 90 days.
    pub inquiries_90d: u32,
}

/// [`UnavailableCause`] as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// Timed out.
    Timeout,
    /// Failed.
    Error,
    /// Breaker open.
    BreakerOpen,
    /// Bulkhead full.
    BulkheadFull,
    /// No budget left.
    NoBudget,
}

impl From<BureauReport> for Report {
    fn from(r: BureauReport) -> Report {
        Report {
            score: r.score,
            overdue_accounts: r.overdue_accounts,
            max_days_overdue: r.max_days_overdue,
            inquiries_90d: r.inquiries_90d,
        }
    }
}

impl From<Report> for BureauReport {
    fn from(r: Report) -> BureauReport {
        BureauReport {
            score: r.score,
            overdue_accounts: r.overdue_accounts,
            max_days_overdue: r.max_days_overdue,
            inquiries_90d: r.inquiries_90d,
        }
    }
}

impl From<BureauSignal> for BureauInput {
    fn from(s: BureauSignal) -> BureauInput {
        match s {
            BureauSignal::NotConsulted => BureauInput::NotConsulted,
            BureauSignal::Fresh(r) => BureauInput::Fresh(r.into()),
            BureauSignal::Cached { report, age_secs } => BureauInput::Cached {
                report: report.into(),
                age_secs,
            },
            BureauSignal::Unavailable(c) => BureauInput::Unavailable {
                cause: match c {
                    UnavailableCause::Timeout => Cause::Timeout,
                    UnavailableCause::Error => Cause::Error,
                    UnavailableCause::BreakerOpen => Cause::BreakerOpen,
                    UnavailableCause::BulkheadFull => Cause::BulkheadFull,
                    UnavailableCause::NoBudget => Cause::NoBudget,
                },
            },
        }
    }
}

impl BureauInput {
    /// The signal the engine reads.
    pub fn signal(self) -> BureauSignal {
        match self {
            BureauInput::NotConsulted => BureauSignal::NotConsulted,
            BureauInput::Fresh(r) => BureauSignal::Fresh(r.into()),
            BureauInput::Cached { report, age_secs } => BureauSignal::Cached {
                report: report.into(),
                age_secs,
            },
            BureauInput::Unavailable { cause } => BureauSignal::Unavailable(match cause {
                Cause::Timeout => UnavailableCause::Timeout,
                Cause::Error => UnavailableCause::Error,
                Cause::BreakerOpen => UnavailableCause::BreakerOpen,
                Cause::BulkheadFull => UnavailableCause::BulkheadFull,
                Cause::NoBudget => UnavailableCause::NoBudget,
            }),
        }
    }
}

/// Which decisions a backtest replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// The last `n` committed decisions (by their ids' time).
    Last(usize),
    /// The decisions made from `from` to `to`, both included (their ids' time: the clock of
    /// the gateway that decided them).
    Range {
        /// From.
        from: Timestamp,
        /// To.
        to: Timestamp,
    },
}

impl Selection {
    /// Whether a decision made at `ms` (unix ms) is in a range selection (always, for `Last`).
    pub fn admits(self, ms: u64) -> bool {
        match self {
            Selection::Last(_) => true,
            Selection::Range { from, to } => {
                let ms = i64::try_from(ms).unwrap_or(i64::MAX);
                (from.as_millisecond()..=to.as_millisecond()).contains(&ms)
            }
        }
    }
}

/// The selected decisions and the inputs found for them.
#[derive(Debug, Default)]
pub struct Selected {
    /// Decisions selected (committed and still held by the store).
    pub decisions: usize,
    /// The inputs found for them, oldest first: `decisions - inputs.len()` are skipped.
    pub inputs: Vec<DecisionInputs>,
    /// Of the skipped, those older than every input the record still holds: pushed out of
    /// its bound, or decided before inputs were kept. The rest were not recorded.
    pub pushed_out: usize,
}

impl Selected {
    /// `keys` (the selected decisions' ULIDs as numbers, their ids' order) and the `inputs`
    /// found for them; `oldest_held` is the oldest decision key the record holds (`None`: it
    /// holds none, so nothing was pushed out of it: what is skipped was not recorded).
    pub(crate) fn new(
        keys: &[u128],
        oldest_held: Option<u128>,
        inputs: Vec<DecisionInputs>,
    ) -> Selected {
        // An input held is never older than the oldest held: every selected decision older
        // than that is one without inputs.
        let pushed_out =
            oldest_held.map_or(0, |oldest| keys.iter().filter(|k| **k < oldest).count());
        Selected {
            decisions: keys.len(),
            inputs,
            pushed_out,
        }
    }
}

/// Records the store holds for `kept`: `kept` and 1/64 more, rounded up (see the module
/// docs); 0 for 0.
pub fn bound(kept: usize) -> usize {
    kept.saturating_add(kept.div_ceil(64))
}

impl super::AnyStore {
    /// Keeps a committed decision's inputs for backtests, in a bounded record of at most
    /// about `kept` decisions (see the module docs); never waits for the store.
    pub fn keep_inputs(&self, inputs: DecisionInputs, kept: usize) {
        match self {
            super::AnyStore::Memory(m) => m.keep_inputs(inputs, kept),
            super::AnyStore::Redis(r) => r.keep_inputs(&inputs, kept),
        }
    }

    /// The decisions `selection` names and the inputs kept for them, oldest first.
    pub async fn select_inputs(&self, selection: Selection) -> super::Result<Selected> {
        match self {
            super::AnyStore::Memory(m) => Ok(m.select_inputs(selection)),
            super::AnyStore::Redis(r) => r.select_inputs(selection).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bureau_inputs_round_trip_through_json() {
        let r = BureauReport {
            score: 612,
            overdue_accounts: 1,
            max_days_overdue: 12,
            inquiries_90d: 3,
        };
        for s in [
            BureauSignal::NotConsulted,
            BureauSignal::Fresh(r),
            BureauSignal::Cached {
                report: r,
                age_secs: 40,
            },
            BureauSignal::Unavailable(UnavailableCause::BreakerOpen),
            BureauSignal::Unavailable(UnavailableCause::NoBudget),
        ] {
            let json = serde_json::to_string(&BureauInput::from(s)).unwrap();
            let back: BureauInput = serde_json::from_str(&json).unwrap();
            assert_eq!(back.signal(), s, "{json}");
        }
    }

    #[test]
    fn ranges_include_both_ends() {
        let t = |ms| Timestamp::from_millisecond(ms).unwrap();
        let sel = Selection::Range {
            from: t(1_000),
            to: t(2_000),
        };
        assert!(!sel.admits(999));
        assert!(sel.admits(1_000));
        assert!(sel.admits(2_000));
        assert!(!sel.admits(2_001));
        assert!(Selection::Last(1).admits(0));
    }
}
