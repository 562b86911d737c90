//! Helpers shared by the `delivery_*` test files: reading delivery logs and
//! waiting for conditions, on top of `common`'s `TestApp`.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::Value;
use webhook_testkit::ReceivedRequest;

use crate::common::TestApp;

/// Polls `probe` every 50 ms until it yields a value, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /api/v1/webhooks/{id}` → its `data`.
pub async fn webhook(app: &TestApp, token: &str, id: &str) -> Value {
    let (status, body) = app.get(&format!("/api/v1/webhooks/{id}"), token).await;
    assert_eq!(status, 200, "get webhook: {body}");
    body["data"].clone()
}

/// `GET /api/v1/webhooks/{id}/deliveries/{delivery}` → its `data`.
pub async fn delivery_detail(app: &TestApp, token: &str, webhook: &str, delivery: &str) -> Value {
    let (status, body) = app
        .get(
            &format!("/api/v1/webhooks/{webhook}/deliveries/{delivery}"),
            token,
        )
        .await;
    assert_eq!(status, 200, "delivery detail: {body}");
    body["data"].clone()
}

/// The delivery log of a webhook (newest first, up to 100).
pub async fn logs(app: &TestApp, token: &str, webhook: &str) -> Vec<Value> {
    let (status, body) = app
        .get(&format!("/api/v1/webhooks/{webhook}/logs?limit=100"), token)
        .await;
    assert_eq!(status, 200, "logs: {body}");
    body["data"].as_array().cloned().unwrap_or_default()
}

/// Waits until the delivery reaches a final status (`delivered`/`failed`) and returns its detail.
pub async fn wait_final(
    app: &TestApp,
    token: &str,
    webhook: &str,
    delivery: &str,
    timeout: Duration,
) -> Value {
    eventually(
        &format!("delivery {delivery} to reach a final status"),
        timeout,
        || async {
            let d = delivery_detail(app, token, webhook, delivery).await;
            matches!(d["status"].as_str(), Some("delivered" | "failed")).then_some(d)
        },
    )
    .await
}

/// Posts an event as a producer and returns `(eventId, first deliveryId)`.
pub async fn trigger_one(
    app: &TestApp,
    event_type: &str,
    user: &str,
    data: Value,
) -> (String, String) {
    let (status, body) = app.trigger(event_type, user, data).await;
    assert_eq!(status, 202, "trigger: {body}");
    let event_id = body["data"]["eventId"]
        .as_str()
        .expect("eventId")
        .to_string();
    let delivery = body["data"]["deliveryIds"][0]
        .as_str()
        .expect("one delivery")
        .to_string();
    (event_id, delivery)
}

/// Event ids of received requests, in arrival order.
pub fn event_ids(received: &[ReceivedRequest]) -> Vec<String> {
    received
        .iter()
        .filter_map(ReceivedRequest::event_id)
        .collect()
}

/// Header value of a received request, or "" when absent.
pub fn header<'a>(r: &'a ReceivedRequest, name: &str) -> &'a str {
    r.header(name).unwrap_or("")
}

/// Milliseconds between consecutive requests, on the wall clock.
///
/// The service schedules retries on the wall clock (its due times are stored
/// and shared between instances), so waits are measured on the same clock:
/// the monotonic clock can disagree with it by several milliseconds over a
/// second while the system clock is being disciplined.
pub fn gaps_ms(received: &[ReceivedRequest]) -> Vec<i64> {
    received
        .windows(2)
        .map(|w| w[1].received_unix_ms - w[0].received_unix_ms)
        .collect()
}
