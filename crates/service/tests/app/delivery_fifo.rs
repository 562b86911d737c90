//! Ordered (FIFO) delivery, black-box on the embedded store: a webhook with
//! `"ordering": "fifo"` receives its events one at a time in exactly the
//! order they were acknowledged, also across a SIGKILL and restart; with
//! `"orderingKey": "userId"` a failing delivery holds back only its own
//! user's, and the API says which delivery a waiting one is blocked by; bad
//! values get a 400 naming the field and change nothing.

use std::time::Duration;

use crate::common::{INTERNAL_SECRET, TestApp, error_fields, spawn_app, spawn_app_with};
use crate::delivery_support::{delivery_detail, eventually, webhook};
use reqwest::Method;
use serde_json::{Value, json};
use webhook_testkit::{Behavior, ReceivedRequest, Receiver};

/// Posts one event and waits for its acknowledgement; `None` if it was not
/// acknowledged (the service was killed under it).
async fn acknowledged(app: &TestApp, user: &str, n: usize) -> Option<(String, Vec<String>)> {
    let (status, body, _) = app
        .request(
            Method::POST,
            "/internal/webhooks/trigger",
            Some(INTERNAL_SECRET),
            Some(json!({"eventType": "credit.purchased", "userId": user, "data": {"n": n}})),
        )
        .await;
    if status != 202 {
        return None;
    }
    let event = body["data"]["eventId"].as_str()?.to_string();
    let deliveries = body["data"]["deliveryIds"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Some((event, deliveries))
}

/// The event ids of `received` in arrival order, each kept at its first
/// arrival (at-least-once: a delivery cut off by a kill may come again).
fn first_arrivals(received: &[ReceivedRequest]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    received
        .iter()
        .filter_map(|r| r.event_id())
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

/// Asserts that `wanted` arrived in exactly that order, and that nothing
/// arrived before an earlier one had: every arrival (repeats included) of
/// an event comes after the first arrival of each event acknowledged before it.
fn assert_in_order(wanted: &[String], received: &[ReceivedRequest]) {
    let wanted_set: std::collections::HashSet<&String> = wanted.iter().collect();
    let arrivals: Vec<String> = received
        .iter()
        .filter_map(|r| r.event_id())
        .filter(|id| wanted_set.contains(id))
        .collect();
    let firsts: Vec<String> = first_arrivals(received)
        .into_iter()
        .filter(|id| wanted_set.contains(id))
        .collect();
    assert_eq!(
        firsts.len(),
        wanted.len(),
        "every acknowledged event arrived"
    );
    if let Some(k) = firsts.iter().zip(wanted).position(|(a, b)| a != b) {
        panic!(
            "out of order at position {k}: arrived {}, acknowledged {}",
            firsts[k], wanted[k]
        );
    }
    let place: std::collections::HashMap<&String, usize> =
        wanted.iter().enumerate().map(|(n, id)| (id, n)).collect();
    let mut highest_first = 0;
    let mut seen = std::collections::HashSet::new();
    for id in &arrivals {
        let p = place[id];
        if seen.insert(id.clone()) {
            highest_first = p;
        } else {
            // A repeat may only be of the delivery in flight at a kill or
            // of one just before it, never of one far behind.
            assert!(
                p + 1 >= highest_first,
                "event {p} arrived again after event {highest_first} had started"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_events_arrive_in_acknowledged_order_across_a_sigkill() {
    let mut app = spawn_app_with(&[("INTERNAL_RATE_LIMIT_MAX_REQUESTS", "1000000")]).await;
    // Slower than ingest, so a queue builds up and the kill finds deliveries
    // queued, in flight and delivered.
    let receiver = Receiver::start(Behavior::Delay(Duration::from_millis(3), 200))
        .await
        .unwrap();
    let token = app.token("olga", false);
    let hook = app.create_webhook_from(&token,
        json!({"url": receiver.url("/ordered"), "eventTypes": ["credit.*"], "ordering": "fifo"}),
    )
    .await;
    assert_eq!(hook["ordering"], "fifo", "{hook}");
    assert_eq!(hook["orderingKey"], "webhook", "{hook}");

    let mut wanted = Vec::new();
    let mut n = 0;
    while wanted.len() < 400 {
        if let Some((event, _)) = acknowledged(&app, "olga", n).await {
            wanted.push(event);
        }
        n += 1;
    }
    eventually(
        "some deliveries before the kill",
        Duration::from_secs(30),
        || async { (receiver.count() >= 50).then_some(()) },
    )
    .await;
    let before_kill = receiver.count();
    app.kill();
    assert!(
        before_kill < wanted.len(),
        "the kill came while deliveries were queued ({before_kill} of {} arrived)",
        wanted.len()
    );
    app.start().await;
    while wanted.len() < 1000 {
        if let Some((event, _)) = acknowledged(&app, "olga", n).await {
            wanted.push(event);
        }
        n += 1;
    }
    eventually(
        "all 1,000 acknowledged events to arrive",
        Duration::from_secs(120),
        || async { (first_arrivals(&receiver.received()).len() >= 1000).then_some(()) },
    )
    .await;
    assert_in_order(&wanted, &receiver.received());
}

#[tokio::test]
async fn a_failing_head_holds_back_its_own_user_only() {
    let app = spawn_app().await;
    // Fails every delivery of one user's events.
    let receiver = Receiver::start(Behavior::FailWhenBodyContains {
        needle: "stuck-user".into(),
        status: 500,
    })
    .await
    .unwrap();
    let admin = app.token("admin", true);
    let hook = app
        .create_webhook_from(
            &admin,
            json!({"url": receiver.url("/per-user"), "eventTypes": ["credit.*"], "scope": "all",
               "ordering": "fifo", "orderingKey": "userId", "retrySchedule": ["1m"]}),
        )
        .await;
    assert_eq!(hook["orderingKey"], "userId", "{hook}");
    let id = hook["id"].as_str().unwrap();

    let mut stuck = Vec::new();
    for n in 0..4 {
        stuck.push(acknowledged(&app, "stuck-user", n).await.unwrap());
    }
    let mut flowing = Vec::new();
    for n in 0..5 {
        flowing.push(acknowledged(&app, "flowing-user", n).await.unwrap().0);
    }
    // The other user's events all arrive, in order, behind nothing.
    eventually(
        "the flowing user's events",
        Duration::from_secs(20),
        || async {
            let got = first_arrivals(&receiver.received());
            flowing.iter().all(|e| got.contains(e)).then_some(())
        },
    )
    .await;
    let flowing_got: Vec<String> = first_arrivals(&receiver.received())
        .into_iter()
        .filter(|e| flowing.contains(e))
        .collect();
    assert_eq!(flowing_got, flowing);
    // Of the stuck user's, only the head was attempted.
    let stuck_ids: Vec<&String> = stuck.iter().map(|(e, _)| e).collect();
    let attempted: Vec<String> = first_arrivals(&receiver.received())
        .into_iter()
        .filter(|e| stuck_ids.contains(&e))
        .collect();
    assert_eq!(attempted, vec![stuck[0].0.clone()]);

    // The API says who holds the order back.
    let head = &stuck[0].1[0];
    let waiting = &stuck[2].1[0];
    let detail = eventually(
        "the head to be retrying",
        Duration::from_secs(10),
        || async {
            let d = delivery_detail(&app, &admin, id, head).await;
            (d["status"] == "retrying").then_some(d)
        },
    )
    .await;
    assert_eq!(detail["blockedBy"], Value::Null, "{detail}");
    let detail = delivery_detail(&app, &admin, id, waiting).await;
    assert_eq!(detail["blockedBy"], json!(head), "{detail}");
    let (status, ordering) = app
        .get(&format!("/api/v1/webhooks/{id}/ordering"), &admin)
        .await;
    assert_eq!(status, 200, "{ordering}");
    let orders = ordering["data"]["orders"].as_array().unwrap();
    assert_eq!(
        orders.len(),
        1,
        "only the stuck user's order waits: {ordering}"
    );
    assert_eq!(orders[0]["key"], "stuck-user");
    assert_eq!(orders[0]["headDeliveryId"], json!(head));
    assert_eq!(orders[0]["blocked"], true);
    assert_eq!(orders[0]["waiting"], 3);

    // Once the endpoint recovers and the head is retried, the rest follow in order.
    receiver.set_behavior(Behavior::Status(200));
    let (status, body) = app
        .post(
            &format!("/api/v1/webhooks/{id}/deliveries/{head}/retry"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    eventually(
        "the stuck user's events",
        Duration::from_secs(20),
        || async {
            let got = first_arrivals(&receiver.received());
            stuck_ids.iter().all(|e| got.contains(e)).then_some(())
        },
    )
    .await;
    let stuck_got: Vec<String> = first_arrivals(&receiver.received())
        .into_iter()
        .filter(|e| stuck_ids.contains(&e))
        .collect();
    let stuck_wanted: Vec<String> = stuck.iter().map(|(e, _)| e.clone()).collect();
    assert_eq!(stuck_got, stuck_wanted);
}

#[tokio::test]
async fn ordering_values_are_checked_and_a_refused_update_changes_nothing() {
    let app = spawn_app().await;
    let token = app.token("vera", false);
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let url = receiver.url("/v");
    let (status, body) = app
        .post(
            "/api/v1/webhooks",
            &token,
            json!({"url": url, "eventTypes": ["*"], "orderingKey": "userId"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_fields(&body), ["orderingKey"]);
    assert!(
        body["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("\"ordering\": \"fifo\""),
        "{body}"
    );

    let hook = app
        .create_webhook_from(&token, json!({"url": url, "eventTypes": ["*"]}))
        .await;
    assert_eq!(hook["ordering"], Value::Null, "{hook}");
    let id = hook["id"].as_str().unwrap();
    for (body, field) in [
        (json!({"ordering": "lifo"}), "ordering"),
        (json!({"ordering": true}), "ordering"),
        (
            json!({"ordering": "fifo", "orderingKey": "tenant"}),
            "orderingKey",
        ),
        (json!({"orderingKey": "webhook"}), "orderingKey"),
    ] {
        let (status, answer) = app.patch_webhook(&token, id, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(error_fields(&answer), [field], "{body}");
    }
    // One good and one bad value: refused whole.
    let (status, _) = app
        .patch_webhook(&token, id, json!({"ordering": "fifo", "timeoutMs": 0}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(webhook(&app, &token, id).await["ordering"], Value::Null);

    let (status, answer) = app
        .patch_webhook(&token, id, json!({"ordering": "fifo"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let stored = webhook(&app, &token, id).await;
    assert_eq!(stored["ordering"], "fifo");
    assert_eq!(stored["orderingKey"], "webhook");
    let (status, _) = app
        .patch_webhook(&token, id, json!({"ordering": null}))
        .await;
    assert_eq!(status, 200);
    let stored = webhook(&app, &token, id).await;
    assert_eq!(stored["ordering"], Value::Null);
    assert_eq!(stored["orderingKey"], Value::Null);
}

#[tokio::test]
async fn the_api_document_describes_ordering_with_examples() {
    let app = spawn_app().await;
    let (status, spec, _) = app
        .request(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, 200);
    let ordering = &spec["paths"]["/api/v1/webhooks/{id}/ordering"]["get"];
    assert!(ordering.is_object(), "the ordering view is documented");
    assert!(
        ordering.to_string().contains("headDeliveryId"),
        "with an example of a blocked order: {ordering}"
    );
    let schema = &spec["components"]["schemas"]["WebhookBody"];
    let parts: Vec<&Value> = match schema["allOf"].as_array() {
        Some(parts) => parts.iter().collect(),
        None => vec![schema],
    };
    for (field, example) in [("ordering", "fifo"), ("orderingKey", "userId")] {
        let property = parts
            .iter()
            .map(|part| &part["properties"][field])
            .find(|p| !p.is_null())
            .unwrap_or_else(|| panic!("WebhookBody.{field} is documented: {schema}"));
        assert_eq!(
            property["example"], example,
            "WebhookBody.{field}: {property}"
        );
        assert!(
            property["description"].is_string(),
            "WebhookBody.{field} is described"
        );
    }
}

#[tokio::test]
async fn switching_ordering_off_releases_a_blocked_queue_at_once() {
    let app = spawn_app().await;
    // Fails only the first event, which then holds the order.
    let receiver = Receiver::start(Behavior::FailWhenBodyContains {
        needle: "first-in-line".into(),
        status: 503,
    })
    .await
    .unwrap();
    let token = app.token("wanda", false);
    let hook = app
        .create_webhook_from(
            &token,
            json!({"url": receiver.url("/q"), "eventTypes": ["credit.*"],
               "ordering": "fifo", "retrySchedule": ["1m"]}),
        )
        .await;
    let id = hook["id"].as_str().unwrap();
    let (status, _) = app
        .trigger("credit.purchased", "wanda", json!({"tag": "first-in-line"}))
        .await;
    assert_eq!(status, 202);
    let mut queued = Vec::new();
    for n in 0..3 {
        queued.push(acknowledged(&app, "wanda", n).await.unwrap().0);
    }
    eventually("the head to fail once", Duration::from_secs(10), || async {
        (receiver.count() >= 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.count(),
        1,
        "the queue waits behind the failing head"
    );

    let (status, answer) = app
        .patch_webhook(&token, id, json!({"ordering": null}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let started = std::time::Instant::now();
    eventually(
        "the queued events after ordering is switched off",
        Duration::from_secs(5),
        || async {
            let got = first_arrivals(&receiver.received());
            queued.iter().all(|e| got.contains(e)).then_some(())
        },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "released within a second, not {:?}",
        started.elapsed()
    );
}
