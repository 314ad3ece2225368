//! The rate-limit response future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower::BoxError;

use super::RateLimited;

pin_project! {
    /// The response of [`super::RateLimit`]: the inner service's, or an immediate refusal.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F> {
        Called { #[pin] fut: F },
        Refused { refused: RateLimited },
    }
}

impl<F> ResponseFuture<F> {
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
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { fut } => fut.poll(cx).map_err(Into::into),
            StateProj::Refused { refused } => Poll::Ready(Err(Box::new(*refused))),
        }
    }
}
