//! Deliveries per time bucket, for the portal's charts: one webhook's, and
//! every user's for the operator overview.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use webhook_domain::latency::LatencyHistogram;
use webhook_domain::timefmt::{format_rfc3339_millis, now_ms};

use crate::api::AppState;
use crate::api::error::{ApiError, ok};
use crate::api::webhooks::visible_webhook;
use crate::auth::Principal;
use crate::store::DeliveryStats;

const HOUR_MS: i64 = 3_600_000;

/// The buckets a chart's `window` asks for: an hour each over 24 h, six
/// hours each over 7 d.
#[derive(Debug, Clone, Copy)]
struct ChartWindow {
    /// The first hour of the oldest bucket (hours since the epoch).
    first_hour: i64,
    /// Hours per bucket.
    bucket_hours: i64,
    /// How many buckets.
    buckets: i64,
}

impl ChartWindow {
    /// Reads `?window=24h|7d` (24 h when absent), ending at the next whole
    /// bucket boundary, so the newest bucket fills as time passes instead
    /// of sliding.
    fn from_query(query: &HashMap<String, String>) -> Result<Self, ApiError> {
        let (buckets, bucket_hours) = match query.get("window").map(|s| s.trim()) {
            None | Some("") | Some("24h") => (24_i64, 1_i64),
            Some("7d") => (28, 6),
            Some(_) => return Err(ApiError::field("window", "window must be 24h or 7d")),
        };
        let bucket_ms = bucket_hours * HOUR_MS;
        let end_hour = (now_ms() / bucket_ms + 1) * bucket_hours;
        Ok(ChartWindow {
            first_hour: end_hour - buckets * bucket_hours,
            bucket_hours,
            buckets,
        })
    }

    /// The start of bucket `k` in unix ms, as the API writes it.
    fn start(&self, k: usize) -> String {
        format_rfc3339_millis((self.first_hour + k as i64 * self.bucket_hours) * HOUR_MS)
    }

    /// The store's arguments: first hour, hours per bucket, buckets.
    fn spans(&self) -> (i64, u32, u32) {
        // Both are small constants of `from_query` (at most 6 and 28).
        let hours = u32::try_from(self.bucket_hours).unwrap_or(1);
        let buckets = u32::try_from(self.buckets).unwrap_or(0);
        (self.first_hour, hours, buckets)
    }
}

/// `{p50, p95}` in ms of a latency histogram, each `null` when nothing in
/// it was timed.
fn latency_json(latency: &LatencyHistogram) -> Value {
    json!({"p50": latency.percentile(0.50), "p95": latency.percentile(0.95)})
}

/// One bucket of a chart: its start, counts by status and its own latency.
fn bucket_json(start: String, stats: &DeliveryStats) -> Value {
    json!({
        "start": start,
        "delivered": stats.delivered,
        "failed": stats.failed,
        "retrying": stats.retrying,
        "pending": stats.pending,
        "latencyMs": latency_json(&stats.latency),
    })
}

/// `GET /api/v1/webhooks/{id}/stats/hourly?window=24h|7d`: deliveries
/// created in each bucket (an hour over 24 h, six hours over 7 d) by their
/// status now, and latency p50/p95 of the successful attempts per bucket
/// and over the whole window.
///
/// The store answers every bucket in one read (of its hourly aggregate,
/// where it keeps one); latency is to within one histogram bucket (see
/// `webhook_domain::latency`).
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/stats/hourly", tag = "deliveries",
    params(("id" = String, Path), ("window" = Option<String>, Query, description = "24h (default) or 7d")),
    responses((status = 200, description = "`{bucketSeconds, buckets: [{start, delivered, failed, retrying, pending, latencyMs: {p50, p95}}], latencyMs: {p50, p95}}`: each bucket's latency and the window's, in ms, `null` where no successful attempt was timed"),
              (status = 400), (status = 404)),
    security(("bearer" = [])))]
pub async fn hourly_stats(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let webhook = visible_webhook(&state, &p, &id).await?;
    let window = ChartWindow::from_query(&query)?;
    let (first_hour, bucket_hours, buckets) = window.spans();
    let stats = state
        .store
        .delivery_buckets(&webhook, first_hour, bucket_hours, buckets)
        .await?;
    let mut latency = LatencyHistogram::default();
    let mut rows = Vec::with_capacity(stats.len());
    for (k, bucket) in stats.iter().enumerate() {
        rows.push(bucket_json(window.start(k), bucket));
        latency.merge(&bucket.latency);
    }
    Ok(ok(
        StatusCode::OK,
        json!({
            "webhookId": webhook.id,
            "bucketSeconds": window.bucket_hours * 3600,
            "buckets": rows,
            "latencyMs": latency_json(&latency),
        }),
        None,
        None,
    ))
}

/// `GET /api/v1/admin/stats/hourly?window=24h|7d`: the platform per bucket
/// (an admin's only): events ingested, every user's deliveries created in
/// it by status now, and their latency p50/p95.
///
/// Events are counted by a range of their creation-time index and
/// deliveries read from the kept aggregate, so the cost follows the
/// window's events and hours, not the store's size (see `Store::platform_buckets`).
#[utoipa::path(get, path = "/api/v1/admin/stats/hourly", tag = "deliveries",
    params(("window" = Option<String>, Query, description = "24h (default) or 7d")),
    responses((status = 200, description = "`{bucketSeconds, buckets: [{start, events, delivered, failed, retrying, pending, latencyMs: {p50, p95}}], events, latencyMs: {p50, p95}}` across every user"),
              (status = 400), (status = 403, description = "The caller is not an admin")),
    security(("bearer" = [])))]
pub async fn platform_hourly_stats(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if !p.is_admin {
        return Err(ApiError::forbidden(
            "The platform's figures are for admins: this token has no admin scope",
        ));
    }
    let window = ChartWindow::from_query(&query)?;
    let (first_hour, bucket_hours, buckets) = window.spans();
    let stats = state
        .store
        .platform_buckets(first_hour, bucket_hours, buckets)
        .await?;
    let mut latency = LatencyHistogram::default();
    let mut events = 0_u64;
    let mut rows = Vec::with_capacity(stats.len());
    for (k, bucket) in stats.iter().enumerate() {
        let mut row = bucket_json(window.start(k), &bucket.deliveries);
        row["events"] = json!(bucket.events);
        rows.push(row);
        latency.merge(&bucket.deliveries.latency);
        events += bucket.events;
    }
    Ok(ok(
        StatusCode::OK,
        json!({
            "bucketSeconds": window.bucket_hours * 3600,
            "buckets": rows,
            "events": events,
            "latencyMs": latency_json(&latency),
        }),
        None,
        None,
    ))
}
