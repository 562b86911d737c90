//! How producers hand events to the service: the trigger route, the
//! idempotent `POST /api/v1/events`, the batch route, and the answers to
//! events that cannot be accepted.

use std::time::Duration;

use crate::common::{INTERNAL_SECRET, TestApp, spawn_app};
use crate::delivery_support::{event_ids, logs};
use reqwest::Method;
use serde_json::{Value, json};
use webhook_testkit::{Behavior, Receiver};

async fn post_as(app: &TestApp, path: &str, credential: &str, body: Value) -> (u16, Value) {
    let (status, body, _) = app
        .request(Method::POST, path, Some(credential), Some(body))
        .await;
    (status, body)
}

#[tokio::test]
async fn the_trigger_route_keeps_and_fills_in_metadata() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("ivan", false);
    app.create_webhook(&token, &receiver.url("/h"), &["*"], None)
        .await;

    // As the producers send it, with extra metadata keys.
    let (status, body) = post_as(
        &app,
        "/internal/webhooks/trigger",
        INTERNAL_SECRET,
        json!({"eventType": "user.login", "userId": "ivan", "data": {"userId": "ivan"},
               "metadata": {"service": "auth-service", "timestamp": "2025-01-01T00:00:00.000Z",
                            "ipAddress": "192.168.1.1"}}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["deliveries"], 1);
    // Without metadata: the service fills in service and timestamp.
    let (status, body) = post_as(
        &app,
        "/internal/webhooks/trigger",
        INTERNAL_SECRET,
        json!({"eventType": "credit.low", "userId": "ivan", "data": {"balance": 1}}),
    )
    .await;
    assert_eq!(status, 202, "{body}");

    let got = receiver.wait_for(2, Duration::from_secs(10)).await.unwrap();
    let by_type = |t: &str| {
        got.iter()
            .map(|r| r.json())
            .find(|e| e["eventType"] == t)
            .unwrap()
    };
    let login = by_type("user.login");
    assert_eq!(login["metadata"]["service"], "auth-service");
    assert_eq!(login["metadata"]["timestamp"], "2025-01-01T00:00:00.000Z");
    assert_eq!(login["metadata"]["ipAddress"], "192.168.1.1");
    let low = by_type("credit.low");
    assert_eq!(low["metadata"]["service"], "core-service");
    assert!(
        low["metadata"]["timestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert!(low["id"].as_str().unwrap().starts_with("evt_"));
}

#[tokio::test]
async fn the_same_event_id_is_stored_once_and_delivered_once() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("judy", false);
    let hook = app
        .create_webhook(&token, &receiver.url("/h"), &["credit.purchased"], None)
        .await;
    let hook_id = hook["id"].as_str().unwrap();
    let admin = app.token("root-admin", true);
    let event = |id: &str| {
        json!({"id": id, "eventType": "credit.purchased", "userId": "judy",
               "data": {"amount": 100}})
    };

    // With an admin token, twice.
    let (status, first) = post_as(&app, "/api/v1/events", &admin, event("order:1")).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["data"]["eventId"], "order:1");
    assert_eq!(first["data"]["duplicate"], false);
    let (status, again) = post_as(&app, "/api/v1/events", &admin, event("order:1")).await;
    assert!(status == 200 || status == 202, "{again}");
    assert_eq!(again["data"]["eventId"], "order:1");
    assert_eq!(again["data"]["duplicate"], true);
    assert_eq!(again["data"]["deliveryIds"], first["data"]["deliveryIds"]);

    // With the internal secret, and several copies at once.
    let sends = (0..5).map(|_| post_as(&app, "/api/v1/events", INTERNAL_SECRET, event("order:2")));
    let answers = futures_join(sends).await;
    let fresh = answers
        .iter()
        .filter(|(_, b)| b["data"]["duplicate"] == false)
        .count();
    assert_eq!(fresh, 1, "exactly one copy is new: {answers:?}");
    for (status, body) in &answers {
        assert!(*status == 200 || *status == 202, "{body}");
        assert_eq!(body["data"]["eventId"], "order:2");
    }

    // A user token may not publish.
    let user = app.token("judy", false);
    let (status, _) = post_as(&app, "/api/v1/events", &user, event("order:3")).await;
    assert_eq!(status, 403);

    receiver.wait_for(2, Duration::from_secs(10)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut ids = event_ids(&receiver.received());
    ids.sort();
    assert_eq!(ids, ["order:1", "order:2"], "each event delivered once");
    assert_eq!(
        logs(&app, &token, hook_id).await.len(),
        2,
        "stored once each"
    );
}

/// Runs futures concurrently on the current task.
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.map(Box::pin).collect();
    let mut out = Vec::new();
    // Poll all together: join_all without an extra dependency.
    let mut pending: Vec<Option<std::pin::Pin<Box<F>>>> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *result = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.extend(results.into_iter().flatten());
    out
}

