//! Reloading the configuration file without a restart (`SIGHUP`, `POST /admin/reload`).
//!
//! A reload reads the file the gateway started with, applies the same environment and flag
//! overrides, and validates the whole result (the policy against the thresholds in force,
//! the bureau's settings, the log filter) before it changes anything: a bad file changes
//! nothing, and the answer names the key at fault. Then what can change live is swapped,
//! each piece atomically, between requests (a request in flight keeps what it loaded):
//!
//! - `[policy]`: windows and their limits ([`crate::policy::Policy::replace`]): the rate
//!   limits (global and per user) and admission follow the new snapshot on their next check;
//!   a forced window the new file no longer names is dropped;
//! - `api_keys`, `admin_token` and the named `[[admin.tokens]]` (a new admin token also
//!   changes the users' log tags, which are keyed by it);
//! - `[bureau]`, while it stays on: a new client, breaker and cache take the old one's place
//!   (calls in flight finish on the old one);
//! - `[server.tls]`, while TLS stays on: the certificate, key and client CA files are read
//!   again (also when only their contents changed), for the connections accepted next;
//! - `log.filter`, when the process gave the reloader a way to change it
//!   ([`Reloader::set_log_filter`]) and `RUST_LOG` does not override it.
//!
//! Every other difference (`listen`, `store`, `[redis]`, `[server]`, `[admission]`,
//! `[risk]`, `[console]`, `seed_demo_users`, `log.format`, turning the bureau or TLS on or off) is reported as
//! needing a restart, and keeps being reported by later reloads until the process restarts.
//! Reloads are serialised; each is logged (applied, or refused and why).

use super::Auth;
use crate::bureau::Bureau;
use crate::config::ServerConfig;
use crate::config::{Config, ConfigError, Overrides};
use crate::policy::Policy;
use crate::tls::Tls;
use arc_swap::{ArcSwap, ArcSwapOption};
use risk_core::ThresholdCache;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Changes the process's log filter (an `EnvFilter` directive), or says why it cannot.
pub type LogFilterHook = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What a reload changes in the gateway's shared state (`AppState::reload_config` lends
/// it), and the thresholds in force, which the new policy's profiles are checked against.
#[derive(Debug, Clone, Copy)]
pub struct Live<'a> {
    /// The peak-window policy.
    pub policy: &'a Policy,
    /// The credentials.
    pub auth: &'a ArcSwap<Auth>,
    /// The credit bureau.
    pub bureau: &'a ArcSwapOption<Bureau>,
    /// The thresholds in force.
    pub thresholds: &'a ThresholdCache,
    /// TLS on the listener, if on.
    pub tls: Option<&'a Tls>,
}

/// Where the configuration comes from: the file and the overrides that win over it.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The TOML file.
    pub path: PathBuf,
    /// The environment and flags, applied again on every reload.
    pub overrides: Overrides,
}

/// The reload state of one gateway: where its configuration comes from and what was last
/// applied.
pub struct Reloader {
    source: OnceLock<ConfigSource>,
    log_filter: OnceLock<LogFilterHook>,
    /// The configuration last applied (sections that need a restart as started); held
    /// while a reload runs, so reloads are serialised.
    applied: Mutex<Config>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("source", &self.source.get().map(|s| &s.path))
            .field("log_filter", &self.log_filter.get().is_some())
            .finish_non_exhaustive()
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// The file read.
    pub file: String,
    /// What changed live: `server.tls` (files read again), `policy`, `api_keys`,
    /// `admin_token`, `bureau`, `log.filter`.
    pub applied: Vec<&'static str>,
    /// What differs from the running process but only takes effect after a restart.
    pub needs_restart: Vec<&'static str>,
    /// Differences that were not applied, and why (e.g. `log.filter` under `RUST_LOG`).
    pub not_applied: Vec<NotApplied>,
    /// The window in force after the reload.
    pub policy_window: String,
    /// The policy generation after the reload.
    pub policy_generation: u64,
    /// A window forced by an operator that the new file no longer names: the calendar
    /// decides again.
    pub unforced_window: Option<String>,
}

