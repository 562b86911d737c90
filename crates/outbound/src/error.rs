//! Failure kinds of an attempt, and how I/O and resolver errors map onto them.

use std::fmt;
use std::io;

use crate::resolver::ResolveError;

/// Why a delivery attempt failed; mirrors `webhook_domain::delivery::AttemptErrorKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The attempt did not complete within the configured timeout.
    Timeout,
    /// The TCP connection failed or broke before a complete response.
    Connect,
    /// The TLS handshake failed (certificate, protocol, closed mid-handshake).
    Tls,
    /// The host name could not be resolved.
    Dns,
    /// Every address of the destination is refused by the address policy.
    BlockedAddress,
    /// The receiver answered with a failing status (set by the caller, not this crate).
    HttpStatus,
    /// The receiver answered with a 3xx; redirects are not followed.
    Redirect,
}

impl ErrorKind {
    /// The stable name stored with attempts: `timeout`, `connect`, `tls`, …
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Dns => "dns",
            ErrorKind::BlockedAddress => "blocked_address",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::Redirect => "redirect",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed attempt: its kind and a message a webhook owner can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OutboundError {
    /// What class of failure this was.
    pub kind: ErrorKind,
    /// What happened, in words.
    pub message: String,
}

impl OutboundError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: String) -> Self {
        OutboundError { kind, message }
    }
}

/// A setting that stops the client from being built.
#[derive(Debug, thiserror::Error)]
pub enum OutboundInitError {
    /// A zero timeout would fail every attempt.
    #[error("outbound timeout must be greater than zero")]
    ZeroTimeout,
    /// No connection could ever be opened.
    #[error("the bound on open connections must be at least 1")]
    ZeroConnections,
    /// The configured User-Agent cannot be sent as a header.
    #[error("user agent {0:?} is not a valid HTTP header value")]
    InvalidUserAgent(String),
    /// rustls refused the TLS configuration.
    #[error("could not set up TLS: {0}")]
    Tls(#[source] rustls::Error),
    /// Only the system's roots were asked for, and none could be read.
    #[error("no trusted root certificate could be read from the operating system's store: {0}")]
    SystemRoots(String),
    /// An extra root certificate cannot serve as a trust anchor.
    #[error("an extra root certificate cannot be used as a trust anchor: {0}")]
    ExtraRoot(String),
}

/// Where in an attempt an I/O error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Opening the TCP connection.
    Connect,
    /// The TLS handshake of an `https` URL.
    Handshake,
    /// Sending the request or reading the response head.
    Exchange,
}

/// The resolver's verdict (blocked or unresolvable) is the whole story.
pub(crate) fn from_resolve(err: &ResolveError) -> OutboundError {
    let kind = match err {
        ResolveError::Blocked { .. } => ErrorKind::BlockedAddress,
        ResolveError::Lookup { .. } | ResolveError::NoAddresses { .. } => ErrorKind::Dns,
    };
    OutboundError::new(kind, err.to_string())
}

/// Classifies an I/O error of one attempt by where it happened.
pub(crate) fn from_io(err: &io::Error, stage: Stage) -> OutboundError {
    if stage == Stage::Handshake {
        // tokio-rustls reports a refused handshake as an io::Error wrapping
        // the rustls::Error that says why.
        let rustls_error = err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        let message = match (rustls_error, err.kind()) {
            (Some(tls), _) => format!("TLS handshake failed: {tls}"),
            (None, io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe) => {
                "TLS handshake failed: connection closed during the handshake".to_string()
            }
            (None, io::ErrorKind::ConnectionReset) => {
                "TLS handshake failed: connection reset during the handshake".to_string()
            }
            (None, _) => format!("TLS handshake failed: {err}"),
        };
        return OutboundError::new(ErrorKind::Tls, message);
    }
    // Under TLS 1.3 the client's handshake ends before the server has
    // judged the client certificate: a server that refuses it (or wants
    // one) says so with an alert on the first read.
    if let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return OutboundError::new(ErrorKind::Tls, format!("TLS failed: {tls}"));
    }
    let message = match err.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        io::ErrorKind::ConnectionReset => "connection reset by peer".to_string(),
        io::ErrorKind::ConnectionAborted => "connection aborted".to_string(),
        io::ErrorKind::TimedOut => "connection timed out".to_string(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe => {
            "connection closed before a response".to_string()
        }
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            "destination unreachable".to_string()
        }
        _ => err.to_string(),
    };
    OutboundError::new(ErrorKind::Connect, message)
}
