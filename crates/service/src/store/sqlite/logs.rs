//! The delivery log: listing, detail, manual retry, statistics and pruning.

use bytes::Bytes;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use webhook_domain::delivery::{AttemptErrorKind, DeliveryStatus};
use webhook_domain::ids::{DeliveryId, WebhookId};

use super::record;
use super::rows::{DELIVERY_COLUMNS, corrupt, delivery_row};
use crate::store::hourly::{self, Spans, Tally};
use crate::store::{
    AttemptRecord, DeliveryDetail, DeliveryFilter, DeliveryRecord, DeliveryStats, Page,
    PlatformBucket, StoreError,
};

/// Rows deleted per prune call, so the writer is never blocked for long.
const PRUNE_CHUNK: i64 = 5000;

/// The WHERE clause of a delivery filter, with its values (after the webhook id at ?1).
fn filter_clause(filter: &DeliveryFilter, values: &mut Vec<SqlValue>) -> String {
    let mut sql = String::new();
    let mut push = |clause: &str, value: SqlValue, values: &mut Vec<SqlValue>| {
        values.push(value);
        sql.push_str(&format!(" AND {clause} ?{}", values.len()));
    };
    if let Some(event_type) = &filter.event_type {
        push("event_type =", SqlValue::Text(event_type.clone()), values);
    }
    if let Some(since) = filter.since {
        push("created_at >=", SqlValue::Integer(since), values);
    }
    if let Some(until) = filter.until {
        push("created_at <", SqlValue::Integer(until), values);
    }
    if let Some(status) = filter.status {
        // Written out, not bound: SQLite uses a partial index (failed
        // deliveries, migration 0007) only when the query names its
        // condition literally. A status is one of four fixed words.
        sql.push_str(&format!(" AND status = '{}'", status.as_str()));
    }
    sql
}

/// The event types of the deliveries of each webhook in `scope(id)`, as
/// `types(webhook_id, name)`: one seek of `deliveries_type` (webhook_id,
/// event_type, created_at, then the primary key) per type, a skip over the
/// index instead of a walk of the log.
///
/// That index is the log's only one by webhook (migration 11), so a read of
/// a webhook's deliveries by time that names no type goes through it one
/// type at a time, each a range in the log's order. A webhook's deliveries
/// come in a few types (the catalogue holds 17).
const TYPES_OF_SCOPE: &str = "types(webhook_id, name) AS (\
     SELECT id, (SELECT event_type FROM deliveries d WHERE d.webhook_id = scope.id \
     ORDER BY d.event_type LIMIT 1) FROM scope \
     UNION ALL \
     SELECT webhook_id, (SELECT event_type FROM deliveries d WHERE d.webhook_id = types.webhook_id \
     AND d.event_type > types.name ORDER BY d.event_type LIMIT 1) FROM types WHERE name IS NOT NULL)";

/// `TYPES_OF_SCOPE` for the one webhook at `?1`, as the prefix of a
/// statement that reads `event_type IN (SELECT name FROM types)`.
fn with_types_of_webhook() -> String {
    format!("WITH RECURSIVE scope(id) AS (SELECT ?1), {TYPES_OF_SCOPE} ")
}

/// Whether a read of the log under `filter` goes through `deliveries_type`
/// type by type. One that names a type reads that type's range directly;
/// one for failed deliveries reads their own index (`deliveries_failed`,
/// webhook_id then created_at), through which a few failures among many
/// deliveries are found without looking at the others.
fn by_every_type(filter: &DeliveryFilter) -> bool {
    filter.event_type.is_none() && filter.status != Some(DeliveryStatus::Failed)
}

/// The newest-first page of the log under `clause`, from each of `types`'
/// ranges of `deliveries_type`: each is already in the log's order, so
/// SQLite merges them (a compound SELECT with ORDER BY is a merge of its
/// parts) and stops at the page's end, reading the index only; the page's
/// rows are read by primary key after. The types are bound from
/// `?first_type` on, as many parts as the next power of two (the unused
/// ones bound to NULL, which matches nothing), so that a few statements
/// serve every webhook.
pub(super) fn merged_page_sql(
    clause: &str,
    parts: usize,
    first_type: usize,
    limit_param: usize,
    offset_param: usize,
) -> String {
    let parts: Vec<String> = (0..parts)
        .map(|i| {
            format!(
                "SELECT id, created_at FROM deliveries WHERE webhook_id = ?1 \
                 AND event_type = ?{}{clause}",
                first_type + i
            )
        })
        .collect();
    format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id IN (SELECT id FROM ({} \
         ORDER BY created_at DESC, id DESC LIMIT ?{limit_param} OFFSET ?{offset_param})) \
         ORDER BY created_at DESC, id DESC",
        parts.join(" UNION ALL ")
    )
}

