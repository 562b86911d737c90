//! The SQL of the embedded store. Each function runs on a connection handed
//! to it (inside the writer's transaction for writes).

use bytes::Bytes;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use webhook_domain::delivery::{AttemptErrorKind, DeliveryStatus};
use webhook_domain::ids::{DeliveryId, EventId, UserId, WebhookId};
use webhook_domain::webhook::WebhookSecret;

use crate::crypto::SecretCipher;
use crate::store::health::{self, StoredHealth};
use crate::store::{
    AttemptRecord, AttemptReport, DeliveryDetail, DeliveryFilter, DeliveryRecord, DeliveryStats,
    DisabledWebhook, DueDelivery, FailurePolicy, IngestItem, IngestOutcome, NewWebhook, Page,
    StoreError, WebhookPatch, WebhookRecord, headers_json,
};

/// Rows deleted per prune call, so the writer is never blocked for long.
const PRUNE_CHUNK: i64 = 5000;

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

const WEBHOOK_COLUMNS: &str = "id, owner_id, url, event_types, description, is_active, scope_all, secret_enc, \
     prev_secret_enc, prev_secret_until, disabled_reason, disabled_at, failing_since, consecutive_exhausted, \
     created_at, updated_at";

/// A webhook row before its secrets are opened.
struct RawWebhook {
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
}

fn raw_webhook(r: &Row<'_>) -> rusqlite::Result<RawWebhook> {
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
    })
}

fn open_secret(
    cipher: &SecretCipher,
    sealed: &str,
    webhook_id: &str,
) -> Result<WebhookSecret, StoreError> {
    let plain = cipher
        .open(sealed, webhook_id)
        .map_err(|e| corrupt(&format!("secret of webhook {webhook_id}"), e))?;
    WebhookSecret::parse(&plain).map_err(|e| corrupt(&format!("secret of webhook {webhook_id}"), e))
}

fn finish_webhook(cipher: &SecretCipher, raw: RawWebhook) -> Result<WebhookRecord, StoreError> {
    let secret = open_secret(cipher, &raw.secret_enc, &raw.id)?;
    let previous_secret = match (&raw.prev_secret_enc, raw.prev_secret_until) {
        (Some(sealed), Some(until)) => Some((open_secret(cipher, sealed, &raw.id)?, until)),
        _ => None,
    };
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
    })
}

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
    c.prepare_cached(
        "INSERT INTO webhooks (id, owner_id, url, event_types, description, is_active, scope_all, secret_enc, \
         created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
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
    let is_active = patch.is_active.unwrap_or(current.is_active);
    c.prepare_cached(
        "UPDATE webhooks SET url = ?2, event_types = ?3, description = ?4, is_active = ?5, \
         secret_enc = COALESCE(?6, secret_enc), \
         prev_secret_enc = CASE WHEN ?6 IS NULL THEN prev_secret_enc END, \
         prev_secret_until = CASE WHEN ?6 IS NULL THEN prev_secret_until END, \
         disabled_reason = CASE WHEN ?7 THEN NULL ELSE disabled_reason END, \
         disabled_at = CASE WHEN ?7 THEN NULL ELSE disabled_at END, \
         failing_since = CASE WHEN ?7 THEN NULL ELSE failing_since END, \
         consecutive_exhausted = CASE WHEN ?7 THEN 0 ELSE consecutive_exhausted END, \
         updated_at = ?8 WHERE id = ?1",
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
    ])?;
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
    Ok(true)
}

/// The ingest statements, prepared once for every ingest job of a
/// transaction that follow each other (the writer keeps one while only
/// ingest jobs run): fetching three statements from rusqlite's cache and
/// looking the webhook up again cost each single-event job about 8k
/// instructions.
pub struct Ingester<'c> {
    insert_event: rusqlite::CachedStatement<'c>,
    insert_delivery: rusqlite::CachedStatement<'c>,
    webhook_exists: rusqlite::CachedStatement<'c>,
    /// Webhooks looked up so far. Valid while no other kind of job runs: a
    /// webhook deleted by one would otherwise still count as present.
    known: crate::FastMap<String, bool>,
}

