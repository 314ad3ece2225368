//! TLS on the listener: HTTPS with HTTP/1.1 and HTTP/2 by ALPN, mutual TLS, certificates
//! read again when they change on disk. Certificates are made here with rcgen.

use crate::support::*;
use bytes::Bytes;
use gateway::tls::TlsConfig;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use reqwest::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A certificate authority made for the test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A leaf for `names` (DNS names or IP addresses): its PEM certificate and key.
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("lg-tls-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the server's certificate and key into `dir`.
fn write_server(dir: &Path, (cert, key): &(String, String)) {
    std::fs::write(dir.join("server.pem"), cert).unwrap();
    std::fs::write(dir.join("server.key"), key).unwrap();
}

fn tls_config(dir: &Path, client_ca: Option<&Ca>, watch: Duration) -> TlsConfig {
    let client_ca_file = client_ca.map(|ca| {
        let path = dir.join("clients-ca.pem");
        std::fs::write(&path, ca.issuer.pem()).unwrap();
        path
    });
    TlsConfig {
        cert_file: dir.join("server.pem"),
        key_file: dir.join("server.key"),
        client_ca_file,
        clients: Default::default(),
        watch_interval: watch,
    }
}

async fn start_tls(tls: TlsConfig) -> TestGateway {
    let mut config = relaxed();
    config.server.tls = Some(tls);
    TestGateway::start(config).await
}

#[allow(deprecated)] // the gateway's own provider (see `gateway/src/tls.rs`)
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client trusting `ca`, offering `alpn`, with a client certificate when given.
fn client(ca: &Ca, alpn: &[&str], cert: Option<&(String, String)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// What one HTTPS request met.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    alpn: Option<Vec<u8>>,
    server_cert: CertificateDer<'static>,
}

/// `GET path` with the caller key over a new TLS connection, by HTTP/2 when ALPN chose it.
async fn get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<Answer, BoxError> {
    get_as(addr, config, path, Some(KEY)).await
}

/// [`get`] with `key`, or without an API key.
async fn get_as(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    key: Option<&str>,
) -> Result<Answer, BoxError> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (_, session) = tls.get_ref();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let server_cert = session.peer_certificates().unwrap()[0].clone().into_owned();
    let mut req = http::Request::get(format!("https://localhost{path}"));
    if let Some(key) = key {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let req = req.body(Empty::<Bytes>::new())?;
    let io = TokioIo::new(tls);
    let res = if alpn.as_deref() == Some(b"h2") {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        send.send_request(req).await?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        send.send_request(req).await?
    };
    let status = res.status();
    res.into_body().collect().await?;
    Ok(Answer {
        status,
        alpn,
        server_cert,
    })
}

#[tokio::test]
async fn https_serves_http1_and_http2_by_alpn_and_plain_http_is_not_served() {
    let dir = TempDir::new();
    let ca = Ca::new("test server CA");
    write_server(&dir.0, &ca.leaf(&["localhost"]));
    let t = start_tls(tls_config(&dir.0, None, Duration::ZERO)).await;
    let addr = t.gw.addr;

    let h1 = get(
        addr,
        client(&ca, &["http/1.1"], None),
        "/v1/credit-lines/u-demo-a",
    )
    .await
    .unwrap();
    assert_eq!(h1.status, StatusCode::OK);
    assert_eq!(h1.alpn.as_deref(), Some(&b"http/1.1"[..]));
    let h2 = get(
        addr,
        client(&ca, &["h2", "http/1.1"], None),
        "/v1/credit-lines/u-demo-a",
    )
    .await
    .unwrap();
    assert_eq!(h2.status, StatusCode::OK);
    assert_eq!(h2.alpn.as_deref(), Some(&b"h2"[..]));
    // A client offering no ALPN still gets HTTP/1.1.
    let none = get(addr, client(&ca, &[], None), "/healthz").await.unwrap();
    assert_eq!((none.status, none.alpn), (StatusCode::OK, None));

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = t.client.get(t.url("/healthz")).send().await;
    assert!(plain.is_err(), "{plain:?}");
    // A client that does not trust the server's CA refuses it.
    let other = Ca::new("another CA");
    assert!(
        get(addr, client(&other, &[], None), "/healthz")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn mutual_tls_accepts_a_known_client_certificate_and_refuses_others() {
    let dir = TempDir::new();
    let ca = Ca::new("test server CA");
    write_server(&dir.0, &ca.leaf(&["localhost"]));
    let clients = Ca::new("test clients CA");
    let t = start_tls(tls_config(&dir.0, Some(&clients), Duration::ZERO)).await;
    let addr = t.gw.addr;

    let known = clients.leaf(&["caller.example"]);
    let ok = get(
        addr,
        client(&ca, &["h2"], Some(&known)),
        "/v1/credit-lines/u-demo-a",
    )
    .await
    .unwrap();
    assert_eq!(ok.status, StatusCode::OK);

    // Issued by another CA, or none at all: the handshake fails, no request is served.
    let stranger = Ca::new("not the clients CA").leaf(&["caller.example"]);
    let refused = get(addr, client(&ca, &["h2"], Some(&stranger)), "/healthz").await;
    assert!(refused.is_err(), "{refused:?}");
    let anonymous = get(addr, client(&ca, &["http/1.1"], None), "/healthz").await;
    assert!(anonymous.is_err(), "{anonymous:?}");
}

#[tokio::test]
async fn certificates_changed_on_disk_serve_the_next_connections_and_bad_ones_are_refused() {
    let dir = TempDir::new();
    let ca = Ca::new("test server CA");
    write_server(&dir.0, &ca.leaf(&["localhost"]));
    let t = start_tls(tls_config(&dir.0, None, Duration::from_millis(50))).await;
    let addr = t.gw.addr;
    let first = get(addr, client(&ca, &[], None), "/healthz").await.unwrap();

    // A rotated certificate: served to new connections once the watcher has seen it.
    let rotated = ca.leaf(&["localhost", "gateway.example"]);
    write_server(&dir.0, &rotated);
    let want = CertificateDer::from_pem_slice(rotated.0.as_bytes()).unwrap();
    let mut seen = first.server_cert.clone();
    for _ in 0..100 {
        seen = get(addr, client(&ca, &[], None), "/healthz")
            .await
            .unwrap()
            .server_cert;
        if seen != first.server_cert {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, want, "the rotated certificate is served");

    // A key that does not match the certificate: refused, the rotated one serves on.
    let (_, other_key) = ca.leaf(&["localhost"]);
    std::fs::write(dir.0.join("server.key"), other_key).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = get(addr, client(&ca, &[], None), "/healthz").await.unwrap();
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(after.server_cert, want);
}

#[test]
fn a_bad_tls_section_is_refused_at_start_naming_the_key() {
    let dir = TempDir::new();
    let ca = Ca::new("test server CA");
    write_server(&dir.0, &ca.leaf(&["localhost"]));
    let mut config = relaxed();
    config.server.tls = Some(tls_config(&dir.0, None, Duration::ZERO));
    config.validate().unwrap();
    std::fs::write(dir.0.join("server.key"), "not a key").unwrap();
    let e = config.validate().unwrap_err().to_string();
    assert!(e.starts_with("server.tls.key_file: "), "{e}");
    std::fs::remove_file(dir.0.join("server.pem")).unwrap();
    let e = config.validate().unwrap_err().to_string();
    assert!(e.starts_with("server.tls.cert_file: "), "{e}");
}

/// The SHA-256 fingerprint of a PEM certificate, as `AB:CD:…`.
fn fingerprint(pem: &str) -> String {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[tokio::test]
async fn a_mapped_client_certificate_is_the_caller_without_an_api_key() {
    let dir = TempDir::new();
    let ca = Ca::new("test server CA");
    write_server(&dir.0, &ca.leaf(&["localhost"]));
    let clients = Ca::new("test clients CA");
    let mapped = clients.leaf(&["partner-a.example"]);
    let unmapped = clients.leaf(&["partner-b.example"]);
    let mut tls = tls_config(&dir.0, Some(&clients), Duration::ZERO);
    tls.clients
        .insert(fingerprint(&mapped.0), "partner-a".to_owned());
    let t = start_tls(tls).await;
    let addr = t.gw.addr;
    let line = "/v1/credit-lines/u-demo-a";

    let by_cert = get_as(addr, client(&ca, &["h2"], Some(&mapped)), line, None)
        .await
        .unwrap();
    assert_eq!(by_cert.status, StatusCode::OK);
    // Issued by the CA but not mapped: the API key decides, as without TLS.
    let no_key = get_as(addr, client(&ca, &["h2"], Some(&unmapped)), line, None)
        .await
        .unwrap();
    assert_eq!(no_key.status, StatusCode::UNAUTHORIZED);
    let with_key = get(addr, client(&ca, &["http/1.1"], Some(&unmapped)), line)
        .await
        .unwrap();
    assert_eq!(with_key.status, StatusCode::OK);
    // The mapped caller is a caller of its own: its idempotency keys are its own.
    let ask = |cert: &(String, String), key: Option<&'static str>| {
        let config = client(&ca, &["http/1.1"], Some(cert));
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap();
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut req = http::Request::post("https://localhost/v1/drawdowns")
                .header("Idempotency-Key", "mtls-1")
                .header(http::header::CONTENT_TYPE, "application/json");
            if let Some(key) = key {
                req = req.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
            }
            let body = r#"{"user_id":"u-demo-a","amount_fen":100000,"channel":"app"}"#;
            let res = send
                .send_request(
                    req.body(http_body_util::Full::new(Bytes::from(body)))
                        .unwrap(),
                )
                .await
                .unwrap();
            let replayed = res.headers().contains_key("idempotent-replayed");
            (res.status(), replayed)
        }
    };
    assert_eq!(ask(&mapped, None).await, (StatusCode::OK, false));
    assert_eq!(ask(&mapped, None).await, (StatusCode::OK, true));
    // The same key by the API-key caller is a new request of another caller.
    assert_eq!(ask(&unmapped, Some(KEY)).await, (StatusCode::OK, false));
}

#[test]
fn a_client_map_needs_mutual_tls_and_fingerprints() {
    let dir = TempDir::new();
    let ca = Ca::new("test server CA");
    write_server(&dir.0, &ca.leaf(&["localhost"]));
    let mut tls = tls_config(&dir.0, None, Duration::ZERO);
    tls.clients.insert("AB".repeat(32), "partner-a".to_owned());
    let e = tls.validate().unwrap_err();
    assert_eq!(e.key(), "clients");
    let mut tls = tls_config(&dir.0, Some(&Ca::new("clients")), Duration::ZERO);
    tls.clients
        .insert("not-hex".to_owned(), "partner-a".to_owned());
    assert_eq!(tls.validate().unwrap_err().key(), "clients.not-hex");
    tls.clients.clear();
    tls.clients.insert("ab".repeat(32), "no spaces".to_owned());
    assert!(tls.validate().is_err());
    tls.clients.clear();
    tls.clients.insert("ab".repeat(32), "partner-a".to_owned());
    tls.validate().unwrap();
}

/// Serves `router` over TLS (HTTP/1.1) on a loopback port with `leaf`; counts the TCP
/// connections accepted, handshake or not.
async fn serve_tls(
    router: axum::Router,
    (cert, key): &(String, String),
    accepted: Arc<std::sync::atomic::AtomicU32>,
) -> SocketAddr {
    let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper_util::service::TowerToHyperService::new(router);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn the_bureau_over_https_is_checked_against_its_ca_file() {
    use crate::trace_context::{TraceBureau, bureau_router};
    let ca = Ca::new("bureau CA");
    let dir = TempDir::new();
    let ca_file = dir.0.join("bureau-ca.pem");
    std::fs::write(&ca_file, ca.issuer.pem()).unwrap();
    let bureau = Arc::new(TraceBureau::default());
    let accepted = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let addr = serve_tls(
        bureau_router(&bureau),
        &ca.leaf(&["localhost"]),
        Arc::clone(&accepted),
    )
    .await;
    let start = |ca_file: Option<PathBuf>| {
        let mut c = relaxed();
        c.bureau.url = Some(format!("https://localhost:{}", addr.port()));
        c.bureau.tls_ca_file = ca_file;
        c.bureau.cache_ttl = Duration::ZERO;
        c.bureau.stale_max_age = Duration::ZERO;
        async move {
            let t = TestGateway::start(c).await;
            t.user("u-tls1", 1_000_000).await;
            t
        }
    };
    let draw = |t: &TestGateway, key: &'static str| {
        t.client
            .post(t.url("/v1/drawdowns"))
            .bearer_auth(KEY)
            .header("Idempotency-Key", key)
            .json(&serde_json::json!({"user_id": "u-tls1", "amount_fen": 10_000, "channel": "app"}))
            .send()
    };

    // Trusted through the CA file: the bureau answers, and the trace goes on over TLS.
    let t = start(Some(ca_file.clone())).await;
    let r = draw(&t, "k-tls-1").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let d: serde_json::Value = r.json().await.unwrap();
    assert_eq!(d["outcome"], "approved", "{d}");
    let seen = bureau.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].0.as_deref().unwrap().starts_with("00-"));

    // Without it the system's trust store does not know the test CA: the handshake fails,
    // no request reaches the bureau, and the drawdown goes to review as for any bureau error.
    let before = accepted.load(std::sync::atomic::Ordering::SeqCst);
    let t = start(None).await;
    let r = draw(&t, "k-tls-2").await.unwrap();
    let d: serde_json::Value = r.json().await.unwrap();
    assert_eq!(d["outcome"], "review", "{d}");
    assert_eq!(d["reasons"][0]["code"], "BUREAU_UNAVAILABLE_REVIEW");
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) > before);
    assert_eq!(bureau.seen.lock().unwrap().len(), 1);

    // A CA file that cannot be read stops the start, naming the key.
    let mut c = relaxed();
    c.bureau.url = Some(format!("https://localhost:{}", addr.port()));
    c.bureau.tls_ca_file = Some(dir.0.join("missing.pem"));
    let e = gateway::Gateway::build(c, gateway::clock::SystemClock::shared()).unwrap_err();
    assert!(e.to_string().contains("bureau.tls_ca_file"), "{e}");
}
