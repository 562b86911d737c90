//! The webhook management API as the platform's front end and the guide use
//! it: register, list, read, change, toggle and remove webhooks; the event
//! catalogue; what subscriptions match; and the guide's quick start.

use std::time::Duration;

use crate::api_support::{NONEXISTENT_WEBHOOK, delete, get, patch, post, put};
use crate::common::spawn_app;
use base64::Engine as _;
use serde_json::{Value, json};
use webhook_testkit::{Behavior, Receiver};

fn ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .expect("array")
        .iter()
        .map(|w| w["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test]
async fn a_user_registers_changes_toggles_and_removes_a_webhook() {
    let app = spawn_app().await;
    let token = app.token("alice", false);

    // Register with a chosen secret: 201 with the full secret, once.
    let created = post(
        &app,
        "/api/v1/webhooks",
        &token,
        json!({
            "url": "http://127.0.0.1:9/hooks/alice",
            "eventTypes": ["user.created", "credit.low"],
            "secret": "alice_secret_0123456789",
            "description": "Alice's CRM",
        }),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["success"], true);
    assert!(created.body["message"].is_string());
    let hook = &created.body["data"];
    let id = hook["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("wh_"), "{id}");
    assert_eq!(hook["userId"], "alice");
    assert_eq!(hook["url"], "http://127.0.0.1:9/hooks/alice");
    assert_eq!(hook["eventTypes"], json!(["user.created", "credit.low"]));
    assert_eq!(hook["description"], "Alice's CRM");
    assert_eq!(hook["isActive"], true);
    assert_eq!(hook["scope"], "user");
    assert_eq!(hook["secret"], "alice_secret_0123456789");
    assert_eq!(hook["secretMasked"], false);
    assert!(hook["createdAt"].as_str().unwrap().ends_with('Z'));

    // Read it back: the same webhook, secret masked.
    let got = get(&app, &format!("/api/v1/webhooks/{id}"), &token).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body["data"]["id"], id.as_str());
    assert_eq!(got.body["data"]["url"], hook["url"]);
    assert_eq!(got.body["data"]["eventTypes"], hook["eventTypes"]);
    assert_eq!(got.body["data"]["secretMasked"], true);

    // PUT replaces the fields it is given.
    let replaced = put(
        &app,
        &format!("/api/v1/webhooks/{id}"),
        &token,
        json!({
            "url": "http://127.0.0.1:9/hooks/alice-v2",
            "eventTypes": ["service.*"],
            "description": "Alice's CRM v2",
            "isActive": false,
        }),
    )
    .await;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    let data = &replaced.body["data"];
    assert_eq!(data["url"], "http://127.0.0.1:9/hooks/alice-v2");
    assert_eq!(data["eventTypes"], json!(["service.*"]));
    assert_eq!(data["description"], "Alice's CRM v2");
    assert_eq!(data["isActive"], false);

    // PATCH changes only what it names.
    let patched = patch(
        &app,
        &format!("/api/v1/webhooks/{id}"),
        &token,
        json!({"description": "patched"}),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let data = &patched.body["data"];
    assert_eq!(data["description"], "patched");
    assert_eq!(data["url"], "http://127.0.0.1:9/hooks/alice-v2");
    assert_eq!(data["eventTypes"], json!(["service.*"]));
    assert_eq!(data["isActive"], false);
    // `events` is accepted for `eventTypes`, and null clears the description.
    let patched = patch(
        &app,
        &format!("/api/v1/webhooks/{id}"),
        &token,
        json!({"events": ["user.login"], "description": null}),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["data"]["eventTypes"], json!(["user.login"]));
    assert_eq!(patched.body["data"]["description"], Value::Null);
    // The change is stored, not just echoed.
    let got = get(&app, &format!("/api/v1/webhooks/{id}"), &token).await;
    assert_eq!(got.body["data"]["eventTypes"], json!(["user.login"]));
    assert_eq!(got.body["data"]["url"], "http://127.0.0.1:9/hooks/alice-v2");
    assert_eq!(got.body["data"]["isActive"], false);
    // The secret set at creation is still the one in force.
    let secret = get(&app, &format!("/api/v1/webhooks/{id}/secret"), &token).await;
    assert_eq!(secret.body["data"]["secret"], "alice_secret_0123456789");

    // Toggle flips isActive each time.
    let on = post(
        &app,
        &format!("/api/v1/webhooks/{id}/toggle"),
        &token,
        json!({}),
    )
    .await;
    assert_eq!(on.status, 200, "{}", on.body);
    assert_eq!(on.body["data"]["isActive"], true);
    assert_eq!(on.body["message"], "Webhook enabled");
    let off = post(
        &app,
        &format!("/api/v1/webhooks/{id}/toggle"),
        &token,
        json!({}),
    )
    .await;
    assert_eq!(off.body["data"]["isActive"], false);
    assert_eq!(off.body["message"], "Webhook disabled");
    let got = get(&app, &format!("/api/v1/webhooks/{id}"), &token).await;
    assert_eq!(got.body["data"]["isActive"], false);

    // Delete: gone from reads and from the list; a second delete is a 404.
    let deleted = delete(&app, &format!("/api/v1/webhooks/{id}"), &token).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.body["data"]["id"], id.as_str());
    let got = get(&app, &format!("/api/v1/webhooks/{id}"), &token).await;
    assert_eq!(got.status, 404);
    assert_eq!(got.error_code(), "NOT_FOUND");
    let list = get(&app, "/api/v1/webhooks", &token).await;
    assert_eq!(list.body["meta"]["total"], 0);
    assert_eq!(
        delete(&app, &format!("/api/v1/webhooks/{id}"), &token)
            .await
            .status,
        404
    );
    let missing = get(
        &app,
        &format!("/api/v1/webhooks/{NONEXISTENT_WEBHOOK}"),
        &token,
    )
    .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.message(), "Webhook not found");
}

#[tokio::test]
async fn without_a_secret_the_service_generates_a_standard_webhooks_secret() {
    let app = spawn_app().await;
    let token = app.token("bob", false);
    let mut secrets = Vec::new();
    for _ in 0..2 {
        let hook = app
            .create_webhook(&token, "http://127.0.0.1:9/b", &["*"], None)
            .await;
        let secret = hook["secret"].as_str().unwrap().to_string();
        let key = secret
            .strip_prefix("whsec_")
            .unwrap_or_else(|| panic!("generated secret {secret} lacks whsec_"));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key)
            .expect("standard base64");
        assert_eq!(bytes.len(), 32, "{secret}");
        assert_eq!(hook["secretMasked"], false);
        // The GET secret route returns the same generated secret.
        let id = hook["id"].as_str().unwrap();
        let shown = get(&app, &format!("/api/v1/webhooks/{id}/secret"), &token).await;
        assert_eq!(shown.status, 200, "{}", shown.body);
        assert_eq!(shown.body["data"]["secret"], secret.as_str());
        secrets.push(secret);
    }
    assert_ne!(secrets[0], secrets[1], "each webhook gets its own secret");
}

