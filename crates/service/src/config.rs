//! The service's configuration: one typed struct, read once at start.
//!
//! Sources, later ones winning: built-in defaults, an optional TOML file
//! (`--config FILE` or `WEBHOOK_CONFIG`) whose keys are the environment
//! variable names in any case (`port = 3005`, `webhook_timeout = 10000`), and
//! the environment. Every value is parsed and validated here; an invalid
//! setting stops the service with a message naming the variable.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;

use crate::crypto::EncryptionKey;
use webhook_domain::address::Cidr;
use webhook_domain::retry::{RetrySchedule, parse_duration};

/// A setting that is missing or invalid; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {var}: {message}")]
pub struct ConfigError {
    /// The environment variable (or TOML key) at fault.
    pub var: String,
    /// What is wrong with it and how to fix it.
    pub message: String,
}

fn config_error(var: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var: var.to_string(),
        message: message.into(),
    }
}

/// A secret value read from configuration; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        SecretString(value)
    }
    /// The secret itself, for the few places that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (the platform's default).
    Json,
    /// Human-readable lines.
    Pretty,
}

/// How users' JWTs are verified.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// HS256 shared secret (`JWT_SECRET`).
    pub secret: Option<SecretString>,
    /// PEM public key for RS256/ES256 (`JWT_PUBLIC_KEY`, or a file via `JWT_PUBLIC_KEY_FILE`).
    pub public_key_pem: Option<String>,
    /// Clock leeway applied to `exp` and `nbf`.
    pub leeway: Duration,
}

/// A fixed-window rate limit; `max_requests == 0` disables it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub max_requests: u32,
    /// Window length.
    pub window: Duration,
}

/// Settings of the delivery engine.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Whole-attempt timeout (`WEBHOOK_TIMEOUT`, ms).
    pub timeout: Duration,
    /// Longest timeout a webhook's own `timeoutMs` may ask for
    /// (`WEBHOOK_MAX_ENDPOINT_TIMEOUT`, ms, default 60 s).
    pub max_endpoint_timeout: Duration,
    /// Waits before each retry, with jitter and the retry cap applied.
    pub schedule: RetrySchedule,
    /// Longest `Retry-After` honoured.
    pub max_retry_after: Duration,
    /// Global cap on requests in flight.
    pub max_in_flight: usize,
    /// Cap on requests in flight to one webhook.
    pub max_in_flight_per_webhook: usize,
    /// Deliveries held in memory at most (queued or in flight), in all.
    pub window: usize,
    /// Deliveries held in memory at most for one webhook.
    pub window_per_webhook: usize,
    /// A webhook failing for this long without a success is disabled.
    pub disable_after_failing_for: Duration,
    /// A webhook with this many exhausted deliveries in a row is disabled.
    pub disable_after_exhausted: u32,
    /// Response body excerpt kept per attempt.
    pub max_response_body: usize,
}

/// The effective configuration of one run.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--dev`: generated secrets, http and loopback destinations allowed.
    pub dev: bool,
    /// Listen address (`HOST`, default 0.0.0.0; 127.0.0.1 in `--dev`).
    pub host: IpAddr,
    /// Listen port (`PORT`, default 3005).
    pub port: u16,
    /// Embedded store directory (`WEBHOOK_DATA_DIR`, default `./data`).
    pub data_dir: PathBuf,
    /// `DATABASE_URL` when it names PostgreSQL.
    pub database_url: Option<SecretString>,
    /// PostgreSQL connections per instance for API calls and claims
    /// (`DATABASE_POOL_SIZE`, default 16; the group-commit writer has one more).
    pub database_pool_size: usize,
    /// User token verification.
    pub jwt: JwtConfig,
    /// Bearer secret of `/internal` callers (`INTERNAL_SERVICE_SECRET`).
    pub internal_secret: Option<SecretString>,
    /// 32-byte key encrypting webhook secrets at rest (`WEBHOOK_ENCRYPTION_KEY`, base64 or hex).
    pub encryption_key: Option<EncryptionKey>,
    /// Destinations allowed although not public (`WEBHOOK_ALLOWED_CIDRS`).
    pub allowed_cidrs: Vec<Cidr>,
    /// Delivery engine settings.
    pub delivery: DeliveryConfig,
    /// Per-user limit on `/api/v1` (`RATE_LIMIT_MAX_REQUESTS` per `RATE_LIMIT_WINDOW_MS`).
    pub api_rate_limit: RateLimit,
    /// Per-caller limit on `/internal` (`INTERNAL_RATE_LIMIT_MAX_REQUESTS` per `INTERNAL_RATE_LIMIT_WINDOW_MS`).
    pub internal_rate_limit: RateLimit,
    /// Failed authentications allowed per calling address and minute
    /// (`AUTH_FAILURES_PER_MINUTE`, default 30; 0 disables the limit).
    pub auth_failure_limit: RateLimit,
    /// Webhooks one user may own (`WEBHOOK_MAX_PER_USER`).
    pub max_webhooks_per_user: u32,
    /// How long a rotated-out secret keeps signing (`WEBHOOK_SECRET_GRACE`).
    pub secret_grace: Duration,
    /// Delivery logs older than this are pruned (`WEBHOOK_LOG_RETENTION_DAYS`).
    pub log_retention: Duration,
    /// `LOG_LEVEL` (a tracing filter such as `info` or `webhook_service=debug`).
    pub log_level: String,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// CORS origins (`ALLOWED_ORIGINS`, comma separated; `*` for any).
    pub allowed_origins: Vec<String>,
    /// Server-side limit on reading a request and producing its response.
    pub request_timeout: Duration,
    /// The portal's settings (`WEBHOOK_PORTAL_*`, `WEBHOOK_PUBLIC_URL`).
    pub portal: crate::portal::PortalSettings,
    /// How deliveries leave: trusted roots.
    pub egress: EgressConfig,
}

