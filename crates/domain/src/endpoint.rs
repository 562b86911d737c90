//! How a delivery reaches an endpoint beyond its URL: custom headers and
//! endpoint authentication (Basic, bearer, a client certificate).
//!
//! Every value here may be a credential (an API key in `X-Api-Key`, a
//! password, a token), so none of them has `Display`, `Debug` is masked,
//! and the only ways to the raw values are [`EndpointOptions::to_stored`]
//! (sealed by the service before the store sees it) and the header lines
//! a delivery sends ([`EndpointOptions::request_headers`]).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::asymmetric::{Ed25519Signing, StoredSigning};

/// Most custom headers a webhook may have.
pub const MAX_CUSTOM_HEADERS: usize = 32;
/// Longest custom header name, in bytes.
pub const MAX_HEADER_NAME_LEN: usize = 128;
/// Longest custom header value, and longest credential, in bytes.
pub const MAX_HEADER_VALUE_LEN: usize = 2048;
/// What reads and delivery logs show instead of a credential.
pub const MASK: &str = "********";
/// Longest PEM text (certificate chain or private key), in bytes.
pub const MAX_PEM_LEN: usize = 16 * 1024;

/// Headers the service writes itself; exact names, compared case-insensitively.
const RESERVED_NAMES: [&str; 6] = [
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "transfer-encoding",
    "connection",
];
/// Prefixes of the signature and id headers the service writes.
const RESERVED_PREFIXES: [&str; 2] = ["x-webhook-", "webhook-"];

/// Why custom headers or an authentication setting are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEndpointOption {
    /// More than [`MAX_CUSTOM_HEADERS`] headers.
    #[error("headers has {count} entries; at most {MAX_CUSTOM_HEADERS} are allowed")]
    TooManyHeaders {
        /// Entries given.
        count: usize,
    },
    /// A name that is not an HTTP token, or too long.
    #[error(
        "header name {0:?} is not valid: use 1-{MAX_HEADER_NAME_LEN} letters, digits or !#$%&'*+-.^_`|~"
    )]
    HeaderName(String),
    /// A name the service writes itself.
    #[error(
        "header {0} is set by the service itself and cannot be replaced (X-Webhook-*, webhook-*, Content-Type, Content-Length, Host, User-Agent, Transfer-Encoding, Connection)"
    )]
    ReservedHeader(String),
    /// The same name twice, in any case.
    #[error("header {0} is given twice (names are case-insensitive)")]
    DuplicateHeader(String),
    /// `Authorization` as a custom header beside `auth`.
    #[error("header Authorization cannot be set while auth is set; use one or the other")]
    AuthorizationTwice,
    /// A value with a control character, or too long.
    #[error(
        "value of header {0} is not valid: at most {MAX_HEADER_VALUE_LEN} bytes, no control characters"
    )]
    HeaderValue(String),
    /// An `auth` object without a known `type`.
    #[error("auth.type must be \"basic\", \"bearer\", \"oauth2\" or \"mtls\"")]
    AuthType,
    /// A field of `auth` missing, not a string, or malformed.
    #[error("auth.{field} {problem}")]
    AuthField {
        /// The field, such as `password`.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// A webhook's custom headers, valid by construction: tokens for names, no
/// control characters in values, none the service writes itself, no
/// duplicate; sent on every attempt in the order given.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CustomHeaders(Vec<(String, String)>);

impl CustomHeaders {
    /// Checks a list of `(name, value)` pairs.
    pub fn parse(pairs: Vec<(String, String)>) -> Result<Self, InvalidEndpointOption> {
        if pairs.len() > MAX_CUSTOM_HEADERS {
            return Err(InvalidEndpointOption::TooManyHeaders { count: pairs.len() });
        }
        for (i, (name, value)) in pairs.iter().enumerate() {
            if name.is_empty()
                || name.len() > MAX_HEADER_NAME_LEN
                || !name.bytes().all(is_token_byte)
            {
                return Err(InvalidEndpointOption::HeaderName(name.clone()));
            }
            let lower = name.to_ascii_lowercase();
            if RESERVED_NAMES.contains(&lower.as_str())
                || RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p))
            {
                return Err(InvalidEndpointOption::ReservedHeader(name.clone()));
            }
            if pairs[..i]
                .iter()
                .any(|(earlier, _)| earlier.eq_ignore_ascii_case(name))
            {
                return Err(InvalidEndpointOption::DuplicateHeader(name.clone()));
            }
            if !valid_value(value) {
                return Err(InvalidEndpointOption::HeaderValue(name.clone()));
            }
        }
        Ok(CustomHeaders(pairs))
    }

    /// No headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The header names, in order (names are not secret).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(name, _)| name.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.names().any(|n| n.eq_ignore_ascii_case(name))
    }
}

