//! Per-webhook delivery controls, black-box: a payload filter decides which
//! events become deliveries (refused ones counted, not logged); bad values
//! get a 400 naming the field and change nothing; `filter-test` answers
//! whether a sample matches; a webhook's own retry schedule and timeout
//! override the service's; a rate-limited webhook is paced while an
//! unlimited one is not held back.

use std::time::Duration;

use crate::common::{INTERNAL_SECRET, error_fields, spawn_app};
use crate::delivery_support::{eventually, logs, wait_final, webhook};
use reqwest::Method;
use serde_json::{Value, json};
use webhook_testkit::{Behavior, Receiver};

#[tokio::test]
async fn a_filter_decides_which_events_reach_a_webhook() {
    let app = spawn_app().await;
    let filtered = Receiver::start(Behavior::Status(200)).await.unwrap();
    let everything = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("fiona", false);
    let hook = app
        .create_webhook_from(
            &token,
            json!({"url": filtered.url("/f"), "eventTypes": ["credit.*"],
               "filter": {"data": {"balance": {"$lt": 10}, "plan": {"$in": ["pro", "team"]}}}}),
        )
        .await;
    assert_eq!(hook["filter"]["data"]["balance"]["$lt"], 10, "{hook}");
    app.create_webhook_from(
        &token,
        json!({"url": everything.url("/e"), "eventTypes": ["credit.*"]}),
    )
    .await;
    let id = hook["id"].as_str().unwrap();

    let (_, low) = app
        .trigger("credit.low", "fiona", json!({"balance": 5, "plan": "pro"}))
        .await;
    assert_eq!(low["data"]["deliveries"], 2, "{low}");
    let (_, rich) = app
        .trigger("credit.low", "fiona", json!({"balance": 50, "plan": "pro"}))
        .await;
    assert_eq!(
        rich["data"]["deliveries"], 1,
        "refused by the filter: {rich}"
    );
    let (_, free) = app
        .trigger("credit.low", "fiona", json!({"balance": 1, "plan": "free"}))
        .await;
    assert_eq!(free["data"]["deliveries"], 1, "{free}");

    everything
        .wait_for(3, Duration::from_secs(10))
        .await
        .unwrap();
    filtered.wait_for(1, Duration::from_secs(10)).await.unwrap();
    let low_id = low["data"]["eventId"].as_str().unwrap();
    assert_eq!(
        filtered.received()[0].event_id().as_deref(),
        Some(low_id),
        "only the matching event"
    );
    // Refused events are counted, not logged as deliveries.
    assert_eq!(logs(&app, &token, id).await.len(), 1);
    let (_, stats) = app
        .get(&format!("/api/v1/webhooks/{id}/stats"), &token)
        .await;
    assert_eq!(stats["data"]["filteredOut"], 2, "{stats}");
    assert_eq!(app.metric("webhook_deliveries_filtered_total ").await, 2);

    // Cleared, the next event goes through.
    let (status, body) = app.patch_webhook(&token, id, json!({"filter": null})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["filter"], Value::Null);
    let (_, again) = app
        .trigger("credit.low", "fiona", json!({"balance": 50}))
        .await;
    assert_eq!(again["data"]["deliveries"], 2, "{again}");
    filtered.wait_for(2, Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn bad_controls_get_a_400_naming_the_field_and_change_nothing() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("gary", false);
    let url = receiver.url("/g");
    let cases = [
        (
            json!({"filter": {"data": {"x": {"$regex": "a"}}}}),
            "filter.data.x.$regex",
        ),
        (
            json!({"filter": {"data": {"n": {"$gt": [1]}}}}),
            "filter.data.n.$gt",
        ),
        (json!({"filter": [1]}), "filter"),
        (json!({"rateLimitPerSecond": 0}), "rateLimitPerSecond"),
        (json!({"rateLimitPerSecond": "fast"}), "rateLimitPerSecond"),
        (json!({"retrySchedule": ["5x"]}), "retrySchedule"),
        (json!({"retrySchedule": ["31d"]}), "retrySchedule"),
        (json!({"retrySchedule": []}), "retrySchedule"),
        (json!({"timeoutMs": 0}), "timeoutMs"),
        (json!({"timeoutMs": 60_001}), "timeoutMs"),
    ];
    for (extra, field) in &cases {
        let mut body = json!({"url": url, "eventTypes": ["*"]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, answer) = app.post("/api/v1/webhooks", &token, body).await;
        assert_eq!(status, 400, "{extra}: {answer}");
        assert_eq!(error_fields(&answer), [*field], "{extra}: {answer}");
    }
    let (_, list) = app.get("/api/v1/webhooks", &token).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0, "nothing created");

    let hook = app
        .create_webhook_from(
            &token,
            json!({"url": url, "eventTypes": ["*"], "rateLimitPerSecond": 50,
               "retrySchedule": ["5s", "1m", "10m"], "timeoutMs": 2500}),
        )
        .await;
    assert_eq!(hook["rateLimitPerSecond"], 50, "{hook}");
    assert_eq!(hook["retrySchedule"], json!(["5s", "1m", "10m"]));
    assert_eq!(hook["timeoutMs"], 2500);
    assert_eq!(hook["filter"], Value::Null);
    let id = hook["id"].as_str().unwrap();
    // One good and one bad control: refused whole.
    let (status, answer) = app
        .patch_webhook(
            &token,
            id,
            json!({"timeoutMs": 100, "retrySchedule": "soon"}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error_fields(&answer), ["retrySchedule"]);
    let stored = webhook(&app, &token, id).await;
    assert_eq!(stored["timeoutMs"], 2500, "{stored}");
    assert_eq!(stored["retrySchedule"], json!(["5s", "1m", "10m"]));
    // An ordering the engine does not know is not accepted.
    let (status, answer) = app
        .patch_webhook(&token, id, json!({"ordering": "lifo"}))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error_fields(&answer), ["ordering"]);
}

#[tokio::test]
async fn filter_test_says_whether_a_sample_matches() {
    let app = spawn_app().await;
    let token = app.token("hana", false);
    let filter = json!({"data": {"balance": {"$lt": 10}}, "eventType": {"$startsWith": "credit."}});
    let sample = |balance: i64| json!({"eventType": "credit.low", "userId": "hana", "data": {"balance": balance}});
    let (status, body) = app
        .post(
            "/api/v1/webhooks/filter-test",
            &token,
            json!({"filter": filter, "event": sample(5)}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["matches"], true);
    let (_, body) = app
        .post(
            "/api/v1/webhooks/filter-test",
            &token,
            json!({"filter": filter, "event": sample(50)}),
        )
        .await;
    assert_eq!(body["data"]["matches"], false);
    let (status, body) = app
        .post(
            "/api/v1/webhooks/filter-test",
            &token,
            json!({"filter": {"data": {"$or": {"a": 1}}}, "event": sample(1)}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_fields(&body), ["filter.data.$or"]);
}

#[tokio::test]
async fn a_webhook_retries_by_its_own_schedule() {
    // The service retries three times (200ms,400ms,800ms); this webhook once.
    let app = spawn_app().await;
    let failing = Receiver::start(Behavior::Status(500)).await.unwrap();
    let token = app.token("ivan", false);
    let hook = app
        .create_webhook_from(
            &token,
            json!({"url": failing.url("/r"), "eventTypes": ["*"], "retrySchedule": ["100ms"]}),
        )
        .await;
    let id = hook["id"].as_str().unwrap();
    let (_, body) = app.trigger("user.created", "ivan", json!({})).await;
    let delivery = body["data"]["deliveryIds"][0].as_str().unwrap();
    let done = wait_final(&app, &token, id, delivery, Duration::from_secs(20)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["attempts"], 2, "one try and one retry: {done}");
}

#[tokio::test]
async fn a_webhook_times_out_by_its_own_timeout() {
    // The service waits 2 s; this webhook 300 ms, for an answer after 1.2 s.
    let app = spawn_app().await;
    let slow = Receiver::start(Behavior::Delay(Duration::from_millis(1200), 200))
        .await
        .unwrap();
    let token = app.token("jo", false);
    let hook = app.create_webhook_from(&token,
        json!({"url": slow.url("/t"), "eventTypes": ["*"], "timeoutMs": 300, "retrySchedule": ["100ms"]}),
    )
    .await;
    let id = hook["id"].as_str().unwrap();
    let (_, body) = app.trigger("user.created", "jo", json!({})).await;
    let delivery = body["data"]["deliveryIds"][0].as_str().unwrap();
    let done = wait_final(&app, &token, id, delivery, Duration::from_secs(20)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["lastErrorKind"], "timeout", "{done}");
}

#[tokio::test]
async fn a_rate_limited_webhook_is_paced_and_an_unlimited_one_is_not_held_back() {
    let app = spawn_app().await;
    let limited = Receiver::start(Behavior::Status(200)).await.unwrap();
    let unlimited = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("kim", false);
    app.create_webhook_from(
        &token,
        json!({"url": limited.url("/l"), "eventTypes": ["*"], "rateLimitPerSecond": 10}),
    )
    .await;
    app.create_webhook_from(
        &token,
        json!({"url": unlimited.url("/u"), "eventTypes": ["*"]}),
    )
    .await;
    let events: Vec<Value> = (0..40)
        .map(|n| json!({"eventType": "user.created", "userId": "kim", "data": {"n": n}}))
        .collect();
    let (status, body, _) = app
        .request(
            Method::POST,
            "/internal/events/batch",
            Some(INTERNAL_SECRET),
            Some(json!({"events": events})),
        )
        .await;
    assert_eq!(status, 202, "{body}");

    // A burst of 10, then 10 a second: the 40th no sooner than 3 s after the first.
    unlimited
        .wait_for(40, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(
        limited.count() < 40,
        "the unlimited endpoint got all 40 before the limited one did"
    );
    let got = limited.wait_for(40, Duration::from_secs(30)).await.unwrap();
    let span = got[39].received_at - got[0].received_at;
    assert!(span >= Duration::from_millis(2500), "paced: {span:?}");
}

#[tokio::test]
async fn a_new_rate_limit_applies_to_deliveries_already_queued() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("lou", false);
    let hook = app
        .create_webhook_from(
            &token,
            json!({"url": receiver.url("/q"), "eventTypes": ["*"], "rateLimitPerSecond": 1}),
        )
        .await;
    let id = hook["id"].as_str().unwrap();
    let events: Vec<Value> = (0..20)
        .map(|n| json!({"eventType": "user.created", "userId": "lou", "data": {"n": n}}))
        .collect();
    let (status, _, _) = app
        .request(
            Method::POST,
            "/internal/events/batch",
            Some(INTERNAL_SECRET),
            Some(json!({"events": events})),
        )
        .await;
    assert_eq!(status, 202);
    receiver.wait_for(1, Duration::from_secs(10)).await.unwrap();
    // At 1 a second the rest would take 19 s; lifted, they go at once.
    let (status, body) = app
        .patch_webhook(&token, id, json!({"rateLimitPerSecond": null}))
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(
        "the queued deliveries to go",
        Duration::from_secs(8),
        || async { (receiver.count() >= 20).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn the_openapi_document_describes_each_control_with_an_example() {
    let app = spawn_app().await;
    let (status, spec, _) = app
        .request(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, 200);
    assert!(
        spec["paths"]["/api/v1/webhooks/filter-test"]["post"].is_object(),
        "filter-test is documented"
    );
    // A body with flattened fields is documented as an `allOf`.
    let schema = &spec["components"]["schemas"]["WebhookBody"];
    let parts: Vec<&Value> = match schema["allOf"].as_array() {
        Some(parts) => parts.iter().collect(),
        None => vec![schema],
    };
    for field in ["filter", "rateLimitPerSecond", "retrySchedule", "timeoutMs"] {
        let property = parts
            .iter()
            .map(|part| &part["properties"][field])
            .find(|p| !p.is_null())
            .unwrap_or_else(|| panic!("WebhookBody.{field} is documented: {schema}"));
        assert!(
            !property["example"].is_null(),
            "WebhookBody.{field} has an example: {property}"
        );
        assert!(
            property["description"].is_string(),
            "WebhookBody.{field} is described"
        );
    }
}

#[tokio::test]
async fn a_paced_backlog_waits_in_the_store_not_in_memory() {
    // Limited to 1 a second, the webhook's share of the memory window is
    // small (10 s of sending, at least 16): at most that plus one claim page
    // (1,000) of its 3,000 deliveries are held, not its default share of 10,000.
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("mo", false);
    app.create_webhook_from(
        &token,
        json!({"url": receiver.url("/m"), "eventTypes": ["*"], "rateLimitPerSecond": 1}),
    )
    .await;
    for batch in 0..30 {
        let events: Vec<Value> = (0..100)
            .map(|n| json!({"eventType": "user.created", "userId": "mo", "data": {"n": batch * 100 + n}}))
            .collect();
        let (status, body, _) = app
            .request(
                Method::POST,
                "/internal/events/batch",
                Some(INTERNAL_SECRET),
                Some(json!({"events": events})),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    // Long enough for a delivery to free a slot and the scheduler to refill.
    receiver.wait_for(2, Duration::from_secs(10)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let used = app.metric("webhook_window_used ").await;
    assert!(used <= 1_100, "{used} deliveries held in memory");
}
