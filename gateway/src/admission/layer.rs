//! The admission [`Layer`].

use tower::Layer;

use super::{Admission, AdmissionService};

/// Wraps a service in [`AdmissionService`].
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    admission: Admission,
}

impl AdmissionLayer {
    /// A layer admitting requests through `admission`.
    pub const fn new(admission: Admission) -> Self {
        AdmissionLayer { admission }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = AdmissionService<S>;

    fn layer(&self, inner: S) -> AdmissionService<S> {
        AdmissionService::new(inner, self.admission.clone())
    }
}

impl Admission {
    /// The middleware admitting requests through this controller.
    pub fn layer(&self) -> AdmissionLayer {
        AdmissionLayer::new(self.clone())
    }
}
