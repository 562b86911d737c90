//! Who receives an event: the owner's active webhooks whose subscription
//! matches (exact type, `category.*`, `*`), admin webhooks with scope `all`,
//! subscription changes from the next event on, and webhooks the service
//! disables after too many exhausted deliveries (until re-enabled).

use std::time::Duration;

use crate::common::spawn_app;
use crate::delivery_support::{event_ids, eventually, trigger_one, wait_final, webhook};
use reqwest::Method;
use serde_json::json;
use webhook_testkit::{Behavior, Receiver};

#[tokio::test]
async fn events_fan_out_to_exact_category_and_wildcard_subscriptions() {
    let app = spawn_app().await;
    let exact = Receiver::start(Behavior::Status(200)).await.unwrap();
    let category = Receiver::start(Behavior::Status(200)).await.unwrap();
    let wildcard = Receiver::start(Behavior::Status(200)).await.unwrap();
    let stranger = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("mallory", false);
    let other = app.token("oscar", false);
    app.create_webhook(&token, &exact.url("/e"), &["credit.low"], None)
        .await;
    app.create_webhook(&token, &category.url("/c"), &["credit.*"], None)
        .await;
    app.create_webhook(&token, &wildcard.url("/w"), &["*"], None)
        .await;
    app.create_webhook(&other, &stranger.url("/s"), &["*"], None)
        .await;

    let (low, _) = trigger_one(&app, "credit.low", "mallory", json!({})).await;
    let (_, body) = app.trigger("credit.low", "mallory", json!({})).await;
    assert_eq!(body["data"]["deliveries"], 3, "{body}");
    let low2 = body["data"]["eventId"].as_str().unwrap().to_string();
    let (bought, _) = trigger_one(&app, "credit.purchased", "mallory", json!({})).await;
    let (created, _) = trigger_one(&app, "user.created", "mallory", json!({})).await;
    let (others, _) = trigger_one(&app, "user.created", "oscar", json!({})).await;
    // No subscriber: accepted, zero deliveries.
    let (status, body) = app.trigger("user.created", "nobody-here", json!({})).await;
    assert_eq!(status, 202);
    assert_eq!(body["data"]["deliveries"], 0);

    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    wildcard.wait_for(4, Duration::from_secs(10)).await.unwrap();
    stranger.wait_for(1, Duration::from_secs(10)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sorted(event_ids(&exact.received())),
        sorted(vec![low.clone(), low2.clone()])
    );
    assert_eq!(
        sorted(event_ids(&category.received())),
        sorted(vec![low.clone(), low2.clone(), bought.clone()])
    );
    assert_eq!(
        sorted(event_ids(&wildcard.received())),
        sorted(vec![low, low2, bought, created])
    );
    assert_eq!(event_ids(&stranger.received()), vec![others]);
}