impl<'c> Ingester<'c> {
    pub fn new(c: &'c Connection) -> Result<Self, StoreError> {
        Ok(Ingester {
            insert_event: c.prepare_cached(
                "INSERT INTO events (id, event_type, user_id, payload, created_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (id) DO NOTHING",
            )?,
            insert_delivery: c.prepare_cached(
                "INSERT INTO deliveries (id, event_id, webhook_id, event_type, user_id, status, attempts, next_attempt_at, \
                 lease_owner, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?7, ?6, ?6)",
            )?,
            // A webhook deleted after routing but before this commit gets no
            // delivery (the check a foreign key made, without failing the
            // whole group commit). A separate lookup, not INSERT ... SELECT:
            // SQLite gives a statement that may write several rows a statement
            // journal, a copy of every page it touches, which cost more than
            // the insert itself.
            webhook_exists: c.prepare_cached("SELECT 1 FROM webhooks WHERE id = ?1")?,
            known: crate::FastMap::default(),
        })
    }

    /// Stores `items` (one job's events) on `c`, the connection it was made on.
    pub fn ingest(
        &mut self,
        c: &Connection,
        owner: &str,
        items: &[IngestItem],
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            let inserted = self.insert_event.execute(params![
                item.event_id.as_str(),
                item.event_type,
                item.user_id.as_str(),
                &item.payload[..],
                item.created_at,
            ])?;
            if inserted == 0 {
                let mut existing =
                    c.prepare_cached("SELECT id FROM deliveries WHERE event_id = ?1 ORDER BY id")?;
                let deliveries = existing
                    .query_map([item.event_id.as_str()], |r| r.get::<_, String>(0))?
                    .filter_map(|id| id.ok().and_then(|id| DeliveryId::parse(&id).ok()))
                    .collect();
                outcomes.push(IngestOutcome::Duplicate { deliveries });
                continue;
            }
            let mut skipped = Vec::new();
            for delivery in &item.deliveries {
                let webhook = delivery.webhook_id.as_str();
                let exists = match self.known.get(webhook) {
                    Some(&exists) => exists,
                    None => {
                        let exists = self.webhook_exists.exists([webhook])?;
                        self.known.insert(webhook.to_string(), exists);
                        exists
                    }
                };
                if !exists {
                    skipped.push(delivery.webhook_id.clone());
                    continue;
                }
                let claimed_by = delivery.claimed.then_some(owner);
                self.insert_delivery.execute(params![
                    delivery.id.as_str(),
                    item.event_id.as_str(),
                    delivery.webhook_id.as_str(),
                    item.event_type,
                    item.user_id.as_str(),
                    item.created_at,
                    claimed_by,
                ])?;
            }
            outcomes.push(if skipped.is_empty() {
                IngestOutcome::Created
            } else {
                IngestOutcome::CreatedWithout { skipped }
            });
        }
        Ok(outcomes)
    }
}

/// The next webhook after `?1` with waiting (unclaimed, unfinished) work, and
/// its earliest waiting row's time: one seek into `deliveries_due_webhook`.
const NEXT_WAITING_WEBHOOK: &str = "SELECT webhook_id, next_attempt_at \
     FROM deliveries INDEXED BY deliveries_due_webhook \
     WHERE lease_owner IS NULL AND status IN ('pending', 'retrying') AND webhook_id > ?1 \
     ORDER BY webhook_id, next_attempt_at LIMIT 1";

/// One webhook's work due by `?2`, oldest first (read lazily, in a merge).
const DUE_OF_WEBHOOK: &str = "SELECT id, next_attempt_at \
     FROM deliveries INDEXED BY deliveries_due_webhook \
     WHERE webhook_id = ?1 AND lease_owner IS NULL AND status IN ('pending', 'retrying') \
     AND next_attempt_at <= ?2 ORDER BY next_attempt_at LIMIT ?3";

/// The statements that search for due work (their cost is checked in tests).
#[cfg(test)]
pub const CLAIM_SEARCHES: [&str; 2] = [NEXT_WAITING_WEBHOOK, DUE_OF_WEBHOOK];

/// Claims up to `limit` deliveries due by `now`, oldest first, of active
/// webhooks outside `exclude`: [`due_ids`] then [`claim_ids`] on one
/// connection (the store runs the search on a reader instead).
#[cfg(test)]
pub fn claim_due(
    c: &Connection,
    owner: &str,
    now: i64,
    limit: u32,
    exclude: &[WebhookId],
) -> Result<Vec<DueDelivery>, StoreError> {
    let ids = due_ids(c, now, limit, exclude)?;
    claim_ids(c, owner, &ids)
}

