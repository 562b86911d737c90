//! The delivery log: listing, detail, manual retry, statistics and pruning.

use bytes::Bytes;
use webhook_domain::delivery::DeliveryStatus;
use webhook_domain::ids::{DeliveryId, WebhookId};

use super::pool::Conn;
use super::rows::{self, attempt_columns, delivery_columns, get, unsigned};
use crate::store::{
    DeliveryDetail, DeliveryFilter, DeliveryRecord, DeliveryStats, Page, StoreError,
};

/// Rows deleted per prune call, so no call holds locks for long.
const PRUNE_CHUNK: i64 = 5000;

/// The filter of [`DeliveryFilter`] on parameters $2..$5 (status, type, since, until).
macro_rules! filter {
    () => {
        " AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR event_type = $3) \
         AND ($4::int8 IS NULL OR created_at >= $4) AND ($5::int8 IS NULL OR created_at < $5)"
    };
}

const COUNT: &str = concat!(
    "SELECT COUNT(*) FROM deliveries WHERE webhook_id = $1",
    filter!()
);
const LIST: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM deliveries WHERE webhook_id = $1",
    filter!(),
    " ORDER BY created_at DESC, id DESC LIMIT $6 OFFSET $7"
);
const GET: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM deliveries WHERE id = $1 AND webhook_id = $2"
);
const PAYLOAD: &str = "SELECT payload FROM events WHERE id = $1";
const ATTEMPTS: &str = concat!(
    "SELECT ",
    attempt_columns!(),
    " FROM attempts WHERE delivery_id = $1 ORDER BY attempt"
);
// Deliveries held by an instance right now (lease_owner set) are left alone: they are being attempted.
// A replayed (finished) delivery joins its webhook's current order ($8, its
// `orderingKey`, NULL when not ordered) at place $9, after everything
// acknowledged before the replay; the SET clauses read the old status.
const REQUEUE: &str = concat!(
    "UPDATE deliveries SET \
     ordering_key = CASE WHEN status IN ('delivered', 'failed') \
     THEN (CASE $8::text WHEN 'webhook' THEN '' WHEN 'userId' THEN user_id END) ELSE ordering_key END, \
     fifo_seq = CASE WHEN status IN ('delivered', 'failed') THEN $9::int8 ELSE fifo_seq END, \
     status = CASE WHEN attempts = 0 THEN 'pending' ELSE 'retrying' END, \
     next_attempt_at = $7, updated_at = $7 WHERE webhook_id = $1 AND lease_owner IS NULL",
    filter!(),
    " AND ($6::text IS NULL OR id = $6)"
);
/// The deliveries a statistic covers: created since $1, of webhook $2 (if set), of owner $3 (if set).
macro_rules! stats_scope {
    () => {
        "created_at >= $1 AND ($2::text IS NULL OR webhook_id = $2) \
         AND ($3::text IS NULL OR webhook_id IN (SELECT id FROM webhooks WHERE owner_id = $3))"
    };
}
const STATS_COUNTS: &str = concat!(
    "SELECT status, COUNT(*) FROM deliveries WHERE ",
    stats_scope!(),
    " GROUP BY status"
);
// Latency of the attempts that delivered (bounded sample, newest first).
const STATS_DURATIONS: &str = concat!(
    "SELECT last_duration_ms FROM deliveries WHERE ",
    stats_scope!(),
    " AND status = 'delivered' AND last_duration_ms IS NOT NULL ORDER BY created_at DESC LIMIT 100000"
);
// By id, a range of the primary key, as on the embedded store (see `Store::prune`).
// The status is checked again on the row being deleted: a replay that
// requeued it after the subquery read it commits first, and PostgreSQL then
// re-evaluates only the outer conditions on the new row version, not the
// subquery's; without them the requeued delivery was deleted unsent.
const PRUNE_DELIVERIES: &str = "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries \
     WHERE id < $1 AND status IN ('delivered', 'failed') LIMIT $2) \
     AND status IN ('delivered', 'failed') RETURNING id";
// Then their attempts (migration 5: no foreign key cascades to them), in a
// later statement of the same transaction, so that it also sees an attempt
// committed by a recording that held a pruned delivery's lock meanwhile.
const PRUNE_ATTEMPTS: &str = "DELETE FROM attempts WHERE delivery_id = ANY($1::text[])";
const PRUNE_EVENTS: &str = "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.created_at < $1 \
     AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) LIMIT $2)";

/// The filter's values, in the order of [`filter!`].
fn filter_values(
    filter: &DeliveryFilter,
) -> (Option<&'static str>, Option<&str>, Option<i64>, Option<i64>) {
    (
        filter.status.map(DeliveryStatus::as_str),
        filter.event_type.as_deref(),
        filter.since,
        filter.until,
    )
}

