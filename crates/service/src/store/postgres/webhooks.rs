//! Webhook rows: create (with the per-user cap), read, change, rotate, delete.
//! Every user-facing query filters on the owner unless the caller is an admin.

use tokio_postgres::types::ToSql;
use webhook_domain::ids::WebhookId;
use webhook_domain::webhook::WebhookSecret;

use super::pool::Conn;
use super::rows::{self, get, webhook_columns};
use crate::crypto::SecretCipher;
use crate::store::{NewWebhook, Page, StoreError, WebhookPatch, WebhookRecord, seal_endpoint};

// The lock serialises creations of one owner across instances, so the cap is exact.
const LOCK_OWNER: &str = "SELECT pg_advisory_xact_lock(hashtextextended('webhooks:' || $1, 0))";
const COUNT_OWNED: &str = "SELECT COUNT(*) FROM webhooks WHERE owner_id = $1";
const INSERT: &str = concat!(
    "INSERT INTO webhooks (id, owner_id, url, event_types, description, is_active, scope_all, secret_enc, \
     created_at, updated_at, delivery_controls, endpoint_enc) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10::text::jsonb, $11) RETURNING ",
    webhook_columns!()
);
const GET: &str = concat!(
    "SELECT ",
    webhook_columns!(),
    " FROM webhooks WHERE id = $1 AND ($2::text IS NULL OR owner_id = $2)"
);
const BY_IDS: &str = concat!(
    "SELECT ",
    webhook_columns!(),
    " FROM webhooks WHERE id = ANY($1)"
);
const COUNT: &str = "SELECT COUNT(*) FROM webhooks WHERE ($1::text IS NULL OR owner_id = $1)";
const LIST: &str = concat!(
    "SELECT ",
    webhook_columns!(),
    " FROM webhooks WHERE ($1::text IS NULL OR owner_id = $1) \
     ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
);
// A page of every webhook, by primary key, for loading them all a page at a time.
const PAGE_AFTER: &str = concat!(
    "SELECT ",
    webhook_columns!(),
    " FROM webhooks WHERE id > $1 ORDER BY id LIMIT $2"
);

/// Webhooks read per round trip when loading all of them (see [`each`]).
const PAGE: i64 = 512;
// A new secret replaces the old one at once (no grace period); enabling
// clears the failure state the service recorded.
const UPDATE: &str = concat!(
    "UPDATE webhooks SET url = COALESCE($3::text, url), event_types = COALESCE($4::text[], event_types), \
     description = CASE WHEN $5::bool THEN $6::text ELSE description END, \
     is_active = COALESCE($7::bool, is_active), secret_enc = COALESCE($8::text, secret_enc), \
     prev_secret_enc = CASE WHEN $8::text IS NULL THEN prev_secret_enc END, \
     prev_secret_until = CASE WHEN $8::text IS NULL THEN prev_secret_until END, \
     disabled_reason = CASE WHEN $9::bool AND NOT is_active THEN NULL ELSE disabled_reason END, \
     disabled_at = CASE WHEN $9::bool AND NOT is_active THEN NULL ELSE disabled_at END, \
     failing_since = CASE WHEN $9::bool AND NOT is_active THEN NULL ELSE failing_since END, \
     consecutive_exhausted = CASE WHEN $9::bool AND NOT is_active THEN 0 ELSE consecutive_exhausted END, \
     updated_at = $10::int8, \
     delivery_controls = CASE WHEN $11::bool THEN NULLIF((COALESCE(delivery_controls, '{}'::jsonb) || $12::text::jsonb) \
     - $13::text[], '{}'::jsonb) ELSE delivery_controls END, \
     endpoint_enc = CASE WHEN $14::bool THEN $15::text ELSE endpoint_enc END \
     WHERE id = $1 AND ($2::text IS NULL OR owner_id = $2) RETURNING ",
    webhook_columns!()
);
// The outgoing secret keeps signing until the grace period ends; a rotation
// during a grace period drops the oldest secret.
const ROTATE: &str = concat!(
    "UPDATE webhooks SET prev_secret_enc = secret_enc, prev_secret_until = $3, secret_enc = $4, updated_at = $5 \
     WHERE id = $1 AND ($2::text IS NULL OR owner_id = $2) RETURNING ",
    webhook_columns!()
);
// Deleting a webhook (migration 5: no foreign keys cascade to its deliveries
// and attempts). The first statement waits for every ingest and attempt
// record holding the webhook's lock; each later one, a new statement, sees
// what they committed, and no new ones can start until this commits.
const LOCK_FOR_DELETE: &str =
    "SELECT 1 FROM webhooks WHERE id = $1 AND ($2::text IS NULL OR owner_id = $2) FOR UPDATE";
