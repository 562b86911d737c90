//! Who is calling: users with JWTs on `/api/v1`, platform services with the
//! shared internal secret on `/internal`.
//!
//! The key is chosen by the token's `alg` *family* and each key only ever
//! verifies its own family, so an HS256 token signed with the RSA public key
//! (algorithm confusion) is checked against `JWT_SECRET` and fails, and
//! `alg: none` is not an algorithm this module knows.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};
use webhook_domain::ids::UserId;

use crate::config::{JwtConfig, SecretString};

/// An authenticated user of the public API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user id (`userId`, else `sub`, else `id`).
    pub user_id: UserId,
    /// Email claim, when present.
    pub email: Option<String>,
    /// `roles` contains `admin`.
    pub is_admin: bool,
    /// Set when the token is a portal link's (see `crate::portal::link`), not the platform's.
    pub portal: Option<PortalAccess>,
}

/// What a portal link's token allows beyond naming its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortalAccess {
    /// Only reads: every mutating `/api/v1` call is refused.
    pub read_only: bool,
}

/// The `kid` header of portal tokens: they are verified with the portal key
/// only, never with the platform's keys (and platform tokens never with it).
pub const PORTAL_KID: &str = "webhook-portal";
/// The `aud` claim of portal tokens.
pub const PORTAL_AUDIENCE: &str = "webhook-portal";

/// Why a request is not authenticated. Each variant has its own message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("Missing Authorization header: send 'Authorization: Bearer <token>'")]
    Missing,
    /// The header is not `Bearer <token>`.
    #[error("Authorization header must use the Bearer scheme: 'Authorization: Bearer <token>'")]
    NotBearer,
    /// The token is not a well-formed JWT.
    #[error("Malformed token: {0}")]
    Malformed(String),
    /// The token's algorithm is not accepted.
    #[error("Token algorithm {0} is not accepted")]
    Algorithm(String),
    /// `exp` is in the past.
    #[error("Token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("Token is not valid yet")]
    NotYetValid,
    /// The signature does not verify.
    #[error("Invalid token signature")]
    BadSignature,
    /// A valid token without a usable user id.
    #[error("Token has no user id (expected a 'userId', 'sub' or 'id' claim)")]
    NoUserId,
    /// The claim naming the user is not a usable id.
    #[error(
        "Token's '{0}' claim is not a usable user id: it must be a non-empty string or an integer"
    )]
    UnusableUserId(&'static str),
    /// The internal secret did not match.
    #[error("Invalid internal service credentials")]
    BadInternalSecret,
    /// A user token presented on an internal route.
    #[error("Internal routes require the internal service secret, not a user token")]
    UserTokenOnInternal,
}

impl AuthError {
    /// Whether the failure may be someone guessing a credential, and so
    /// counts toward the caller's limit of failed authentications. A token
    /// whose signature verified (expired, not yet valid, without a usable
    /// user id) was issued by the platform: a client holding an expired
    /// token must not lock its whole network out. A request without
    /// credentials guesses nothing.
    pub fn may_be_a_guess(&self) -> bool {
        match self {
            AuthError::Malformed(_)
            | AuthError::Algorithm(_)
            | AuthError::BadSignature
            | AuthError::BadInternalSecret
            | AuthError::UserTokenOnInternal => true,
            AuthError::Missing
            | AuthError::NotBearer
            | AuthError::Expired
            | AuthError::NotYetValid
            | AuthError::NoUserId
            | AuthError::UnusableUserId(_) => false,
        }
    }
}

/// Verifies users' tokens and the internal secret.
pub struct Authenticator {
    hmac: Option<DecodingKey>,
    hmac_secret: Option<SecretString>,
    rsa: Option<DecodingKey>,
    ec: Option<DecodingKey>,
    internal_secret: Option<SecretString>,
    leeway: Duration,
    portal: Option<DecodingKey>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("hs256", &self.hmac.is_some())
            .field("rs256", &self.rsa.is_some())
            .field("es256", &self.ec.is_some())
            .finish()
    }
}

/// The configured public key could not be read.
#[derive(Debug, thiserror::Error)]
#[error("JWT_PUBLIC_KEY is not a PEM RSA or EC (P-256) public key")]
pub struct InvalidPublicKey;

