//! Turning rows into the store's records.

use rusqlite::Row;
use webhook_domain::delivery::{AttemptErrorKind, DeliveryStatus};
use webhook_domain::ids::{DeliveryId, EventId, UserId, WebhookId};
use webhook_domain::webhook::WebhookSecret;

use crate::crypto::SecretCipher;
use crate::store::{DeliveryControls, DeliveryRecord, StoreError, WebhookRecord, open_endpoint};

pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

pub(super) const WEBHOOK_COLUMNS: &str = "id, owner_id, url, event_types, description, is_active, scope_all, secret_enc, \
     prev_secret_enc, prev_secret_until, disabled_reason, disabled_at, failing_since, consecutive_exhausted, \
     created_at, updated_at, delivery_controls, endpoint_enc";

/// A webhook row before its secrets are opened.
pub(super) struct RawWebhook {
    id: String,
    owner_id: String,
    url: String,
    event_types: String,
    description: Option<String>,
    is_active: bool,
    scope_all: bool,
    secret_enc: String,
    prev_secret_enc: Option<String>,
    prev_secret_until: Option<i64>,
    disabled_reason: Option<String>,
    disabled_at: Option<i64>,
    failing_since: Option<i64>,
    consecutive_exhausted: i64,
    created_at: i64,
    updated_at: i64,
    delivery_controls: Option<String>,
    endpoint_enc: Option<String>,
}

pub(super) fn raw_webhook(r: &Row<'_>) -> rusqlite::Result<RawWebhook> {
    Ok(RawWebhook {
        id: r.get(0)?,
        owner_id: r.get(1)?,
        url: r.get(2)?,
        event_types: r.get(3)?,
        description: r.get(4)?,
        is_active: r.get(5)?,
        scope_all: r.get(6)?,
        secret_enc: r.get(7)?,
        prev_secret_enc: r.get(8)?,
        prev_secret_until: r.get(9)?,
        disabled_reason: r.get(10)?,
        disabled_at: r.get(11)?,
        failing_since: r.get(12)?,
        consecutive_exhausted: r.get(13)?,
        created_at: r.get(14)?,
        updated_at: r.get(15)?,
        delivery_controls: r.get(16)?,
        endpoint_enc: r.get(17)?,
    })
}

pub(super) fn open_secret(
    cipher: &SecretCipher,
    sealed: &str,
    webhook_id: &str,
) -> Result<WebhookSecret, StoreError> {
    let plain = cipher
        .open(sealed, webhook_id)
        .map_err(|e| corrupt(&format!("secret of webhook {webhook_id}"), e))?;
    WebhookSecret::parse(&plain).map_err(|e| corrupt(&format!("secret of webhook {webhook_id}"), e))
}

pub(super) fn finish_webhook(
    cipher: &SecretCipher,
    raw: RawWebhook,
) -> Result<WebhookRecord, StoreError> {
    let secret = open_secret(cipher, &raw.secret_enc, &raw.id)?;
    let previous_secret = match (&raw.prev_secret_enc, raw.prev_secret_until) {
        (Some(sealed), Some(until)) => Some((open_secret(cipher, sealed, &raw.id)?, until)),
        _ => None,
    };
    let endpoint = open_endpoint(cipher, raw.endpoint_enc.as_deref(), &raw.id)?;
    Ok(WebhookRecord {
        id: WebhookId::parse(&raw.id).map_err(|e| corrupt("webhook id", e))?,
        owner_id: UserId::parse(&raw.owner_id).map_err(|e| corrupt("webhook owner", e))?,
        url: raw.url,
        event_types: serde_json::from_str(&raw.event_types)
            .map_err(|e| corrupt("webhook event types", e))?,
        description: raw.description,
        is_active: raw.is_active,
        scope_all: raw.scope_all,
        secret,
        previous_secret,
        disabled_reason: raw.disabled_reason,
        disabled_at: raw.disabled_at,
        failing_since: raw.failing_since,
        consecutive_exhausted: u32::try_from(raw.consecutive_exhausted).unwrap_or(u32::MAX),
        created_at: raw.created_at,
        updated_at: raw.updated_at,
        controls: DeliveryControls::from_column(raw.delivery_controls.as_deref())?,
        endpoint,
    })
}

pub(super) const DELIVERY_COLUMNS: &str = "id, event_id, webhook_id, event_type, user_id, status, attempts, next_attempt_at, \
     last_status_code, last_error_kind, last_error, last_duration_ms, created_at, updated_at, delivered_at";

pub(super) fn delivery_row(r: &Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    let text = |i: usize| r.get::<_, String>(i);
    let bad = |i: usize, e: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    };
    let status = text(5)?;
    let status = DeliveryStatus::parse(&status).map_err(|e| bad(5, e.to_string()))?;
    let kind: Option<String> = r.get(9)?;
    let next: Option<i64> = r.get(7)?;
    Ok(DeliveryRecord {
        id: DeliveryId::parse(&text(0)?).map_err(|e| bad(0, e.to_string()))?,
        event_id: EventId::parse(&text(1)?).map_err(|e| bad(1, e.to_string()))?,
        webhook_id: WebhookId::parse(&text(2)?).map_err(|e| bad(2, e.to_string()))?,
        event_type: text(3)?,
        user_id: text(4)?,
        next_attempt_at: if status.is_final() { None } else { next },
        status,
        attempts: r.get(6)?,
        last_status_code: r.get(8)?,
        last_error_kind: kind.and_then(|k| AttemptErrorKind::parse(&k).ok()),
        last_error: r.get(10)?,
        last_duration_ms: r.get(11)?,
        created_at: r.get(12)?,
        updated_at: r.get(13)?,
        delivered_at: r.get(14)?,
    })
}
