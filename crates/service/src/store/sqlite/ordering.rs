//! Ordered (FIFO) deliveries on the embedded store: numbering them as they
//! are inserted, finding each order's head, and what a change of a
//! webhook's ordering or a replay does to the queue.
//!
//! A FIFO delivery carries `ordering_key` (its order) and `fifo_seq` (its
//! place, from the webhook's counter). Unfinished ones live in
//! `deliveries_fifo`, not in the index the unordered claim search walks, so
//! only each order's head is ever offered, and webhooks without ordering
//! pay nothing for any of this.

use rusqlite::{Connection, OptionalExtension, params};
use webhook_domain::delivery::DeliveryStatus;
use webhook_domain::ids::{DeliveryId, WebhookId};
use webhook_domain::ordering::DeliveryOrder;

use super::rows::corrupt;
use crate::store::{OrderHead, StoreError};

/// The next order of webhook `?1` after key `?2` with unfinished work, and
/// its head: one seek into `deliveries_fifo`. (A row-value comparison over
/// both columns would read the index from the webhook's first row on.)
const NEXT_HEAD_OF_WEBHOOK: &str = "SELECT webhook_id, ordering_key, id \
     FROM deliveries INDEXED BY deliveries_fifo \
     WHERE ordering_key IS NOT NULL AND status IN ('pending', 'retrying') \
     AND webhook_id = ?1 AND ordering_key > ?2 \
     ORDER BY ordering_key, fifo_seq, id LIMIT 1";

/// The first order of the next webhook after `?1` with unfinished ordered
/// work, and its head: one seek.
const FIRST_HEAD_AFTER: &str = "SELECT webhook_id, ordering_key, id \
     FROM deliveries INDEXED BY deliveries_fifo \
     WHERE ordering_key IS NOT NULL AND status IN ('pending', 'retrying') AND webhook_id > ?1 \
     ORDER BY webhook_id, ordering_key, fifo_seq, id LIMIT 1";

/// The head of order `?2` of webhook `?1`: its first unfinished delivery.
const HEAD_OF_ORDER: &str = "SELECT id FROM deliveries INDEXED BY deliveries_fifo \
     WHERE webhook_id = ?1 AND ordering_key = ?2 AND ordering_key IS NOT NULL \
     AND status IN ('pending', 'retrying') ORDER BY fifo_seq, id LIMIT 1";

/// The statements that search for heads (their cost is checked in tests).
#[cfg(test)]
pub const HEAD_SEARCHES: [&str; 3] = [NEXT_HEAD_OF_WEBHOOK, FIRST_HEAD_AFTER, HEAD_OF_ORDER];

/// Takes the next `n` places of `webhook`'s orders; answers the last one.
pub fn take_places(c: &Connection, webhook: &str, n: i64) -> Result<i64, StoreError> {
    Ok(c.prepare_cached(
        "UPDATE webhooks SET fifo_seq = fifo_seq + ?2 WHERE id = ?1 RETURNING fifo_seq",
    )?
    .query_row(params![webhook, n], |r| r.get(0))?)
}