/// How deliveries reach endpoints.
#[derive(Debug, Clone)]
pub struct EgressConfig {
    /// Trusted roots (`WEBHOOK_TLS_ROOTS`, default `bundled`) and extra
    /// roots (`WEBHOOK_CA_FILE`, PEM).
    pub tls: webhook_outbound::TlsSettings,
    /// `WEBHOOK_CA_FILE`, as given.
    pub ca_file: Option<PathBuf>,
    /// `WEBHOOK_PROXY` (`http://` CONNECT or `socks5://`, credentials
    /// optional), skipped for the destinations of `WEBHOOK_NO_PROXY`.
    pub proxy: Option<webhook_outbound::Proxy>,
    /// Outbound connections open at once (`WEBHOOK_MAX_CONNECTIONS`,
    /// default 1,024): file descriptors the deliveries may use.
    pub max_connections: usize,
}

/// The most `WEBHOOK_MAX_CONNECTIONS` may ask for: far beyond any file
/// descriptor limit, so a typo is caught rather than taken as unbounded.
const MAX_CONNECTIONS: usize = 1_000_000;

fn egress_config(settings: &Settings) -> Result<EgressConfig, ConfigError> {
    let roots = match settings.get("WEBHOOK_TLS_ROOTS") {
        None => webhook_outbound::TrustRoots::default(),
        Some(text) => text
            .parse()
            .map_err(|e: webhook_outbound::UnknownTrustRoots| {
                config_error("WEBHOOK_TLS_ROOTS", e.to_string())
            })?,
    };
    let ca_file = settings.get("WEBHOOK_CA_FILE").map(PathBuf::from);
    let extra_roots = match &ca_file {
        None => webhook_outbound::ExtraRoots::default(),
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                config_error(
                    "WEBHOOK_CA_FILE",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            webhook_outbound::ExtraRoots::from_pem(&pem)
                .map_err(|e| config_error("WEBHOOK_CA_FILE", format!("{}: {e}", path.display())))?
        }
    };
    let no_proxy = settings.get("WEBHOOK_NO_PROXY").unwrap_or("");
    let proxy = match settings.get("WEBHOOK_PROXY") {
        None => None,
        Some(url) => Some(webhook_outbound::Proxy::parse(url, no_proxy).map_err(|e| {
            let var = match e {
                webhook_outbound::InvalidProxy::NoProxy(_) => "WEBHOOK_NO_PROXY",
                webhook_outbound::InvalidProxy::Url(_) => "WEBHOOK_PROXY",
            };
            config_error(var, e.to_string())
        })?),
    };
    let max_connections: usize = settings.parse_or(
        "WEBHOOK_MAX_CONNECTIONS",
        webhook_outbound::ConnectionLimits::default().max_open,
        "a whole number of connections",
    )?;
    if !(1..=MAX_CONNECTIONS).contains(&max_connections) {
        return Err(config_error(
            "WEBHOOK_MAX_CONNECTIONS",
            format!("{max_connections} is not between 1 and {MAX_CONNECTIONS}"),
        ));
    }
    Ok(EgressConfig {
        tls: webhook_outbound::TlsSettings { roots, extra_roots },
        ca_file,
        proxy,
        max_connections,
    })
}

/// Key/value settings gathered from the TOML file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Settings {
    values: BTreeMap<String, String>,
}

