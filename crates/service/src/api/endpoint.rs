//! The webhook fields that say how a delivery reaches its endpoint beyond
//! the URL: `headers` (custom headers) and `auth` (Basic, bearer or a
//! client certificate). Parsed
//! into `webhook_domain::endpoint` types; shown with every credential masked.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use webhook_domain::asymmetric::Ed25519Signing;
use webhook_domain::endpoint::{
    CustomHeaders, EndpointAuth, EndpointOptions, InvalidEndpointOption, MASK,
};

use webhook_domain::timefmt::now_ms;
use webhook_outbound::{ClientIdentity, InvalidPem};

use super::error::FieldProblem;

/// The request fields of endpoint options; absent fields are left as they
/// are on update, `null` clears them.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointBody {
    /// Custom headers sent with every attempt and test send, as
    /// `{"X-Api-Key": "..."}`: at most 32, names HTTP tokens of at most 128
    /// characters, values of at most 2048 bytes without control characters.
    /// The service's own headers (`X-Webhook-*`, `webhook-*`, `Content-Type`,
    /// `Content-Length`, `Host`, `User-Agent`, `Transfer-Encoding`,
    /// `Connection`) are refused. Replaces all custom headers; `null` or `{}`
    /// removes them. Values are sealed at rest and masked in every read.
    #[schema(value_type = Option<std::collections::HashMap<String, String>>)]
    #[serde(deserialize_with = "present")]
    pub headers: Option<Value>,
    /// Endpoint authentication: `{"type": "basic", "username", "password"}`
    /// or `{"type": "bearer", "token"}`, sent as `Authorization`;
    /// `{"type": "oauth2", "tokenUrl", "clientId", "clientSecret", "scope"?,
    /// "audience"?}`, a bearer token from the client-credentials grant
    /// (the token URL is checked like `url`); or
    /// `{"type": "mtls", "certificate": "PEM", "privateKey": "PEM"}`, a
    /// client certificate presented on the TLS handshake. `null` removes it.
    /// Secrets are sealed at rest and masked in every read.
    #[schema(value_type = Option<Object>)]
    #[serde(deserialize_with = "present")]
    pub auth: Option<Value>,
    /// `hmac` (the default: `webhook-signature` carries `v1,` HMAC
    /// signatures) or `ed25519` (`v1a,` Ed25519 signatures; receivers verify
    /// with `publicKey`). `X-Webhook-Signature` is HMAC either way.
    #[schema(value_type = Option<String>)]
    #[serde(deserialize_with = "present")]
    pub signing: Option<Value>,
}

/// The top-level fields [`EndpointBody`] adds to a webhook body.
pub const FIELDS: [&str; 3] = ["headers", "auth", "signing"];

/// Reads a field that is in the body, `null` included, as `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Endpoint options as the API shows them: header names and the Basic user
/// name in clear, every other value masked.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView {
    /// Custom header names, each with a masked value.
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub headers: Map<String, Value>,
    /// `{"type": "basic", "username", "password": "********"}`,
    /// `{"type": "bearer", "token": "********"}`,
    /// `{"type": "oauth2", "tokenUrl", "clientId", "clientSecret": "********", "scope", "audience"}`,
    /// `{"type": "mtls", "certificate": "PEM", "privateKey": "********"}` or null.
    #[schema(value_type = Option<Object>)]
    pub auth: Option<Value>,
    /// `hmac` or `ed25519`.
    pub signing: &'static str,
    /// With `ed25519`: the `whpk_` public key that verifies `v1a` signatures.
    pub public_key: Option<String>,
    /// During a rotation's grace period: the previous key, which still signs.
    pub previous_public_key: Option<String>,
}

