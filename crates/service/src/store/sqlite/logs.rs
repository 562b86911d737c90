//! The delivery log: listing, detail, manual retry, statistics and pruning.

use bytes::Bytes;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use webhook_domain::delivery::AttemptErrorKind;
use webhook_domain::ids::{DeliveryId, WebhookId};

use super::rows::{DELIVERY_COLUMNS, delivery_row};
use crate::store::{
    AttemptRecord, DeliveryDetail, DeliveryFilter, DeliveryRecord, DeliveryStats, Page, StoreError,
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
    if let Some(id) = only {
        values.push(SqlValue::Text(id.as_str().into()));
        clause.push_str(&format!(" AND id = ?{}", values.len()));
    }
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
            "UPDATE deliveries SET {placement}, \
             status = CASE WHEN attempts = 0 THEN 'pending' ELSE 'retrying' END, \
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
        let n = u64::try_from(n).unwrap_or(0);
        stats.add_count(&status, n);
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
