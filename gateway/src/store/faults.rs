//! Fault injection for the memory store: added latency, an outage switch, a corruption
//! switch and a contention switch.
//!
//! The embedded store never fails on its own; tests, demos and the loadtest use these to see
//! how the gateway behaves when its store is slow (backpressure, deadlines, shedding), down
//! (`503 DEPENDENCY_UNAVAILABLE`, nothing written), holding data it cannot read (a bug:
//! `500 INTERNAL`) or losing every commit race (`503 LINE_CONTENDED`). Every switch is off
//! by default; an operation reads two relaxed atomics, a commit that reserves one more.

use super::{Result, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

/// Shared fault switches; clones control the same store.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    inner: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    latency_us: AtomicU64,
    /// [`FAIL_NONE`], [`FAIL_UNAVAILABLE`] or [`FAIL_CORRUPT`].
    failure: AtomicU8,
    contended: AtomicBool,
}

const FAIL_NONE: u8 = 0;
const FAIL_UNAVAILABLE: u8 = 1;
const FAIL_CORRUPT: u8 = 2;

impl Faults {
    /// Every operation first waits this long (zero: no wait).
    pub fn set_latency(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        // Relaxed: an independent setting, read on its own; no other memory is published.
        self.inner.latency_us.store(us, Ordering::Relaxed);
    }

    /// While set, every operation fails with [`StoreError::Unavailable`] before touching data.
    pub fn set_unavailable(&self, down: bool) {
        self.set_failure(down, FAIL_UNAVAILABLE);
    }

    /// While set, every operation fails with [`StoreError::Corrupt`] before touching data, as
    /// a store holding a record it cannot read back would.
    pub fn set_corrupt(&self, corrupt: bool) {
        self.set_failure(corrupt, FAIL_CORRUPT);
    }

    /// While set, every commit that reserves credit finds the line changed by a concurrent
    /// drawdown ([`super::CommitOutcome::LineChanged`]) and writes nothing.
    pub fn set_contended(&self, contended: bool) {
        // Relaxed: an independent setting, as the others.
        self.inner.contended.store(contended, Ordering::Relaxed);
    }

    fn set_failure(&self, on: bool, kind: u8) {
        // Relaxed: an independent setting, read on its own; no other memory is published.
        self.inner
            .failure
            .store(if on { kind } else { FAIL_NONE }, Ordering::Relaxed);
    }

    /// The contention switch (see [`Faults::set_contended`]).
    pub(crate) fn contended(&self) -> bool {
        self.inner.contended.load(Ordering::Relaxed)
    }

    /// The injected latency, if any: every operation first waits this long.
    pub(crate) fn latency(&self) -> Option<Duration> {
        match self.inner.latency_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// The outage and corruption switches: an error while one is set (checked after the
    /// latency).
    pub(crate) fn check(&self) -> Result<()> {
        match self.inner.failure.load(Ordering::Relaxed) {
            FAIL_NONE => Ok(()),
            FAIL_CORRUPT => Err(StoreError::Corrupt(
                "fault injected: store marked corrupt".into(),
            )),
            _ => Err(StoreError::Unavailable(
                "fault injected: store marked unavailable".into(),
            )),
        }
    }
}
