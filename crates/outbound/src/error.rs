//! Failure kinds of an attempt, and how hyper's errors map onto them.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use url::Url;

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
    /// The configured User-Agent cannot be sent as a header.
    #[error("user agent {0:?} is not a valid HTTP header value")]
    InvalidUserAgent(String),
    /// rustls refused the TLS configuration.
    #[error("could not set up TLS: {0}")]
    Tls(#[source] rustls::Error),
}

/// Walks an error's causes, looking inside `io::Error`s too: their own
/// `source()` skips the wrapped error, which is where tokio-rustls and
/// hyper-rustls put the interesting part.
fn causes<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |&e| match e.downcast_ref::<io::Error>() {
        Some(io_err) => io_err
            .get_ref()
            .map(|wrapped| wrapped as &(dyn StdError + 'static)),
        None => e.source(),
    })
}

/// Classifies an error of hyper-util's client for one attempt to `url`.
pub(crate) fn from_client_error(
    err: &hyper_util::client::legacy::Error,
    url: &Url,
) -> OutboundError {
    let mut io_kind = None;
    let mut incomplete = false;
    for cause in causes(err) {
        // The resolver's verdict (blocked or unresolvable) is the whole story.
        if let Some(resolve) = cause.downcast_ref::<ResolveError>() {
            let kind = match resolve {
                ResolveError::Blocked { .. } => ErrorKind::BlockedAddress,
                ResolveError::Lookup { .. } | ResolveError::NoAddresses { .. } => ErrorKind::Dns,
            };
            return OutboundError::new(kind, resolve.to_string());
        }
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return OutboundError::new(ErrorKind::Tls, format!("TLS handshake failed: {tls}"));
        }
        if let Some(io_err) = cause.downcast_ref::<io::Error>() {
            io_kind.get_or_insert(io_err.kind());
        }
        if let Some(hyper_err) = cause.downcast_ref::<hyper::Error>() {
            incomplete |= hyper_err.is_incomplete_message();
        }
    }

    // hyper-rustls hands TLS-stage failures up as a bare io::Error, whereas
    // TCP failures arrive wrapped in hyper-util's ConnectError; so an
    // io::Error directly under a connect error of an https URL is the handshake.
    let tls_stage = err.is_connect()
        && url.scheme() == "https"
        && err
            .source()
            .is_some_and(|s| s.downcast_ref::<io::Error>().is_some());

    let what = match io_kind {
        Some(io::ErrorKind::ConnectionRefused) => "connection refused",
        Some(io::ErrorKind::ConnectionReset) => "connection reset by peer",
        Some(io::ErrorKind::ConnectionAborted) => "connection aborted",
        Some(io::ErrorKind::TimedOut) => "connection timed out",
        Some(io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe) => {
            if tls_stage {
                "connection closed during the TLS handshake"
            } else {
                "connection closed before a response"
            }
        }
        Some(io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable) => {
            "destination unreachable"
        }
        _ if incomplete => "connection closed before a response",
        _ => "",
    };
    let kind = if tls_stage && io_kind != Some(io::ErrorKind::ConnectionRefused) {
        ErrorKind::Tls
    } else {
        ErrorKind::Connect
    };
    let message = if what.is_empty() {
        describe_chain(err)
    } else {
        what.to_string()
    };
    OutboundError::new(kind, message)
}

/// "outer: inner: innermost", for errors no rule above recognises.
fn describe_chain(err: &hyper_util::client::legacy::Error) -> String {
    let mut message = String::new();
    for cause in causes(err) {
        let text = cause.to_string();
        // hyper repeats a cause's text in its own; skip exact repeats.
        if !message.ends_with(text.as_str()) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
    }
    message
}
