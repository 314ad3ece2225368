//! TLS on the listener (`[server.tls]`): rustls, the certificate chain and key read from PEM
//! files, HTTP/2 and HTTP/1.1 offered by ALPN, and optionally mutual TLS: a client must
//! present a certificate that chains to `client_ca_file`, else the handshake fails.
//!
//! The rustls configuration in force sits behind an atomic pointer: each new connection
//! takes the one in force when it is accepted, and a connection keeps its own to its end.
//! It is replaced whole when the files are read again: by a reload of the configuration
//! (`SIGHUP`, `POST /admin/reload`), and when one of the files changes on disk (their
//! modification times and lengths are looked at every `watch_interval_ms`). Files that do
//! not make a valid configuration (a key that does not match the certificate, a half-written
//! file) change nothing: the error is logged, or answered by the reload, and the previous
//! certificate keeps serving.
//!
//! # Layout
//! - [`TlsConfig`]: the `server.tls` section.
//! - [`Tls`]: the configuration in force, [`Tls::acceptor`] for a new connection,
//!   [`Tls::reload`] to read the files again.
//! - [`spawn_watch`]: reads the files again when they change on disk.
//!
//! # Callers by client certificate
//! With mutual TLS, `[server.tls.clients]` maps a client certificate's SHA-256 fingerprint
//! (of its DER, 64 hex digits, `:` allowed) to a caller name: requests on a connection
//! whose client presented that certificate are that caller (`cert-<name>`), without an API
//! key ([`Tls::caller_of`]). A client whose certificate is not in the map (but issued by the
//! CA) authenticates with its API key as without TLS. The map is read again with the files.

use crate::request::Caller;
use crate::setting::{self, Invalid};
use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// `[server.tls]`: present, the listener speaks only TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM, leaf first.
    pub cert_file: PathBuf,
    /// The certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Mutual TLS: CA certificates, PEM; a client must present a certificate issued by one
    /// of them. Absent: no client certificate is asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
    /// Mutual TLS: client certificates' SHA-256 fingerprints (hex) → caller names (see the
    /// module docs). Needs `client_ca_file`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clients: BTreeMap<String, String>,
    /// How often the files are looked at for a change (0: only on reload).
    #[serde(
        rename = "watch_interval_ms",
        with = "setting::millis",
        default = "default_watch_interval"
    )]
    pub watch_interval: Duration,
}

fn default_watch_interval() -> Duration {
    Duration::from_secs(10)
}

impl TlsConfig {
    /// Checks that the files make a valid configuration (keys are relative to
    /// `[server.tls]`).
    pub fn validate(&self) -> Result<(), Invalid> {
        callers(self)?;
        server_config(self, &[]).map(drop)
    }

    /// The files, for the watcher.
    fn files(&self) -> Vec<&Path> {
        let mut files = vec![self.cert_file.as_path(), self.key_file.as_path()];
        files.extend(self.client_ca_file.as_deref());
        files
    }
}