/// The ids of up to `limit` deliveries due by `now`, oldest first, of active
/// webhooks outside `exclude`.
///
/// The work is found per webhook, never by walking all due rows in time
/// order: that walk stepped over every due row of a webhook whose window
/// share is full (an endpoint that hangs) or that is paused, on every pass.
/// Here a pass costs one seek per webhook with waiting work, due or not
/// (about 27 ms for 10,000 such webhooks), plus the rows it returns: the
/// webhooks it may claim for are merged by due time, reading at most `limit`
/// rows more than it returns. Read-only, so it can run on a reader while the
/// writer commits.
pub fn due_ids(
    c: &Connection,
    now: i64,
    limit: u32,
    exclude: &[WebhookId],
) -> Result<Vec<String>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let excluded: std::collections::HashSet<&str> = exclude.iter().map(WebhookId::as_str).collect();
    let mut candidates = Vec::new();
    {
        let mut next = c.prepare_cached(NEXT_WAITING_WEBHOOK)?;
        let mut active = c.prepare_cached("SELECT is_active FROM webhooks WHERE id = ?1")?;
        let mut after = String::new();
        while let Some((webhook, earliest)) = next
            .query_row([&after], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .optional()?
        {
            if earliest <= now
                && !excluded.contains(webhook.as_str())
                && active
                    .query_row([&webhook], |r| r.get::<_, bool>(0))
                    .optional()?
                    .unwrap_or(false)
            {
                candidates.push(webhook.clone());
            }
            after = webhook;
        }
    }

    // Merge the candidates' due rows by (due time, id), lazily.
    let mut chosen: Vec<String> = Vec::new();
    {
        let mut statements = Vec::with_capacity(candidates.len());
        for _ in &candidates {
            statements.push(c.prepare_cached(DUE_OF_WEBHOOK)?);
        }
        let mut cursors = Vec::with_capacity(candidates.len());
        for (statement, webhook) in statements.iter_mut().zip(&candidates) {
            cursors.push(statement.query(params![webhook, now, i64::from(limit)])?);
        }
        let mut heads = std::collections::BinaryHeap::new();
        for (k, rows) in cursors.iter_mut().enumerate() {
            if let Some(r) = rows.next()? {
                heads.push(std::cmp::Reverse((
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(0)?,
                    k,
                )));
            }
        }
        while chosen.len() < limit as usize {
            let Some(std::cmp::Reverse((_, id, k))) = heads.pop() else {
                break;
            };
            chosen.push(id);
            if let Some(r) = cursors[k].next()? {
                heads.push(std::cmp::Reverse((
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(0)?,
                    k,
                )));
            }
        }
    }
    Ok(chosen)
}

/// Claims those of `ids` that are still waiting (the search may have read
/// an older snapshot), in the order given.
pub fn claim_ids(
    c: &Connection,
    owner: &str,
    ids: &[String],
) -> Result<Vec<DueDelivery>, StoreError> {
    // Parse everything before the first write: a job must not fail after writing.
    let mut load = c.prepare_cached(
        "SELECT d.event_id, d.event_type, d.webhook_id, d.attempts, e.payload \
         FROM deliveries d JOIN events e ON e.id = d.event_id \
         WHERE d.id = ?1 AND d.lease_owner IS NULL AND d.status IN ('pending', 'retrying')",
    )?;
    let mut due = Vec::with_capacity(ids.len());
    for id in ids {
        // Claimed or finished since the search, or (as the join of the
        // earlier single query skipped it) without its event row: skipped.
        let Some((event_id, event_type, webhook_id, attempts, payload)) = load
            .query_row([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                ))
            })
            .optional()?
        else {
            continue;
        };
        due.push(DueDelivery {
            id: DeliveryId::parse(id).map_err(|e| corrupt("delivery id", e))?,
            event_id: EventId::parse(&event_id).map_err(|e| corrupt("event id", e))?,
            event_type,
            webhook_id: WebhookId::parse(&webhook_id).map_err(|e| corrupt("webhook id", e))?,
            attempts: u32::try_from(attempts).unwrap_or(0),
            payload: Bytes::from(payload),
        });
    }
    let mut claim = c.prepare_cached("UPDATE deliveries SET lease_owner = ?2 WHERE id = ?1")?;
    for d in &due {
        claim.execute(params![d.id.as_str(), owner])?;
    }
    Ok(due)
}

