//! What happens to a delivery, depending on how the receiver answers: real
//! local receivers answer 2xx, 500, 410, 429 with `Retry-After`, hang past the
//! timeout, reset the connection or redirect, and the delivery log shows each
//! attempt as it went. The test instance runs with WEBHOOK_TIMEOUT=2000 and
//! WEBHOOK_RETRY_SCHEDULE=200ms,400ms,800ms without jitter.

use std::time::Duration;

use crate::common::spawn_app;
use crate::delivery_support::{
    delivery_detail, eventually, gaps_ms, header, logs, trigger_one, wait_final, webhook,
};
use serde_json::json;
use webhook_testkit::{Behavior, Receiver};

const SECRET: &str = "outcomes_test_secret_value";

#[tokio::test]
async fn a_2xx_answer_delivers_at_the_first_attempt() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(204)).await.unwrap();
    let token = app.token("alice", false);
    let hook = app
        .create_webhook(
            &token,
            &receiver.url("/hook"),
            &["user.created"],
            Some(SECRET),
        )
        .await;
    let id = hook["id"].as_str().unwrap();

    let (event_id, delivery) =
        trigger_one(&app, "user.created", "alice", json!({"userId": "alice"})).await;

    let detail = wait_final(&app, &token, id, &delivery, Duration::from_secs(10)).await;
    assert_eq!(detail["status"], "delivered", "{detail}");
    assert_eq!(detail["attempts"], 1);
    assert_eq!(detail["lastStatusCode"], 204);
    assert!(detail["deliveredAt"].is_string());
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    got[0].verify_signatures(SECRET).unwrap();
    assert_eq!(got[0].event_id().as_deref(), Some(event_id.as_str()));
    assert_eq!(header(&got[0], "x-webhook-delivery"), delivery);
    assert_eq!(header(&got[0], "content-type"), "application/json");
}

#[tokio::test]
async fn a_500_is_retried_by_the_schedule_then_fails_with_the_same_event_id() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(500)).await.unwrap();
    let token = app.token("bob", false);
    let hook = app
        .create_webhook(&token, &receiver.url("/hook"), &["credit.*"], Some(SECRET))
        .await;
    let id = hook["id"].as_str().unwrap();

    let (event_id, delivery) = trigger_one(&app, "credit.low", "bob", json!({"balance": 3})).await;

    // 1 first attempt + 3 retries (one per scheduled wait).
    let detail = wait_final(&app, &token, id, &delivery, Duration::from_secs(15)).await;
    assert_eq!(detail["status"], "failed", "{detail}");
    assert_eq!(detail["attempts"], 4);
    assert_eq!(detail["lastStatusCode"], 500);
    assert_eq!(detail["lastErrorKind"], "http_status");
    assert!(detail["nextAttemptAt"].is_null());

    let got = receiver.received();
    assert_eq!(got.len(), 4, "exactly max attempts reach the receiver");
    for (i, r) in got.iter().enumerate() {
        assert_eq!(header(r, "x-webhook-attempt"), (i + 1).to_string());
        assert_eq!(
            r.event_id().as_deref(),
            Some(event_id.as_str()),
            "same event id every time"
        );
        assert_eq!(header(r, "x-webhook-id"), event_id);
        assert_eq!(header(r, "webhook-id"), event_id);
        assert_eq!(header(r, "x-webhook-delivery"), delivery);
        assert_eq!(r.body, got[0].body, "every retry sends the same bytes");
        r.verify_signatures(SECRET).unwrap();
    }

    // The waits between attempts follow 200 ms, 400 ms, 800 ms: never early
    // (they count from the answer, which the receiver sends after it logged
    // the request). How late they come depends on the scheduler's 250 ms
    // polling and on how busy the machine is, so the upper bound only tells
    // a schedule that is followed from one that is not.
    let gaps = gaps_ms(&got);
    eprintln!("gaps between attempts (ms): {gaps:?}");
    for (gap, want) in gaps.iter().zip([200i64, 400, 800]) {
        assert!(
            *gap >= want,
            "retry came early: {gap} ms < {want} ms ({gaps:?})"
        );
        assert!(
            *gap <= want + 3000,
            "retry came late: {gap} ms for {want} ms ({gaps:?})"
        );
    }

    // Nothing more arrives once the delivery failed.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(receiver.count(), 4);
}