#[tokio::test]
async fn an_admin_webhook_with_scope_all_receives_every_users_events() {
    let app = spawn_app().await;
    let audit = Receiver::start(Behavior::Status(200)).await.unwrap();
    let own = Receiver::start(Behavior::Status(200)).await.unwrap();
    let admin = app.token("auditor", true);
    let user = app.token("peggy", false);
    let (status, body) = app
        .post(
            "/api/v1/webhooks",
            &admin,
            json!({"url": audit.url("/audit"), "eventTypes": ["user.*"], "scope": "all"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["scope"], "all");
    app.create_webhook(&user, &own.url("/own"), &["user.*"], None)
        .await;
    // A plain user may not ask for scope all.
    let (status, _) = app
        .post(
            "/api/v1/webhooks",
            &user,
            json!({"url": own.url("/x"), "eventTypes": ["*"], "scope": "all"}),
        )
        .await;
    assert_eq!(status, 403);

    let (a, _) = trigger_one(&app, "user.login", "peggy", json!({})).await;
    let (status, body) = app.trigger("user.logout", "trent", json!({})).await;
    assert_eq!(status, 202);
    let b = body["data"]["eventId"].as_str().unwrap().to_string();
    app.trigger("credit.low", "trent", json!({})).await; // not subscribed

    let got = audit.wait_for(2, Duration::from_secs(10)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut ids = event_ids(&got);
    ids.sort();
    let mut want = vec![a.clone(), b];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(audit.count(), 2);
    let users: Vec<String> = audit
        .received()
        .iter()
        .map(|r| r.json()["userId"].as_str().unwrap().to_string())
        .collect();
    assert!(users.contains(&"peggy".to_string()) && users.contains(&"trent".to_string()));
    // The user's own webhook still gets only the user's events.
    assert_eq!(event_ids(&own.received()), vec![a]);
}

#[tokio::test]
async fn a_subscription_change_applies_to_the_next_event() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("rupert", false);
    let hook = app
        .create_webhook(&token, &receiver.url("/h"), &["user.created"], None)
        .await;
    let id = hook["id"].as_str().unwrap();

    let (_, body) = app.trigger("credit.low", "rupert", json!({})).await;
    assert_eq!(body["data"]["deliveries"], 0, "not subscribed yet");

    let (status, body, _) = app
        .request(
            Method::PATCH,
            &format!("/api/v1/webhooks/{id}"),
            Some(&token),
            Some(json!({"eventTypes": ["credit.*"]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let (credit, _) = trigger_one(&app, "credit.low", "rupert", json!({})).await;
    let (_, body) = app.trigger("user.created", "rupert", json!({})).await;
    assert_eq!(body["data"]["deliveries"], 0, "unsubscribed now");
    receiver.wait_for(1, Duration::from_secs(10)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(event_ids(&receiver.received()), vec![credit]);

    // Paused: nothing is created for it; resumed: the next event flows again.
    let (status, _) = app
        .post(&format!("/api/v1/webhooks/{id}/toggle"), &token, json!({}))
        .await;
    assert_eq!(status, 200);
    let (_, body) = app.trigger("credit.low", "rupert", json!({})).await;
    assert_eq!(
        body["data"]["deliveries"], 0,
        "paused webhooks get no deliveries"
    );
    app.post(&format!("/api/v1/webhooks/{id}/toggle"), &token, json!({}))
        .await;
    trigger_one(&app, "credit.low", "rupert", json!({})).await;
    receiver.wait_for(2, Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn a_webhook_is_disabled_after_exhausted_deliveries_in_a_row_until_re_enabled() {
    let app = crate::common::spawn_app_with(&[
        ("WEBHOOK_DISABLE_AFTER_EXHAUSTED", "2"),
        ("WEBHOOK_MAX_RETRIES", "0"),
    ])
    .await;
    let failing = Receiver::start(Behavior::Status(500)).await.unwrap();
    let watcher = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("sybil", false);
    let hook = app
        .create_webhook(&token, &failing.url("/f"), &["service.*"], None)
        .await;
    let id = hook["id"].as_str().unwrap();
    app.create_webhook(&token, &watcher.url("/w"), &["webhook.disabled"], None)
        .await;

    // One exhausted delivery: still active.
    let (_, first) = trigger_one(&app, "service.failed", "sybil", json!({})).await;
    let d = wait_final(&app, &token, id, &first, Duration::from_secs(10)).await;
    assert_eq!(d["status"], "failed");
    assert_eq!(d["attempts"], 1, "WEBHOOK_MAX_RETRIES=0: no retry");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let w = webhook(&app, &token, id).await;
    assert_eq!(w["isActive"], true, "{w}");

    // The second in a row disables it, with the reason shown.
    let (_, second) = trigger_one(&app, "service.failed", "sybil", json!({})).await;
    wait_final(&app, &token, id, &second, Duration::from_secs(10)).await;
    let w = eventually(
        "the webhook to be disabled",
        Duration::from_secs(5),
        || async {
            let w = webhook(&app, &token, id).await;
            (w["isActive"] == false).then_some(w)
        },
    )
    .await;
    let reason = w["disabledReason"].as_str().unwrap_or_default();
    assert!(reason.contains('2') && reason.contains("in a row"), "{w}");
    let notice = watcher.wait_for(1, Duration::from_secs(10)).await.unwrap();
    let body = notice[0].json();
    assert_eq!(body["eventType"], "webhook.disabled");
    assert_eq!(body["data"]["webhookId"], id);
    assert_eq!(body["data"]["reason"], reason);

    // While disabled: nothing is sent.
    let (_, body) = app.trigger("service.failed", "sybil", json!({})).await;
    assert_eq!(body["data"]["deliveries"], 0);

    // Re-enabled via toggle: the reason and failure state are cleared, and deliveries flow.
    failing.set_behavior(Behavior::Status(200));
    let (status, body) = app
        .post(&format!("/api/v1/webhooks/{id}/toggle"), &token, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["isActive"], true);
    assert!(body["data"]["disabledReason"].is_null(), "{body}");
    assert!(body["data"]["disabledAt"].is_null());
    assert!(body["data"]["failingSince"].is_null());
    let w = webhook(&app, &token, id).await;
    assert!(w["disabledReason"].is_null(), "{w}");

    let (_, third) = trigger_one(&app, "service.completed", "sybil", json!({})).await;
    let d = wait_final(&app, &token, id, &third, Duration::from_secs(10)).await;
    assert_eq!(d["status"], "delivered");

    // The count starts again from zero: one more failure does not disable it.
    failing.set_behavior(Behavior::Status(500));
    let (_, fourth) = trigger_one(&app, "service.failed", "sybil", json!({})).await;
    wait_final(&app, &token, id, &fourth, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(webhook(&app, &token, id).await["isActive"], true);
}
