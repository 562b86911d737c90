//! Where a client command finds the service, how it authenticates, and how
//! the service's error answers become messages that say what to do.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::Value;
use webhook_service::config::{Config, SecretString, Settings};
use webhook_service::{auth, devmode};

use super::http::{Answer, HttpClient};
use super::{CliError, Connection};

/// The user `--dev` commands act as unless `--as-user` says otherwise, so that
/// `listen --dev --register`, `send --dev` and the portal link of `serve
/// --dev` meet without any set-up.
pub use webhook_service::devmode::DEV_USER;

/// The service's default address (its default PORT on loopback).
const DEFAULT_URL: &str = "http://127.0.0.1:3005";

/// Lifetime of the tokens `--dev` mints: long enough for a `--follow`.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// A running service and the credentials to call it.
pub struct Service {
    /// Base URL without a trailing slash.
    pub base: String,
    token: Option<String>,
    internal_secret: Option<String>,
    /// The user `--dev` acts as (the default `userId` of `send --dev`).
    pub dev_user: Option<String>,
    /// `--json`.
    pub json: bool,
    http: HttpClient,
}

impl Service {
    /// Resolves `--url`, `--token`, `--internal-secret` and `--dev`.
    pub fn connect(c: &Connection) -> Result<Service, CliError> {
        let mut token = c.token.clone().filter(|t| !t.trim().is_empty());
        let mut internal_secret = c.internal_secret.clone().filter(|t| !t.trim().is_empty());
        let mut url = c.url.clone();
        let mut dev_user = None;
        if c.dev {
            let settings = Settings::load(None).map_err(anyhow::Error::from)?;
            let config = Config::from_settings(&settings, true).map_err(anyhow::Error::from)?;
            let secrets =
                devmode::read_client_secrets(&config.data_dir).map_err(anyhow::Error::from)?;
            // `serve --dev` prefers configured secrets over generated ones; so do we.
            let jwt = config.jwt.secret.clone().unwrap_or(secrets.jwt_secret);
            if token.is_none() {
                // Admin, so that every command (replay, stats of all) works locally.
                let minted = auth::mint_token(&jwt, &c.as_user, None, true, DEV_TOKEN_TTL)
                    .map_err(|e| {
                        CliError::Other(anyhow::anyhow!("cannot mint a --dev token: {e}"))
                    })?;
                token = Some(minted);
            }
            if internal_secret.is_none() {
                let secret: SecretString = config
                    .internal_secret
                    .clone()
                    .unwrap_or(secrets.internal_service_secret);
                internal_secret = Some(secret.expose().to_string());
            }
            if url.is_none() {
                url = Some(format!("http://127.0.0.1:{}", config.port));
            }
            dev_user = Some(c.as_user.clone());
        }
        let base = url
            .unwrap_or_else(|| DEFAULT_URL.to_string())
            .trim_end_matches('/')
            .to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(CliError::Usage(format!(
                "--url {base}: give the service's http:// or https:// address"
            )));
        }
        Ok(Service {
            base,
            token,
            internal_secret,
            dev_user,
            json: c.json,
            http: HttpClient::new()?,
        })
    }

    /// The HTTP client, for requests to other addresses (`listen --forward-to`).
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// Whether an internal secret is at hand (otherwise `send` uses `/api/v1/events`).
    pub fn has_internal_secret(&self) -> bool {
        self.internal_secret.is_some()
    }

    /// A `/api/v1` call with the user token; answers the whole success envelope.
    pub async fn user(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let token = self.token.as_deref().ok_or_else(|| {
            CliError::Usage(
                "this command needs a user token: pass --token or set WEBHOOK_TOKEN \
                 (mint one with `webhook-service token --user <uuid>`), or use --dev against `serve --dev`"
                    .into(),
            )
        })?;
        let answer = self.call(method, path, token, body).await?;
        self.success(answer, Credential::Token)
    }

    /// An unauthenticated `GET` (the event catalogue).
    pub async fn public(&self, path: &str) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let answer = self
            .http
            .send(Method::GET, &url, &[], None)
            .await
            .map_err(service_hint)?;
        self.success(answer, Credential::Token)
    }

    /// A `/internal` call with the internal secret; answers status and envelope
    /// (a batch answers 400 with per-event details that are results, not a failure).
    pub async fn internal(&self, path: &str, body: Bytes) -> Result<(StatusCode, Value), CliError> {
        let secret = self.internal_secret.as_deref().ok_or_else(|| {
            CliError::Usage(
                "this command needs the internal secret: pass --internal-secret or set \
                 INTERNAL_SERVICE_SECRET, or use --dev against `serve --dev`"
                    .into(),
            )
        })?;
        let answer = self
            .call_raw(Method::POST, path, secret, Some(body))
            .await?;
        let status = answer.status;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.failure(answer, Credential::InternalSecret));
        }
        let envelope = parse_envelope(&answer)?;
        Ok((status, envelope))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: &str,
        body: Option<&Value>,
    ) -> Result<Answer, CliError> {
        let body = body
            .map(|b| serde_json::to_vec(b).map(Bytes::from))
            .transpose()
            .map_err(anyhow::Error::from)?;
        self.call_raw(method, path, bearer, body).await
    }

    async fn call_raw(
        &self,
        method: Method,
        path: &str,
        bearer: &str,
        body: Option<Bytes>,
    ) -> Result<Answer, CliError> {
        let auth = HeaderValue::from_str(&format!("Bearer {bearer}")).map_err(|_| {
            CliError::Usage("the token or secret contains characters a header cannot hold".into())
        })?;
        let url = format!("{}{path}", self.base);
        self.http
            .send(method, &url, &[(header::AUTHORIZATION, auth)], body)
            .await
            .map_err(service_hint)
    }

    /// The envelope of a 2xx answer, or the error it means.
    pub fn success(&self, answer: Answer, credential: Credential) -> Result<Value, CliError> {
        if answer.status.is_success() {
            parse_envelope(&answer)
        } else {
            Err(self.failure(answer, credential))
        }
    }

    /// Turns an error answer into a message that says what to do next.
    fn failure(&self, answer: Answer, credential: Credential) -> CliError {
        let envelope = serde_json::from_slice::<Value>(&answer.body).unwrap_or(Value::Null);
        let code = envelope["error"]["code"].as_str().unwrap_or("");
        let message = envelope["error"]["message"]
            .as_str()
            .or_else(|| envelope["message"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).trim().to_string());
        let mut text = format!(
            "{} answered {}{}: {message}",
            self.base,
            answer.status.as_u16(),
            if code.is_empty() {
                String::new()
            } else {
                format!(" {code}")
            }
        );
        if let Some(details) = envelope["error"]["details"].as_array() {
            for d in details {
                let field = d["field"].as_str().unwrap_or("");
                let problem = d["message"].as_str().unwrap_or("");
                text.push_str(&format!("\n  {field}: {problem}"));
            }
        }
        let hint = match (answer.status, credential) {
            (StatusCode::UNAUTHORIZED, Credential::Token) => Some(
                "the token is expired or not signed with this service's JWT_SECRET: mint a new one with \
                 `webhook-service token --user <uuid>` (or use --dev against `serve --dev`)",
            ),
            (StatusCode::UNAUTHORIZED, Credential::InternalSecret) => Some(
                "the internal secret is not this service's INTERNAL_SERVICE_SECRET (or use --dev against `serve --dev`)",
            ),
            (StatusCode::FORBIDDEN, _) => Some(
                "the credential is valid but may not do this; admin-only actions need a token minted with `token --admin`",
            ),
            (StatusCode::NOT_FOUND, _) => {
                Some("check the id (`webhook-service webhooks list` shows yours)")
            }
            (StatusCode::TOO_MANY_REQUESTS, _) => {
                Some("the rate limit was reached; wait for the window to pass")
            }
            _ => None,
        };
        if let Some(hint) = hint {
            text.push_str(&format!("\nhint: {hint}"));
        }
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after_secs = answer
                .headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            return CliError::RateLimited {
                message: text,
                retry_after_secs,
            };
        }
        CliError::Service(text)
    }
}

/// An unreachable service: say how to start one or where to point.
fn service_hint(e: CliError) -> CliError {
    match e {
        CliError::Unreachable(text) => CliError::Unreachable(format!(
            "{text}. Is the service running there? Start it with `webhook-service serve --dev` \
             or point --url (WEBHOOK_SERVICE_URL) at it"
        )),
        other => other,
    }
}

/// Which credential a call used, for the hint of a 401.
#[derive(Clone, Copy)]
pub enum Credential {
    Token,
    InternalSecret,
}

fn parse_envelope(answer: &Answer) -> Result<Value, CliError> {
    serde_json::from_slice(&answer.body).map_err(|_| {
        CliError::Service(format!(
            "the answer ({}) is not this service's JSON: {}; is --url pointing at webhook-service?",
            answer.status.as_u16(),
            String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)])
        ))
    })
}