const DELETE_ATTEMPTS: &str =
    "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE webhook_id = $1)";
const DELETE_QUEUE: &str = "DELETE FROM delivery_queue WHERE webhook_id = $1";
const DELETE_DELIVERIES: &str = "DELETE FROM deliveries WHERE webhook_id = $1";
const DELETE_HOURLY: &str = "DELETE FROM delivery_hourly WHERE webhook_id = $1";
const DELETE: &str = "DELETE FROM webhooks WHERE id = $1";

fn seal(
    cipher: &SecretCipher,
    secret: &WebhookSecret,
    id: &WebhookId,
) -> Result<String, StoreError> {
    cipher
        .seal(secret.expose(), id.as_str())
        .map_err(|e| StoreError::Unavailable(e.to_string()))
}

/// Creates a webhook unless its owner has `limit` already.
pub(super) async fn create(
    c: &mut Conn,
    cipher: &SecretCipher,
    new: NewWebhook,
    limit: u32,
) -> Result<WebhookRecord, StoreError> {
    let sealed = seal(cipher, &new.secret, &new.id)?;
    let endpoint_enc = seal_endpoint(cipher, &new.endpoint, &new.id)?;
    let row = c
        .transaction(async |c| {
            let owner = new.owner_id.as_str();
            c.query_one(LOCK_OWNER, &[&owner]).await?;
            let owned: i64 = get(&c.query_one(COUNT_OWNED, &[&owner]).await?, 0, "count")?;
            if owned >= i64::from(limit) {
                return Err(StoreError::WebhookLimit { limit });
            }
            c.query_one(
                INSERT,
                &[
                    &new.id.as_str(),
                    &owner,
                    &new.url,
                    &new.event_types,
                    &new.description,
                    &new.is_active,
                    &new.scope_all,
                    &sealed,
                    &new.now,
                    &new.controls.to_column(),
                    &endpoint_enc,
                ],
            )
            .await
        })
        .await?;
    rows::webhook(cipher, &row)
}

/// One webhook, if `owner` (None: any) owns it.
pub(super) async fn get_one(
    c: &mut Conn,
    cipher: &SecretCipher,
    id: &WebhookId,
    owner: Option<&str>,
) -> Result<Option<WebhookRecord>, StoreError> {
    let row = c.query_opt(GET, &[&id.as_str(), &owner]).await?;
    row.map(|r| rows::webhook(cipher, &r)).transpose()
}

/// The webhooks among `ids` that exist.
pub(super) async fn by_ids(
    c: &mut Conn,
    cipher: &SecretCipher,
    ids: &[WebhookId],
) -> Result<Vec<WebhookRecord>, StoreError> {
    let ids: Vec<&str> = ids.iter().map(WebhookId::as_str).collect();
    let found = c.query(BY_IDS, &[&ids]).await?;
    found.iter().map(|r| rows::webhook(cipher, r)).collect()
}

/// A page of `owner`'s webhooks (None: everyone's), newest first.
pub(super) async fn list(
    c: &mut Conn,
    cipher: &SecretCipher,
    owner: Option<&str>,
    limit: u32,
    offset: u64,
) -> Result<Page<WebhookRecord>, StoreError> {
    let total: i64 = get(&c.query_one(COUNT, &[&owner]).await?, 0, "count")?;
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    let found = c.query(LIST, &[&owner, &i64::from(limit), &offset]).await?;
    let items = found
        .iter()
        .map(|r| rows::webhook(cipher, r))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page {
        items,
        total: u64::try_from(total).unwrap_or(0),
    })
}

