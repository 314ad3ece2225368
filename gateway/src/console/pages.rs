//! The console's pages: one handler per page or form, each rendering an askama template
//! (`gateway/templates/console/`). Reads go to the store and the policy as the admin routes'
//! handlers do; writes call the admin handlers themselves, so a write from the console is
//! the same write, validated and counted the same way, as one through `/admin/*`.

use super::i18n::{LANG_COOKIE, Lang, Text};
use super::session::{Session, random_token};
use super::{Console, cookie};
use crate::api::auth::Operator;
use crate::api::error::{ApiError, ErrorCode};
use crate::api::handlers::{self, ApiPath};
use crate::config::CookieSecure;
use crate::request::Caller;
use crate::store::{AppealRecord, AppealStatus, DecisionRecord, ReasonRecord, Store};
use crate::trail::{TrailEntry, TrailKind};
use askama::Template;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use jiff::Timestamp;
use risk_core::ReasonCode;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The session cookie.
pub(super) const SESSION_COOKIE: &str = "lg_console";
/// The sign-in form's CSRF cookie (there is no session yet to hold its token).
const PRE_COOKIE: &str = "lg_console_pre";
/// The largest form body read.
const FORM_LIMIT: usize = 16 * 1024;
/// Appeals listed at most (the admin route's own maximum).
const APPEALS_LISTED: usize = 1_000;

// ---------------------------------------------------------------------------------------
// What every page shares.

/// The frame of every page (`base.html`).
pub(super) struct Chrome {
    t: &'static Text,
    lang: &'static str,
    html_lang: &'static str,
    title: String,
    section: &'static str,
    signed_in: bool,
    operator: String,
    csrf: String,
    lang_en: String,
    lang_zh: String,
    notice: Option<&'static str>,
    error: Option<String>,
}

/// A request as a page sees it: language, session, and the cookies to set.
pub(super) struct Ctx {
    lang: Lang,
    /// `?lang=` was given: remember it.
    set_lang: bool,
    session: Option<Session>,
    path: String,
    query: Vec<(String, String)>,
    secure: bool,
    cookies: Vec<String>,
}

impl Ctx {
    pub(super) fn of(console: &Console, uri: &Uri, headers: &HeaderMap) -> Ctx {
        let query: Vec<(String, String)> = uri
            .query()
            .and_then(|q| serde_urlencoded::from_str(q).ok())
            .unwrap_or_default();
        let asked = query
            .iter()
            .find(|(k, _)| k == "lang")
            .map(|(_, v)| v.as_str());
        let lang = Lang::negotiate(asked, cookie(headers, LANG_COOKIE), headers);
        let session = cookie(headers, SESSION_COOKIE).and_then(|id| console.sessions.get(id));
        let forwarded_tls = headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
        let secure = match console.app.config.console.cookie_secure {
            CookieSecure::Always => true,
            CookieSecure::Never => false,
            CookieSecure::Auto => uri.scheme_str() == Some("https") || forwarded_tls,
        };
        Ctx {
            set_lang: asked.and_then(Lang::parse).is_some(),
            lang,
            session,
            path: uri.path().to_owned(),
            query,
            secure,
            cookies: Vec::new(),
        }
    }

    fn t(&self) -> &'static Text {
        self.lang.text()
    }

    fn q(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// This page in language `l`: the same path and query, `lang` replaced.
    fn href_in(&self, l: Lang) -> String {
        let mut q: Vec<(&str, &str)> = self
            .query
            .iter()
            .filter(|(k, _)| k != "lang")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        q.push(("lang", l.code()));
        let encoded = serde_urlencoded::to_string(&q).unwrap_or_default();
        format!("{}?{encoded}", self.path)
    }

    fn chrome(&self, section: &'static str, title: impl Into<String>) -> Chrome {
        Chrome {
            t: self.t(),
            lang: self.lang.code(),
            html_lang: self.lang.html(),
            title: title.into(),
            section,
            signed_in: self.session.is_some(),
            operator: self
                .session
                .as_ref()
                .map(|s| s.operator.to_string())
                .unwrap_or_default(),
            csrf: self
                .session
                .as_ref()
                .map(|s| s.csrf.clone())
                .unwrap_or_default(),
            lang_en: self.href_in(Lang::En),
            lang_zh: self.href_in(Lang::Zh),
            notice: None,
            error: None,
        }
    }

    /// A `Set-Cookie` value for the console's path, HttpOnly and SameSite=Strict.
    fn cookie(&self, name: &str, value: &str, max_age_s: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{name}={value}; Path=/console; Max-Age={max_age_s}; HttpOnly; SameSite=Strict{secure}"
        )
    }

    /// Answers `body` with `status`, the console's security headers and the cookies due.
    fn respond(mut self, status: StatusCode, body: Response) -> Response {
        if self.set_lang {
            let c = self.cookie(LANG_COOKIE, self.lang.code(), 365 * 24 * 3600);
            self.cookies.push(c);
        }
        let mut res = body;
        *res.status_mut() = status;
        let h = res.headers_mut();
        for c in &self.cookies {
            if let Ok(v) = HeaderValue::from_str(c) {
                h.append(header::SET_COOKIE, v);
            }
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; \
                 connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        res
    }

    fn page(self, status: StatusCode, page: &impl Template) -> Response {
        let body = match page.render() {
            Ok(html) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                )],
                html,
            )
                .into_response(),
            Err(e) => {
                // A template that cannot render is a bug: a 500, with the cause in the log.
                tracing::error!(cause = %e, "console template failed to render");
                return ApiError::new(ErrorCode::Internal).into_response();
            }
        };
        self.respond(status, body)
    }

    fn redirect(self, to: &str) -> Response {
        let mut res = StatusCode::SEE_OTHER.into_response();
        if let Ok(v) = HeaderValue::from_str(to) {
            res.headers_mut().insert(header::LOCATION, v);
        }
        self.respond(StatusCode::SEE_OTHER, res)
    }

    /// A short page saying what happened (a refusal, a missing record), with a way back.
    /// The refusal's code goes with the response for the gateway's refusal metrics.
    fn message(
        self,
        status: StatusCode,
        code: Option<ErrorCode>,
        text: impl Into<String>,
        back: &str,
    ) -> Response {
        let text = text.into();
        let page = MessagePage {
            c: self.chrome("", text),
            back: back.to_owned(),
        };
        let mut res = self.page(status, &page);
        if let Some(code) = code {
            res.extensions_mut().insert(code);
        }
        res
    }

    /// The page of a store or handler refusal, in the page's language.
    fn refusal(self, e: &ApiError, back: &str) -> Response {
        let code = e.code();
        let (en, zh) = code.default_messages();
        let text = match self.lang {
            Lang::En => format!("{en} ({})", code.as_str()),
            Lang::Zh => format!("{zh}（{}）", code.as_str()),
        };
        self.message(code.status(), Some(code), text, back)
    }
}

