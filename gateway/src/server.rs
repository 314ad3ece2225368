//! The connection loop: bounds on open connections (in all, and per peer address), the
//! lifetime of each connection, HTTP/1.1 and HTTP/2 on one port, connection-level overload
//! actions, and a graceful shutdown with a bounded grace period.
//!
//! `server.http = "http1"` serves HTTP/1.1 only: the connection skips the auto builder's
//! HTTP/2 preface sniffing (and HTTP upgrades, which no gateway route uses).
//!
//! # Layout
//! - [`HttpService`]: the service a connection is served with.
//! - [`bind`]: a listener with the configured `listen` backlog.
//! - [`serve`]: serves `service` on `listener` until `shutdown` resolves, then stops …
//! - [`serve_with`]: [`serve`], and while `overload` says so (see [`crate::overload`]).
//!
//! # What a connection may hold, and for how long
//! Nothing here waits on a client for longer than a configured time, and nothing a client
//! can open grows without a configured bound:
//! - **Before its first request** a connection has `header_read_timeout_ms` to complete a
//!   request head: the HTTP/2 preface and handshake included (hyper's own header timer
//!   starts only once the auto builder has read enough bytes to choose a protocol, so a
//!   client that sends nothing, or half a preface, would otherwise be held forever).
//! - **Between requests**: on HTTP/1.1 keep-alive, hyper's header timer runs again from the
//!   end of each response; an HTTP/2 connection with no request in flight for
//!   `idle_timeout_ms` is sent `GOAWAY`. A connection told to close (idle, or at shutdown)
//!   that is still open `shutdown_grace_ms` later (a client that never reads its response,
//!   or never answers the `GOAWAY`'s `PING`) is dropped.
//! - **Request bodies** are read by the edge within `body_read_timeout_ms` (`crate::api`).
//! - **HTTP/2 streams**: at most `http2_max_concurrent_streams` per connection, each with at
//!   most `http2_max_send_buf_bytes` of response buffered while the client's window is
//!   closed; flow-control windows of [`H2_STREAM_WINDOW`] and [`H2_CONNECTION_WINDOW`]
//!   bound what a client can push ahead of the reader; dead peers are found by keep-alive
//!   `PING`s.
//! - **Connections**: at most `max_connections_per_peer` from one peer (an IPv4 address, or
//!   an IPv6 /64, which one host usually owns whole): past it a new connection is closed at
//!   once. At most `max_connections` in all: past it a new connection is answered
//!   `503 CAPACITY_SHED` (HTTP/1.1, `Connection: close`) and closed, rather than left
//!   waiting in the kernel's backlog where clients, health checks included, time out.
//!
//! # TLS
//! With `[server.tls]` ([`crate::tls`]) every connection is TLS. The caps above apply at
//! accept, as for plain HTTP (a connection past `max_connections` is answered in plain
//! HTTP/1.1 and closed: a TLS client sees a failed handshake). The handshake runs on the
//! connection's own task, never in the accept loop, and must complete within
//! `header_read_timeout_ms`; the connection's times (and its CPU-pressure stamps) then start
//! as for a plain connection. The protocol is chosen as without TLS (the auto builder reads
//! the HTTP/2 preface); ALPN offers `h2` (unless `server.http = "http1"`) and `http/1.1`.
//! A client certificate mapped to a caller (`server.tls.clients`) is put on each of the
//! connection's requests ([`CertCaller`]), read once at the handshake.

