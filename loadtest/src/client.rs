//! The generator's own HTTP/1.1 connections: one per worker (or per journey), keep-alive,
//! opened and re-opened here, never a hidden pool. A connection that fails or times out is dropped and
//! the next request opens a new one (counted).
//!
//! # Layout
//! - [`TargetAddr`]: where the traffic goes.
//! - [`SendError`]: why a request got no HTTP answer.
//! - [`Conn`]: one client connection, owned by one worker.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::Error;

/// Where the traffic goes.
#[derive(Debug, Clone)]
pub struct TargetAddr {
    /// `host:port`, sent as the `Host` header.
    pub authority: String,
    /// The resolved socket address.
    pub addr: SocketAddr,
}

impl TargetAddr {
    /// Parses and resolves an `http://host:port` URL (HTTPS is not supported).
    pub async fn resolve(url: &str) -> Result<Self, Error> {
        let uri: Uri = url
            .parse()
            .map_err(|e| Error::Target(format!("{url}: {e}")))?;
        if uri.scheme_str().is_some_and(|s| s != "http") {
            return Err(Error::Target(format!("{url}: only http:// is supported")));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| Error::Target(format!("{url}: needs a host")))?
            .to_string();
        let with_port = if uri.port().is_some() {
            authority.clone()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await
            .map_err(|e| Error::Target(format!("{url}: {e}")))?
            .next()
            .ok_or_else(|| Error::Target(format!("{url}: resolves to nothing")))?;
        Ok(Self { authority, addr })
    }

    /// A target at a known socket address (tests, the embedded gateway).
    pub fn from_addr(addr: SocketAddr) -> Self {
        Self {
            authority: addr.to_string(),
            addr,
        }
    }
}

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// Not answered within the timeout; the connection is dropped.
    Timeout,
    /// Connect, write or read failed; the connection is dropped.
    Connection,
    /// The generator itself could not open a connection (no descriptor or local port
    /// left): the request was never sent, which says nothing about the target.
    Local,
}

/// Whether a failed connect is the generator's own shortage rather than the target's
/// answer: EMFILE and ENFILE (no descriptor; Linux numbers 24 and 23) or no local port.
fn local_shortage(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::AddrNotAvailable || matches!(e.raw_os_error(), Some(23 | 24))
}

/// One client connection, owned by one worker.
#[derive(Debug)]
pub struct Conn {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
    opened: u64,
    abortive_close: bool,
    /// The local address to connect from (`None`: the kernel's choice).
    source: Option<std::net::IpAddr>,
}

impl Conn {
    /// A connection to `addr`, opened on first use.
    pub const fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            sender: None,
            opened: 0,
            abortive_close: false,
            source: None,
        }
    }

    /// A connection of one journey (`clients = "per_journey"`): as [`Conn::new`], from
    /// `source` when given, and closed with a reset (`SO_LINGER` 0) rather than a `FIN`.
    ///
    /// Both keep the local port range from running out at thousands of journeys a second:
    /// a closed connection leaves no `TIME_WAIT` behind, and connections from several
    /// loopback addresses each have a port range of their own. When the range is nearly
    /// used up, `connect` itself spends the generator's CPU searching it for a free port
    /// (BENCHMARKS.md, "CPU-bound step overload"). Every answer
    /// has been read when the journey closes its connection; a reset then costs the target
    /// what a `FIN` would.
    pub const fn per_journey(addr: SocketAddr, source: Option<std::net::IpAddr>) -> Self {
        Self {
            addr,
            sender: None,
            opened: 0,
            abortive_close: true,
            source,
        }
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        let Some(source) = self.source else {
            return TcpStream::connect(self.addr).await;
        };
        let socket = match source {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(source, 0))?;
        socket.connect(self.addr).await
    }

    /// How many times this worker opened a TCP connection.
    pub const fn opened(&self) -> u64 {
        self.opened
    }

    async fn ensure(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, SendError> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            let stream = self.connect().await.map_err(|e| {
                if local_shortage(&e) {
                    SendError::Local
                } else {
                    SendError::Connection
                }
            })?;
            stream
                .set_nodelay(true)
                .map_err(|_| SendError::Connection)?;
            if self.abortive_close {
                stream
                    .set_zero_linger()
                    .map_err(|_| SendError::Connection)?;
            }
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|_| SendError::Connection)?;
            tokio::spawn(async move {
                // The connection task ends when the sender is dropped or the peer closes;
                // a failure shows up on the next request through the sender.
                let _ = conn.await;
            });
            self.opened += 1;
            self.sender = Some(sender);
        }
        match self.sender.as_mut() {
            Some(s) => Ok(s),
            None => Err(SendError::Connection),
        }
    }

    /// Sends one request and reads the whole answer, without a timeout of its own (the
    /// caller bounds it; a dropped future leaves the connection unusable, see [`Conn::reset`]).
    pub async fn send_raw(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Bytes>, SendError> {
        let out = async {
            let sender = self.ensure().await?;
            sender.ready().await.map_err(|_| SendError::Connection)?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|_| SendError::Connection)?;
            let (parts, body) = resp.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|_| SendError::Connection)?
                .to_bytes();
            Ok::<_, SendError>(Response::from_parts(parts, bytes))
        }
        .await;
        if out.is_err() {
            self.sender = None;
        }
        out
    }

    /// Drops the connection (after a request on it was abandoned); the next send reconnects.
    pub fn reset(&mut self) {
        self.sender = None;
    }

    /// Sends one request and reads the whole answer, within `timeout`.
    pub async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Response<Bytes>, SendError> {
        match tokio::time::timeout(timeout, self.send_raw(req)).await {
            Ok(r) => r,
            Err(_) => {
                self.sender = None;
                Err(SendError::Timeout)
            }
        }
    }
}