/// The heads of orders that may go now: unclaimed, due by `now`, of an
/// active webhook outside `excluded`; at most `limit`.
pub fn ready_heads(
    c: &Connection,
    now: i64,
    limit: usize,
    excluded: &std::collections::HashSet<&str>,
) -> Result<Vec<String>, StoreError> {
    let mut ready = Vec::new();
    if limit == 0 {
        return Ok(ready);
    }
    let mut next_of_webhook = c.prepare_cached(NEXT_HEAD_OF_WEBHOOK)?;
    let mut first_after = c.prepare_cached(FIRST_HEAD_AFTER)?;
    let mut head_state = c.prepare_cached(
        "SELECT lease_owner IS NULL AND next_attempt_at <= ?2 FROM deliveries WHERE id = ?1",
    )?;
    let mut active = c.prepare_cached("SELECT is_active FROM webhooks WHERE id = ?1")?;
    let mut usable: Option<(String, bool)> = None;
    let (mut webhook, mut key) = (String::new(), String::new());
    while ready.len() < limit {
        let row = |r: &rusqlite::Row<'_>| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        };
        // The rest of a paused or saturated webhook's orders are skipped
        // in one seek, not visited one by one.
        let skip_webhook = matches!(&usable, Some((id, false)) if *id == webhook);
        let found = match skip_webhook {
            true => None,
            false => next_of_webhook
                .query_row(params![webhook, key], row)
                .optional()?,
        };
        let found = match found {
            Some(found) => Some(found),
            None => first_after.query_row([&webhook], row).optional()?,
        };
        let Some((w, k, head)) = found else {
            break;
        };
        let webhook_usable = match &usable {
            Some((id, ok)) if *id == w => *ok,
            _ => {
                let ok = !excluded.contains(w.as_str())
                    && active
                        .query_row([&w], |r| r.get::<_, bool>(0))
                        .optional()?
                        .unwrap_or(false);
                usable = Some((w.clone(), ok));
                ok
            }
        };
        if webhook_usable
            && head_state
                .query_row(params![head, now], |r| r.get::<_, bool>(0))
                .optional()?
                .unwrap_or(false)
        {
            ready.push(head);
        }
        (webhook, key) = (w, k);
    }
    Ok(ready)
}

/// The head that unfinished delivery `id` (of `webhook`, in order `key`)
/// waits for, if any: its order's head, unless that is itself.
pub fn blocked_by(
    c: &Connection,
    webhook: &str,
    key: &str,
    id: &str,
) -> Result<Option<String>, StoreError> {
    let head: Option<String> = c
        .prepare_cached(HEAD_OF_ORDER)?
        .query_row(params![webhook, key], |r| r.get(0))
        .optional()?;
    Ok(head.filter(|head| head != id))
}

