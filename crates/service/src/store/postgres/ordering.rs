//! Ordered (FIFO) deliveries on PostgreSQL: numbering them under the
//! webhook row's lock, what a change of a webhook's ordering or a replay
//! does to the queue, and what the API shows of each order.
//!
//! The place of a delivery in its order comes from `webhooks.fifo_seq`,
//! taken with `FOR NO KEY UPDATE` inside the ingest transaction: a second
//! instance's commit for the same webhook waits for the first to commit and
//! numbers after it, so places follow acknowledgement across instances.
//! Only FIFO webhooks' rows are ever locked for this.

use std::collections::HashMap;

use webhook_domain::delivery::DeliveryStatus;
use webhook_domain::ids::{DeliveryId, WebhookId};
use webhook_domain::ordering::DeliveryOrder;

use super::pool::Conn;
use super::rows::{corrupt, get, unsigned};
use crate::store::{OrderHead, StoreError};

// In id order, as every lock on webhooks, so that ingests and attempt
// records of several webhooks cannot deadlock.
const LOCK_COUNTERS: &str =
    "SELECT id FROM webhooks WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE";
const TAKE_PLACES: &str = "UPDATE webhooks w SET fifo_seq = w.fifo_seq + u.n \
     FROM UNNEST($1::text[], $2::int8[]) AS u (id, n) WHERE w.id = u.id RETURNING w.id, w.fifo_seq";

/// Takes `n` places for each `(webhook, n)`; answers each webhook's last
/// one (a webhook deleted meanwhile is absent). Must run in a transaction,
/// which holds the counters' locks until it commits.
pub(super) async fn take_places(
    c: &mut Conn,
    wanted: &HashMap<&str, i64>,
) -> Result<HashMap<String, i64>, StoreError> {
    let ids: Vec<&str> = wanted.keys().copied().collect();
    let counts: Vec<i64> = ids.iter().map(|id| wanted[id]).collect();
    c.query(LOCK_COUNTERS, &[&ids]).await?;
    let mut last = HashMap::with_capacity(ids.len());
    for row in c.query(TAKE_PLACES, &[&ids, &counts]).await? {
        last.insert(get(&row, 0, "webhook id")?, get(&row, 1, "fifo place")?);
    }
    Ok(last)
}

// Orders hold only unfinished deliveries: they are queue rows (PostgreSQL
// migration 12), deleted when final.
const BLOCKED_BY: &str = "SELECT (SELECT h.id FROM delivery_queue h \
         WHERE h.webhook_id = d.webhook_id AND h.ordering_key = d.ordering_key AND h.ordering_key IS NOT NULL \
         AND (h.fifo_seq, h.id) < (d.fifo_seq, d.id) \
         ORDER BY h.fifo_seq, h.id LIMIT 1) \
     FROM delivery_queue d WHERE d.id = $1 AND d.ordering_key IS NOT NULL";

/// The head an unfinished ordered delivery waits for (`None` for one that
/// may go, is finished or is not ordered).
pub(super) async fn blocked_by(
    c: &mut Conn,
    delivery: &DeliveryId,
) -> Result<Option<DeliveryId>, StoreError> {
    let Some(row) = c.query_opt(BLOCKED_BY, &[&delivery.as_str()]).await? else {
        return Ok(None);
    };
    get::<Option<String>>(&row, 0, "head delivery id")?
        .map(|id| DeliveryId::parse(&id).map_err(|e| corrupt("delivery id", e)))
        .transpose()
}

/// The stored key of an ordered delivery as SQL over its log row `d`, by
/// `$2`, the webhook's `orderingKey` (`NULL`: not ordered).
macro_rules! key_of_row {
    () => {
        "CASE $2::text WHEN 'webhook' THEN '' WHEN 'userId' THEN d.user_id END"
    };
}

const UNORDER_QUEUE: &str = "UPDATE delivery_queue SET ordering_key = NULL, fifo_seq = NULL \
     WHERE webhook_id = $1 AND ordering_key IS NOT NULL";
