//! Webhooks: create, read, list, change, rotate the secret, delete.

use rusqlite::{Connection, OptionalExtension, params};
use webhook_domain::ids::WebhookId;
use webhook_domain::webhook::WebhookSecret;

use super::rows::{WEBHOOK_COLUMNS, finish_webhook, raw_webhook};
use crate::crypto::SecretCipher;
use crate::store::{NewWebhook, Page, StoreError, WebhookPatch, WebhookRecord, seal_endpoint};

fn event_types_json(types: &[String]) -> String {
    serde_json::Value::from(types.to_vec()).to_string()
}

pub fn create_webhook(
    c: &Connection,
    cipher: &SecretCipher,
    new: NewWebhook,
    limit: u32,
) -> Result<WebhookRecord, StoreError> {
    // Counting inside the writer's transaction makes the cap exact under concurrency.
    let owned: i64 = c.query_row(
        "SELECT COUNT(*) FROM webhooks WHERE owner_id = ?1",
        [new.owner_id.as_str()],
        |r| r.get(0),
    )?;
    if owned >= i64::from(limit) {
        return Err(StoreError::WebhookLimit { limit });
    }
    let sealed = cipher
        .seal(new.secret.expose(), new.id.as_str())
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let endpoint_enc = seal_endpoint(cipher, &new.endpoint, &new.id)?;
    c.prepare_cached(
        "INSERT INTO webhooks (id, owner_id, url, event_types, description, is_active, scope_all, secret_enc, \
         created_at, updated_at, delivery_controls, endpoint_enc) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11)",
    )?
    .execute(params![
        new.id.as_str(),
        new.owner_id.as_str(),
        new.url,
        event_types_json(&new.event_types),
        new.description,
        new.is_active,
        new.scope_all,
        sealed,
        new.now,
        new.controls.to_column(),
        endpoint_enc,
    ])?;
    get_webhook(c, cipher, &new.id, None)?
        .ok_or_else(|| StoreError::Unavailable("webhook vanished after insert".into()))
}

pub fn get_webhook(
    c: &Connection,
    cipher: &SecretCipher,
    id: &WebhookId,
    owner: Option<&str>,
) -> Result<Option<WebhookRecord>, StoreError> {
    let raw = c
        .prepare_cached(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?1 AND (?2 IS NULL OR owner_id = ?2)"
        ))?
        .query_row(params![id.as_str(), owner], raw_webhook)
        .optional()?;
    raw.map(|r| finish_webhook(cipher, r)).transpose()
}

pub fn list_webhooks(
    c: &Connection,
    cipher: &SecretCipher,
    owner: Option<&str>,
    limit: u32,
    offset: u64,
) -> Result<Page<WebhookRecord>, StoreError> {
    let total: i64 = c
        .prepare_cached("SELECT COUNT(*) FROM webhooks WHERE (?1 IS NULL OR owner_id = ?1)")?
        .query_row(params![owner], |r| r.get(0))?;
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE (?1 IS NULL OR owner_id = ?1) \
         ORDER BY created_at DESC, id DESC LIMIT ?2 OFFSET ?3"
    ))?;
    let raws = stmt
        .query_map(params![owner, i64::from(limit), offset as i64], raw_webhook)?
        .collect::<Result<Vec<_>, _>>()?;
    let items = raws
        .into_iter()
        .map(|r| finish_webhook(cipher, r))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page {
        items,
        total: total as u64,
    })
}