impl fmt::Debug for CustomHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.names().map(|n| (n, MASK)))
            .finish()
    }
}

/// How the service authenticates to an endpoint.
#[derive(Clone, PartialEq, Eq)]
pub enum EndpointAuth {
    /// HTTP Basic (RFC 7617).
    Basic {
        /// User name (no `:`); shown in reads.
        username: String,
        /// Password; never shown.
        password: String,
    },
    /// `Authorization: Bearer <token>` (RFC 6750).
    Bearer {
        /// The token; never shown.
        token: String,
    },
    /// `Authorization: Bearer <token>` with a token obtained by the OAuth2
    /// client-credentials grant (RFC 6749 §4.4) from `token_url`.
    OAuth2 {
        /// The token endpoint; checked against the address policy like the
        /// webhook's URL.
        token_url: String,
        /// Client id; shown in reads.
        client_id: String,
        /// Client secret; never shown.
        client_secret: String,
        /// `scope` parameter, if any.
        scope: Option<String>,
        /// `audience` parameter, if any (Auth0 and others).
        audience: Option<String>,
    },
    /// A client certificate presented on the TLS handshake (mutual TLS).
    Mtls {
        /// PEM certificate chain, leaf first; shown in reads (it is public).
        certificate: String,
        /// PEM private key; never shown.
        private_key: String,
    },
}

impl EndpointAuth {
    /// Checks Basic credentials: a user name without `:` or control
    /// characters, a password without control characters.
    pub fn basic(username: String, password: String) -> Result<Self, InvalidEndpointOption> {
        if username.is_empty() || username.contains(':') || !valid_value(&username) {
            return Err(InvalidEndpointOption::AuthField {
                field: "username",
                problem: "must be 1-2048 bytes without ':' or control characters",
            });
        }
        if password.is_empty() || !valid_value(&password) {
            return Err(InvalidEndpointOption::AuthField {
                field: "password",
                problem: "must be 1-2048 bytes without control characters",
            });
        }
        Ok(EndpointAuth::Basic { username, password })
    }

    /// Checks a bearer token: visible ASCII without spaces.
    pub fn bearer(token: String) -> Result<Self, InvalidEndpointOption> {
        if token.is_empty()
            || token.len() > MAX_HEADER_VALUE_LEN
            || !token.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(InvalidEndpointOption::AuthField {
                field: "token",
                problem: "must be 1-2048 visible ASCII characters without spaces",
            });
        }
        Ok(EndpointAuth::Bearer { token })
    }

    /// Checks OAuth2 client credentials (the token URL is checked by the
    /// caller, which knows the address policy).
    pub fn oauth2(
        token_url: String,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
        audience: Option<String>,
    ) -> Result<Self, InvalidEndpointOption> {
        let text = |v: &str| !v.is_empty() && valid_value(v);
        if token_url.is_empty() || token_url.len() > MAX_HEADER_VALUE_LEN {
            return Err(InvalidEndpointOption::AuthField {
                field: "tokenUrl",
                problem: "must be an https URL of at most 2048 characters",
            });
        }
        if !text(&client_id) {
            return Err(InvalidEndpointOption::AuthField {
                field: "clientId",
                problem: "must be 1-2048 bytes without control characters",
            });
        }
        if !text(&client_secret) {
            return Err(InvalidEndpointOption::AuthField {
                field: "clientSecret",
                problem: "must be 1-2048 bytes without control characters",
            });
        }
        for (field, value) in [("scope", &scope), ("audience", &audience)] {
            if value.as_deref().is_some_and(|v| !text(v)) {
                return Err(InvalidEndpointOption::AuthField {
                    field,
                    problem: "must be 1-2048 bytes without control characters, or absent",
                });
            }
        }
        Ok(EndpointAuth::OAuth2 {
            token_url,
            client_id,
            client_secret,
            scope,
            audience,
        })
    }

    /// Checks the shape of a client certificate and key: PEM blocks of at
    /// most [`MAX_PEM_LEN`] bytes. (Whether TLS can use them is checked by
    /// the HTTP client, which owns the TLS library.)
    pub fn mtls(certificate: String, private_key: String) -> Result<Self, InvalidEndpointOption> {
        if certificate.len() > MAX_PEM_LEN || !certificate.contains("-----BEGIN CERTIFICATE-----") {
            return Err(InvalidEndpointOption::AuthField {
                field: "certificate",
                problem: "must be a PEM certificate chain (-----BEGIN CERTIFICATE-----) of at most 16 KiB",
            });
        }
        if private_key.len() > MAX_PEM_LEN || !private_key.contains("PRIVATE KEY-----") {
            return Err(InvalidEndpointOption::AuthField {
                field: "privateKey",
                problem: "must be a PEM private key (PKCS#8, PKCS#1 or SEC1) of at most 16 KiB",
            });
        }
        Ok(EndpointAuth::Mtls {
            certificate,
            private_key,
        })
    }

    /// `basic`, `bearer` or `mtls`.
    pub fn type_name(&self) -> &'static str {
        match self {
            EndpointAuth::Basic { .. } => "basic",
            EndpointAuth::Bearer { .. } => "bearer",
            EndpointAuth::OAuth2 { .. } => "oauth2",
            EndpointAuth::Mtls { .. } => "mtls",
        }
    }

    /// The `Authorization` header value sent to the endpoint, if this
    /// authentication sends a fixed one (OAuth2's changes with each token).
    pub fn authorization(&self) -> Option<String> {
        match self {
            EndpointAuth::Basic { username, password } => Some(format!(
                "Basic {}",
                BASE64.encode(format!("{username}:{password}"))
            )),
            EndpointAuth::Bearer { token } => Some(format!("Bearer {token}")),
            EndpointAuth::OAuth2 { .. } | EndpointAuth::Mtls { .. } => None,
        }
    }

    /// The `Authorization` header value as delivery logs show it.
    pub fn masked_authorization(&self) -> Option<String> {
        match self {
            EndpointAuth::Basic { .. } => Some(format!("Basic {MASK}")),
            EndpointAuth::Bearer { .. } | EndpointAuth::OAuth2 { .. } => {
                Some(format!("Bearer {MASK}"))
            }
            EndpointAuth::Mtls { .. } => None,
        }
    }
}

