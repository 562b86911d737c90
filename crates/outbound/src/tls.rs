//! Which certificate authorities deliveries trust, and the client
//! certificates some endpoints demand.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::OutboundInitError;

/// Where the trusted roots come from (`WEBHOOK_TLS_ROOTS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TrustRoots {
    /// The Mozilla roots compiled into the binary (the default).
    #[default]
    Bundled,
    /// The operating system's store only (for an enterprise CA installed there).
    System,
    /// Both.
    Both,
}

/// A `WEBHOOK_TLS_ROOTS` value that is none of the three.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not bundled, system or both")]
pub struct UnknownTrustRoots(String);

impl FromStr for TrustRoots {
    type Err = UnknownTrustRoots;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "bundled" => Ok(TrustRoots::Bundled),
            "system" => Ok(TrustRoots::System),
            "both" => Ok(TrustRoots::Both),
            _ => Err(UnknownTrustRoots(s.to_string())),
        }
    }
}

impl TrustRoots {
    /// `bundled`, `system` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrustRoots::Bundled => "bundled",
            TrustRoots::System => "system",
            TrustRoots::Both => "both",
        }
    }
}

/// Why PEM text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPem {
    /// No `CERTIFICATE` block, or one that does not decode.
    #[error("no PEM certificate could be read ({0})")]
    Certificates(String),
    /// No private key block, or one that does not decode.
    #[error("no PEM private key (PKCS#8, PKCS#1 or SEC1) could be read ({0})")]
    PrivateKey(String),
    /// A certificate and key that rustls cannot use together.
    #[error("the certificate and private key cannot be used: {0}")]
    Unusable(String),
}

/// Extra root certificates (`WEBHOOK_CA_FILE`), parsed from PEM.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ExtraRoots(Vec<CertificateDer<'static>>);

impl fmt::Debug for ExtraRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExtraRoots({} certificates)", self.0.len())
    }
}

impl ExtraRoots {
    /// Every `CERTIFICATE` block of `pem`; at least one.
    pub fn from_pem(pem: &[u8]) -> Result<Self, InvalidPem> {
        let certs = certificates(pem)?;
        Ok(ExtraRoots(certs))
    }

    /// How many certificates.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// None.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, InvalidPem> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| InvalidPem::Certificates(e.to_string()))?;
    if certs.is_empty() {
        return Err(InvalidPem::Certificates("none found".into()));
    }
    Ok(certs)
}

/// TLS settings of the whole client.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// Where the trusted roots come from.
    pub roots: TrustRoots,
    /// Roots trusted in addition.
    pub extra_roots: ExtraRoots,
}

/// A client certificate chain and its key, presented to endpoints that
/// demand one (mutual TLS). `Debug` never shows the key.
///
/// Each identity read gets an id of its own, which keys the connection
/// pool: a connection authenticated with one certificate is never reused
/// for a request that should carry another one, or none.
#[derive(Clone)]
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    id: u64,
    /// Built on first use, with the roots of the client that uses it.
    connector: Arc<OnceLock<tokio_rustls::TlsConnector>>,
}

/// Ids of identities; 0 stands for "no client certificate".
static NEXT_IDENTITY: AtomicU64 = AtomicU64::new(1);

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ClientIdentity({} certificates, key: ***)",
            self.chain.len()
        )
    }
}

impl ClientIdentity {
    /// Reads a PEM certificate chain and a PEM private key, and checks that
    /// rustls can present them.
    pub fn from_pem(certificate: &[u8], private_key: &[u8]) -> Result<Self, InvalidPem> {
        let chain = certificates(certificate)?;
        let key = PrivateKeyDer::from_pem_slice(private_key)
            .map_err(|e| InvalidPem::PrivateKey(e.to_string()))?;
        let identity = ClientIdentity {
            chain,
            key: Arc::new(key),
            id: NEXT_IDENTITY.fetch_add(1, Ordering::Relaxed),
            connector: Arc::new(OnceLock::new()),
        };
        // Refused here, when the webhook is written, not at its first delivery.
        rustls::crypto::aws_lc_rs::sign::any_supported_type(&identity.key)
            .map_err(|e| InvalidPem::Unusable(e.to_string()))?;
        Ok(identity)
    }