pub fn release(c: &Connection, owner: &str, deliveries: &[DeliveryId]) -> Result<(), StoreError> {
    let mut stmt = c.prepare_cached(
        "UPDATE deliveries SET lease_owner = NULL WHERE id = ?1 AND lease_owner = ?2",
    )?;
    for id in deliveries {
        stmt.execute(params![id.as_str(), owner])?;
    }
    Ok(())
}

pub fn recover_claims(c: &Connection, live_owner: &str) -> Result<u64, StoreError> {
    // The file lock makes this process the only live instance: every other
    // owner is a process that is gone (killed, crashed).
    let n = c.execute(
        "UPDATE deliveries SET lease_owner = NULL WHERE lease_owner IS NOT NULL AND lease_owner <> ?1",
        [live_owner],
    )?;
    Ok(n as u64)
}

pub fn record_attempts(
    c: &Connection,
    owner: &str,
    reports: &[AttemptReport],
    policy: FailurePolicy,
    now: i64,
) -> Result<Vec<DisabledWebhook>, StoreError> {
    let mut insert_attempt = c.prepare_cached(
        // An upsert, not INSERT OR REPLACE: REPLACE may delete several rows, so
        // SQLite would give each insert a statement journal (see ingest).
        "INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, request_headers, status_code, \
         response_headers, response_body, error_kind, error_message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (delivery_id, attempt) DO UPDATE SET started_at = excluded.started_at, \
         duration_ms = excluded.duration_ms, request_headers = excluded.request_headers, \
         status_code = excluded.status_code, response_headers = excluded.response_headers, \
         response_body = excluded.response_body, error_kind = excluded.error_kind, \
         error_message = excluded.error_message",
    )?;
    let mut update_delivery = c.prepare_cached(
        "UPDATE deliveries SET status = ?2, attempts = ?3, next_attempt_at = ?4, lease_owner = NULL, \
         last_status_code = ?5, last_error_kind = ?6, last_error = ?7, last_duration_ms = ?8, updated_at = ?9, \
         delivered_at = CASE WHEN ?2 = 'delivered' THEN ?9 ELSE delivered_at END WHERE id = ?1 \
         AND COALESCE(lease_owner = ?10, status IN ('pending', 'retrying'))",
    )?;
    let mut counted = Vec::with_capacity(reports.len());
    for report in reports {
        let a = &report.attempt;
        let updated = update_delivery.execute(params![
            report.delivery_id.as_str(),
            report.status.as_str(),
            a.attempt,
            report.next_attempt_at,
            a.status_code,
            a.error_kind.map(AttemptErrorKind::as_str),
            a.error_message,
            a.duration_ms,
            now,
            owner,
        ])?;
        if updated == 0 {
            // Its webhook was deleted while the attempt ran, or the claim
            // is another's now (see `Store::record_attempts`).
            continue;
        }
        counted.push(report);
        insert_attempt.execute(params![
            report.delivery_id.as_str(),
            a.attempt,
            a.started_at,
            a.duration_ms,
            headers_json(&a.request_headers),
            a.status_code,
            headers_json(&a.response_headers),
            a.response_body,
            a.error_kind.map(AttemptErrorKind::as_str),
            a.error_message,
        ])?;
    }
    let mut disabled = Vec::new();
    for (webhook_id, delta) in health::fold(counted) {
        let row = c
            .prepare_cached(
                "SELECT owner_id, url, is_active, failing_since, consecutive_exhausted FROM webhooks WHERE id = ?1",
            )?
            .query_row([webhook_id.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    StoredHealth {
                        is_active: r.get(2)?,
                        failing_since: r.get(3)?,
                        consecutive_exhausted: r.get(4)?,
                    },
                ))
            })
            .optional()?;
        let Some((owner_id, url, stored)) = row else {
            continue; // deleted meanwhile
        };
        let update = delta.apply(&stored, policy, now);
        if update.changed {
            c.prepare_cached(
                "UPDATE webhooks SET failing_since = ?2, consecutive_exhausted = ?3 WHERE id = ?1",
            )?
            .execute(params![
                webhook_id.as_str(),
                update.failing_since,
                update.consecutive_exhausted
            ])?;
        }
        if let Some(reason) = update.disable {
            c.prepare_cached(
                "UPDATE webhooks SET is_active = 0, disabled_reason = ?2, disabled_at = ?3, updated_at = ?3 WHERE id = ?1",
            )?
            .execute(params![webhook_id.as_str(), reason, now])?;
            disabled.push(DisabledWebhook {
                owner_id: UserId::parse(&owner_id).map_err(|e| corrupt("webhook owner", e))?,
                webhook_id,
                url,
                reason,
                at: now,
            });
        }
    }
    Ok(disabled)
}

