//! Fault injection for the memory store: added latency and an outage switch.
//!
//! The embedded store never fails on its own; tests, demos and the loadtest use these to see
//! how the gateway behaves when its store is slow (backpressure, deadlines, shedding) or down
//! (`503 DEPENDENCY_UNAVAILABLE`, nothing written). Both switches are off by default and
//! cost two relaxed atomic loads per operation.

use super::{Result, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Shared fault switches; clones control the same store.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    inner: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    latency_us: AtomicU64,
    unavailable: AtomicBool,
}

impl Faults {
    /// Every operation first waits this long (zero: no wait).
    pub fn set_latency(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        // Relaxed: an independent setting, read on its own; no other memory is published.
        self.inner.latency_us.store(us, Ordering::Relaxed);
    }

    /// While set, every operation fails with [`StoreError::Unavailable`] before touching data.
    pub fn set_unavailable(&self, down: bool) {
        self.inner.unavailable.store(down, Ordering::Relaxed);
    }

    /// The injected latency, if any: every operation first waits this long.
    pub(crate) fn latency(&self) -> Option<Duration> {
        match self.inner.latency_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// The outage switch: an error while it is set (checked after the latency).
    pub(crate) fn check(&self) -> Result<()> {
        if self.inner.unavailable.load(Ordering::Relaxed) {
            return Err(StoreError::Unavailable(
                "fault injected: store marked unavailable".into(),
            ));
        }
        Ok(())
    }
}
