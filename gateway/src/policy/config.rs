//! Peak-window configuration (`[policy]` in the gateway's TOML) and its validation.
//!
//! ```toml
//! [policy]
//! zone = "Asia/Shanghai"          # IANA zone of every civil time below
//!
//! [policy.normal]                 # outside any window; unset fields keep the normal preset
//! concurrency = 64
//!
//! [[policy.windows]]              # first listed wins where windows overlap
//! name = "double11"
//! start = "2026-11-10T23:30"      # a fixed range, civil times in `zone`
//! end = "2026-11-11T02:00"
//! [policy.windows.limits]         # unset fields keep the peak preset
//! user = { per_minute = 3, burst = 2 }
//!
//! [[policy.windows]]
//! name = "evening"
//! daily_start = "20:00"           # every day; may wrap midnight ("23:00" to "01:00")
//! daily_end = "22:00"
//! ```
//!
//! Limits are given as patches: `[policy.normal]` patches [`WindowLimits::normal`], a window's
//! `limits` patch [`WindowLimits::peak`]. A patch replaces whole leaves (a `Rate`, the user
//! `per_minute`/`burst`, one grade's override), never half of one.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use jiff::civil::{DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};
use risk_core::RiskGrade;
use serde::{Deserialize, Serialize};

use crate::request::RouteClass;

/// The name of the policy in force outside every window; reserved, no window may use it.
pub const NORMAL: &str = "normal";

/// The default time zone of civil times in the policy.
pub const DEFAULT_ZONE: &str = "Asia/Shanghai";

/// `[policy]`: time zone, the limits outside any window, and the peak windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// IANA time zone of every civil time in the windows (default `Asia/Shanghai`).
    #[serde(default = "default_zone")]
    pub zone: String,
    /// Changes to [`WindowLimits::normal`], the limits outside every window.
    #[serde(default)]
    pub normal: LimitsPatch,
    /// Peak windows; where two overlap, the first listed wins.
    #[serde(default)]
    pub windows: Vec<WindowConfig>,
}

fn default_zone() -> String {
    DEFAULT_ZONE.to_owned()
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            zone: default_zone(),
            normal: LimitsPatch::default(),
            windows: Vec::new(),
        }
    }
}

/// `[[policy.windows]]`: one peak window. Give either `start`+`end` or
/// `daily_start`+`daily_end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Unique name, shown in responses (`"policy": "double11"`) and used to force it.
    pub name: String,
    /// Fixed range start, civil time in the zone (`2026-11-10T23:30`), inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Fixed range end, civil time in the zone, exclusive; after `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Daily range start (`20:00`), inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_start: Option<String>,
    /// Daily range end (`22:00`), exclusive; earlier than `daily_start` wraps midnight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_end: Option<String>,
    /// Changes to [`WindowLimits::peak`] for this window.
    #[serde(default)]
    pub limits: LimitsPatch,
}

/// A global rate: requests per second with a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Sustained requests per second (at least 1).
    pub per_second: u32,
    /// Requests allowed at once after a quiet period (at least 1).
    pub burst: u32,
}

/// A per-user rate: requests per minute with a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRate {
    /// Sustained requests per minute (at least 1).
    pub per_minute: u32,
    /// Requests allowed at once after a quiet period (at least 1).
    pub burst: u32,
}

/// Global rates per route class; other classes are not globally limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalLimits {
    /// `POST /v1/drawdowns`.
    pub drawdown: Rate,
    /// `GET /v1/credit-lines/{user}`.
    pub credit_line: Rate,
    /// Appeals.
    pub appeal: Rate,
}

impl GlobalLimits {
    /// The global rate of `class`: drawdowns, credit-line queries and appeals have one;
    /// reason codes, the admin API, ops and unrouted paths do not (they may still be limited
    /// per user, or admitted, see [`RouteClass::is_limited`]).
    pub const fn rate(&self, class: RouteClass) -> Option<Rate> {
        match class {
            RouteClass::Drawdown => Some(self.drawdown),
            RouteClass::CreditLine => Some(self.credit_line),
            RouteClass::Appeal => Some(self.appeal),
            RouteClass::ReasonCodes
            | RouteClass::Admin
            | RouteClass::Ops
            | RouteClass::Unrouted => None,
        }
    }