const DELIVERY_COLUMNS: &str = "id, event_id, webhook_id, event_type, user_id, status, attempts, next_attempt_at, \
     last_status_code, last_error_kind, last_error, last_duration_ms, created_at, updated_at, delivered_at";

fn delivery_row(r: &Row<'_>) -> rusqlite::Result<DeliveryRecord> {
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

/// The WHERE clause of a delivery filter, with its values (after the webhook id at ?1).
fn filter_clause(filter: &DeliveryFilter, values: &mut Vec<SqlValue>) -> String {
    let mut sql = String::new();
    let mut push = |clause: &str, value: SqlValue, values: &mut Vec<SqlValue>| {
        values.push(value);
        sql.push_str(&format!(" AND {clause} ?{}", values.len()));
    };
    if let Some(status) = filter.status {
        push("status =", SqlValue::Text(status.as_str().into()), values);
    }
    if let Some(event_type) = &filter.event_type {
        push("event_type =", SqlValue::Text(event_type.clone()), values);
    }
    if let Some(since) = filter.since {
        push("created_at >=", SqlValue::Integer(since), values);
    }
    if let Some(until) = filter.until {
        push("created_at <", SqlValue::Integer(until), values);
    }
    sql
}

pub fn list_deliveries(
    c: &Connection,
    webhook: &WebhookId,
    filter: &DeliveryFilter,
    limit: u32,
    offset: u64,
) -> Result<Page<DeliveryRecord>, StoreError> {
    let mut values = vec![SqlValue::Text(webhook.as_str().into())];
    let clause = filter_clause(filter, &mut values);
    let total: i64 = c
        .prepare_cached(&format!(
            "SELECT COUNT(*) FROM deliveries WHERE webhook_id = ?1{clause}"
        ))?
        .query_row(params_from_iter(values.iter()), |r| r.get(0))?;
    let n = values.len();
    values.push(SqlValue::Integer(i64::from(limit)));
    values.push(SqlValue::Integer(offset as i64));
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE webhook_id = ?1{clause} \
         ORDER BY created_at DESC, id DESC LIMIT ?{} OFFSET ?{}",
        n + 1,
        n + 2
    ))?;
    let items = stmt
        .query_map(params_from_iter(values.iter()), delivery_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page {
        items,
        total: total as u64,
    })
}

