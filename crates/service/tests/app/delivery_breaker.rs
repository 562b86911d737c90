//! The per-endpoint circuit breaker: an endpoint that keeps failing is not
//! hammered; its queued deliveries wait (without spending their retries)
//! until a probe succeeds, then flow at full speed.

use std::time::Duration;

use crate::common::spawn_app_with;
use crate::delivery_support::{eventually, logs};
use serde_json::{Value, json};
use webhook_testkit::{Behavior, Receiver};

fn count_status(items: &[Value], status: &str) -> usize {
    items.iter().filter(|d| d["status"] == status).count()
}

#[tokio::test]
async fn a_failing_endpoint_is_held_after_five_failures_and_drained_after_a_good_probe() {
    // One request at a time, and a long retry wait: every request the
    // receiver sees is either a first attempt or the breaker's probe.
    let app = spawn_app_with(&[
        ("WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT", "1"),
        ("WEBHOOK_RETRY_SCHEDULE", "1h"),
    ])
    .await;
    let receiver = Receiver::start(Behavior::Status(500)).await.unwrap();
    let token = app.token("breaker-user", false);
    let webhook = app
        .create_webhook(&token, &receiver.url("/hook"), &["*"], None)
        .await;
    let id = webhook["id"].as_str().unwrap().to_string();

    for i in 0..30 {
        let (status, body) = app
            .trigger("credit.low", "breaker-user", json!({"seq": i}))
            .await;
        assert_eq!(status, 202, "{body}");
    }

    // Five failures in a row open the circuit: nothing more is sent during the
    // first cool-down (1 s from the fifth failure; on a busy machine the
    // probe may already be out when this looks), and the other deliveries
    // keep all their attempts.
    receiver.wait_for(5, Duration::from_secs(5)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let got = receiver.received();
    if let Some(probe) = got.get(5) {
        let gap = probe.received_at.duration_since(got[4].received_at);
        assert!(
            gap >= Duration::from_secs(1),
            "a request {gap:?} after the fifth failure, inside the cool-down"
        );
    }
    assert!(
        got.len() <= 6,
        "{} requests: more than one probe",
        got.len()
    );
    let items = logs(&app, &token, &id).await;
    let retrying = count_status(&items, "retrying");
    assert!(
        (5..=got.len()).contains(&retrying),
        "{retrying} retrying after {} requests: {items:?}",
        got.len()
    );
    assert_eq!(count_status(&items, "pending"), 30 - retrying, "{items:?}");
    assert!(
        items
            .iter()
            .filter(|d| d["status"] == "pending")
            .all(|d| d["attempts"] == 0)
    );

    // The endpoint recovers: the next probe succeeds and the held deliveries flow.
    // On a loaded machine probes may have failed before this point, so the
    // next one can be up to the longest cool-down (10 s) away, and the 25
    // then go one at a time: the wait allows for both.
    receiver.set_behavior(Behavior::Status(200));
    let items = eventually("held deliveries delivered", Duration::from_secs(40), || {
        let (app, token, id) = (&app, &token, &id);
        async move {
            let items = logs(app, token, id).await;
            (count_status(&items, "delivered") == 25).then_some(items)
        }
    })
    .await;
    // The five that failed before the circuit opened wait for their own retry (1 h).
    assert_eq!(count_status(&items, "retrying"), 5);
    assert_eq!(
        receiver.count(),
        30,
        "one request per delivery, no extra probes"
    );
}
