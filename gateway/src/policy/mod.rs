//! Peak windows and the active policy snapshot.
//!
//! A [`PolicyConfig`] (`[policy]` in the TOML config) names the limits outside any window and
//! the peak windows: fixed ranges (Double 11) and daily ranges (20:00–22:00), in a time zone.
//! [`Policy`] holds the active [`PolicySnapshot`] behind an atomic pointer: readers never
//! lock; [`Policy::evaluate_at`] recomputes it from the calendar and swaps it only when the
//! answer changed; [`Policy::force`] lets an operator force a window on (or the normal policy,
//! by the reserved name [`NORMAL`]) and back to the calendar. Every swap bumps
//! [`PolicySnapshot::generation`] and is published on a `tokio::sync::watch` channel
//! ([`Policy::subscribe`]) for the limiters and admission control. [`Policy::replace`]
//! swaps the configuration itself (a reload of the configuration file): the next snapshot
//! carries the new windows and limits.
//!
//! Where windows overlap, the first one listed wins. Fixed ranges and daily occurrences are
//! `[start, end)`: the start instant belongs to the window, the end instant does not.
//!
//! # Layout
//! - `config.rs`: the config types, presets and validation.
//! - this file: [`Policy`], [`PolicySnapshot`], the scheduler.
//!
//! # Example
//! ```
//! use gateway::clock::ManualClock;
//! use gateway::policy::{Policy, PolicyConfig};
//!
//! let config: PolicyConfig = toml::from_str(r#"
//!     [[windows]]
//!     name = "double11"
//!     start = "2026-11-10T23:30"
//!     end = "2026-11-11T02:00"
//! "#).unwrap();
//! let clock = ManualClock::new("2026-11-10T15:29:00Z".parse().unwrap()); // 23:29 in Shanghai
//! let policy = Policy::new(&config, clock.shared()).unwrap();
//! assert_eq!(policy.current().window, "normal");
//!
//! clock.advance(std::time::Duration::from_secs(60));
//! assert!(policy.evaluate());
//! let now = policy.current();
//! assert_eq!((now.window.as_str(), now.profile.as_str()), ("double11", "peak"));
//! ```

mod config;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use jiff::{Timestamp, ZonedDateTime};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{
    CompiledPolicy, DEFAULT_ZONE, GlobalLimits, GlobalPatch, LimitsPatch, NORMAL, PolicyConfig,
    PolicyConfigError, Rate, UserPatch, UserQuota, UserRate, WindowConfig, WindowLimits,
};

/// The policy in force at one moment. Immutable: a change is a new snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicySnapshot {
    /// The active window's name, or [`NORMAL`].
    pub window: String,
    /// The limits it sets.
    pub limits: WindowLimits,
    /// The risk-core threshold profile (`limits.profile`).
    pub profile: String,
    /// Forced by an operator rather than chosen by the calendar.
    pub forced: bool,
    /// Why this policy is active, for people ("calendar: window double11 …", "forced by
    /// admin", "no window active").
    pub why: String,
    /// Since when: the window occurrence's start, else when the gateway switched to it.
    /// Answered as RFC 3339 in whole seconds, as every timestamp of the API.
    #[serde(serialize_with = "rfc3339")]
    pub since: ZonedDateTime,
    /// When the active calendar window ends (none for the normal policy or a forced one).
    #[serde(serialize_with = "rfc3339_opt")]
    pub ends_at: Option<ZonedDateTime>,
    /// Increases by one with every change, starting at 1.
    pub generation: u64,
}

/// `at` as the API answers timestamps ([`crate::clock::rfc3339`]).
fn rfc3339<S: serde::Serializer>(at: &ZonedDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::clock::rfc3339(at.timestamp(), at.offset()))
}

fn rfc3339_opt<S: serde::Serializer>(at: &Option<ZonedDateTime>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339(at, s),
        None => s.serialize_none(),
    }
}

/// A forced window name that is not configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown window {name:?}")]
pub struct UnknownWindow {
    name: String,
}

impl UnknownWindow {
    /// The name that was asked for.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What decides the snapshot; a new snapshot is made only when this changes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Active {
    Normal,
    Window {
        index: usize,
        occurrence: config::Occurrence,
    },
    Forced(Option<usize>),
}

#[derive(Debug)]
struct Writer {
    forced: Option<Option<usize>>,
    active: Active,
    /// Forces applied so far: a follower that read the store before a local
    /// force does not undo it ([`Policy::force_unless_forced_since`]).
    forces: u64,
}

#[derive(Debug)]
struct Inner {
    /// Swapped whole by [`Policy::replace`], under the writer lock.
    compiled: ArcSwap<CompiledPolicy>,
    clock: crate::clock::SharedClock,
    current: ArcSwap<PolicySnapshot>,
    /// Serialises writers so generations stay in order; readers never take it.
    writer: Mutex<Writer>,
    changes: watch::Sender<Arc<PolicySnapshot>>,
}

