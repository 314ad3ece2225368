//! The HTTP client of the bureau contract: `GET {url}/v1/score/{user_id}` on a keep-alive
//! pool (hyper-util's pooled client: connections are reused, none is set up per call), over
//! `http://` or `https://` (rustls with ring, as the listener: the bureau's certificate
//! checked against `tls_ca_file`, else the system's trust store; HTTP/1.1).

use crate::setting::Invalid;
use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use risk_core::{BureauReport, UserId};
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Largest answer body read.
const MAX_BODY: usize = 4 * 1024;

/// Checks a base URL (`http[s]://host:port[/prefix]`) and returns it without a trailing `/`.
pub(crate) fn base_url(url: &str) -> Result<String, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("not a URL: {url:?} ({e})"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("expected an http:// or https:// URL, got {url:?}"));
    }
    if uri.authority().is_none() {
        return Err(format!("no host in {url:?}"));
    }
    if uri.query().is_some() {
        return Err(format!("a query is not allowed in {url:?}"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Why a call failed (the caller maps a timeout itself).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The connection or the request failed.
    #[error("request failed: {0}")]
    Request(String),
    /// A non-200 status.
    #[error("status {0}")]
    Status(StatusCode),
    /// The body was not the contract's answer.
    #[error("unreadable answer: {0}")]
    Body(String),
}

/// The contract's `200` body.
#[derive(Debug, Deserialize)]
struct ScoreBody {
    user_id: String,
    score: u16,
    overdue_accounts: u32,
    max_days_overdue: u32,
    inquiries_90d: u32,
}

/// A pooled client of one bureau.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    http: HyperClient<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    base: String,
}

/// The TLS client configuration of an `https://` bureau: the CA certificates of `ca_file`,
/// else the system's trust store. The error is (key, problem).
pub(crate) fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, Invalid> {
    // ring, as the listener (`crate::tls`); see there why not rustls's default.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Invalid::new("url", e.to_string()))?;
    let builder = match ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in crate::tls::certificates(path, "tls_ca_file")? {
                roots
                    .add(cert)
                    .map_err(|e| Invalid::new("tls_ca_file", format!("{}: {e}", path.display())))?;
            }
            builder.with_root_certificates(roots)
        }
        None => {
            use hyper_rustls::ConfigBuilderExt;
            builder.with_native_roots().map_err(|e| {
                Invalid::new(
                    "url",
                    format!("no system trust store to check the bureau: {e}"),
                )
            })?
        }
    };
    Ok(builder.with_no_client_auth())
}

impl Client {
    /// A client of the bureau at `base` (checked by [`base_url`]) keeping up to
    /// `max_idle` idle connections open; `tls` for an `https://` base.
    pub(crate) fn new(base: String, max_idle: usize, tls: Option<rustls::ClientConfig>) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        // The TLS connector wraps the plain one either way (one client type); without a
        // configuration it is never asked for TLS (`https_or_http` with an `http://` base).
        connector.enforce_http(false);
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match tls {
            Some(config) => builder.with_tls_config(config),
            None => builder.with_tls_config(
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    #[allow(deprecated)]
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .expect("ring supports the safe default protocol versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
            ),
        };
        let connector = builder
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(max_idle)
            .build(connector);
        Client { http, base }
    }

    /// Asks for `user`'s report, telling the bureau the budget left (`X-Request-Deadline-Ms`)
    /// and the request's trace (`traceparent`, `tracestate`). The caller bounds the wait.
    pub(crate) async fn score(
        &self,
        user: &UserId,
        budget: Duration,
        trace: Option<&crate::trace::Call>,
    ) -> Result<BureauReport, CallError> {
        let uri = format!("{}/v1/score/{}", self.base, user.as_str());
        let mut req = Request::get(uri)
            .header("x-request-deadline-ms", budget.as_millis().to_string())
            .body(Empty::new())
            .map_err(|e| CallError::Request(e.to_string()))?;
        if let Some(t) = trace {
            use crate::trace::context::{TRACEPARENT, TRACESTATE};
            let h = req.headers_mut();
            h.insert(TRACEPARENT, t.traceparent().clone());
            if let Some(state) = t.tracestate() {
                h.insert(TRACESTATE, state.clone());
            }
        }
        let res = self
            .http
            .request(req)
            .await
            .map_err(|e| CallError::Request(e.to_string()))?;
        let status = res.status();
        let body = Limited::new(res.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| CallError::Body(e.to_string()))?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(CallError::Status(status));
        }
        let b: ScoreBody =
            serde_json::from_slice(&body).map_err(|e| CallError::Body(e.to_string()))?;
        if b.user_id != user.as_str() {
            return Err(CallError::Body(format!(
                "answer for another user ({:?})",
                b.user_id
            )));
        }
        if !(300..=850).contains(&b.score) {
            return Err(CallError::Body(format!(
                "score {} out of 300..=850",
                b.score
            )));
        }
        Ok(BureauReport {
            score: b.score,
            overdue_accounts: b.overdue_accounts,
            max_days_overdue: b.max_days_overdue,
            inquiries_90d: b.inquiries_90d,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            base_url("http://127.0.0.1:9100/").unwrap(),
            "http://127.0.0.1:9100"
        );
        assert_eq!(
            base_url("http://bureau.internal/api").unwrap(),
            "http://bureau.internal/api"
        );
        assert_eq!(base_url("https://x/").unwrap(), "https://x");
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("127.0.0.1:9100").is_err());
        assert!(base_url("http://x/?a=1").is_err());
        assert!(base_url("not a url").is_err());
    }
}
