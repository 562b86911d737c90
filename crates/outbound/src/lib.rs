//! Outbound HTTP/1.1 client of the webhook service.
//!
//! One call to [`OutboundClient::post`] is one delivery attempt: it POSTs the
//! signed envelope to the webhook's URL and reports what happened as an
//! [`Outcome`], never as a Rust error, because every failure is a fact to
//! record on the delivery (timeout, refused connection, TLS, blocked address…).
//!
//! Invariants:
//! - Every address connected to passes [`AddressPolicy::check`]: IP literals
//!   before the request is sent, host names inside the resolver at connect
//!   time, so a DNS answer that changes after registration (rebinding) cannot
//!   reach a private address.
//! - One attempt never outlives [`OutboundConfig::timeout`]: connecting,
//!   sending and reading the response body all count against it.
//! - Response bodies are read up to [`OutboundConfig::max_response_body`]
//!   bytes and no further; redirects are reported, never followed.
//! - At most [`ConnectionLimits::max_open`] connections are open at once;
//!   an attempt that finds none free closes the least recently used idle
//!   connection, or waits for one to close (see `conn.rs`). The wait is not
//!   part of the attempt's timeout: it is the client's own queue.
//! - TLS sessions are resumed with tickets, the tickets of up to
//!   [`ConnectionLimits::tls_sessions`] servers kept (by server name).
//! - The hot path stays quiet: no logging, one shared pooled client, and
//!   keep-alive connections reused per destination. The attempt's own task
//!   writes the request and reads the response on the connection it took
//!   from the pool (`http1.rs`); nothing else touches that connection.

#![warn(missing_docs)]

mod conn;
mod error;
mod headers;
mod http1;
mod proxy;
mod resolver;
mod response;
mod tls;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderValue;
use tokio_rustls::TlsConnector;
use url::{Host, Position, Url};
use webhook_domain::address::AddressPolicy;

pub use conn::ConnectionUsage;
pub use error::{ErrorKind, OutboundError, OutboundInitError};
pub use headers::{InvalidHeader, RequestHeaders};
pub use proxy::{InvalidProxy, Proxy};
pub use tls::{ClientIdentity, ExtraRoots, InvalidPem, TlsSettings, TrustRoots, UnknownTrustRoots};

use conn::{Conn, Destination, Pool, Slot};
use error::Stage;
use http1::HeadError;

/// Settings of the outbound client, validated by [`OutboundClient::new`].
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// Budget for a whole attempt: connect, TLS, request and response body.
    pub timeout: Duration,
    /// How much of a response body is kept (and read); 64 KiB is typical.
    pub max_response_body: usize,
    /// The `User-Agent` sent with every request.
    pub user_agent: String,
    /// Which addresses may be connected to.
    pub policy: Arc<AddressPolicy>,
    /// Idle keep-alive connections kept per host (0 disables pooling).
    pub pool_idle_per_host: usize,
    /// How long an idle pooled connection is kept before it is closed.
    pub pool_idle_timeout: Duration,
    /// Trusted roots.
    pub tls: TlsSettings,
    /// Egress proxy for every destination it applies to.
    pub proxy: Option<Proxy>,
    /// Bounds on open and idle connections and on kept TLS sessions.
    pub limits: ConnectionLimits,
}

/// How many connections and TLS sessions the client keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections (file descriptors) open at once, idle or busy; at least 1.
    pub max_open: usize,
    /// Idle keep-alive connections kept in all destinations together.
    pub max_idle: usize,
    /// Servers whose TLS session tickets are kept for resumption.
    pub tls_sessions: usize,
}

impl Default for ConnectionLimits {
    /// 1,024 open (the engine's default number of requests in flight), as
    /// many idle, and the sessions of 16,384 servers (a few MB).
    fn default() -> Self {
        ConnectionLimits {
            max_open: 1024,
            max_idle: 1024,
            tls_sessions: 16_384,
        }
    }
}

/// A pooled HTTP/1.1 client (plain or TLS) for webhook deliveries; cheap to clone.
#[derive(Clone)]
pub struct OutboundClient {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Arc<Pool>,
    tls: TlsConnector,
    /// The trusted roots, shared by the configurations of client certificates.
    roots: Arc<rustls::RootCertStore>,
    proxy: Option<Proxy>,
    policy: Arc<AddressPolicy>,
    timeout: Duration,
    max_response_body: usize,
    /// Checked once to be a valid header value: it is the same on every request.
    user_agent: String,
}

impl std::fmt::Debug for OutboundClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundClient")
            .field("timeout", &self.inner.timeout)
            .field("max_response_body", &self.inner.max_response_body)
            .field("user_agent", &self.inner.user_agent)
            .finish_non_exhaustive()
    }
}

