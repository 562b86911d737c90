//! The delivery log: listing, detail, manual retry, statistics and pruning.

use bytes::Bytes;
use webhook_domain::delivery::DeliveryStatus;
use webhook_domain::ids::{DeliveryId, WebhookId};

use super::pool::Conn;
use super::record;
use super::rows::{self, attempt_columns, delivery_columns, get, unsigned};
use crate::store::hourly::{self, Spans, Tally};
use crate::store::{
    DeliveryDetail, DeliveryFilter, DeliveryRecord, DeliveryStats, Page, PlatformBucket, StoreError,
};

/// Rows deleted per prune call, so no call holds locks for long.
const PRUNE_CHUNK: i64 = 5000;

/// The filter of [`DeliveryFilter`] on parameters $2..$5 (status, type, since, until).
///
/// A failed delivery also has `failed_at` (PostgreSQL migration 12): planned
/// for `status = 'failed'`, the second condition becomes `failed_at IS NOT
/// NULL`, which `deliveries_failed` holds (an index on `status` would make
/// every result's update a non-HOT one).
macro_rules! filter {
    () => {
        " AND ($2::text IS NULL OR status = $2) AND ($2::text IS DISTINCT FROM 'failed' OR failed_at IS NOT NULL) \
         AND ($3::text IS NULL OR event_type = $3) \
         AND ($4::int8 IS NULL OR created_at >= $4) AND ($5::int8 IS NULL OR created_at < $5)"
    };
}

/// [`filter!`] with the event type given: `event_type = $3` named
/// literally, so that a generic plan can read `deliveries_type`
/// (`($3 IS NULL OR event_type = $3)` can use no index).
macro_rules! filter_of_type {
    () => {
        " AND ($2::text IS NULL OR status = $2) AND ($2::text IS DISTINCT FROM 'failed' OR failed_at IS NOT NULL) \
         AND event_type = $3 \
         AND ($4::int8 IS NULL OR created_at >= $4) AND ($5::int8 IS NULL OR created_at < $5)"
    };
}

// Counted up to $6 (`log_count_cap`), not every match, newest first as the
// log reads: walked in an index's order, the count stops at the cap. Without
// the order the planner counted through a bitmap of every index entry of the
// webhook (a bitmap cannot stop early) or a sequential scan that reads the
// whole table when the webhook's deliveries are few: 40-80 ms at 200,000
// deliveries of a webhook (performance log, 2026-12-06).
const COUNT: &str = concat!(
    "SELECT COUNT(*) FROM (SELECT 1 FROM deliveries WHERE webhook_id = $1",
    filter!(),
    " ORDER BY created_at DESC, id DESC LIMIT $6) AS counted"
);
const LIST: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM deliveries WHERE webhook_id = $1",
    filter!(),
    " ORDER BY created_at DESC, id DESC LIMIT $6 OFFSET $7"
);
const COUNT_OF_TYPE: &str = concat!(
    "SELECT COUNT(*) FROM (SELECT 1 FROM deliveries WHERE webhook_id = $1",
    filter_of_type!(),
    " ORDER BY created_at DESC, id DESC LIMIT $6) AS counted"
);
const LIST_OF_TYPE: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM deliveries WHERE webhook_id = $1",
    filter_of_type!(),
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
// Deliveries held by an instance right now (claimed in the queue, or, for
// an older release's instance, in the log's owner column) are left alone:
// they are being attempted. A finished delivery gets a queue row again; a
// waiting one that nobody holds becomes due at $7 (if an instance claimed
// it meanwhile, its row is left as it is, and so is its log row). The log
// row's owner becomes the queue's.
// A replayed (finished) delivery joins its webhook's current order ($8, its
// `orderingKey`, NULL when not ordered) at place $9, after everything
// acknowledged before the replay. The log rows are locked first, so that
// their status and duration before the change (which the kept aggregate
// loses, and which decide whether a delivery takes a new place) are the
// ones this update replaces.
const REQUEUE: &str = concat!(
    "WITH old AS (SELECT id, webhook_id, created_at, status, last_duration_ms, user_id, attempts \
     FROM deliveries d WHERE webhook_id = $1",
    filter!(),
    " AND ($6::text IS NULL OR id = $6) \
     AND NOT EXISTS (SELECT 1 FROM delivery_queue q WHERE q.id = d.id AND q.lease_owner IS NOT NULL) \
     AND (d.lease_owner IS NULL OR d.lease_owner = 'delivery_queue') \
     FOR UPDATE), \
     queued AS (\
     INSERT INTO delivery_queue (id, webhook_id, status, next_attempt_at, ordering_key, fifo_seq, created_at) \
     SELECT id, webhook_id, CASE WHEN attempts = 0 THEN 'pending' ELSE 'retrying' END, $7, \
     CASE WHEN status IN ('delivered', 'failed') \
     THEN (CASE $8::text WHEN 'webhook' THEN '' WHEN 'userId' THEN user_id END) END, \
     CASE WHEN status IN ('delivered', 'failed') AND $8::text IS NOT NULL THEN $9::int8 END, created_at \
     FROM old ON CONFLICT (id) DO UPDATE SET next_attempt_at = EXCLUDED.next_attempt_at \
     WHERE delivery_queue.lease_owner IS NULL RETURNING id) \
     UPDATE deliveries d SET status = CASE WHEN d.attempts = 0 THEN 'pending' ELSE 'retrying' END, \
     next_attempt_at = $7, updated_at = $7, failed_at = NULL, lease_owner = 'delivery_queue' \
     FROM old WHERE d.id = old.id AND old.id IN (SELECT id FROM queued) \
     RETURNING old.id, old.webhook_id, old.created_at, old.status, old.last_duration_ms"
);
// Replays and attempt records of one webhook take its row's lock first, so
// that neither waits for the other's queue and log rows in the opposite
// order.
const LOCK_WEBHOOK: &str = "SELECT 1 FROM webhooks WHERE id = $1 FOR NO KEY UPDATE";
/// The webhooks a statistic covers: webhook $1 (if set) of owner $2 (if
/// set). Each webhook's range of an index is read, even for the admin's
/// "every webhook", never the whole table.
macro_rules! stats_scope {
    () => {
        "webhook_id IN (SELECT id FROM webhooks WHERE ($2::text IS NULL OR owner_id = $2)) \
         AND ($1::text IS NULL OR webhook_id = $1)"
    };
}
// The live counts of waiting deliveries (the queue, through
// `delivery_queue_open`) created since $3.
const STATS_OPEN: &str = concat!(
    "SELECT status, COUNT(*) FROM delivery_queue WHERE ",
    stats_scope!(),
    " AND created_at >= $3 GROUP BY status"
);
// Finished deliveries created between $3 and $4 (the part of an hour the
// window starts in), counted one by one.
const STATS_HEAD: &str = concat!(
    "SELECT status, last_duration_ms, COUNT(*) FROM deliveries WHERE ",
    stats_scope!(),
    " AND status IN ('delivered', 'failed') AND created_at >= $3 AND created_at < $4 \
     GROUP BY status, last_duration_ms"
);
// The kept aggregate from hour $3 on.
const STATS_HOURLY: &str = concat!(
    "SELECT slot, SUM(n)::int8 FROM delivery_hourly WHERE ",
    stats_scope!(),
    " AND hour >= $3 GROUP BY slot"
);
const BUCKETS_HOURLY: &str = "SELECT hour, slot, n FROM delivery_hourly \
     WHERE webhook_id = $1 AND hour >= $2 AND hour < $3";
