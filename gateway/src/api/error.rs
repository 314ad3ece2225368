//! The one error shape of the API, and the one function that maps causes to it.
//!
//! Every refusal leaves the gateway as `{"error": {...}}` with the status and code of the API
//! contract; transient ones (429, 503) carry `Retry-After`. Errors raised inside the tower
//! stack (rate limits, admission) arrive here as a boxed error and are inspected by cause in
//! [`from_stack_error`], so none reaches hyper and drops a connection without an answer.

use crate::admission::Shed;
use crate::ratelimit::{RateLimited, Scope};
use crate::store::StoreError;
use crate::trace::TraceIdHex;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use risk_core::ReasonCode;
use serde::Serialize;
use std::borrow::Cow;
use std::time::Duration;

/// Every error code of the API, with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// 400: malformed JSON, a field out of range, an unknown field.
    InvalidRequest,
    /// 400: a drawdown without `Idempotency-Key`.
    IdempotencyKeyMissing,
    /// 401: no or unknown credentials.
    Unauthenticated,
    /// 403: a caller key on an admin route.
    Forbidden,
    /// 404: no such user.
    UserNotFound,
    /// 404: no such decision.
    DecisionNotFound,
    /// 404: no such appeal.
    AppealNotFound,
    /// 404: no such route.
    NotFound,
    /// 404: no shadow candidate is staged.
    NoShadowCandidate,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 409: thresholds version not greater than the current one.
    StaleVersion,
    /// 409: the appeal was already resolved.
    AppealAlreadyResolved,
    /// 409: a reload was asked of a gateway started without a configuration file.
    ReloadUnavailable,
    /// 408: the request body did not arrive within the body read timeout or the deadline.
    RequestTimeout,
    /// 413: body over the limit.
    BodyTooLarge,
    /// 415: not JSON.
    UnsupportedMediaType,
    /// 422: same idempotency key, different request.
    IdempotencyKeyReused,
    /// 422: appeal on a decision that cannot be appealed.
    NotAppealable,
    /// 422: the configuration file was refused by a reload; nothing changed.
    ConfigInvalid,
    /// 422: a time range whose end is before its start (each end well formed).
    RangeInverted,
    /// 429: per-user rate limit.
    RateLimitedUser,
    /// 429: global rate limit.
    RateLimitedGlobal,
    /// 503: shed by admission control.
    CapacityShed,
    /// 503: the store is unreachable; nothing was written.
    DependencyUnavailable,
    /// 503: concurrent drawdowns of the same user changed its line under every commit
    /// attempt; nothing was written.
    LineContended,
    /// 500: a bug; nothing was written.
    Internal,
}

