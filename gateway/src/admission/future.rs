//! The admission response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};
use tower::{BoxError, Service};

use super::Shed;
use super::control::{Outcome, Permit, QueueGuard};
use super::error::ShedCause;

pin_project! {
    /// The response of [`super::AdmissionService`]: waiting in the queue, then the inner
    /// service's response (holding the slot until it completes), or an immediate refusal.
    pub struct ResponseFuture<S, Req, F> {
        #[pin]
        state: State<S, Req, F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, F> {
        Queued {
            rx: oneshot::Receiver<Outcome>,
            guard: QueueGuard,
            // When it was queued: the admission wait's span (`crate::trace`).
            queued_at: Instant,
            #[pin]
            sleep: Option<Sleep>,
            call: Option<(S, Req)>,
        },
        Called {
            #[pin]
            fut: F,
            permit: Option<Permit>,
        },
        Shed { shed: Shed },
    }
}

impl<S, Req, F> ResponseFuture<S, Req, F> {
    pub(super) const fn called(fut: F, permit: Permit) -> Self {
        ResponseFuture {
            state: State::Called {
                fut,
                permit: Some(permit),
            },
        }
    }

    pub(super) fn queued(
        rx: oneshot::Receiver<Outcome>,
        guard: QueueGuard,
        deadline: Option<Instant>,
        service: S,
        req: Req,
    ) -> Self {
        ResponseFuture {
            state: State::Queued {
                rx,
                guard,
                queued_at: Instant::now(),
                sleep: deadline.map(tokio::time::sleep_until),
                call: Some((service, req)),
            },
        }
    }

    pub(super) const fn shed(shed: Shed) -> Self {
        ResponseFuture {
            state: State::Shed { shed },
        }
    }
}

impl<S, Req, F> fmt::Debug for ResponseFuture<S, Req, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Queued { .. } => "queued",
            State::Called { .. } => "called",
            State::Shed { .. } => "shed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S, Req, F, T, E> Future for ResponseFuture<S, Req, F>
where
    S: Service<Req, Response = T, Error = E, Future = F>,
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let next = match this.state.as_mut().project() {
                StateProj::Called { fut, permit } => {
                    let out = ready!(fut.poll(cx));
                    // The slot is free as soon as the response is.
                    drop(permit.take());
                    return Poll::Ready(out.map_err(Into::into));
                }
                StateProj::Shed { shed } => return Poll::Ready(Err(Box::new(*shed))),
                StateProj::Queued {
                    rx,
                    guard,
                    queued_at,
                    sleep,
                    call,
                } => {
                    let queued_at = *queued_at;
                    let outcome = match Pin::new(&mut *rx).poll(cx) {
                        Poll::Ready(Ok(outcome)) => outcome,
                        // Senders are only dropped after sending; treat the impossible as
                        // a shed rather than a hang.
                        Poll::Ready(Err(_)) => Err(ShedCause::QueueFull),
                        Poll::Pending => {
                            let Some(sleep) = sleep.as_pin_mut() else {
                                return Poll::Pending;
                            };
                            ready!(sleep.poll(cx));
                            if guard.expire() {
                                waited(queued_at, Some("shed"));
                                return shed(guard, ShedCause::DeadlineExpiredInQueue, false);
                            }
                            // Answered just as the deadline passed: the answer is waiting.
                            match rx.try_recv() {
                                Ok(Err(cause)) => Err(cause),
                                Ok(Ok(permit)) => {
                                    drop(permit);
                                    waited(queued_at, Some("shed"));
                                    return shed(guard, ShedCause::DeadlineExpiredInQueue, true);
                                }
                                Err(_) => Err(ShedCause::QueueFull),
                            }
                        }
                    };
                    guard.disarm();
                    waited(queued_at, outcome.as_ref().err().map(|_| "shed"));
                    match outcome {
                        Err(cause) => return shed(guard, cause, false),
                        Ok(permit) => {
                            let (mut service, req) = call
                                .take()
                                .expect("a queued request keeps its service until admitted");
                            State::Called {
                                fut: service.call(req),
                                permit: Some(permit),
                            }
                        }
                    }
                }
            };
            this.state.set(next);
        }
    }
}

/// The span of a wait in the queue that began at `queued_at` and ends now.
fn waited(queued_at: Instant, error: Option<&'static str>) {
    crate::trace::record(
        "admission.wait",
        opentelemetry::trace::SpanKind::Internal,
        queued_at.elapsed(),
        &[],
        error,
    );
}

fn shed<T>(guard: &QueueGuard, cause: ShedCause, count: bool) -> Poll<Result<T, BoxError>> {
    Poll::Ready(Err(Box::new(guard.shed(cause, count))))
}