#[tokio::test]
async fn the_list_is_newest_first_and_pages_both_ways() {
    let app = spawn_app().await;
    let token = app.token("carol", false);
    let mut created = Vec::new();
    for n in 0..5 {
        let hook = app
            .create_webhook(
                &token,
                &format!("http://127.0.0.1:9/c/{n}"),
                &["user.created"],
                None,
            )
            .await;
        created.push(hook["id"].as_str().unwrap().to_string());
        // Distinct creation instants, so "newest first" has one right answer.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    // Someone else's webhook never shows up in carol's list.
    let dave = app.token("dave", false);
    app.create_webhook(&dave, "http://127.0.0.1:9/d", &["*"], None)
        .await;
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    let all = get(&app, "/api/v1/webhooks", &token).await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(ids(&all.body["data"]), newest_first);
    assert_eq!(all.body["meta"]["total"], 5);
    assert_eq!(all.body["meta"]["page"], 1);
    assert_eq!(all.body["meta"]["limit"], 20);
    assert_eq!(all.body["meta"]["hasMore"], false);

    // page/limit
    let page1 = get(&app, "/api/v1/webhooks?page=1&limit=2", &token).await;
    assert_eq!(ids(&page1.body["data"]), newest_first[0..2]);
    assert_eq!(
        (
            &page1.body["meta"]["total"],
            &page1.body["meta"]["page"],
            &page1.body["meta"]["limit"],
            &page1.body["meta"]["hasMore"]
        ),
        (&json!(5), &json!(1), &json!(2), &json!(true))
    );
    let page2 = get(&app, "/api/v1/webhooks?page=2&limit=2", &token).await;
    assert_eq!(ids(&page2.body["data"]), newest_first[2..4]);
    assert_eq!(page2.body["meta"]["page"], 2);
    assert_eq!(page2.body["meta"]["hasMore"], true);
    let page3 = get(&app, "/api/v1/webhooks?page=3&limit=2", &token).await;
    assert_eq!(ids(&page3.body["data"]), newest_first[4..5]);
    assert_eq!(page3.body["meta"]["hasMore"], false);

    // limit/offset, the front end's other form.
    let shifted = get(&app, "/api/v1/webhooks?limit=3&offset=1", &token).await;
    assert_eq!(ids(&shifted.body["data"]), newest_first[1..4]);
    assert_eq!(shifted.body["meta"]["total"], 5);
    assert_eq!(shifted.body["meta"]["limit"], 3);
    assert_eq!(shifted.body["meta"]["hasMore"], true);
    let tail = get(&app, "/api/v1/webhooks?limit=3&offset=3", &token).await;
    assert_eq!(ids(&tail.body["data"]), newest_first[3..5]);
    assert_eq!(tail.body["meta"]["hasMore"], false);
    let past_end = get(&app, "/api/v1/webhooks?limit=3&offset=10", &token).await;
    assert_eq!(past_end.status, 200);
    assert_eq!(past_end.body["data"], json!([]));

    // Nonsense paging is a 400 naming the parameter.
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1000", "limit"),
        ("page=abc", "page"),
    ] {
        let bad = get(&app, &format!("/api/v1/webhooks?{query}"), &token).await;
        assert_eq!(bad.status, 400, "{query}: {}", bad.body);
        assert_eq!(bad.bad_fields(), vec![field.to_string()], "{query}");
    }
}