#[derive(Template)]
#[template(path = "console/message.html")]
struct MessagePage {
    c: Chrome,
    back: String,
}

/// The context of a page that needs a session, as an extractor: a handler taking
/// `SignedIn(ctx)` runs only for a signed-in operator; anyone else is sent to the sign-in
/// form (the rejection is that redirect, with the console's headers).
pub(super) struct SignedIn(pub(super) Ctx);

impl FromRequestParts<Console> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        let ctx = Ctx::of(console, &parts.uri, &parts.headers);
        if ctx.session.is_some() {
            Ok(SignedIn(ctx))
        } else {
            Err(ctx.redirect("/console/sign-in"))
        }
    }
}

/// Any page's context (signed in or not), as an extractor.
impl FromRequestParts<Console> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Console,
    ) -> Result<Self, Self::Rejection> {
        Ok(Ctx::of(console, &parts.uri, &parts.headers))
    }
}

/// Reads a form (bounded in size and time) and checks its `csrf` field against the
/// session (or, for the sign-in form, against its cookie): a write without the right token
/// changes nothing and is answered 403.
async fn form<T: serde::de::DeserializeOwned>(
    console: &Console,
    req: Request,
    pre_session: bool,
) -> Result<(Ctx, T), Response> {
    let (parts, body) = req.into_parts();
    let ctx = Ctx::of(console, &parts.uri, &parts.headers);
    if !pre_session && ctx.session.is_none() {
        let t = ctx.t();
        return Err(ctx.message(
            StatusCode::UNAUTHORIZED,
            Some(ErrorCode::Unauthenticated),
            t.session_ended,
            "/console/sign-in",
        ));
    }
    let read = tokio::time::timeout(
        console.app.config.server.body_read_timeout,
        axum::body::to_bytes(body, FORM_LIMIT),
    )
    .await;
    let bytes: Bytes = match read {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return Err(ApiError::new(ErrorCode::BodyTooLarge).into_response());
        }
        Err(_) => return Err(ApiError::new(ErrorCode::RequestTimeout).into_response()),
    };
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
    let sent = fields
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let expected = if pre_session {
        cookie(&parts.headers, PRE_COOKIE).map(|c| Session {
            operator: Arc::from(""),
            csrf: c.to_owned(),
        })
    } else {
        ctx.session.clone()
    };
    if !expected.is_some_and(|s| !sent.is_empty() && s.csrf_matches(sent)) {
        let t = ctx.t();
        return Err(ctx.message(
            StatusCode::FORBIDDEN,
            Some(ErrorCode::Forbidden),
            t.refused_csrf,
            "/console",
        ));
    }
    match serde_urlencoded::from_bytes::<T>(&bytes) {
        Ok(v) => Ok((ctx, v)),
        Err(e) => {
            let text = format!("{}: {e}", ErrorCode::InvalidRequest.as_str());
            Err(ctx.message(
                StatusCode::BAD_REQUEST,
                Some(ErrorCode::InvalidRequest),
                text,
                "/console",
            ))
        }
    }
}

fn yuan(fen: u64) -> String {
    let whole = (fen / 100).to_string();
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("¥{grouped}.{:02}", fen % 100)
}

/// An API timestamp (RFC 3339 with offset) for people: date and time, with the offset.
fn when(ts: &str) -> String {
    ts.replacen('T', " ", 1)
}

fn is_overdue(a: &AppealRecord, now: Timestamp) -> bool {
    a.status == AppealStatus::Open && a.due_at.parse::<Timestamp>().is_ok_and(|due| due < now)
}

fn status_text(t: &Text, s: AppealStatus) -> &'static str {
    match s {
        AppealStatus::Open => t.status_open,
        AppealStatus::Upheld => t.status_upheld,
        AppealStatus::Overturned => t.status_overturned,
    }
}

fn status_class(s: AppealStatus) -> &'static str {
    match s {
        AppealStatus::Open => "open",
        AppealStatus::Upheld => "upheld",
        AppealStatus::Overturned => "overturned",
    }
}