impl EndpointView {
    /// The masked view of `options`.
    pub fn new(options: &EndpointOptions) -> Self {
        let headers = options
            .headers()
            .names()
            .map(|n| (n.to_string(), Value::from(MASK)))
            .collect();
        let auth = options.auth().map(|auth| match auth {
            EndpointAuth::Basic { username, .. } => {
                json!({"type": "basic", "username": username, "password": MASK})
            }
            EndpointAuth::Bearer { .. } => json!({"type": "bearer", "token": MASK}),
            EndpointAuth::OAuth2 {
                token_url,
                client_id,
                scope,
                audience,
                ..
            } => json!({"type": "oauth2", "tokenUrl": token_url, "clientId": client_id,
                        "clientSecret": MASK, "scope": scope, "audience": audience}),
            EndpointAuth::Mtls { certificate, .. } => {
                json!({"type": "mtls", "certificate": certificate, "privateKey": MASK})
            }
        });
        let signing = options.signing();
        EndpointView {
            headers,
            auth,
            signing: if signing.is_some() { "ed25519" } else { "hmac" },
            public_key: signing.map(Ed25519Signing::public_key),
            previous_public_key: signing.and_then(|s| s.previous_public_key(now_ms())),
        }
    }
}

fn problem(field: &str, message: impl Into<String>) -> FieldProblem {
    FieldProblem {
        field: field.into(),
        message: message.into(),
    }
}

/// What is wrong with a client certificate or key, in words (never their text).
fn tls_problem(e: &InvalidPem) -> InvalidEndpointOption {
    let (field, problem) = match e {
        InvalidPem::Certificates(_) => ("certificate", "cannot be read as a PEM certificate chain"),
        InvalidPem::PrivateKey(_) => (
            "privateKey",
            "cannot be read as a PEM private key (PKCS#8, PKCS#1 or SEC1)",
        ),
        InvalidPem::Unusable(_) => (
            "privateKey",
            "cannot be used for TLS (an unsupported key type)",
        ),
    };
    InvalidEndpointOption::AuthField { field, problem }
}

/// A read shows every secret as the mask: one sent back would replace the
/// secret with the mask itself, silently breaking the endpoint.
fn masked_value(what: &str) -> String {
    format!(
        "{what} is the masked value that reads show ({MASK}); send the real value, or leave the field out to keep it"
    )
}

fn parse_headers(value: Value) -> Result<CustomHeaders, FieldProblem> {
    let object = match value {
        Value::Null => return Ok(CustomHeaders::default()),
        Value::Object(object) => object,
        _ => {
            return Err(problem(
                "headers",
                "headers must be an object of header names to string values",
            ));
        }
    };
    let mut pairs = Vec::with_capacity(object.len());
    for (name, value) in object {
        match value {
            Value::String(value) if value == MASK => {
                let shown: String = name.chars().take(64).collect();
                return Err(problem("headers", masked_value(&format!("header {shown}"))));
            }
            Value::String(value) => pairs.push((name, value)),
            _ => {
                let shown: String = name.chars().take(64).collect();
                return Err(problem(
                    "headers",
                    format!("value of header {shown} must be a string"),
                ));
            }
        }
    }
    CustomHeaders::parse(pairs).map_err(|e| problem("headers", e.to_string()))
}