use crate::config::{HttpVersions, ServerConfig};
use crate::overload::Overload;
use crate::pressure::{BacklogSizer, Pressure, Stamped};
use crate::request::CertCaller;
use crate::tls::Tls;
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use pin_project_lite::pin_project;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// HTTP/1.1: the most a connection buffers while reading a request head (hyper's default is
/// about 400 KiB). Bodies are streamed, not buffered here; 64 KiB of headers is more than
/// any client of this API sends.
pub const H1_MAX_BUF: usize = 64 * 1024;
/// HTTP/2: the receive window of a stream: a request body (at most `body_limit_bytes`) fits.
pub const H2_STREAM_WINDOW: u32 = 64 * 1024;
/// HTTP/2: the receive window of a connection: what all its streams may push unread.
pub const H2_CONNECTION_WINDOW: u32 = 256 * 1024;
/// HTTP/2: the largest header list a client may send (decoded), as for HTTP/1.1's heads.
pub const H2_MAX_HEADER_LIST: u32 = 16 * 1024;
/// HTTP/2: streams a client may reset before the server has accepted them (the rapid-reset
/// bound; hyper's default, stated here so it does not change under us).
pub const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Connections being answered `503` at once (past `max_connections`); past this, a new
/// connection is closed without an answer.
const MAX_REFUSING: usize = 1_024;

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

/// A listener on `addr` with a `listen` backlog of `backlog` connections (the kernel caps it
/// at `net.core.somaxconn`; see `server.listen_backlog`).
pub fn bind(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As std's and tokio's own `bind` do on Unix: a restarted server may bind at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Accepts a connection, and says whether it was already queued when asked for (the kernel's
/// backlog was not empty: connections were waiting for the server, not it for them). Tokio
/// tries the `accept(2)` at the first poll unless the listener last found its queue empty,
/// so a first poll that is ready took a connection that was waiting.
async fn accept_queued(
    listener: &TcpListener,
) -> std::io::Result<((TcpStream, std::net::SocketAddr), bool)> {
    let mut first = true;
    let mut queued = false;
    let accepted = std::future::poll_fn(|cx| {
        let polled = listener.poll_accept(cx);
        if first {
            first = false;
            queued = polled.is_ready();
        }
        polled
    })
    .await?;
    Ok((accepted, queued))
}

/// Sets the listen backlog of the bound, listening `listener` (Linux takes `listen(2)` on a
/// listening socket as a new backlog; connections already queued past it stay queued, and new
/// ones are refused until the queue is under it). A failure leaves the old backlog: logged,
/// not fatal.
fn set_backlog(listener: &TcpListener, backlog: u32) {
    let n = i32::try_from(backlog).unwrap_or(i32::MAX);
    match socket2::SockRef::from(listener).listen(n) {
        Ok(()) => tracing::debug!(backlog, "listen backlog set"),
        Err(e) => tracing::warn!(backlog, cause = %e, "listen backlog not set"),
    }
}

/// Serves `service` on `listener` until `shutdown` resolves, then stops accepting and lets
/// in-flight requests finish for at most `server.shutdown_grace_ms`.
///
/// See the module docs for the bounds on connections.
pub async fn serve(
    listener: TcpListener,
    service: impl HttpService,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, service, config, None, None, shutdown).await;
}

/// The protocol builder with the connection bounds of `config` (see the module docs).
fn builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(H1_MAX_BUF)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.http2_max_concurrent_streams)
        .max_send_buf_size(usize::try_from(config.http2_max_send_buf_bytes).unwrap_or(usize::MAX))
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
        .keep_alive_interval(config.http2_keep_alive_interval)
        .keep_alive_timeout(config.http2_keep_alive_timeout);
    match config.http {
        HttpVersions::Auto => builder,
        HttpVersions::Http1 => builder.http1_only(),
    }
}