fn query_value(v: &str) -> String {
    serde_urlencoded::to_string([("", v)])
        .map(|s| s.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Sign-in and sign-out.

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    c: Chrome,
}

/// `GET /console/sign-in`.
pub(super) async fn sign_in_page(ctx: Ctx) -> Response {
    if ctx.session.is_some() {
        return ctx.redirect("/console/appeals");
    }
    sign_in_form(ctx, StatusCode::OK, None)
}

fn sign_in_form(mut ctx: Ctx, status: StatusCode, error: Option<&str>) -> Response {
    let pre = random_token();
    let c = ctx.cookie(PRE_COOKIE, &pre, 3600);
    ctx.cookies.push(c);
    let mut chrome = ctx.chrome("", ctx.t().sign_in_title);
    // Signed out: the form's token is the pre-session cookie's.
    chrome.csrf = pre;
    chrome.error = error.map(str::to_owned);
    ctx.page(status, &SignInPage { c: chrome })
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    token: String,
}

/// `POST /console/sign-in`: the admin token opens a session; a caller key is refused.
/// Attempts are throttled per client address ([`super::throttle`]) before the token is
/// compared: a throttled attempt is answered 429 with `Retry-After`, its token unread.
pub(super) async fn sign_in(State(console): State<Console>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let (mut ctx, f) = match form::<SignInForm>(&console, req, true).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    if let Err(wait) = console.throttle.attempt(peer) {
        // Whole seconds, rounded up: a client told 0 would come back at once.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        tracing::info!(peer = ?peer, retry_after_s = seconds, "console sign-in throttled");
        let text = ctx
            .t()
            .sign_in_throttled
            .replace("{seconds}", &seconds.to_string());
        let mut res = sign_in_form(ctx, StatusCode::TOO_MANY_REQUESTS, Some(&text));
        if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return res;
    }
    match console.app.auth.load().console_operator(&f.token) {
        Ok(operator) => {
            tracing::info!(operator = %operator, "console sign-in");
            let id = console.sessions.start(operator);
            let max = console.app.config.console.session_max.as_secs();
            let c = ctx.cookie(SESSION_COOKIE, &id, max);
            ctx.cookies.push(c);
            let c = ctx.cookie(PRE_COOKIE, "", 0);
            ctx.cookies.push(c);
            ctx.redirect("/console/appeals")
        }
        Err(e) => {
            let t = ctx.t();
            let (status, text) = if e.code() == ErrorCode::Forbidden {
                (StatusCode::FORBIDDEN, t.refused_caller_key)
            } else {
                (StatusCode::UNAUTHORIZED, t.refused_unknown_token)
            };
            tracing::info!(code = e.code().as_str(), "console sign-in refused");
            let mut res = sign_in_form(ctx, status, Some(text));
            res.extensions_mut().insert(e.code());
            res
        }
    }
}

#[derive(Deserialize)]
struct Empty {}

/// `POST /console/sign-out`.
pub(super) async fn sign_out(State(console): State<Console>, req: Request) -> Response {
    let id = cookie(req.headers(), SESSION_COOKIE).map(str::to_owned);
    let (mut ctx, _) = match form::<Empty>(&console, req, false).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    if let Some(id) = id {
        console.sessions.end(&id);
    }
    let c = ctx.cookie(SESSION_COOKIE, "", 0);
    ctx.cookies.push(c);
    ctx.redirect("/console/sign-in")
}

/// `GET /console`.
pub(super) async fn home(SignedIn(ctx): SignedIn) -> Response {
    ctx.redirect("/console/appeals")
}

// ---------------------------------------------------------------------------------------
// Appeals.

struct AppealRow {
    id: String,
    user: String,
    user_q: String,
    created: String,
    due: String,
    due_at: String,
    overdue: bool,
    status: &'static str,
    status_class: &'static str,
}

impl AppealRow {
    fn of(t: &Text, a: &AppealRecord, now: Timestamp) -> AppealRow {
        AppealRow {
            id: a.appeal_id.clone(),
            user: a.user_id.clone(),
            user_q: query_value(&a.user_id),
            created: when(&a.created_at),
            due: when(&a.due_at),
            due_at: a.due_at.clone(),
            overdue: is_overdue(a, now),
            status: status_text(t, a.status),
            status_class: status_class(a.status),
        }
    }
}

#[derive(Template)]
#[template(path = "console/appeals.html")]
struct AppealsPage {
    c: Chrome,
    filters: Vec<(&'static str, &'static str)>,
    filter: String,
    filter_label: &'static str,
    sort_desc: bool,
    open_count: usize,
    overdue_count: usize,
    rows: Vec<AppealRow>,
}

/// `GET /console/appeals?status=open|overdue|resolved|all&sort=due|-due`.
pub(super) async fn appeals(State(console): State<Console>, SignedIn(ctx): SignedIn) -> Response {
    let t = ctx.t();
    let filter = match ctx.q("status") {
        Some(f @ ("open" | "overdue" | "resolved" | "all")) => f.to_owned(),
        _ => "open".to_owned(),
    };
    let sort_desc = ctx.q("sort") == Some("-due");
    let app = &console.app;
    let now = app.clock.now();
    let (open, all) = match filter.as_str() {
        "open" | "overdue" => (
            app.store
                .list_appeals(Some(AppealStatus::Open), APPEALS_LISTED)
                .await,
            None,
        ),
        _ => (
            app.store
                .list_appeals(Some(AppealStatus::Open), APPEALS_LISTED)
                .await,
            Some(app.store.list_appeals(None, APPEALS_LISTED).await),
        ),
    };
    let open = match open {
        Ok(v) => v,
        Err(e) => return ctx.refusal(&ApiError::from(e), "/console/appeals"),
    };
    let listed = match all {
        None => open.clone(),
        Some(Ok(v)) => v,
        Some(Err(e)) => return ctx.refusal(&ApiError::from(e), "/console/appeals"),
    };
    let overdue_count = open.iter().filter(|a| is_overdue(a, now)).count();
    let mut rows: Vec<AppealRow> = listed
        .iter()
        .filter(|a| match filter.as_str() {
            "overdue" => is_overdue(a, now),
            "resolved" => a.status != AppealStatus::Open,
            _ => true,
        })
        .map(|a| AppealRow::of(t, a, now))
        .collect();
    // RFC 3339 in one zone sorts as text; parse to compare instants across offsets.
    rows.sort_by_key(|r| r.due_at.parse::<Timestamp>().ok());
    if sort_desc {
        rows.reverse();
    }
    let filters = vec![
        ("open", t.filter_open),
        ("overdue", t.filter_overdue),
        ("resolved", t.filter_resolved),
        ("all", t.filter_all),
    ];
    let filter_label = filters
        .iter()
        .find(|(v, _)| *v == filter)
        .map_or(t.filter_open, |(_, l)| l);
    let page = AppealsPage {
        c: ctx.chrome("appeals", t.appeals_title),
        filters,
        filter,
        filter_label,
        sort_desc,
        open_count: open.len(),
        overdue_count,
        rows,
    };
    ctx.page(StatusCode::OK, &page)
}

struct ReasonView {
    code: &'static str,
    appealable: bool,
    message: String,
    message_zh: String,
    guidance: String,
    guidance_zh: String,
    figures: String,
    suggested: Option<String>,
    retry_at: Option<String>,
}

impl ReasonView {
    fn of(t: &Text, r: &ReasonRecord) -> ReasonView {
        let unit = r.unit.as_deref().unwrap_or("");
        // The wire's units in the page's language; a flag is 0 or 1 as it stands.
        let fig = |v: u64| match unit {
            "fen" => yuan(v),
            "days" => format!("{v} {}", t.unit_days),
            "count" => format!("{v} {}", t.unit_count),
            "score" => format!("{v} {}", t.unit_score),
            _ => v.to_string(),
        };
        let mut figures = Vec::new();
        if let Some(l) = r.limit {
            figures.push(format!("{} {}", t.limit, fig(l)));
        }
        if let Some(a) = r.actual {
            figures.push(format!("{} {}", t.actual, fig(a)));
        }
        ReasonView {
            code: r.code.as_str(),
            appealable: r.appealable,
            message: r.message.clone(),
            message_zh: r.message_zh.clone(),
            guidance: r.guidance.clone(),
            guidance_zh: r.guidance_zh.clone(),
            figures: figures.join(" · "),
            suggested: r.suggested_amount_fen.map(yuan),
            retry_at: r.retry_at.as_deref().map(when),
        }
    }
}

struct DecisionView {
    id: String,
    outcome: &'static str,
    outcome_class: &'static str,
    amount: String,
    policy: String,
    threshold_version: u64,
    evaluated_at: String,
    drawable_now: String,
    reasons: Vec<ReasonView>,
    bureau: &'static str,
    bureau_codes: String,
}

const BUREAU_CODES: [ReasonCode; 4] = [
    ReasonCode::BureauOverdue,
    ReasonCode::BureauScoreLow,
    ReasonCode::BureauScoreReview,
    ReasonCode::BureauUnavailableReview,
];

impl DecisionView {
    fn of(t: &Text, d: &DecisionRecord, bureau_on: bool) -> DecisionView {
        use risk_core::Outcome;
        let (outcome, outcome_class) = match d.outcome {
            Outcome::Approved => (t.outcome_approved, "approved"),
            Outcome::Rejected => (t.outcome_rejected, "rejected"),
            Outcome::Review => (t.outcome_review, "review"),
        };
        let bureau_codes: Vec<&str> = d
            .reasons
            .iter()
            .filter(|r| BUREAU_CODES.contains(&r.code))
            .map(|r| r.code.as_str())
            .collect();
        // What the record tells of the bureau: its codes when one decided; otherwise whether
        // the bureau is configured at all (the record does not keep whether it was asked).
        let bureau = if bureau_codes.contains(&ReasonCode::BureauUnavailableReview.as_str()) {
            t.bureau_unavailable
        } else if !bureau_codes.is_empty() {
            t.bureau_answered
        } else if bureau_on {
            t.bureau_no_code
        } else {
            t.bureau_off
        };
        DecisionView {
            id: d.decision_id.clone(),
            outcome,
            outcome_class,
            amount: yuan(d.amount_fen),
            policy: d.policy.clone(),
            threshold_version: d.threshold_version,
            evaluated_at: when(&d.evaluated_at),
            drawable_now: yuan(d.drawable_now_fen),
            reasons: d.reasons.iter().map(|r| ReasonView::of(t, r)).collect(),
            bureau,
            bureau_codes: bureau_codes.join(", "),
        }
    }
}

#[derive(Template)]
#[template(path = "console/appeal.html")]
struct AppealPage {
    c: Chrome,
    a: AppealRecord,
    user_q: String,
    status: &'static str,
    status_class: &'static str,
    overdue: bool,
    open: bool,
    created: String,
    due: String,
    resolved: Option<String>,
    decision: Option<DecisionView>,
}

/// `GET /console/appeals/{appeal_id}`: the appeal and the decision it contests.
pub(super) async fn appeal(
    State(console): State<Console>,
    Path(id): Path<String>,
    SignedIn(mut ctx): SignedIn,
) -> Response {
    let t = ctx.t();
    let app = &console.app;
    let a = match app.store.get_appeal_any(&id).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            return ctx.refusal(
                &ApiError::new(ErrorCode::AppealNotFound),
                "/console/appeals",
            );
        }
        Err(e) => return ctx.refusal(&ApiError::from(e), "/console/appeals"),
    };
    let decision = match app.store.get_decision_any(&a.decision_id).await {
        Ok(d) => d.map(|d| DecisionView::of(t, &d, app.bureau.load().is_some())),
        Err(e) => return ctx.refusal(&ApiError::from(e), "/console/appeals"),
    };
    let now = app.clock.now();
    let mut chrome = ctx.chrome("appeals", format!("{} {}", t.appeal_title, a.appeal_id));
    if ctx.q("done") == Some("resolved") {
        chrome.notice = Some(t.resolved_notice);
    }
    ctx.query.clear();
    let page = AppealPage {
        c: chrome,
        user_q: query_value(&a.user_id),
        status: status_text(t, a.status),
        status_class: status_class(a.status),
        overdue: is_overdue(&a, now),
        open: a.status == AppealStatus::Open,
        created: when(&a.created_at),
        due: when(&a.due_at),
        resolved: a.resolved_at.as_deref().map(when),
        decision,
        a,
    };
    ctx.page(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "console/decision_page.html")]
