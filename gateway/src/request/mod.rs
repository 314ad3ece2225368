//! What the limit layers know about a request: one request extension, [`RequestFacts`].
//!
//! An earlier layer (the gateway's edge: authentication, routing, deadline, the body) puts
//! one [`RequestFacts`] into `http::Request::extensions_mut()`; the rate-limit and admission
//! layers only read it, and the gateway's innermost service takes from it what the handler
//! needs. One extension rather than one per fact: each `Extensions::insert` boxes its value,
//! and the map itself is allocated and grows as entries are added.
//!
//! Every fact is optional, and a request without the extension has none: without a
//! [`RouteClass`] a request is not globally limited, without a [`UserKey`] the per-user limit
//! is skipped, without a grade the window's default user quota applies, without a
//! [`Priority`] the class's default is used (else [`Priority::Default`]), without a deadline
//! there is none, and without a retry attempt the retry budget is left alone.
//!
//! # Layout
//! - [`RequestFacts`]: what is known about a request before the limit layers run.
//! - [`Caller`]: an authenticated caller.
//! - [`CertCaller`]: the caller a connection's client certificate names (mutual TLS).
//! - [`Drawdown`]: a validated drawdown request (`POST /v1/drawdowns`, checked by the API's …
//! - [`RouteClass`]: which kind of route a request is for.
//! - [`UserKey`]: the user a request acts for (the `user_id` of the body or path), the key …
//! - [`Priority`]: admission priority.
//! - [`path_user`]: the user id a path names, percent-decoded (one reader for the edge and the handlers).
//! - [`notes`]: what the access log learns from inside a request (upstream times, the
//!   decision).
//! - [`Deadline`]: the instant by which the caller needs an answer, as a request extension of …

pub mod notes;

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use risk_core::{Channel, Fen, RiskGrade, UserId};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// What is known about a request before the limit layers run: the one request extension
/// they read (see the module docs for what a missing fact means).
///
/// The limit layers read the first six fields; `caller` and `drawdown` are carried for the
/// service inside them (the gateway's handlers) and are not looked at by the layers.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    /// The route class: the unit of global limits, and the default priority.
    pub class: Option<RouteClass>,
    /// The user the request acts for: the key of per-user limits.
    pub user: Option<UserKey>,
    /// The user's risk grade when already known (a hint: per-grade user quotas).
    pub grade: Option<RiskGrade>,
    /// The admission priority; without it, the class's default.
    pub priority: Option<Priority>,
    /// The instant by which the caller needs an answer (from `X-Request-Deadline-Ms` or
    /// the configured default).
    pub deadline: Option<Instant>,
    /// The caller's `X-Retry-Attempt` (0: a first attempt, which adds to the retry budget;
    /// above 0: a retry, which draws from it). Without it admission leaves the budget alone
    /// (the edge settles it in `Admission::precheck` before the body is read).
    pub retry_attempt: Option<u32>,
    /// The authenticated caller (not read by the limit layers).
    pub caller: Option<Caller>,
    /// A drawdown body the edge parsed and validated, for the handler: one parse per
    /// request. The edge only sets it for `POST /v1/drawdowns`, and then does not keep the
    /// request's body (not read by the limit layers).
    pub drawdown: Option<Arc<Drawdown>>,
}

impl RequestFacts {
    /// No facts: what a request without the extension is taken to have.
    pub const NONE: RequestFacts = RequestFacts {
        class: None,
        user: None,
        grade: None,
        priority: None,
        deadline: None,
        retry_attempt: None,
        caller: None,
        drawdown: None,
    };

    /// The facts of `req`, or [`RequestFacts::NONE`] when it carries none.
    pub fn of<B>(req: &http::Request<B>) -> &RequestFacts {
        static NONE: RequestFacts = RequestFacts::NONE;
        req.extensions().get::<RequestFacts>().unwrap_or(&NONE)
    }

    /// The admission priority: the one set, else the class's default, else
    /// [`Priority::Default`].
    pub fn priority(&self) -> Priority {
        self.priority
            .or_else(|| self.class.map(RouteClass::default_priority))
            .unwrap_or(Priority::Default)
    }
}

