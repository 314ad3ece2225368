//! CI gates: limits on a run's results; crossing one makes the command exit non-zero.
//!
//! # Layout
//! - [`GATE_EXIT_CODE`]: exit code of a command whose gate was crossed.
//! - [`Gates`]: the limits, each optional.
//! - [`all_passed`]: whether every gate passed (true when there are none).

use crate::results::{GateOutcome, Results};

/// Exit code of a command whose gate was crossed.
pub const GATE_EXIT_CODE: u8 = 3;

/// The limits, each optional.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Gates {
    /// Whole-run p99 latency (CO-corrected), ms.
    pub max_p99_ms: Option<f64>,
    /// Good-user refusal rate, 0..=1.
    pub max_good_refusal_rate: Option<f64>,
}

impl Gates {
    /// Evaluates every limit that is set.
    pub fn evaluate(&self, r: &Results) -> Vec<GateOutcome> {
        let mut out = Vec::new();
        if let Some(limit) = self.max_p99_ms {
            let value = r.latency_ms.percentiles.p99;
            out.push(GateOutcome {
                name: "max-p99-ms".into(),
                limit,
                value,
                passed: value <= limit,
            });
        }
        if let Some(limit) = self.max_good_refusal_rate {
            let value = r.totals.good_refusal_rate;
            out.push(GateOutcome {
                name: "max-good-refusal-rate".into(),
                limit,
                value,
                passed: value <= limit,
            });
        }
        out
    }
}

/// Whether every gate passed (true when there are none).
pub fn all_passed(outcomes: &[GateOutcome]) -> bool {
    outcomes.iter().all(|g| g.passed)
}