impl Authenticator {
    /// Builds the verifier from configuration.
    pub fn new(
        jwt: &JwtConfig,
        internal_secret: Option<SecretString>,
    ) -> Result<Self, InvalidPublicKey> {
        let (rsa, ec) = match &jwt.public_key_pem {
            None => (None, None),
            Some(pem) => {
                let rsa = DecodingKey::from_rsa_pem(pem.as_bytes()).ok();
                let ec = DecodingKey::from_ec_pem(pem.as_bytes()).ok();
                if rsa.is_none() && ec.is_none() {
                    return Err(InvalidPublicKey);
                }
                (rsa, ec)
            }
        };
        Ok(Authenticator {
            hmac: jwt
                .secret
                .as_ref()
                .map(|s| DecodingKey::from_secret(s.expose().as_bytes())),
            hmac_secret: jwt.secret.clone(),
            rsa,
            ec,
            internal_secret,
            leeway: jwt.leeway,
            portal: None,
        })
    }

    /// Also accepts portal tokens signed (HS256) with this key.
    pub fn with_portal_key(mut self, key: &[u8]) -> Self {
        self.portal = Some(DecodingKey::from_secret(key));
        self
    }

    /// Authenticates a user from the `Authorization` header value.
    pub fn user(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let token = bearer(authorization)?;
        if self.is_internal_secret(token) {
            // The internal secret is never a user credential.
            return Err(AuthError::Malformed("not a JWT".into()));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            // A header naming an algorithm the library has no variant for
            // (`none`, `HS1`, ...) fails as a JSON error; say what it is.
            match unknown_algorithm(token) {
                Some(alg) => AuthError::Algorithm(alg),
                None => AuthError::Malformed(describe(&e)),
            }
        })?;
        let portal = header.kid.as_deref() == Some(PORTAL_KID);
        let key = match header.alg {
            Algorithm::HS256 if portal => self.portal.as_ref(),
            _ if portal => None,
            Algorithm::HS256 => self.hmac.as_ref(),
            Algorithm::RS256 => self.rsa.as_ref(),
            Algorithm::ES256 => self.ec.as_ref(),
            _ => None,
        }
        .ok_or_else(|| AuthError::Algorithm(format!("{:?}", header.alg)))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.validate_aud = portal;
        if portal {
            validation.set_audience(&[PORTAL_AUDIENCE]);
            validation.set_required_spec_claims(&["exp", "aud"]);
        } else {
            validation.set_required_spec_claims(&["exp"]);
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm => AuthError::Algorithm(format!("{:?}", header.alg)),
                ErrorKind::MissingRequiredClaim(claim) => {
                    AuthError::Malformed(format!("the '{claim}' claim is required"))
                }
                _ => AuthError::Malformed(describe(&e)),
            },
        )?;
        let mut principal = principal_from_claims(&data.claims)?;
        if portal {
            principal.portal = Some(PortalAccess {
                read_only: data.claims.get("ro").and_then(Value::as_bool) != Some(false),
            });
        }
        Ok(principal)
    }

    /// Authenticates a platform service on `/internal`.
    pub fn internal(&self, authorization: Option<&str>) -> Result<(), AuthError> {
        let token = bearer(authorization)?;
        if self.is_internal_secret(token) {
            return Ok(());
        }
        if token.split('.').count() == 3 && jsonwebtoken::decode_header(token).is_ok() {
            return Err(AuthError::UserTokenOnInternal);
        }
        Err(AuthError::BadInternalSecret)
    }

    fn is_internal_secret(&self, token: &str) -> bool {
        self.internal_secret.as_ref().is_some_and(|s| {
            webhook_verify::constant_time_eq(s.expose().as_bytes(), token.as_bytes())
        })
    }

    /// Mints a token shaped like auth-service's (HS256 with `JWT_SECRET`).
    pub fn mint(
        &self,
        user_id: &str,
        email: Option<&str>,
        admin: bool,
        ttl: Duration,
    ) -> Result<String, MintError> {
        let secret = self.hmac_secret.as_ref().ok_or(MintError::NoSecret)?;
        mint_token(secret, user_id, email, admin, ttl)
    }
}

/// A token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// No HS256 secret is configured.
    #[error("JWT_SECRET is not set, so no token can be minted")]
    NoSecret,
    /// Encoding failed.
    #[error("cannot encode the token: {0}")]
    Encode(String),
}