struct DecisionPage {
    c: Chrome,
    d: DecisionView,
}

/// `GET /console/decisions/{decision_id}`: a decision of any caller.
pub(super) async fn decision(
    State(console): State<Console>,
    Path(id): Path<String>,
    SignedIn(ctx): SignedIn,
) -> Response {
    let t = ctx.t();
    let app = &console.app;
    match app.store.get_decision_any(&id).await {
        Ok(Some(d)) => {
            let page = DecisionPage {
                c: ctx.chrome("customers", format!("{} {id}", t.decision)),
                d: DecisionView::of(t, &d, app.bureau.load().is_some()),
            };
            ctx.page(StatusCode::OK, &page)
        }
        Ok(None) => ctx.refusal(
            &ApiError::new(ErrorCode::DecisionNotFound),
            "/console/customers",
        ),
        Err(e) => ctx.refusal(&ApiError::from(e), "/console/customers"),
    }
}

#[derive(Deserialize)]
struct ResolveForm {
    resolution: crate::store::Resolution,
    #[serde(default)]
    note: String,
}

/// The operator a write is made as (and recorded in the audit trail as): the session's.
fn operator_of(ctx: &Ctx) -> Option<Operator> {
    ctx.session.as_ref().map(|s| Operator(s.operator.clone()))
}