/// The active policy: a cheap, cloneable handle.
#[derive(Debug, Clone)]
pub struct Policy {
    inner: Arc<Inner>,
}

impl Policy {
    /// Validates `config` and evaluates it at `clock.now()`.
    pub fn new(
        config: &PolicyConfig,
        clock: crate::clock::SharedClock,
    ) -> Result<Policy, PolicyConfigError> {
        Ok(Self::from_compiled(config.validate()?, clock))
    }

    /// A policy from an already validated config, evaluated at `clock.now()`.
    pub fn from_compiled(compiled: CompiledPolicy, clock: crate::clock::SharedClock) -> Policy {
        let now = clock.now();
        let active = calendar(&compiled, now);
        let first = Arc::new(snapshot(&compiled, &active, now, 1));
        let (changes, _) = watch::channel(Arc::clone(&first));
        Policy {
            inner: Arc::new(Inner {
                compiled: ArcSwap::from_pointee(compiled),
                clock,
                current: ArcSwap::new(first),
                writer: Mutex::new(Writer {
                    forced: None,
                    active,
                    forces: 0,
                }),
                changes,
            }),
        }
    }

    /// The policy in force now (lock-free).
    pub fn current(&self) -> Arc<PolicySnapshot> {
        self.inner.current.load_full()
    }

    /// The policy in force now without touching its reference count, for hot paths.
    pub fn load(&self) -> arc_swap::Guard<Arc<PolicySnapshot>> {
        self.inner.current.load()
    }

    /// Changes as they happen; the receiver starts with the current snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<PolicySnapshot>> {
        self.inner.changes.subscribe()
    }

    /// The validated configuration in force (lock-free; replaced by [`Policy::replace`]).
    pub fn compiled(&self) -> arc_swap::Guard<Arc<CompiledPolicy>> {
        self.inner.compiled.load()
    }

    /// Replaces the configuration (windows, their limits, the time zone), as a reload of
    /// the configuration file does. A forced window stays forced when the new configuration
    /// still names it; otherwise the calendar decides again, and its name is answered. The
    /// next snapshot is published (with the next generation) even when the same window is
    /// active, since its limits may have changed: the limiters and admission follow it on
    /// their next check, as when a window opens.
    pub fn replace(&self, compiled: CompiledPolicy) -> (Arc<PolicySnapshot>, Option<String>) {
        let now = self.inner.clock.now();
        let mut writer = self.lock_writer();
        let mut unforced = None;
        let forced = match writer.forced {
            Some(Some(index)) => {
                let old = self.inner.compiled.load();
                let name = &old.windows[index].name;
                match compiled.windows.iter().position(|w| w.name == *name) {
                    Some(index) => Some(Some(index)),
                    None => {
                        unforced = Some(name.clone());
                        None
                    }
                }
            }
            other => other,
        };
        writer.forced = forced;
        let active = match forced {
            Some(f) => Active::Forced(f),
            None => calendar(&compiled, now),
        };
        self.inner.compiled.store(Arc::new(compiled));
        self.publish(&mut writer, active, now);
        (self.current(), unforced)
    }

    /// Re-evaluates the calendar at the clock's time; see [`Policy::evaluate_at`].
    pub fn evaluate(&self) -> bool {
        self.evaluate_at(self.inner.clock.now())
    }

    /// Re-evaluates the calendar at `now` and swaps the snapshot if the active window (or
    /// its occurrence) changed. Returns whether it changed. Does nothing while forced.
    pub fn evaluate_at(&self, now: Timestamp) -> bool {
        let mut writer = self.lock_writer();
        if writer.forced.is_some() {
            return false;
        }
        let active = calendar(&self.inner.compiled.load(), now);
        self.swap_if_changed(&mut writer, active, now)
    }

    /// Forces a window on (`Some(name)`; [`NORMAL`] forces every window off) or returns to
    /// the calendar (`None`). Returns the snapshot now in force.
    pub fn force(&self, window: Option<&str>) -> Result<Arc<PolicySnapshot>, UnknownWindow> {
        // Unconditional, so always applied: the `None` arm is never taken.
        self.force_with(window, None)
            .map(|s| s.unwrap_or_else(|| self.current()))
    }

    /// How many forces this policy has applied (through [`Policy::force`] or
    /// [`Policy::force_unless_forced_since`]): read before fetching what the fleet forced.
    pub fn forces(&self) -> u64 {
        self.lock_writer().forces
    }

    /// [`Policy::force`], unless this instance forced anything since `forces` was read
    /// (`Ok(None)`): what was read before a local force is older than it.
    pub fn force_unless_forced_since(
        &self,
        window: Option<&str>,
        forces: u64,
    ) -> Result<Option<Arc<PolicySnapshot>>, UnknownWindow> {
        self.force_with(window, Some(forces))
    }

    fn force_with(
        &self,
        window: Option<&str>,
        unless_since: Option<u64>,
    ) -> Result<Option<Arc<PolicySnapshot>>, UnknownWindow> {
        let now = self.inner.clock.now();
        let mut writer = self.lock_writer();
        if unless_since.is_some_and(|seen| seen != writer.forces) {
            return Ok(None);
        }
        let active = match window {
            None => {
                writer.forced = None;
                calendar(&self.inner.compiled.load(), now)
            }
            Some(NORMAL) => Active::Forced(None),
            Some(name) => {
                let index = self
                    .inner
                    .compiled
                    .load()
                    .windows
                    .iter()
                    .position(|w| w.name == name)
                    .ok_or_else(|| UnknownWindow {
                        name: name.to_owned(),
                    })?;
                Active::Forced(Some(index))
            }
        };
        if let Active::Forced(f) = active {
            writer.forced = Some(f);
        }
        writer.forces += 1;
        self.swap_if_changed(&mut writer, active, now);
        Ok(Some(self.current()))
    }

    /// What an operator forced, as [`Policy::force`] takes it: `None` while the calendar
    /// decides, `Some(NORMAL)` with every window forced off, else the forced window's name.
    pub fn forced_window(&self) -> Option<String> {
        // Under the writer lock: the index is into the configuration in force with it.
        let writer = self.lock_writer();
        Some(match writer.forced? {
            None => NORMAL.to_owned(),
            Some(index) => self.inner.compiled.load().windows[index].name.clone(),
        })
    }

    /// Whether [`Policy::force`] would take `window` (`None`, [`NORMAL`] or a configured
    /// window's name), without forcing anything.
    pub fn check_force(&self, window: Option<&str>) -> Result<(), UnknownWindow> {
        match window {
            None | Some(NORMAL) => Ok(()),
            Some(name)
                if self
                    .inner
                    .compiled
                    .load()
                    .windows
                    .iter()
                    .any(|w| w.name == name) =>
            {
                Ok(())
            }
            Some(name) => Err(UnknownWindow {
                name: name.to_owned(),
            }),
        }
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        // A panic while holding it cannot leave `Writer` half-updated in a harmful way: the
        // worst case is a snapshot that is re-made on the next evaluation.
        self.inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn swap_if_changed(&self, writer: &mut Writer, active: Active, now: Timestamp) -> bool {
        if writer.active == active {
            return false;
        }
        self.publish(writer, active, now);
        true
    }

    /// Makes `active` the snapshot in force, with the next generation.
    fn publish(&self, writer: &mut Writer, active: Active, now: Timestamp) {
        let generation = self.inner.current.load().generation + 1;
        let next = Arc::new(snapshot(
            &self.inner.compiled.load(),
            &active,
            now,
            generation,
        ));
        tracing::debug!(
            policy.window = %next.window,
            policy.generation = generation,
            policy.why = %next.why,
            "policy changed"
        );
        writer.active = active;
        self.inner.current.store(Arc::clone(&next));
        self.inner.changes.send_replace(next);
    }
}

