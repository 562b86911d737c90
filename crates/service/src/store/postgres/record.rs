//! Recording attempts: the attempt log, the deliveries' new states, and the
//! webhooks' failure tracking (the shared rules of [`crate::store::health`]).

use std::collections::{BTreeMap, HashSet};

use webhook_domain::delivery::{AttemptErrorKind, DeliveryStatus};
use webhook_domain::ids::{UserId, WebhookId};

use super::pool::Conn;
use super::rows::{corrupt, get, signed, unsigned};
use crate::store::health::{self, StoredHealth};
use crate::store::hourly::{self, Tally};
use crate::store::{AttemptReport, DisabledWebhook, FailurePolicy, StoreError, headers_json};

// An attempt of a delivery deleted meanwhile (its webhook was removed) is dropped.
const UPSERT_ATTEMPTS: &str = "INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, request_headers, \
     status_code, response_headers, response_body, error_kind, error_message) \
     SELECT u.* FROM UNNEST($1::text[], $2::int4[], $3::int8[], $4::int4[], $5::text[], $6::int4[], $7::text[], \
     $8::text[], $9::text[], $10::text[]) AS u (delivery_id, attempt, started_at, duration_ms, request_headers, \
     status_code, response_headers, response_body, error_kind, error_message) \
     WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.id = u.delivery_id) \
     ON CONFLICT (delivery_id, attempt) DO UPDATE SET started_at = EXCLUDED.started_at, \
     duration_ms = EXCLUDED.duration_ms, request_headers = EXCLUDED.request_headers, \
     status_code = EXCLUDED.status_code, response_headers = EXCLUDED.response_headers, \
     response_body = EXCLUDED.response_body, error_kind = EXCLUDED.error_kind, \
     error_message = EXCLUDED.error_message";

// Only an unfinished delivery takes a report (a claimed one always is), so
// a final status written here is new: it is counted in the kept aggregate.
// Unfinished means it has a queue row (PostgreSQL migration 12): a final
// report deletes it, a waiting one (a retry) updates it, and the log rows
// of the ids either returned are updated next. The log row's update changes
// no indexed column (`failed_at` only when a delivery fails for good), so
// it is a HOT update where its page has room.
//
// The claim check (see `Store::record_attempts`) is one expression that no
// index serves: written as `lease_owner = $10 OR (lease_owner IS NULL AND
// ...)`, the planner read every delivery this instance had claimed through
// a BitmapOr of two indexes and joined them to the batch by a filter, and
// PostgreSQL's CPU per delivery rose by about a third in `throughput`. A
// NULL owner makes the comparison NULL, so COALESCE falls to TRUE. Every
// statement probes the primary key once per id (an array, or a nested loop
// over the unnested batch): the writers have hash joins off, and a join of
// two CTEs compared every report with every row, quadratic in a batch of
// thousands.
const TAKE_FROM_QUEUE: &str = "WITH finished AS (\
     DELETE FROM delivery_queue q WHERE q.id = ANY($1::text[]) AND COALESCE(q.lease_owner = $5, TRUE) \
     RETURNING q.id), \
     waiting AS (\
     UPDATE delivery_queue q SET status = u.status, next_attempt_at = u.next_attempt_at, lease_owner = NULL \
     FROM UNNEST($2::text[], $3::text[], $4::int8[]) AS u (id, status, next_attempt_at) \
     WHERE q.id = u.id AND COALESCE(q.lease_owner = $5, TRUE) RETURNING q.id) \
     SELECT id FROM finished UNION ALL SELECT id FROM waiting";

const UPDATE_DELIVERIES: &str = "UPDATE deliveries d SET status = u.status, attempts = u.attempts, \
     next_attempt_at = u.next_attempt_at, last_status_code = u.status_code, \
     last_error_kind = u.error_kind, last_error = u.error_message, last_duration_ms = u.duration_ms, \
     updated_at = $9, delivered_at = CASE WHEN u.status = 'delivered' THEN $9 ELSE d.delivered_at END, \
     failed_at = CASE WHEN u.status = 'failed' THEN $9 END \
     FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::int8[], $5::int4[], $6::text[], $7::text[], $8::int4[]) \
     AS u (id, status, attempts, next_attempt_at, status_code, error_kind, error_message, duration_ms) \
     WHERE d.id = u.id AND d.status IN ('pending', 'retrying') \
     RETURNING d.id, d.webhook_id, d.created_at, d.status, d.last_duration_ms";