impl Settings {
    /// Reads the environment, over the TOML file if one is named.
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let file = config_file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("WEBHOOK_CONFIG").map(PathBuf::from));
        Self::layered(file.as_deref(), std::env::vars())
    }

    /// `env` over the TOML file at `file`, if any.
    fn layered(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut settings = Settings::default();
        if let Some(path) = file {
            settings.merge_toml_file(path)?;
        }
        for (key, value) in env {
            settings.values.insert(key.to_ascii_uppercase(), value);
        }
        Ok(settings)
    }

    /// Settings from explicit pairs (tests).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Settings {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.into().to_ascii_uppercase(), v.into()))
                .collect(),
        }
    }

    fn merge_toml_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let var = "WEBHOOK_CONFIG";
        let text = std::fs::read_to_string(path)
            .map_err(|e| config_error(var, format!("cannot read {}: {e}", path.display())))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| config_error(var, format!("{} is not valid TOML: {e}", path.display())))?;
        for (key, value) in table {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => items
                    .iter()
                    .map(|v| match v {
                        toml::Value::String(s) => s.clone(),
                        toml::Value::Integer(i) => i.to_string(),
                        toml::Value::Float(f) => f.to_string(),
                        toml::Value::Boolean(b) => b.to_string(),
                        other => format!("{other:?}"),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                other => {
                    return Err(config_error(
                        &key.to_ascii_uppercase(),
                        format!(
                            "unsupported TOML value {other:?} (use a string, number, boolean or array)"
                        ),
                    ));
                }
            };
            self.values.insert(key.to_ascii_uppercase(), text);
        }
        Ok(())
    }

    /// The trimmed value of `var`, if set and not empty.
    pub fn get(&self, var: &str) -> Option<&str> {
        self.values
            .get(var)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }

    fn parse_or<T: std::str::FromStr>(
        &self,
        var: &str,
        default: T,
        what: &str,
    ) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| config_error(var, format!("'{text}' is not {what}"))),
        }
    }

    fn millis_or(&self, var: &str, default: Duration) -> Result<Duration, ConfigError> {
        let ms: u64 = self.parse_or(
            var,
            default.as_millis() as u64,
            "a whole number of milliseconds",
        )?;
        Ok(Duration::from_millis(ms))
    }

    fn duration_or(&self, var: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(text) => parse_duration(text).map_err(|e| config_error(var, e.to_string())),
        }
    }

    /// A duration within `min..=max`. Every duration is bounded: zero
    /// where it makes no sense (a request timeout of 0 answered every
    /// request 408 while its ingest went on), and a maximum far beyond any
    /// real use, so that it cannot overflow the millisecond arithmetic it
    /// feeds (a huge `WEBHOOK_DISABLE_AFTER` wrapped negative and disabled
    /// every failing webhook at once).
    fn duration_between(
        &self,
        var: &str,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        within(var, self.duration_or(var, default)?, min, max)
    }

    /// A whole number of milliseconds within `min..=max` (see [`Settings::duration_between`]).
    fn millis_between(
        &self,
        var: &str,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        within(var, self.millis_or(var, default)?, min, max)
    }

    fn secret(&self, var: &str) -> Option<SecretString> {
        self.get(var).map(|s| SecretString(s.to_string()))
    }
}

/// The longest duration any setting takes.
const TEN_YEARS: Duration = Duration::from_secs(3650 * 86_400);
/// The longest wait between two attempts, and the longest rate-limit window.
const THIRTY_DAYS: Duration = Duration::from_secs(30 * 86_400);
const ONE_MS: Duration = Duration::from_millis(1);

/// `value` of `var` if it lies within `min..=max`.
fn within(
    var: &str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let shown = |d: Duration| format!("{} s", d.as_secs_f64());
    if value < min {
        return Err(config_error(
            var,
            format!("{} is too short: at least {}", shown(value), shown(min)),
        ));
    }
    if value > max {
        return Err(config_error(
            var,
            format!("{} is too long: at most {}", shown(value), shown(max)),
        ));
    }
    Ok(value)
}