/// The data fields and emitting service of each example in the guide.
const GUIDE_EXAMPLES: [(&str, &str, &[&str]); 12] = [
    (
        "user.created",
        "auth-service",
        &["userId", "email", "createdAt"],
    ),
    (
        "user.updated",
        "auth-service",
        &["userId", "email", "changes", "updatedAt"],
    ),
    (
        "user.login",
        "auth-service",
        &["userId", "email", "loginTime", "ipAddress", "userAgent"],
    ),
    (
        "user.logout",
        "auth-service",
        &["userId", "email", "logoutTime"],
    ),
    (
        "credit.depleted",
        "core-service",
        &[
            "userId",
            "balance",
            "previousBalance",
            "transactionId",
            "transactionType",
            "amount",
            "description",
            "depletedAt",
        ],
    ),
    (
        "credit.low",
        "core-service",
        &["userId", "balance", "threshold", "lowCreditAt"],
    ),
    (
        "credit.purchased",
        "core-service",
        &[
            "userId",
            "amount",
            "balance",
            "previousBalance",
            "transactionId",
            "paymentMethod",
            "purchasedAt",
        ],
    ),
    (
        "credit.refunded",
        "core-service",
        &[
            "userId",
            "amount",
            "balance",
            "previousBalance",
            "transactionId",
            "reason",
            "refundedAt",
        ],
    ),
    (
        "credit.promo_redeemed",
        "core-service",
        &[
            "userId",
            "promoCode",
            "credits",
            "balance",
            "previousBalance",
            "redeemedAt",
        ],
    ),
    (
        "service.completed",
        "mcp-server",
        &[
            "userId",
            "requestId",
            "service",
            "model",
            "tokens",
            "credits",
            "duration",
            "response",
            "completedAt",
        ],
    ),
    (
        "service.failed",
        "mcp-server",
        &[
            "userId",
            "requestId",
            "service",
            "model",
            "errorCode",
            "errorMessage",
            "duration",
            "failedAt",
        ],
    ),
    (
        "service.started",
        "mcp-server",
        &[
            "userId",
            "requestId",
            "service",
            "model",
            "maxTokens",
            "startedAt",
        ],
    ),
];