impl fmt::Debug for EndpointAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &MASK)
                .finish(),
            EndpointAuth::Bearer { .. } => f.debug_struct("Bearer").field("token", &MASK).finish(),
            EndpointAuth::OAuth2 {
                token_url,
                client_id,
                ..
            } => f
                .debug_struct("OAuth2")
                .field("token_url", token_url)
                .field("client_id", client_id)
                .field("client_secret", &MASK)
                .finish(),
            EndpointAuth::Mtls { .. } => {
                f.debug_struct("Mtls").field("private_key", &MASK).finish()
            }
        }
    }
}

/// Everything beyond the URL that a delivery to one endpoint carries.
/// The default (no headers, no auth) costs a delivery nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointOptions {
    headers: CustomHeaders,
    auth: Option<EndpointAuth>,
    /// `Some`: `webhook-signature` carries Ed25519 `v1a` signatures
    /// instead of HMAC `v1` ones.
    signing: Option<Ed25519Signing>,
}

/// Stored form (sealed by the service before it reaches the store).
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<StoredAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ed25519: Option<StoredSigning>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum StoredAuth {
    Basic {
        username: String,
        password: String,
    },
    Bearer {
        token: String,
    },
    #[serde(rename = "oauth2")]
    OAuth2 {
        token_url: String,
        client_id: String,
        client_secret: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
    },
    Mtls {
        certificate: String,
        private_key: String,
    },
}

/// A stored value that does not read back as endpoint options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored endpoint options cannot be read: {0}")]
pub struct CorruptEndpointOptions(String);

impl EndpointOptions {
    /// Combines headers and auth; refuses an `Authorization` header beside `auth`.
    pub fn new(
        headers: CustomHeaders,
        auth: Option<EndpointAuth>,
    ) -> Result<Self, InvalidEndpointOption> {
        if auth
            .as_ref()
            .is_some_and(|a| a.masked_authorization().is_some())
            && headers.has("authorization")
        {
            return Err(InvalidEndpointOption::AuthorizationTwice);
        }
        Ok(EndpointOptions {
            headers,
            auth,
            signing: None,
        })
    }

    /// The same options, signing with `signing` (`None`: HMAC).
    pub fn with_signing(mut self, signing: Option<Ed25519Signing>) -> Self {
        self.signing = signing;
        self
    }

    /// The Ed25519 keys, when the webhook signs with them.
    pub fn signing(&self) -> Option<&Ed25519Signing> {
        self.signing.as_ref()
    }

