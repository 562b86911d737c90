//! Claims: finding due work, claiming and releasing it, voiding the claims
//! of processes that are gone.

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use webhook_domain::delivery::DeliveryStatus;
use webhook_domain::ids::{DeliveryId, EventId, WebhookId};

use super::rows::corrupt;
use crate::store::{Claimed, DueDelivery, StoreError};

/// Most claims one writer job gives back.
///
/// A webhook whose circuit opens hands its whole memory window back at once
/// (thousands of ids). As one job it would hold every ingest commit behind
/// it, and so the latency of every other endpoint; in small chunks the
/// commits queued meanwhile go between them.
pub(super) const RELEASE_CHUNK: usize = 128;

/// The next webhook after `?1` with waiting (unclaimed, unfinished) work, and
/// its earliest waiting row's time: one seek into `deliveries_due_webhook`.
const NEXT_WAITING_WEBHOOK: &str = "SELECT webhook_id, next_attempt_at \
     FROM deliveries INDEXED BY deliveries_due_webhook \
     WHERE lease_owner IS NULL AND status IN ('pending', 'retrying') AND ordering_key IS NULL \
     AND webhook_id > ?1 ORDER BY webhook_id, next_attempt_at LIMIT 1";

/// One webhook's work due by `?2`, oldest first (read lazily, in a merge).
const DUE_OF_WEBHOOK: &str = "SELECT id, next_attempt_at \
     FROM deliveries INDEXED BY deliveries_due_webhook \
     WHERE webhook_id = ?1 AND lease_owner IS NULL AND status IN ('pending', 'retrying') \
     AND ordering_key IS NULL AND next_attempt_at <= ?2 ORDER BY next_attempt_at LIMIT ?3";

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
    // Heads of FIFO orders first: at most one per order, and each holds
    // back everything behind it until it finishes.
    let mut chosen = super::ordering::ready_heads(c, now, limit as usize, &excluded)?;
    let limit = limit - chosen.len() as u32;
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
    let unordered_from = chosen.len();
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
        while chosen.len() - unordered_from < limit as usize {
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
        "SELECT d.event_id, d.event_type, d.webhook_id, d.attempts, e.payload, d.ordering_key, d.created_at, d.status \
         FROM deliveries d JOIN events e ON e.id = d.event_id \
         WHERE d.id = ?1 AND d.lease_owner IS NULL AND d.status IN ('pending', 'retrying')",
    )?;
    let mut due = Vec::with_capacity(ids.len());
    for id in ids {
        // Claimed or finished since the search, or (as the join of the
        // earlier single query skipped it) without its event row: skipped.
        let Some((event_id, event_type, webhook_id, attempts, payload, order, created_at, status)) =
            load.query_row([id], |r| {
                let order = r.get::<_, Option<String>>(5)?;
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                    order,
                    r.get::<_, i64>(6)?,
                    r.get::<_, String>(7)?,
                ))
            })
            .optional()?
        else {
            continue;
        };
        // An ordered delivery found as its order's head on an older
        // snapshot: an earlier one of its order may be unfinished again
        // (retried by hand) since.
        if let Some(key) = order
            && super::ordering::blocked_by(c, &webhook_id, &key, id)?.is_some()
        {
            continue;
        }
        due.push(DueDelivery {
            id: DeliveryId::parse(id).map_err(|e| corrupt("delivery id", e))?,
            event_id: EventId::parse(&event_id).map_err(|e| corrupt("event id", e))?,
            event_type,
            webhook_id: WebhookId::parse(&webhook_id).map_err(|e| corrupt("webhook id", e))?,
            attempts: u32::try_from(attempts).unwrap_or(0),
            payload: Bytes::from(payload),
            claimed: Claimed {
                created_at,
                status: DeliveryStatus::parse(&status).map_err(|e| corrupt("status", e))?,
            },
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
