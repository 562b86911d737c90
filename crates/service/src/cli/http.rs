//! A small HTTP/1.1 client for the commands that talk to a running service:
//! hyper-util's client over hyper-rustls, so `--url` may be `https://` (a
//! service behind its TLS proxy) or plain `http://` on loopback.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::CliError;

/// How long one request may take before the service counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An answer, read whole.
pub struct Answer {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The response body.
    pub body: Bytes,
}

/// An HTTP/1.1 client for http and https URLs (certificates checked against the webpki roots).
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpClient {
    pub fn new() -> Result<Self, CliError> {
        // The aws-lc-rs provider named explicitly: which default rustls would pick
        // depends on the features other crates of the build enable.
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| CliError::Other(anyhow::anyhow!("cannot set up TLS: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(HttpClient {
            inner: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Sends one request; `Unreachable` names the URL when no answer comes.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(http::HeaderName, HeaderValue)],
        body: Option<Bytes>,
    ) -> Result<Answer, CliError> {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if body.is_some() && !headers.iter().any(|(n, _)| n == header::CONTENT_TYPE) {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| CliError::Usage(format!("{url} is not a usable URL: {e}")))?;
        let unreachable =
            |reason: String| CliError::Unreachable(format!("no answer from {url}: {reason}"));
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.inner.request(request))
            .await
            .map_err(|_| unreachable(format!("no answer within {REQUEST_TIMEOUT:?}")))?
            .map_err(|e| unreachable(error_chain(&e)))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| unreachable(format!("the answer broke off: {e}")))?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// An error and its causes on one line ("client error (Connect): connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