impl Config {
    /// Builds and validates the configuration. `dev` relaxes what `--dev` relaxes;
    /// the secrets it may generate are filled in later by [`crate::devmode`].
    pub fn from_settings(settings: &Settings, dev: bool) -> Result<Config, ConfigError> {
        let default_host: IpAddr = if dev {
            IpAddr::from([127, 0, 0, 1])
        } else {
            IpAddr::from([0, 0, 0, 0])
        };
        let host = settings.parse_or("HOST", default_host, "an IP address")?;
        let port = settings.parse_or("PORT", 3005u16, "a port number (0-65535)")?;
        let (database_url, database_pool_size) = database(settings)?;
        let secrets = secrets(settings, dev)?;
        Ok(Config {
            dev,
            host,
            port,
            data_dir: settings
                .get("WEBHOOK_DATA_DIR")
                .map_or_else(|| PathBuf::from("./data"), PathBuf::from),
            database_url,
            database_pool_size,
            jwt: secrets.jwt,
            internal_secret: secrets.internal_secret,
            encryption_key: secrets.encryption_key,
            allowed_cidrs: list(settings, "WEBHOOK_ALLOWED_CIDRS")
                .map(|s| {
                    s.parse::<Cidr>()
                        .map_err(|e| config_error("WEBHOOK_ALLOWED_CIDRS", e.to_string()))
                })
                .collect::<Result<_, _>>()?,
            delivery: delivery_config(settings)?,
            api_rate_limit: rate_limit(
                settings,
                "RATE_LIMIT_MAX_REQUESTS",
                "RATE_LIMIT_WINDOW_MS",
                Duration::from_secs(3600),
            )?,
            internal_rate_limit: rate_limit(
                settings,
                "INTERNAL_RATE_LIMIT_MAX_REQUESTS",
                "INTERNAL_RATE_LIMIT_WINDOW_MS",
                Duration::from_secs(60),
            )?,
            auth_failure_limit: RateLimit {
                max_requests: settings.parse_or(
                    "AUTH_FAILURES_PER_MINUTE",
                    30,
                    "a whole number",
                )?,
                window: Duration::from_secs(60),
            },
            max_webhooks_per_user: settings.parse_or(
                "WEBHOOK_MAX_PER_USER",
                100,
                "a whole number",
            )?,
            secret_grace: settings.duration_between(
                "WEBHOOK_SECRET_GRACE",
                Duration::from_secs(24 * 3600),
                Duration::ZERO,
                TEN_YEARS,
            )?,
            log_retention: log_retention(settings)?,
            log_level: settings.get("LOG_LEVEL").unwrap_or("info").to_string(),
            log_format: log_format(settings, dev)?,
            allowed_origins: list(settings, "ALLOWED_ORIGINS")
                .map(String::from)
                .collect(),
            request_timeout: settings.duration_between(
                "HTTP_REQUEST_TIMEOUT",
                Duration::from_secs(30),
                Duration::from_secs(1),
                Duration::from_secs(3600),
            )?,
            portal: crate::portal::PortalSettings::from_settings(settings)?,
            egress: egress_config(settings)?,
        })
    }

    /// The configuration as `serve --print-config` shows it: secrets redacted.
    pub fn redacted(&self) -> serde_json::Value {
        let set = |present: bool| {
            if present {
                "[set, redacted]"
            } else {
                "[not set]"
            }
        };
        serde_json::json!({
            "dev": self.dev,
            "host": self.host.to_string(),
            "port": self.port,
            "store": if self.database_url.is_some() { "postgres" } else { "sqlite" },
            "dataDir": self.data_dir.display().to_string(),
            "databaseUrl": set(self.database_url.is_some()),
            "databasePoolSize": self.database_pool_size,
            "jwtSecret": set(self.jwt.secret.is_some()),
            "jwtPublicKey": set(self.jwt.public_key_pem.is_some()),
            "jwtLeewaySecs": self.jwt.leeway.as_secs(),
            "internalServiceSecret": set(self.internal_secret.is_some()),
            "encryptionKey": set(self.encryption_key.is_some()),
            "allowedCidrs": self.allowed_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "delivery": {
                "timeoutMs": self.delivery.timeout.as_millis() as u64,
                "maxEndpointTimeoutMs": self.delivery.max_endpoint_timeout.as_millis() as u64,
                "retrySchedule": self.delivery.schedule.to_string(),
                "maxAttempts": self.delivery.schedule.max_attempts(),
                "maxRetryAfterSecs": self.delivery.max_retry_after.as_secs(),
                "maxInFlight": self.delivery.max_in_flight,
                "maxInFlightPerWebhook": self.delivery.max_in_flight_per_webhook,
                "window": self.delivery.window,
                "windowPerWebhook": self.delivery.window_per_webhook,
                "disableAfterFailingForSecs": self.delivery.disable_after_failing_for.as_secs(),
                "disableAfterExhausted": self.delivery.disable_after_exhausted,
            },
            "apiRateLimit": {"maxRequests": self.api_rate_limit.max_requests, "windowMs": self.api_rate_limit.window.as_millis() as u64},
            "internalRateLimit": {"maxRequests": self.internal_rate_limit.max_requests, "windowMs": self.internal_rate_limit.window.as_millis() as u64},
            "authFailuresPerMinute": self.auth_failure_limit.max_requests,
            "maxWebhooksPerUser": self.max_webhooks_per_user,
            "secretGraceSecs": self.secret_grace.as_secs(),
            "logRetentionDays": self.log_retention.as_secs() / 86_400,
            "logLevel": self.log_level,
            "logFormat": match self.log_format { LogFormat::Json => "json", LogFormat::Pretty => "pretty" },
            "allowedOrigins": self.allowed_origins,
            "tlsRoots": self.egress.tls.roots.as_str(),
            "caFile": self.egress.ca_file.as_ref().map(|p| p.display().to_string()),
            "proxy": self.egress.proxy.as_ref().map(webhook_outbound::Proxy::redacted),
            "maxConnections": self.egress.max_connections,
        })
    }
}

