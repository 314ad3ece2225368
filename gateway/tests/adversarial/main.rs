//! The adversarial suite: the gateway attacked as a hostile client would, on loopback, each
//! attack beside a normal client that must still be served. Timeouts are configured short
//! (hundreds of milliseconds), so no test sleeps longer than the bound it checks.
//!
//! - [`connections`]: idle and half-open connections, the connection limits, HTTP/2 idle
//!   connections and streams whose window the client never opens.
//! - [`slow`]: bodies sent too slowly.
//! - [`encoding`]: the same request spelt differently (percent-encoding, repeated headers,
//!   missing fields, out-of-range numbers).
//! - [`isolation`]: one caller reaching for another's records.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub,
    dead_code
)]

#[path = "../api/support.rs"]
mod support;

mod connections;
mod encoding;
mod isolation;
mod slow;

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

/// A connection to `addr` from the loopback address `from` (127.0.0.0/8 is all loopback on
/// Linux: a second "peer" on the same machine).
pub async fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Reads until the server closes `s` (EOF or reset); `Err` if it is still open after
/// `within`. Answers what was read.
pub async fn closed_within(s: &mut TcpStream, within: Duration) -> Result<Vec<u8>, ()> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .map_err(drop)?;
    Ok(out)
}
