//! OAuth2 client-credentials tokens for endpoints that demand them
//! (RFC 6749 §4.4): fetched from the webhook's token URL through the
//! delivery client (so the address policy applies exactly as for the
//! endpoint), cached until shortly before they expire, and shared by every
//! attempt to the webhook; one fetch at a time.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::Deserialize;
use webhook_outbound::{OutboundClient, RequestHeaders};

/// Lifetime assumed for a token whose response gives none.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// A token is replaced this long before it expires (or after nine tenths
/// of its life, if that comes first), so that none expires in flight.
const REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// Why no token could be had; the message names no secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("OAuth2 token request failed: {0}")]
pub struct TokenError(String);

/// A token in hand: the `Authorization` value, and which fetch produced it.
#[derive(Debug, Clone)]
pub struct Token {
    /// `Bearer <access token>`.
    pub authorization: String,
    /// Counts fetches, so that a 401 refetches only the token it was sent with.
    pub generation: u64,
}

#[derive(Debug)]
struct Cached {
    token: Token,
    refresh_at: Instant,
}

/// The token source of one webhook.
pub struct TokenSource {
    url: url::Url,
    /// `Authorization: Basic` of the client id and secret (RFC 6749 §2.3.1).
    client_auth: String,
    /// `grant_type=client_credentials` with scope and audience.
    form: Bytes,
    /// Held across a fetch: concurrent attempts wait for the one fetch.
    cached: tokio::sync::Mutex<(Option<Cached>, u64)>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

impl TokenSource {
    /// A source for these credentials; `None` if the token URL does not parse
    /// (it was checked when the webhook was written).
    pub fn new(
        token_url: &str,
        client_id: &str,
        client_secret: &str,
        scope: Option<&str>,
        audience: Option<&str>,
    ) -> Option<TokenSource> {
        let url = url::Url::parse(token_url).ok()?;
        // RFC 6749 §2.3.1: both parts form-encoded before Basic encoding.
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let client_auth = format!(
            "Basic {}",
            BASE64.encode(format!("{}:{}", encode(client_id), encode(client_secret)))
        );
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = scope {
            form.append_pair("scope", scope);
        }
        if let Some(audience) = audience {
            form.append_pair("audience", audience);
        }
        Some(TokenSource {
            url,
            client_auth,
            form: Bytes::from(form.finish()),
            cached: tokio::sync::Mutex::new((None, 0)),
        })
    }

    /// A valid token: the cached one, or a new one. `stale` names a token
    /// the endpoint refused: it is fetched again unless another attempt
    /// has already replaced it.
    pub async fn token(
        &self,
        client: &OutboundClient,
        stale: Option<u64>,
    ) -> Result<Token, TokenError> {
        let mut guard = self.cached.lock().await;
        let (cached, fetches) = &mut *guard;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.refresh_at
            && stale != Some(c.token.generation)
        {
            return Ok(c.token.clone());
        }
        *cached = None;
        let (access_token, lifetime) = self.fetch(client).await?;
        *fetches += 1;
        let margin = REFRESH_MARGIN.min(lifetime / 10);
        let token = Token {
            authorization: format!("Bearer {access_token}"),
            generation: *fetches,
        };
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        Ok(token)
    }

    async fn fetch(&self, client: &OutboundClient) -> Result<(String, Duration), TokenError> {
        let mut headers = RequestHeaders::with_capacity(128);
        // The client id and secret are printable (checked when written).
        let _ = headers.push("authorization", &self.client_auth);
        let _ = headers.push("accept", "application/json");
        let outcome = client
            .post_form(&self.url, headers, self.form.clone())
            .await;
        if let Some(error) = outcome.error {
            return Err(TokenError(format!(
                "{}: {}",
                self.url.host_str().unwrap_or("token endpoint"),
                error.message
            )));
        }
        match outcome.status {
            Some(200..=299) => {}
            Some(status) => {
                return Err(TokenError(format!("the token endpoint answered {status}")));
            }
            None => return Err(TokenError("the token endpoint did not answer".into())),
        }
        let response: TokenResponse = serde_json::from_str(&outcome.body_excerpt)
            .map_err(|_| TokenError("the token endpoint's answer has no access_token".into()))?;
        if response
            .token_type
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err(TokenError(
                "the token endpoint issued a token that is not a bearer token".into(),
            ));
        }
        let usable = !response.access_token.is_empty()
            && response.access_token.bytes().all(|b| b.is_ascii_graphic());
        if !usable {
            return Err(TokenError(
                "the token endpoint issued an unusable access_token".into(),
            ));
        }
        let lifetime = match response.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64().map(Duration::from_secs),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok().map(Duration::from_secs),
            _ => None,
        }
        .unwrap_or(DEFAULT_LIFETIME);
        Ok((response.access_token, lifetime))
    }
}