/// [`serve`], and while `overload` says so (see [`crate::overload`]): no accepting (new
/// connections wait in the kernel's backlog) and `Connection: close` on HTTP/1 responses;
/// with `tls`, every connection is TLS (see the module docs, "TLS").
pub async fn serve_with(
    listener: TcpListener,
    service: impl HttpService,
    config: &ServerConfig,
    overload: Option<Overload>,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()>,
) {
    let http = config.http;
    let slots = Arc::new(Semaphore::new(
        usize::try_from(config.max_connections).unwrap_or(usize::MAX),
    ));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let peers = Peers::new(config.max_connections_per_peer);
    let refusal = Arc::<[u8]>::from(at_capacity_response());
    let (stop, stopping) = watch::channel(false);
    let builder = builder(config);
    let times = Times {
        first_request: config.header_read_timeout,
        idle: config.idle_timeout,
        drain: config.shutdown_grace,
    };
    tokio::pin!(shutdown);

    // Connections are stamped only when an action reads the stamps.
    let pressure = overload
        .as_ref()
        .map(|o| o.pressure().clone())
        .filter(|p| p.config().acts());
    let serving = Serving {
        builder,
        http,
        times,
        closes_keep_alive: overload.clone().filter(Overload::closes_keep_alive),
        pressure: pressure.clone(),
        stopping,
    };
    // Whether to yield after each accept, so that the new connection's first turn is
    // measured before the next is taken (see `crate::pressure`).
    let paced = pressure
        .as_ref()
        .is_some_and(|p| !p.config().accept_delay.is_zero());
    // The listen backlog sized to a wait while the gate closes (see `crate::pressure`).
    if let Some(p) = &pressure {
        p.set_backlog(config.listen_backlog);
    }
    let mut sizer = pressure
        .as_ref()
        .filter(|p| p.config().sizes_backlog())
        .map(|p| {
            BacklogSizer::new(
                p.config().backlog_wait,
                config.listen_backlog,
                Instant::now(),
                p.gate_count(),
            )
        });
    loop {
        if let Some(o) = &overload {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = async {
                    o.accepting().await;
                    o.pressure().accept_gate().await;
                } => {}
            }
        }
        let ((stream, peer), queued) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            // Overload began while waiting: do not take one more connection in.
            () = overload_begins(overload.as_ref()) => continue,
            accepted = accept_queued(&listener) => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(cause = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        // The gate was open when this accept began waiting; if it has closed since, this one
        // connection waits here, unserved, as it would have in the backlog.
        if let Some(p) = pressure.as_ref().filter(|p| !p.admits_connection()) {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = p.accept_gate() => {}
            }
        }
        if let (Some(p), Some(sizer)) = (&pressure, &mut sizer)
            && let Some(backlog) = sizer.accepted(Instant::now(), queued, p.gate_count())
        {
            set_backlog(&listener, backlog);
            p.set_backlog(backlog);
        }
        let Some(peer_slot) = peers.admit(peer.ip()) else {
            tracing::debug!(%peer, "connection closed: per-peer connection limit");
            drop(stream);
            continue;
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, "connection refused: max_connections");
            refuse(stream, &refusing, Arc::clone(&refusal), times.first_request);
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(cause = %e, "set_nodelay failed");
        }
        let held = Held {
            _permit: permit,
            _peer: peer_slot,
        };
        match &tls {
            None => serving.connection(TokioIo::new(stream), service.clone(), peer, held),
            Some(tls) => {
                // The handshake on the connection's own task, within the first request's
                // time; the connection's life (and its CPU-pressure stamps) starts after it.
                let acceptor = tls.acceptor();
                let tls = Arc::clone(tls);
                let (serving, service) = (serving.clone(), service.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(times.first_request, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let service = WithCaller {
                                caller: tls.caller_of(stream.get_ref().1).map(CertCaller),
                                inner: service,
                            };
                            serving.connection(TokioIo::new(stream), service, peer, held);
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, cause = %e, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
        if paced {
            tokio::task::yield_now().await;
        }
    }

    drop(listener);
    tracing::info!("shutting down: no new connections; waiting for in-flight requests");
    stop.send_replace(true);
    // Every open connection holds a slot: all slots back means all connections closed.
    let all = config.max_connections;
    tokio::select! {
        _ = slots.acquire_many(all) => tracing::info!("all connections closed"),
        () = tokio::time::sleep(config.shutdown_grace) => {
            tracing::warn!(grace_ms = config.shutdown_grace.as_millis(), "grace period elapsed; closing");
        }
    }
}

/// The service of a TLS connection: each of its requests carries the caller its client's
/// certificate is mapped to, if any ([`Tls::caller_of`]).
#[derive(Clone)]
struct WithCaller<S> {
    inner: S,
    caller: Option<CertCaller>,
}

impl<S: HttpService> tower::Service<http::Request<hyper::body::Incoming>> for WithCaller<S> {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<hyper::body::Incoming>) -> S::Future {
        if let Some(caller) = &self.caller {
            req.extensions_mut().insert(caller.clone());
        }
        self.inner.call(req)
    }
}

/// What an open connection holds until it ends: its slot in `max_connections` and in its
/// peer's count.
struct Held {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _peer: PeerSlot,
}

/// What each connection is served with, shared by all (cloned onto a TLS connection's task
/// for after its handshake).
#[derive(Clone)]
struct Serving {
    builder: auto::Builder<TokioExecutor>,
    http: HttpVersions,
    times: Times,
    /// The overload, when its action closes keep-alive connections (`Connection: close`).
    closes_keep_alive: Option<Overload>,
    /// The CPU-pressure signal, when an action reads the connections' stamps.
    pressure: Option<Pressure>,
    stopping: watch::Receiver<bool>,
}

impl Serving {
    /// Serves one connection on a task of its own ([`spawn_watched`]), with `service` as the
    /// overload actions call for.
    fn connection<I, S>(&self, io: I, service: S, peer: std::net::SocketAddr, held: Held)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        S: HttpService,
    {
        match &self.closes_keep_alive {
            Some(o) => self.spawn(io, close_when_overloaded(service, o.clone()), peer, held),
            None => self.spawn(io, service, peer, held),
        }
    }

    fn spawn<I, S>(&self, io: I, service: S, peer: std::net::SocketAddr, held: Held)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        S: HttpService,
    {
        let state = Arc::new(ConnState::default());
        let service = TowerToHyperService::new(Tracked {
            inner: service,
            state: Arc::clone(&state),
            peer,
        });
        let timed = self.pressure.clone().map(Timed::new);
        let stopping = self.stopping.clone();
        match self.http {
            HttpVersions::Auto => {
                let conn = self.builder.serve_connection_with_upgrades(io, service);
                let graceful = auto::UpgradeableConnection::graceful_shutdown;
                let life = Lifecycle::new(conn.into_owned(), graceful, state, self.times, timed);
                spawn_watched(life, stopping, peer, held);
            }
            // `serve_connection_with_upgrades` ignores `http1_only`.
            HttpVersions::Http1 => {
                let conn = self.builder.serve_connection(io, service);
                let graceful = auto::Connection::graceful_shutdown;
                let life = Lifecycle::new(conn.into_owned(), graceful, state, self.times, timed);
                spawn_watched(life, stopping, peer, held);
            }
        }
    }
}

/// The times of a connection's life (see the module docs).
#[derive(Debug, Clone, Copy)]
struct Times {
    /// From the start to the first request's head.
    first_request: Duration,
    /// With no request in flight, before `GOAWAY` (HTTP/2; HTTP/1.1's is hyper's header timer).
    idle: Duration,
    /// From a graceful close to a forced one.
    drain: Duration,
}

/// Runs one connection to its end on its own task (closing it when its times run out, or
/// gracefully when the server stops), then frees what it held.
fn spawn_watched<C, E>(
    life: Lifecycle<C>,
    mut stopping: watch::Receiver<bool>,
    peer: std::net::SocketAddr,
    held: Held,
) where
    C: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send,
{
    tokio::spawn(async move {
        tokio::pin!(life);
        let ended = tokio::select! {
            ended = life.as_mut() => ended,
            // Stopping (or the server is gone): close gracefully, within the grace.
            () = stopped(&mut stopping) => {
                life.as_mut().close_gracefully();
                life.await
            }
        };
        match ended {
            Ok(End::Closed) => {}
            Ok(end) => tracing::debug!(%peer, ?end, "connection dropped"),
            Err(e) => tracing::debug!(%peer, cause = %e, "connection ended with an error"),
        }
        drop(held);
    });
}

/// Resolves when the server stops (or is gone).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Why a [`Lifecycle`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The connection ended by itself (the client closed, or a graceful close completed).
    Closed,
    /// No first request head within `header_read_timeout_ms`.
    NoRequest,
    /// Told to close (idle, or stopping), it was still open a grace period later.
    Drained,
    /// Its first turn on the CPU came too late, before any request was read
    /// (`server.overload.stale_delay_ms`).
    Stale,
}

