//! Benchmarks live in `benches/`; this library only shares fixtures between them.
//!
//! # Layout
//! - `benches/risk_core.rs`: the risk engine's evaluation and quote (criterion).
//! - `benches/gateway_stack.rs`: the gateway's in-process request path (criterion).
//! - `examples/request_path_instructions.rs`: the request path under callgrind.
//! - `wrk/`: the HTTP benchmarks against a running gateway (scripts).
