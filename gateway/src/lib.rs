//! loan-gateway HTTP service (filled by the gateway issue).