pub fn get_delivery(
    c: &Connection,
    webhook: &WebhookId,
    delivery: &DeliveryId,
) -> Result<Option<DeliveryDetail>, StoreError> {
    let record = c
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1 AND webhook_id = ?2"
        ))?
        .query_row(params![delivery.as_str(), webhook.as_str()], delivery_row)
        .optional()?;
    let Some(record) = record else {
        return Ok(None);
    };
    let payload: Vec<u8> = c
        .prepare_cached("SELECT payload FROM events WHERE id = ?1")?
        .query_row([record.event_id.as_str()], |r| r.get(0))?;
    let mut stmt = c.prepare_cached(
        "SELECT attempt, started_at, duration_ms, request_headers, status_code, response_headers, response_body, \
         error_kind, error_message FROM attempts WHERE delivery_id = ?1 ORDER BY attempt",
    )?;
    let attempts = stmt
        .query_map([delivery.as_str()], |r| {
            let req: String = r.get(3)?;
            let resp: String = r.get(5)?;
            let kind: Option<String> = r.get(7)?;
            Ok(AttemptRecord {
                attempt: r.get(0)?,
                started_at: r.get(1)?,
                duration_ms: r.get(2)?,
                request_headers: serde_json::from_str(&req).unwrap_or_default(),
                status_code: r.get(4)?,
                response_headers: serde_json::from_str(&resp).unwrap_or_default(),
                response_body: r.get(6)?,
                error_kind: kind.and_then(|k| AttemptErrorKind::parse(&k).ok()),
                error_message: r.get(8)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(DeliveryDetail {
        delivery: record,
        payload: Bytes::from(payload),
        attempts,
    }))
}

pub fn requeue(
    c: &Connection,
    webhook: &WebhookId,
    filter: &DeliveryFilter,
    only: Option<&DeliveryId>,
    now: i64,
) -> Result<u64, StoreError> {
    let mut values = vec![SqlValue::Text(webhook.as_str().into())];
    let mut clause = filter_clause(filter, &mut values);
    if let Some(id) = only {
        values.push(SqlValue::Text(id.as_str().into()));
        clause.push_str(&format!(" AND id = ?{}", values.len()));
    }
    values.push(SqlValue::Integer(now));
    let now_param = values.len();
    // Deliveries held by the engine right now (lease_owner set) are left alone: they are being attempted.
    let n = c.execute(
        &format!(
            "UPDATE deliveries SET status = CASE WHEN attempts = 0 THEN 'pending' ELSE 'retrying' END, \
             next_attempt_at = ?{now_param}, updated_at = ?{now_param} \
             WHERE webhook_id = ?1 AND lease_owner IS NULL{clause}"
        ),
        params_from_iter(values.iter()),
    )?;
    Ok(n as u64)
}

pub fn delivery_stats(
    c: &Connection,
    owner: Option<&str>,
    webhook: Option<&WebhookId>,
    since: i64,
) -> Result<DeliveryStats, StoreError> {
    let webhook = webhook.map(WebhookId::as_str);
    let scope = "created_at >= ?1 AND (?2 IS NULL OR webhook_id = ?2) \
                 AND (?3 IS NULL OR webhook_id IN (SELECT id FROM webhooks WHERE owner_id = ?3))";
    let mut stats = DeliveryStats::default();
    let mut stmt = c.prepare_cached(&format!(
        "SELECT status, COUNT(*) FROM deliveries WHERE {scope} GROUP BY status"
    ))?;
    let rows = stmt.query_map(params![since, webhook, owner], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (status, n) = row?;
        let n = n as u64;
        match DeliveryStatus::parse(&status) {
            Ok(DeliveryStatus::Pending) => stats.pending = n,
            Ok(DeliveryStatus::Retrying) => stats.retrying = n,
            Ok(DeliveryStatus::Delivered) => stats.delivered = n,
            Ok(DeliveryStatus::Failed) => stats.failed = n,
            Err(_) => {}
        }
    }
    // Latency of the attempts that delivered (bounded sample, newest first).
    let mut stmt = c.prepare_cached(&format!(
        "SELECT last_duration_ms FROM deliveries WHERE {scope} AND status = 'delivered' \
         AND last_duration_ms IS NOT NULL ORDER BY created_at DESC LIMIT 100000"
    ))?;
    stats.success_durations_ms = stmt
        .query_map(params![since, webhook, owner], |r| r.get::<_, u32>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(stats)
}

pub fn prune(c: &Connection, before: i64) -> Result<u64, StoreError> {
    // By id, a range of the primary key: no index covers `created_at` alone,
    // and this runs in the writer, so a filter on it read the whole table
    // whenever nothing was old yet (every hour of a store's first retention
    // period), holding every ingest commit back meanwhile.
    let first_kept = DeliveryId::first_at(before);
    let finished: Vec<String> = c
        .prepare_cached(
            "SELECT id FROM deliveries WHERE id < ?1 AND status IN ('delivered', 'failed') LIMIT ?2",
        )?
        .query_map(params![first_kept.as_str(), PRUNE_CHUNK], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    // No foreign keys on the hot tables (migration 0002): attempts go first, by hand.
    let mut delete_attempts = c.prepare_cached("DELETE FROM attempts WHERE delivery_id = ?1")?;
    let mut delete_delivery = c.prepare_cached("DELETE FROM deliveries WHERE id = ?1")?;
    let mut deliveries = 0;
    for id in &finished {
        delete_attempts.execute([id])?;
        deliveries += delete_delivery.execute([id])?;
    }
    let events = c.execute(
        "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.created_at < ?1 \
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) LIMIT ?2)",
        params![before, PRUNE_CHUNK],
    )?;
    Ok((deliveries + events) as u64)
}
