//! `GET /api/v1/webhooks/{id}/ordering`: a FIFO webhook's orders that have
//! deliveries waiting, each with the delivery at its head (the one they
//! wait for), so a user sees which order is blocked and by what.

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ok};
use super::webhooks::visible_webhook;
use crate::auth::Principal;
use crate::store::OrderHead;

/// Most orders listed: the view is for finding what is stuck, and one seek
/// per order is paid for each.
pub const MAX_ORDERS_LISTED: u32 = 100;

fn head_json(head: &OrderHead) -> Value {
    json!({
        // The whole webhook's order has no key of its own.
        "key": if head.key.is_empty() { Value::Null } else { Value::String(head.key.clone()) },
        "headDeliveryId": head.head,
        "headStatus": head.status,
        "headAttempts": head.attempts,
        // A head that has failed an attempt holds its order until it is
        // delivered or fails for good.
        "blocked": head.attempts > 0,
        "waiting": head.waiting,
    })
}

/// `GET /api/v1/webhooks/{id}/ordering`
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/ordering", tag = "deliveries", operation_id = "webhook_ordering",
    params(("id" = String, Path)),
    responses((status = 200, description = "The webhook's ordering and, for a FIFO webhook, up to 100 orders with deliveries waiting: \
`{ordering, orderingKey, orders: [{key, headDeliveryId, headStatus, headAttempts, blocked, waiting}]}`; `key` is the user id \
(`orderingKey: userId`) or null (one order for the whole webhook); `blocked`: the head has failed at least once and holds the rest",
        example = json!({"ordering": "fifo", "orderingKey": "userId", "orders": [{"key": "user_1", "headDeliveryId": "dlv_01JD0000000000000000000001",
            "headStatus": "retrying", "headAttempts": 3, "blocked": true, "waiting": 41}]})),
        (status = 404)),
    security(("bearer" = [])))]
pub async fn get_ordering(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let webhook = visible_webhook(&state, &p, &id).await?;
    let ordering = webhook.record().controls.ordering;
    let orders = match ordering {
        Some(_) => state
            .store
            .ordering_heads(&webhook, MAX_ORDERS_LISTED)
            .await?
            .iter()
            .map(head_json)
            .collect(),
        None => Vec::new(),
    };
    Ok(ok(
        StatusCode::OK,
        json!({
            "ordering": ordering.map(|o| o.to_string()),
            "orderingKey": ordering.map(|o| o.key().as_str()),
            "orders": orders,
        }),
        None,
        None,
    ))
}
