//! A local HTTPS receiver with a certificate authority of its own, made for
//! the test: for trust roots given to the service (`WEBHOOK_CA_FILE`) and
//! endpoints that demand a client certificate (mutual TLS).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, SanType,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// A certificate and its key, in PEM.
#[derive(Debug, Clone)]
pub struct PemPair {
    /// The certificate.
    pub certificate: String,
    /// Its private key (PKCS#8).
    pub private_key: String,
}

/// A throwaway certificate authority, with a server certificate for
/// `localhost` and `127.0.0.1` and a client certificate, both issued by it.
pub struct TestCa {
    /// The CA certificate, PEM (what a trust-root file holds).
    pub ca_pem: String,
    ca_der: CertificateDer<'static>,
    /// The server's certificate and key.
    pub server: PemPair,
    server_der: (CertificateDer<'static>, Vec<u8>),
    /// A client certificate (extended key usage: client authentication).
    pub client: PemPair,
    /// The CA itself, to issue more server certificates.
    ca_cert: Certificate,
    ca_key: KeyPair,
}

impl TestCa {
    /// Generates the CA and both certificates.
    pub fn generate() -> Result<TestCa, rcgen::Error> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "webhook test CA");
        let ca_key = KeyPair::generate()?;
        let ca = ca_params.self_signed(&ca_key)?;

        let mut server_params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server = server_params.signed_by(&server_key, &ca, &ca_key)?;

        let mut client_params = CertificateParams::new(Vec::<String>::new())?;
        client_params
            .distinguished_name
            .push(DnType::CommonName, "webhook-service");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate()?;
        let client = client_params.signed_by(&client_key, &ca, &ca_key)?;

        Ok(TestCa {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            server: PemPair {
                certificate: server.pem(),
                private_key: server_key.serialize_pem(),
            },
            server_der: (server.der().clone(), server_key.serialize_der()),
            client: PemPair {
                certificate: client.pem(),
                private_key: client_key.serialize_pem(),
            },
            ca_cert: ca,
            ca_key,
        })
    }

    /// A server certificate naming only `ips`, and its key, issued by the CA.
    pub(crate) fn server_certificate(
        &self,
        ips: &[IpAddr],
    ) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((cert.der().clone(), key))
    }
}

/// One request as the TLS receiver got it.
#[derive(Debug, Clone)]
pub struct TlsRequest {
    /// The request head (request line and headers).
    pub head: String,
    /// Whether the client presented a certificate on the handshake.
    pub client_certificate: bool,
}

/// An HTTPS endpoint on `127.0.0.1` (ephemeral port) answering 200 to
/// every request, optionally demanding a client certificate issued by the
/// [`TestCa`]. Handshakes that fail are counted.
pub struct TlsReceiver {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<TlsRequest>>>,
    failed_handshakes: Arc<Mutex<usize>>,
    task: JoinHandle<()>,
}

impl TlsReceiver {
    /// Starts the receiver with the CA's server certificate.
    pub async fn start(ca: &TestCa, require_client_certificate: bool) -> io::Result<TlsReceiver> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?;
        let builder = if require_client_certificate {
            let mut roots = RootCertStore::empty();
            roots.add(ca.ca_der.clone()).map_err(io::Error::other)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(io::Error::other)?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ca.server_der.1.clone()));
        let config = builder
            .with_single_cert(vec![ca.server_der.0.clone()], key)
            .map_err(io::Error::other)?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let failed_handshakes = Arc::new(Mutex::new(0));
        let (seen, failed) = (requests.clone(), failed_handshakes.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen, failed) = (acceptor.clone(), seen.clone(), failed.clone());
                tokio::spawn(async move {
                    let mut stream = match acceptor.accept(tcp).await {
                        Ok(stream) => stream,
                        Err(_) => {
                            *lock(&failed) += 1;
                            return;
                        }
                    };
                    let client_certificate = stream.get_ref().1.peer_certificates().is_some();
                    let mut buf = Vec::new();
                    loop {
                        let Some(head) = read_request(&mut stream, &mut buf).await else {
                            return;
                        };
                        lock(&seen).push(TlsRequest {
                            head,
                            client_certificate,
                        });
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Ok(TlsReceiver {
            addr,
            requests,
            failed_handshakes,
            task,
        })
    }

    /// `https://localhost:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<TlsRequest> {
        lock(&self.requests).clone()
    }

    /// Handshakes that failed (an untrusted server certificate on the
    /// client's side, or a missing client certificate on ours).
    pub fn failed_handshakes(&self) -> usize {
        *lock(&self.failed_handshakes)
    }
}

impl Drop for TlsReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads one request (head and `Content-Length` body); `None` at the end.
async fn read_request<S: AsyncReadExt + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Option<String> {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.drain(..head_end + length);
    Some(head)
}