#[tokio::test]
async fn the_event_catalogue_lists_the_guides_types_with_their_examples() {
    let app = spawn_app().await;
    let token = app.token("erin", false);
    let catalogue = get(&app, "/api/v1/event-types", &token).await;
    assert_eq!(catalogue.status, 200, "{}", catalogue.body);
    let alias = get(&app, "/api/v1/webhooks/event-types", &token).await;
    assert_eq!(alias.status, 200);
    assert_eq!(alias.body, catalogue.body, "the alias answers the same");

    let types = catalogue.body["data"].as_array().expect("array");
    assert_eq!(types.len(), 17);
    assert_eq!(catalogue.body["meta"]["total"], 17);
    let find = |name: &str| {
        types
            .iter()
            .find(|t| t["type"] == name)
            .unwrap_or_else(|| panic!("{name} missing from the catalogue"))
    };
    for (name, service, fields) in GUIDE_EXAMPLES {
        let entry = find(name);
        assert_eq!(entry["service"], service, "{name}");
        assert!(
            entry["description"]
                .as_str()
                .unwrap()
                .starts_with("Triggered when"),
            "{name}: {}",
            entry["description"]
        );
        let example = &entry["example"];
        assert_eq!(example["eventType"], name);
        assert_eq!(example["metadata"]["service"], service, "{name}");
        let mut keys: Vec<&str> = example["data"]
            .as_object()
            .unwrap_or_else(|| panic!("{name} example has no data"))
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = fields.to_vec();
        keys.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys, expected, "{name} example data");
    }
    assert_eq!(find("credit.low")["example"]["data"]["threshold"], 10);
    for extra in [
        "user.verified",
        "user.password_changed",
        "user.profile_updated",
        "user.roles_assigned",
    ] {
        assert_eq!(find(extra)["service"], "auth-service", "{extra}");
    }
    find("webhook.disabled");
    let patterns = catalogue.body["meta"]["patterns"].as_array().unwrap();
    for p in ["user.*", "credit.*", "service.*", "*"] {
        assert!(patterns.contains(&json!(p)), "{p} in {patterns:?}");
    }
}