impl ErrorCode {
    /// The HTTP status.
    pub const fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            InvalidRequest | IdempotencyKeyMissing => StatusCode::BAD_REQUEST,
            Unauthenticated => StatusCode::UNAUTHORIZED,
            Forbidden => StatusCode::FORBIDDEN,
            UserNotFound | DecisionNotFound | AppealNotFound | NotFound | NoShadowCandidate => {
                StatusCode::NOT_FOUND
            }
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            StaleVersion | AppealAlreadyResolved | ReloadUnavailable => StatusCode::CONFLICT,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IdempotencyKeyReused | NotAppealable | ConfigInvalid | RangeInverted => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            RateLimitedUser | RateLimitedGlobal => StatusCode::TOO_MANY_REQUESTS,
            CapacityShed | DependencyUnavailable | LineContended => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidRequest => "INVALID_REQUEST",
            IdempotencyKeyMissing => "IDEMPOTENCY_KEY_MISSING",
            Unauthenticated => "UNAUTHENTICATED",
            Forbidden => "FORBIDDEN",
            UserNotFound => "USER_NOT_FOUND",
            DecisionNotFound => "DECISION_NOT_FOUND",
            AppealNotFound => "APPEAL_NOT_FOUND",
            NotFound => "NOT_FOUND",
            NoShadowCandidate => "NO_SHADOW_CANDIDATE",
            MethodNotAllowed => "METHOD_NOT_ALLOWED",
            StaleVersion => "STALE_VERSION",
            AppealAlreadyResolved => "APPEAL_ALREADY_RESOLVED",
            ReloadUnavailable => "RELOAD_UNAVAILABLE",
            RequestTimeout => "REQUEST_TIMEOUT",
            BodyTooLarge => "BODY_TOO_LARGE",
            UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            NotAppealable => "NOT_APPEALABLE",
            ConfigInvalid => "CONFIG_INVALID",
            RangeInverted => "RANGE_INVERTED",
            RateLimitedUser => "RATE_LIMITED_USER",
            RateLimitedGlobal => "RATE_LIMITED_GLOBAL",
            CapacityShed => "CAPACITY_SHED",
            DependencyUnavailable => "DEPENDENCY_UNAVAILABLE",
            LineContended => "LINE_CONTENDED",
            Internal => "INTERNAL",
        }
    }

    /// The transient reason code of the catalogue this error is, if any.
    pub const fn reason(self) -> Option<ReasonCode> {
        match self {
            ErrorCode::RateLimitedUser => Some(ReasonCode::RateLimitedUser),
            ErrorCode::RateLimitedGlobal => Some(ReasonCode::RateLimitedGlobal),
            ErrorCode::CapacityShed => Some(ReasonCode::CapacityShed),
            ErrorCode::DependencyUnavailable => Some(ReasonCode::DependencyUnavailable),
            ErrorCode::RequestTimeout => Some(ReasonCode::RequestTimeout),
            ErrorCode::LineContended => Some(ReasonCode::LineContended),
            _ => None,
        }
    }

    /// `transient` (retry later, unchanged), `client` (fix the request) or `server`.
    pub const fn category(self) -> &'static str {
        match self {
            ErrorCode::Internal => "server",
            _ if self.reason().is_some() => "transient",
            _ => "client",
        }
    }

    /// The code's default messages, in English and in Chinese.
    pub fn default_messages(self) -> (&'static str, &'static str) {
        use ErrorCode::*;
        if let Some(reason) = self.reason() {
            let e = reason.entry();
            return (e.message, e.message_zh);
        }
        match self {
            InvalidRequest => ("The request is not valid.", "请求参数不合法。"),
            IdempotencyKeyMissing => (
                "A drawdown needs an Idempotency-Key header.",
                "借款请求必须携带 Idempotency-Key 请求头。",
            ),
            Unauthenticated => ("Missing or unknown credentials.", "缺少或无效的身份凭证。"),
            Forbidden => (
                "This key may not use admin routes.",
                "该凭证无权访问管理接口。",
            ),
            UserNotFound => ("No such user.", "用户不存在。"),
            DecisionNotFound => ("No such decision.", "借款决定不存在。"),
            AppealNotFound => ("No such appeal.", "申诉不存在。"),
            NotFound => ("No such route.", "接口不存在。"),
            NoShadowCandidate => (
                "No shadow candidate is staged.",
                "当前没有待观察的候选阈值。",
            ),
            MethodNotAllowed => ("Method not allowed on this route.", "该接口不支持此方法。"),
            StaleVersion => (
                "The thresholds version must be greater than the current one.",
                "阈值版本号必须大于当前版本。",
            ),
            AppealAlreadyResolved => ("The appeal is already resolved.", "该申诉已处理完毕。"),
            BodyTooLarge => ("The request body is too large.", "请求体过大。"),
            UnsupportedMediaType => (
                "Send the body as application/json.",
                "请求体须为 application/json。",
            ),
            IdempotencyKeyReused => (
                "This Idempotency-Key was used for a different request.",
                "该 Idempotency-Key 已用于另一笔不同的请求。",
            ),
            NotAppealable => ("This decision cannot be appealed.", "该决定不可申诉。"),
            ReloadUnavailable => (
                "The gateway was started without a configuration file: there is nothing to reload.",
                "网关启动时未指定配置文件，无可重新加载的配置。",
            ),
            ConfigInvalid => (
                "The configuration file was refused; nothing changed.",
                "配置文件未通过校验，配置未作任何改动。",
            ),
            RangeInverted => (
                "The range ends before it starts.",
                "时间范围的结束早于开始。",
            ),
            Internal => (
                "Internal error; nothing was recorded.",
                "内部错误，本次请求未做任何记录。",
            ),
            RateLimitedUser
            | RateLimitedGlobal
            | CapacityShed
            | DependencyUnavailable
            | RequestTimeout
            | LineContended => {
                unreachable!("transient codes take their text from the catalogue above")
            }
        }
    }
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldProblem {
    /// The field (`amount_fen`, `Idempotency-Key`, `body`).
    pub field: Cow<'static, str>,
    /// What is wrong.
    pub problem: Cow<'static, str>,
}

