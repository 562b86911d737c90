//! Deliveries of one webhook per time bucket, for the portal's chart.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use webhook_domain::timefmt::{format_rfc3339_millis, now_ms};

use crate::api::AppState;
use crate::api::error::{ApiError, ok};
use crate::api::webhooks::visible_webhook;
use crate::auth::Principal;
use crate::store::{DeliveryStats, StatsScope};

const HOUR_MS: i64 = 3_600_000;

/// `GET /api/v1/webhooks/{id}/stats/hourly?window=24h|7d`: deliveries
/// created in each bucket (an hour over 24 h, six hours over 7 d) by their
/// status now, and latency p50/p95 of the successful attempts in the window.
///
/// Each bucket is the difference of two "since" statistics the store
/// already answers, newest first; a delivery created between two reads can
/// make a difference negative, so it is clamped at zero.
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
    let now = now_ms();
    let end = (now / bucket_ms + 1) * bucket_ms;
    let mut since_stats: Vec<DeliveryStats> = Vec::with_capacity(buckets as usize + 1);
    for i in (0..=buckets).rev() {
        let since = end - (buckets - i) * bucket_ms;
        let stats = if i == buckets {
            // `since` is in the future: nothing.
            DeliveryStats::default()
        } else {
            state
                .store
                .delivery_stats(StatsScope::Webhook(&webhook), since)
                .await?
        };
        since_stats.push(stats);
    }
    // since_stats[k]: everything created since end - k buckets.
    let mut rows = Vec::with_capacity(buckets as usize);
    for k in (1..=buckets as usize).rev() {
        let (wider, narrower) = (&since_stats[k], &since_stats[k - 1]);
        let start = end - k as i64 * bucket_ms;
        rows.push(json!({
            "start": format_rfc3339_millis(start),
            "delivered": wider.delivered.saturating_sub(narrower.delivered),
            "failed": wider.failed.saturating_sub(narrower.failed),
            "retrying": wider.retrying.saturating_sub(narrower.retrying),
            "pending": wider.pending.saturating_sub(narrower.pending),
        }));
    }
    let mut durations = since_stats
        .last()
        .map(|s| s.success_durations_ms.clone())
        .unwrap_or_default();
    durations.sort_unstable();
    Ok(ok(
        StatusCode::OK,
        json!({
            "webhookId": webhook.id,
            "bucketSeconds": bucket_ms / 1000,
            "buckets": rows,
            "latencyMs": {"p50": percentile(&durations, 0.50), "p95": percentile(&durations, 0.95)},
        }),
        None,
        None,
    ))
}

fn percentile(sorted: &[u32], q: f64) -> Value {
    if sorted.is_empty() {
        return Value::Null;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    json!(sorted[rank.clamp(1, sorted.len()) - 1])
}