/// The non-empty items of a comma-separated setting.
fn list<'a>(settings: &'a Settings, var: &str) -> impl Iterator<Item = &'a str> {
    settings
        .get(var)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// `DATABASE_URL` (when it names PostgreSQL) and `DATABASE_POOL_SIZE`.
fn database(settings: &Settings) -> Result<(Option<SecretString>, usize), ConfigError> {
    let url = match settings.get("DATABASE_URL") {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Some(SecretString(url.to_string()))
        }
        // The platform may point DATABASE_URL at other stores for other services;
        // only a PostgreSQL URL selects the PostgreSQL backend.
        _ => None,
    };
    let pool_size: usize =
        settings.parse_or("DATABASE_POOL_SIZE", 16, "a whole number of connections")?;
    if !(1..=1000).contains(&pool_size) {
        return Err(config_error(
            "DATABASE_POOL_SIZE",
            "must be between 1 and 1000",
        ));
    }
    Ok((url, pool_size))
}

/// The secrets a production run cannot do without.
struct Secrets {
    jwt: JwtConfig,
    internal_secret: Option<SecretString>,
    encryption_key: Option<EncryptionKey>,
}

/// Token verification, the internal callers' secret and the encryption key;
/// outside `--dev` each must be set.
fn secrets(settings: &Settings, dev: bool) -> Result<Secrets, ConfigError> {
    let public_key_pem = match (
        settings.get("JWT_PUBLIC_KEY"),
        settings.get("JWT_PUBLIC_KEY_FILE"),
    ) {
        (Some(pem), _) => Some(pem.replace("\\n", "\n")),
        (None, Some(path)) => Some(std::fs::read_to_string(path).map_err(|e| {
            config_error("JWT_PUBLIC_KEY_FILE", format!("cannot read {path}: {e}"))
        })?),
        (None, None) => None,
    };
    let jwt = JwtConfig {
        secret: settings.secret("JWT_SECRET"),
        public_key_pem,
        leeway: settings.duration_between(
            "JWT_LEEWAY",
            Duration::from_secs(30),
            Duration::ZERO,
            Duration::from_secs(86_400),
        )?,
    };
    if let Some(secret) = &jwt.secret
        && secret.expose().len() < 16
        && !dev
    {
        return Err(config_error("JWT_SECRET", "must be at least 16 characters"));
    }
    let internal_secret = settings.secret("INTERNAL_SERVICE_SECRET");
    if !dev {
        if jwt.secret.is_none() && jwt.public_key_pem.is_none() {
            return Err(config_error(
                "JWT_SECRET",
                "is not set; it is required to verify users' tokens (or set JWT_PUBLIC_KEY for RS256/ES256; use --dev for local development)",
            ));
        }
        if internal_secret.is_none() {
            return Err(config_error(
                "INTERNAL_SERVICE_SECRET",
                "is not set; it is required to authenticate the platform's services on /internal (use --dev for local development)",
            ));
        }
    }
    let encryption_key = match settings.get("WEBHOOK_ENCRYPTION_KEY") {
        Some(text) => Some(EncryptionKey::new(
            parse_key(text).map_err(|m| config_error("WEBHOOK_ENCRYPTION_KEY", m))?,
        )),
        None if dev => None,
        None => {
            return Err(config_error(
                "WEBHOOK_ENCRYPTION_KEY",
                "is not set; it encrypts webhook secrets at rest (32 bytes, base64 or hex: `openssl rand -base64 32`)",
            ));
        }
    };
    Ok(Secrets {
        jwt,
        internal_secret,
        encryption_key,
    })
}

/// A rate limit of `max_var` requests per `window_var` milliseconds.
fn rate_limit(
    settings: &Settings,
    max_var: &str,
    window_var: &str,
    default_window: Duration,
) -> Result<RateLimit, ConfigError> {
    Ok(RateLimit {
        max_requests: settings.parse_or(max_var, 1000, "a whole number")?,
        window: settings.millis_between(window_var, default_window, ONE_MS, THIRTY_DAYS)?,
    })
}

/// `LOG_FORMAT`: JSON lines by default, readable lines in `--dev`.
fn log_format(settings: &Settings, dev: bool) -> Result<LogFormat, ConfigError> {
    match settings
        .get("LOG_FORMAT")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None if dev => Ok(LogFormat::Pretty),
        None | Some("json") => Ok(LogFormat::Json),
        Some("pretty" | "text" | "plain") => Ok(LogFormat::Pretty),
        Some(other) => Err(config_error(
            "LOG_FORMAT",
            format!("'{other}' is not json or pretty"),
        )),
    }
}

