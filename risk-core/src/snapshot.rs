//! The current thresholds behind an atomic pointer: readers never lock.
//!
//! Readers call [`ThresholdCache::load`] (a few nanoseconds, wait-free in the common case: see
//! arc-swap's docs) and evaluate against the snapshot they got, so a decision always sees one
//! whole document, never a mix of two. Writers are rare (an operator publishes a version, the
//! Redis refresher swaps one in); they serialise on a mutex so that the "versions only move
//! forward" check and the swap are one step. The mutex is never touched by readers.
//!
//! # Layout
//! - [`PublishError`]: why a version was not published.
//! - [`ThresholdCache`]: holds the thresholds in force.

use crate::thresholds::Thresholds;
use arc_swap::{ArcSwapOption, Guard};
use std::sync::{Arc, Mutex};

/// Why a version was not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The offered version is not greater than the current one.
    #[error("thresholds version {offered} is not greater than the current version {current}")]
    StaleVersion {
        /// The version in force.
        current: u64,
        /// The version offered.
        offered: u64,
    },
}

/// Holds the thresholds in force; empty until a first version is published.
#[derive(Debug, Default)]
pub struct ThresholdCache {
    current: ArcSwapOption<Thresholds>,
    writer: Mutex<()>,
}

impl ThresholdCache {
    /// A cache with no thresholds yet (readiness should report it).
    pub fn empty() -> Self {
        Self::default()
    }

    /// A cache holding `initial`.
    pub fn new(initial: Thresholds) -> Self {
        Self {
            current: ArcSwapOption::from_pointee(initial),
            writer: Mutex::new(()),
        }
    }

    /// The thresholds in force, if any. Lock-free; hold the guard only for one evaluation.
    pub fn load(&self) -> Guard<Option<Arc<Thresholds>>> {
        self.current.load()
    }

    /// The thresholds in force as an owned pointer (for keeping beyond one evaluation).
    pub fn load_full(&self) -> Option<Arc<Thresholds>> {
        self.current.load_full()
    }

    /// The version in force, 0 when empty.
    pub fn version(&self) -> u64 {
        self.current.load().as_ref().map_or(0, |t| t.version())
    }

    /// Swaps in `next` if its version is greater than the current one.
    pub fn publish(&self, next: Thresholds) -> Result<Arc<Thresholds>, PublishError> {
        // A poisoned writer lock only means another writer panicked between check and swap;
        // the pointer itself is always a whole document, so carry on.
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.version();
        if next.version() <= current {
            return Err(PublishError::StaleVersion {
                current,
                offered: next.version(),
            });
        }
        let next = Arc::new(next);
        self.current.store(Some(Arc::clone(&next)));
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(v: u64) -> Thresholds {
        let mut doc = Thresholds::embedded_default().document().clone();
        doc.version = v;
        Thresholds::compile(doc).unwrap()
    }

    #[test]
    fn versions_only_move_forward() {
        let cache = ThresholdCache::empty();
        assert!(cache.load().is_none());
        assert_eq!(cache.version(), 0);
        cache.publish(version(3)).unwrap();
        assert_eq!(cache.version(), 3);
        assert_eq!(
            cache.publish(version(3)),
            Err(PublishError::StaleVersion {
                current: 3,
                offered: 3
            })
        );
        assert_eq!(
            cache.publish(version(2)),
            Err(PublishError::StaleVersion {
                current: 3,
                offered: 2
            })
        );
        cache.publish(version(4)).unwrap();
        assert_eq!(cache.load().as_ref().unwrap().version(), 4);
    }
}