/// An authenticated caller: idempotency keys are scoped by `id`, which is derived from the
/// key (a keyed hash prefix), never the key itself.
#[derive(Debug, Clone)]
pub struct Caller {
    /// A stable, non-secret identifier of the API key.
    pub id: Arc<str>,
}

/// The caller a connection's client certificate is mapped to (`server.tls.clients`), as a
/// request extension the connection puts on each of its requests: the edge takes it for the
/// caller instead of an API key.
#[derive(Debug, Clone)]
pub struct CertCaller(pub Caller);

/// A validated drawdown request (`POST /v1/drawdowns`, checked by the API's wire types).
#[derive(Debug, Clone)]
pub struct Drawdown {
    /// The user.
    pub user: UserId,
    /// The amount.
    pub amount: Fen,
    /// The channel.
    pub channel: Channel,
    /// The device.
    pub device_id: Option<String>,
}

/// Which kind of route a request is for: the unit of global rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteClass {
    /// `POST /v1/drawdowns`.
    Drawdown,
    /// `GET /v1/credit-lines/{user}`.
    CreditLine,
    /// `POST /v1/appeals` and appeal look-ups.
    Appeal,
    /// The reason-code catalogue (not globally limited).
    ReasonCodes,
    /// `/admin/*` (not globally limited).
    Admin,
    /// Health, readiness, metrics, OpenAPI (not globally limited).
    Ops,
    /// A `/v1/` path and method no route answers, answered 404 or 405 (not globally
    /// limited; admitted like any `/v1/` request).
    Unrouted,
}

impl RouteClass {
    /// Every class, in the order of their discriminants (`class as usize`).
    pub const ALL: [RouteClass; 7] = [
        Self::Drawdown,
        Self::CreditLine,
        Self::Appeal,
        Self::ReasonCodes,
        Self::Admin,
        Self::Ops,
        Self::Unrouted,
    ];

    /// The class of a method and path, before routing (the limit layers need it). A `/v1/`
    /// path and method that no route answers is [`RouteClass::Unrouted`] (admitted like any
    /// `/v1/` request, then answered 404 or 405 by the router), never the class of a route it
    /// resembles.
    pub fn of(method: &http::Method, path: &str) -> RouteClass {
        use http::Method;
        // `get` routes answer HEAD too.
        let read = *method == Method::GET || *method == Method::HEAD;
        let post = *method == Method::POST;
        let mut parts = path.trim_start_matches('/').split('/');
        let (first, second) = (parts.next(), parts.next());
        // The segment after the collection: none (`/v1/appeals`), or one id (`/v1/appeals/{id}`).
        let (bare, one_id) = match (parts.next(), parts.next()) {
            (None, _) => (true, false),
            (Some(id), None) => (false, !id.is_empty()),
            (Some(_), Some(_)) => (false, false),
        };
        match (first, second) {
            (Some("v1"), Some("drawdowns")) if post && bare => Self::Drawdown,
            (Some("v1"), Some("credit-lines")) if read && one_id => Self::CreditLine,
            (Some("v1"), Some("appeals")) if (post && bare) || (read && one_id) => Self::Appeal,
            (Some("v1"), Some("reason-codes")) if read && bare => Self::ReasonCodes,
            (Some("v1"), _) => Self::Unrouted,
            (Some("admin"), _) => Self::Admin,
            _ => Self::Ops,
        }
    }

    /// Whether requests of this class pass through the rate limits and admission: every
    /// `/v1/` route does. Health checks, metrics and the admin API do not: they must answer
    /// in an overload, when they are needed most. (Which classes also have a global rate is
    /// the policy's `GlobalLimits::rate`.)
    pub const fn is_limited(self) -> bool {
        !matches!(self, Self::Admin | Self::Ops)
    }

