//! The rate-limit [`Layer`].

use tower::Layer;

use super::{RateLimit, RateLimits};

/// Wraps a service in [`RateLimit`].
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limits: RateLimits,
}

impl RateLimitLayer {
    /// A layer applying `limits`.
    pub const fn new(limits: RateLimits) -> Self {
        RateLimitLayer { limits }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit::new(inner, self.limits.clone())
    }
}
