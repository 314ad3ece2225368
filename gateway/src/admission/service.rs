//! The admission [`Service`].

use std::mem;
use std::task::{Context, Poll};

use tower::{BoxError, Service};

use super::control::Arrival;
use super::{Admission, ResponseFuture};
use crate::request::RequestFacts;

/// Admits, queues or sheds each request (see the module docs). A shed request never
/// reaches the inner service and fails with a boxed [`super::Shed`].
///
/// No permit is held between `poll_ready` and `call` (admission is decided in `call`), so a
/// derived `Clone` is right; a queued request takes the ready inner service with it and
/// leaves a fresh, unready clone behind.
#[derive(Debug, Clone)]
pub struct AdmissionService<S> {
    inner: S,
    admission: Admission,
}

impl<S> AdmissionService<S> {
    /// `inner` behind `admission`.
    pub const fn new(inner: S, admission: Admission) -> Self {
        AdmissionService { inner, admission }
    }
}

impl<S, B> Service<http::Request<B>> for AdmissionService<S>
where
    S: Service<http::Request<B>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, http::Request<B>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let facts = RequestFacts::of(&req);
        let priority = facts.priority();
        let deadline = facts.deadline;
        // No attempt number: the retry budget was settled already (the edge's precheck).
        let attempt = facts.retry_attempt.map(|n| n > 0);
        match self.admission.arrive(priority, deadline, attempt) {
            Arrival::Admitted(permit) => ResponseFuture::called(self.inner.call(req), permit),
            Arrival::Queued(rx, guard) => {
                let clone = self.inner.clone();
                let ready = mem::replace(&mut self.inner, clone);
                ResponseFuture::queued(rx, guard, deadline, ready, req)
            }
            Arrival::Shed(shed) => ResponseFuture::shed(shed),
        }
    }
}