fn parse_auth(value: Value) -> Result<Option<EndpointAuth>, FieldProblem> {
    let mut object = match value {
        Value::Null => return Ok(None),
        Value::Object(object) => object,
        _ => {
            return Err(problem(
                "auth",
                "auth must be an object with a type, or null",
            ));
        }
    };
    let kind = match object.remove("type") {
        Some(Value::String(kind)) => kind,
        _ => return Err(problem("auth", InvalidEndpointOption::AuthType.to_string())),
    };
    let known: &[&str] = match kind.as_str() {
        "basic" => &["username", "password"],
        "bearer" => &["token"],
        "oauth2" => &["tokenUrl", "clientId", "clientSecret", "scope", "audience"],
        "mtls" => &["certificate", "privateKey"],
        _ => return Err(problem("auth", InvalidEndpointOption::AuthType.to_string())),
    };
    if let Some(unknown) = object.keys().find(|k| !known.contains(&k.as_str())) {
        let shown: String = unknown.chars().take(64).collect();
        return Err(problem(
            "auth",
            format!(
                "auth.{shown} is not a field of {kind} auth (it takes {})",
                known.join(", ")
            ),
        ));
    }
    let mut take = |field: &'static str| match object.remove(field) {
        Some(Value::String(text)) if text == MASK => {
            Err(problem("auth", masked_value(&format!("auth.{field}"))))
        }
        Some(Value::String(text)) => Ok(text),
        _ => Err(problem("auth", format!("auth.{field} must be a string"))),
    };
    let auth = match kind.as_str() {
        "basic" => EndpointAuth::basic(take("username")?, take("password")?),
        "bearer" => EndpointAuth::bearer(take("token")?),
        "oauth2" => {
            let (url, id, secret) = (take("tokenUrl")?, take("clientId")?, take("clientSecret")?);
            let mut optional = |field: &'static str| match object.remove(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => Ok(Some(text)),
                Some(_) => Err(problem("auth", format!("auth.{field} must be a string"))),
            };
            let (scope, audience) = (optional("scope")?, optional("audience")?);
            EndpointAuth::oauth2(url, id, secret, scope, audience)
        }
        _ => {
            let (certificate, private_key) = (take("certificate")?, take("privateKey")?);
            EndpointAuth::mtls(certificate, private_key).and_then(|auth| {
                // The shape is the domain's; whether TLS can present them is
                // the HTTP client's, checked now rather than at the first delivery.
                if let EndpointAuth::Mtls {
                    certificate,
                    private_key,
                } = &auth
                    && let Err(e) =
                        ClientIdentity::from_pem(certificate.as_bytes(), private_key.as_bytes())
                {
                    return Err(tls_problem(&e));
                }
                Ok(auth)
            })
        }
    };
    auth.map(Some).map_err(|e| problem("auth", e.to_string()))
}

/// The endpoint options a request asks for, given the webhook's current
/// ones (`None` on create): `None` when the request leaves them as they are.
pub fn parse(
    body: EndpointBody,
    current: Option<&EndpointOptions>,
    problems: &mut Vec<FieldProblem>,
) -> Option<EndpointOptions> {
    if body.headers.is_none() && body.auth.is_none() && body.signing.is_none() {
        return None;
    }
    let mut failed = false;
    let ed25519 = match body.signing {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "hmac" => Some(false),
        Some(Value::String(s)) if s == "ed25519" => Some(true),
        Some(_) => {
            problems.push(problem(
                "signing",
                "signing must be \"hmac\" or \"ed25519\"",
            ));
            failed = true;
            None
        }
    };
    let headers = match body.headers.map(parse_headers).transpose() {
        Ok(headers) => headers,
        Err(p) => {
            problems.push(p);
            failed = true;
            None
        }
    };
    let auth = match body.auth.map(parse_auth).transpose() {
        Ok(auth) => auth,
        Err(p) => {
            problems.push(p);
            failed = true;
            None
        }
    };
    if failed {
        return None;
    }
    let headers =
        headers.unwrap_or_else(|| current.map(|c| c.headers().clone()).unwrap_or_default());
    let auth = auth.unwrap_or_else(|| current.and_then(|c| c.auth().cloned()));
    let kept = current.and_then(|c| c.signing().cloned());
    let signing = match ed25519 {
        None => kept,
        Some(false) => None,
        // A webhook that signs with Ed25519 already keeps its keys.
        Some(true) => match kept.map_or_else(Ed25519Signing::generate, Ok) {
            Ok(keys) => Some(keys),
            Err(e) => {
                tracing::error!(error = %e, "cannot generate an Ed25519 key");
                problems.push(problem("signing", "no key could be generated; try again"));
                return None;
            }
        },
    };
    match EndpointOptions::new(headers, auth) {
        Ok(options) => Some(options.with_signing(signing)),
        Err(e) => {
            problems.push(problem("headers", e.to_string()));
            None
        }
    }
}