/// `WEBHOOK_LOG_RETENTION_DAYS`, at least one day.
fn log_retention(settings: &Settings) -> Result<Duration, ConfigError> {
    let days: u32 =
        settings.parse_or("WEBHOOK_LOG_RETENTION_DAYS", 30, "a whole number of days")?;
    if days == 0 {
        return Err(config_error(
            "WEBHOOK_LOG_RETENTION_DAYS",
            "must be at least 1",
        ));
    }
    Ok(Duration::from_secs(u64::from(days) * 86_400))
}

fn delivery_config(settings: &Settings) -> Result<DeliveryConfig, ConfigError> {
    let timeout = settings.millis_between(
        "WEBHOOK_TIMEOUT",
        Duration::from_secs(10),
        ONE_MS,
        Duration::from_secs(3600),
    )?;
    let max_endpoint_timeout = settings.millis_between(
        "WEBHOOK_MAX_ENDPOINT_TIMEOUT",
        Duration::from_secs(60),
        ONE_MS,
        Duration::from_secs(3600),
    )?;
    let mut schedule = match settings.get("WEBHOOK_RETRY_SCHEDULE") {
        Some(text) => RetrySchedule::parse(text)
            .map_err(|e| config_error("WEBHOOK_RETRY_SCHEDULE", e.to_string()))?,
        None => match settings.get("WEBHOOK_RETRY_DELAY") {
            // The earlier service's single retry delay becomes the first wait of
            // the default schedule; the later, longer waits stay.
            Some(_) => {
                let first = settings.millis_between(
                    "WEBHOOK_RETRY_DELAY",
                    Duration::from_secs(5),
                    Duration::ZERO,
                    THIRTY_DAYS,
                )?;
                let mut delays = RetrySchedule::default().delays().to_vec();
                if let Some(d) = delays.first_mut() {
                    *d = first;
                }
                let text = delays
                    .iter()
                    .map(|d| format!("{}ms", d.as_millis()))
                    .collect::<Vec<_>>()
                    .join(",");
                RetrySchedule::parse(&text)
                    .map_err(|e| config_error("WEBHOOK_RETRY_DELAY", e.to_string()))?
            }
            None => RetrySchedule::default(),
        },
    };
    if let Some(long) = schedule.delays().iter().find(|d| **d > THIRTY_DAYS) {
        within("WEBHOOK_RETRY_SCHEDULE", *long, Duration::ZERO, THIRTY_DAYS)?;
    }
    if let Some(text) = settings.get("WEBHOOK_RETRY_JITTER") {
        let jitter: f64 = text
            .parse()
            .ok()
            .filter(|j: &f64| (0.0..1.0).contains(j))
            .ok_or_else(|| {
                config_error(
                    "WEBHOOK_RETRY_JITTER",
                    format!("'{text}' is not a fraction in [0, 1)"),
                )
            })?;
        schedule = schedule.with_jitter(jitter);
    }
    if let Some(text) = settings.get("WEBHOOK_MAX_RETRIES") {
        let n: u32 = text.parse().map_err(|_| {
            config_error(
                "WEBHOOK_MAX_RETRIES",
                format!("'{text}' is not a whole number"),
            )
        })?;
        schedule = schedule.with_max_retries(n);
    }
    let positive = |var: &str, default: usize| -> Result<usize, ConfigError> {
        let n: usize = settings.parse_or(var, default, "a whole number")?;
        if n == 0 {
            return Err(config_error(var, "must be at least 1"));
        }
        Ok(n)
    };
    let max_in_flight = positive("WEBHOOK_MAX_IN_FLIGHT", 1024)?;
    let max_in_flight_per_webhook = positive("WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT", 128)?;
    let window = positive("WEBHOOK_MEMORY_WINDOW", 50_000)?;
    let window_per_webhook = positive("WEBHOOK_MEMORY_WINDOW_PER_ENDPOINT", 10_000)?;
    Ok(DeliveryConfig {
        timeout,
        max_endpoint_timeout,
        schedule,
        max_retry_after: settings.duration_between(
            "WEBHOOK_MAX_RETRY_AFTER",
            Duration::from_secs(3600),
            Duration::ZERO,
            TEN_YEARS,
        )?,
        max_in_flight,
        max_in_flight_per_webhook,
        window,
        window_per_webhook,
        disable_after_failing_for: settings.duration_between(
            "WEBHOOK_DISABLE_AFTER",
            Duration::from_secs(5 * 86_400),
            Duration::from_secs(1),
            TEN_YEARS,
        )?,
        disable_after_exhausted: settings.parse_or(
            "WEBHOOK_DISABLE_AFTER_EXHAUSTED",
            50,
            "a whole number",
        )?,
        max_response_body: 64 * 1024,
    })
}

