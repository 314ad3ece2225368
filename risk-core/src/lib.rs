//! risk-core: the pure drawdown decision engine.
//!
//! No I/O, no async, no locks on the read path. The gateway feeds it a user's state and a
//! request; it answers with a [`Decision`] whose reasons are specific, ordered, carry the
//! figures that bound them, and say what would change the answer.
//!
//! # Layout
//! - [`money`]: [`Fen`], integer minor units with checked arithmetic.
//! - [`bureau`]: the external credit-bureau signal, an explicit input of the engine.
//! - [`domain`]: user ids, grades, user state, requests, outcomes.
//! - [`reason`]: the reason-code catalogue (risk and transient codes).
//! - [`thresholds`]: the versioned thresholds document, its validation and compiled form.
//! - [`snapshot`]: [`ThresholdCache`], the thresholds in force behind an atomic pointer.
//! - [`engine`]: [`evaluate`] and [`quote`].
//!
//! # Example
//! ```
//! use risk_core::{Channel, Context, DrawdownRequest, Fen, Outcome, RiskGrade, ThresholdCache,
//!                 Thresholds, UserState, evaluate, quote};
//!
//! let cache = ThresholdCache::new(Thresholds::embedded_default());
//! let thresholds = cache.load();
//! let thresholds = thresholds.as_ref().expect("published above");
//! let ctx = Context { profile: "normal", window_ends_at: None, bureau: Default::default() };
//! let user = UserState::clean(Fen::new(5_000_000).unwrap(), RiskGrade::C);
//!
//! let q = quote(thresholds, &ctx, &user);
//! let ok = DrawdownRequest { amount: q.drawable_now, channel: Channel::App };
//! assert_eq!(evaluate(thresholds, &ctx, &user, &ok).outcome, Outcome::Approved);
//!
//! let too_much = DrawdownRequest { amount: q.drawable_now.checked_add(Fen::new(1).unwrap()).unwrap(),
//!                                  channel: Channel::App };
//! let d = evaluate(thresholds, &ctx, &user, &too_much);
//! assert_eq!(d.outcome, Outcome::Rejected);
//! assert_eq!(d.reasons[0].code.as_str(), "SINGLE_DRAWDOWN_LIMIT");
//! assert_eq!(d.reasons[0].suggested_amount, Some(q.drawable_now));
//! ```

pub mod bureau;
pub mod domain;
pub mod engine;
pub mod money;
pub mod reason;
pub mod snapshot;
pub mod thresholds;

pub use bureau::{BureauReport, BureauSignal, UnavailableCause};
pub use domain::{
    Channel, DrawdownRequest, IdError, Outcome, RiskGrade, UserId, UserState, validate_id,
};
pub use engine::{Context, Decision, MAX_REASONS, Quote, Reason, Rule, Unit, evaluate, quote};
pub use money::{Fen, TooLarge};
pub use reason::{CatalogueEntry, Category, Family, ReasonCode, catalogue};
pub use snapshot::{PublishError, ThresholdCache};
pub use thresholds::{
    BureauRules, LoginMode, Profile, Thresholds, ThresholdsDocument, ThresholdsError,
};