// Sorted, so that two instances take the rows' locks in one order.
const UPSERT_HOURLY: &str = "INSERT INTO delivery_hourly (webhook_id, hour, slot, n) \
     SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int4[], $4::int8[]) AS u (webhook_id, hour, slot, n) \
     ORDER BY webhook_id, hour, slot \
     ON CONFLICT (webhook_id, hour, slot) DO UPDATE SET n = delivery_hourly.n + EXCLUDED.n";

// FOR NO KEY UPDATE: does not conflict with the key-share locks that
// concurrent ingests take on the webhooks they write deliveries for.
const LOCK_WEBHOOKS: &str = "SELECT id, owner_id, url, is_active, failing_since, consecutive_exhausted \
     FROM webhooks WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE";

const UPDATE_HEALTH: &str = "UPDATE webhooks w SET failing_since = u.failing_since, \
     consecutive_exhausted = u.exhausted, \
     is_active = CASE WHEN u.reason IS NULL THEN w.is_active ELSE FALSE END, \
     disabled_reason = COALESCE(u.reason, w.disabled_reason), \
     disabled_at = CASE WHEN u.reason IS NULL THEN w.disabled_at ELSE $5 END, \
     updated_at = CASE WHEN u.reason IS NULL THEN w.updated_at ELSE $5 END \
     FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[]) AS u (id, failing_since, exhausted, reason) \
     WHERE w.id = u.id";

/// Records `reports` in order (a later report of the same delivery wins);
/// returns the webhooks it disabled.
pub(super) async fn write(
    c: &mut Conn,
    owner: &str,
    reports: &[AttemptReport],
    policy: FailurePolicy,
    now: i64,
) -> Result<Vec<DisabledWebhook>, StoreError> {
    if reports.is_empty() {
        return Ok(Vec::new());
    }
    // One row per key, the last report winning, as if applied one by one;
    // sorted so concurrent writers lock rows in one order.
    let mut attempts: BTreeMap<(&str, u32), &AttemptReport> = BTreeMap::new();
    let mut deliveries: BTreeMap<&str, &AttemptReport> = BTreeMap::new();
    for report in reports {
        attempts.insert(
            (report.delivery_id.as_str(), report.attempt.attempt),
            report,
        );
        deliveries.insert(report.delivery_id.as_str(), report);
    }
    // Webhooks, then deliveries, then attempts: a webhook's deletion locks
    // the webhook first and then deletes its deliveries and their attempts,
    // so taking the locks in the same order cannot deadlock with it, and an
    // attempt is only written for a delivery this transaction has locked by
    // updating it (no foreign key checks it since migration 5).
    let mut webhook_ids: Vec<&str> = reports.iter().map(|r| r.webhook_id.as_str()).collect();
    webhook_ids.sort_unstable();
    webhook_ids.dedup();
    let webhooks = c.query(LOCK_WEBHOOKS, &[&webhook_ids]).await?;
    // Only the deliveries still this instance's (or unclaimed and
    // unfinished) take the reports; see `Store::record_attempts`.
    let (updated, tally) =
        update_deliveries(c, owner, deliveries.into_values().collect(), now).await?;
    let counted = |r: &&AttemptReport| updated.contains(r.delivery_id.as_str());
    upsert_attempts(c, attempts.into_values().filter(counted).collect()).await?;
    write_tally(c, &tally).await?;
    let counted: Vec<&AttemptReport> = reports.iter().filter(counted).collect();
    update_health(c, counted, &webhooks, policy, now).await
}