/// What one delivery attempt produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The response status, if a response head was received.
    pub status: Option<u16>,
    /// The first 32 response headers, names lowercased, values truncated to 512 bytes.
    pub response_headers: Vec<(String, String)>,
    /// The response body up to `max_response_body` bytes, lossy UTF-8.
    pub body_excerpt: String,
    /// Wall-clock time of the whole attempt.
    pub duration: Duration,
    /// Why the attempt failed; `None` when a non-redirect response arrived in
    /// time (judging its status is the caller's job).
    pub error: Option<OutboundError>,
    /// The `Location` header of a 3xx response.
    pub location: Option<String>,
    /// The raw `Retry-After` header value, if present.
    pub retry_after: Option<String>,
}

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

/// What one POST carries.
struct Request<'a> {
    url: &'a Url,
    content_type: &'a str,
    headers: &'a RequestHeaders,
    body: &'a [u8],
}

/// What an attempt starts from: a kept-alive connection, or the right to open one.
enum Ready {
    Pooled(Conn),
    Slot(Slot),
}

/// Where one request goes and what its head says about the URL.
struct Target<'a> {
    dest: Destination,
    /// `Host` header: the URL's host, and its port when not the default.
    host_header: &'a str,
    /// Path and query; the fragment is never sent.
    path: &'a str,
}

impl OutboundClient {
    /// The pool's connections and the attempts waiting for one, now.
    pub fn connection_usage(&self) -> ConnectionUsage {
        self.inner.pool.usage()
    }

    /// Builds the client and its connection pool; fails on an invalid setting.
    pub fn new(config: OutboundConfig) -> Result<Self, OutboundInitError> {
        if config.timeout.is_zero() {
            return Err(OutboundInitError::ZeroTimeout);
        }
        if HeaderValue::from_str(&config.user_agent).is_err() {
            return Err(OutboundInitError::InvalidUserAgent(config.user_agent));
        }

        if config.limits.max_open == 0 {
            return Err(OutboundInitError::ZeroConnections);
        }
        let roots = Arc::new(tls::root_store(&config.tls)?);
        let tls = tls::client_config(roots.clone(), None, config.limits.tls_sessions)?;

        let pool = Arc::new(Pool::new(
            config.limits.max_open,
            config.limits.max_idle,
            config.pool_idle_per_host,
            config.pool_idle_timeout,
        ));
        conn::spawn_sweeper(
            &pool,
            (config.pool_idle_timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(60)),
        );
        Ok(OutboundClient {
            inner: Arc::new(Inner {
                pool,
                tls: TlsConnector::from(Arc::new(tls)),
                roots,
                proxy: config.proxy,
                policy: config.policy,
                timeout: config.timeout,
                max_response_body: config.max_response_body,
                user_agent: config.user_agent,
            }),
        })
    }

    /// POSTs `body` to `url` with `headers` (the caller's signature headers
    /// etc.); the client adds `Host`, `User-Agent`, `Content-Type:
    /// application/json` and `Content-Length`. Redirects are reported, not followed.
    pub async fn post(
        &self,
        url: &Url,
        headers: impl Into<RequestHeaders>,
        body: Bytes,
    ) -> Outcome {
        self.send(url, JSON, headers.into(), &body, None, self.inner.timeout)
            .await
    }

    /// [`OutboundClient::post`] under `timeout` instead of the client's own
    /// (a destination with a timeout of its own).
    pub async fn post_with_timeout(
        &self,
        url: &Url,
        headers: impl Into<RequestHeaders>,
        body: Bytes,
        timeout: Duration,
    ) -> Outcome {
        self.send(url, JSON, headers.into(), &body, None, timeout)
            .await
    }

    /// [`OutboundClient::post`], presenting `identity` when the server asks
    /// for a client certificate, under `timeout` when one is given.
    pub async fn post_as(
        &self,
        url: &Url,
        headers: impl Into<RequestHeaders>,
        body: Bytes,
        identity: Option<&ClientIdentity>,
        timeout: Option<Duration>,
    ) -> Outcome {
        let timeout = timeout.unwrap_or(self.inner.timeout);
        self.send(url, JSON, headers.into(), &body, identity, timeout)
            .await
    }

    /// POSTs a form (`application/x-www-form-urlencoded`), such as an OAuth2
    /// token request, under the same rules as a delivery.
    pub async fn post_form(
        &self,
        url: &Url,
        headers: impl Into<RequestHeaders>,
        body: Bytes,
    ) -> Outcome {
        self.send(url, FORM, headers.into(), &body, None, self.inner.timeout)
            .await
    }

    async fn send(
        &self,
        url: &Url,
        content_type: &str,
        headers: RequestHeaders,
        body: &[u8],
        identity: Option<&ClientIdentity>,
        timeout: Duration,
    ) -> Outcome {
        let mut started = Instant::now();
        let mut outcome = Outcome::default();
        let request = Request {
            url,
            content_type,
            headers: &headers,
            body,
        };
        if let Err(error) = self
            .attempt(request, identity, &mut started, timeout, &mut outcome)
            .await
        {
            outcome.error = Some(error);
        }
        outcome.duration = started.elapsed();
        outcome
    }

