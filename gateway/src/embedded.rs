//! A gateway in this process on a loopback port: for integration tests and the loadtest.
//!
//! # Layout
//! - [`EmbeddedOptions`]: how to start an embedded gateway.
//! - [`EmbeddedGateway`]: a running embedded gateway.
//! - [`start`]: starts a gateway on `127.0.0.1:0`.

use crate::api::reload::ConfigSource;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, Overrides};
use crate::{Error, Gateway};
use std::net::SocketAddr;
use std::path::PathBuf;
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
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl EmbeddedGateway {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful shutdown; returns once the server has stopped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
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
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(gateway.serve(listener, async move {
        let _ = stopped.await;
    }));
    Ok(EmbeddedGateway {
        addr,
        app,
        overload,
        console,
        stop: Some(stop),
        task,
    })
}
