//! Deliveries of one webhook per time bucket, for the portal's chart.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;
use webhook_domain::latency::LatencyHistogram;
use webhook_domain::timefmt::{format_rfc3339_millis, now_ms};

use crate::api::AppState;
use crate::api::error::{ApiError, ok};
use crate::api::webhooks::visible_webhook;
use crate::auth::Principal;

const HOUR_MS: i64 = 3_600_000;

/// `GET /api/v1/webhooks/{id}/stats/hourly?window=24h|7d`: deliveries
/// created in each bucket (an hour over 24 h, six hours over 7 d) by their
/// status now, and latency p50/p95 of the successful attempts in the window.
///
/// The store answers every bucket in one read (of its hourly aggregate,
/// where it keeps one); latency is to within one histogram bucket (see
/// `webhook_domain::latency`).
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/stats/hourly", tag = "deliveries",
    params(("id" = String, Path), ("window" = Option<String>, Query, description = "24h (default) or 7d")),
    responses((status = 200, description = "`{bucketSeconds, buckets: [{start, delivered, failed, retrying, pending}], latencyMs}`"),
              (status = 400), (status = 404)),
    security(("bearer" = [])))]
pub async fn hourly_stats(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let webhook = visible_webhook(&state, &p, &id).await?;
    let (buckets, bucket_ms) = match query.get("window").map(|s| s.trim()) {
        None | Some("") | Some("24h") => (24_i64, HOUR_MS),
        Some("7d") => (28, 6 * HOUR_MS),
        Some(_) => return Err(ApiError::field("window", "window must be 24h or 7d")),
    };
    // Buckets end at the next whole bucket boundary, so the newest one
    // fills as time passes instead of sliding.
    let bucket_hours = bucket_ms / HOUR_MS;
    let end_hour = (now_ms() / bucket_ms + 1) * bucket_hours;
    let first_hour = end_hour - buckets * bucket_hours;
    let stats = state
        .store
        .delivery_buckets(&webhook, first_hour, bucket_hours as u32, buckets as u32)
        .await?;
    let mut latency = LatencyHistogram::default();
    let mut rows = Vec::with_capacity(stats.len());
    for (k, bucket) in stats.iter().enumerate() {
        let start = (first_hour + k as i64 * bucket_hours) * HOUR_MS;
        rows.push(json!({
            "start": format_rfc3339_millis(start),
            "delivered": bucket.delivered,
            "failed": bucket.failed,
            "retrying": bucket.retrying,
            "pending": bucket.pending,
        }));
        latency.merge(&bucket.latency);
    }
    Ok(ok(
        StatusCode::OK,
        json!({
            "webhookId": webhook.id,
            "bucketSeconds": bucket_ms / 1000,
            "buckets": rows,
            "latencyMs": {"p50": latency.percentile(0.50), "p95": latency.percentile(0.95)},
        }),
        None,
        None,
    ))
}