#[tokio::test]
async fn subscriptions_match_exact_types_categories_and_everything() {
    let app = spawn_app().await;
    let token = app.token("frank", false);
    let exact = Receiver::start(Behavior::Status(200)).await.unwrap();
    let credit = Receiver::start(Behavior::Status(200)).await.unwrap();
    let all = Receiver::start(Behavior::Status(200)).await.unwrap();
    let inactive = Receiver::start(Behavior::Status(200)).await.unwrap();
    app.create_webhook(&token, &exact.url("/e"), &["user.login"], None)
        .await;
    app.create_webhook(&token, &credit.url("/c"), &["credit.*"], None)
        .await;
    app.create_webhook(&token, &all.url("/a"), &["*"], None)
        .await;
    let off = post(
        &app,
        "/api/v1/webhooks",
        &token,
        json!({"url": inactive.url("/i"), "eventTypes": ["*"], "isActive": false}),
    )
    .await;
    assert_eq!(off.status, 201, "{}", off.body);
    assert_eq!(off.body["data"]["isActive"], false);

    for event in ["credit.low", "user.created", "credit.purchased"] {
        let (status, body) = app
            .trigger(event, "frank", json!({"userId": "frank"}))
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let got = all.wait_for(3, Duration::from_secs(10)).await.unwrap();
    let mut types: Vec<String> = got
        .iter()
        .map(|r| r.json()["eventType"].as_str().unwrap().to_string())
        .collect();
    types.sort();
    assert_eq!(types, ["credit.low", "credit.purchased", "user.created"]);
    let got = credit.wait_for(2, Duration::from_secs(10)).await.unwrap();
    let mut types: Vec<String> = got
        .iter()
        .map(|r| r.json()["eventType"].as_str().unwrap().to_string())
        .collect();
    types.sort();
    assert_eq!(types, ["credit.low", "credit.purchased"]);
    // Give stray deliveries time to show up before counting them out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(exact.count(), 0, "user.login was never sent");
    assert_eq!(inactive.count(), 0, "an inactive webhook receives nothing");
    assert_eq!(credit.count(), 2);
    assert_eq!(all.count(), 3);
}

/// The guide's quick start, step 2 and 3, against a receiver that checks
/// signatures exactly like the guide's Express example.
#[tokio::test]
async fn the_guides_quick_start_works() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("0f8fad5b-d9cb-469f-a165-70867728950e", false);

    // 2. Register your webhook
    let registered = post(
        &app,
        "/api/v1/webhooks",
        &token,
        json!({
            "url": receiver.url("/webhooks/smartaihub"),
            "eventTypes": ["user.created", "credit.low"],
            "secret": "your_webhook_secret",
        }),
    )
    .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let id = registered.body["data"]["id"].as_str().unwrap().to_string();

    // 3. Test your webhook
    let tested = post(
        &app,
        &format!("/api/v1/webhooks/{id}/test"),
        &token,
        json!({"eventType": "user.created", "data": {"test": true}}),
    )
    .await;
    assert_eq!(tested.status, 200, "{}", tested.body);
    assert_eq!(tested.body["success"], true);
    assert_eq!(tested.body["data"]["success"], true, "{}", tested.body);
    assert_eq!(tested.body["data"]["statusCode"], 200);

    // What the guide's receiver sees.
    let got = receiver.wait_for(1, Duration::from_secs(5)).await.unwrap();
    let req = &got[0];
    assert_eq!(req.path, "/webhooks/smartaihub");
    assert_eq!(
        req.header("x-webhook-signature"),
        Some(webhook_verify::sign_legacy("your_webhook_secret", &req.body).as_str()),
        "sha256=hex(HMAC-SHA256(secret, raw body)), as in the guide"
    );
    req.verify_signatures("your_webhook_secret").unwrap();
    let event = req.json();
    assert_eq!(event["eventType"], "user.created");
    assert_eq!(event["data"]["test"], true);
    assert_eq!(event["userId"], "0f8fad5b-d9cb-469f-a165-70867728950e");
    assert_eq!(event["id"], tested.body["data"]["eventId"]);

    // The test delivery is in the webhook's log.
    let logs = get(&app, &format!("/api/v1/webhooks/{id}/logs"), &token).await;
    assert_eq!(logs.status, 200, "{}", logs.body);
    assert_eq!(logs.body["data"][0]["status"], "delivered");
    assert_eq!(
        logs.body["data"][0]["id"],
        tested.body["data"]["deliveryId"]
    );
}

/// The front end may send a test with no body at all; the defaults apply.
#[tokio::test]
async fn a_test_send_without_a_body_sends_the_default_test_event() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("tester", false);
    let hook = app
        .create_webhook(&token, &receiver.url("/t"), &["credit.*"], None)
        .await;
    let id = hook["id"].as_str().unwrap();
    let auth = format!("Bearer {token}");
    let tested = crate::api_support::raw(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/webhooks/{id}/test"),
        &[("authorization", auth.as_str())],
        "",
    )
    .await;
    assert_eq!(tested.status, 200, "{}", tested.body);
    assert_eq!(tested.body["data"]["success"], true);
    let got = receiver.wait_for(1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(got[0].json()["eventType"], "user.created");
    got[0]
        .verify_signatures(hook["secret"].as_str().unwrap())
        .unwrap();
    // A body that is there must still be JSON.
    let text = crate::api_support::raw(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/webhooks/{id}/test"),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "text/plain"),
        ],
        "hello",
    )
    .await;
    assert_eq!(text.status, 415, "{}", text.body);
}