#[tokio::test]
async fn a_batch_accepts_the_valid_events_and_answers_for_each() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("ken", false);
    app.create_webhook(&token, &receiver.url("/h"), &["*"], None)
        .await;

    let events = json!([
        {"eventType": "user.created", "userId": "ken", "data": {"n": 0}},
        {"eventType": "no.such", "userId": "ken", "data": {}},
        {"eventType": "credit.low", "data": {"n": 2}},
        {"eventType": "credit.low", "userId": "ken", "data": {"n": 3}},
        {"eventType": "credit.low", "userId": "ken", "data": [1, 2]},
        "not an object",
    ]);
    let (status, body) = post_as(
        &app,
        "/internal/events/batch",
        INTERNAL_SECRET,
        json!({"events": events}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let data = &body["data"];
    assert_eq!(data["accepted"], 2);
    assert_eq!(data["rejected"], 4);
    let results = data["results"].as_array().unwrap();
    assert_eq!(results.len(), 6, "a result per event");
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["index"], i, "{r}");
    }
    let ok: Vec<bool> = results.iter().map(|r| r["success"] == true).collect();
    assert_eq!(ok, [true, false, false, true, false, false]);
    let field_of = |i: usize| results[i]["errors"][0]["field"].clone();
    assert_eq!(field_of(1), "eventType");
    assert_eq!(field_of(2), "userId");
    assert_eq!(field_of(4), "data");

    let got = receiver.wait_for(2, Duration::from_secs(10)).await.unwrap();
    let mut ns: Vec<i64> = got
        .iter()
        .map(|r| r.json()["data"]["n"].as_i64().unwrap())
        .collect();
    ns.sort();
    assert_eq!(ns, [0, 3]);
    let accepted_ids: Vec<Value> = [0, 3]
        .iter()
        .map(|&i| results[i]["eventId"].clone())
        .collect();
    for r in &got {
        assert!(accepted_ids.contains(&json!(r.event_id().unwrap())));
    }

    // No valid event at all: 400, naming every problem of every event by
    // its place in the batch.
    let (status, body) = post_as(
        &app,
        "/internal/events/batch",
        INTERNAL_SECRET,
        json!({"events": [{"eventType": "user.created"}, {"userId": "ken", "data": {}}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        ["events[0].userId", "events[0].data", "events[1].eventType"],
        "{body}"
    );

    // More than 1000 events: refused whole, naming the limit.
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"eventType": "user.created", "userId": "ken", "data": {"n": i}}))
        .collect();
    let (status, body) = post_as(
        &app,
        "/internal/events/batch",
        INTERNAL_SECRET,
        json!({"events": many}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("1000"),
        "{body}"
    );
    assert_eq!(body["error"]["details"][0]["field"], "events");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.count(),
        2,
        "nothing of the refused batch was delivered"
    );

    // Exactly 1000 is fine.
    let thousand: Vec<Value> = (0..1000)
        .map(|i| json!({"eventType": "user.created", "userId": "nobody", "data": {"n": i}}))
        .collect();
    let (status, body) = post_as(
        &app,
        "/internal/events/batch",
        INTERNAL_SECRET,
        json!({"events": thousand}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["accepted"], 1000);
}

#[tokio::test]
async fn invalid_events_are_refused_naming_the_problem() {
    let app = spawn_app().await;
    let post = |body: Value| post_as(&app, "/internal/webhooks/trigger", INTERNAL_SECRET, body);

    // Unknown type: 400 naming the field, its message listing the known ones.
    let (status, body) =
        post(json!({"eventType": "user.exploded", "userId": "u", "data": {}})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "eventType", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    for t in [
        "user.created",
        "credit.low",
        "service.completed",
        "user.roles_assigned",
    ] {
        assert!(message.contains(t), "{t} missing from {message}");
    }
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("user.exploded")
    );

    // Missing userId.
    let (status, body) = post(json!({"eventType": "user.created", "data": {}})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "userId", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("userId")
    );

    // data not an object.
    for data in [json!("text"), json!([1]), json!(5)] {
        let (status, body) =
            post(json!({"eventType": "user.created", "userId": "u", "data": data})).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["details"][0]["field"], "data", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("object")
        );
    }

    // A field of the wrong JSON type is named too.
    for (body, field) in [
        (
            json!({"eventType": 123, "userId": "u", "data": {}}),
            "eventType",
        ),
        (
            json!({"id": 5, "eventType": "user.created", "userId": "u"}),
            "id",
        ),
    ] {
        let (status, answer) = post(body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["details"][0]["field"], field, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}: invalid type")),
            "{answer}"
        );
    }
    let (status, answer) = post_as(
        &app,
        "/internal/events/batch",
        INTERNAL_SECRET,
        json!({"events": "x"}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["details"][0]["field"], "events", "{answer}");

    // Several problems at once are all named.
    let (status, body) = post(json!({"eventType": "nope", "data": 1})).await;
    assert_eq!(status, 400);
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["field"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        fields.contains(&"eventType") && fields.contains(&"userId") && fields.contains(&"data"),
        "{body}"
    );

    // A body over 1 MiB: 413.
    let big = "x".repeat(1024 * 1024 + 10);
    let (status, body) =
        post(json!({"eventType": "user.created", "userId": "u", "data": {"blob": big}})).await;
    assert_eq!(status, 413, "{body}");

    // Without the internal secret: 401, nothing stored.
    let (status, _, _) = app
        .request(
            Method::POST,
            "/internal/webhooks/trigger",
            Some("wrong-secret"),
            Some(json!({"eventType": "user.created", "userId": "u", "data": {}})),
        )
        .await;
    assert_eq!(status, 401);
}
