//! ratelimit (in progress).
