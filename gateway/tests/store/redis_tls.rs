//! The Redis store over TLS (`rediss://`), against a `redis-server` of the test's own that
//! speaks only TLS.
#![allow(clippy::unwrap_used)]

use crate::contract;
use crate::redis_server::{Options, RedisServer, config};
use gateway::store::{RedisConfig, RedisStore, Store, StoreError};

/// `rediss://` against a `redis-server` that speaks only TLS: the store works with the CA
/// file that issued the server's certificate, and refuses a server whose certificate does
/// not chain to the CA it was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_store_works_over_tls_and_refuses_an_unknown_server_certificate() {
    let Some(server) = RedisServer::start(Options {
        tls: true,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    assert!(server.url().starts_with("rediss://"));
    let tls = |ca: std::path::PathBuf| {
        let c = RedisConfig {
            tls_ca_file: Some(ca),
            ..config(server.url())
        };
        // On the contract's clock, as the other Redis tests (drawdown counts slide with it).
        crate::redis::at_t0(c)
    };
    let s = tls(server.ca_file());
    s.ping().await.unwrap();
    contract::replay_returns_the_stored_decision(tls(server.ca_file())).await;
    contract::line_changed_writes_nothing(tls(server.ca_file())).await;
    let counts = contract::concurrent_commits_never_over_reserve(tls(server.ca_file())).await;
    assert!(counts.approved > 0, "{}", counts.approved);

    // A CA of another server: the handshake fails, the store says the server is
    // unavailable, nothing is written.
    let Some(other) = RedisServer::start(Options {
        tls: true,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let wrong = tls(other.ca_file());
    let err = wrong.ping().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    // Plain `redis://` to a TLS-only port gets no answer either.
    let plain = RedisStore::new(config(server.url().replacen("rediss", "redis", 1))).unwrap();
    assert!(plain.ping().await.is_err());
    // A CA file with a plain store is refused by the configuration.
    let bad = RedisConfig {
        tls_ca_file: Some(server.ca_file()),
        ..config(server.url().replacen("rediss", "redis", 1))
    };
    assert_eq!(RedisStore::new(bad).unwrap_err().field(), "tls_ca_file");
}