/// `POST /console/appeals/{appeal_id}/resolve`: through the admin route's handler, as the
/// signed-in operator.
pub(super) async fn resolve(
    State(console): State<Console>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (ctx, f) = match form::<ResolveForm>(&console, req, false).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    let back = format!("/console/appeals/{id}");
    let Some(operator) = operator_of(&ctx) else {
        return ctx.refusal(&ApiError::new(ErrorCode::Unauthenticated), &back);
    };
    let body = serde_json::json!({ "resolution": f.resolution, "note": f.note });
    let answered = handlers::resolve_appeal(
        State(console.app.clone()),
        operator,
        ApiPath(id.clone()),
        Bytes::from(body.to_string()),
    )
    .await;
    match answered {
        Ok(_) => ctx.redirect(&format!("{back}?done=resolved")),
        Err(e) => ctx.refusal(&e, &back),
    }
}

// ---------------------------------------------------------------------------------------
// Peak windows.

struct PolicyNow {
    window: String,
    why: String,
    forced: bool,
    since: String,
    ends_at: Option<String>,
    profile: String,
    quota: String,
    admission: String,
}

struct WindowRow {
    name: String,
    when: String,
    profile: String,
    quota: String,
    active: bool,
}

#[derive(Template)]
#[template(path = "console/policy.html")]
struct PolicyPage {
    c: Chrome,
    now: PolicyNow,
    windows: Vec<WindowRow>,
}

/// A per-user quota for people: `12 / min (burst 6) · D: 6 / min (burst 3)`.
fn quota(t: &Text, l: &crate::policy::WindowLimits) -> String {
    let rate = |per_minute: u32, burst: u32| {
        format!("{per_minute} {} ({} {burst})", t.per_minute, t.burst)
    };
    let mut parts = vec![rate(l.user.per_minute, l.user.burst)];
    for (grade, r) in &l.user.grades {
        parts.push(format!("{grade:?}: {}", rate(r.per_minute, r.burst)));
    }
    parts.join(" · ")
}

/// A JSON value on one line, for a table cell.
fn compact(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `GET /console/policy`.
pub(super) async fn policy(State(console): State<Console>, SignedIn(ctx): SignedIn) -> Response {
    let t = ctx.t();
    let app = &console.app;
    let snap = app.policy.current();
    let compiled = app.policy.compiled();
    let stamp = |z: &jiff::ZonedDateTime| crate::clock::rfc3339(z.timestamp(), z.offset());
    let now = PolicyNow {
        window: snap.window.clone(),
        why: snap.why.clone(),
        forced: snap.forced,
        since: when(&stamp(&snap.since)),
        ends_at: snap.ends_at.as_ref().map(|z| when(&stamp(z))),
        profile: snap.profile.clone(),
        quota: quota(t, &snap.limits),
        admission: format!("{} / {}", snap.limits.concurrency, snap.limits.queue),
    };
    let windows = app
        .config
        .policy
        .windows
        .iter()
        .map(|w| {
            let when = match (&w.start, &w.end, &w.daily_start, &w.daily_end) {
                (Some(s), Some(e), _, _) => format!("{s} – {e}"),
                (_, _, Some(s), Some(e)) => format!("{} {s} – {e}", t.daily),
                _ => String::new(),
            };
            let limits = compiled.limits_of(&w.name);
            WindowRow {
                name: w.name.clone(),
                when,
                profile: limits.map(|l| l.profile.clone()).unwrap_or_default(),
                quota: limits.map(|l| quota(t, l)).unwrap_or_default(),
                active: snap.window == w.name,
            }
        })
        .collect();
    let mut chrome = ctx.chrome("policy", t.policy_title);
    if ctx.q("done") == Some("forced") {
        chrome.notice = Some(t.forced_notice);
    }
    ctx.page(
        StatusCode::OK,
        &PolicyPage {
            c: chrome,
            now,
            windows,
        },
    )
}

#[derive(Template)]
#[template(path = "console/confirm.html")]
struct ConfirmPage {
    c: Chrome,
    from: String,
    to: String,
    window: String,
    effect: &'static str,
    changes: Vec<(String, String, String)>,
}

/// Flattens a JSON value into dotted keys.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), compact(other));
        }
    }
}

/// `GET /console/policy/force?window=NAME` (empty: back to the calendar): what would change.
pub(super) async fn confirm_force(
    State(console): State<Console>,
    SignedIn(ctx): SignedIn,
) -> Response {
    let t = ctx.t();
    let app = &console.app;
    let window = ctx.q("window").unwrap_or("").to_owned();
    let snap = app.policy.current();
    let compiled = app.policy.compiled();
    let (to, effect, target) = if window.is_empty() {
        // What the calendar would choose now, as the policy would on release.
        (t.by_calendar.to_owned(), t.confirm_calendar_effect, None)
    } else {
        match compiled.limits_of(&window) {
            Some(l) => (window.clone(), t.confirm_effect, Some(Arc::clone(l))),
            _ => {
                return ctx.refusal(&ApiError::new(ErrorCode::InvalidRequest), "/console/policy");
            }
        }
    };
    let mut changes = Vec::new();
    if let Some(target) = target {
        let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
        if let Ok(v) = serde_json::to_value(&snap.limits) {
            flatten("", &v, &mut before);
        }
        if let Ok(v) = serde_json::to_value(&*target) {
            flatten("", &v, &mut after);
        }
        for (k, a) in &after {
            let b = before.get(k).cloned().unwrap_or_default();
            if &b != a {
                changes.push((k.clone(), b, a.clone()));
            }
        }
    }
    let page = ConfirmPage {
        c: ctx.chrome("policy", t.confirm_title),
        from: snap.window.clone(),
        to,
        window,
        effect,
        changes,
    };
    ctx.page(StatusCode::OK, &page)
}

