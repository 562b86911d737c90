//! The webhook options of `webhooks create` and `webhooks update` beyond
//! URL, events and description: delivery controls (filter, rate limit,
//! retry schedule, timeout, ordering) and how deliveries reach the endpoint (custom
//! headers, endpoint auth, signing). The flags map onto the API's fields
//! here, and a read's masked options become the lines `webhooks get` shows.
//!
//! Secrets never need to sit in shell history: wherever a flag takes one (a
//! header's value, the Basic password, the bearer token, the OAuth2 client
//! secret), it may be written as `@FILE` (the file's text without its final
//! line break) or `env:NAME` (the environment variable NAME).

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};

/// The end of `webhooks create --help`.
pub const CREATE_AFTER_HELP: &str = "\
Examples:
  webhook-service webhooks create --endpoint https://example.com/hooks --events user.created,credit.* --dev
  webhook-service webhooks create --endpoint https://example.com/hooks --events 'credit.*' \\
    --filter '{\"data\":{\"balance\":{\"$lt\":10}}}' --rate-limit 50 --retry-schedule 5s,1m,10m \\
    --header 'X-Api-Key: @api-key.txt' --auth-bearer env:ENDPOINT_TOKEN --signing ed25519 --dev

Secrets (a --header value, the --auth-basic password, --auth-bearer, --auth-oauth2-client-secret)
may be written as @FILE (the file's text, final line break dropped) or env:NAME (an environment
variable), so that they stay out of shell history. --filter takes JSON text or @FILE.";

/// The end of `webhooks update --help`.
pub const UPDATE_AFTER_HELP: &str = "\
Examples:
  webhook-service webhooks update wh_01J... --events 'user.*' --dev
  webhook-service webhooks update wh_01J... --filter @filter.json --timeout-ms 5000 --dev
  webhook-service webhooks update wh_01J... --no-filter --no-rate-limit --default-retry-schedule --dev
  webhook-service webhooks update wh_01J... --ordering fifo --ordering-key userId --dev
  webhook-service webhooks update wh_01J... --header 'X-Api-Key: env:API_KEY' --no-auth --dev

Options not given stay as they are. --header replaces all the webhook's headers (reads show
them masked, so they cannot be merged): give every header the webhook should send. Secrets
may be written as @FILE or env:NAME, as for create.";