    /// The class's name as used in metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Drawdown => "drawdown",
            Self::CreditLine => "credit_line",
            Self::Appeal => "appeal",
            Self::ReasonCodes => "reason_codes",
            Self::Admin => "admin",
            Self::Ops => "ops",
            Self::Unrouted => "unrouted",
        }
    }

    /// The priority a request of this class gets unless the caller lowers it: drawdowns are
    /// critical, everything else default.
    pub const fn default_priority(self) -> Priority {
        match self {
            Self::Drawdown => Priority::Critical,
            _ => Priority::Default,
        }
    }
}

impl fmt::Display for RouteClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The user a request acts for (the `user_id` of the body or path), the key of per-user
/// limits. Never derived from client-supplied forwarding headers.
///
/// Cheap to clone; a key made from a parsed drawdown ([`UserKey::of_drawdown`]) shares the
/// drawdown's user id rather than copying it. Compared and hashed as its id.
#[derive(Clone)]
pub struct UserKey(KeyRepr);

#[derive(Clone)]
enum KeyRepr {
    Id(Arc<str>),
    Drawdown(Arc<Drawdown>),
}

impl UserKey {
    /// A key from a user id (copied).
    pub fn new(user: &str) -> Self {
        UserKey(KeyRepr::Id(Arc::from(user)))
    }

    /// The key of a drawdown's user, sharing the drawdown (no copy of the id).
    pub fn of_drawdown(drawdown: &Arc<Drawdown>) -> Self {
        UserKey(KeyRepr::Drawdown(Arc::clone(drawdown)))
    }

    /// The user id.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            KeyRepr::Id(id) => id,
            KeyRepr::Drawdown(d) => d.user.as_str(),
        }
    }
}

impl fmt::Debug for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UserKey").field(&self.as_str()).finish()
    }
}

impl PartialEq for UserKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for UserKey {}

impl Hash for UserKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

/// Admission priority. Ordered: `Critical > Default > Low`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Shed first (a caller's `X-Priority: low`).
    Low,
    /// Credit-line queries, appeals.
    Default,
    /// Drawdowns.
    Critical,
}

impl Priority {
    /// All priorities, lowest first (the order of [`Priority::index`]).
    pub const ALL: [Priority; 3] = [Self::Low, Self::Default, Self::Critical];

    /// Position in [`Priority::ALL`] (0 = low), for per-priority tables.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The name as used in metrics labels and `X-Priority`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Default => "default",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The instant by which the caller needs an answer, as a request extension of its own for
/// the router's handlers (`axum::Extension<Deadline>`): the gateway's innermost service
/// copies it from [`RequestFacts::deadline`] for a request it routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(pub tokio::time::Instant);

/// The user id a path names (`/v1/credit-lines/{user_id}`, `/admin/credit-lines/{user_id}`):
/// its last segment, percent-decoded; `None` when it does not decode to UTF-8. The one
/// place the id is read from a path: the per-user rate limit at the edge and the
/// handlers use it alike, so `u%2Dalice` is `u-alice` to both.
pub fn path_user(path: &str) -> Option<Cow<'_, str>> {
    let last = path.rsplit('/').next()?;
    percent_encoding::percent_decode_str(last)
        .decode_utf8()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_users_are_percent_decoded_once() {
        assert_eq!(
            path_user("/v1/credit-lines/u-alice").as_deref(),
            Some("u-alice")
        );
        assert_eq!(
            path_user("/v1/credit-lines/u%2Dalice").as_deref(),
            Some("u-alice")
        );
        assert_eq!(
            path_user("/v1/credit-lines/u%252D").as_deref(),
            Some("u%2D")
        );
        assert_eq!(path_user("/v1/credit-lines/u%FF"), None);
    }

    #[test]
    fn priorities_order_and_index() {
        assert!(Priority::Critical > Priority::Default);
        assert!(Priority::Default > Priority::Low);
        for (i, p) in Priority::ALL.into_iter().enumerate() {
            assert_eq!(p.index(), i);
        }
        assert_eq!(RouteClass::Drawdown.default_priority(), Priority::Critical);
        assert_eq!(RouteClass::Appeal.default_priority(), Priority::Default);
    }