    /// Whether `class` has a global rate, whatever the rates ([`GlobalLimits::rate`]).
    pub const fn has_rate(class: RouteClass) -> bool {
        const ANY: Rate = Rate {
            per_second: 0,
            burst: 0,
        };
        let any = GlobalLimits {
            drawdown: ANY,
            credit_line: ANY,
            appeal: ANY,
        };
        any.rate(class).is_some()
    }
}

/// Per-user quota, with optional per-grade overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserQuota {
    /// Requests per minute of users whose grade is unknown or has no override (at least 1).
    pub per_minute: u32,
    /// Their burst (at least 1).
    pub burst: u32,
    /// Overrides by grade (`grades.E = { per_minute = 2, burst = 1 }`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grades: BTreeMap<RiskGrade, UserRate>,
}

impl UserQuota {
    /// The quota for a user of this grade (the default when unknown or not overridden).
    pub fn for_grade(&self, grade: Option<RiskGrade>) -> UserRate {
        grade
            .and_then(|g| self.grades.get(&g).copied())
            .unwrap_or(UserRate {
                per_minute: self.per_minute,
                burst: self.burst,
            })
    }
}

/// Everything a window (or the normal policy) sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowLimits {
    /// The risk-core threshold profile (`normal`, `peak`).
    pub profile: String,
    /// Global rates per route class.
    pub global: GlobalLimits,
    /// Per-user quota.
    pub user: UserQuota,
    /// Requests admitted at once (admission concurrency limit, at least 1).
    pub concurrency: u32,
    /// Requests that may wait for admission (0: none wait).
    pub queue: u32,
}

impl WindowLimits {
    /// Outside every window, for one instance on a 2-core box: drawdowns 2000/s (burst 400),
    /// credit-line 1000/s, appeals 100/s; 30 requests per user per minute (burst 10): a
    /// per-user limit is there to stop scripts, not people, and a person's journey (look at the
    /// line, draw, perhaps retry) is a handful of requests; 64 in flight, 256 queued; profile
    /// `normal`.
    pub fn normal() -> Self {
        WindowLimits {
            profile: NORMAL.to_owned(),
            global: GlobalLimits {
                drawdown: Rate {
                    per_second: 2000,
                    burst: 400,
                },
                credit_line: Rate {
                    per_second: 1000,
                    burst: 200,
                },
                appeal: Rate {
                    per_second: 100,
                    burst: 20,
                },
            },
            user: UserQuota {
                per_minute: 30,
                burst: 10,
                grades: BTreeMap::new(),
            },
            concurrency: 64,
            queue: 256,
        }
    }

    /// The preset of a peak window: the same machine capacity, tighter per-user limits
    /// (12/min burst 6; grades D and E 6/min burst 3), profile `peak`. A good user may make
    /// a second journey within a minute, so the per-user limit leaves room for it: a limit
    /// that refuses it (the loadtest's `double11` shows how often) is the very refusal this
    /// gateway exists to avoid.
    pub fn peak() -> Self {
        let mut limits = Self::normal();
        limits.profile = "peak".to_owned();
        limits.user.per_minute = 12;
        limits.user.burst = 6;
        for grade in [RiskGrade::D, RiskGrade::E] {
            limits.user.grades.insert(
                grade,
                UserRate {
                    per_minute: 6,
                    burst: 3,
                },
            );
        }
        limits
    }