/// Why the options given cannot become a request.
#[derive(Debug, thiserror::Error)]
pub enum OptionError {
    /// A `@FILE` (or a PEM file) could not be read.
    #[error("{flag}: cannot read {}: {source}", path.display())]
    File {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// An `env:NAME` names a variable that is not set (or not UTF-8).
    #[error("{flag}: the environment variable {name} is not set")]
    Env { flag: &'static str, name: String },
    /// A JSON document (filter or event) does not parse.
    #[error("{flag} is not valid JSON: {source}")]
    Json {
        flag: &'static str,
        source: serde_json::Error,
    },
    /// The same header twice: one of them would be dropped silently.
    #[error("--header {0} is given twice; a webhook sends each header once")]
    HeaderTwice(String),
}

/// A secret as written on the command line: the value itself, `@FILE` or
/// `env:NAME`. It is read only when the request is built, so that a
/// refused command line reads no file.
#[derive(Clone)]
pub enum SecretArg {
    /// The value as given.
    Literal(String),
    /// The text of this file, final line break dropped.
    File(PathBuf),
    /// The value of this environment variable.
    Env(String),
}

impl From<&str> for SecretArg {
    fn from(written: &str) -> Self {
        if let Some(path) = written.strip_prefix('@') {
            SecretArg::File(PathBuf::from(path))
        } else if let Some(name) = written.strip_prefix("env:") {
            SecretArg::Env(name.to_string())
        } else {
            SecretArg::Literal(written.to_string())
        }
    }
}

impl FromStr for SecretArg {
    type Err = Infallible;

    fn from_str(written: &str) -> Result<Self, Self::Err> {
        Ok(SecretArg::from(written))
    }
}

impl SecretArg {
    /// The secret itself.
    fn resolve(&self, flag: &'static str) -> Result<String, OptionError> {
        match self {
            SecretArg::Literal(value) => Ok(value.clone()),
            SecretArg::File(path) => {
                let text = read_file(flag, path)?;
                // Editors and `echo` end files with a line break that is not part of the secret.
                Ok(text.trim_end_matches(['\n', '\r']).to_string())
            }
            SecretArg::Env(name) => std::env::var(name).map_err(|_| OptionError::Env {
                flag,
                name: name.clone(),
            }),
        }
    }
}

/// One `--header 'Name: value'`; the value may be a secret reference.
#[derive(Clone)]
pub struct HeaderArg {
    name: String,
    value: SecretArg,
}

impl FromStr for HeaderArg {
    type Err = String;

    fn from_str(written: &str) -> Result<Self, Self::Err> {
        let (name, value) = written
            .split_once(':')
            .map(|(n, v)| (n.trim(), v.trim_start()))
            .filter(|(n, _)| !n.is_empty())
            .ok_or("write it as 'Name: value'")?;
        Ok(HeaderArg {
            name: name.to_string(),
            value: SecretArg::from(value),
        })
    }
}

/// `--auth-basic USER:PASSWORD`; the password may be a secret reference.
/// The user name ends at the first colon, as in HTTP Basic itself.
#[derive(Clone)]
pub struct BasicArg {
    username: String,
    password: SecretArg,
}

impl FromStr for BasicArg {
    type Err = String;

    fn from_str(written: &str) -> Result<Self, Self::Err> {
        let (username, password) = written
            .split_once(':')
            .ok_or("write it as USER:PASSWORD (the password may be @FILE or env:NAME)")?;
        Ok(BasicArg {
            username: username.to_string(),
            password: SecretArg::from(password),
        })
    }
}

/// Options that `create` and `update` both set. Absent flags leave a
/// webhook's option as it is (on create: the service's default).
#[derive(Args, Default)]
pub struct OptionFlags {
    /// Deliver only events this filter matches: JSON text or @FILE
    /// (try one with `webhooks filter-test`).
    #[arg(long, value_name = "JSON|@FILE")]
    filter: Option<String>,
    /// Start at most N deliveries a second (1-10000).
    #[arg(long, value_name = "N")]
    rate_limit: Option<u64>,
    /// Waits before each retry, comma separated (overrides the service's WEBHOOK_RETRY_SCHEDULE).
    #[arg(long, value_name = "WAITS", value_delimiter = ',')]
    retry_schedule: Option<Vec<String>>,
    /// Whole-attempt timeout in milliseconds (overrides the service's WEBHOOK_TIMEOUT).
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Deliver one at a time in acknowledgement order (`fifo`): a delivery
    /// waits until every earlier one of its order has finished.
    #[arg(long, value_enum, value_name = "fifo")]
    ordering: Option<Ordering>,
    /// What one order covers with --ordering fifo: the whole webhook
    /// (default) or each user the events are about.
    #[arg(long, value_enum, value_name = "KEY", requires = "ordering")]
    ordering_key: Option<OrderingKeyArg>,
    /// A header sent with every delivery, 'Name: value' (repeatable; the
    /// value may be @FILE or env:NAME). On update the headers given replace
    /// all the webhook's headers.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<HeaderArg>,
    /// Authenticate with HTTP Basic, USER:PASSWORD (the password may be @FILE or env:NAME).
    #[arg(long, value_name = "USER:PASSWORD", group = "auth")]
    auth_basic: Option<BasicArg>,
    /// Authenticate with a bearer token (TOKEN, @FILE or env:NAME).
    #[arg(long, value_name = "TOKEN", group = "auth")]
    auth_bearer: Option<SecretArg>,
    /// Authenticate with an OAuth2 client-credentials token from this URL.
    #[arg(long, value_name = "URL", group = "auth",
          requires_all = ["auth_oauth2_client_id", "auth_oauth2_client_secret"])]
    auth_oauth2_token_url: Option<String>,
    /// The OAuth2 client id.
    #[arg(long, value_name = "ID", requires = "auth_oauth2_token_url")]
    auth_oauth2_client_id: Option<String>,
    /// The OAuth2 client secret (SECRET, @FILE or env:NAME).
    #[arg(long, value_name = "SECRET", requires = "auth_oauth2_token_url")]
    auth_oauth2_client_secret: Option<SecretArg>,
    /// The OAuth2 scope asked for.
    #[arg(long, value_name = "SCOPE", requires = "auth_oauth2_token_url")]
    auth_oauth2_scope: Option<String>,
    /// The OAuth2 audience asked for.
    #[arg(long, value_name = "AUDIENCE", requires = "auth_oauth2_token_url")]
    auth_oauth2_audience: Option<String>,
    /// Present this client certificate (PEM file) on the TLS handshake.
    #[arg(long, value_name = "FILE", group = "auth", requires = "auth_mtls_key")]
    auth_mtls_cert: Option<PathBuf>,
    /// The private key (PEM file) of --auth-mtls-cert.
    #[arg(long, value_name = "FILE", requires = "auth_mtls_cert")]
    auth_mtls_key: Option<PathBuf>,
}