const BUCKETS_OPEN: &str = "SELECT created_at, status FROM delivery_queue WHERE webhook_id = $1 \
     AND created_at >= $2 AND created_at < $3";
// Every webhook's kept aggregate over hours $1..$2, summed per hour and slot
// (each webhook's range of the primary key, never the whole table).
const PLATFORM_HOURLY: &str = "SELECT hour, slot, SUM(n)::int8 FROM delivery_hourly \
     WHERE webhook_id IN (SELECT id FROM webhooks) AND hour >= $1 AND hour < $2 GROUP BY hour, slot";
// Every webhook's waiting deliveries created between $1 and $2, per hour
// (`delivery_queue_open`).
const PLATFORM_OPEN: &str = "SELECT created_at / 3600000, status, COUNT(*) FROM delivery_queue \
     WHERE webhook_id IN (SELECT id FROM webhooks) \
     AND created_at >= $1 AND created_at < $2 GROUP BY 1, 2";
// Events stored in hours $1..$2, per hour: every writer's count (migration 11).
const PLATFORM_EVENTS: &str = "SELECT hour, SUM(n)::int8 FROM event_hourly \
     WHERE hour >= $1 AND hour < $2 GROUP BY hour";
// Whole hours before the cutoff, webhook by webhook.
const PRUNE_HOURLY: &str =
    "DELETE FROM delivery_hourly WHERE webhook_id IN (SELECT id FROM webhooks) AND hour < $1";
// The events' counts of the same hours.
const PRUNE_EVENT_HOURLY: &str = "DELETE FROM event_hourly WHERE hour < $1";
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
    let cap = i64::try_from(crate::store::log_count_cap(limit, offset)).unwrap_or(i64::MAX);
    let (count, list) = if event_type.is_some() {
        (COUNT_OF_TYPE, LIST_OF_TYPE)
    } else {
        (COUNT, LIST)
    };
    let total: i64 = get(
        &c.query_one(
            count,
            &[&webhook, &status, &event_type, &since, &until, &cap],
        )
        .await?,
        0,
        "count",
    )?;
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    let found = c
        .query(
            list,
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

/// Makes matching deliveries due at `now`; returns how many. The finished
/// ones among them leave the kept aggregate in the same transaction.
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
        c.query(LOCK_WEBHOOK, &[&webhook.as_str()]).await?;
        let (key, place) = super::ordering::replay_place(c, webhook).await?;
        let rows = c
            .query(
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
            .await?;
        let mut tally = Tally::default();
        for row in &rows {
            record::count_finished(&mut tally, row, 1, -1)?;
        }
        record::write_tally(c, &tally).await?;
        Ok(rows.len() as u64)
    })
    .await
}