    fn validate(&self, at: &str) -> Result<(), PolicyConfigError> {
        if self.profile.trim().is_empty() {
            return Err(PolicyConfigError::new(
                format!("{at}.profile"),
                "must not be empty",
            ));
        }
        for (name, rate) in [
            ("drawdown", self.global.drawdown),
            ("credit_line", self.global.credit_line),
            ("appeal", self.global.appeal),
        ] {
            at_least_one(rate.per_second, || format!("{at}.global.{name}.per_second"))?;
            at_least_one(rate.burst, || format!("{at}.global.{name}.burst"))?;
        }
        at_least_one(self.user.per_minute, || format!("{at}.user.per_minute"))?;
        at_least_one(self.user.burst, || format!("{at}.user.burst"))?;
        for (grade, rate) in &self.user.grades {
            let g = grade.as_str();
            at_least_one(rate.per_minute, || {
                format!("{at}.user.grades.{g}.per_minute")
            })?;
            at_least_one(rate.burst, || format!("{at}.user.grades.{g}.burst"))?;
        }
        at_least_one(self.concurrency, || format!("{at}.concurrency"))?;
        Ok(())
    }
}

fn at_least_one(value: u32, field: impl FnOnce() -> String) -> Result<(), PolicyConfigError> {
    if value == 0 {
        Err(PolicyConfigError::new(field(), "must be at least 1"))
    } else {
        Ok(())
    }
}

/// Changes to a preset [`WindowLimits`]; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsPatch {
    /// Replaces the threshold profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Replaces the named global rates.
    #[serde(default)]
    pub global: GlobalPatch,
    /// Replaces the user default and the named grade overrides.
    #[serde(default)]
    pub user: UserPatch,
    /// Replaces the concurrency limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Replaces the queue capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<u32>,
}

/// Changes to [`GlobalLimits`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalPatch {
    /// Replaces the drawdown rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drawdown: Option<Rate>,
    /// Replaces the credit-line rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_line: Option<Rate>,
    /// Replaces the appeal rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appeal: Option<Rate>,
}

/// Changes to [`UserQuota`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// Replaces the default requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u32>,
    /// Replaces the default burst.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Adds or replaces these grades' overrides.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grades: BTreeMap<RiskGrade, UserRate>,
}

impl LimitsPatch {
    /// Every rate and the admission limit far above what one instance can serve: limits out
    /// of the way, for tests and benchmarks that measure something else.
    pub fn unlimited() -> Self {
        let high = Rate {
            per_second: 1_000_000,
            burst: 100_000,
        };
        LimitsPatch {
            global: GlobalPatch {
                drawdown: Some(high),
                credit_line: Some(high),
                appeal: Some(high),
            },
            user: UserPatch {
                per_minute: Some(1_000_000),
                burst: Some(100_000),
                ..UserPatch::default()
            },
            concurrency: Some(512),
            queue: Some(1024),
            ..LimitsPatch::default()
        }
    }

    /// `base` with this patch applied.
    pub fn apply(&self, mut base: WindowLimits) -> WindowLimits {
        if let Some(profile) = &self.profile {
            base.profile.clone_from(profile);
        }
        let g = &mut base.global;
        g.drawdown = self.global.drawdown.unwrap_or(g.drawdown);
        g.credit_line = self.global.credit_line.unwrap_or(g.credit_line);
        g.appeal = self.global.appeal.unwrap_or(g.appeal);
        let u = &mut base.user;
        u.per_minute = self.user.per_minute.unwrap_or(u.per_minute);
        u.burst = self.user.burst.unwrap_or(u.burst);
        u.grades
            .extend(self.user.grades.iter().map(|(g, r)| (*g, *r)));
        base.concurrency = self.concurrency.unwrap_or(base.concurrency);
        base.queue = self.queue.unwrap_or(base.queue);
        base
    }
}

/// An invalid policy setting, naming the field (`policy.windows[1].end: must be after start`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyConfigError {
    field: String,
    message: String,
}

impl PolicyConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        PolicyConfigError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The dotted path of the offending field.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// When a window is active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Schedule {
    /// Once, `[start, end)`.
    Fixed {
        start: ZonedDateTime,
        end: ZonedDateTime,
    },
    /// Every day `[start, end)` in the zone, wrapping midnight when `end < start`.
    Daily { start: Time, end: Time },
}

