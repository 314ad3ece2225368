//! risk-core: the pure drawdown decision engine.
//!
//! No I/O, no async, no locks on the read path. The gateway feeds it a user's state and a
//! request; it answers with a [`Decision`] whose reasons are specific, ordered, and say what
//! would change the answer.
//!
//! # Layout
//! - [`money`]: [`Fen`], integer minor units with checked arithmetic.
//! - [`domain`]: user ids, grades, user state, requests, outcomes.
//! - [`reason`]: the reason-code catalogue (risk and transient codes).

pub mod domain;
pub mod money;
pub mod reason;

pub use domain::{
    Channel, DrawdownRequest, IdError, Outcome, RiskGrade, UserId, UserState, validate_id,
};
pub use money::Fen;
pub use reason::{CatalogueEntry, Category, Family, ReasonCode, catalogue};
