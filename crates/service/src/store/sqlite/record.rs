//! Recording attempt results, and the webhooks' failure bookkeeping.

use std::borrow::Cow;

use rusqlite::{Connection, OptionalExtension, params};
use webhook_domain::delivery::{AttemptErrorKind, DeliveryStatus};
use webhook_domain::ids::UserId;

use super::rows::corrupt;
use crate::store::health::{self, StoredHealth};
use crate::store::hourly::{self, Tally};
use crate::store::{
    AttemptReport, Claimed, DisabledWebhook, FailurePolicy, StoreError, headers_json,
};

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
    // The kept aggregate counts a waiting delivery under its webhook, hour
    // and status (see `hourly`), so the update must know the status it
    // replaces. The report carries the row as it was claimed: the update
    // checks it and applies only if it still holds, which is nearly always.
    // Otherwise the row is read by its key and updated as read (nothing
    // else writes in between: this is the writer's transaction). Reading
    // every row first cost 4.7k instructions per delivery (2 %); `UPDATE
    // ... RETURNING` cost 13.9k more, SQLite gathering the returned rows in
    // a temporary table opened and freed on every run (callgrind,
    // docs/performance-log.md, 2026-12-06).
    let mut update_as_claimed = c.prepare_cached(
        "UPDATE deliveries SET status = ?2, attempts = ?3, next_attempt_at = ?4, lease_owner = NULL, \
         last_status_code = ?5, last_error_kind = ?6, last_error = ?7, last_duration_ms = ?8, updated_at = ?9, \
         delivered_at = CASE WHEN ?2 = 'delivered' THEN ?9 ELSE delivered_at END \
         WHERE id = ?1 AND status = ?10 AND webhook_id = ?11 AND created_at = ?12 \
         AND COALESCE(lease_owner = ?13, TRUE)",
    )?;
    let mut unfinished = c.prepare_cached(
        "SELECT webhook_id, created_at, status FROM deliveries \
         WHERE id = ?1 AND status IN ('pending', 'retrying') AND COALESCE(lease_owner = ?2, TRUE)",
    )?;
    let mut counted = Vec::with_capacity(reports.len());
    let mut tally = Tally::default();
    for report in reports {
        let a = &report.attempt;
        let mut update = |webhook_id: &str, claimed: Claimed| {
            update_as_claimed.execute(params![
                report.delivery_id.as_str(),
                report.status.as_str(),
                a.attempt,
                report.next_attempt_at,
                a.status_code,
                a.error_kind.map(AttemptErrorKind::as_str),
                a.error_message,
                a.duration_ms,
                now,
                claimed.status.as_str(),
                webhook_id,
                claimed.created_at,
                owner,
            ])
        };
        let mut webhook_id = Cow::Borrowed(report.webhook_id.as_str());
        let mut claimed = report.claimed;
        if update(&webhook_id, claimed)? == 0 {
            let found = unfinished
                .query_row(params![report.delivery_id.as_str(), owner], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .optional()?;
            let Some((stored_webhook, created_at, status)) = found else {
                // Its webhook was deleted while the attempt ran, or the
                // claim is another's now (see `Store::record_attempts`).
                continue;
            };
            claimed = Claimed {
                created_at,
                status: DeliveryStatus::parse(&status).map_err(|e| corrupt("status", e))?,
            };
            webhook_id = Cow::Owned(stored_webhook);
            // Read in this transaction, so it holds.
            if update(&webhook_id, claimed)? == 0 {
                continue;
            }
        }
        // Only an unfinished delivery is ever claimed, and a finished one
        // is never updated here: it leaves its waiting slot for the slot of
        // its new status, both counted right here.
        tally.count(
            &webhook_id,
            claimed.created_at,
            hourly::any_slot(claimed.status, None),
            -1,
        );
        tally.count(
            &webhook_id,
            claimed.created_at,
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