async fn upsert_attempts(c: &mut Conn, reports: Vec<&AttemptReport>) -> Result<(), StoreError> {
    let ids: Vec<&str> = reports.iter().map(|r| r.delivery_id.as_str()).collect();
    let numbers: Vec<i32> = reports.iter().map(|r| signed(r.attempt.attempt)).collect();
    let started: Vec<i64> = reports.iter().map(|r| r.attempt.started_at).collect();
    let durations: Vec<i32> = reports
        .iter()
        .map(|r| signed(r.attempt.duration_ms))
        .collect();
    let request: Vec<String> = reports
        .iter()
        .map(|r| headers_json(&r.attempt.request_headers))
        .collect();
    let codes: Vec<Option<i32>> = reports
        .iter()
        .map(|r| r.attempt.status_code.map(i32::from))
        .collect();
    let response: Vec<String> = reports
        .iter()
        .map(|r| headers_json(&r.attempt.response_headers))
        .collect();
    let bodies: Vec<&str> = reports
        .iter()
        .map(|r| r.attempt.response_body.as_str())
        .collect();
    let kinds: Vec<Option<&str>> = reports
        .iter()
        .map(|r| r.attempt.error_kind.map(AttemptErrorKind::as_str))
        .collect();
    let messages: Vec<Option<&str>> = reports
        .iter()
        .map(|r| r.attempt.error_message.as_deref())
        .collect();
    c.execute(
        UPSERT_ATTEMPTS,
        &[
            &ids, &numbers, &started, &durations, &request, &codes, &response, &bodies, &kinds,
            &messages,
        ],
    )
    .await?;
    Ok(())
}

/// Updates the deliveries `owner` may report for; returns their ids, and
/// the aggregate's changes for the ones that became final.
async fn update_deliveries(
    c: &mut Conn,
    owner: &str,
    reports: Vec<&AttemptReport>,
    now: i64,
) -> Result<(HashSet<String>, Tally), StoreError> {
    let reports = take_from_queue(c, owner, reports).await?;
    let ids: Vec<&str> = reports.iter().map(|r| r.delivery_id.as_str()).collect();
    let statuses: Vec<&str> = reports.iter().map(|r| r.status.as_str()).collect();
    let attempts: Vec<i32> = reports.iter().map(|r| signed(r.attempt.attempt)).collect();
    let next: Vec<Option<i64>> = reports.iter().map(|r| r.next_attempt_at).collect();
    let codes: Vec<Option<i32>> = reports
        .iter()
        .map(|r| r.attempt.status_code.map(i32::from))
        .collect();
    let kinds: Vec<Option<&str>> = reports
        .iter()
        .map(|r| r.attempt.error_kind.map(AttemptErrorKind::as_str))
        .collect();
    let messages: Vec<Option<&str>> = reports
        .iter()
        .map(|r| r.attempt.error_message.as_deref())
        .collect();
    let durations: Vec<i32> = reports
        .iter()
        .map(|r| signed(r.attempt.duration_ms))
        .collect();
    let rows = c
        .query(
            UPDATE_DELIVERIES,
            &[
                &ids, &statuses, &attempts, &next, &codes, &kinds, &messages, &durations, &now,
            ],
        )
        .await?;
    let mut updated = HashSet::with_capacity(rows.len());
    let mut tally = Tally::default();
    for row in &rows {
        updated.insert(get(row, 0, "delivery id")?);
        count_finished(&mut tally, row, 1, 1)?;
    }
    Ok((updated, tally))
}

/// The reports whose deliveries are still `owner`'s to report (claimed by
/// it, or unclaimed and unfinished), after taking their queue rows: a final
/// report's is deleted, a retry's becomes due at its next attempt.
async fn take_from_queue<'r>(
    c: &mut Conn,
    owner: &str,
    reports: Vec<&'r AttemptReport>,
) -> Result<Vec<&'r AttemptReport>, StoreError> {
    let (finished, waiting): (Vec<&AttemptReport>, Vec<&AttemptReport>) =
        reports.iter().partition(|r| r.status.is_final());
    let finished: Vec<&str> = finished.iter().map(|r| r.delivery_id.as_str()).collect();
    let waiting_ids: Vec<&str> = waiting.iter().map(|r| r.delivery_id.as_str()).collect();
    let statuses: Vec<&str> = waiting.iter().map(|r| r.status.as_str()).collect();
    let next: Vec<Option<i64>> = waiting.iter().map(|r| r.next_attempt_at).collect();
    let taken: HashSet<String> = c
        .query(
            TAKE_FROM_QUEUE,
            &[&finished, &waiting_ids, &statuses, &next, &owner],
        )
        .await?
        .iter()
        .map(|row| get(row, 0, "delivery id"))
        .collect::<Result<_, _>>()?;
    Ok(reports
        .into_iter()
        .filter(|r| taken.contains(r.delivery_id.as_str()))
        .collect())
}