#[tokio::test]
async fn a_410_fails_the_delivery_disables_the_webhook_and_tells_the_owner() {
    let app = spawn_app().await;
    let gone = Receiver::start(Behavior::Status(410)).await.unwrap();
    let watcher = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("carol", false);
    let hook = app
        .create_webhook(&token, &gone.url("/gone"), &["user.*"], Some(SECRET))
        .await;
    let id = hook["id"].as_str().unwrap();
    let watcher_secret = "watcher_secret_value_123";
    app.create_webhook(
        &token,
        &watcher.url("/watch"),
        &["webhook.disabled"],
        Some(watcher_secret),
    )
    .await;

    let (_, delivery) = trigger_one(&app, "user.login", "carol", json!({"userId": "carol"})).await;

    let detail = wait_final(&app, &token, id, &delivery, Duration::from_secs(10)).await;
    assert_eq!(detail["status"], "failed", "a 410 is final: {detail}");
    assert_eq!(detail["attempts"], 1, "a 410 is not retried");
    assert_eq!(detail["lastStatusCode"], 410);

    let shown = eventually(
        "the webhook to be disabled",
        Duration::from_secs(5),
        || async {
            let w = webhook(&app, &token, id).await;
            (w["isActive"] == false).then_some(w)
        },
    )
    .await;
    let reason = shown["disabledReason"].as_str().unwrap_or_default();
    assert!(reason.contains("410"), "reason shown in GET: {shown}");
    assert!(shown["disabledAt"].is_string());

    let got = watcher.wait_for(1, Duration::from_secs(10)).await.unwrap();
    let notice = &got[0];
    notice.verify_signatures(watcher_secret).unwrap();
    assert_eq!(header(notice, "x-webhook-event"), "webhook.disabled");
    let body = notice.json();
    assert_eq!(body["eventType"], "webhook.disabled");
    assert_eq!(body["userId"], "carol");
    assert_eq!(body["data"]["webhookId"], id);
    assert_eq!(body["data"]["url"], gone.url("/gone"));
    assert!(
        body["data"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("410")
    );

    // A disabled webhook receives nothing more.
    app.trigger("user.login", "carol", json!({})).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(gone.count(), 1);
}

#[tokio::test]
async fn a_429_with_retry_after_delays_the_next_attempt() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Sequence(vec![
        Behavior::RetryAfter {
            status: 429,
            seconds: 1,
        },
        Behavior::Status(200),
    ]))
    .await
    .unwrap();
    let token = app.token("dave", false);
    let hook = app
        .create_webhook(&token, &receiver.url("/hook"), &["*"], Some(SECRET))
        .await;
    let id = hook["id"].as_str().unwrap();

    let (_, delivery) = trigger_one(&app, "service.started", "dave", json!({})).await;

    let detail = wait_final(&app, &token, id, &delivery, Duration::from_secs(10)).await;
    assert_eq!(detail["status"], "delivered", "{detail}");
    assert_eq!(detail["attempts"], 2);
    let first = &detail["attemptLog"][0];
    assert_eq!(first["statusCode"], 429);
    assert_eq!(first["errorKind"], "http_status");
    let got = receiver.received();
    let gap = gaps_ms(&got)[0];
    eprintln!("gap after 429 Retry-After: 1 → {gap} ms");
    assert!(gap >= 1000, "waited {gap} ms, less than Retry-After: 1");
    assert!(gap < 4000, "waited {gap} ms, far more than asked");
}

#[tokio::test]
async fn a_hanging_receiver_times_out() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Hang).await.unwrap();
    let token = app.token("erin", false);
    let hook = app
        .create_webhook(&token, &receiver.url("/hook"), &["user.created"], None)
        .await;
    let id = hook["id"].as_str().unwrap();

    let (_, delivery) = trigger_one(&app, "user.created", "erin", json!({})).await;

    let detail = eventually(
        "the first attempt to be logged",
        Duration::from_secs(8),
        || async {
            let d = delivery_detail(&app, &token, id, &delivery).await;
            (d["attempts"].as_u64() >= Some(1)).then_some(d)
        },
    )
    .await;
    assert_eq!(detail["status"], "retrying", "{detail}");
    assert!(detail["nextAttemptAt"].is_string(), "{detail}");
    assert_eq!(detail["lastErrorKind"], "timeout");
    let attempt = &detail["attemptLog"][0];
    assert_eq!(attempt["errorKind"], "timeout");
    assert!(attempt["statusCode"].is_null());
    let ms = attempt["durationMs"].as_u64().unwrap();
    assert!(
        (1900..4000).contains(&ms),
        "attempt lasted {ms} ms, timeout is 2000"
    );
}

