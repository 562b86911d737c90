//! Outbound HTTP client of the webhook service.
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
//! - The hot path stays quiet: no logging, one shared pooled client, and
//!   keep-alive connections reused per host.

#![warn(missing_docs)]

mod error;
mod resolver;
mod response;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use url::{Host, Position, Url};
use webhook_domain::address::AddressPolicy;

pub use error::{ErrorKind, OutboundError, OutboundInitError};

use resolver::PolicyResolver;

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
}

/// The stack below hyper's client: TLS (or plain TCP) over a TCP connector
/// whose resolver drops refused addresses.
type Connector = HttpsConnector<HttpConnector<PolicyResolver>>;

/// A pooled HTTP/1.1 + HTTP/2 client for webhook deliveries; cheap to clone.
#[derive(Clone)]
pub struct OutboundClient {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<Connector, Full<Bytes>>,
    policy: Arc<AddressPolicy>,
    timeout: Duration,
    max_response_body: usize,
    /// Parsed once: it is the same on every request.
    user_agent: HeaderValue,
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
    /// The first 32 response headers, values truncated to 512 bytes.
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

impl OutboundClient {
    /// Builds the client and its connection pool; fails on an invalid setting.
    pub fn new(config: OutboundConfig) -> Result<Self, OutboundInitError> {
        if config.timeout.is_zero() {
            return Err(OutboundInitError::ZeroTimeout);
        }
        let user_agent = HeaderValue::from_str(&config.user_agent)
            .map_err(|_| OutboundInitError::InvalidUserAgent(config.user_agent.clone()))?;

        let mut tcp =
            HttpConnector::new_with_resolver(PolicyResolver::new(Arc::clone(&config.policy)));
        // Off so that https URLs reach the TLS layer through this connector.
        tcp.enforce_http(false);
        // Webhook requests are small single writes; Nagle would only add latency.
        tcp.set_nodelay(true);
        // The attempt timeout bounds this too; this just stops a connect that
        // cannot succeed from lingering in the background.
        tcp.set_connect_timeout(Some(config.timeout));

        // ring chosen explicitly rather than through rustls' process-wide
        // default, which panics if another crate in the binary enables a
        // second provider.
        let tls = HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(OutboundInitError::Tls)?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);

        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            // Without a pool timer the idle timeout would never fire.
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_idle_per_host)
            .build(tls);

        Ok(OutboundClient {
            inner: Arc::new(Inner {
                client,
                policy: config.policy,
                timeout: config.timeout,
                max_response_body: config.max_response_body,
                user_agent,
            }),
        })
    }

    /// POSTs `body` to `url` with `headers` (the caller's signature headers
    /// etc.); the client adds `User-Agent`, `Content-Type: application/json`
    /// and `Content-Length`. Redirects are reported, not followed.
    pub async fn post(&self, url: &Url, headers: HeaderMap, body: Bytes) -> Outcome {
        let started = Instant::now();
        let mut outcome = Outcome::default();
        if let Err(error) = self
            .attempt(url, headers, body, started, &mut outcome)
            .await
        {
            outcome.error = Some(error);
        }
        outcome.duration = started.elapsed();
        outcome
    }

    async fn attempt(
        &self,
        url: &Url,
        headers: HeaderMap,
        body: Bytes,
        started: Instant,
        outcome: &mut Outcome,
    ) -> Result<(), OutboundError> {
        let inner = &*self.inner;
        let request = self.build_request(url, headers, body)?;
        let deadline = tokio::time::Instant::from_std(started) + inner.timeout;

        let response = match tokio::time::timeout_at(deadline, inner.client.request(request)).await
        {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => return Err(error::from_client_error(&err, url)),
            Err(_elapsed) => {
                return Err(OutboundError::new(
                    ErrorKind::Timeout,
                    format!("no response within {} ms", inner.timeout.as_millis()),
                ));
            }
        };
        response::record(
            response,
            deadline,
            inner.timeout,
            inner.max_response_body,
            outcome,
        )
        .await
    }

    fn build_request(
        &self,
        url: &Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, OutboundError> {
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(OutboundError::new(
                ErrorKind::Connect,
                format!("unsupported URL scheme '{scheme}' (only http and https)"),
            ));
        }
        // hyper-util's connector never calls the resolver for an IP literal,
        // so the policy has to see those here.
        let literal = match url.host() {
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(Host::Domain(_)) => None,
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

        // The fragment is never sent; everything before it is a valid request target.
        let uri = Uri::try_from(&url[..Position::AfterQuery]).map_err(|err| {
            OutboundError::new(
                ErrorKind::Connect,
                format!("URL not usable for HTTP: {err}"),
            )
        })?;

        let content_length = HeaderValue::from(body.len());
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        let request_headers = request.headers_mut();
        *request_headers = headers;
        request_headers.insert(USER_AGENT, self.inner.user_agent.clone());
        request_headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        request_headers.insert(CONTENT_LENGTH, content_length);
        Ok(request)
    }
}