/// Runs [`Policy::evaluate`] every `tick` until the returned task is aborted. Each tick reads
/// the policy's clock afresh, so a `ManualClock` moved by a test or the loadtest is picked up
/// on the next tick and nothing accumulates drift.
pub fn spawn_scheduler(policy: Policy, tick: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick.max(Duration::from_millis(1)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            policy.evaluate();
        }
    })
}

fn calendar(compiled: &CompiledPolicy, now: Timestamp) -> Active {
    compiled
        .windows
        .iter()
        .enumerate()
        .find_map(|(index, w)| {
            w.occurrence_at(now, &compiled.zone)
                .map(|occurrence| Active::Window { index, occurrence })
        })
        .unwrap_or(Active::Normal)
}

fn snapshot(
    compiled: &CompiledPolicy,
    active: &Active,
    now: Timestamp,
    generation: u64,
) -> PolicySnapshot {
    let zone = &compiled.zone;
    let at_now = now.to_zoned_datetime(zone.clone());
    let (window, limits, forced, why, since, ends_at) = match active {
        Active::Normal => (
            NORMAL.to_owned(),
            &compiled.normal,
            false,
            "no window active".to_owned(),
            at_now,
            None,
        ),
        Active::Forced(None) => (
            NORMAL.to_owned(),
            &compiled.normal,
            true,
            "forced by admin (every window off)".to_owned(),
            at_now,
            None,
        ),
        Active::Forced(Some(index)) => {
            let w = &compiled.windows[*index];
            (
                w.name.clone(),
                &w.limits,
                true,
                "forced by admin".to_owned(),
                at_now,
                None,
            )
        }
        Active::Window { index, occurrence } => {
            let w = &compiled.windows[*index];
            (
                w.name.clone(),
                &w.limits,
                false,
                format!("calendar: window {} {occurrence}", w.name),
                occurrence.start.clone(),
                Some(occurrence.end.clone()),
            )
        }
    };
    PolicySnapshot {
        window,
        profile: limits.profile.clone(),
        limits: WindowLimits::clone(limits),
        forced,
        why,
        since,
        ends_at,
        generation,
    }
}

#[cfg(test)]
mod tests;