    async fn attempt(
        &self,
        Request {
            url,
            content_type,
            headers,
            body,
        }: Request<'_>,
        identity: Option<&ClientIdentity>,
        started: &mut Instant,
        timeout: Duration,
        outcome: &mut Outcome,
    ) -> Result<(), OutboundError> {
        let inner = &*self.inner;
        let mut target = self.target(url)?;
        let connector = match identity {
            None => &inner.tls,
            Some(identity) => {
                target.dest.identity = identity.id();
                identity.connector(&inner.roots).map_err(|e| {
                    OutboundError::new(
                        ErrorKind::Tls,
                        format!("the client certificate cannot be used: {e}"),
                    )
                })?
            }
        };
        let request = http1::encode_request(
            target.path,
            target.host_header,
            &inner.user_agent,
            content_type,
            headers,
            body,
        );
        // A pooled connection, else a slot for a new one. Waiting for a slot
        // is the client's own queue, not the receiver's time: the attempt
        // (and its timeout) starts once it has one.
        let ready = match inner.pool.take(&target.dest) {
            Some(conn) => Ready::Pooled(conn),
            None => Ready::Slot(inner.pool.slot().await?),
        };
        *started = Instant::now();
        let deadline = tokio::time::Instant::from_std(*started) + timeout;
        let mut excerpt = Vec::new();
        let exchange = self.exchange(
            &target.dest,
            connector,
            ready,
            &request,
            outcome,
            &mut excerpt,
        );
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(Err(error)) => Err(error),
            Ok(Ok(())) => response::finish(outcome, excerpt, false, timeout),
            // What arrived before the deadline is kept: the status, a partial body.
            Err(_elapsed) => response::finish(outcome, excerpt, true, timeout),
        }
    }

    /// Sends the request on a pooled or new connection and reads the answer;
    /// the connection goes back to the pool only after a complete response.
    async fn exchange(
        &self,
        dest: &Destination,
        connector: &TlsConnector,
        ready: Ready,
        request: &[u8],
        outcome: &mut Outcome,
        excerpt: &mut Vec<u8>,
    ) -> Result<(), OutboundError> {
        let inner = &*self.inner;
        // A new connection may have sent the request with its handshake.
        let open = |slot| {
            conn::connect(
                dest,
                &inner.policy,
                connector,
                inner.proxy.as_ref(),
                slot,
                request,
            )
        };
        let (mut conn, mut sent) = match ready {
            Ready::Pooled(conn) => (conn, 0),
            Ready::Slot(slot) => {
                let opened = open(slot).await?;
                (opened.conn, opened.sent)
            }
        };
        let head = loop {
            let answer = match http1::send(&mut conn, &request[sent..]).await {
                Ok(()) => http1::read_head(&mut conn).await,
                Err(error) => Err(HeadError::Io {
                    error,
                    any_bytes: false,
                }),
            };
            match answer {
                Ok(head) => break head,
                // A kept-alive connection the receiver closed while it was
                // idle fails before any answer: once more on a new one. (The
                // receiver may have read the request; receivers deduplicate
                // on the event id, and delivery is at-least-once anyway.)
                Err(HeadError::Io {
                    any_bytes: false, ..
                }) if conn.reused => {
                    let opened = open(conn.close()).await?;
                    (conn, sent) = (opened.conn, opened.sent);
                }
                Err(HeadError::Io { error, .. }) => {
                    return Err(error::from_io(&error, Stage::Exchange));
                }
                Err(HeadError::Invalid(message)) => {
                    return Err(OutboundError::new(ErrorKind::Connect, message));
                }
            }
        };
        response::record_head(&head, outcome);
        if http1::read_body(&mut conn, &head, excerpt, inner.max_response_body).await {
            inner.pool.put(dest, conn);
        }
        Ok(())
    }

    /// The destination and request line parts of `url`; IP literals are
    /// checked against the policy here (names are checked when resolved).
    fn target<'a>(&self, url: &'a Url) -> Result<Target<'a>, OutboundError> {
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            scheme => {
                return Err(OutboundError::new(
                    ErrorKind::Connect,
                    format!("unsupported URL scheme '{scheme}' (only http and https)"),
                ));
            }
        };
        let (host, literal) = match url.host() {
            Some(Host::Ipv4(ip)) => (ip.to_string(), Some(IpAddr::V4(ip))),
            Some(Host::Ipv6(ip)) => (ip.to_string(), Some(IpAddr::V6(ip))),
            Some(Host::Domain(name)) => (name.to_string(), None),
            None => {
                return Err(OutboundError::new(
                    ErrorKind::Connect,
                    "URL has no host".to_string(),
                ));
            }
        };
        if let Some(ip) = literal {
            self.inner.policy.check(ip).map_err(|blocked| {
                OutboundError::new(ErrorKind::BlockedAddress, blocked.to_string())
            })?;
        }
        let port = url
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        Ok(Target {
            dest: Destination {
                tls,
                host,
                port,
                literal,
                identity: 0,
            },
            host_header: &url[Position::BeforeHost..Position::BeforePath],
            path: &url[Position::BeforePath..Position::AfterQuery],
        })
    }
}