/// Counts of the deliveries in scope created since `since`: the finished
/// ones from the kept aggregate (whole hours) and, for the part of an hour
/// the window starts in, from the deliveries; the waiting ones live.
pub(super) async fn stats(
    c: &mut Conn,
    owner: Option<&str>,
    webhook: Option<&WebhookId>,
    since: i64,
) -> Result<DeliveryStats, StoreError> {
    let webhook = webhook.map(WebhookId::as_str);
    let since = since.max(0);
    let first_hour = hourly::hour_at_or_after(since);
    let mut stats = DeliveryStats::default();
    for row in c.query(STATS_OPEN, &[&webhook, &owner, &since]).await? {
        let status: String = get(&row, 0, "status")?;
        let n = u64::try_from(get::<i64>(&row, 1, "count")?).unwrap_or(0);
        stats.add_count(&status, n);
    }
    let head_end = first_hour * hourly::HOUR_MS;
    for row in c
        .query(STATS_HEAD, &[&webhook, &owner, &since, &head_end])
        .await?
    {
        let status: String = get(&row, 0, "status")?;
        let Ok(status) = DeliveryStatus::parse(&status) else {
            continue;
        };
        let duration: Option<i32> = get(&row, 1, "duration")?;
        if let Some(slot) = hourly::slot(status, duration.map(unsigned)) {
            hourly::add_slot(&mut stats, slot, get(&row, 2, "count")?);
        }
    }
    for row in c
        .query(STATS_HOURLY, &[&webhook, &owner, &first_hour])
        .await?
    {
        let slot: i32 = get(&row, 0, "slot")?;
        hourly::add_slot(&mut stats, i64::from(slot), get(&row, 1, "count")?);
    }
    Ok(stats)
}

/// One webhook's statistics per span of `spans`.
pub(super) async fn buckets(
    c: &mut Conn,
    webhook: &WebhookId,
    spans: Spans,
) -> Result<Vec<DeliveryStats>, StoreError> {
    let mut out = vec![DeliveryStats::default(); spans.buckets as usize];
    let webhook = webhook.as_str();
    let (first_hour, end_hour) = (spans.first_hour, spans.end_hour());
    for row in c
        .query(BUCKETS_HOURLY, &[&webhook, &first_hour, &end_hour])
        .await?
    {
        let hour: i64 = get(&row, 0, "hour")?;
        let slot: i32 = get(&row, 1, "slot")?;
        if let Some(stats) = spans.of(&mut out, hour) {
            hourly::add_slot(stats, i64::from(slot), get(&row, 2, "count")?);
        }
    }
    let (start, end) = spans.range_ms();
    for row in c.query(BUCKETS_OPEN, &[&webhook, &start, &end]).await? {
        let created_at: i64 = get(&row, 0, "created at")?;
        let status: String = get(&row, 1, "status")?;
        if let Some(stats) = spans.of(&mut out, hourly::hour_of(created_at)) {
            stats.add_count(&status, 1);
        }
    }
    Ok(out)
}

/// The figures of every webhook per span of `spans`: the kept aggregate
/// summed over all webhooks, the waiting deliveries and the events, each
/// grouped by hour in SQL (a few hundred rows at most).
pub(super) async fn platform_buckets(
    c: &mut Conn,
    spans: Spans,
) -> Result<Vec<PlatformBucket>, StoreError> {
    let mut out = vec![PlatformBucket::default(); spans.buckets as usize];
    let (first_hour, end_hour) = (spans.first_hour, spans.end_hour());
    for row in c.query(PLATFORM_HOURLY, &[&first_hour, &end_hour]).await? {
        let hour: i64 = get(&row, 0, "hour")?;
        let slot: i32 = get(&row, 1, "slot")?;
        if let Some(bucket) = spans.of(&mut out, hour) {
            hourly::add_slot(
                &mut bucket.deliveries,
                i64::from(slot),
                get(&row, 2, "count")?,
            );
        }
    }
    let (start, end) = spans.range_ms();
    for row in c.query(PLATFORM_OPEN, &[&start, &end]).await? {
        let hour: i64 = get(&row, 0, "hour")?;
        let status: String = get(&row, 1, "status")?;
        let n: i64 = get(&row, 2, "count")?;
        if let Some(bucket) = spans.of(&mut out, hour) {
            bucket
                .deliveries
                .add_count(&status, u64::try_from(n).unwrap_or(0));
        }
    }
    for row in c.query(PLATFORM_EVENTS, &[&first_hour, &end_hour]).await? {
        let hour: i64 = get(&row, 0, "hour")?;
        let n: i64 = get(&row, 1, "count")?;
        if let Some(bucket) = spans.of(&mut out, hour) {
            bucket.events += u64::try_from(n).unwrap_or(0);
        }
    }
    Ok(out)
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
    let cutoff = hourly::hour_of(before);
    c.execute(PRUNE_HOURLY, &[&cutoff]).await?;
    c.execute(PRUNE_EVENT_HOURLY, &[&cutoff]).await?;
    let events = c.execute(PRUNE_EVENTS, &[&before, &PRUNE_CHUNK]).await?;
    Ok(deliveries + events)
}