    /// The pool key part of this identity.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The connector presenting this identity, trusting `roots`.
    pub(crate) fn connector(
        &self,
        roots: &Arc<rustls::RootCertStore>,
    ) -> Result<&tokio_rustls::TlsConnector, rustls::Error> {
        if let Some(connector) = self.connector.get() {
            return Ok(connector);
        }
        // Sessions of the few endpoints one identity serves: rustls' default size.
        let config = client_config(roots.clone(), Some(self), 256).map_err(|e| match e {
            OutboundInitError::Tls(e) => e,
            other => rustls::Error::General(other.to_string()),
        })?;
        // Two attempts racing here build two equal connectors; one is kept.
        Ok(self
            .connector
            .get_or_init(|| tokio_rustls::TlsConnector::from(Arc::new(config))))
    }
}

/// The root store `settings` describe.
pub(crate) fn root_store(
    settings: &TlsSettings,
) -> Result<rustls::RootCertStore, OutboundInitError> {
    let mut roots = rustls::RootCertStore::empty();
    if matches!(settings.roots, TrustRoots::Bundled | TrustRoots::Both) {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if matches!(settings.roots, TrustRoots::System | TrustRoots::Both) {
        let found = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 && settings.roots == TrustRoots::System {
            let why = found
                .errors
                .first()
                .map_or_else(|| "the store is empty".to_string(), ToString::to_string);
            return Err(OutboundInitError::SystemRoots(why));
        }
    }
    for cert in &settings.extra_roots.0 {
        roots
            .add(cert.clone())
            .map_err(|e| OutboundInitError::ExtraRoot(e.to_string()))?;
    }
    Ok(roots)
}

/// TLS 1.3 tickets rustls keeps per server (`MAX_TLS13_TICKETS_PER_SERVER`).
const TICKETS_PER_SERVER: usize = 8;

/// A client configuration over `roots`, with `identity` presented when
/// the server asks for a client certificate, keeping the session tickets of
/// up to `sessions` servers.
pub(crate) fn client_config(
    roots: Arc<rustls::RootCertStore>,
    identity: Option<&ClientIdentity>,
    sessions: usize,
) -> Result<rustls::ClientConfig, OutboundInitError> {
    // aws-lc-rs chosen explicitly rather than through rustls' process-wide
    // default, which panics if another crate in the binary enables a
    // second provider.
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // AES-128-GCM with SHA-256 offered first, as browsers and Go's client
    // do: rustls' default puts AES-256-GCM-SHA384 first, whose SHA-384 key
    // schedule has no hardware path here (7 % of the service's samples in
    // `many-endpoints` with ring; docs/performance-log.md, 2026-12-06). Servers that
    // honour the client's order (rustls' and OpenSSL's default) then use
    // the cheaper suite; every suite is still offered.
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(OutboundInitError::Tls)?
        .with_root_certificates(roots);
    let mut tls = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(OutboundInitError::Tls)?,
    };
    // Keyed by server name (the host, or the IP of an IP literal; not the
    // port). A resumed TLS 1.3 handshake skips the certificate and its
    // verification, the costliest part of a new connection to an endpoint
    // whose idle connection was closed.
    tls.resumption = if sessions == 0 {
        rustls::client::Resumption::disabled()
    } else {
        // rustls sizes its cache in tickets and keeps up to 8 TLS 1.3
        // tickets per server: sized in tickets, 16,384 kept the sessions of
        // only 2,048 servers, and 10,000 endpoints taken in turn never
        // resumed one.
        rustls::client::Resumption::in_memory_sessions(sessions.saturating_mul(TICKETS_PER_SERVER))
    };
    // The client speaks HTTP/1.1 only; every HTTPS server accepts it.
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_roots_parse() {
        assert_eq!("bundled".parse(), Ok(TrustRoots::Bundled));
        assert_eq!("SYSTEM".parse(), Ok(TrustRoots::System));
        assert_eq!("both".parse(), Ok(TrustRoots::Both));
        assert!("mozilla".parse::<TrustRoots>().is_err());
    }

    #[test]
    fn pem_without_certificates_is_refused() {
        assert!(ExtraRoots::from_pem(b"").is_err());
        assert!(ExtraRoots::from_pem(b"not pem at all").is_err());
        assert!(ClientIdentity::from_pem(b"", b"").is_err());
    }

    #[test]
    fn the_sha256_suite_is_offered_first_and_every_default_suite_still_offered() {
        let config = client_config(Arc::new(rustls::RootCertStore::empty()), None, 16).unwrap();
        let offered: Vec<_> = config
            .crypto_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(
            offered.first(),
            Some(&rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
        let defaults = rustls::crypto::aws_lc_rs::default_provider().cipher_suites;
        assert_eq!(offered.len(), defaults.len());
        assert!(defaults.iter().all(|d| offered.contains(&d.suite())));
    }
}