impl FieldProblem {
    /// A problem with a field.
    pub fn new(field: impl Into<Cow<'static, str>>, problem: impl Into<Cow<'static, str>>) -> Self {
        FieldProblem {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// An API error: code, text, `Retry-After`, field details.
#[derive(Debug, Clone)]
pub struct ApiError {
    code: ErrorCode,
    message: Cow<'static, str>,
    retry_after: Option<Duration>,
    details: Vec<FieldProblem>,
    request_id: Option<HeaderValue>,
}

impl ApiError {
    /// An error with the code's default message.
    pub fn new(code: ErrorCode) -> Self {
        ApiError {
            code,
            message: Cow::Borrowed(code.default_messages().0),
            retry_after: None,
            details: Vec::new(),
            request_id: None,
        }
    }

    /// 400 with details.
    pub fn invalid(details: Vec<FieldProblem>) -> Self {
        ApiError::new(ErrorCode::InvalidRequest).with_details(details)
    }

    /// Replaces the English message.
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.message = message.into();
        self
    }

    /// Sets field details.
    pub fn with_details(mut self, details: Vec<FieldProblem>) -> Self {
        self.details = details;
        self
    }

    /// Sets `Retry-After` (rounded up to whole seconds, at least 1).
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Names the request in the body.
    pub fn with_request_id(mut self, id: Option<HeaderValue>) -> Self {
        self.request_id = id;
        self
    }

    /// The code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    fn retry_after_s(&self) -> Option<u64> {
        self.retry_after.map(|d| {
            let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            s.max(1)
        })
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'static str,
    category: &'static str,
    message: &'a str,
    message_zh: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    details: &'a [FieldProblem],
}

impl IntoResponse for ApiError {
    /// Defers the body to the edge, which renders it with the request id
    /// ([`ApiError::render`]); the status is final already.
    fn into_response(self) -> Response {
        let mut res = self.code.status().into_response();
        res.extensions_mut().insert(self);
        res
    }
}

impl ApiError {
    /// The JSON body (`{"error": {...}}`).
    pub fn json(&self) -> Vec<u8> {
        self.json_traced(None)
    }

    /// The JSON body naming the request's trace (a parameter rather than a field: the
    /// error is returned by value on every path, and kept small).
    fn json_traced(&self, trace_id: Option<&TraceIdHex>) -> Vec<u8> {
        let body = Body {
            error: Inner {
                code: self.code.as_str(),
                category: self.code.category(),
                message: &self.message,
                message_zh: self.code.default_messages().1,
                retry_after_s: self.retry_after_s(),
                request_id: self.request_id.as_ref().and_then(|v| v.to_str().ok()),
                trace_id: trace_id.map(TraceIdHex::as_str),
                details: &self.details,
            },
        };
        super::json::json_bytes(&body).unwrap_or_else(|_| b"{\"error\":{}}".to_vec())
    }

    /// The response: JSON body, `Retry-After` where due, the code in the extensions (metrics).
    pub fn render(self) -> Response {
        self.render_traced(None)
    }

    /// [`ApiError::render`], the body naming the request's trace (W3C trace id).
    pub fn render_traced(self, trace_id: Option<&TraceIdHex>) -> Response {
        let retry_after_s = self.retry_after_s();
        let json = self.json_traced(trace_id);
        let mut res = (self.code.status(), json).into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(s) = retry_after_s {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res.extensions_mut().insert(self.code);
        res
    }
}

impl From<StoreError> for ApiError {
    /// A store that could not answer is a retryable 503; a store that answered that the
    /// data or the request breaks its contract is a bug, a 500, logged as one.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) | StoreError::Timeout => {
                crate::store::warnings::store_unavailable(&e);
                ApiError::new(ErrorCode::DependencyUnavailable)
                    .with_retry_after(Duration::from_secs(1))
            }
            StoreError::Corrupt(_) | StoreError::Invalid(_) => {
                tracing::error!(cause = %e, "bug: the store refused or could not read a record");
                ApiError::new(ErrorCode::Internal)
            }
        }
    }
}

/// Maps an error raised inside the tower stack to its response: rate limits to 429, sheds to
/// 503, anything else (a bug) to 500 — never a dropped connection.
pub fn from_stack_error(err: &(dyn std::error::Error + 'static)) -> ApiError {
    if let Some(limited) = err.downcast_ref::<RateLimited>() {
        let code = match limited.scope() {
            Scope::User => ErrorCode::RateLimitedUser,
            Scope::Global => ErrorCode::RateLimitedGlobal,
        };
        return ApiError::new(code).with_retry_after(limited.retry_after());
    }
    if let Some(shed) = err.downcast_ref::<Shed>() {
        return ApiError::new(ErrorCode::CapacityShed).with_retry_after(shed.retry_after());
    }
    tracing::error!(cause = %err, "unexpected error in the service stack");
    ApiError::new(ErrorCode::Internal)
}
