//! Tests of the operator console (`/console`): plain HTTP (sessions, CSRF, sign-in) and, in
//! `browser`, Debian's Chromium driven over WebDriver through a real gateway.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

mod browser;
mod http;
mod support;