/// A validated window.
#[derive(Debug, Clone)]
pub(crate) struct CompiledWindow {
    pub(crate) name: String,
    pub(crate) schedule: Schedule,
    pub(crate) limits: Arc<WindowLimits>,
}

/// One occurrence of a window: `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Occurrence {
    pub(crate) start: ZonedDateTime,
    pub(crate) end: ZonedDateTime,
}

impl CompiledWindow {
    /// The occurrence of this window containing `now`, if any.
    pub(crate) fn occurrence_at(&self, now: Timestamp, tz: &TimeZone) -> Option<Occurrence> {
        match &self.schedule {
            Schedule::Fixed { start, end } => (start.timestamp() <= now && now < end.timestamp())
                .then(|| Occurrence {
                    start: start.clone(),
                    end: end.clone(),
                }),
            Schedule::Daily { start, end } => {
                // An occurrence that contains `now` started today or (when it wraps
                // midnight) yesterday, in the zone's calendar. Comparing instants rather than
                // wall-clock times keeps DST days right.
                let today = now.to_zoned_datetime(tz.clone()).date();
                let wraps = end < start;
                let days = [today.yesterday().ok(), Some(today)];
                days.into_iter().flatten().find_map(|day| {
                    let end_day = if wraps { day.tomorrow().ok()? } else { day };
                    let s = day.to_datetime(*start).to_zoned_datetime(tz.clone()).ok()?;
                    let e = end_day
                        .to_datetime(*end)
                        .to_zoned_datetime(tz.clone())
                        .ok()?;
                    (s.timestamp() <= now && now < e.timestamp())
                        .then_some(Occurrence { start: s, end: e })
                })
            }
        }
    }
}

/// A validated policy: the zone, the normal limits and the windows in priority order.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub(crate) zone: TimeZone,
    pub(crate) normal: Arc<WindowLimits>,
    pub(crate) windows: Vec<CompiledWindow>,
}

impl CompiledPolicy {
    /// The limits of a window by name ([`NORMAL`] for the normal limits).
    pub fn limits_of(&self, name: &str) -> Option<&Arc<WindowLimits>> {
        if name == NORMAL {
            return Some(&self.normal);
        }
        self.windows
            .iter()
            .find(|w| w.name == name)
            .map(|w| &w.limits)
    }

    /// Window names in priority order.
    pub fn window_names(&self) -> impl Iterator<Item = &str> {
        self.windows.iter().map(|w| w.name.as_str())
    }

    /// Every threshold profile the policy can switch to (normal first, then in window order,
    /// without repeats), so the thresholds document can be checked to define them all.
    pub fn profiles(&self) -> impl Iterator<Item = &str> {
        let mut seen: Vec<&str> = Vec::with_capacity(self.windows.len() + 1);
        std::iter::once(&self.normal)
            .chain(self.windows.iter().map(|w| &w.limits))
            .map(|l| l.profile.as_str())
            .filter(move |p| {
                let new = !seen.contains(p);
                if new {
                    seen.push(p);
                }
                new
            })
    }

    /// The time zone of the calendar.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }
}