/// A difference a reload did not apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotApplied {
    /// The dotted key.
    pub key: &'static str,
    /// Why.
    pub reason: String,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The gateway was started without a configuration file: there is nothing to re-read.
    #[error("the gateway was started without a configuration file (--config, GATEWAY_CONFIG)")]
    NoFile,
    /// The file is unreadable or invalid; nothing changed.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

impl ReloadError {
    /// The dotted key at fault (`.` for the file as a whole).
    pub fn key(&self) -> String {
        match self {
            ReloadError::NoFile => "config".into(),
            ReloadError::Invalid(ConfigError::Read { .. }) => ".".into(),
            ReloadError::Invalid(
                ConfigError::Parse { key, .. } | ConfigError::Invalid { key, .. },
            ) => key.clone(),
        }
    }

    /// What is wrong, without the key.
    pub fn problem(&self) -> String {
        match self {
            ReloadError::NoFile => self.to_string(),
            ReloadError::Invalid(ConfigError::Read { path, source }) => {
                format!("cannot read {}: {source}", path.display())
            }
            ReloadError::Invalid(ConfigError::Parse { message, .. }) => message.clone(),
            ReloadError::Invalid(ConfigError::Invalid { problem, .. }) => problem.clone(),
        }
    }
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ReloadError {
    ReloadError::Invalid(ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    })
}

impl Reloader {
    /// For a gateway started with `applied` (demo credentials filled in).
    pub fn new(applied: Config) -> Self {
        Reloader {
            source: OnceLock::new(),
            log_filter: OnceLock::new(),
            applied: Mutex::new(applied),
        }
    }

    /// Sets where the configuration comes from (once; later calls are ignored and answer
    /// `false`). Without it a reload answers [`ReloadError::NoFile`].
    pub fn set_source(&self, source: ConfigSource) -> bool {
        self.source.set(source).is_ok()
    }

    /// Sets how to change the log filter (once; later calls are ignored and answer
    /// `false`). Without it a changed `log.filter` is reported as not applied.
    pub fn set_log_filter(&self, hook: LogFilterHook) -> bool {
        self.log_filter.set(hook).is_ok()
    }

    /// Reads the configuration again and applies it to `app`; logged either way.
    pub fn reload(&self, app: Live<'_>) -> Result<ReloadReport, ReloadError> {
        let out = self.try_reload(app);
        match &out {
            Ok(r) => tracing::info!(
                file = %r.file,
                applied = ?r.applied,
                needs_restart = ?r.needs_restart,
                not_applied = ?r.not_applied,
                policy.window = %r.policy_window,
                policy.generation = r.policy_generation,
                unforced_window = r.unforced_window.as_deref(),
                "configuration reloaded"
            ),
            Err(e) => tracing::warn!(
                key = %e.key(),
                problem = %e.problem(),
                "configuration reload refused; nothing changed"
            ),
        }
        out
    }