    /// No headers and no auth: nothing to store or send.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.auth.is_none() && self.signing.is_none()
    }

    /// The custom headers.
    pub fn headers(&self) -> &CustomHeaders {
        &self.headers
    }

    /// The authentication, if any.
    pub fn auth(&self) -> Option<&EndpointAuth> {
        self.auth.as_ref()
    }

    /// The lines every attempt adds, with raw values: custom headers, then
    /// `Authorization`.
    pub fn request_headers(&self) -> Vec<(String, String)> {
        let mut lines = self.headers.0.clone();
        if let Some(value) = self.auth.as_ref().and_then(EndpointAuth::authorization) {
            lines.push(("authorization".to_string(), value));
        }
        lines
    }

    /// The same lines as delivery logs keep them: names, masked values.
    pub fn logged_headers(&self) -> Vec<(String, String)> {
        let mut lines: Vec<(String, String)> = self
            .headers
            .names()
            .map(|n| (n.to_ascii_lowercase(), MASK.to_string()))
            .collect();
        if let Some(value) = self
            .auth
            .as_ref()
            .and_then(EndpointAuth::masked_authorization)
        {
            lines.push(("authorization".to_string(), value));
        }
        lines
    }

    /// The JSON text to seal and store (raw values: seal it before storing).
    pub fn to_stored(&self) -> String {
        let stored = Stored {
            headers: self.headers.0.clone(),
            auth: self.auth.as_ref().map(|a| match a {
                EndpointAuth::Basic { username, password } => StoredAuth::Basic {
                    username: username.clone(),
                    password: password.clone(),
                },
                EndpointAuth::Bearer { token } => StoredAuth::Bearer {
                    token: token.clone(),
                },
                EndpointAuth::OAuth2 {
                    token_url,
                    client_id,
                    client_secret,
                    scope,
                    audience,
                } => StoredAuth::OAuth2 {
                    token_url: token_url.clone(),
                    client_id: client_id.clone(),
                    client_secret: client_secret.clone(),
                    scope: scope.clone(),
                    audience: audience.clone(),
                },
                EndpointAuth::Mtls {
                    certificate,
                    private_key,
                } => StoredAuth::Mtls {
                    certificate: certificate.clone(),
                    private_key: private_key.clone(),
                },
            }),
            ed25519: self.signing.as_ref().map(Ed25519Signing::stored),
        };
        // Strings and vectors of strings always serialise.
        serde_json::to_string(&stored).unwrap_or_default()
    }

    /// Reads back what [`EndpointOptions::to_stored`] wrote, checking it again.
    pub fn from_stored(text: &str) -> Result<Self, CorruptEndpointOptions> {
        let stored: Stored =
            serde_json::from_str(text).map_err(|e| CorruptEndpointOptions(e.to_string()))?;
        let headers = CustomHeaders::parse(stored.headers)
            .map_err(|e| CorruptEndpointOptions(e.to_string()))?;
        let auth = match stored.auth {
            None => None,
            Some(StoredAuth::Basic { username, password }) => Some(
                EndpointAuth::basic(username, password)
                    .map_err(|e| CorruptEndpointOptions(e.to_string()))?,
            ),
            Some(StoredAuth::Bearer { token }) => Some(
                EndpointAuth::bearer(token).map_err(|e| CorruptEndpointOptions(e.to_string()))?,
            ),
            Some(StoredAuth::OAuth2 {
                token_url,
                client_id,
                client_secret,
                scope,
                audience,
            }) => Some(
                EndpointAuth::oauth2(token_url, client_id, client_secret, scope, audience)
                    .map_err(|e| CorruptEndpointOptions(e.to_string()))?,
            ),
            Some(StoredAuth::Mtls {
                certificate,
                private_key,
            }) => Some(
                EndpointAuth::mtls(certificate, private_key)
                    .map_err(|e| CorruptEndpointOptions(e.to_string()))?,
            ),
        };
        let signing = stored
            .ed25519
            .map(Ed25519Signing::from_stored)
            .transpose()
            .map_err(CorruptEndpointOptions)?;
        EndpointOptions::new(headers, auth)
            .map(|options| options.with_signing(signing))
            .map_err(|e| CorruptEndpointOptions(e.to_string()))
    }
}