/// Counts `delta` for the delivery of `row` (webhook id, created at, then
/// status and duration from column `first`) in the tally, if it is final.
pub(super) fn count_finished(
    tally: &mut Tally,
    row: &tokio_postgres::Row,
    first: usize,
    delta: i64,
) -> Result<(), StoreError> {
    let status: String = get(row, first + 2, "delivery status")?;
    let status = DeliveryStatus::parse(&status).map_err(|e| corrupt("delivery status", e))?;
    let duration: Option<i32> = get(row, first + 3, "duration")?;
    if let Some(slot) = hourly::slot(status, duration.map(unsigned)) {
        let webhook: String = get(row, first, "webhook id")?;
        tally.count(&webhook, get(row, first + 1, "created at")?, slot, delta);
    }
    Ok(())
}

/// Applies a transaction's changes to the kept aggregate, in key order
/// (see [`Tally`]).
pub(super) async fn write_tally(c: &mut Conn, tally: &Tally) -> Result<(), StoreError> {
    let mut webhooks = Vec::new();
    let mut hours = Vec::new();
    let mut slots = Vec::new();
    let mut counts = Vec::new();
    for (webhook, hour, slot, n) in tally.changes() {
        webhooks.push(webhook);
        hours.push(hour);
        slots.push(i32::try_from(slot).unwrap_or(hourly::DELIVERED_UNTIMED as i32));
        counts.push(n);
    }
    if webhooks.is_empty() {
        return Ok(());
    }
    c.execute(UPSERT_HOURLY, &[&webhooks, &hours, &slots, &counts])
        .await?;
    Ok(())
}

/// Applies the reports' health changes to `rows`, the locked webhooks (see [`LOCK_WEBHOOKS`]).
async fn update_health(
    c: &mut Conn,
    reports: Vec<&AttemptReport>,
    rows: &[tokio_postgres::Row],
    policy: FailurePolicy,
    now: i64,
) -> Result<Vec<DisabledWebhook>, StoreError> {
    let deltas = health::fold(reports);

    let mut u_ids = Vec::new();
    let mut u_since = Vec::new();
    let mut u_exhausted = Vec::new();
    let mut u_reasons = Vec::new();
    let mut disabled = Vec::new();
    for row in rows {
        let id: String = get(row, 0, "webhook id")?;
        let webhook_id = WebhookId::parse(&id).map_err(|e| corrupt("webhook id", e))?;
        // Webhooks deleted meanwhile have no row and are skipped; those of
        // test sends only have no delta.
        let Some(delta) = deltas.get(&webhook_id) else {
            continue;
        };
        let stored = StoredHealth {
            is_active: get(row, 3, "webhook is_active")?,
            failing_since: get(row, 4, "failing since")?,
            consecutive_exhausted: get(row, 5, "exhausted count")?,
        };
        let update = delta.apply(&stored, policy, now);
        if !update.changed && update.disable.is_none() {
            continue;
        }
        if let Some(reason) = &update.disable {
            let owner: String = get(row, 1, "webhook owner")?;
            disabled.push(DisabledWebhook {
                owner_id: UserId::parse(&owner).map_err(|e| corrupt("webhook owner", e))?,
                webhook_id,
                url: get(row, 2, "webhook url")?,
                reason: reason.clone(),
                at: now,
            });
        }
        u_ids.push(id);
        u_since.push(update.failing_since);
        u_exhausted.push(update.consecutive_exhausted);
        u_reasons.push(update.disable);
    }
    if !u_ids.is_empty() {
        c.execute(
            UPDATE_HEALTH,
            &[&u_ids, &u_since, &u_exhausted, &u_reasons, &now],
        )
        .await?;
    }
    Ok(disabled)
}