/// Every webhook, in storage order, handed to `send` `batch` at a time
/// (one read transaction throughout); stops early when `send` says the
/// receiver is gone.
pub fn each_webhook(
    c: &Connection,
    cipher: &SecretCipher,
    batch: usize,
    mut send: impl FnMut(Vec<WebhookRecord>) -> bool,
) -> Result<(), StoreError> {
    let batch = batch.max(1);
    let mut stmt = c.prepare_cached(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks"))?;
    let mut rows = stmt.query([])?;
    let mut records = Vec::with_capacity(batch);
    while let Some(row) = rows.next()? {
        records.push(finish_webhook(cipher, raw_webhook(row)?)?);
        if records.len() == batch
            && !send(std::mem::replace(&mut records, Vec::with_capacity(batch)))
        {
            return Ok(());
        }
    }
    if !records.is_empty() {
        send(records);
    }
    Ok(())
}

pub fn update_webhook(
    c: &Connection,
    cipher: &SecretCipher,
    id: &WebhookId,
    owner: Option<&str>,
    patch: WebhookPatch,
) -> Result<Option<WebhookRecord>, StoreError> {
    let Some(current) = get_webhook(c, cipher, id, owner)? else {
        return Ok(None);
    };
    let url = patch.url.unwrap_or(current.url);
    let event_types = patch.event_types.unwrap_or(current.event_types);
    let description = patch.description.unwrap_or(current.description);
    let secret_enc = match &patch.secret {
        Some(secret) => Some(
            cipher
                .seal(secret.expose(), id.as_str())
                .map_err(|e| StoreError::Unavailable(e.to_string()))?,
        ),
        None => None,
    };
    // Only a switch from inactive resets the failure tracking: the front end
    // sends `isActive: true` with every edit of an active webhook, which must
    // not keep a dead endpoint from ever being disabled.
    let reenabled = patch.is_active == Some(true) && !current.is_active;
    let (set_endpoint, endpoint_enc) = match &patch.endpoint {
        Some(options) => (true, seal_endpoint(cipher, options, id)?),
        None => (false, None),
    };
    let is_active = patch.is_active.unwrap_or(current.is_active);
    // Merged here: the writer's transaction serialises updates.
    let ordering_before = current.controls.ordering;
    let controls = current.controls.patched(&patch.controls);
    c.prepare_cached(
        "UPDATE webhooks SET url = ?2, event_types = ?3, description = ?4, is_active = ?5, \
         secret_enc = COALESCE(?6, secret_enc), \
         prev_secret_enc = CASE WHEN ?6 IS NULL THEN prev_secret_enc END, \
         prev_secret_until = CASE WHEN ?6 IS NULL THEN prev_secret_until END, \
         disabled_reason = CASE WHEN ?7 THEN NULL ELSE disabled_reason END, \
         disabled_at = CASE WHEN ?7 THEN NULL ELSE disabled_at END, \
         failing_since = CASE WHEN ?7 THEN NULL ELSE failing_since END, \
         consecutive_exhausted = CASE WHEN ?7 THEN 0 ELSE consecutive_exhausted END, \
         updated_at = ?8, delivery_controls = ?9, \
         endpoint_enc = CASE WHEN ?10 THEN ?11 ELSE endpoint_enc END WHERE id = ?1",
    )?
    .execute(params![
        id.as_str(),
        url,
        event_types_json(&event_types),
        description,
        is_active,
        secret_enc,
        reenabled,
        patch.now,
        controls.to_column(),
        set_endpoint,
        endpoint_enc,
    ])?;
    if controls.ordering != ordering_before {
        super::ordering::reorder_queue(c, id, controls.ordering)?;
    }
    get_webhook(c, cipher, id, None)
}

pub fn rotate_secret(
    c: &Connection,
    cipher: &SecretCipher,
    id: &WebhookId,
    owner: Option<&str>,
    secret: WebhookSecret,
    grace_until: i64,
    now: i64,
) -> Result<Option<WebhookRecord>, StoreError> {
    if get_webhook(c, cipher, id, owner)?.is_none() {
        return Ok(None);
    }
    let sealed = cipher
        .seal(secret.expose(), id.as_str())
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    // The outgoing secret keeps signing until grace_until; a rotation during a
    // grace period drops the oldest secret.
    c.prepare_cached(
        "UPDATE webhooks SET prev_secret_enc = secret_enc, prev_secret_until = ?2, secret_enc = ?3, updated_at = ?4 \
         WHERE id = ?1",
    )?
    .execute(params![id.as_str(), grace_until, sealed, now])?;
    get_webhook(c, cipher, id, None)
}

pub fn delete_webhook(
    c: &Connection,
    id: &WebhookId,
    owner: Option<&str>,
) -> Result<bool, StoreError> {
    let n = c
        .prepare_cached("DELETE FROM webhooks WHERE id = ?1 AND (?2 IS NULL OR owner_id = ?2)")?
        .execute(params![id.as_str(), owner])?;
    if n == 0 {
        return Ok(false);
    }
    // The hot tables carry no foreign keys (migration 0002): the children go here.
    c.prepare_cached(
        "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE webhook_id = ?1)",
    )?
    .execute([id.as_str()])?;
    c.prepare_cached("DELETE FROM deliveries WHERE webhook_id = ?1")?
        .execute([id.as_str()])?;
    c.prepare_cached("DELETE FROM delivery_hourly WHERE webhook_id = ?1")?
        .execute([id.as_str()])?;
    Ok(true)
}