    fn try_reload(&self, app: Live<'_>) -> Result<ReloadReport, ReloadError> {
        let source = self.source.get().ok_or(ReloadError::NoFile)?;
        let mut applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
        // 1. Read and check everything; nothing changes until all of it passed.
        let mut next = Config::from_file(&source.path)?;
        next.apply(source.overrides.clone())?;
        // The same demo credentials as at start when none are configured.
        if next.api_keys.is_empty() {
            next.api_keys = vec![crate::DEMO_API_KEY.to_owned()];
        }
        if next.admin_token.is_empty() {
            next.admin_token = crate::DEMO_ADMIN_TOKEN.to_owned();
        }
        next.validate()?;
        let policy_changed = next.policy != applied.policy;
        let compiled = next.policy.validate().map_err(ConfigError::from)?;
        if policy_changed && let Some(th) = app.thresholds.load_full() {
            th.require_profiles(compiled.profiles())
                .map_err(|e| invalid("policy", format!("thresholds in force: {e}")))?;
        }
        let mut needs_restart = restart_only(&applied, &next);
        let mut not_applied = Vec::new();
        // The bureau: replaced while it stays on; on or off needs a restart.
        let bureau_changed = next.bureau != applied.bureau;
        let current = app.bureau.load_full();
        let bureau = match (&current, next.bureau.url.is_some()) {
            _ if !bureau_changed => None,
            (Some(old), true) => Some(
                old.reconfigured(&next.bureau)
                    .map_err(|e| invalid(format!("bureau.{}", e.key()), e.problem()))?,
            ),
            _ => {
                needs_restart.push("bureau");
                None
            }
        };
        let filter_changed = next.log.filter != applied.log.filter;
        let filter_hook = match (filter_changed, self.log_filter.get()) {
            (false, _) => None,
            (true, None) => {
                not_applied.push(NotApplied {
                    key: "log.filter",
                    reason: "this process's log filter cannot be changed (RUST_LOG set, or no \
                             reloadable log filter)"
                        .into(),
                });
                None
            }
            (true, Some(hook)) => {
                tracing_subscriber::EnvFilter::try_new(&next.log.filter)
                    .map_err(|e| invalid("log.filter", e.to_string()))?;
                Some(hook)
            }
        };

        let tls = match (app.tls, &next.server.tls) {
            (Some(tls), Some(files)) => Some((tls, files)),
            (None, None) => None,
            _ => {
                needs_restart.push("server.tls");
                None
            }
        };

        // 2. Apply, each piece atomically; TLS first: its files are read again here, and a
        // file that changed since it was validated above refuses the whole reload.
        let mut done = Vec::new();
        if let Some((tls, files)) = tls {
            tls.reload(files)
                .map_err(|e| invalid(format!("server.tls.{}", e.key()), e.problem()))?;
            applied.server.tls = next.server.tls.clone();
            done.push("server.tls");
        }
        let mut unforced_window = None;
        if policy_changed {
            let (_, unforced) = app.policy.replace(compiled);
            unforced_window = unforced;
            applied.policy = next.policy.clone();
            done.push("policy");
        }
        let keys_changed = next.api_keys != applied.api_keys;
        let token_changed = next.admin_token != applied.admin_token;
        let operators_changed = next.admin.tokens != applied.admin.tokens;
        if keys_changed || token_changed || operators_changed {
            app.auth.store(Arc::new(Auth::with_operators(
                &next.api_keys,
                &next.admin_token,
                &next.admin.tokens,
            )));
            applied.api_keys = next.api_keys.clone();
            applied.admin_token = next.admin_token.clone();
            applied.admin.tokens = next.admin.tokens.clone();
            done.extend(keys_changed.then_some("api_keys"));
            done.extend(token_changed.then_some("admin_token"));
            done.extend(operators_changed.then_some("admin.tokens"));
        }
        if let Some(bureau) = bureau {
            app.bureau.store(bureau.map(Arc::new));
            applied.bureau = next.bureau.clone();
            done.push("bureau");
        }
        if let Some(hook) = filter_hook {
            match hook(&next.log.filter) {
                Ok(()) => {
                    applied.log.filter = next.log.filter.clone();
                    done.push("log.filter");
                }
                Err(reason) => not_applied.push(NotApplied {
                    key: "log.filter",
                    reason,
                }),
            }
        }
        let now = app.policy.current();
        Ok(ReloadReport {
            file: source.path.display().to_string(),
            applied: done,
            needs_restart,
            not_applied,
            policy_window: now.window.clone(),
            policy_generation: now.generation,
            unforced_window,
        })
    }
}

/// The keys whose difference only a restart applies.
fn restart_only(running: &Config, next: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut differs = |key: &'static str, differ: bool| {
        if differ {
            keys.push(key);
        }
    };
    differs("listen", running.listen != next.listen);
    differs("store", running.store != next.store);
    differs("redis", running.redis != next.redis);
    differs(
        "seed_demo_users",
        running.seed_demo_users != next.seed_demo_users,
    );
    // `[server.tls]` is read again by every reload (see `try_reload`).
    let without_tls = |s: &ServerConfig| ServerConfig {
        tls: None,
        ..s.clone()
    };
    differs(
        "server",
        without_tls(&running.server) != without_tls(&next.server),
    );
    differs("risk", running.risk != next.risk);
    differs("admission", running.admission != next.admission);
    differs("log.format", running.log.format != next.log.format);
    differs("console", running.console != next.console);
    differs("tracing", running.tracing != next.tracing);
    keys
}