const REORDER_QUEUE: &str = concat!(
    "WITH queue AS (SELECT id, row_number() OVER (ORDER BY fifo_seq NULLS FIRST, id) AS n \
         FROM delivery_queue WHERE webhook_id = $1), \
     counter AS (UPDATE webhooks SET fifo_seq = fifo_seq + (SELECT count(*) FROM queue) \
         WHERE id = $1 RETURNING fifo_seq - (SELECT count(*) FROM queue) AS before) \
     UPDATE delivery_queue w SET ordering_key = ",
    key_of_row!(),
    ", fifo_seq = (SELECT before FROM counter) + q.n FROM queue q, deliveries d \
     WHERE w.id = q.id AND d.id = q.id AND d.webhook_id = $1"
);

/// After a change of `webhook`'s ordering (inside the change's
/// transaction, which holds the webhook's lock): its unfinished deliveries
/// follow the new one. Switched off, they go unordered at once; switched
/// on or to another key, they are numbered into their new orders, those
/// already ordered in their old order first, then the rest by id.
pub(super) async fn reorder_queue(
    c: &mut Conn,
    webhook: &WebhookId,
    ordering: Option<DeliveryOrder>,
) -> Result<(), StoreError> {
    match ordering {
        None => c.execute(UNORDER_QUEUE, &[&webhook.as_str()]).await?,
        Some(order) => {
            c.execute(REORDER_QUEUE, &[&webhook.as_str(), &order.key().as_str()])
                .await?
        }
    };
    Ok(())
}

// The webhook's current `orderingKey` and a place after everything
// acknowledged so far, for a replay; no row (and no lock) when it is not
// ordered.
const REPLAY_PLACE: &str = "UPDATE webhooks SET fifo_seq = fifo_seq + 1 \
     WHERE id = $1 AND delivery_controls ? 'ordering' \
     RETURNING fifo_seq, delivery_controls->>'orderingKey'";

/// For a replay: the webhook's current ordering key (`webhook` / `userId`,
/// `None`: not ordered) and the place replayed deliveries take.
pub(super) async fn replay_place(
    c: &mut Conn,
    webhook: &WebhookId,
) -> Result<(Option<String>, Option<i64>), StoreError> {
    match c.query_opt(REPLAY_PLACE, &[&webhook.as_str()]).await? {
        Some(row) => Ok((
            get(&row, 1, "ordering key")?,
            Some(get(&row, 0, "fifo place")?),
        )),
        None => Ok((None, None)),
    }
}

// Each order's head, one seek per order (a loose index scan of
// `delivery_queue_fifo`), with the count of what waits behind it.
const HEADS: &str = "WITH RECURSIVE heads AS ( \
         (SELECT ordering_key, id, status FROM delivery_queue \
          WHERE webhook_id = $1 AND ordering_key IS NOT NULL \
          ORDER BY ordering_key, fifo_seq, id LIMIT 1) \
         UNION ALL \
         SELECT n.ordering_key, n.id, n.status FROM heads h CROSS JOIN LATERAL ( \
             SELECT ordering_key, id, status FROM delivery_queue \
             WHERE webhook_id = $1 AND ordering_key IS NOT NULL \
             AND ordering_key > h.ordering_key ORDER BY ordering_key, fifo_seq, id LIMIT 1) n) \
     SELECT h.ordering_key, h.id, h.status, d.attempts, w.waiting FROM heads h \
     JOIN deliveries d ON d.id = h.id CROSS JOIN LATERAL ( \
         SELECT count(*) - 1 AS waiting FROM delivery_queue \
         WHERE webhook_id = $1 AND ordering_key = h.ordering_key AND ordering_key IS NOT NULL) w \
     WHERE w.waiting > 0 LIMIT $2";

/// The heads of `webhook`'s orders with deliveries waiting behind them.
pub(super) async fn heads(
    c: &mut Conn,
    webhook: &WebhookId,
    limit: u32,
) -> Result<Vec<OrderHead>, StoreError> {
    let rows = c
        .query(HEADS, &[&webhook.as_str(), &i64::from(limit)])
        .await?;
    rows.iter()
        .map(|row| {
            let id: String = get(row, 1, "delivery id")?;
            let status: String = get(row, 2, "status")?;
            let waiting: i64 = get(row, 4, "waiting")?;
            Ok(OrderHead {
                key: get(row, 0, "ordering key")?,
                head: DeliveryId::parse(&id).map_err(|e| corrupt("delivery id", e))?,
                status: DeliveryStatus::parse(&status).map_err(|e| corrupt("status", e))?,
                attempts: unsigned(get(row, 3, "attempts")?),
                waiting: u64::try_from(waiting).unwrap_or(0),
            })
        })
        .collect()
}
