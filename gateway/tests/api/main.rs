//! Integration tests of the HTTP API: the real server on port 0, a real HTTP client.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

mod support;

mod audit;
mod backtest;
mod bureau;
mod concurrency;
mod contract;
mod docs;
mod errors;
mod openapi;
mod overload;
mod policy;
mod reload;
mod report_only;
mod routes;
mod shadow;
mod shutdown;
mod tls;
mod trace_context;
