//! The core promise end to end: an event posted by a producer reaches the
//! subscribed endpoint as the guide's envelope, signed with its secret.

use std::time::Duration;

use crate::common::spawn_app;
use serde_json::json;
use webhook_testkit::{Behavior, Receiver};

#[tokio::test]
async fn event_reaches_subscribed_endpoint_signed() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("user-a", false);
    let secret = "your_webhook_secret_value";
    let webhook = app
        .create_webhook(
            &token,
            &receiver.url("/webhook"),
            &["user.created", "credit.*"],
            Some(secret),
        )
        .await;

    let (status, body) = app
        .trigger(
            "credit.low",
            "user-a",
            json!({"userId": "user-a", "balance": 8}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let event_id = body["data"]["eventId"].as_str().unwrap().to_string();
    assert_eq!(body["data"]["deliveries"], 1);

    let got = receiver.wait_for(1, Duration::from_secs(10)).await.unwrap();
    let req = &got[0];
    req.verify_signatures(secret).unwrap();
    let envelope = req.json();
    assert_eq!(envelope["id"], event_id);
    assert_eq!(envelope["eventType"], "credit.low");
    assert_eq!(envelope["userId"], "user-a");
    assert_eq!(envelope["data"]["balance"], 8);
    assert_eq!(envelope["metadata"]["service"], "core-service");
    assert_eq!(req.header("x-webhook-event"), Some("credit.low"));
    assert_eq!(req.header("x-webhook-id"), Some(event_id.as_str()));
    assert_eq!(req.header("x-webhook-attempt"), Some("1"));
    assert!(
        req.header("user-agent")
            .unwrap()
            .starts_with("SmartAIHub-Webhooks/")
    );

    // Not subscribed, and another user's event: nothing more arrives.
    app.trigger("service.completed", "user-a", json!({})).await;
    app.trigger("credit.low", "user-b", json!({})).await;
    let id = webhook["id"].as_str().unwrap();
    let logs = app
        .wait_for_logs(&token, id, Duration::from_secs(10), |items| {
            items.len() == 1 && items[0]["status"] == "delivered"
        })
        .await;
    assert_eq!(logs[0]["eventId"], event_id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 1);
}