/// Parses a 32-byte key written as base64 (standard or URL-safe) or 64 hex digits.
pub fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| "is not valid hex".to_string())?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(text))
            .map_err(|_| "must be 32 bytes written as base64 or 64 hex digits".to_string())?
    };
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("must decode to exactly 32 bytes (got {})", bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prod() -> Vec<(&'static str, &'static str)> {
        vec![
            ("JWT_SECRET", "0123456789abcdef0123"),
            ("INTERNAL_SERVICE_SECRET", "internal-secret-value"),
            (
                "WEBHOOK_ENCRYPTION_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
        ]
    }

    #[test]
    fn production_requires_named_secrets() {
        for missing in [
            "JWT_SECRET",
            "INTERNAL_SERVICE_SECRET",
            "WEBHOOK_ENCRYPTION_KEY",
        ] {
            let pairs: Vec<_> = prod().into_iter().filter(|(k, _)| *k != missing).collect();
            let err = Config::from_settings(&Settings::from_pairs(pairs), false).unwrap_err();
            assert_eq!(err.var, missing);
            assert!(err.to_string().contains(missing));
        }
        assert!(Config::from_settings(&Settings::from_pairs(prod()), false).is_ok());
        assert!(Config::from_settings(&Settings::default(), true).is_ok());
    }

    #[test]
    fn platform_variables_are_honoured() {
        let mut pairs = prod();
        pairs.extend([
            ("PORT", "4000"),
            ("WEBHOOK_TIMEOUT", "2500"),
            ("WEBHOOK_MAX_RETRIES", "3"),
            ("RATE_LIMIT_MAX_REQUESTS", "5"),
            ("RATE_LIMIT_WINDOW_MS", "1000"),
            ("ALLOWED_ORIGINS", "https://a.example, https://b.example"),
            ("WEBHOOK_ALLOWED_CIDRS", "127.0.0.0/8,::1/128"),
        ]);
        let config = Config::from_settings(&Settings::from_pairs(pairs), false).unwrap();
        assert_eq!(config.port, 4000);
        assert_eq!(config.delivery.timeout, Duration::from_millis(2500));
        assert_eq!(config.delivery.schedule.max_attempts(), 4);
        assert_eq!(config.api_rate_limit.max_requests, 5);
        assert_eq!(config.allowed_origins.len(), 2);
        assert_eq!(config.allowed_cidrs.len(), 2);
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (var, value) in [
            ("PORT", "http"),
            ("WEBHOOK_TIMEOUT", "ten"),
            ("WEBHOOK_RETRY_SCHEDULE", "5s,,oops"),
            ("WEBHOOK_ALLOWED_CIDRS", "10.0.0.0/99"),
            ("LOG_FORMAT", "xml"),
            ("WEBHOOK_ENCRYPTION_KEY", "short"),
            ("HTTP_REQUEST_TIMEOUT", "0"),
            ("WEBHOOK_DISABLE_AFTER", "0s"),
            ("WEBHOOK_DISABLE_AFTER", "18446744073709551615ms"),
            ("WEBHOOK_SECRET_GRACE", "100000d"),
            ("WEBHOOK_TIMEOUT", "0"),
            ("RATE_LIMIT_WINDOW_MS", "18446744073709551615"),
            ("WEBHOOK_RETRY_SCHEDULE", "5s,400d"),
        ] {
            let mut pairs = prod();
            pairs.retain(|(k, _)| *k != var);
            pairs.push((var, value));
            let err = Config::from_settings(&Settings::from_pairs(pairs), false).unwrap_err();
            assert_eq!(err.var, var, "{err}");
        }
    }

    #[test]
    fn durations_are_bounded() {
        let with = |var: &'static str, value: &'static str| {
            let mut pairs = prod();
            pairs.push((var, value));
            Config::from_settings(&Settings::from_pairs(pairs), false)
        };
        let err = with("WEBHOOK_DISABLE_AFTER", "0s").unwrap_err();
        assert!(
            err.to_string().contains("0 s is too short: at least 1 s"),
            "{err}"
        );
        let err = with("HTTP_REQUEST_TIMEOUT", "2h").unwrap_err();
        assert!(
            err.to_string().contains("too long: at most 3600 s"),
            "{err}"
        );
        assert!(
            with("WEBHOOK_SECRET_GRACE", "0s").is_ok(),
            "no grace is allowed"
        );
        assert!(with("WEBHOOK_DISABLE_AFTER", "3650d").is_ok());
    }

    #[test]
    fn redacted_config_hides_secrets() {
        let config = Config::from_settings(&Settings::from_pairs(prod()), false).unwrap();
        let text = config.redacted().to_string();
        assert!(!text.contains("0123456789abcdef0123"));
        assert!(!text.contains("internal-secret-value"));
        assert!(text.contains("[set, redacted]"));
        assert!(!format!("{config:?}").contains("internal-secret-value"));
    }

    #[test]
    fn the_environment_wins_over_the_file_whose_keys_are_any_case() {
        let dir = std::env::temp_dir().join(format!("webhook-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("layers.toml");
        std::fs::write(
            &path,
            "port = 4000\nWebhook_Timeout = 2500\nallowed_origins = [\"https://a.example\", \"https://b.example\"]\n",
        )
        .unwrap();
        let env = prod()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("port".to_string(), "4001".to_string())]);
        let settings = Settings::layered(Some(&path), env).unwrap();
        let config = Config::from_settings(&settings, false).unwrap();
        assert_eq!(config.port, 4001);
        assert_eq!(config.delivery.timeout, Duration::from_millis(2500));
        assert_eq!(
            config.allowed_origins,
            ["https://a.example", "https://b.example"]
        );

        std::fs::write(&path, "webhook_timeout = \"ten\"\n").unwrap();
        let settings = Settings::layered(
            Some(&path),
            prod().into_iter().map(|(k, v)| (k.into(), v.into())),
        )
        .unwrap();
        let err = Config::from_settings(&settings, false).unwrap_err();
        assert_eq!(err.var, "WEBHOOK_TIMEOUT", "{err}");
        assert!(err.message.contains("'ten'"), "{err}");

        std::fs::write(&path, "[delivery]\ntimeout = 1\n").unwrap();
        let err = Settings::layered(Some(&path), []).unwrap_err();
        assert_eq!(err.var, "DELIVERY", "{err}");
        std::fs::write(&path, "port = \n").unwrap();
        let err = Settings::layered(Some(&path), []).unwrap_err();
        assert_eq!(err.var, "WEBHOOK_CONFIG", "{err}");
        let err = Settings::layered(Some(&dir.join("missing.toml")), []).unwrap_err();
        assert_eq!(err.var, "WEBHOOK_CONFIG", "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keys_parse_from_hex_and_base64() {
        assert_eq!(parse_key(&"ab".repeat(32)).unwrap(), [0xab; 32]);
        assert!(parse_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").is_ok());
        assert!(parse_key("AAAA").unwrap_err().contains("32 bytes"));
    }

    #[test]
    fn egress_settings_name_their_variable() {
        let with = |extra: Vec<(&'static str, String)>| {
            let mut pairs: Vec<(&str, String)> = prod()
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect();
            pairs.extend(extra);
            Config::from_settings(&Settings::from_pairs(pairs), false)
        };
        let config = with(vec![]).unwrap();
        assert_eq!(
            config.egress.tls.roots,
            webhook_outbound::TrustRoots::Bundled
        );
        let err = with(vec![("WEBHOOK_TLS_ROOTS", "mozilla".into())]).unwrap_err();
        assert_eq!(err.var, "WEBHOOK_TLS_ROOTS", "{err}");
        let err = with(vec![("WEBHOOK_PROXY", "ftp://u:hidden@proxy:21".into())]).unwrap_err();
        assert_eq!(err.var, "WEBHOOK_PROXY", "{err}");
        assert!(!err.to_string().contains("hidden"), "{err}");
        let err = with(vec![
            ("WEBHOOK_PROXY", "http://proxy:3128".into()),
            ("WEBHOOK_NO_PROXY", "not a host".into()),
        ])
        .unwrap_err();
        assert_eq!(err.var, "WEBHOOK_NO_PROXY", "{err}");
        let config = with(vec![(
            "WEBHOOK_PROXY",
            "socks5://u:hidden@proxy:1080".into(),
        )])
        .unwrap();
        assert!(!config.redacted().to_string().contains("hidden"));
        assert_eq!(config.egress.max_connections, 1024);
        assert_eq!(
            with(vec![("WEBHOOK_MAX_CONNECTIONS", "200".into())])
                .unwrap()
                .egress
                .max_connections,
            200
        );
        for bad in ["0", "many", "1000001"] {
            let err = with(vec![("WEBHOOK_MAX_CONNECTIONS", bad.into())]).unwrap_err();
            assert_eq!(err.var, "WEBHOOK_MAX_CONNECTIONS", "{err}");
        }
        let err = with(vec![("WEBHOOK_CA_FILE", "/nonexistent/ca.pem".into())]).unwrap_err();
        assert_eq!(err.var, "WEBHOOK_CA_FILE", "{err}");
        let dir = std::env::temp_dir().join(format!("ca-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("not-a-ca.pem");
        std::fs::write(&file, "no certificate here").unwrap();
        let err = with(vec![("WEBHOOK_CA_FILE", file.display().to_string())]).unwrap_err();
        assert_eq!(err.var, "WEBHOOK_CA_FILE", "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