/// Mints an HS256 token with the platform's claims (`userId`, `email`, `roles`, `jti`, `iat`, `exp`).
pub fn mint_token(
    secret: &SecretString,
    user_id: &str,
    email: Option<&str>,
    admin: bool,
    ttl: Duration,
) -> Result<String, MintError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let roles: Vec<&str> = if admin {
        vec!["user", "admin"]
    } else {
        vec!["user"]
    };
    let claims = serde_json::json!({
        "userId": user_id,
        "email": email,
        "roles": roles,
        "jti": format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
        "iat": now,
        "exp": now + ttl.as_secs(),
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )
    .map_err(|e| MintError::Encode(e.to_string()))
}

fn bearer(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization.ok_or(AuthError::Missing)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::NotBearer);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Malformed("empty token".into()));
    }
    Ok(token)
}

/// The claims that may name the user, in order of precedence: the
/// platform's tokens carry `userId` (and no `sub`); other issuers put the
/// user in `sub`; `id` is the last resort. The first one present decides:
/// an unusable `userId` is refused, never passed over for a `sub` that a
/// different issuer may have meant for a different user.
const USER_ID_CLAIMS: [&str; 3] = ["userId", "sub", "id"];

fn principal_from_claims(claims: &Map<String, Value>) -> Result<Principal, AuthError> {
    let user_id = user_id_from(claims)?;
    // Only the platform's shape: `"roles": [..., "admin"]`. A `roles`
    // string or a `role` claim is some other issuer's convention, and
    // guessing at it could make an admin of a token that never meant to.
    let is_admin = match claims.get("roles") {
        Some(Value::Array(roles)) => roles.iter().any(|r| r.as_str() == Some("admin")),
        _ => false,
    };
    Ok(Principal {
        user_id,
        email: claims
            .get("email")
            .and_then(Value::as_str)
            .map(String::from),
        is_admin,
        portal: None,
    })
}

/// The user id of a token: a string, or an integer written out exactly.
///
/// A number that is not an integer JSON can hold exactly (larger than 64
/// bits, or with a fraction or exponent) is refused: read as a float it
/// would round, and two users' ids would become one owner.
fn user_id_from(claims: &Map<String, Value>) -> Result<UserId, AuthError> {
    let (claim, value) = USER_ID_CLAIMS
        .iter()
        .find_map(|k| claims.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)))
        .ok_or(AuthError::NoUserId)?;
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u.to_string(),
            (None, Some(i)) => i.to_string(),
            (None, None) => return Err(AuthError::UnusableUserId(claim)),
        },
        _ => return Err(AuthError::UnusableUserId(claim)),
    };
    UserId::parse(&text).map_err(|_| AuthError::UnusableUserId(claim))
}

