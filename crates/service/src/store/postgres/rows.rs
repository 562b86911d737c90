//! Turning rows into the store's records.

use std::fmt::Display;

use tokio_postgres::Row;
use tokio_postgres::types::FromSql;
use webhook_domain::delivery::{AttemptErrorKind, DeliveryStatus};
use webhook_domain::ids::{DeliveryId, EventId, UserId, WebhookId};
use webhook_domain::webhook::WebhookSecret;

use crate::crypto::SecretCipher;
use crate::store::{
    AttemptRecord, DeliveryControls, DeliveryRecord, StoreError, WebhookRecord, open_endpoint,
};

/// The columns [`webhook`] reads, in order.
macro_rules! webhook_columns {
    () => {
        "id, owner_id, url, event_types, description, is_active, scope_all, secret_enc, prev_secret_enc, \
         prev_secret_until, disabled_reason, disabled_at, failing_since, consecutive_exhausted, created_at, updated_at, \
         delivery_controls::text, endpoint_enc"
    };
}
pub(super) use webhook_columns;

/// The columns [`delivery`] reads, in order.
macro_rules! delivery_columns {
    () => {
        "id, event_id, webhook_id, event_type, user_id, status, attempts, next_attempt_at, last_status_code, \
         last_error_kind, last_error, last_duration_ms, created_at, updated_at, delivered_at"
    };
}
pub(super) use delivery_columns;

/// The columns [`attempt`] reads, in order.
macro_rules! attempt_columns {
    () => {
        "attempt, started_at, duration_ms, request_headers, status_code, response_headers, response_body, \
         error_kind, error_message"
    };
}
pub(super) use attempt_columns;

/// A value that cannot be turned back into a record.
pub(super) fn corrupt(what: &str, e: impl Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// Column `i` of `row`, or a `Corrupt` error naming `what`.
pub(super) fn get<'a, T: FromSql<'a>>(row: &'a Row, i: usize, what: &str) -> Result<T, StoreError> {
    row.try_get(i).map_err(|e| corrupt(what, e))
}

/// A non-negative count or duration stored as a signed column.
pub(super) fn unsigned(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

/// A count or duration for a signed column.
pub(super) fn signed(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn open_secret(
    cipher: &SecretCipher,
    sealed: &str,
    webhook_id: &str,
) -> Result<WebhookSecret, StoreError> {
    let what = format!("secret of webhook {webhook_id}");
    let plain = cipher
        .open(sealed, webhook_id)
        .map_err(|e| corrupt(&what, e))?;
    WebhookSecret::parse(&plain).map_err(|e| corrupt(&what, e))
}

/// A webhook row (columns of [`webhook_columns`]) with its secrets opened.
pub(super) fn webhook(cipher: &SecretCipher, row: &Row) -> Result<WebhookRecord, StoreError> {
    let id: String = get(row, 0, "webhook id")?;
    let owner: String = get(row, 1, "webhook owner")?;
    let secret = open_secret(cipher, &get::<String>(row, 7, "webhook secret")?, &id)?;
    let previous: Option<String> = get(row, 8, "previous secret")?;
    let previous_until: Option<i64> = get(row, 9, "previous secret expiry")?;
    let previous_secret = match (previous, previous_until) {
        (Some(sealed), Some(until)) => Some((open_secret(cipher, &sealed, &id)?, until)),
        _ => None,
    };
    let exhausted: i64 = get(row, 13, "exhausted count")?;
    let endpoint_enc: Option<String> = get(row, 17, "endpoint options")?;
    let endpoint = open_endpoint(cipher, endpoint_enc.as_deref(), &id)?;
    Ok(WebhookRecord {
        id: WebhookId::parse(&id).map_err(|e| corrupt("webhook id", e))?,
        owner_id: UserId::parse(&owner).map_err(|e| corrupt("webhook owner", e))?,
        url: get(row, 2, "webhook url")?,
        event_types: get(row, 3, "webhook event types")?,
        description: get(row, 4, "webhook description")?,
        is_active: get(row, 5, "webhook is_active")?,
        scope_all: get(row, 6, "webhook scope")?,
        secret,
        previous_secret,
        disabled_reason: get(row, 10, "disabled reason")?,
        disabled_at: get(row, 11, "disabled at")?,
        failing_since: get(row, 12, "failing since")?,
        consecutive_exhausted: u32::try_from(exhausted).unwrap_or(u32::MAX),
        created_at: get(row, 14, "webhook created_at")?,
        updated_at: get(row, 15, "webhook updated_at")?,
        controls: DeliveryControls::from_column(
            get::<Option<String>>(row, 16, "webhook delivery controls")?.as_deref(),
        )?,
        endpoint,
    })
}

/// A delivery row (columns of [`delivery_columns`]).
pub(super) fn delivery(row: &Row) -> Result<DeliveryRecord, StoreError> {
    let status: String = get(row, 5, "delivery status")?;
    let status = DeliveryStatus::parse(&status).map_err(|e| corrupt("delivery status", e))?;
    let kind: Option<String> = get(row, 9, "error kind")?;
    let next: Option<i64> = get(row, 7, "next attempt")?;
    let code: Option<i32> = get(row, 8, "status code")?;
    let duration: Option<i32> = get(row, 11, "duration")?;
    Ok(DeliveryRecord {
        id: DeliveryId::parse(&get::<String>(row, 0, "delivery id")?)
            .map_err(|e| corrupt("delivery id", e))?,
        event_id: EventId::parse(&get::<String>(row, 1, "event id")?)
            .map_err(|e| corrupt("event id", e))?,
        webhook_id: WebhookId::parse(&get::<String>(row, 2, "webhook id")?)
            .map_err(|e| corrupt("webhook id", e))?,
        event_type: get(row, 3, "event type")?,
        user_id: get(row, 4, "user id")?,
        next_attempt_at: if status.is_final() { None } else { next },
        status,
        attempts: unsigned(get(row, 6, "attempts")?),
        last_status_code: code.and_then(|c| u16::try_from(c).ok()),
        last_error_kind: kind.and_then(|k| AttemptErrorKind::parse(&k).ok()),
        last_error: get(row, 10, "last error")?,
        last_duration_ms: duration.map(unsigned),
        created_at: get(row, 12, "created_at")?,
        updated_at: get(row, 13, "updated_at")?,
        delivered_at: get(row, 14, "delivered_at")?,
    })
}

/// An attempt row (columns of [`attempt_columns`]).
pub(super) fn attempt(row: &Row) -> Result<AttemptRecord, StoreError> {
    let request: String = get(row, 3, "request headers")?;
    let response: String = get(row, 5, "response headers")?;
    let kind: Option<String> = get(row, 7, "error kind")?;
    let code: Option<i32> = get(row, 4, "status code")?;
    Ok(AttemptRecord {
        attempt: unsigned(get(row, 0, "attempt number")?),
        started_at: get(row, 1, "attempt start")?,
        duration_ms: unsigned(get(row, 2, "attempt duration")?),
        request_headers: serde_json::from_str(&request).unwrap_or_default(),
        status_code: code.and_then(|c| u16::try_from(c).ok()),
        response_headers: serde_json::from_str(&response).unwrap_or_default(),
        response_body: get(row, 6, "response body")?,
        error_kind: kind.and_then(|k| AttemptErrorKind::parse(&k).ok()),
        error_message: get(row, 8, "error message")?,
    })
}
