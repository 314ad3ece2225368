//! What the benches of the gateway's layers share.

use gateway::clock::ManualClock;
use gateway::policy::{Policy, PolicyConfig};

/// A policy whose limits outside every window are `normal` (a `[policy.normal]` table's
/// body), on a clock that stands still.
pub(crate) fn policy(normal: &str) -> Policy {
    let config: PolicyConfig = toml::from_str(&format!("[normal]\n{normal}")).unwrap();
    let clock = ManualClock::new("2026-03-01T00:00:00Z".parse().unwrap());
    Policy::new(&config, clock.shared()).unwrap()
}