/// A page of a webhook's deliveries, newest first.
pub(super) async fn list(
    c: &mut Conn,
    webhook: &WebhookId,
    filter: &DeliveryFilter,
    limit: u32,
    offset: u64,
) -> Result<Page<DeliveryRecord>, StoreError> {
    let (status, event_type, since, until) = filter_values(filter);
    let webhook = webhook.as_str();
    let total: i64 = get(
        &c.query_one(COUNT, &[&webhook, &status, &event_type, &since, &until])
            .await?,
        0,
        "count",
    )?;
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    let found = c
        .query(
            LIST,
            &[
                &webhook,
                &status,
                &event_type,
                &since,
                &until,
                &i64::from(limit),
                &offset,
            ],
        )
        .await?;
    let items = found
        .iter()
        .map(rows::delivery)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page {
        items,
        total: u64::try_from(total).unwrap_or(0),
    })
}

/// One delivery of `webhook` with its payload and attempts.
pub(super) async fn get_one(
    c: &mut Conn,
    webhook: &WebhookId,
    delivery: &DeliveryId,
) -> Result<Option<DeliveryDetail>, StoreError> {
    let Some(row) = c
        .query_opt(GET, &[&delivery.as_str(), &webhook.as_str()])
        .await?
    else {
        return Ok(None);
    };
    let record = rows::delivery(&row)?;
    let payload: Vec<u8> = get(
        &c.query_one(PAYLOAD, &[&record.event_id.as_str()]).await?,
        0,
        "payload",
    )?;
    let attempts = c
        .query(ATTEMPTS, &[&delivery.as_str()])
        .await?
        .iter()
        .map(rows::attempt)
        .collect::<Result<Vec<_>, _>>()?;
    let blocked_by = super::ordering::blocked_by(c, delivery).await?;
    Ok(Some(DeliveryDetail {
        delivery: record,
        payload: Bytes::from(payload),
        attempts,
        blocked_by,
    }))
}

/// Makes matching deliveries due at `now`; returns how many.
pub(super) async fn requeue(
    c: &mut Conn,
    webhook: &WebhookId,
    filter: &DeliveryFilter,
    only: Option<&DeliveryId>,
    now: i64,
) -> Result<u64, StoreError> {
    let (status, event_type, since, until) = filter_values(filter);
    let only = only.map(DeliveryId::as_str);
    // The place is taken under the webhook's lock, held until the replay
    // commits, like an ingest's.
    c.transaction(async |c| {
        let (key, place) = super::ordering::replay_place(c, webhook).await?;
        c.execute(
            REQUEUE,
            &[
                &webhook.as_str(),
                &status,
                &event_type,
                &since,
                &until,
                &only,
                &now,
                &key,
                &place,
            ],
        )
        .await
    })
    .await
}

/// Status counts and successful durations since `since`.
pub(super) async fn stats(
    c: &mut Conn,
    owner: Option<&str>,
    webhook: Option<&WebhookId>,
    since: i64,
) -> Result<DeliveryStats, StoreError> {
    let webhook = webhook.map(WebhookId::as_str);
    let mut stats = DeliveryStats::default();
    for row in c.query(STATS_COUNTS, &[&since, &webhook, &owner]).await? {
        let status: String = get(&row, 0, "status")?;
        let n = u64::try_from(get::<i64>(&row, 1, "count")?).unwrap_or(0);
        stats.add_count(&status, n);
    }
    stats.success_durations_ms = c
        .query(STATS_DURATIONS, &[&since, &webhook, &owner])
        .await?
        .iter()
        .map(|r| get::<i32>(r, 0, "duration").map(unsigned))
        .collect::<Result<_, _>>()?;
    Ok(stats)
}

/// Deletes a chunk of finished deliveries and unreferenced events created before `before`.
pub(super) async fn prune(c: &mut Conn, before: i64) -> Result<u64, StoreError> {
    let first_kept = DeliveryId::first_at(before);
    let deliveries = c
        .transaction(async |c| {
            let ids: Vec<String> = c
                .query(PRUNE_DELIVERIES, &[&first_kept.as_str(), &PRUNE_CHUNK])
                .await?
                .iter()
                .map(|r| get(r, 0, "delivery id"))
                .collect::<Result<_, _>>()?;
            if !ids.is_empty() {
                c.execute(PRUNE_ATTEMPTS, &[&ids]).await?;
            }
            Ok(ids.len() as u64)
        })
        .await?;
    let events = c.execute(PRUNE_EVENTS, &[&before, &PRUNE_CHUNK]).await?;
    Ok(deliveries + events)
}