/// A connection's part in the CPU-pressure signal: the stamp its wakes go through and the
/// signal its waits are folded into (see [`crate::pressure`]).
struct Timed {
    pressure: Pressure,
    stamp: Arc<Stamped>,
    waker: Waker,
}

impl Timed {
    /// Counts the connection as woken now (at its accept).
    fn new(pressure: Pressure) -> Self {
        let stamp = pressure.stamp();
        let waker = stamp.waker();
        Timed {
            pressure,
            stamp,
            waker,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first request; the timer is its deadline.
    First,
    /// Serving; the timer is when the connection would have been idle long enough.
    Open,
    /// Told to close; the timer is when it is dropped.
    Closing,
}

pin_project! {
    /// A connection under its times: dropped when its first request does not come in time,
    /// closed gracefully when idle, dropped when a graceful close does not complete in time.
    struct Lifecycle<C> {
        #[pin]
        conn: C,
        #[pin]
        timer: Sleep,
        graceful_shutdown: fn(Pin<&mut C>),
        state: Arc<ConnState>,
        times: Times,
        phase: Phase,
        timed: Option<Timed>,
    }
}

impl<C> Lifecycle<C> {
    fn new(
        conn: C,
        graceful_shutdown: fn(Pin<&mut C>),
        state: Arc<ConnState>,
        times: Times,
        timed: Option<Timed>,
    ) -> Self {
        Lifecycle {
            conn,
            timer: tokio::time::sleep(times.first_request),
            graceful_shutdown,
            state,
            times,
            phase: Phase::First,
            timed,
        }
    }

    /// Starts a graceful close (hyper's: HTTP/1.1 closes after the response in progress,
    /// HTTP/2 sends `GOAWAY`), to be forced `drain` later.
    fn close_gracefully(self: Pin<&mut Self>) {
        let this = self.project();
        if *this.phase != Phase::Closing {
            (this.graceful_shutdown)(this.conn);
            *this.phase = Phase::Closing;
            this.timer.reset(Instant::now() + this.times.drain);
        }
    }
}

impl<C, E> Future for Lifecycle<C>
where
    C: Future<Output = Result<(), E>>,
{
    type Output = Result<End, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Under CPU pressure the inner futures are polled with a waker that stamps their
        // wakes, so that this poll knows how long the connection waited for its turn.
        let this = self.as_mut().project();
        let stamped_waker = match this.timed {
            None => None,
            Some(t) => {
                if let Some(wait) = t.stamp.polled(cx) {
                    t.pressure.observe(wait);
                    let unread =
                        *this.phase == Phase::First && !this.state.started.load(Ordering::Relaxed);
                    if unread && t.pressure.is_stale(wait) {
                        t.pressure.closed_stale();
                        return Poll::Ready(Ok(End::Stale));
                    }
                }
                Some(t.waker.clone())
            }
        };
        match stamped_waker {
            None => self.poll_life(cx),
            Some(waker) => self.poll_life(&mut Context::from_waker(&waker)),
        }
    }
}

impl<C, E> Lifecycle<C>
where
    C: Future<Output = Result<(), E>>,
{
    /// Polls the connection under its times.
    fn poll_life(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<End, E>> {
        loop {
            let mut this = self.as_mut().project();
            if let Poll::Ready(ended) = this.conn.as_mut().poll(cx) {
                return Poll::Ready(ended.map(|()| End::Closed));
            }
            // A request head arrives by I/O, which polls this future: the first request is
            // seen here, not only when the first-request timer fires.
            if *this.phase == Phase::First && this.state.started.load(Ordering::Relaxed) {
                *this.phase = Phase::Open;
                this.timer.as_mut().reset(Instant::now() + this.times.idle);
            }
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            match *this.phase {
                Phase::First if !this.state.started.load(Ordering::Relaxed) => {
                    return Poll::Ready(Ok(End::NoRequest));
                }
                Phase::First => {
                    *this.phase = Phase::Open;
                    this.timer.reset(now + this.times.idle);
                }
                Phase::Open => match this.state.idle_since() {
                    None => this.timer.reset(now + this.times.idle),
                    Some(since) if since + this.times.idle > now => {
                        this.timer.reset(since + this.times.idle);
                    }
                    // Polled again at the top of the loop, so it acts on the close.
                    Some(_) => self.as_mut().close_gracefully(),
                },
                Phase::Closing => return Poll::Ready(Ok(End::Drained)),
            }
        }
    }
}

/// What a connection's requests tell its [`Lifecycle`]. Relaxed atomics: they order nothing
/// else, and a timer that reads a value a moment old only closes a moment late (or closes
/// gracefully a connection whose next request is arriving, which HTTP/2's `GOAWAY` and
/// HTTP/1.1's graceful close both let finish).
struct ConnState {
    /// A request head has been read.
    started: AtomicBool,
    /// Requests whose service future has not finished.
    in_flight: AtomicUsize,
    /// When the last request finished, in milliseconds since `epoch`.
    last_done_ms: AtomicU64,
    epoch: Instant,
}

impl Default for ConnState {
    fn default() -> Self {
        ConnState {
            started: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl ConnState {
    /// Since when no request has been in flight (`None`: one is).
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(self.epoch + Duration::from_millis(self.last_done_ms.load(Ordering::Relaxed)))
    }
}

/// A service counting its requests in flight into the connection's [`ConnState`].
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    state: Arc<ConnState>,
    /// The connection's peer, given to each request as axum's `ConnectInfo` (the console's
    /// sign-in throttle keys on it).
    peer: std::net::SocketAddr,
}

/// Counts one request in flight until dropped (when its future finishes or is dropped).
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let s = &self.0;
        let ms = u64::try_from(s.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        s.last_done_ms.store(ms, Ordering::Relaxed);
        s.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project! {
    /// The future of a [`Tracked`] request.
    struct TrackedFuture<F> {
        #[pin]
        inner: F,
        _in_flight: InFlight,
    }
}

impl<F: Future> Future for TrackedFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().inner.poll(cx)
    }
}

impl<S: HttpService> tower::Service<http::Request<hyper::body::Incoming>> for Tracked<S> {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<hyper::body::Incoming>) -> Self::Future {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        self.state.started.store(true, Ordering::Relaxed);
        self.state.in_flight.fetch_add(1, Ordering::Relaxed);
        TrackedFuture {
            inner: self.inner.call(req),
            _in_flight: InFlight(Arc::clone(&self.state)),
        }
    }
}

/// Open connections per peer (see the module docs), against `max`.
struct Peers {
    max: u32,
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// One open connection of a peer; counted down when dropped.
struct PeerSlot {
    peers: Arc<Peers>,
    key: IpAddr,
}

impl Peers {
    fn new(max: u32) -> Arc<Peers> {
        Arc::new(Peers {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// The key a peer is counted under: an IPv4 address (IPv4-mapped IPv6 included), or the
    /// /64 of an IPv6 address.
    fn key(ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
            v4 => v4,
        }
    }

    /// A slot for one more connection of `ip`, or `None` when it has `max` open.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<PeerSlot> {
        let key = Self::key(ip);
        // Never held across an await; a panic while held cannot leave the map inconsistent
        // (one insert or update), so a poisoned lock is taken as it is.
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: Arc::clone(self),
            key,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self
            .peers
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The answer to a connection past `max_connections`: HTTP/1.1 `503 CAPACITY_SHED`, then
/// close.
fn at_capacity_response() -> Vec<u8> {
    use crate::api::error::{ApiError, ErrorCode};
    let body = ApiError::new(ErrorCode::CapacityShed)
        .with_message("The server is at its connection limit; retry shortly.")
        .with_retry_after(Duration::from_secs(1))
        .json();
    let mut out = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Answers `response` on `stream` once its request head is in, and closes it, on a task of
/// its own (at most [`MAX_REFUSING`] at once, each for at most `within`; past that the
/// stream is just closed). What the client sends after is read and dropped, so the close
/// does not reset the connection before the client has read the answer.
fn refuse(stream: TcpStream, refusing: &Arc<Semaphore>, response: Arc<[u8]>, within: Duration) {
    let Ok(permit) = Arc::clone(refusing).try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let mut stream = stream;
        let _ = tokio::time::timeout(within, async {
            // The answer goes after the request head (or what came of it): an HTTP/1.1
            // client takes bytes that arrive before it has sent a request for garbage.
            let mut head = Vec::with_capacity(1024);
            let mut sink = [0u8; 1024];
            while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut sink).await? {
                    0 => break,
                    n => head.extend_from_slice(&sink[..n]),
                }
            }
            stream.write_all(&response).await?;
            stream.shutdown().await?;
            let mut read = 0usize;
            while read < 64 * 1024 {
                match stream.read(&mut sink).await? {
                    0 => break,
                    n => read += n,
                }
            }
            Ok::<_, std::io::Error>(())
        })
        .await;
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

    fn pressure(stale_ms: u64) -> Pressure {
        Pressure::new(
            crate::pressure::PressureConfig {
                accept_delay: Duration::ZERO,
                stale_delay: Duration::from_millis(stale_ms),
                backlog_wait: Duration::ZERO,
            },
            &mut prometheus_client::registry::Registry::default(),
        )
    }

    fn times() -> Times {
        Times {
            first_request: Duration::from_secs(5),
            idle: Duration::from_secs(60),
            drain: Duration::from_secs(1),
        }
    }

    /// The future of a connection that never ends by itself.
    type Pending = std::future::Pending<Result<(), std::io::Error>>;

    /// A connection that never ends by itself, accepted now, under `pressure`'s actions.
    fn timed_life(pressure: &Pressure, state: &Arc<ConnState>) -> Lifecycle<Pending> {
        Lifecycle::new(
            std::future::pending(),
            |_| {},
            Arc::clone(state),
            times(),
            Some(Timed::new(pressure.clone())),
        )
    }

    /// The kernel holds `backlog + 1` completed connections not yet accepted and drops the
    /// `SYN` of the next, whose `connect` then waits for its retransmission (a second at
    /// the least): after `set_backlog(1)` on a listener bound with 64, two connect and the
    /// third waits.
    #[tokio::test]
    async fn set_backlog_changes_what_the_kernel_holds() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 64).unwrap();
        let addr = listener.local_addr().unwrap();
        let connect = || tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr));
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(connect().await.expect("held at 64").unwrap());
        }
        drop(held);
        // Accept and drop what the kernel held, so the queue is empty again.
        for _ in 0..3 {
            drop(listener.accept().await.unwrap());
        }
        set_backlog(&listener, 1);
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(connect().await.expect("held at 1").unwrap());
        }
        assert!(connect().await.is_err(), "a third connection was held");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_whose_first_turn_is_late_is_closed_unread() {
        let p = pressure(250);
        let state = Arc::new(ConnState::default());
        let life = timed_life(&p, &state);
        tokio::pin!(life);
        // Accepted, then its first turn comes 300 ms later.
        tokio::time::advance(Duration::from_millis(300)).await;
        let ended = life.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(matches!(ended, Poll::Ready(Ok(End::Stale))), "{ended:?}");
        assert!(p.delay() > Duration::ZERO, "the wait is a sample");
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_turn_does_not_close_a_connection_that_has_started() {
        let p = pressure(250);
        let state = Arc::new(ConnState::default());
        let life = timed_life(&p, &state);
        tokio::pin!(life);
        // In time: served on.
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(
            life.as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_pending()
        );
        // A request was read; a later late turn leaves the connection alone.
        state.started.store(true, Ordering::Relaxed);
        let timed = life
            .as_mut()
            .project()
            .timed
            .as_ref()
            .map(|t| t.waker.clone());
        timed.expect("timed").wake();
        tokio::time::advance(Duration::from_millis(400)).await;
        assert!(
            life.as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_pending()
        );
        // Off (no CPU-pressure actions): never stale.
        let off = Lifecycle::<Pending>::new(
            std::future::pending(),
            |_| {},
            Arc::new(ConnState::default()),
            times(),
            None,
        );
        tokio::pin!(off);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            off.as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_pending()
        );
    }

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
