//! Wall-clock time behind a trait (in progress).