/// The `alg` of a token whose header names an algorithm the library does not know (such as `none`).
fn unknown_algorithm(token: &str) -> Option<String> {
    use base64::Engine as _;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    let header = serde_json::from_slice::<Map<String, Value>>(&bytes).ok()?;
    let alg = header.get("alg")?.as_str()?;
    alg.parse::<Algorithm>()
        .is_err()
        .then(|| alg.chars().take(32).collect())
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    match e.kind() {
        ErrorKind::InvalidToken => "not a JWT (expected three base64url parts)".into(),
        ErrorKind::Base64(_) => "a part is not valid base64url".into(),
        ErrorKind::Json(_) => "the header or claims are not valid JSON".into(),
        ErrorKind::Utf8(_) => "a part is not valid UTF-8".into(),
        _ => "cannot be decoded".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        let jwt = JwtConfig {
            secret: Some(SecretString::new("test-jwt-secret-0123456789".into())),
            public_key_pem: None,
            leeway: Duration::from_secs(5),
        };
        Authenticator::new(&jwt, Some(SecretString::new("internal-secret-0123".into()))).unwrap()
    }

    fn sign(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"test-jwt-secret-0123456789"),
        )
        .unwrap()
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn platform_tokens_and_claim_precedence() {
        let a = auth();
        let token = a
            .mint("u-1", Some("a@b.c"), true, Duration::from_secs(60))
            .unwrap();
        let p = a.user(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(p.user_id.as_str(), "u-1");
        assert!(p.is_admin);
        // The platform's claim wins over another issuer's.
        let t = sign(serde_json::json!({"sub": "s", "userId": "u", "exp": now() + 60}));
        assert_eq!(
            a.user(Some(&format!("Bearer {t}")))
                .unwrap()
                .user_id
                .as_str(),
            "u"
        );
        let t = sign(serde_json::json!({"sub": "s", "exp": now() + 60}));
        assert_eq!(a_user(&t).unwrap().user_id.as_str(), "s");
        let t = sign(serde_json::json!({"id": 42, "exp": now() + 60}));
        assert_eq!(
            a.user(Some(&format!("Bearer {t}")))
                .unwrap()
                .user_id
                .as_str(),
            "42"
        );
        let t = sign(serde_json::json!({"exp": now() + 60}));
        assert_eq!(
            a.user(Some(&format!("Bearer {t}"))),
            Err(AuthError::NoUserId)
        );
    }

    #[test]
    fn numeric_user_ids_are_exact_integers_or_refused() {
        // Through f64 both became "1.2345678901234568e+29": one owner.
        for huge in [
            "123456789012345678901234567890",
            "123456789012345678901234567891",
        ] {
            let claims = format!(r#"{{"userId": {huge}, "exp": {}}}"#, now() + 60);
            let claims: serde_json::Value = serde_json::from_str(&claims).unwrap();
            assert_eq!(
                a_user(&sign(claims)),
                Err(AuthError::UnusableUserId("userId"))
            );
        }
        for fraction in [serde_json::json!(1.5), serde_json::json!(1e3)] {
            let t = sign(serde_json::json!({"userId": fraction, "exp": now() + 60}));
            assert_eq!(a_user(&t), Err(AuthError::UnusableUserId("userId")));
        }
        let t = sign(serde_json::json!({"userId": 18446744073709551615_u64, "exp": now() + 60}));
        assert_eq!(a_user(&t).unwrap().user_id.as_str(), "18446744073709551615");
        // Present but unusable: refused, not passed over for `sub`.
        for bad in [
            serde_json::json!(""),
            serde_json::json!(true),
            serde_json::json!(["u"]),
        ] {
            let t = sign(serde_json::json!({"userId": bad, "sub": "s", "exp": now() + 60}));
            assert_eq!(a_user(&t), Err(AuthError::UnusableUserId("userId")));
        }
    }

    #[test]
    fn only_an_admin_entry_in_the_roles_array_makes_an_admin() {
        let admin = |claims: serde_json::Value| a_user(&sign(claims)).unwrap().is_admin;
        let exp = now() + 60;
        assert!(admin(
            serde_json::json!({"userId": "u", "roles": ["user", "admin"], "exp": exp})
        ));
        assert!(!admin(
            serde_json::json!({"userId": "u", "roles": ["user"], "exp": exp})
        ));
        assert!(!admin(
            serde_json::json!({"userId": "u", "roles": "admin", "exp": exp})
        ));
        assert!(!admin(
            serde_json::json!({"userId": "u", "roles": "user,admin", "exp": exp})
        ));
        assert!(!admin(
            serde_json::json!({"userId": "u", "role": "admin", "exp": exp})
        ));
    }

    #[test]
    fn the_clock_leeway_is_the_configured_one() {
        // The test authenticator allows 5 s either way.
        let t = sign(serde_json::json!({"userId": "u", "exp": now() - 2}));
        assert!(a_user(&t).is_ok(), "expired within the leeway");
        let t = sign(serde_json::json!({"userId": "u", "exp": now() - 30}));
        assert_eq!(a_user(&t), Err(AuthError::Expired));
        let t = sign(serde_json::json!({"userId": "u", "exp": now() + 60, "nbf": now() + 2}));
        assert!(a_user(&t).is_ok(), "not yet valid within the leeway");
        let t = sign(serde_json::json!({"userId": "u", "exp": now() + 60, "nbf": now() + 30}));
        assert_eq!(a_user(&t), Err(AuthError::NotYetValid));
    }

    #[test]
    fn distinct_failures() {
        let a = auth();
        assert_eq!(a.user(None), Err(AuthError::Missing));
        assert_eq!(a.user(Some("Basic abc")), Err(AuthError::NotBearer));
        assert!(matches!(
            a.user(Some("Bearer garbage")),
            Err(AuthError::Malformed(_))
        ));
        let expired = sign(serde_json::json!({"userId": "u", "exp": now() - 100}));
        assert_eq!(
            a.user(Some(&format!("Bearer {expired}"))),
            Err(AuthError::Expired)
        );
        let future =
            sign(serde_json::json!({"userId": "u", "exp": now() + 100, "nbf": now() + 60}));
        assert_eq!(
            a.user(Some(&format!("Bearer {future}"))),
            Err(AuthError::NotYetValid)
        );
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"userId": "u", "exp": now() + 100}),
            &EncodingKey::from_secret(b"another-secret-entirely"),
        )
        .unwrap();
        assert_eq!(
            a.user(Some(&format!("Bearer {forged}"))),
            Err(AuthError::BadSignature)
        );
        let no_exp = sign(serde_json::json!({"userId": "u"}));
        assert!(matches!(
            a.user(Some(&format!("Bearer {no_exp}"))),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn alg_none_is_rejected() {
        use base64::Engine as _;
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let token = format!(
            "{}.{}.",
            b64(serde_json::json!({"alg": "none", "typ": "JWT"})),
            b64(serde_json::json!({"userId": "u", "exp": now() + 100}))
        );
        assert_eq!(a_user(&token), Err(AuthError::Algorithm("none".into())));
    }

    #[test]
    fn portal_tokens_verify_with_the_portal_key_only() {
        let portal_key = b"portal-key-0123456789abcdef";
        let a = auth().with_portal_key(portal_key);
        let portal = |claims: serde_json::Value, key: &[u8]| {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some(PORTAL_KID.into());
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(key)).unwrap()
        };
        let claims = |ro: Option<bool>| {
            let mut c = serde_json::json!({"sub": "u", "aud": PORTAL_AUDIENCE, "exp": now() + 60});
            if let Some(ro) = ro {
                c["ro"] = serde_json::json!(ro);
            }
            c
        };
        let p = a
            .user(Some(&format!(
                "Bearer {}",
                portal(claims(Some(false)), portal_key)
            )))
            .unwrap();
        assert_eq!(p.portal, Some(PortalAccess { read_only: false }));
        // Without an explicit `"ro": false` a link is read-only.
        let p = a
            .user(Some(&format!(
                "Bearer {}",
                portal(claims(None), portal_key)
            )))
            .unwrap();
        assert_eq!(p.portal, Some(PortalAccess { read_only: true }));
        // Signed with the platform's secret, or without the audience: refused.
        let platform_signed = portal(claims(Some(false)), b"test-jwt-secret-0123456789");
        assert_eq!(
            a.user(Some(&format!("Bearer {platform_signed}"))),
            Err(AuthError::BadSignature)
        );
        let no_aud = portal(
            serde_json::json!({"sub": "u", "exp": now() + 60}),
            portal_key,
        );
        assert!(a.user(Some(&format!("Bearer {no_aud}"))).is_err());
        // Platform tokens stay platform tokens.
        let platform = a.mint("u", None, false, Duration::from_secs(60)).unwrap();
        assert_eq!(
            a.user(Some(&format!("Bearer {platform}"))).unwrap().portal,
            None
        );
        // With no portal key configured, no portal token is accepted.
        let valid = portal(claims(Some(false)), portal_key);
        assert!(auth().user(Some(&format!("Bearer {valid}"))).is_err());
    }

    fn a_user(token: &str) -> Result<Principal, AuthError> {
        auth().user(Some(&format!("Bearer {token}")))
    }

    #[test]
    fn internal_secret_and_user_tokens_do_not_cross() {
        let a = auth();
        assert_eq!(a.internal(Some("Bearer internal-secret-0123")), Ok(()));
        assert_eq!(
            a.internal(Some("Bearer wrong")),
            Err(AuthError::BadInternalSecret)
        );
        let token = a.mint("u", None, true, Duration::from_secs(60)).unwrap();
        assert_eq!(
            a.internal(Some(&format!("Bearer {token}"))),
            Err(AuthError::UserTokenOnInternal)
        );
        assert!(a.user(Some("Bearer internal-secret-0123")).is_err());
    }
}