#[derive(Deserialize)]
struct ForceForm {
    #[serde(default)]
    window: String,
}

/// `POST /console/policy/force`: through the admin route's handler.
pub(super) async fn force(State(console): State<Console>, req: Request) -> Response {
    let (ctx, f) = match form::<ForceForm>(&console, req, false).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    let Some(operator) = operator_of(&ctx) else {
        return ctx.refusal(
            &ApiError::new(ErrorCode::Unauthenticated),
            "/console/policy",
        );
    };
    let window = (!f.window.is_empty()).then_some(f.window);
    let body = serde_json::json!({ "window": window });
    let answered = handlers::force_policy(
        State(console.app.clone()),
        operator,
        Bytes::from(body.to_string()),
    )
    .await;
    match answered {
        Ok(_) => ctx.redirect("/console/policy?done=forced"),
        Err(e) => ctx.refusal(&e, "/console/policy"),
    }
}

// ---------------------------------------------------------------------------------------
// Customers.

struct QuoteView {
    limit: String,
    used: String,
    available: String,
    drawable: String,
    drawable_fen: u64,
    policy: String,
    threshold_version: u64,
    constraints: Vec<ReasonView>,
}

struct TrailRow {
    at: String,
    answer: String,
    class: &'static str,
    decision: Option<String>,
    detail: String,
}

impl TrailRow {
    fn of(t: &Text, e: &TrailEntry, zone: &jiff::tz::TimeZone) -> TrailRow {
        use risk_core::Outcome;
        let at = when(&crate::clock::rfc3339(e.at, zone.to_offset(e.at)));
        match &e.kind {
            TrailKind::Decision {
                decision_id,
                outcome,
                amount_fen,
                reasons,
                policy,
            } => {
                let (answer, class) = match outcome {
                    Outcome::Approved => (t.outcome_approved, "outcome-approved"),
                    Outcome::Rejected => (t.outcome_rejected, "outcome-rejected"),
                    Outcome::Review => (t.outcome_review, "outcome-review"),
                };
                let mut detail = format!("{} · {policy}", yuan(*amount_fen));
                for r in reasons {
                    detail.push_str(" · ");
                    detail.push_str(r.as_str());
                }
                TrailRow {
                    at,
                    answer: answer.to_owned(),
                    class,
                    decision: Some(decision_id.clone()),
                    detail,
                }
            }
            TrailKind::Refused {
                route,
                status,
                code,
            } => TrailRow {
                at,
                answer: format!("{} {status}", t.refused),
                class: "outcome-review",
                decision: None,
                detail: format!("{code} · {route}"),
            },
        }
    }
}

#[derive(Template)]
#[template(path = "console/customers.html")]
struct CustomersPage {
    c: Chrome,
    user: String,
    quote: Option<QuoteView>,
    appeals: Vec<AppealRow>,
    trail_on: bool,
    trail: Vec<TrailRow>,
}

/// The credit-line quote, from the `GET /v1/credit-lines/{user_id}` handler itself.
async fn quote_of(console: &Console, t: &Text, user: &str) -> Result<QuoteView, ApiError> {
    let path = format!(
        "/v1/credit-lines/{}",
        percent_encoding::utf8_percent_encode(user, percent_encoding::NON_ALPHANUMERIC)
    );
    let uri: Uri = path
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::InvalidRequest))?;
    let res = handlers::credit_line(
        State(console.app.clone()),
        axum::Extension(Caller {
            id: Arc::from("console"),
        }),
        None,
        None,
        uri,
    )
    .await?;
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal))?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| ApiError::new(ErrorCode::Internal))?;
    let fen = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let constraints: Vec<ReasonRecord> = v
        .get("constraints")
        .cloned()
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default();
    Ok(QuoteView {
        limit: yuan(fen("limit_fen")),
        used: yuan(fen("used_fen")),
        available: yuan(fen("available_fen")),
        drawable: yuan(fen("drawable_now_fen")),
        drawable_fen: fen("drawable_now_fen"),
        policy: v
            .get("policy")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_owned(),
        threshold_version: fen("threshold_version"),
        constraints: constraints.iter().map(|r| ReasonView::of(t, r)).collect(),
    })
}

/// `GET /console/customers?user=ID`.
pub(super) async fn customers(State(console): State<Console>, SignedIn(ctx): SignedIn) -> Response {
    let t = ctx.t();
    let user = ctx.q("user").unwrap_or("").trim().to_owned();
    let mut chrome = ctx.chrome("customers", t.customers_title);
    let (mut quote, mut appeals) = (None, Vec::new());
    if !user.is_empty() {
        match quote_of(&console, t, &user).await {
            Ok(q) => quote = Some(q),
            Err(e) if e.code() == ErrorCode::UserNotFound => {
                chrome.error = Some(t.user_not_found.to_owned());
            }
            Err(e) if e.code() == ErrorCode::InvalidRequest => {
                chrome.error = Some(format!("{} ({})", t.user_not_found, e.code().as_str()));
            }
            Err(e) => return ctx.refusal(&e, "/console/customers"),
        }
        if quote.is_some() {
            let now = console.app.clock.now();
            match console.app.store.list_appeals(None, APPEALS_LISTED).await {
                Ok(list) => {
                    appeals = list
                        .iter()
                        .filter(|a| a.user_id == user)
                        .map(|a| AppealRow::of(t, a, now))
                        .collect();
                }
                Err(e) => return ctx.refusal(&ApiError::from(e), "/console/customers"),
            }
        }
    }
    let status = if chrome.error.is_some() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    let compiled = console.app.policy.compiled();
    let zone = compiled.zone();
    let trail = console
        .app
        .trail
        .of(&user)
        .iter()
        .map(|e| TrailRow::of(t, e, zone))
        .collect();
    ctx.page(
        status,
        &CustomersPage {
            c: chrome,
            user,
            quote,
            appeals,
            trail_on: console.app.trail.is_on(),
            trail,
        },
    )
}

