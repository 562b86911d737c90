//! What a webhook owner can do with deliveries: retry one by hand, replay
//! failed ones in bulk, read statistics, and send a test event.

use std::time::Duration;

use crate::common::{spawn_app, spawn_app_with};
use crate::delivery_support::{delivery_detail, header, logs, trigger_one, wait_final};
use serde_json::json;
use webhook_testkit::{Behavior, Receiver};

/// No retries: a failing receiver fails a delivery at its first attempt.
const NO_RETRIES: (&str, &str) = ("WEBHOOK_MAX_RETRIES", "0");

#[tokio::test]
async fn a_manual_retry_redelivers_with_the_same_event_id() {
    let app = spawn_app_with(&[NO_RETRIES]).await;
    let receiver = Receiver::start(Behavior::Status(500)).await.unwrap();
    let token = app.token("uma", false);
    let secret = "manual_retry_secret_1234";
    let hook = app
        .create_webhook(&token, &receiver.url("/h"), &["user.created"], Some(secret))
        .await;
    let id = hook["id"].as_str().unwrap();
    let (event_id, delivery) = trigger_one(&app, "user.created", "uma", json!({"k": 1})).await;
    let d = wait_final(&app, &token, id, &delivery, Duration::from_secs(10)).await;
    assert_eq!(d["status"], "failed");

    receiver.set_behavior(Behavior::Status(200));
    let (status, body) = app
        .post(
            &format!("/api/v1/webhooks/{id}/deliveries/{delivery}/retry"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{body}");

    let got = receiver.wait_for(2, Duration::from_secs(10)).await.unwrap();
    assert_eq!(got[1].event_id().as_deref(), Some(event_id.as_str()));
    assert_eq!(got[1].body, got[0].body, "the same bytes");
    assert_eq!(header(&got[1], "x-webhook-attempt"), "2");
    assert_eq!(header(&got[1], "x-webhook-delivery"), delivery);
    got[1].verify_signatures(secret).unwrap();
    let d = wait_final(&app, &token, id, &delivery, Duration::from_secs(10)).await;
    assert_eq!(d["status"], "delivered", "{d}");
    assert_eq!(d["attempts"], 2);

    // Unknown delivery, or another user's webhook: 404.
    let (status, _) = app
        .post(
            &format!("/api/v1/webhooks/{id}/deliveries/dlv_nope/retry"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(status, 404);
    let intruder = app.token("victor", false);
    let (status, _) = app
        .post(
            &format!("/api/v1/webhooks/{id}/deliveries/{delivery}/retry"),
            &intruder,
            json!({}),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_replay_redelivers_the_failed_deliveries_by_default() {
    let app = spawn_app_with(&[NO_RETRIES]).await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("wendy", false);
    let hook = app
        .create_webhook(&token, &receiver.url("/h"), &["credit.*"], None)
        .await;
    let id = hook["id"].as_str().unwrap();

    let (ok_event, ok_delivery) = trigger_one(&app, "credit.low", "wendy", json!({})).await;
    wait_final(&app, &token, id, &ok_delivery, Duration::from_secs(10)).await;
    receiver.set_behavior(Behavior::Status(503));
    let mut failed = Vec::new();
    for n in 0..3 {
        let (event, delivery) = trigger_one(&app, "credit.low", "wendy", json!({"n": n})).await;
        let d = wait_final(&app, &token, id, &delivery, Duration::from_secs(10)).await;
        assert_eq!(d["status"], "failed");
        failed.push(event);
    }
    assert_eq!(receiver.count(), 4);

    // `since` is required.
    let (status, body) = app
        .post(&format!("/api/v1/webhooks/{id}/replay"), &token, json!({}))
        .await;
    assert_eq!(status, 400, "{body}");
    // A bad status names every accepted value, `all` included.
    let (status, body) = app
        .post(
            &format!("/api/v1/webhooks/{id}/replay"),
            &token,
            json!({"since": "2020-01-01T00:00:00Z", "status": "done"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string()
            .contains("status must be one of pending, retrying, delivered, failed, all"),
        "{body}"
    );

    receiver.set_behavior(Behavior::Status(200));
    let (status, body) = app
        .post(
            &format!("/api/v1/webhooks/{id}/replay"),
            &token,
            json!({"since": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["replayed"], 3, "only the failed ones: {body}");

    let got = receiver.wait_for(7, Duration::from_secs(10)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.count(), 7, "the delivered one is not replayed");
    let mut replayed: Vec<String> = got[4..].iter().filter_map(|r| r.event_id()).collect();
    replayed.sort();
    failed.sort();
    assert_eq!(replayed, failed, "redelivered with the same event ids");
    for item in logs(&app, &token, id).await {
        assert_eq!(item["status"], "delivered", "{item}");
    }

    // Asked for explicitly, delivered ones are replayed too; a window before them finds nothing.
    let (_, body) = app
        .post(
            &format!("/api/v1/webhooks/{id}/replay"),
            &token,
            json!({"since": "2020-01-01T00:00:00Z", "status": "delivered"}),
        )
        .await;
    assert_eq!(body["data"]["replayed"], 4, "{body}");
    receiver
        .wait_for(11, Duration::from_secs(10))
        .await
        .unwrap();
    let again: Vec<String> = receiver.received()[7..]
        .iter()
        .filter_map(|r| r.event_id())
        .collect();
    assert!(again.contains(&ok_event));
    let (_, body) = app
        .post(
            &format!("/api/v1/webhooks/{id}/replay"),
            &token,
            json!({"since": "2020-01-01T00:00:00Z", "until": "2021-01-01T00:00:00Z", "status": "all"}),
        )
        .await;
    assert_eq!(body["data"]["replayed"], 0, "{body}");
}

#[tokio::test]
async fn statistics_count_deliveries_by_status() {
    let app = spawn_app_with(&[NO_RETRIES]).await;
    let good = Receiver::start(Behavior::Status(200)).await.unwrap();
    let bad = Receiver::start(Behavior::Status(500)).await.unwrap();
    let token = app.token("xena", false);
    let good_hook = app
        .create_webhook(&token, &good.url("/g"), &["user.*"], None)
        .await;
    let bad_hook = app
        .create_webhook(&token, &bad.url("/b"), &["user.login"], None)
        .await;
    let good_id = good_hook["id"].as_str().unwrap();
    let bad_id = bad_hook["id"].as_str().unwrap();
    // Someone else's traffic must not show up in xena's numbers.
    let other = app.token("yuri", false);
    let other_rx = Receiver::start(Behavior::Status(200)).await.unwrap();
    app.create_webhook(&other, &other_rx.url("/o"), &["*"], None)
        .await;
    app.trigger("user.login", "yuri", json!({})).await;

    for _ in 0..3 {
        app.trigger("user.login", "xena", json!({})).await; // good + bad
    }
    app.trigger("user.created", "xena", json!({})).await; // good only
    good.wait_for(4, Duration::from_secs(10)).await.unwrap();
    bad.wait_for(3, Duration::from_secs(10)).await.unwrap();
    crate::delivery_support::eventually(
        "all deliveries final",
        Duration::from_secs(10),
        || async {
            let g = logs(&app, &token, good_id).await;
            let b = logs(&app, &token, bad_id).await;
            (g.iter().all(|d| d["status"] == "delivered")
                && b.iter().all(|d| d["status"] == "failed"))
            .then_some(())
        },
    )
    .await;

    let (status, body) = app
        .get(&format!("/api/v1/webhooks/{good_id}/stats"), &token)
        .await;
    assert_eq!(status, 200, "{body}");
    let s = &body["data"];
    assert_eq!(s["webhookId"], good_id);
    assert_eq!(s["total"], 4);
    assert_eq!(s["byStatus"]["delivered"], 4);
    assert_eq!(s["byStatus"]["failed"], 0);
    assert_eq!(s["successRate"], 1.0);
    assert!(s["latencyMs"]["p50"].is_u64(), "{s}");
    assert!(s["latencyMs"]["p95"].as_u64() >= s["latencyMs"]["p50"].as_u64());

    let (_, body) = app
        .get(
            &format!("/api/v1/webhooks/{bad_id}/stats?window=1h"),
            &token,
        )
        .await;
    let s = &body["data"];
    assert_eq!(s["windowSeconds"], 3600);
    assert_eq!(s["byStatus"]["failed"], 3);
    assert_eq!(s["successRate"], 0.0);
    assert!(
        s["latencyMs"]["p50"].is_null(),
        "no successful attempt: {s}"
    );

    let (status, body) = app.get("/api/v1/webhooks/stats", &token).await;
    assert_eq!(status, 200, "{body}");
    let s = &body["data"];
    assert_eq!(s["totalWebhooks"], 2);
    assert_eq!(s["activeWebhooks"], 2);
    assert_eq!(s["totalDeliveries"], 7);
    assert_eq!(s["successfulDeliveries"], 4);
    assert_eq!(s["failedDeliveries"], 3);
    assert_eq!(s["pendingDeliveries"], 0);
    let rate = s["window"]["successRate"].as_f64().unwrap();
    assert!((rate - 4.0 / 7.0).abs() < 1e-9, "{s}");
    // A window longer than all of time counts everything (it used to wrap
    // around to a start in the future and count nothing).
    for path in [
        format!("/api/v1/webhooks/{good_id}/stats?window=18446744073709551615ms"),
        "/api/v1/webhooks/stats?window=18446744073709551615ms".to_string(),
    ] {
        let (status, body) = app.get(&path, &token).await;
        assert_eq!(status, 200, "{body}");
        let s = &body["data"];
        let total = s["total"].as_u64().or(s["window"]["total"].as_u64());
        assert!(matches!(total, Some(4 | 7)), "{path}: {s}");
    }

    // An admin sees the platform's totals.
    let admin = app.token("ops", true);
    let (_, body) = app.get("/api/v1/webhooks/stats", &admin).await;
    assert_eq!(body["data"]["totalWebhooks"], 3);
    assert_eq!(body["data"]["totalDeliveries"], 8);

    let (status, _) = app
        .get(&format!("/api/v1/webhooks/{good_id}/stats"), &other)
        .await;
    assert_eq!(status, 404, "another user's webhook");
}

#[tokio::test]
async fn a_test_send_answers_200_with_the_outcome_even_when_the_receiver_fails() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(500)).await.unwrap();
    let token = app.token("zoe", false);
    let secret = "test_send_secret_value_1";
    let hook = app
        .create_webhook(&token, &receiver.url("/t"), &["user.created"], Some(secret))
        .await;
    let id = hook["id"].as_str().unwrap();

    // As the guide's curl sends it.
    let (status, body) = app
        .post(
            &format!("/api/v1/webhooks/{id}/test"),
            &token,
            json!({"eventType": "user.created", "data": {"test": true}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let r = &body["data"];
    assert_eq!(r["success"], false);
    assert_eq!(r["statusCode"], 500);
    assert!(r["durationMs"].is_u64());
    assert!(r["responseBody"].as_str().unwrap().contains("500"), "{r}");
    assert!(r["error"].is_string(), "{r}");
    let delivery = r["deliveryId"].as_str().unwrap().to_string();

    let got = receiver.wait_for(1, Duration::from_secs(5)).await.unwrap();
    got[0].verify_signatures(secret).unwrap();
    let sent = got[0].json();
    assert_eq!(sent["eventType"], "user.created");
    assert_eq!(sent["data"]["test"], true);
    assert_eq!(sent["metadata"]["test"], true);
    assert_eq!(sent["userId"], "zoe");

    // Logged like any delivery, final after one attempt (a test is not retried).
    let d = delivery_detail(&app, &token, id, &delivery).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["event"]["metadata"]["test"], true);
    assert_eq!(d["attemptLog"][0]["statusCode"], 500);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.count(), 1, "a test send is not retried");

    // A healthy receiver, with `payload` (alias of data).
    receiver.set_behavior(Behavior::Status(200));
    let (status, body) = app
        .post(
            &format!("/api/v1/webhooks/{id}/test"),
            &token,
            json!({"eventType": "credit.low", "payload": {"balance": 2}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["success"], true, "{body}");
    assert_eq!(body["data"]["statusCode"], 200);
    let got = receiver.wait_for(2, Duration::from_secs(5)).await.unwrap();
    assert_eq!(got[1].json()["data"]["balance"], 2);
    assert_ne!(got[1].event_id(), got[0].event_id(), "a fresh id per test");
    let d = delivery_detail(
        &app,
        &token,
        id,
        body["data"]["deliveryId"].as_str().unwrap(),
    )
    .await;
    assert_eq!(d["status"], "delivered");

    // An unreachable receiver: still 200, with the error.
    receiver.shutdown();
    let (status, body) = app
        .post(&format!("/api/v1/webhooks/{id}/test"), &token, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["success"], false);
    assert!(body["data"]["statusCode"].is_null());
    assert_eq!(body["data"]["errorKind"], "connect", "{body}");
    // A test must not disable the webhook or count against it.
    let (_, w) = app.get(&format!("/api/v1/webhooks/{id}"), &token).await;
    assert_eq!(w["data"]["isActive"], true);
}

#[tokio::test]
async fn failing_test_sends_neither_disable_the_webhook_nor_count_toward_it() {
    // Two exhausted deliveries in a row disable a webhook here.
    let app = spawn_app_with(&[NO_RETRIES, ("WEBHOOK_DISABLE_AFTER_EXHAUSTED", "2")]).await;
    let receiver = Receiver::start(Behavior::Status(500)).await.unwrap();
    let token = app.token("tess", false);
    let hook = app
        .create_webhook(&token, &receiver.url("/t"), &["user.created"], None)
        .await;
    let id = hook["id"].as_str().unwrap();

    // An owner debugging a broken endpoint sends test after test.
    for _ in 0..3 {
        let (status, body) = app
            .post(&format!("/api/v1/webhooks/{id}/test"), &token, json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["success"], false);
    }
    receiver.set_behavior(Behavior::Status(410));
    let (_, body) = app
        .post(&format!("/api/v1/webhooks/{id}/test"), &token, json!({}))
        .await;
    assert_eq!(body["data"]["statusCode"], 410);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, w) = app.get(&format!("/api/v1/webhooks/{id}"), &token).await;
    let w = &w["data"];
    assert_eq!(w["isActive"], true, "test sends disabled the webhook: {w}");
    assert!(w["disabledReason"].is_null(), "{w}");
    assert!(
        w["failingSince"].is_null(),
        "test sends started a failure run: {w}"
    );

    // Real traffic: the first exhausted delivery alone does not disable it,
    // because the failing tests before it did not count.
    receiver.set_behavior(Behavior::Status(500));
    let (_, delivery) = trigger_one(&app, "user.created", "tess", json!({})).await;
    wait_final(&app, &token, id, &delivery, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, w) = app.get(&format!("/api/v1/webhooks/{id}"), &token).await;
    assert_eq!(w["data"]["isActive"], true, "{w}");
}

#[tokio::test]
async fn a_replay_to_a_disabled_webhook_says_it_waits_and_goes_out_once_enabled() {
    let app = spawn_app_with(&[NO_RETRIES]).await;
    let receiver = Receiver::start(Behavior::Status(500)).await.unwrap();
    let token = app.token("rhea", false);
    let hook = app
        .create_webhook(&token, &receiver.url("/r"), &["user.created"], None)
        .await;
    let id = hook["id"].as_str().unwrap();
    let (event_id, delivery) = trigger_one(&app, "user.created", "rhea", json!({})).await;
    let d = wait_final(&app, &token, id, &delivery, Duration::from_secs(10)).await;
    assert_eq!(d["status"], "failed", "{d}");

    let (status, body) = app
        .post(&format!("/api/v1/webhooks/{id}/toggle"), &token, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["isActive"], false, "{body}");
    receiver.set_behavior(Behavior::Status(200));
    let (status, body) = app
        .post(
            &format!("/api/v1/webhooks/{id}/replay"),
            &token,
            json!({"since": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["replayed"], 1, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("disabled"),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.count(), 1, "nothing goes to a disabled webhook");

    let (status, body) = app
        .post(&format!("/api/v1/webhooks/{id}/toggle"), &token, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let got = receiver.wait_for(2, Duration::from_secs(10)).await.unwrap();
    assert_eq!(got[1].event_id().as_deref(), Some(event_id.as_str()));
}

#[tokio::test]
async fn saving_an_active_webhook_keeps_its_failure_run() {
    // Two exhausted deliveries in a row disable a webhook here.
    let app = spawn_app_with(&[NO_RETRIES, ("WEBHOOK_DISABLE_AFTER_EXHAUSTED", "2")]).await;
    let receiver = Receiver::start(Behavior::Status(500)).await.unwrap();
    let token = app.token("sven", false);
    let hook = app
        .create_webhook(&token, &receiver.url("/s"), &["user.created"], None)
        .await;
    let id = hook["id"].as_str().unwrap();
    let patch = |body: serde_json::Value| {
        let app = &app;
        let token = &token;
        async move {
            let (status, w, _) = app
                .request(
                    reqwest::Method::PATCH,
                    &format!("/api/v1/webhooks/{id}"),
                    Some(token),
                    Some(body),
                )
                .await;
            assert_eq!(status, 200, "{w}");
            w["data"].clone()
        }
    };

    let (_, delivery) = trigger_one(&app, "user.created", "sven", json!({})).await;
    wait_final(&app, &token, id, &delivery, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The front end sends `isActive` with every edit.
    let w = patch(json!({"description": "edited", "isActive": true})).await;
    assert!(w["failingSince"].is_string(), "the edit ended the run: {w}");

    // So the second exhausted delivery still disables it...
    let (_, delivery) = trigger_one(&app, "user.created", "sven", json!({})).await;
    wait_final(&app, &token, id, &delivery, Duration::from_secs(10)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, w) = app.get(&format!("/api/v1/webhooks/{id}"), &token).await;
        if w["data"]["isActive"] == false {
            assert!(w["data"]["disabledReason"].is_string(), "{w}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never disabled: {w}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and enabling it again starts afresh.
    let w = patch(json!({"isActive": true})).await;
    assert_eq!(w["isActive"], true, "{w}");
    assert!(w["failingSince"].is_null(), "{w}");
    assert!(w["disabledReason"].is_null(), "{w}");
}

#[tokio::test]
async fn the_delivery_log_filters_and_pages() {
    let app = spawn_app_with(&[NO_RETRIES]).await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("lara", false);
    let hook = app
        .create_webhook(&token, &receiver.url("/l"), &["*"], None)
        .await;
    let id = hook["id"].as_str().unwrap();
    for _ in 0..3 {
        let (_, d) = trigger_one(&app, "user.created", "lara", json!({})).await;
        wait_final(&app, &token, id, &d, Duration::from_secs(10)).await;
    }
    receiver.set_behavior(Behavior::Status(500));
    for _ in 0..2 {
        let (_, d) = trigger_one(&app, "credit.low", "lara", json!({})).await;
        wait_final(&app, &token, id, &d, Duration::from_secs(10)).await;
    }

    let page = |query: &'static str| {
        let app = &app;
        let token = &token;
        async move {
            let (status, body) = app
                .get(&format!("/api/v1/webhooks/{id}/logs?{query}"), token)
                .await;
            assert_eq!(status, 200, "{query}: {body}");
            body
        }
    };
    let failed = page("status=failed").await;
    assert_eq!(failed["meta"]["total"], 2);
    assert!(
        failed["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "failed" && d["eventType"] == "credit.low")
    );
    let created = page("eventType=user.created").await;
    assert_eq!(created["meta"]["total"], 3);
    assert!(
        created["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "delivered")
    );
    let second = page("limit=2&page=2").await;
    assert_eq!(second["data"].as_array().unwrap().len(), 2);
    assert_eq!(second["meta"]["total"], 5);
    assert_eq!(second["meta"]["hasMore"], true);
    // A log this small is counted whole.
    assert_eq!(second["meta"]["totalExact"], true);
    let last = page("limit=2&offset=4").await;
    assert_eq!(last["data"].as_array().unwrap().len(), 1);
    assert_eq!(last["meta"]["hasMore"], false);
    // Newest first: the last page holds the oldest delivery, a user.created.
    assert_eq!(last["data"][0]["eventType"], "user.created");
    assert_eq!(page("since=2999-01-01T00:00:00Z").await["meta"]["total"], 0);
    assert_eq!(page("until=2020-01-01T00:00:00Z").await["meta"]["total"], 0);
    assert_eq!(
        page("since=2020-01-01T00:00:00Z&status=delivered").await["meta"]["total"],
        3
    );

    // The /deliveries alias answers the same.
    let (_, alias) = app
        .get(
            &format!("/api/v1/webhooks/{id}/deliveries?status=failed"),
            &token,
        )
        .await;
    assert_eq!(alias["data"], failed["data"]);
    let (status, body) = app
        .get(&format!("/api/v1/webhooks/{id}/logs?status=lost"), &token)
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn a_test_send_is_finished_and_logged_even_if_the_caller_gives_up() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Hang).await.unwrap();
    let token = app.token("quinn", false);
    let hook = app
        .create_webhook(&token, &receiver.url("/slow"), &["user.created"], None)
        .await;
    let id = hook["id"].as_str().unwrap();

    // The caller hangs up long before the receiver's 2 s timeout.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let sent = impatient
        .post(app.url(&format!("/api/v1/webhooks/{id}/test")))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await;
    assert!(sent.is_err(), "the caller was meant to time out");
    receiver.wait_for(1, Duration::from_secs(5)).await.unwrap();

    // The attempt still runs its course and is logged as final: it is not
    // left pending, to be sent again as a real delivery after a restart.
    let logged = crate::delivery_support::eventually(
        "the abandoned test send to be logged",
        Duration::from_secs(8),
        || async {
            let items = logs(&app, &token, id).await;
            (items.len() == 1 && items[0]["status"] == "failed").then_some(items)
        },
    )
    .await;
    assert_eq!(logged[0]["lastErrorKind"], "timeout", "{:?}", logged[0]);
    assert_eq!(logged[0]["attempts"], 1);
}

/// A webhook deleted while one of its attempts is in flight: the late result
/// finds no delivery to record and is dropped, and the results of the owner's
/// other webhooks, committed in the same batches, keep being recorded.
#[tokio::test]
async fn deleting_a_webhook_mid_attempt_does_not_stall_recording() {
    let app = spawn_app_with(&[]).await;
    let slow = Receiver::start(Behavior::Delay(Duration::from_millis(700), 200))
        .await
        .unwrap();
    let fast = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("dora", false);
    let doomed = app
        .create_webhook(&token, &slow.url("/slow"), &["user.created"], None)
        .await;
    let kept = app
        .create_webhook(&token, &fast.url("/fast"), &["user.created"], None)
        .await;
    let doomed_id = doomed["id"].as_str().unwrap();
    let kept_id = kept["id"].as_str().unwrap();

    let (status, body) = app.trigger("user.created", "dora", json!({"n": 1})).await;
    assert_eq!(status, 202, "{body}");
    // The slow receiver holds the request for 700 ms: delete meanwhile.
    slow.wait_for(1, Duration::from_secs(5)).await.unwrap();
    let (status, body, _) = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/webhooks/{doomed_id}"),
            Some(&token),
            None,
        )
        .await;
    assert!((200..300).contains(&status), "delete: {status} {body}");
    // Its attempt ends after the deletion; then more traffic for the other one.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (status, body) = app.trigger("user.created", "dora", json!({"n": 2})).await;
    assert_eq!(status, 202, "{body}");

    let items = app
        .wait_for_logs(&token, kept_id, Duration::from_secs(10), |items| {
            items.len() == 2 && items.iter().all(|d| d["status"] == "delivered")
        })
        .await;
    assert_eq!(items.len(), 2);
    assert_eq!(fast.received().len(), 2);
    let (status, _) = app
        .get(&format!("/api/v1/webhooks/{doomed_id}/logs"), &token)
        .await;
    assert_eq!(status, 404, "the deleted webhook and its log are gone");
}
