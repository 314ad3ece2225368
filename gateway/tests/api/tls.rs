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
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (_, session) = tls.get_ref();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let server_cert = session.peer_certificates().unwrap()[0].clone().into_owned();
    let req = http::Request::get(format!("https://localhost{path}"))
        .header(http::header::AUTHORIZATION, format!("Bearer {KEY}"))
        .body(Empty::<Bytes>::new())?;
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