/// Flags of `update` that put an option back to the service's default.
#[derive(Args, Default)]
pub struct ResetFlags {
    /// Remove the filter: deliver every subscribed event.
    #[arg(long, conflicts_with = "filter")]
    no_filter: bool,
    /// Remove the rate limit.
    #[arg(long, conflicts_with = "rate_limit")]
    no_rate_limit: bool,
    /// Use the service's retry schedule again.
    #[arg(long, conflicts_with = "retry_schedule")]
    default_retry_schedule: bool,
    /// Use the service's timeout again.
    #[arg(long, conflicts_with = "timeout_ms")]
    default_timeout: bool,
    /// Deliver in any order again (queued deliveries are released at once).
    #[arg(long, conflicts_with = "ordering")]
    no_ordering: bool,
    /// Remove every custom header.
    #[arg(long, conflicts_with = "headers")]
    no_headers: bool,
    /// Remove the endpoint authentication.
    #[arg(long, group = "auth")]
    no_auth: bool,
}

/// The delivery orders `--ordering` takes.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Ordering {
    /// First in, first out: one delivery of an order at a time.
    Fifo,
}

/// What one FIFO order covers.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OrderingKeyArg {
    /// One order for all the webhook's deliveries.
    Webhook,
    /// One order per user the events are about.
    #[value(name = "userId", alias = "user-id")]
    UserId,
}

impl OrderingKeyArg {
    fn as_api(self) -> &'static str {
        match self {
            OrderingKeyArg::Webhook => "webhook",
            OrderingKeyArg::UserId => "userId",
        }
    }
}

/// How deliveries of a new webhook are signed.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Signing {
    /// HMAC-SHA256 with the webhook's secret (`v1,` signatures).
    Hmac,
    /// Ed25519 (`v1a,` signatures); receivers verify with the public key `webhooks get` shows.
    Ed25519,
}

impl Signing {
    fn as_api(self) -> &'static str {
        match self {
            Signing::Hmac => "hmac",
            Signing::Ed25519 => "ed25519",
        }
    }
}

/// Adds `signing` to a create body.
pub fn apply_signing(signing: Option<Signing>, body: &mut Map<String, Value>) {
    if let Some(signing) = signing {
        body.insert("signing".into(), json!(signing.as_api()));
    }
}

impl OptionFlags {
    /// Adds the fields these flags set to a create or update body.
    pub fn apply(&self, body: &mut Map<String, Value>) -> Result<(), OptionError> {
        if let Some(filter) = &self.filter {
            body.insert("filter".into(), json_document("--filter", filter)?);
        }
        if let Some(n) = self.rate_limit {
            body.insert("rateLimitPerSecond".into(), json!(n));
        }
        if let Some(waits) = &self.retry_schedule {
            body.insert("retrySchedule".into(), json!(waits));
        }
        if let Some(ms) = self.timeout_ms {
            body.insert("timeoutMs".into(), json!(ms));
        }
        if let Some(Ordering::Fifo) = self.ordering {
            body.insert("ordering".into(), json!("fifo"));
            // The API takes the key only beside "ordering" in the same body.
            if let Some(key) = self.ordering_key {
                body.insert("orderingKey".into(), json!(key.as_api()));
            }
        }
        if !self.headers.is_empty() {
            body.insert("headers".into(), Value::Object(headers(&self.headers)?));
        }
        if let Some(auth) = self.auth()? {
            body.insert("auth".into(), auth);
        }
        Ok(())
    }

    /// The `auth` object of the one auth kind given (clap's `auth` group
    /// lets through at most one, and every flag of an oauth2 or mtls set
    /// requires its main flag).
    fn auth(&self) -> Result<Option<Value>, OptionError> {
        if let Some(basic) = &self.auth_basic {
            let password = basic.password.resolve("--auth-basic")?;
            return Ok(Some(
                json!({"type": "basic", "username": basic.username, "password": password}),
            ));
        }
        if let Some(token) = &self.auth_bearer {
            let token = token.resolve("--auth-bearer")?;
            return Ok(Some(json!({"type": "bearer", "token": token})));
        }
        if let Some(token_url) = &self.auth_oauth2_token_url {
            let client_secret = match &self.auth_oauth2_client_secret {
                Some(s) => s.resolve("--auth-oauth2-client-secret")?,
                None => String::new(), // clap requires it; the service names it if empty
            };
            let mut auth = json!({
                "type": "oauth2",
                "tokenUrl": token_url,
                "clientId": self.auth_oauth2_client_id.clone().unwrap_or_default(),
                "clientSecret": client_secret,
            });
            if let Some(scope) = &self.auth_oauth2_scope {
                auth["scope"] = json!(scope);
            }
            if let Some(audience) = &self.auth_oauth2_audience {
                auth["audience"] = json!(audience);
            }
            return Ok(Some(auth));
        }
        if let (Some(cert), Some(key)) = (&self.auth_mtls_cert, &self.auth_mtls_key) {
            let certificate = read_file("--auth-mtls-cert", cert)?;
            let private_key = read_file("--auth-mtls-key", key)?;
            return Ok(Some(
                json!({"type": "mtls", "certificate": certificate, "privateKey": private_key}),
            ));
        }
        Ok(None)
    }
}

