//! loan-gateway: the production entry point for consumer-loan drawdowns.
//!
//! # Layout
//! - [`clock`]: wall time behind a trait, so tests drive peak windows.
//! - [`policy`]: peak windows and the active policy snapshot.
//! - [`ratelimit`]: global (per route) and per-user rate limits.
//! - [`admission`]: priority-aware concurrency limit with a bounded queue.
//! - [`store`]: the store interface and its in-memory implementation.

pub mod admission;
pub mod clock;
pub mod policy;
pub mod ratelimit;
pub mod store;
