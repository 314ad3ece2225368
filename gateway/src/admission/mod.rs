//! admission (in progress).

pub mod request;