/// Every webhook, handed to `each` one at a time, read a page at a time in
/// one snapshot, as the embedded store reads them: there, the rows of every
/// webhook at once were several times the size of the routes made from
/// them (`tenants`, 100,000 webhooks), and the allocator kept that peak
/// long after.
pub(super) async fn each(
    c: &mut Conn,
    cipher: &SecretCipher,
    each: &mut (dyn FnMut(WebhookRecord) + Send),
) -> Result<(), StoreError> {
    c.begin_snapshot().await?;
    let mut after = String::new();
    loop {
        let page = c.query(PAGE_AFTER, &[&after, &PAGE]).await?;
        let full = page.len() as i64 == PAGE;
        for row in &page {
            let record = rows::webhook(cipher, row)?;
            after.clear();
            after.push_str(record.id.as_str());
            each(record);
        }
        if !full {
            break;
        }
    }
    c.commit().await
}

/// Applies `patch` if `owner` may see the webhook.
pub(super) async fn update(
    c: &mut Conn,
    cipher: &SecretCipher,
    id: &WebhookId,
    owner: Option<&str>,
    patch: WebhookPatch,
) -> Result<Option<WebhookRecord>, StoreError> {
    let secret_enc = patch
        .secret
        .as_ref()
        .map(|s| seal(cipher, s, id))
        .transpose()?;
    let (set_description, description) = match patch.description {
        Some(description) => (true, description),
        None => (false, None),
    };
    // Only a switch from inactive resets the failure tracking (the SET
    // clauses read the row's old `is_active`): the front end sends
    // `isActive: true` with every edit of an active webhook.
    let reenabled = patch.is_active == Some(true);
    // Merged into the stored controls in the statement, so that concurrent
    // changes of different controls (on any instance) all stay.
    let change_controls = !patch.controls.is_empty();
    let (controls_set, controls_cleared) = patch.controls.set_and_cleared();
    let (set_endpoint, endpoint_enc) = match &patch.endpoint {
        Some(options) => (true, seal_endpoint(cipher, options, id)?),
        None => (false, None),
    };
    let params: [&(dyn ToSql + Sync); 15] = [
        &id.as_str(),
        &owner,
        &patch.url,
        &patch.event_types,
        &set_description,
        &description,
        &patch.is_active,
        &secret_enc,
        &reenabled,
        &patch.now,
        &change_controls,
        &controls_set,
        &controls_cleared,
        &set_endpoint,
        &endpoint_enc,
    ];
    if patch.controls.ordering.is_none() {
        let row = c.query_opt(UPDATE, &params).await?;
        return row.map(|r| rows::webhook(cipher, &r)).transpose();
    }
    // A change of the ordering reorders the queue in the same transaction,
    // under the webhook's lock, so no ingest numbers between the two.
    c.transaction(async |c| {
        let Some(row) = c.query_opt(UPDATE, &params).await? else {
            return Ok(None);
        };
        let record = rows::webhook(cipher, &row)?;
        super::ordering::reorder_queue(c, id, record.controls.ordering).await?;
        Ok(Some(record))
    })
    .await
}

/// Replaces the secret, keeping the old one until `grace_until`.
pub(super) async fn rotate(
    c: &mut Conn,
    cipher: &SecretCipher,
    id: &WebhookId,
    owner: Option<&str>,
    secret: &WebhookSecret,
    grace_until: i64,
    now: i64,
) -> Result<Option<WebhookRecord>, StoreError> {
    let sealed = seal(cipher, secret, id)?;
    let row = c
        .query_opt(ROTATE, &[&id.as_str(), &owner, &grace_until, &sealed, &now])
        .await?;
    row.map(|r| rows::webhook(cipher, &r)).transpose()
}

/// Deletes the webhook (its deliveries go with it) if `owner` may see it.
pub(super) async fn delete(
    c: &mut Conn,
    id: &WebhookId,
    owner: Option<&str>,
) -> Result<bool, StoreError> {
    let id = id.as_str();
    c.transaction(async |c| {
        if c.query_opt(LOCK_FOR_DELETE, &[&id, &owner])
            .await?
            .is_none()
        {
            return Ok(false);
        }
        c.execute(DELETE_ATTEMPTS, &[&id]).await?;
        c.execute(DELETE_QUEUE, &[&id]).await?;
        c.execute(DELETE_DELIVERIES, &[&id]).await?;
        c.execute(DELETE_HOURLY, &[&id]).await?;
        Ok(c.execute(DELETE, &[&id]).await? > 0)
    })
    .await
}
