//! The simulator's HTTP server (hyper; HTTP/1.1 keep-alive and HTTP/2 on one port).
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/score/{user_id}` | `200` [`ScoreAnswer`], `500 {"error":"injected"}`, `503 {"error":"overloaded"}`; `400 {"error":"bad_user_id"}` |
//! | `GET /healthz` | `200 {"status":"ok"}` |
//! | `GET /stats` | `200` [`BureauStats`] |
//! | `PUT /admin/service` | body `{"service_ms": N, "error_rate": p}` (either or both): `200` [`BureauStats`] after the change; `400 {"error":"bad_request","message":..}` and nothing changed |
//!
//! Other paths answer `404 {"error":"not_found"}`, other methods `405`. The
//! `X-Request-Deadline-Ms` header is accepted and ignored: a saturated dependency does not
//! know its caller's budget.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde::Deserialize;
use tokio::net::TcpListener;

use super::{Bureau, BureauOptions, Reply, check_error_rate, check_service_ms, valid_user_id};
#[cfg(doc)]
use super::{BureauStats, ScoreAnswer};
use crate::Error;
use gateway::embedded::ServerTask;

/// Largest `PUT /admin/service` body.
const MAX_BODY: usize = 4 * 1024;
/// How long shutdown waits for open connections to finish their requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, code: &str, message: Option<&str>) -> Response<Full<Bytes>> {
    let v = match message {
        Some(m) => serde_json::json!({ "error": code, "message": m }),
        None => serde_json::json!({ "error": code }),
    };
    json(status, v.to_string().into_bytes())
}

fn to_json<T: serde::Serialize>(v: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec(v) {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "serialise",
            Some(&e.to_string()),
        ),
    }
}

/// A change to the settings that can move at run time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServicePatch {
    service_ms: Option<u64>,
    error_rate: Option<f64>,
}

async fn patch_service(bureau: &Bureau, body: Incoming) -> Response<Full<Bytes>> {
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                Some(&format!("body: {e}")),
            );
        }
    };
    let patch: ServicePatch = match serde_json::from_slice(&bytes) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", Some(&e.to_string())),
    };
    if patch.service_ms.is_none() && patch.error_rate.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            Some("give service_ms and/or error_rate"),
        );
    }
    // Both are checked before either is applied, so a bad request changes nothing.
    let checked = patch
        .service_ms
        .map_or(Ok(()), check_service_ms)
        .and_then(|()| patch.error_rate.map_or(Ok(()), check_error_rate));
    if let Err(e) = checked {
        return error(StatusCode::BAD_REQUEST, "bad_request", Some(&e.to_string()));
    }
    let applied = patch
        .service_ms
        .map_or(Ok(()), |ms| bureau.set_service_ms(ms))
        .and_then(|()| {
            patch
                .error_rate
                .map_or(Ok(()), |p| bureau.set_error_rate(p))
        });
    match applied {
        Ok(()) => to_json(&bureau.stats()),
        Err(e) => error(StatusCode::BAD_REQUEST, "bad_request", Some(&e.to_string())),
    }
}

async fn route(bureau: Bureau, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if let Some(id) = path.strip_prefix("/v1/score/") {
        if req.method() != Method::GET {
            return error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
        }
        if !valid_user_id(id) {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_user_id",
                Some("a user id is 1 to 64 characters of A-Z a-z 0-9 - _"),
            );
        }
        return match bureau.call_detached(id).await {
            Reply::Score(a) => to_json(&a),
            Reply::Injected => error(StatusCode::INTERNAL_SERVER_ERROR, "injected", None),
            Reply::Overloaded => error(StatusCode::SERVICE_UNAVAILABLE, "overloaded", None),
        };
    }
    match (path, req.method()) {
        ("/healthz", &Method::GET) => json(StatusCode::OK, br#"{"status":"ok"}"#.to_vec()),
        ("/stats", &Method::GET) => to_json(&bureau.stats()),
        ("/admin/service", &Method::PUT) => patch_service(&bureau, req.into_body()).await,
        ("/healthz" | "/stats" | "/admin/service", _) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None)
        }
        _ => error(StatusCode::NOT_FOUND, "not_found", None),
    }
}

/// Serves `bureau` on `listener` until `shutdown` resolves, then stops accepting and lets
/// open requests finish for a short grace period.
pub async fn serve(
    listener: TcpListener,
    bureau: Bureau,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let b = bureau.clone();
        let svc = service_fn(move |req| {
            let b = b.clone();
            async move { Ok::<_, Infallible>(route(b, req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        // A client closing its connection mid-request is not the server's concern.
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {}
    }
    Ok(())
}

/// A simulator running in this process.
#[derive(Debug)]
pub struct RunningBureau {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state: change the service time, read the counters.
    pub bureau: Bureau,
    server: ServerTask<std::io::Result<()>>,
}

impl RunningBureau {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it; returns once the server has stopped (open requests get a short grace).
    pub async fn shutdown(self) {
        self.server.stop().await;
    }
}

/// Starts a simulator on `127.0.0.1:0`.
pub async fn start(opts: &BureauOptions) -> Result<RunningBureau, Error> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| Error::Bureau(format!("bind 127.0.0.1:0: {e}")))?;
    start_on(listener, opts)
}

/// Starts a simulator on a bound listener.
pub fn start_on(listener: TcpListener, opts: &BureauOptions) -> Result<RunningBureau, Error> {
    let bureau = Bureau::new(opts)?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Bureau(format!("local address: {e}")))?;
    let served = bureau.clone();
    let server = ServerTask::spawn(|stopped| serve(listener, served, stopped));
    Ok(RunningBureau {
        addr,
        bureau,
        server,
    })
}
