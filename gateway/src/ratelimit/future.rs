//! The rate-limit response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower::BoxError;

use super::RateLimited;

/// The whole of a request checked against the shared global limit first (a Redis round
/// trip), then the per-user limit, then the inner service.
pub(super) type SharedCheck<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

pin_project! {
    /// The response of [`super::RateLimit`]: the inner service's, or an immediate refusal,
    /// or (global limit shared through Redis) the check and then the inner service's.
    pub struct ResponseFuture<F, T> {
        #[pin]
        state: State<F, T>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, T> {
        Called { #[pin] fut: F },
        Refused { refused: RateLimited },
        Shared { fut: SharedCheck<T> },
    }
}

impl<F, T> fmt::Debug for ResponseFuture<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Refused { .. } => "refused",
            State::Shared { .. } => "shared",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, T> ResponseFuture<F, T> {
    pub(super) const fn called(fut: F) -> Self {
        ResponseFuture {
            state: State::Called { fut },
        }
    }

    pub(super) const fn refused(refused: RateLimited) -> Self {
        ResponseFuture {
            state: State::Refused { refused },
        }
    }

    pub(super) const fn shared(fut: SharedCheck<T>) -> Self {
        ResponseFuture {
            state: State::Shared { fut },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F, T>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { fut } => fut.poll(cx).map_err(Into::into),
            StateProj::Refused { refused } => Poll::Ready(Err(Box::new(*refused))),
            StateProj::Shared { fut } => fut.as_mut().poll(cx),
        }
    }
}
