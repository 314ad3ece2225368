//! Connections that hold resources without making requests, and the limits on them.

use crate::support::*;
use crate::{closed_within, connect_from};
use bytes::Bytes;
use reqwest::StatusCode;
use std::net::IpAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Sockets that send nothing, or half the HTTP/2 preface, fill `max_connections`: a new
/// client is answered at once (503 `CAPACITY_SHED`, not left hanging), and once
/// `header_read_timeout_ms` has passed they are closed and it is served.
#[tokio::test]
async fn silent_and_half_preface_connections_are_closed_and_lock_nobody_out() {
    let mut c = relaxed();
    c.server.max_connections = 20;
    // All from 127.0.0.1: the per-peer cap must not be what refuses the 21st.
    c.server.max_connections_per_peer = 100;
    c.server.header_read_timeout = std::time::Duration::from_millis(300);
    let t = TestGateway::start(c).await;
    let mut held = Vec::new();
    for i in 0..20 {
        let mut s = tokio::net::TcpStream::connect(t.gw.addr).await.unwrap();
        if i % 2 == 1 {
            s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        }
        held.push(s);
    }
    // Give the server a moment to take all twenty in (well within the 300 ms).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refused = reqwest::Client::new()
        .get(t.url("/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .expect("answered, not left waiting");
    let (status, code, body) = error_code(refused).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "CAPACITY_SHED"),
        "{body}"
    );
    for s in &mut held {
        let got = closed_within(s, Duration::from_secs(3)).await;
        let got = got.expect("an idle connection was not closed");
        assert!(!String::from_utf8_lossy(&got).contains("200 OK"));
    }
    let ok = t.client.get(t.url("/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

/// An HTTP/2 client that completes the handshake and sends nothing is closed within
/// `header_read_timeout_ms`; one that makes a request and then idles is sent `GOAWAY`
/// after `idle_timeout_ms`.
#[tokio::test]
async fn idle_http2_connections_are_closed() {
    let mut c = relaxed();
    c.server.header_read_timeout = std::time::Duration::from_millis(300);
    c.server.idle_timeout = std::time::Duration::from_millis(300);
    let t = TestGateway::start(c).await;

    // Handshake only.
    let tcp = tokio::net::TcpStream::connect(t.gw.addr).await.unwrap();
    let (_client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), conn)
        .await
        .expect("a handshake-only connection was not closed")
        .ok();

    // One request, then nothing.
    let tcp = tokio::net::TcpStream::connect(t.gw.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = http::Request::get(format!("{}/healthz", t.gw.base_url()))
        .body(())
        .unwrap();
    let (res, _) = client.send_request(req, true).unwrap();
    let res = res.await.unwrap();
    assert_eq!(res.status(), http::StatusCode::OK);
    let mut body = res.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        body.flow_control().release_capacity(chunk.len()).unwrap();
    }
    drop(client);
    tokio::time::timeout(Duration::from_secs(3), conn)
        .await
        .expect("an idle HTTP/2 connection was not closed")
        .unwrap()
        .ok();
}

/// Past `max_connections_per_peer`, a peer's new connection is closed at once; another
/// peer is served.
#[tokio::test]
async fn connections_per_peer_are_capped() {
    let mut c = relaxed();
    c.server.max_connections_per_peer = 3;
    let t = TestGateway::start(c).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from([127, 0, 0, 1], t.gw.addr).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = tokio::io::AsyncReadExt::read(&mut s, &mut buf)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let mut fourth = connect_from([127, 0, 0, 1], t.gw.addr).await;
    let _ = fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let got = closed_within(&mut fourth, Duration::from_secs(2))
        .await
        .expect("the fourth connection of one peer was not closed");
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    let other = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let r = other.get(t.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A slot freed is a slot to use again (once the server has seen the close).
    drop(held.pop());
    let mut served = false;
    for _ in 0..100 {
        let mut again = connect_from([127, 0, 0, 1], t.gw.addr).await;
        let _ = again
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let got = closed_within(&mut again, Duration::from_secs(2))
            .await
            .unwrap();
        if String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(served, "the freed slot was not given back");
}

/// The memory a client can pin over HTTP/2 by never opening its receive window is bounded
/// by configuration: at most `http2_max_concurrent_streams` streams get an answer on each
/// connection (each answer held unsent), on at most `max_connections_per_peer`
/// connections; a normal client is served meanwhile; and the held connections are closed
/// once idle (`idle_timeout_ms`, then `shutdown_grace_ms`).
#[tokio::test]
async fn http2_streams_a_client_never_reads_are_bounded() {
    const STREAMS: u32 = 4;
    const PER_PEER: u32 = 2;
    let mut c = relaxed();
    c.server.http2_max_concurrent_streams = STREAMS;
    c.server.http2_max_send_buf_bytes = 16 * 1024;
    c.server.max_connections_per_peer = PER_PEER;
    c.server.idle_timeout = std::time::Duration::from_millis(500);
    c.server.shutdown_grace = std::time::Duration::from_millis(300);
    let t = TestGateway::start(c).await;

    let mut answered_total = 0;
    let mut conns = Vec::new();
    for i in 0..PER_PEER + 1 {
        let tcp = connect_from([127, 0, 0, 1], t.gw.addr).await;
        let handshake = h2::client::Builder::new()
            .initial_window_size(0)
            .handshake::<_, Bytes>(tcp);
        let Ok(Ok((client, conn))) = tokio::time::timeout(Duration::from_secs(2), handshake).await
        else {
            assert_eq!(i, PER_PEER, "connection {i} of the peer was refused");
            continue;
        };
        let conn = tokio::spawn(conn);
        let mut pending = Vec::new();
        for _ in 0..3 * STREAMS {
            let Ok(Ok(mut ready)) =
                tokio::time::timeout(Duration::from_millis(300), client.clone().ready()).await
            else {
                break;
            };
            let req = http::Request::get(format!("{}/metrics", t.gw.base_url()))
                .body(())
                .unwrap();
            match ready.send_request(req, true) {
                Ok((res, _)) => pending.push(res),
                Err(_) => break,
            }
        }
        let mut answered = 0;
        for res in pending {
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_millis(300), res).await {
                assert_eq!(r.status(), http::StatusCode::OK);
                answered += 1;
            }
        }
        if i == PER_PEER {
            // Past the per-peer cap: closed at once (the client's handshake does not wait
            // for the server, so this shows as no answer at all).
            assert_eq!(
                answered, 0,
                "connection {i} past the per-peer cap was served"
            );
            continue;
        }
        assert_eq!(answered, STREAMS, "streams answered on connection {i}");
        answered_total += answered;
        conns.push((client, conn));
    }
    assert_eq!(answered_total, STREAMS * PER_PEER);

    // A normal client, from another address, is served meanwhile.
    let other = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let r = other.get(t.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!r.text().await.unwrap().is_empty());

    // Nothing more is in flight: the held connections are closed, answers unsent.
    for (_client, conn) in conns {
        tokio::time::timeout(Duration::from_secs(5), conn)
            .await
            .expect("a connection holding unread answers was not closed")
            .unwrap()
            .ok();
    }
}
