//! A gateway in this process on a loopback port: for integration tests and the loadtest.
//!
//! # Layout
//! - [`EmbeddedOptions`]: how to start an embedded gateway.
//! - [`EmbeddedGateway`]: a running embedded gateway.
//! - [`start`]: starts a gateway on `127.0.0.1:0`.
//! - [`ServerTask`]: a spawned server and the signal that stops it (also the loadtest's bureau
//!   simulator's).

use crate::api::reload::ConfigSource;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, Overrides};
use crate::{Error, Gateway};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How to start an embedded gateway.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedOptions {
    /// A configuration file (default: the built-in defaults). Used without `config`, it is
    /// also what `POST /admin/reload` reads again (with the key, token and address below
    /// overriding it as at start).
    pub config_path: Option<PathBuf>,
    /// A configuration to use as is (wins over `config_path`).
    pub config: Option<Config>,
    /// The caller key to accept (default: the demo key).
    pub api_key: String,
    /// The admin token (default: the demo token).
    pub admin_token: String,
    /// The clock (default: the system clock).
    pub clock: Option<SharedClock>,
}

/// A running embedded gateway.
#[derive(Debug)]
pub struct EmbeddedGateway {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The shared state, for tests that look inside.
    pub app: crate::api::App,
    /// The overload state (with `server.overload.enabled`), for tests that drive it.
    pub overload: Option<crate::overload::Overload>,
    /// The operator console, for tests that look inside (its live page's samples).
    pub console: crate::console::Console,
    server: ServerTask<()>,
}

impl EmbeddedGateway {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful shutdown; returns once the server has stopped.
    pub async fn shutdown(self) {
        self.server.stop().await;
    }
}

/// A server spawned on the runtime, given a [`Stopped`] future to shut down on; dropping the
/// handle stops it too (the future completes when the sender is gone).
#[derive(Debug)]
pub struct ServerTask<T> {
    stop: oneshot::Sender<()>,
    task: JoinHandle<T>,
}

/// Completes when its [`ServerTask`] is stopped or dropped.
#[derive(Debug)]
pub struct Stopped(oneshot::Receiver<()>);

impl Future for Stopped {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl<T: Send + 'static> ServerTask<T> {
    /// Spawns `serve(stopped)`.
    pub fn spawn<F>(serve: impl FnOnce(Stopped) -> F) -> Self
    where
        F: Future<Output = T> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(Stopped(stopped)));
        Self { stop, task }
    }

    /// Signals the server and returns once its task has ended (its result, or a panic, is
    /// the caller's no more: the server reports its own failures).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Starts a gateway on `127.0.0.1:0`.
pub async fn start(opts: EmbeddedOptions) -> Result<EmbeddedGateway, Error> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let overrides = Overrides {
        listen: Some(loopback.to_string()),
        api_keys: (!opts.api_key.is_empty()).then(|| opts.api_key.clone()),
        admin_token: (!opts.admin_token.is_empty()).then(|| opts.admin_token.clone()),
        ..Overrides::default()
    };
    let (mut config, source) = match (opts.config, opts.config_path) {
        (Some(c), _) => (c, None),
        (None, Some(path)) => (
            Config::from_file(&path)?,
            Some(ConfigSource {
                path,
                overrides: overrides.clone(),
            }),
        ),
        (None, None) => (Config::default(), None),
    };
    config.apply(overrides)?;
    let clock = opts.clock.unwrap_or_else(SystemClock::shared);
    let listener = crate::server::bind(config.listen, config.server.listen_backlog)?;
    let gateway = Gateway::build(config, clock)?;
    if let Some(source) = source {
        gateway.app().reload.set_source(source);
    }
    let addr = listener.local_addr()?;
    let app = gateway.app().clone();
    let overload = gateway.overload().cloned();
    let console = gateway.console().clone();
    let server = ServerTask::spawn(|stopped| gateway.serve(listener, stopped));
    Ok(EmbeddedGateway {
        addr,
        app,
        overload,
        console,
        server,
    })
}
