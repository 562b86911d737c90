//! Recording attempt results, and the webhooks' failure bookkeeping.

use rusqlite::{Connection, OptionalExtension, params};
use webhook_domain::delivery::{AttemptErrorKind, DeliveryStatus};
use webhook_domain::ids::UserId;

use super::rows::corrupt;
use crate::store::health::{self, StoredHealth};
use crate::store::hourly::{self, Tally};
use crate::store::{AttemptReport, DisabledWebhook, FailurePolicy, StoreError, headers_json};

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
    // The delivery's webhook, hour and status before the update, which the
    // kept aggregate needs (it counts waiting deliveries by status, see
    // `hourly`), read by its key before updating it by its key: both seek
    // the same pages in this writer's transaction, so nothing changes in
    // between. Not `UPDATE ... RETURNING`: SQLite gathers the returned rows
    // in a temporary table opened and freed on every run: 13,900 more
    // instructions per delivery (callgrind, performance log 2026-12-06).
    let mut unfinished = c.prepare_cached(
        "SELECT webhook_id, created_at, status FROM deliveries \
         WHERE id = ?1 AND status IN ('pending', 'retrying') AND COALESCE(lease_owner = ?2, TRUE)",
    )?;
    let mut update = c.prepare_cached(
        "UPDATE deliveries SET status = ?2, attempts = ?3, next_attempt_at = ?4, lease_owner = NULL, \
         last_status_code = ?5, last_error_kind = ?6, last_error = ?7, last_duration_ms = ?8, updated_at = ?9, \
         delivered_at = CASE WHEN ?2 = 'delivered' THEN ?9 ELSE delivered_at END WHERE id = ?1",
    )?;
    let mut counted = Vec::with_capacity(reports.len());
    let mut tally = Tally::default();
    for report in reports {
        let a = &report.attempt;
        // Only an unfinished delivery is ever claimed, and a finished one
        // is never updated here: it leaves its waiting slot for the slot of
        // its new status, both counted right here.
        let found = unfinished
            .query_row(params![report.delivery_id.as_str(), owner], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .optional()?;
        let Some((webhook_id, created_at, status)) = found else {
            // Its webhook was deleted while the attempt ran, or the claim
            // is another's now (see `Store::record_attempts`).
            continue;
        };
        // The query reads only these two.
        let old_slot = if status == DeliveryStatus::Pending.as_str() {
            hourly::PENDING
        } else {
            hourly::RETRYING
        };
        update.execute(params![
            report.delivery_id.as_str(),
            report.status.as_str(),
            a.attempt,
            report.next_attempt_at,
            a.status_code,
            a.error_kind.map(AttemptErrorKind::as_str),
            a.error_message,
            a.duration_ms,
            now,
        ])?;
        tally.count(&webhook_id, created_at, old_slot, -1);
        tally.count(
            &webhook_id,
            created_at,
            hourly::any_slot(report.status, Some(a.duration_ms)),
            1,
        );
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
    write_tally(c, &tally)?;
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

/// Applies a transaction's changes to the kept aggregate.
pub(super) fn write_tally(c: &Connection, tally: &Tally) -> Result<(), StoreError> {
    let mut upsert = c.prepare_cached(
        "INSERT INTO delivery_hourly (webhook_id, hour, slot, n) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (webhook_id, hour, slot) DO UPDATE SET n = n + excluded.n",
    )?;
    for (webhook_id, hour, slot, n) in tally.changes() {
        upsert.execute(params![webhook_id, hour, slot, n])?;
    }
    Ok(())
}