// ---------------------------------------------------------------------------------------
// Thresholds.

/// Operator changes read at most, newest first, looking for the thresholds' versions.
const HISTORY_SCAN: usize = 5_000;
/// Versions listed at most.
const HISTORY_SHOWN: usize = 20;
/// Differences listed per version before the rest is counted.
const DIFF_SHOWN: usize = 12;
/// Operator changes read per store round trip.
const AUDIT_PAGE: usize = 500;

/// One published thresholds version, from the audit trail.
struct VersionRow {
    version: String,
    live: bool,
    how: &'static str,
    who: String,
    at: String,
    changes: Vec<(String, String, String)>,
    more: usize,
}

impl VersionRow {
    fn of(t: &Text, c: &crate::store::OperatorChange, live: u64) -> VersionRow {
        let cell = |v: &serde_json::Value| match v {
            serde_json::Value::Null => "—".to_owned(),
            other => compact(other),
        };
        let version = c
            .changes
            .iter()
            .find(|f| f.path == "/version")
            .map(|f| cell(&f.after))
            .unwrap_or_default();
        let fields: Vec<_> = c.changes.iter().filter(|f| f.path != "/version").collect();
        VersionRow {
            live: version == live.to_string(),
            version,
            how: if c.action == "shadow.promote" {
                t.history_promoted
            } else {
                t.history_published
            },
            who: c.operator.clone(),
            at: when(&c.at),
            changes: fields
                .iter()
                .take(DIFF_SHOWN)
                .map(|f| (f.path.clone(), cell(&f.before), cell(&f.after)))
                .collect(),
            more: fields.len().saturating_sub(DIFF_SHOWN),
        }
    }
}

/// What the audit trail tells of the thresholds' versions: the newest publications and
/// promotions, newest first, and whether older ones may exist that were not read.
struct History {
    rows: Vec<VersionRow>,
    /// The scan stopped at [`HISTORY_SCAN`] entries before the log's start.
    cut: bool,
    /// The memory store dropped its oldest entries.
    dropped: bool,
}

/// The thresholds' history from the operator audit trail (`thresholds.publish` and
/// `shadow.promote` entries), read back from the newest: at most [`HISTORY_SCAN`] entries
/// in pages of [`AUDIT_PAGE`], one store round trip each.
async fn thresholds_history(
    console: &Console,
    t: &Text,
    live: u64,
) -> Result<History, crate::store::StoreError> {
    let store = &console.app.store;
    let (mut rows, mut scanned, mut before, mut dropped) = (Vec::new(), 0, None, false);
    loop {
        let page = store.operator_changes_back(before, AUDIT_PAGE).await?;
        dropped |= page.dropped > 0;
        let Some(last) = page.entries.last() else {
            return Ok(History {
                rows,
                cut: false,
                dropped,
            });
        };
        before = crate::store::AuditCursor::parse(&last.id);
        scanned += page.entries.len();
        for e in &page.entries {
            if matches!(
                e.change.action.as_str(),
                "thresholds.publish" | "shadow.promote"
            ) && rows.len() < HISTORY_SHOWN
            {
                rows.push(VersionRow::of(t, &e.change, live));
            }
        }
        let short = page.entries.len() < AUDIT_PAGE;
        if short || rows.len() >= HISTORY_SHOWN || scanned >= HISTORY_SCAN || before.is_none() {
            let cut = !short && rows.len() < HISTORY_SHOWN;
            return Ok(History { rows, cut, dropped });
        }
    }
}

#[derive(Template)]
#[template(path = "console/thresholds.html")]
struct ThresholdsPage {
    c: Chrome,
    version: u64,
    candidate: Option<CandidateView>,
    history: Vec<VersionRow>,
    history_read: bool,
    history_cut: bool,
    history_dropped: bool,
    document: String,
}

/// The staged shadow candidate's report, as the thresholds page shows it.
struct CandidateView {
    version: u64,
    staged_by: String,
    staged_at: String,
    drawdowns: u64,
    quotes: u64,
    /// Outcome changes: the transition in words, requests, distinct users.
    changes: Vec<(String, u64, u64)>,
    quotes_lower: (u64, u64),
}

impl CandidateView {
    fn of(t: &Text, r: &crate::shadow::Report) -> CandidateView {
        use crate::shadow::Transition as T;
        let words = |tr: T| {
            let (from, to) = match tr {
                T::ApprovedToRejected => (t.outcome_approved, t.outcome_rejected),
                T::ApprovedToReview => (t.outcome_approved, t.outcome_review),
                T::RejectedToApproved => (t.outcome_rejected, t.outcome_approved),
                T::RejectedToReview => (t.outcome_rejected, t.outcome_review),
                T::ReviewToApproved => (t.outcome_review, t.outcome_approved),
                T::ReviewToRejected => (t.outcome_review, t.outcome_rejected),
            };
            format!("{from} → {to}")
        };
        CandidateView {
            version: r.candidate_version,
            staged_by: r.staged_by.clone(),
            staged_at: r.staged_at.clone(),
            drawdowns: r.drawdowns_evaluated,
            quotes: r.quotes_evaluated,
            changes: r
                .changes
                .iter()
                .map(|k| (words(k.transition), k.count.requests, k.count.users))
                .collect(),
            quotes_lower: (r.quotes_lower.requests, r.quotes_lower.users),
        }
    }
}

/// `GET /console/thresholds`: the live version, the staged shadow candidate's report, its
/// history from the audit trail, and the document in force.
pub(super) async fn thresholds(
    State(console): State<Console>,
    SignedIn(ctx): SignedIn,
) -> Response {
    let t = ctx.t();
    let Some(th) = console.app.thresholds.load_full() else {
        return ctx.message(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(ErrorCode::DependencyUnavailable),
            t.unavailable,
            "/console",
        );
    };
    let mut c = ctx.chrome("thresholds", t.thresholds_title);
    let history = match thresholds_history(&console, t, th.version()).await {
        Ok(h) => Some(h),
        Err(e) => {
            // The live version is still worth showing; the history's absence is said.
            tracing::debug!(cause = %e, "console: the audit trail could not be read");
            c.error = Some(t.history_unavailable.to_owned());
            None
        }
    };
    let document = serde_json::to_string_pretty(th.document()).unwrap_or_default();
    let candidate = console
        .app
        .shadow
        .current()
        .map(|candidate| CandidateView::of(t, &candidate.report()));
    let page = ThresholdsPage {
        c,
        version: th.version(),
        candidate,
        history_read: history.is_some(),
        history_cut: history.as_ref().is_some_and(|h| h.cut),
        history_dropped: history.as_ref().is_some_and(|h| h.dropped),
        history: history.map(|h| h.rows).unwrap_or_default(),
        document,
    };
    ctx.page(StatusCode::OK, &page)
}

