//! The operator console: server-rendered pages under `/console` for the people who resolve
//! appeals and run peak windows, in Chinese and English.
//!
//! Templates are askama's, compiled into the binary (`gateway/templates/console/`); the
//! stylesheet is embedded too ([`assets`]): nothing to build or serve beside the gateway.
//! An operator signs in with the admin token ([`crate::api::Auth::console_operator`]; a
//! caller key is refused) into a session cookie (HttpOnly, SameSite=Strict, `Secure` over
//! TLS: `[console] cookie_secure`); sessions expire and their table is bounded
//! ([`session`]). Every write is a form carrying the session's CSRF token, checked before
//! anything is read from it. Writes go through the admin routes' own handlers.
//!
//! The console's paths are operations paths to the edge: no API key, no rate limit, no
//! admission (it must answer in an overload); a form's body is read here, bounded in size
//! and by `server.body_read_timeout_ms`.
//!
//! # Layout
//! - [`session`]: the bounded session table and CSRF tokens.
//! - [`i18n`]: the language of a request and every string in both languages.
//! - [`pages`]: one handler per page or form, and the templates' view types.
//! - [`live`]: the ring of counter samples behind the live refusals page, and its charts.
//! - [`throttle`]: sign-in attempts limited per client address.
//! - [`assets`]: the embedded stylesheet and the live page's refresh script.
//! - `a11y` (tests): the accessibility checks that need no browser (contrast of the palette).

pub mod assets;
pub mod i18n;
pub mod live;
pub mod pages;
pub mod session;
pub mod throttle;

#[cfg(test)]
mod a11y;

use crate::api::App;
use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};
pub use session::Sessions;
use std::sync::Arc;

/// What the console's handlers share: the gateway's state, the session table, the live
/// page's samples and the sign-in throttle.
#[derive(Debug, Clone)]
pub struct Console {
    app: App,
    sessions: Arc<Sessions>,
    live: Arc<live::Live>,
    throttle: Arc<throttle::Throttle>,
}

impl Console {
    /// The console of `app`, with a session table sized by `[console]`.
    pub fn new(app: App) -> Console {
        let c = &app.config.console;
        let sessions = Sessions::new(
            Arc::clone(&app.clock),
            c.session_idle,
            c.session_max,
            usize::try_from(c.max_sessions).unwrap_or(usize::MAX),
        );
        Console {
            throttle: Arc::new(throttle::Throttle::new(Arc::clone(&app.clock))),
            app,
            sessions: Arc::new(sessions),
            live: Arc::new(live::Live::new(live::KEPT)),
        }
    }

    /// The samples of the live refusals page.
    pub fn live(&self) -> &live::Live {
        &self.live
    }

    /// Reads the counters into the live page's ring now (the sampler does every
    /// [`live::PERIOD`]).
    pub fn sample_now(&self) {
        self.live.push(live::Sample::read(&self.app));
    }

    /// The task that samples the counters every [`live::PERIOD`] (none when the console is
    /// off). A period missed while the runtime was busy is skipped, not caught up.
    pub fn spawn_sampler(&self) -> Option<tokio::task::JoinHandle<()>> {
        if !self.app.config.console.enabled {
            return None;
        }
        let console = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(live::PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                console.sample_now();
            }
        }))
    }

    /// The session table.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The console's routes (every path under `/console`), or none when
    /// `console.enabled` is false.
    pub fn router(&self) -> Router {
        if !self.app.config.console.enabled {
            return Router::new();
        }
        Router::new()
            .route("/console", get(pages::home))
            .route("/console/", get(pages::home))
            .route(
                "/console/sign-in",
                get(pages::sign_in_page).post(pages::sign_in),
            )
            .route("/console/sign-out", post(pages::sign_out))
            .route("/console/appeals", get(pages::appeals))
            .route("/console/appeals/{appeal_id}", get(pages::appeal))
            .route("/console/appeals/{appeal_id}/resolve", post(pages::resolve))
            .route("/console/policy", get(pages::policy))
            .route(
                "/console/policy/force",
                get(pages::confirm_force).post(pages::force),
            )
            .route("/console/customers", get(pages::customers))
            .route("/console/decisions/{decision_id}", get(pages::decision))
            .route("/console/thresholds", get(pages::thresholds))
            .route("/console/live", get(pages::live))
            .route("/console/assets/console.css", get(assets::stylesheet))
            .route("/console/assets/live.js", get(assets::live_script))
            .route("/console/{*rest}", get(pages::not_found))
            .with_state(self.clone())
    }
}

/// The value of cookie `name` in the request's `Cookie` headers (RFC 6265's
/// `name=value; name=value`; the console's values are hex or a language code, never quoted).
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.append(
            axum::http::header::COOKIE,
            "lg_console_lang=zh; lg_console=abc".parse().unwrap(),
        );
        h.append(axum::http::header::COOKIE, "other=1".parse().unwrap());
        assert_eq!(cookie(&h, "lg_console"), Some("abc"));
        assert_eq!(cookie(&h, "lg_console_lang"), Some("zh"));
        assert_eq!(cookie(&h, "other"), Some("1"));
        assert_eq!(cookie(&h, "lg"), None);
    }
}
