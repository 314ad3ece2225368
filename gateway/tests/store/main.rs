//! The store contract suite, run against every store implementation.
//!
//! `contract` holds the semantics as functions generic over [`gateway::store::Store`];
//! each implementation has a module that runs them on a fresh store.
#![allow(clippy::unwrap_used)]

mod cluster;
mod contract;
mod memory;
mod redis;
#[path = "../support/redis_server.rs"]
mod redis_server;
mod redis_tls;