/// What the watcher compares: each file's modification time and length.
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(config: &TlsConfig) -> Stamp {
    config
        .files()
        .into_iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

/// What a connection is accepted with.
struct Current {
    server: Arc<rustls::ServerConfig>,
    /// SHA-256 of a client certificate → its caller.
    callers: HashMap<[u8; 32], Caller>,
}

/// The caller map of `config`, checked.
fn callers(config: &TlsConfig) -> Result<HashMap<[u8; 32], Caller>, Invalid> {
    if !config.clients.is_empty() && config.client_ca_file.is_none() {
        return Err(Invalid::new(
            "clients",
            "needs client_ca_file: without mutual TLS no client presents a certificate",
        ));
    }
    let mut map = HashMap::new();
    for (fingerprint, name) in &config.clients {
        let hex: String = fingerprint.chars().filter(|c| *c != ':').collect();
        let mut digest = [0u8; 32];
        let parsed = hex.len() == 64
            && digest.iter_mut().enumerate().all(|(i, byte)| {
                hex.get(2 * i..2 * i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .map(|b| *byte = b)
                    .is_some()
            });
        if !parsed {
            return Err(Invalid::new(
                format!("clients.{fingerprint}"),
                "not a SHA-256 fingerprint (64 hex digits, `:` allowed)",
            ));
        }
        let named = !name.is_empty()
            && name.len() <= 48
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !named {
            return Err(Invalid::new(
                format!("clients.{fingerprint}"),
                "a caller name is 1 to 48 of A-Z a-z 0-9 - _ .",
            ));
        }
        map.insert(
            digest,
            Caller {
                id: format!("cert-{name}").into(),
            },
        );
    }
    Ok(map)
}

/// The TLS configuration in force (see the module docs).
pub struct Tls {
    current: ArcSwap<Current>,
    alpn: Vec<Vec<u8>>,
    /// The files' settings and their stamp when last read; held while they are read.
    files: Mutex<(TlsConfig, Stamp)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("alpn", &self.alpn)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the files of `config`; ALPN offers HTTP/2 (unless `http2` is false) then
    /// HTTP/1.1.
    pub fn new(config: &TlsConfig, http2: bool) -> Result<Tls, Invalid> {
        let mut alpn = Vec::new();
        if http2 {
            alpn.push(b"h2".to_vec());
        }
        alpn.push(b"http/1.1".to_vec());
        let stamp = stamp(config);
        let current = Current {
            callers: callers(config)?,
            server: Arc::new(server_config(config, &alpn)?),
        };
        Ok(Tls {
            current: ArcSwap::from_pointee(current),
            alpn,
            files: Mutex::new((config.clone(), stamp)),
        })
    }

    /// The acceptor of a new connection, with the configuration in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.current.load().server))
    }

    /// The caller `conn`'s client certificate is mapped to, if any (see the module docs).
    pub fn caller_of(&self, conn: &rustls::ServerConnection) -> Option<Caller> {
        let current = self.current.load();
        if current.callers.is_empty() {
            return None;
        }
        let leaf = conn.peer_certificates()?.first()?;
        let digest = ring::digest::digest(&ring::digest::SHA256, leaf.as_ref());
        let digest: [u8; 32] = digest.as_ref().try_into().ok()?;
        current.callers.get(&digest).cloned()
    }

    /// Reads the files of `config` again and puts them in force; on an error nothing
    /// changes.
    pub fn reload(&self, config: &TlsConfig) -> Result<(), Invalid> {
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        let stamp = stamp(config);
        let current = Current {
            callers: callers(config)?,
            server: Arc::new(server_config(config, &self.alpn)?),
        };
        self.current.store(Arc::new(current));
        *files = (config.clone(), stamp);
        Ok(())
    }

    /// Reads the files again if they changed since last read. `Some` when they did: the
    /// outcome of reading them.
    fn reload_if_changed(&self) -> Option<Result<(), Invalid>> {
        let config = {
            let files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
            if stamp(&files.0) == files.1 {
                return None;
            }
            files.0.clone()
        };
        Some(self.reload(&config))
    }

    fn watch_interval(&self) -> Duration {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .watch_interval
    }
}

/// Looks at the files every `watch_interval_ms` and reads them again when they changed
/// (logged either way); a failed read is tried again at the next change. `None` when the
/// interval is 0.
pub fn spawn_watch(tls: Arc<Tls>) -> Option<JoinHandle<()>> {
    let every = tls.watch_interval();
    if every.is_zero() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            // Small files, read on this thread like the configuration itself.
            match tls.reload_if_changed() {
                None => {}
                Some(Ok(())) => tracing::info!("TLS certificate files changed: reloaded"),
                Some(Err(e)) => tracing::warn!(
                    key = %e.key(),
                    problem = %e.problem(),
                    "TLS certificate files changed but were refused; the previous ones serve on"
                ),
            }
        }
    }))
}

/// The PEM certificates of `path` (at least one), the error naming `key`.
pub(crate) fn certificates(
    path: &Path,
    key: &str,
) -> Result<Vec<CertificateDer<'static>>, Invalid> {
    let read = |e: &dyn std::fmt::Display| Invalid::new(key, format!("{}: {e}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read(&e))?;
    if certs.is_empty() {
        return Err(read(&"no certificate in the file"));
    }
    Ok(certs)
}

/// The rustls configuration of `config`'s files.
fn server_config(config: &TlsConfig, alpn: &[Vec<u8>]) -> Result<rustls::ServerConfig, Invalid> {
    // ring rather than rustls's default aws-lc-rs, whose build needs cmake and a C
    // toolchain beyond ring's; rustls marks ring deprecated because it offers no
    // post-quantum key exchange (X25519MLKEM768), which these connections then lack.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = certificates(&config.cert_file, "cert_file")?;
    let key = PrivateKeyDer::from_pem_file(&config.key_file)
        .map_err(|e| Invalid::new("key_file", format!("{}: {e}", config.key_file.display())))?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Invalid::new("cert_file", e.to_string()))?;
    let builder = match &config.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(path, "client_ca_file")? {
                roots.add(cert).map_err(|e| {
                    Invalid::new("client_ca_file", format!("{}: {e}", path.display()))
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| Invalid::new("client_ca_file", format!("{}: {e}", path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder.with_single_cert(certs, key).map_err(|e| {
        Invalid::new(
            "key_file",
            format!("does not make a certificate with cert_file: {e}"),
        )
    })?;
    server.alpn_protocols = alpn.to_vec();
    Ok(server)
}