impl ResetFlags {
    /// Adds a `null` for every option to put back to the default: the API's way of clearing one.
    pub fn apply(&self, body: &mut Map<String, Value>) {
        let resets = [
            (self.no_filter, "filter"),
            (self.no_rate_limit, "rateLimitPerSecond"),
            (self.default_retry_schedule, "retrySchedule"),
            (self.default_timeout, "timeoutMs"),
            (self.no_ordering, "ordering"),
            (self.no_headers, "headers"),
            (self.no_auth, "auth"),
        ];
        for (reset, field) in resets {
            if reset {
                body.insert(field.into(), Value::Null);
            }
        }
    }
}

/// `--header` values as the API's header object.
fn headers(given: &[HeaderArg]) -> Result<Map<String, Value>, OptionError> {
    let mut out = Map::new();
    for header in given {
        // Header names are case-insensitive: X-Key and x-key are one header.
        if out.keys().any(|k| k.eq_ignore_ascii_case(&header.name)) {
            return Err(OptionError::HeaderTwice(header.name.clone()));
        }
        let value = header.value.resolve("--header")?;
        out.insert(header.name.clone(), json!(value));
    }
    Ok(out)
}

/// A JSON document written as text or `@FILE`.
pub fn json_document(flag: &'static str, written: &str) -> Result<Value, OptionError> {
    let text = match written.strip_prefix('@') {
        Some(path) => read_file(flag, Path::new(path))?,
        None => written.to_string(),
    };
    serde_json::from_str(&text).map_err(|source| OptionError::Json { flag, source })
}

fn read_file(flag: &'static str, path: &Path) -> Result<String, OptionError> {
    std::fs::read_to_string(path).map_err(|source| OptionError::File {
        flag,
        path: path.to_path_buf(),
        source,
    })
}

/// The fields of a webhook read that are options: `webhooks get` shows
/// them as [`option_lines`] rather than as raw JSON.
pub const OPTION_FIELDS: &[&str] = &[
    "filter",
    "rateLimitPerSecond",
    "retrySchedule",
    "timeoutMs",
    "ordering",
    "orderingKey",
    "headers",
    "auth",
    "signing",
    "publicKey",
    "previousPublicKey",
];

/// The options a webhook read shows as set, one `(label, text)` per line;
/// options at the service's default are left out.
pub fn option_lines(webhook: &Value) -> Vec<(&'static str, String)> {
    let mut lines = Vec::new();
    if let Some(n) = webhook["rateLimitPerSecond"].as_u64() {
        lines.push(("rateLimit", format!("{n}/s")));
    }
    if let Some(waits) = webhook["retrySchedule"].as_array() {
        let waits: Vec<&str> = waits.iter().filter_map(Value::as_str).collect();
        lines.push(("retrySchedule", waits.join(",")));
    }
    if let Some(ms) = webhook["timeoutMs"].as_u64() {
        lines.push(("timeout", format!("{ms} ms")));
    }
    if let Some(ordering) = webhook["ordering"].as_str() {
        let key = match webhook["orderingKey"].as_str() {
            Some("userId") => "one order per user",
            _ => "one order for the webhook",
        };
        lines.push(("ordering", format!("{ordering}, {key}")));
    }
    if !webhook["filter"].is_null() {
        lines.push(("filter", webhook["filter"].to_string()));
    }
    if let Some(headers) = webhook["headers"].as_object().filter(|h| !h.is_empty()) {
        let shown: Vec<String> = headers
            .iter()
            .map(|(name, value)| format!("{name}: {}", value.as_str().unwrap_or("")))
            .collect();
        lines.push(("headers", shown.join(", ")));
    }
    if let Some(kind) = webhook["auth"]["type"].as_str() {
        lines.push(("auth", auth_summary(kind, &webhook["auth"])));
    }
    if webhook["signing"] == "ed25519" {
        lines.push(("signing", "ed25519".to_string()));
    }
    if let Some(key) = webhook["publicKey"].as_str() {
        lines.push(("publicKey", key.to_string()));
    }
    if let Some(key) = webhook["previousPublicKey"].as_str() {
        lines.push(("previousPublicKey", key.to_string()));
    }
    lines
}

