//! admission (in progress).
