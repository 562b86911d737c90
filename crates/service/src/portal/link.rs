//! Portal links: a short-lived token for one user, in the fragment of a
//! `/portal` URL, the way the platform's front end embeds the portal.
//!
//! The token is a JWT signed (HS256) with a key derived from the service's
//! own `WEBHOOK_ENCRYPTION_KEY`, marked by its `kid` and audience, so the
//! platform's keys never verify it and it never verifies as a platform token
//! (see `crate::auth`). It names the user, the admin role only when the
//! minting caller asked for it, and whether it is read-only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::json;
use webhook_domain::ids::UserId;
use webhook_domain::retry::parse_duration;
use webhook_domain::timefmt::format_rfc3339_millis;

use crate::api::error::{ApiError, FieldProblem, ok};
use crate::api::extract::ApiJson;
use crate::api::{AppState, caller_key, limited};
use crate::auth::{MintError, PORTAL_AUDIENCE, PORTAL_KID};
use crate::crypto::EncryptionKey;

/// Longest lifetime of a portal link.
pub const MAX_LINK_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// Lifetime of a portal link when the request names none.
pub const DEFAULT_LINK_LIFETIME: Duration = Duration::from_secs(3600);

/// The key portal tokens are signed with, derived from the encryption key:
/// HMAC-SHA256 under that key of a fixed label, so it is as secret as the
/// key, differs from it, and every instance sharing the key accepts links
/// any of them minted.
pub fn signing_key(key: &EncryptionKey) -> Vec<u8> {
    webhook_verify::sign_legacy(&key.to_base64(), b"smart-ai-hub/webhook-portal-links/v1")
        .into_bytes()
}

/// A minted link's token and when it expires (unix seconds).
#[derive(Debug, Clone)]
pub struct PortalToken {
    /// The JWT.
    pub token: String,
    /// Its `exp`.
    pub expires_at: u64,
}

/// Mints a portal token for `user`.
pub fn mint(
    signing_key: &[u8],
    user: &UserId,
    admin: bool,
    read_only: bool,
    lifetime: Duration,
) -> Result<PortalToken, MintError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let expires_at = now + lifetime.as_secs();
    let roles: &[&str] = if admin { &["user", "admin"] } else { &["user"] };
    let claims = json!({
        "sub": user.as_str(),
        "roles": roles,
        "aud": PORTAL_AUDIENCE,
        "ro": read_only,
        "jti": format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
        "iat": now,
        "exp": expires_at,
    });
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(PORTAL_KID.to_string());
    let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(signing_key))
        .map_err(|e| MintError::Encode(e.to_string()))?;
    Ok(PortalToken { token, expires_at })
}

/// The portal URL carrying `token` in its fragment (never sent to a server).
pub fn portal_url(base: &str, token: &str) -> String {
    format!("{}/portal#token={token}", base.trim_end_matches('/'))
}

/// Checks `WEBHOOK_PUBLIC_URL`: an http(s) URL without query or fragment.
pub fn parse_public_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an http(s) URL such as https://webhooks.example.com".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// Body of `POST /api/v1/portal/links`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct LinkBody {
    /// The user whose view the link opens.
    user_id: Option<String>,
    /// Lifetime such as `15m`, `1h` (default), `7d` at most.
    expires_in: Option<String>,
    /// Only reads allowed (default false).
    read_only: bool,
    /// The user is an operator: the link sees every user's webhooks (default false).
    admin: bool,
}

/// Who asked for a link: the platform (internal secret) or an admin user
/// with a platform token. A portal token cannot mint links, so a read-only
/// or short link cannot be turned into a wider or longer one.
///
/// A layer in front of [`create_link`], so that a caller who may not mint
/// is refused before its body is read.
pub async fn authorize(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // The same limits as the other routes these callers use: per calling
    // address for the platform, per user for an admin.
    if state.auth.internal(authorization).is_ok() {
        let key = caller_key(&req);
        return limited(&state.internal_limiter, key, req, |req| next.run(req)).await;
    }
    match state.auth.user(authorization) {
        Ok(principal) if principal.is_admin && principal.portal.is_none() => {
            let key = principal.user_id.as_str().to_string();
            limited(&state.api_limiter, key, req, |req| next.run(req)).await
        }
        Ok(_) => ApiError::forbidden(
            "Portal links are minted with the internal service secret or an admin's platform token",
        )
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The address browsers reach this service at: `WEBHOOK_PUBLIC_URL`, else
/// the `Host` of the request (its caller is the platform or an admin).
fn base_url(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(url) = &state.config.portal.public_url {
        return Ok(url.clone());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                })
        })
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "The request has no usable Host header; set WEBHOOK_PUBLIC_URL",
            )
        })?;
    Ok(format!("http://{host}"))
}

/// `POST /api/v1/portal/links`: mints a portal link for one user.
#[utoipa::path(post, path = "/api/v1/portal/links", tag = "portal", request_body = LinkBody,
    responses((status = 201, description = "`{url, token, expiresAt}`: open `url` in a browser or an iframe"),
              (status = 400, description = "Validation error naming each bad field"),
              (status = 403, description = "Neither the internal secret nor an admin token")),
    security(("bearer" = [])))]
pub async fn create_link(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LinkBody>,
) -> Result<Response, ApiError> {
    let mut problems = Vec::new();
    let user = match body.user_id.as_deref().map(UserId::parse) {
        Some(Ok(user)) => Some(user),
        Some(Err(e)) => {
            problems.push(problem("userId", format!("userId is not valid: {e}")));
            None
        }
        None => {
            problems.push(problem("userId", "userId is required".into()));
            None
        }
    };
    let lifetime = match body.expires_in.as_deref().map(parse_duration) {
        None => Some(DEFAULT_LINK_LIFETIME),
        Some(Ok(d)) if d >= Duration::from_secs(1) && d <= MAX_LINK_LIFETIME => Some(d),
        Some(Ok(_)) => {
            problems.push(problem(
                "expiresIn",
                "expiresIn must be between 1s and 7d".into(),
            ));
            None
        }
        Some(Err(e)) => {
            problems.push(problem("expiresIn", format!("expiresIn: {e}")));
            None
        }
    };
    let (Some(user), Some(lifetime)) = (user, lifetime) else {
        return Err(ApiError::validation(problems));
    };
    let key = state
        .config
        .encryption_key
        .as_ref()
        .map(signing_key)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "PORTAL_UNAVAILABLE",
                "Portal links need WEBHOOK_ENCRYPTION_KEY",
            )
        })?;
    let minted = mint(&key, &user, body.admin, body.read_only, lifetime).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            e.to_string(),
        )
    })?;
    let base = base_url(&state, &headers)?;
    let expires_ms = i64::try_from(minted.expires_at)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    Ok(ok(
        StatusCode::CREATED,
        json!({
            "url": portal_url(&base, &minted.token),
            "token": minted.token,
            "expiresAt": format_rfc3339_millis(expires_ms),
            "userId": user.as_str(),
            "readOnly": body.read_only,
            "admin": body.admin,
        }),
        Some("Portal link minted; it grants this user's view until expiresAt"),
        None,
    ))
}

fn problem(field: &str, message: String) -> FieldProblem {
    FieldProblem {
        field: field.into(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_is_checked() {
        assert_eq!(
            parse_public_url("https://hooks.example.com/").unwrap(),
            "https://hooks.example.com"
        );
        assert!(parse_public_url("ftp://x").is_err());
        assert!(parse_public_url("https://x/?a=1").is_err());
    }
}
