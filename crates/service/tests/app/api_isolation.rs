//! A user can neither see nor touch another user's webhooks: every route on
//! someone else's webhook answers exactly like a webhook that does not exist,
//! and changes nothing.

use std::time::Duration;

use crate::api_support::{Answer, NONEXISTENT_DELIVERY, NONEXISTENT_WEBHOOK, call, get};
use crate::common::{TestApp, spawn_app};
use reqwest::Method;
use serde_json::{Value, json};
use webhook_testkit::{Behavior, Receiver};

/// Every route that takes a webhook id, with a body where it needs one.
/// `{id}` and `{delivery}` are filled in per call.
fn routes() -> Vec<(Method, &'static str, Option<Value>)> {
    let webhook =
        json!({"url": "http://127.0.0.1:9/stolen", "eventTypes": ["*"], "isActive": false});
    vec![
        (Method::GET, "/api/v1/webhooks/{id}", None),
        (Method::PUT, "/api/v1/webhooks/{id}", Some(webhook.clone())),
        (Method::PATCH, "/api/v1/webhooks/{id}", Some(webhook)),
        (
            Method::POST,
            "/api/v1/webhooks/{id}/toggle",
            Some(json!({})),
        ),
        (
            Method::POST,
            "/api/v1/webhooks/{id}/rotate-secret",
            Some(json!({})),
        ),
        (
            Method::POST,
            "/api/v1/webhooks/{id}/regenerate-secret",
            Some(json!({})),
        ),
        (Method::GET, "/api/v1/webhooks/{id}/secret", None),
        (
            Method::POST,
            "/api/v1/webhooks/{id}/test",
            Some(json!({"eventType": "user.created", "data": {"test": true}})),
        ),
        (Method::GET, "/api/v1/webhooks/{id}/logs", None),
        (Method::GET, "/api/v1/webhooks/{id}/deliveries", None),
        (
            Method::GET,
            "/api/v1/webhooks/{id}/deliveries/{delivery}",
            None,
        ),
        (
            Method::POST,
            "/api/v1/webhooks/{id}/deliveries/{delivery}/retry",
            Some(json!({})),
        ),
        (
            Method::POST,
            "/api/v1/webhooks/{id}/replay",
            Some(json!({"since": "2020-01-01T00:00:00Z", "status": "all"})),
        ),
        (Method::GET, "/api/v1/webhooks/{id}/stats", None),
        // Last, so the routes above find the webhook still there when run by its owner.
        (Method::DELETE, "/api/v1/webhooks/{id}", None),
    ]
}

async fn hit(
    app: &TestApp,
    token: &str,
    route: &(Method, &str, Option<Value>),
    id: &str,
    delivery: &str,
) -> Answer {
    let path = route.1.replace("{id}", id).replace("{delivery}", delivery);
    call(app, route.0.clone(), &path, Some(token), route.2.clone()).await
}

/// What the owner can observe of a webhook: its view, secret, and delivery log.
async fn snapshot(app: &TestApp, token: &str, id: &str) -> (Value, Value, Value) {
    let view = get(app, &format!("/api/v1/webhooks/{id}"), token).await;
    assert_eq!(view.status, 200, "{}", view.body);
    let secret = get(app, &format!("/api/v1/webhooks/{id}/secret"), token).await;
    let logs = get(app, &format!("/api/v1/webhooks/{id}/logs?limit=100"), token).await;
    (
        view.body["data"].clone(),
        secret.body["data"].clone(),
        logs.body["data"].clone(),
    )
}

#[tokio::test]
async fn another_users_webhook_answers_like_a_missing_one_on_every_route() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let alice = app.token("alice", false);
    let mallory = app.token("mallory", false);

    // Alice has a webhook with a delivery; Mallory has one of her own.
    let hook = app
        .create_webhook(
            &alice,
            &receiver.url("/alice"),
            &["*"],
            Some("alice_secret_0123456789"),
        )
        .await;
    let id = hook["id"].as_str().unwrap().to_string();
    let (status, body) = app
        .trigger("credit.low", "alice", json!({"balance": 1}))
        .await;
    assert_eq!(status, 202, "{body}");
    let delivery = body["data"]["deliveryIds"][0].as_str().unwrap().to_string();
    app.wait_for_logs(&alice, &id, Duration::from_secs(10), |items| {
        items.first().is_some_and(|d| d["status"] == "delivered")
    })
    .await;
    let own = app
        .create_webhook(&mallory, "http://127.0.0.1:9/mallory", &["*"], None)
        .await;
    let own_id = own["id"].as_str().unwrap().to_string();
    let before = snapshot(&app, &alice, &id).await;
    let received_before = receiver.count();

    for route in routes() {
        let theirs = hit(&app, &mallory, &route, &id, &delivery).await;
        let missing = hit(
            &app,
            &mallory,
            &route,
            NONEXISTENT_WEBHOOK,
            NONEXISTENT_DELIVERY,
        )
        .await;
        let garbage = hit(&app, &mallory, &route, "not-an-id", "not-an-id").await;
        assert_eq!(
            theirs.status, 404,
            "{} {}: {}",
            route.0, route.1, theirs.body
        );
        assert_eq!(theirs.error_code(), "NOT_FOUND");
        assert_eq!(
            theirs.body, missing.body,
            "{} {}: another user's webhook must look missing",
            route.0, route.1
        );
        assert_eq!(missing.status, 404);
        assert_eq!(garbage.status, 404, "{} {}", route.0, route.1);
        assert_eq!(garbage.body, missing.body, "{} {}", route.0, route.1);
        // Nothing about the webhook leaks into the answer.
        let text = theirs.body.to_string();
        assert!(!text.contains(&id) && !text.contains("alice"), "{text}");
    }

    // Alice's delivery cannot be reached through Mallory's own webhook either.
    for route in routes().iter().filter(|r| r.1.contains("{delivery}")) {
        let crossed = hit(&app, &mallory, route, &own_id, &delivery).await;
        let missing = hit(&app, &mallory, route, &own_id, NONEXISTENT_DELIVERY).await;
        assert_eq!(
            crossed.status, 404,
            "{} {}: {}",
            route.0, route.1, crossed.body
        );
        assert_eq!(crossed.body, missing.body);
    }

    // Alice's webhook is exactly as it was, and nothing was sent to it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(snapshot(&app, &alice, &id).await, before);
    assert_eq!(receiver.count(), received_before);
    // Mallory's list and totals never include it.
    let list = get(&app, "/api/v1/webhooks", &mallory).await;
    assert_eq!(list.body["meta"]["total"], 1);
    assert_eq!(list.body["data"][0]["id"], own_id.as_str());
    let stats = get(&app, "/api/v1/webhooks/stats", &mallory).await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    assert_eq!(stats.body["data"]["totalWebhooks"], 1);
    assert_eq!(stats.body["data"]["totalDeliveries"], 0);

    // The control: every route works for the owner.
    for route in routes() {
        let answer = hit(&app, &alice, &route, &id, &delivery).await;
        assert!(
            (200..300).contains(&answer.status),
            "{} {} as the owner: {} {}",
            route.0,
            route.1,
            answer.status,
            answer.body
        );
    }
}