impl PolicyConfig {
    /// Checks every field and resolves the limits; the error names the first bad field.
    pub fn validate(&self) -> Result<CompiledPolicy, PolicyConfigError> {
        let zone = TimeZone::get(&self.zone).map_err(|_| {
            PolicyConfigError::new("policy.zone", format!("unknown time zone {:?}", self.zone))
        })?;
        let normal = self.normal.apply(WindowLimits::normal());
        normal.validate("policy.normal")?;
        let mut windows: Vec<CompiledWindow> = Vec::with_capacity(self.windows.len());
        for (i, w) in self.windows.iter().enumerate() {
            let at = format!("policy.windows[{i}]");
            let name = w.name.trim();
            if name.is_empty() {
                return Err(PolicyConfigError::new(
                    format!("{at}.name"),
                    "must not be empty",
                ));
            }
            if name == NORMAL {
                return Err(PolicyConfigError::new(
                    format!("{at}.name"),
                    "\"normal\" is reserved for the policy outside every window",
                ));
            }
            if let Some(j) = windows.iter().position(|c| c.name == name) {
                return Err(PolicyConfigError::new(
                    format!("{at}.name"),
                    format!("duplicate name {name:?} (also policy.windows[{j}])"),
                ));
            }
            let schedule = w.schedule(&at, &zone)?;
            let limits = w.limits.apply(WindowLimits::peak());
            limits.validate(&format!("{at}.limits"))?;
            windows.push(CompiledWindow {
                name: name.to_owned(),
                schedule,
                limits: Arc::new(limits),
            });
        }
        Ok(CompiledPolicy {
            zone,
            normal: Arc::new(normal),
            windows,
        })
    }
}

impl WindowConfig {
    fn schedule(&self, at: &str, zone: &TimeZone) -> Result<Schedule, PolicyConfigError> {
        let fixed = self.start.is_some() || self.end.is_some();
        let daily = self.daily_start.is_some() || self.daily_end.is_some();
        match (fixed, daily) {
            (true, true) => Err(PolicyConfigError::new(
                at,
                "give either start/end or daily_start/daily_end, not both",
            )),
            (false, false) => Err(PolicyConfigError::new(
                at,
                "needs start and end (a fixed range) or daily_start and daily_end",
            )),
            (true, false) => {
                let start = required(&self.start, at, "start", "end")?;
                let end = required(&self.end, at, "end", "start")?;
                let start = parse_civil(start, &format!("{at}.start"), zone)?;
                let end = parse_civil(end, &format!("{at}.end"), zone)?;
                if end.timestamp() <= start.timestamp() {
                    return Err(PolicyConfigError::new(
                        format!("{at}.end"),
                        "must be after start",
                    ));
                }
                Ok(Schedule::Fixed { start, end })
            }
            (false, true) => {
                let start = required(&self.daily_start, at, "daily_start", "daily_end")?;
                let end = required(&self.daily_end, at, "daily_end", "daily_start")?;
                let start = parse_time(start, &format!("{at}.daily_start"))?;
                let end = parse_time(end, &format!("{at}.daily_end"))?;
                if start == end {
                    return Err(PolicyConfigError::new(
                        format!("{at}.daily_end"),
                        "must differ from daily_start",
                    ));
                }
                Ok(Schedule::Daily { start, end })
            }
        }
    }
}

fn required<'a>(
    value: &'a Option<String>,
    at: &str,
    field: &str,
    with: &str,
) -> Result<&'a str, PolicyConfigError> {
    value.as_deref().ok_or_else(|| {
        PolicyConfigError::new(format!("{at}.{field}"), format!("required with {with}"))
    })
}

fn parse_civil(
    value: &str,
    field: &str,
    zone: &TimeZone,
) -> Result<ZonedDateTime, PolicyConfigError> {
    let dt: DateTime = value.parse().map_err(|_| {
        PolicyConfigError::new(
            field,
            format!("bad time {value:?}: expected a civil date-time like 2026-11-10T23:30"),
        )
    })?;
    dt.to_zoned_datetime(zone.clone()).map_err(|e| {
        PolicyConfigError::new(field, format!("{value:?} is not a time in the zone: {e}"))
    })
}

fn parse_time(value: &str, field: &str) -> Result<Time, PolicyConfigError> {
    value.parse().map_err(|_| {
        PolicyConfigError::new(
            field,
            format!("bad time {value:?}: expected a time of day like 20:00"),
        )
    })
}

impl fmt::Display for Occurrence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const FMT: &str = "%Y-%m-%dT%H:%M%:z";
        write!(
            f,
            "{} → {}",
            self.start.strftime(FMT),
            self.end.strftime(FMT)
        )
    }
}
