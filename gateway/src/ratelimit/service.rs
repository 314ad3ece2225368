//! The rate-limit [`Service`].

use std::task::{Context, Poll};

use tower::{BoxError, Service};

use super::{RateLimits, RequestFacts, ResponseFuture};
use crate::policy::GlobalLimits;

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
    S: Service<http::Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let class = RequestFacts::of(&req).class;
        if let Some(class) = class
            && self.limits.shared().is_some()
            && GlobalLimits::has_rate(class)
        {
            // The readied service goes into the future; a clone stays for the next call.
            let ready = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, ready);
            let limits = self.limits.clone();
            return ResponseFuture::shared(Box::pin(async move {
                let refused = |e: super::RateLimited| -> BoxError { Box::new(e) };
                if let Some(shared) = limits.shared()
                    && let Err(e) = shared.check(class).await
                {
                    let user = RequestFacts::of(&req).user.as_ref();
                    limits
                        .report_only()
                        .judge(e, user.map(crate::request::UserKey::as_str))
                        .map_err(refused)?;
                }
                limits.check_user_request(&req).map_err(refused)?;
                inner.call(req).await.map_err(Into::into)
            }));
        }
        match self.limits.check_request(&req) {
            Ok(()) => ResponseFuture::called(self.inner.call(req)),
            Err(refused) => ResponseFuture::refused(refused),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tower::{Layer, ServiceExt};

    use super::*;
    use crate::clock::ManualClock;
    use crate::policy::{Policy, PolicyConfig};
    use crate::ratelimit::{RateLimited, Scope};
    use crate::request::{RouteClass, UserKey};

    fn limits() -> RateLimits {
        let config: PolicyConfig = toml::from_str(
            r#"
            [normal.global]
            drawdown = { per_second = 100, burst = 3 }
            [normal.user]
            per_minute = 60
            burst = 2
            grades.E = { per_minute = 60, burst = 1 }
            "#,
        )
        .unwrap();
        let clock = ManualClock::new("2026-03-01T00:00:00Z".parse().unwrap());
        RateLimits::new(&Policy::new(&config, clock.shared()).unwrap(), 1000)
    }

    fn request(user: Option<&str>, grade: Option<risk_core::RiskGrade>) -> http::Request<()> {
        let mut req = http::Request::new(());
        req.extensions_mut().insert(RequestFacts {
            class: Some(RouteClass::Drawdown),
            user: user.map(UserKey::new),
            grade,
            ..RequestFacts::NONE
        });
        req
    }

    async fn outcome<S>(svc: &mut S, req: http::Request<()>) -> Result<(), RateLimited>
    where
        S: Service<http::Request<()>, Response = (), Error = BoxError>,
    {
        match svc.ready().await.unwrap().call(req).await {
            Ok(()) => Ok(()),
            Err(e) => Err(*e.downcast_ref::<RateLimited>().unwrap()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn refused_requests_never_reach_the_inner_service() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let inner = tower::service_fn(move |_req: http::Request<()>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(()) }
        });
        let mut svc = limits().layer().layer(inner);
        // Per user: a burst of 2, then refused (by the user limit, not the global one).
        outcome(&mut svc, request(Some("alice"), None))
            .await
            .unwrap();
        outcome(&mut svc, request(Some("alice"), None))
            .await
            .unwrap();
        let refused = outcome(&mut svc, request(Some("alice"), None))
            .await
            .unwrap_err();
        assert_eq!(refused.scope(), Scope::User);
        assert_eq!(refused.retry_after(), Duration::from_secs(1));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // The global burst of 3 is used up (2 admitted + 1 by alice's refused request):
        // the next user is refused globally.
        let refused = outcome(&mut svc, request(Some("bob"), None))
            .await
            .unwrap_err();
        assert_eq!(refused.scope(), Scope::Global);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // After 10 ms the global bucket has one cell again; bob's quota was never touched.
        tokio::time::advance(Duration::from_millis(10)).await;
        outcome(&mut svc, request(Some("bob"), None)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn grade_and_missing_extensions() {
        let inner = tower::service_fn(|_req: http::Request<()>| async { Ok::<_, Infallible>(()) });
        let mut svc = limits().layer().layer(inner);
        // Grade E has a burst of 1.
        outcome(
            &mut svc,
            request(Some("eve"), Some(risk_core::RiskGrade::E)),
        )
        .await
        .unwrap();
        let refused = outcome(
            &mut svc,
            request(Some("eve"), Some(risk_core::RiskGrade::E)),
        )
        .await
        .unwrap_err();
        assert_eq!(refused.scope(), Scope::User);
        // No user key: only the global limit applies. No route class: nothing applies.
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..3 {
            outcome(&mut svc, request(None, None)).await.unwrap();
        }
        for _ in 0..100 {
            outcome(&mut svc, http::Request::new(())).await.unwrap();
        }
    }
}
