//! The rate-limit [`Service`].

use std::task::{Context, Poll};

use tower::{BoxError, Service};

use super::{RateLimits, ResponseFuture};

/// Checks the global, then the per-user limit of each request; a refused request never
/// reaches the inner service and fails with a boxed [`super::RateLimited`].
///
/// It holds no permit between `poll_ready` and `call` (a refusal just leaves the inner
/// service's readiness unused), so a derived `Clone` is right here.
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    limits: RateLimits,
}

impl<S> RateLimit<S> {
    /// `inner` behind `limits`.
    pub const fn new(inner: S, limits: RateLimits) -> Self {
        RateLimit { inner, limits }
    }
}

impl<S, B> Service<http::Request<B>> for RateLimit<S>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match self.limits.check_request(&req) {
            Ok(()) => ResponseFuture::called(self.inner.call(req)),
            Err(refused) => ResponseFuture::refused(refused),
        }
    }
}