#[tokio::test]
async fn a_connection_reset_is_a_connect_failure() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Reset).await.unwrap();
    let token = app.token("frank", false);
    let hook = app
        .create_webhook(&token, &receiver.url("/hook"), &["user.created"], None)
        .await;
    let id = hook["id"].as_str().unwrap();

    let (_, delivery) = trigger_one(&app, "user.created", "frank", json!({})).await;

    let detail = wait_final(&app, &token, id, &delivery, Duration::from_secs(10)).await;
    assert_eq!(detail["status"], "failed", "{detail}");
    assert_eq!(detail["attempts"], 4, "connect failures are retried");
    for attempt in detail["attemptLog"].as_array().unwrap() {
        assert_eq!(attempt["errorKind"], "connect", "{attempt}");
        assert!(attempt["statusCode"].is_null());
        assert!(
            !attempt["errorMessage"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn a_redirect_is_a_failure_and_is_never_followed() {
    let app = spawn_app().await;
    let elsewhere = Receiver::start(Behavior::Status(200)).await.unwrap();
    let location = elsewhere.url("/moved-here");
    let receiver = Receiver::start(Behavior::Redirect {
        status: 302,
        location: location.clone(),
    })
    .await
    .unwrap();
    let token = app.token("grace", false);
    let hook = app
        .create_webhook(&token, &receiver.url("/hook"), &["user.created"], None)
        .await;
    let id = hook["id"].as_str().unwrap();

    let (_, delivery) = trigger_one(&app, "user.created", "grace", json!({})).await;

    let detail = wait_final(&app, &token, id, &delivery, Duration::from_secs(10)).await;
    assert_eq!(detail["status"], "failed", "{detail}");
    assert_eq!(detail["lastErrorKind"], "redirect");
    assert_eq!(detail["lastStatusCode"], 302);
    let message = detail["lastError"].as_str().unwrap_or_default();
    assert!(
        message.contains(&location),
        "the Location is in the message: {message}"
    );
    assert_eq!(receiver.count(), 4);
    assert_eq!(elsewhere.count(), 0, "the redirect was followed");
}

#[tokio::test]
async fn the_delivery_detail_shows_every_attempt() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Sequence(vec![
        Behavior::Status(503),
        Behavior::Status(500),
        Behavior::Status(201),
    ]))
    .await
    .unwrap();
    let token = app.token("heidi", false);
    let hook = app
        .create_webhook(
            &token,
            &receiver.url("/hook"),
            &["credit.purchased"],
            Some(SECRET),
        )
        .await;
    let id = hook["id"].as_str().unwrap();

    let (event_id, delivery) =
        trigger_one(&app, "credit.purchased", "heidi", json!({"amount": 100})).await;

    let detail = wait_final(&app, &token, id, &delivery, Duration::from_secs(10)).await;
    assert_eq!(detail["status"], "delivered", "{detail}");
    assert_eq!(detail["id"], delivery);
    assert_eq!(detail["eventId"], event_id);
    assert_eq!(detail["event"]["id"], event_id, "the event is shown");
    assert_eq!(detail["event"]["data"]["amount"], 100);
    let attempts = detail["attemptLog"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    let sent = receiver.received();
    for (i, (a, want)) in attempts.iter().zip([503, 500, 201]).enumerate() {
        assert_eq!(a["attempt"], i + 1);
        assert_eq!(a["statusCode"], want);
        assert!(a["startedAt"].is_string());
        assert!(a["durationMs"].is_u64());
        let body = a["responseBody"].as_str().unwrap_or_default();
        assert!(body.starts_with(&want.to_string()), "body excerpt: {a}");
        if want >= 300 {
            assert_eq!(a["errorKind"], "http_status");
            assert!(
                a["errorMessage"]
                    .as_str()
                    .unwrap()
                    .contains(&want.to_string())
            );
        } else {
            assert!(a["errorKind"].is_null());
        }
        let headers = &a["requestHeaders"];
        // The logged headers are the ones the receiver got.
        for name in [
            "x-webhook-signature",
            "x-webhook-id",
            "x-webhook-event",
            "x-webhook-timestamp",
            "x-webhook-delivery",
            "x-webhook-attempt",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "user-agent",
            "content-type",
        ] {
            assert_eq!(
                headers[name].as_str(),
                sent[i].header(name),
                "attempt {} header {name}",
                i + 1
            );
        }
        assert!(a["responseHeaders"].is_object());
    }
    let listed = logs(&app, &token, id).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["attempts"], 3);
}

#[tokio::test]
async fn a_large_response_body_is_kept_as_a_64_kib_excerpt() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::BigBody {
        status: 200,
        bytes: 200 * 1024,
    })
    .await
    .unwrap();
    let token = app.token("ivy", false);
    let hook = app
        .create_webhook(&token, &receiver.url("/big"), &["user.created"], None)
        .await;
    let id = hook["id"].as_str().unwrap();

    let (_, delivery) = trigger_one(&app, "user.created", "ivy", json!({})).await;

    let detail = wait_final(&app, &token, id, &delivery, Duration::from_secs(10)).await;
    assert_eq!(detail["status"], "delivered", "{detail}");
    let body = detail["attemptLog"][0]["responseBody"].as_str().unwrap();
    assert!(!body.is_empty());
    assert!(body.len() <= 64 * 1024, "excerpt of {} bytes", body.len());
}