// ---------------------------------------------------------------------------------------
// Live refusals.

/// One chart of the live page.
struct ChartView {
    id: &'static str,
    title: &'static str,
    summary: String,
    svg: String,
    grafana: Option<String>,
}

#[derive(Template)]
#[template(path = "console/live.html")]
struct LivePage {
    c: Chrome,
    refusals: Vec<ChartView>,
    admission: Vec<ChartView>,
    sampled_at: Option<String>,
    help: String,
}

/// The dashboard's panel `panel`, over the last 15 minutes, under `base` (`console.grafana_url`).
fn grafana_link(base: Option<&str>, panel: u32) -> Option<String> {
    let base = base?.trim_end_matches('/');
    Some(format!(
        "{base}/d/loan-gateway/loan-gateway?orgId=1&from=now-15m&to=now&viewPanel={panel}"
    ))
}

/// `GET /console/live`: the last minutes of refusals by cause and of admission, from this
/// instance's counters ([`super::live`]).
pub(super) async fn live(State(console): State<Console>, SignedIn(ctx): SignedIn) -> Response {
    use super::live::{self as l, Shape};
    let t = ctx.t();
    let samples = console.live.samples();
    let now = console.app.clock.now();
    let period = l::PERIOD.as_secs();
    let span = l::PERIOD * u32::try_from(l::KEPT).unwrap_or(u32::MAX);
    let minutes = span.as_secs() / 60;
    let frame = l::Frame {
        now,
        span,
        start: t.live_axis_start,
        end: t.live_axis_end,
    };
    let base = console.app.config.console.grafana_url.as_deref();
    let chart = |id, title, points: &[l::Point], shape, summary: String, panel| ChartView {
        id,
        title,
        svg: l::svg(id, title, &summary, points, shape, &frame),
        summary,
        grafana: grafana_link(base, panel),
    };
    let counter = |id: &'static str, title: &'static str, points: Vec<l::Point>, panel: u32| {
        let total: u64 = points.iter().map(|p| p.value).sum();
        let peak = points.iter().map(|p| p.value).max().unwrap_or(0);
        let summary = t
            .live_counter_summary
            .replace("{total}", &total.to_string())
            .replace("{minutes}", &minutes.to_string())
            .replace("{peak}", &peak.to_string())
            .replace("{period}", &period.to_string());
        chart(id, title, &points, Shape::Bars, summary, panel)
    };
    let gauge = |id: &'static str, title: &'static str, points: Vec<l::Point>, panel: u32| {
        let last = points.last().map_or(0, |p| p.value);
        let max = points.iter().map(|p| p.value).max().unwrap_or(0);
        let summary = t
            .live_gauge_summary
            .replace("{now}", &last.to_string())
            .replace("{max}", &max.to_string())
            .replace("{minutes}", &minutes.to_string());
        chart(id, title, &points, Shape::Line, summary, panel)
    };
    let refusals = l::CAUSES
        .iter()
        .enumerate()
        .map(|(i, cause)| {
            let title = t.live_causes.get(i).copied().unwrap_or(cause.key);
            counter(
                cause.key,
                title,
                l::deltas(&samples, |s| s.causes.get(i).copied().unwrap_or(0)),
                cause.panel,
            )
        })
        .collect();
    let admission = vec![
        gauge(
            "admission-limit",
            t.live_limit,
            l::levels(&samples, |s| s.limit),
            l::ADMISSION_PANEL,
        ),
        gauge(
            "admission-in-flight",
            t.live_in_flight,
            l::levels(&samples, |s| s.in_flight),
            l::ADMISSION_PANEL,
        ),
        gauge(
            "admission-queued",
            t.live_queued,
            l::levels(&samples, |s| s.queued),
            l::ADMISSION_PANEL,
        ),
        counter(
            "admission-shed",
            t.live_shed,
            l::deltas(&samples, |s| s.shed),
            l::SHED_PANEL,
        ),
    ];
    let zone = console.app.policy.compiled().zone().clone();
    let sampled_at = samples
        .last()
        .map(|s| when(&crate::clock::rfc3339(s.at, zone.to_offset(s.at))));
    let help = t
        .live_help
        .replace("{period}", &period.to_string())
        .replace("{minutes}", &minutes.to_string());
    let page = LivePage {
        c: ctx.chrome("live", t.live_title),
        refusals,
        admission,
        sampled_at,
        help,
    };
    ctx.page(StatusCode::OK, &page)
}

/// Any other `/console/…` path.
pub(super) async fn not_found(ctx: Ctx) -> Response {
    let t = ctx.t();
    ctx.message(
        StatusCode::NOT_FOUND,
        Some(ErrorCode::NotFound),
        t.not_found,
        "/console",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_shown_in_yuan_with_grouping() {
        assert_eq!(yuan(0), "¥0.00");
        assert_eq!(yuan(5), "¥0.05");
        assert_eq!(yuan(500_000), "¥5,000.00");
        assert_eq!(yuan(123_456_789), "¥1,234,567.89");
    }

    #[test]
    fn limits_flatten_to_dotted_keys() {
        let mut out = BTreeMap::new();
        flatten(
            "",
            &serde_json::json!({"a": {"b": 1, "c": "x"}, "d": [1, 2]}),
            &mut out,
        );
        assert_eq!(out["a.b"], "1");
        assert_eq!(out["a.c"], "x");
        assert_eq!(out["d"], "[1,2]");
    }
}
