//! The connection loop: a bound on open connections, a header-read timeout, HTTP/1.1 and
//! HTTP/2 on one port, connection-level overload actions, and a graceful shutdown with a
//! bounded grace period.
//!
//! `server.http = "http1"` serves HTTP/1.1 only: the connection skips the auto builder's
//! HTTP/2 preface sniffing (and HTTP upgrades, which no gateway route uses).
//!
//! # Layout
//! - [`HttpService`]: the service a connection is served with.
//! - [`serve`]: serves `service` on `listener` until `shutdown` resolves, then stops …
//! - [`serve_with`]: [`serve`], and while `overload` says so (see [`crate::overload`]).

use crate::config::{HttpVersions, ServerConfig};
use crate::overload::Overload;
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// The service a connection is served with: the gateway's ([`crate::api::GatewayService`]),
/// or any other that answers every request (tests serve a one-route axum `Router`).
pub trait HttpService:
    tower::Service<
        http::Request<hyper::body::Incoming>,
        Response = Response,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> HttpService for S where
    S: tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// Serves `service` on `listener` until `shutdown` resolves, then stops accepting and lets
/// in-flight requests finish for at most `server.shutdown_grace_ms`.
///
/// Past `server.max_connections` open connections the loop stops accepting: further
/// connections wait in the kernel's accept queue rather than in the process.
pub async fn serve(
    listener: TcpListener,
    service: impl HttpService,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, service, config, None, shutdown).await;
}

/// [`serve`], and while `overload` says so (see [`crate::overload`]): no accepting (new
/// connections wait in the kernel's backlog) and `Connection: close` on HTTP/1 responses.
pub async fn serve_with(
    listener: TcpListener,
    service: impl HttpService,
    config: &ServerConfig,
    overload: Option<Overload>,
    shutdown: impl Future<Output = ()>,
) {
    let limit = usize::try_from(config.max_connections).unwrap_or(usize::MAX);
    let slots = Arc::new(Semaphore::new(limit));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout())
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = match config.http {
        HttpVersions::Auto => builder,
        HttpVersions::Http1 => builder.http1_only(),
    };
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            p = Arc::clone(&slots).acquire_owned() => p.expect("the connection semaphore is never closed"),
        };
        if let Some(o) = &overload {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = o.accepting() => {}
            }
        }
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            // Overload began while waiting: do not take one more connection in.
            () = overload_begins(overload.as_ref()) => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(cause = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(cause = %e, "set_nodelay failed");
        }
        // One connection task; a macro because the two services differ in type.
        macro_rules! spawn_connection {
            ($service:expr) => {{
                let io = TokioIo::new(stream);
                let service = TowerToHyperService::new($service);
                match config.http {
                    HttpVersions::Auto => spawn_watched(
                        graceful.watch(
                            builder
                                .serve_connection_with_upgrades(io, service)
                                .into_owned(),
                        ),
                        peer,
                        permit,
                    ),
                    // `serve_connection_with_upgrades` ignores `http1_only`.
                    HttpVersions::Http1 => spawn_watched(
                        graceful.watch(builder.serve_connection(io, service).into_owned()),
                        peer,
                        permit,
                    ),
                }
            }};
        }
        match &overload {
            None => spawn_connection!(service.clone()),
            Some(o) => spawn_connection!(close_when_overloaded(service.clone(), o.clone())),
        }
    }

    drop(listener);
    tracing::info!("shutting down: no new connections; waiting for in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(config.shutdown_grace()) => {
            tracing::warn!(grace_ms = config.shutdown_grace_ms, "grace period elapsed; closing");
        }
    }
}

/// Runs one connection to its end on its own task, then frees its slot.
fn spawn_watched<E: std::fmt::Display>(
    conn: impl Future<Output = Result<(), E>> + Send + 'static,
    peer: std::net::SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%peer, cause = %e, "connection ended with an error");
        }
        drop(permit);
    });
}

/// Resolves when overload actions turn on (never without an overload state).
async fn overload_begins(overload: Option<&Overload>) {
    match overload {
        Some(o) => o.overloaded().await,
        None => std::future::pending().await,
    }
}

/// `service`, adding `Connection: close` to HTTP/1 responses while overloaded (HTTP/2 has
/// no such header; its connections are left alone).
fn close_when_overloaded(service: impl HttpService, overload: Overload) -> impl HttpService {
    tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let http1 = req.version() <= http::Version::HTTP_11;
        let overload = overload.clone();
        let fut = service.clone().oneshot(req);
        async move {
            let mut res = fut.await?;
            if http1 && overload.is_overloaded() {
                res.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
                overload.closed_one();
            }
            Ok(res)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HttpVersions;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves a one-route router with `http`, sends `request` on a fresh connection, and
    /// returns what the server wrote before closing or within a second.
    async fn exchange(http: HttpVersions, request: &[u8]) -> Vec<u8> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let config = ServerConfig {
            http,
            ..ServerConfig::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            serve(listener, router, &config, async {
                let _ = stopped.await;
            })
            .await;
        });
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(request).await.unwrap();
        let mut out = vec![0; 4096];
        let n = tokio::time::timeout(Duration::from_secs(1), conn.read(&mut out))
            .await
            .map_or(0, |r| r.unwrap_or(0));
        out.truncate(n);
        drop(conn);
        stop.send(()).unwrap();
        server.await.unwrap();
        out
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    #[tokio::test]
    async fn both_settings_serve_http1() {
        for http in [HttpVersions::Auto, HttpVersions::Http1] {
            let out = exchange(http, GET).await;
            let text = String::from_utf8_lossy(&out);
            assert!(text.starts_with("HTTP/1.1 200"), "{http:?}: {text}");
            assert!(text.ends_with("ok"), "{http:?}: {text}");
        }
    }

    #[tokio::test]
    async fn only_auto_speaks_http2_with_prior_knowledge() {
        // HTTP/2: the server's first frame is SETTINGS (frame type 4 at byte 3).
        let out = exchange(HttpVersions::Auto, H2_PREFACE).await;
        assert!(out.len() >= 9 && out[3] == 4, "{out:?}");
        // HTTP/1 only: the preface is not HTTP/2 to it; no SETTINGS frame comes back.
        let out = exchange(HttpVersions::Http1, H2_PREFACE).await;
        assert!(out.is_empty() || out.starts_with(b"HTTP/1.1 "), "{out:?}");
    }
}