/// The head an unfinished ordered delivery waits for (`None` for one that
/// may go, is finished or is not ordered).
pub fn blocked_by_id(
    c: &Connection,
    delivery: &DeliveryId,
) -> Result<Option<DeliveryId>, StoreError> {
    let row = c
        .prepare_cached(
            "SELECT webhook_id, ordering_key FROM deliveries WHERE id = ?1 \
             AND ordering_key IS NOT NULL AND status IN ('pending', 'retrying')",
        )?
        .query_row([delivery.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?;
    let Some((webhook, key)) = row else {
        return Ok(None);
    };
    blocked_by(c, &webhook, &key, delivery.as_str())?
        .map(|id| DeliveryId::parse(&id).map_err(|e| corrupt("delivery id", e)))
        .transpose()
}

/// The stored key of a delivery of an event about `user_id` under
/// `ordering`, as SQL over the row's `user_id` (`NULL`: not ordered).
fn key_expression(ordering: Option<DeliveryOrder>) -> &'static str {
    use webhook_domain::ordering::OrderingKey;
    match ordering.map(|o| o.key()) {
        None => "NULL",
        Some(OrderingKey::Webhook) => "''",
        Some(OrderingKey::UserId) => "user_id",
    }
}

/// After a change of `webhook`'s ordering: its unfinished deliveries follow
/// the new one. Switched off, they go unordered at once; switched on or to
/// another key, they are numbered into their new orders, those already
/// ordered in their old order first, then the rest by id (creation order).
pub fn reorder_queue(
    c: &Connection,
    webhook: &WebhookId,
    ordering: Option<DeliveryOrder>,
) -> Result<(), StoreError> {
    let webhook = webhook.as_str();
    if ordering.is_none() {
        c.prepare_cached(
            "UPDATE deliveries SET ordering_key = NULL, fifo_seq = NULL \
             WHERE webhook_id = ?1 AND ordering_key IS NOT NULL AND status IN ('pending', 'retrying')",
        )?
        .execute([webhook])?;
        return Ok(());
    }
    let ids: Vec<String> = c
        .prepare_cached(
            "SELECT id FROM deliveries WHERE webhook_id = ?1 AND status IN ('pending', 'retrying') \
             ORDER BY fifo_seq IS NOT NULL, fifo_seq, id",
        )?
        .query_map([webhook], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(());
    }
    let last = take_places(c, webhook, ids.len() as i64)?;
    let first = last - ids.len() as i64 + 1;
    let mut place = c.prepare(&format!(
        "UPDATE deliveries SET ordering_key = {}, fifo_seq = ?2 WHERE id = ?1",
        key_expression(ordering)
    ))?;
    for (n, id) in ids.iter().enumerate() {
        place.execute(params![id, first + n as i64])?;
    }
    Ok(())
}

/// For a replay of `webhook`'s finished deliveries: the SQL that sets their
/// order (the webhook's current one) and place (the next one, after
/// everything acknowledged so far), for an UPDATE over those rows; `?p` is
/// the place's parameter. `None` when the webhook is not ordered now: the
/// replayed ones go unordered, whatever order they had.
pub fn replay_placement(
    c: &Connection,
    webhook: &WebhookId,
    ordering: Option<DeliveryOrder>,
) -> Result<(String, Option<i64>), StoreError> {
    let key = key_expression(ordering);
    let finished = "status IN ('delivered', 'failed')";
    if ordering.is_none() {
        return Ok((
            format!("ordering_key = CASE WHEN {finished} THEN NULL ELSE ordering_key END"),
            None,
        ));
    }
    let place = take_places(c, webhook.as_str(), 1)?;
    Ok((
        format!(
            "ordering_key = CASE WHEN {finished} THEN {key} ELSE ordering_key END, \
             fifo_seq = CASE WHEN {finished} THEN ?p ELSE fifo_seq END"
        ),
        Some(place),
    ))
}

/// The heads of `webhook`'s orders with deliveries waiting behind them.
pub fn heads(
    c: &Connection,
    webhook: &WebhookId,
    limit: u32,
) -> Result<Vec<OrderHead>, StoreError> {
    let mut next = c.prepare_cached(
        "SELECT ordering_key, id, status, attempts FROM deliveries INDEXED BY deliveries_fifo \
         WHERE webhook_id = ?1 AND ordering_key IS NOT NULL AND status IN ('pending', 'retrying') \
         AND ordering_key > ?2 ORDER BY ordering_key, fifo_seq, id LIMIT 1",
    )?;
    let mut first = c.prepare_cached(
        "SELECT ordering_key, id, status, attempts FROM deliveries INDEXED BY deliveries_fifo \
         WHERE webhook_id = ?1 AND ordering_key IS NOT NULL AND status IN ('pending', 'retrying') \
         ORDER BY ordering_key, fifo_seq, id LIMIT 1",
    )?;
    let mut count = c.prepare_cached(
        "SELECT COUNT(*) FROM deliveries INDEXED BY deliveries_fifo \
         WHERE webhook_id = ?1 AND ordering_key = ?2 AND ordering_key IS NOT NULL \
         AND status IN ('pending', 'retrying')",
    )?;
    let row = |r: &rusqlite::Row<'_>| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
        ))
    };
    let mut heads = Vec::new();
    let mut found = first.query_row([webhook.as_str()], row).optional()?;
    while let Some((key, id, status, attempts)) = found {
        if heads.len() >= limit as usize {
            break;
        }
        let unfinished: i64 = count.query_row(params![webhook.as_str(), key], |r| r.get(0))?;
        if unfinished > 1 {
            heads.push(OrderHead {
                key: key.clone(),
                head: DeliveryId::parse(&id).map_err(|e| corrupt("delivery id", e))?,
                status: DeliveryStatus::parse(&status).map_err(|e| corrupt("status", e))?,
                attempts: u32::try_from(attempts).unwrap_or(0),
                waiting: (unfinished - 1) as u64,
            });
        }
        found = next
            .query_row(params![webhook.as_str(), key], row)
            .optional()?;
    }
    Ok(heads)
}