/// A value with no control character (tab included), within the length bound.
fn valid_value(value: &str) -> bool {
    value.len() <= MAX_HEADER_VALUE_LEN && !value.chars().any(char::is_control)
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn headers_are_checked() {
        assert!(CustomHeaders::parse(pairs(&[("X-Api-Key", "k"), ("X-Tenant", "t 1")])).is_ok());
        for reserved in [
            "X-Webhook-Signature",
            "x-webhook-anything",
            "Webhook-Id",
            "content-type",
            "Content-Length",
            "HOST",
            "User-Agent",
            "Transfer-Encoding",
            "Connection",
        ] {
            assert_eq!(
                CustomHeaders::parse(pairs(&[(reserved, "x")])),
                Err(InvalidEndpointOption::ReservedHeader(reserved.into())),
                "{reserved}"
            );
        }
        for bad in ["", "X Api", "x:y", "é", &"a".repeat(129)] {
            assert!(
                matches!(
                    CustomHeaders::parse(pairs(&[(bad, "x")])),
                    Err(InvalidEndpointOption::HeaderName(_))
                ),
                "{bad}"
            );
        }
        for bad in ["a\r\nx-evil: 1", "nul\0", "tab\t", &"v".repeat(2049)] {
            assert_eq!(
                CustomHeaders::parse(pairs(&[("X-A", bad)])),
                Err(InvalidEndpointOption::HeaderValue("X-A".into()))
            );
        }
        assert_eq!(
            CustomHeaders::parse(pairs(&[("X-A", "1"), ("x-a", "2")])),
            Err(InvalidEndpointOption::DuplicateHeader("x-a".into()))
        );
        let many: Vec<_> = (0..33).map(|i| (format!("X-{i}"), "v".into())).collect();
        assert_eq!(
            CustomHeaders::parse(many),
            Err(InvalidEndpointOption::TooManyHeaders { count: 33 })
        );
    }

    #[test]
    fn auth_is_checked_and_encoded() {
        let basic = EndpointAuth::basic("alice".into(), "s3cr3t pass".into()).unwrap();
        assert_eq!(
            basic.authorization().as_deref(),
            Some("Basic YWxpY2U6czNjcjN0IHBhc3M=")
        );
        assert!(EndpointAuth::basic("a:b".into(), "p".into()).is_err());
        assert!(EndpointAuth::basic("a".into(), String::new()).is_err());
        assert!(EndpointAuth::basic("a".into(), "p\n".into()).is_err());
        let bearer = EndpointAuth::bearer("tok.en-1".into()).unwrap();
        assert_eq!(bearer.authorization().as_deref(), Some("Bearer tok.en-1"));
        let mtls = EndpointAuth::mtls(
            "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----".into(),
            "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----".into(),
        )
        .unwrap();
        assert_eq!(mtls.authorization(), None);
        assert!(!format!("{mtls:?}").contains("BEGIN PRIVATE"));
        assert!(EndpointAuth::mtls("x".into(), "y".into()).is_err());
        assert!(EndpointAuth::bearer("two words".into()).is_err());
        let with_header = CustomHeaders::parse(pairs(&[("Authorization", "x")])).unwrap();
        assert_eq!(
            EndpointOptions::new(with_header.clone(), Some(bearer)),
            Err(InvalidEndpointOption::AuthorizationTwice)
        );
        assert!(EndpointOptions::new(with_header, None).is_ok());
    }

    #[test]
    fn debug_and_logs_never_show_a_credential() {
        let options = EndpointOptions::new(
            CustomHeaders::parse(pairs(&[("X-Api-Key", "key-value-1")])).unwrap(),
            Some(EndpointAuth::basic("alice".into(), "pass-value-2".into()).unwrap()),
        )
        .unwrap();
        let shown = format!("{options:?} {:?}", options.logged_headers());
        assert!(!shown.contains("key-value-1") && !shown.contains("pass-value-2"));
        assert!(shown.contains("x-api-key") && shown.contains("alice"));
        let sent = options.request_headers();
        assert_eq!(sent[0], ("X-Api-Key".into(), "key-value-1".into()));
        assert_eq!(sent[1].0, "authorization");
    }

    #[test]
    fn stored_form_round_trips() {
        let options = EndpointOptions::new(
            CustomHeaders::parse(pairs(&[("X-Api-Key", "k")])).unwrap(),
            Some(EndpointAuth::bearer("t".into()).unwrap()),
        )
        .unwrap();
        let text = options.to_stored();
        assert_eq!(EndpointOptions::from_stored(&text), Ok(options));
        assert_eq!(
            EndpointOptions::from_stored("{}"),
            Ok(EndpointOptions::default())
        );
        assert!(EndpointOptions::from_stored("{\"headers\":[[\"Host\",\"x\"]]}").is_err());
    }
}