/// The event types `webhook`'s deliveries come in.
fn types_of_webhook(c: &Connection, webhook: &WebhookId) -> Result<Vec<String>, StoreError> {
    let mut stmt = c.prepare_cached(&format!(
        "{}SELECT name FROM types WHERE name IS NOT NULL",
        with_types_of_webhook()
    ))?;
    let names = stmt
        .query_map([webhook.as_str()], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(names)
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
    // Without a type, the webhook's types, bound once for the count and the
    // page alike: as many as the next power of two, the rest NULL (see
    // `merged_page_sql`).
    let types = if by_every_type(filter) {
        let types = types_of_webhook(c, webhook)?;
        if types.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                total: 0,
            });
        }
        let (first, parts) = (values.len() + 1, types.len().next_power_of_two());
        values.extend(types.into_iter().map(SqlValue::Text));
        values.resize(first - 1 + parts, SqlValue::Null);
        Some((first, parts))
    } else {
        None
    };
    let counted = match types {
        Some((first, parts)) => {
            let list: Vec<String> = (first..first + parts).map(|i| format!("?{i}")).collect();
            format!(" AND event_type IN ({}){clause}", list.join(", "))
        }
        None => clause.clone(),
    };
    let cap = i64::try_from(crate::store::log_count_cap(limit, offset)).unwrap_or(i64::MAX);
    values.push(SqlValue::Integer(cap));
    let total: i64 = c
        .prepare_cached(&format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM deliveries WHERE webhook_id = ?1{counted} LIMIT ?{})",
            values.len()
        ))?
        .query_row(params_from_iter(values.iter()), |r| r.get(0))?;
    values.pop();
    let n = values.len();
    values.push(SqlValue::Integer(i64::from(limit)));
    values.push(SqlValue::Integer(offset as i64));
    let sql = match types {
        Some((first, parts)) => merged_page_sql(&clause, parts, first, n + 1, n + 2),
        None => format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE webhook_id = ?1{clause} \
             ORDER BY created_at DESC, id DESC LIMIT ?{} OFFSET ?{}",
            n + 1,
            n + 2
        ),
    };
    let mut stmt = c.prepare_cached(&sql)?;
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
    let blocked_by = super::ordering::blocked_by_id(c, delivery)?;
    Ok(Some(DeliveryDetail {
        blocked_by,
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
    // A span of the log is its range of each type (see `TYPES_OF_SCOPE`).
    let prefix = if by_every_type(filter) && (filter.since.is_some() || filter.until.is_some()) {
        clause = format!(" AND event_type IN (SELECT name FROM types){clause}");
        with_types_of_webhook()
    } else {
        String::new()
    };
    if let Some(id) = only {
        values.push(SqlValue::Text(id.as_str().into()));
        clause.push_str(&format!(" AND id = ?{}", values.len()));
    }
    // Each of them moves from the slot it counts in to its waiting one (a
    // waiting one may stay where it is): read what they counted as before
    // they change (the same transaction, so the same rows).
    let mut tally = Tally::default();
    let mut matched = c.prepare_cached(&format!(
        "{prefix}SELECT webhook_id, created_at, status, last_duration_ms, attempts FROM deliveries \
         WHERE webhook_id = ?1 AND lease_owner IS NULL{clause}"
    ))?;
    let mut rows = matched.query(params_from_iter(values.iter()))?;
    while let Some(row) = rows.next()? {
        let status: String = row.get(2)?;
        let status = DeliveryStatus::parse(&status).map_err(|e| corrupt("delivery status", e))?;
        let webhook_id: String = row.get(0)?;
        let created_at: i64 = row.get(1)?;
        // As the update below decides it.
        let waiting = if row.get::<_, i64>(4)? == 0 {
            hourly::PENDING
        } else {
            hourly::RETRYING
        };
        tally.count(
            &webhook_id,
            created_at,
            hourly::any_slot(status, row.get(3)?),
            -1,
        );
        tally.count(&webhook_id, created_at, waiting, 1);
    }
    drop(rows);
    record::write_tally(c, &tally)?;
    values.push(SqlValue::Integer(now));
    let now_param = values.len();
    // A replayed delivery joins its webhook's current order at the end
    // (see `ordering::replay_placement`); unordered webhooks read one column.
    let ordering = c
        .prepare_cached("SELECT delivery_controls FROM webhooks WHERE id = ?1")?
        .query_row([webhook.as_str()], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten();
    let ordering = crate::store::DeliveryControls::from_column(ordering.as_deref())?.ordering;
    let (placement, place) = super::ordering::replay_placement(c, webhook, ordering)?;
    let placement = match place {
        Some(place) => {
            values.push(SqlValue::Integer(place));
            placement.replace("?p", &format!("?{}", values.len()))
        }
        None => placement,
    };
    // Deliveries held by the engine right now (lease_owner set) are left alone: they are being attempted.
    let n = c.execute(
        &format!(
            "{prefix}UPDATE deliveries SET {placement}, \
             status = CASE WHEN attempts = 0 THEN 'pending' ELSE 'retrying' END, \
             next_attempt_at = ?{now_param}, updated_at = ?{now_param} \
             WHERE webhook_id = ?1 AND lease_owner IS NULL{clause}"
        ),
        params_from_iter(values.iter()),
    )?;
    Ok(n as u64)
}

/// The webhooks a statistic covers, as a query of their ids with its
/// values: always through the webhooks table, so that even the admin's
/// "every webhook" reads each webhook's range of an index rather than the
/// whole table.
pub(super) fn stats_scope(
    owner: Option<&str>,
    webhook: Option<&WebhookId>,
) -> (String, Vec<SqlValue>) {
    let mut values = Vec::new();
    let mut conditions = Vec::new();
    if let Some(owner) = owner {
        values.push(SqlValue::Text(owner.into()));
        conditions.push(format!("owner_id = ?{}", values.len()));
    }
    if let Some(webhook) = webhook {
        values.push(SqlValue::Text(webhook.as_str().into()));
        conditions.push(format!("id = ?{}", values.len()));
    }
    let mut sql = String::from("SELECT id FROM webhooks");
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    (sql, values)
}

/// The status and duration of each delivery of the webhooks `scope` selects
/// created in [`?first`, `?second`): one range of `deliveries_type` per
/// webhook and type (see `TYPES_OF_SCOPE`).
pub(super) fn window_start_sql(scope: &str, first: usize, second: usize) -> String {
    format!(
        "WITH RECURSIVE scope(id) AS ({scope}), {TYPES_OF_SCOPE} \
         SELECT d.status, d.last_duration_ms FROM types JOIN deliveries d \
         ON d.webhook_id = types.webhook_id AND d.event_type = types.name \
         WHERE d.created_at >= ?{first} AND d.created_at < ?{second}"
    )
}

/// Counts of the deliveries in `scope` created since `since`: from the kept
/// aggregate (whole hours, waiting ones included) and, for the part of an
/// hour the window starts in, from the deliveries themselves.
pub fn delivery_stats(
    c: &Connection,
    owner: Option<&str>,
    webhook: Option<&WebhookId>,
    since: i64,
) -> Result<DeliveryStats, StoreError> {
    let since = since.max(0);
    let first_hour = hourly::hour_at_or_after(since);
    let (scope, scope_values) = stats_scope(owner, webhook);
    let n = scope_values.len();
    let with = |extra: &[i64]| {
        let mut values = scope_values.clone();
        values.extend(extra.iter().map(|v| SqlValue::Integer(*v)));
        values
    };
    let (first, second) = (n + 1, n + 2);
    let mut stats = DeliveryStats::default();
    // The start of the window, before its first whole hour.
    let mut stmt = c.prepare_cached(&window_start_sql(&scope, first, second))?;
    let mut rows = stmt.query(params_from_iter(with(&[
        since,
        first_hour * hourly::HOUR_MS,
    ])))?;
    while let Some(row) = rows.next()? {
        let status: String = row.get(0)?;
        let Ok(status) = DeliveryStatus::parse(&status) else {
            continue;
        };
        hourly::add_slot(&mut stats, hourly::any_slot(status, row.get(1)?), 1);
    }
    drop(rows);
    let mut stmt = c.prepare_cached(&format!(
        "SELECT slot, SUM(n) FROM delivery_hourly WHERE webhook_id IN ({scope}) \
         AND hour >= ?{first} GROUP BY slot"
    ))?;
    let rows = stmt.query_map(params_from_iter(with(&[first_hour])), |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (slot, n) = row?;
        hourly::add_slot(&mut stats, slot, n);
    }
    Ok(stats)
}

/// The statistics of one webhook per span of `spans`: one read of the
/// aggregate, which counts the waiting deliveries too.
pub fn delivery_buckets(
    c: &Connection,
    webhook: &WebhookId,
    spans: Spans,
) -> Result<Vec<DeliveryStats>, StoreError> {
    let mut out = vec![DeliveryStats::default(); spans.buckets as usize];
    let mut stmt = c.prepare_cached(
        "SELECT hour, slot, n FROM delivery_hourly WHERE webhook_id = ?1 AND hour >= ?2 AND hour < ?3",
    )?;
    let rows = stmt.query_map(
        params![webhook.as_str(), spans.first_hour, spans.end_hour()],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        },
    )?;
    for row in rows {
        let (hour, slot, n) = row?;
        if let Some(stats) = spans.of(&mut out, hour) {
            hourly::add_slot(stats, slot, n);
        }
    }
    Ok(out)
}

/// The figures of every webhook per span of `spans`: the kept aggregate
/// summed over all webhooks (each webhook's range of its primary key; its
/// waiting slots hold the pending and retrying counts, see `hourly`),
/// grouped by hour in SQL, and the events from `event_hourly`: at most a
/// few hundred rows come back whatever the volume.
pub fn platform_buckets(c: &Connection, spans: Spans) -> Result<Vec<PlatformBucket>, StoreError> {
    let mut out = vec![PlatformBucket::default(); spans.buckets as usize];
    let mut stmt = c.prepare_cached(
        "SELECT hour, slot, SUM(n) FROM delivery_hourly WHERE webhook_id IN (SELECT id FROM webhooks) \
         AND hour >= ?1 AND hour < ?2 GROUP BY hour, slot",
    )?;
    let rows = stmt.query_map(params![spans.first_hour, spans.end_hour()], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (hour, slot, n) = row?;
        if let Some(bucket) = spans.of(&mut out, hour) {
            hourly::add_slot(&mut bucket.deliveries, slot, n);
        }
    }
    // Every ingest transaction adds its new events to `event_hourly`
    // (migration 10): a few hundred rows at most, whatever the volume.
    let mut stmt =
        c.prepare_cached("SELECT hour, n FROM event_hourly WHERE hour >= ?1 AND hour < ?2")?;
    let rows = stmt.query_map(params![spans.first_hour, spans.end_hour()], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (hour, n) = row?;
        if let Some(bucket) = spans.of(&mut out, hour) {
            bucket.events += u64::try_from(n).unwrap_or(0);
        }
    }
    Ok(out)
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
    // Whole hours before the cutoff leave the aggregate, webhook by webhook
    // (a range of its primary key each), except the counts of deliveries
    // still waiting there: pruning keeps those deliveries too.
    c.prepare_cached(
        "DELETE FROM delivery_hourly WHERE webhook_id IN (SELECT id FROM webhooks) AND hour < ?1 \
         AND (slot NOT IN (-3, -4) OR n = 0)",
    )?
    .execute([hourly::hour_of(before)])?;
    c.prepare_cached("DELETE FROM event_hourly WHERE hour < ?1")?
        .execute([hourly::hour_of(before)])?;
    let events = c.execute(
        "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.created_at < ?1 \
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) LIMIT ?2)",
        params![before, PRUNE_CHUNK],
    )?;
    Ok((deliveries + events) as u64)
}
