//! The charts' figures over HTTP, one scenario run on either store: each
//! bucket of a webhook's hourly statistics carries its own latency, and the
//! operator's platform figures count every user's events and deliveries
//! (and only an admin may read them).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use webhook_testkit::{Behavior, Receiver};

use super::TestApp;

/// The buckets of `path` once `done` holds for their sums, or a failure
/// naming the last answer after ten seconds.
async fn buckets_once(
    app: &TestApp,
    path: &str,
    token: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = app.get(path, token).await;
        assert_eq!(status, 200, "{path}: {body}");
        if done(&body["data"]) {
            return body["data"].clone();
        }
        assert!(Instant::now() < deadline, "{path} never settled: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sum of `field` over every bucket.
fn sum(data: &Value, field: &str) -> u64 {
    data["buckets"]
        .as_array()
        .map(|rows| rows.iter().filter_map(|b| b[field].as_u64()).sum())
        .unwrap_or(0)
}

/// Every bucket with a delivered delivery has its own p50 <= p95, every
/// other bucket `null` for both; with one such bucket (the deliveries did
/// not straddle a bucket's end), its pair is the window's.
fn assert_each_bucket_timed_where_delivered(data: &Value) {
    let rows = data["buckets"].as_array().cloned().unwrap_or_default();
    let mut timed = Vec::new();
    for row in &rows {
        let latency = &row["latencyMs"];
        if row["delivered"].as_u64().unwrap_or(0) > 0 {
            let (p50, p95) = (latency["p50"].as_u64(), latency["p95"].as_u64());
            assert!(p50.is_some() && p50 <= p95, "{row}");
            timed.push(latency.clone());
        } else {
            assert_eq!(*latency, json!({"p50": null, "p95": null}), "{row}");
        }
    }
    assert!(!timed.is_empty(), "{data}");
    if timed.len() == 1 {
        assert_eq!(timed[0], data["latencyMs"], "{data}");
    }
}

/// Three events delivered to alice, two failing every attempt for bob, one
/// that nobody subscribed to: alice's chart has a latency in the bucket of
/// her deliveries and none elsewhere; the operator's figures count all six
/// events and every delivery by outcome; a user's token is refused.
pub async fn charts_count_each_bucket_and_the_platform(app: &TestApp) {
    let ok = Receiver::start(Behavior::Status(200))
        .await
        .expect("receiver");
    let failing = Receiver::start(Behavior::Status(500))
        .await
        .expect("receiver");
    let alice = app.token("alice", false);
    let bob = app.token("bob", false);
    let admin = app.token("operator", true);
    let webhook = app
        .create_webhook(&alice, &ok.url("/alice"), &["user.*"], None)
        .await;
    let id = webhook["id"].as_str().expect("id");
    app.create_webhook(&bob, &failing.url("/bob"), &["user.*"], None)
        .await;
    for user in ["alice", "alice", "alice", "bob", "bob", "carol"] {
        let (status, body) = app.trigger("user.created", user, json!({})).await;
        assert!(status < 300, "{body}");
    }

    // Alice's chart: every bucket carries its own latency, null where
    // nothing was delivered, and the window's pair agrees with the bucket.
    for (window, buckets) in [("24h", 24), ("7d", 28)] {
        let data = buckets_once(
            app,
            &format!("/api/v1/webhooks/{id}/stats/hourly?window={window}"),
            &alice,
            |d| sum(d, "delivered") == 3,
        )
        .await;
        let rows = data["buckets"].as_array().cloned().unwrap_or_default();
        assert_eq!(rows.len(), buckets, "{data}");
        assert_each_bucket_timed_where_delivered(&data);
    }

    // The operator's figures, once bob's deliveries have failed for good.
    for (window, buckets) in [("24h", 24), ("7d", 28)] {
        let data = buckets_once(
            app,
            &format!("/api/v1/admin/stats/hourly?window={window}"),
            &admin,
            |d| sum(d, "failed") == 2,
        )
        .await;
        assert_eq!(data["buckets"].as_array().map(Vec::len), Some(buckets));
        assert_eq!(sum(&data, "events"), 6, "every event, carol's too: {data}");
        assert_eq!(data["events"], json!(6), "{data}");
        assert_eq!(
            (
                sum(&data, "delivered"),
                sum(&data, "failed"),
                sum(&data, "retrying"),
                sum(&data, "pending")
            ),
            (3, 2, 0, 0),
            "{data}"
        );
        assert!(data["latencyMs"]["p50"].is_u64(), "{data}");
        assert_each_bucket_timed_where_delivered(&data);
    }

    // Not for users, whatever they own; and the window is checked.
    let (status, body) = app.get("/api/v1/admin/stats/hourly", &alice).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["success"], json!(false), "{body}");
    assert_eq!(body["error"]["code"], json!("FORBIDDEN"), "{body}");
    let (status, body) = app
        .get("/api/v1/admin/stats/hourly?window=30d", &admin)
        .await;
    assert_eq!(status, 400, "{body}");
}