/// The kind of auth and what a read shows of it in clear (never a secret:
/// the read has them masked already).
fn auth_summary(kind: &str, auth: &Value) -> String {
    let text = |field: &str| auth[field].as_str().unwrap_or("-").to_string();
    match kind {
        "basic" => format!("basic (user {})", text("username")),
        "oauth2" => {
            let mut shown = format!(
                "oauth2 (client {} at {}",
                text("clientId"),
                text("tokenUrl")
            );
            if let Some(scope) = auth["scope"].as_str() {
                shown.push_str(&format!(", scope {scope}"));
            }
            if let Some(audience) = auth["audience"].as_str() {
                shown.push_str(&format!(", audience {audience}"));
            }
            shown.push(')');
            shown
        }
        "mtls" => "mtls (client certificate)".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(flags: OptionFlags) -> Result<Map<String, Value>, OptionError> {
        let mut body = Map::new();
        flags.apply(&mut body)?;
        Ok(body)
    }

    fn parsed<T: FromStr>(written: &str) -> T
    where
        T::Err: std::fmt::Debug,
    {
        written.parse().expect("parses")
    }

    #[test]
    fn headers_keep_their_value_after_the_first_colon() {
        let body = body_of(OptionFlags {
            headers: vec![parsed("X-Api-Key: k:123"), parsed("X-Tenant:acme")],
            ..OptionFlags::default()
        })
        .expect("body");
        assert_eq!(
            body["headers"],
            json!({"X-Api-Key": "k:123", "X-Tenant": "acme"})
        );
    }

    #[test]
    fn a_header_given_twice_in_any_case_or_without_a_name_is_refused() {
        let err = body_of(OptionFlags {
            headers: vec![parsed("X-Key: a"), parsed("x-key: b")],
            ..OptionFlags::default()
        })
        .expect_err("twice");
        assert!(err.to_string().contains("twice"), "{err}");
        for bad in ["no colon", ": value only"] {
            let err = bad.parse::<HeaderArg>().err().expect("refused");
            assert!(err.contains("'Name: value'"), "{err}");
        }
        assert!("alice".parse::<BasicArg>().is_err());
    }

    #[test]
    fn secrets_come_from_files_without_their_final_line_break() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "t-123\n").expect("write");
        let body = body_of(OptionFlags {
            auth_bearer: Some(parsed(&format!("@{}", path.display()))),
            ..OptionFlags::default()
        })
        .expect("body");
        assert_eq!(body["auth"], json!({"type": "bearer", "token": "t-123"}));
        let err = body_of(OptionFlags {
            auth_basic: Some(parsed("alice:env:WEBHOOK_TEST_SURELY_UNSET_VARIABLE")),
            ..OptionFlags::default()
        })
        .expect_err("unset");
        assert!(
            err.to_string()
                .contains("WEBHOOK_TEST_SURELY_UNSET_VARIABLE is not set"),
            "{err}"
        );
        let err = body_of(OptionFlags {
            headers: vec![parsed("X-Key: @/nonexistent/key.txt")],
            ..OptionFlags::default()
        })
        .expect_err("missing file");
        assert!(
            err.to_string()
                .starts_with("--header: cannot read /nonexistent/key.txt"),
            "{err}"
        );
    }

    #[test]
    fn resets_send_null_for_each_option() {
        let mut body = Map::new();
        ResetFlags {
            no_filter: true,
            no_auth: true,
            ..ResetFlags::default()
        }
        .apply(&mut body);
        assert_eq!(Value::Object(body), json!({"filter": null, "auth": null}));
    }

    #[test]
    fn only_the_options_that_are_set_are_shown() {
        let read = json!({
            "filter": null, "rateLimitPerSecond": 50, "retrySchedule": null,
            "timeoutMs": null, "headers": {"X-Api-Key": "********"},
            "auth": {"type": "bearer", "token": "********"},
            "signing": "hmac", "publicKey": null, "previousPublicKey": null
        });
        assert_eq!(
            option_lines(&read),
            vec![
                ("rateLimit", "50/s".to_string()),
                ("headers", "X-Api-Key: ********".to_string()),
                ("auth", "bearer".to_string()),
            ]
        );
    }
}