    #[test]
    fn routes_are_classified_before_routing() {
        use http::Method;
        let class = RouteClass::of;
        assert_eq!(class(&Method::POST, "/v1/drawdowns"), RouteClass::Drawdown);
        assert_eq!(
            class(&Method::GET, "/v1/credit-lines/u-1"),
            RouteClass::CreditLine
        );
        assert_eq!(class(&Method::POST, "/v1/appeals"), RouteClass::Appeal);
        assert_eq!(class(&Method::GET, "/v1/appeals/ap_1"), RouteClass::Appeal);
        assert_eq!(
            class(&Method::GET, "/v1/reason-codes"),
            RouteClass::ReasonCodes
        );
        assert_eq!(class(&Method::PUT, "/admin/thresholds"), RouteClass::Admin);
        assert_eq!(class(&Method::GET, "/healthz"), RouteClass::Ops);
        assert_eq!(class(&Method::GET, "/metrics"), RouteClass::Ops);
        // A path or method no route answers is no route's class.
        for (method, path) in [
            (Method::GET, "/v1/drawdowns"),
            (Method::POST, "/v1/drawdowns/x"),
            (Method::GET, "/v1/nope"),
            (Method::GET, "/v1"),
            (Method::GET, "/v1/credit-lines/"),
            (Method::GET, "/v1/credit-lines/u-1/x"),
            (Method::POST, "/v1/drawdowns/"),
            (Method::PUT, "/v1/credit-lines/u-1"),
            (Method::GET, "/v1/appeals"),
            (Method::POST, "/v1/reason-codes"),
            (Method::GET, "/v1/reason-codes/x"),
        ] {
            assert_eq!(
                class(&method, path),
                RouteClass::Unrouted,
                "{method} {path}"
            );
        }
        for c in RouteClass::ALL {
            assert_eq!(RouteClass::ALL[c as usize], c);
        }
        let limited: Vec<_> = RouteClass::ALL
            .into_iter()
            .filter(|c| c.is_limited())
            .collect();
        assert_eq!(
            limited,
            [
                RouteClass::Drawdown,
                RouteClass::CreditLine,
                RouteClass::Appeal,
                RouteClass::ReasonCodes,
                RouteClass::Unrouted
            ]
        );
    }

    #[test]
    fn missing_facts_are_the_documented_defaults() {
        let bare = http::Request::new(());
        let facts = RequestFacts::of(&bare);
        assert_eq!(facts.class, None);
        assert!(facts.user.is_none());
        assert_eq!(facts.priority(), Priority::Default);
        assert_eq!(facts.deadline, None);
        assert_eq!(facts.retry_attempt, None);

        let mut req = http::Request::new(());
        req.extensions_mut().insert(RequestFacts {
            class: Some(RouteClass::Drawdown),
            ..RequestFacts::NONE
        });
        // No priority set: the class's default.
        assert_eq!(RequestFacts::of(&req).priority(), Priority::Critical);
        req.extensions_mut().insert(RequestFacts {
            class: Some(RouteClass::Drawdown),
            priority: Some(Priority::Low),
            ..RequestFacts::NONE
        });
        assert_eq!(RequestFacts::of(&req).priority(), Priority::Low);
    }

    #[test]
    fn a_drawdowns_user_key_shares_its_id_and_equals_a_copied_one() {
        let drawdown = Arc::new(Drawdown {
            user: UserId::from_string("u-7".to_owned()).unwrap(),
            amount: Fen::new(100).unwrap(),
            channel: Channel::App,
            device_id: None,
        });
        let shared = UserKey::of_drawdown(&drawdown);
        assert_eq!(shared.as_str(), "u-7");
        assert!(std::ptr::eq(shared.as_str(), drawdown.user.as_str()));
        assert_eq!(shared, UserKey::new("u-7"));
        // Hashed as its id, like a copied key (a map keyed by either finds the other).
        let state = std::hash::RandomState::new();
        let hash = |k: &UserKey| std::hash::BuildHasher::hash_one(&state, k);
        assert_eq!(hash(&shared), hash(&UserKey::new("u-7")));
        assert_ne!(shared, UserKey::new("u-8"));
    }
}
