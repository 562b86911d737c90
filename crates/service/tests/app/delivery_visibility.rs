//! What users and operators can see of the engine: a webhook's circuit
//! breaker and the deliveries it holds, and test sends and connection
//! slots in `/metrics`.

use std::time::Duration;

use crate::common::{spawn_app, spawn_app_with};
use crate::delivery_support::{eventually, logs, webhook};
use serde_json::{Value, json};
use webhook_domain::timefmt::parse_timestamp;
use webhook_testkit::{Behavior, Receiver};

fn millis(value: &Value) -> i64 {
    parse_timestamp(value.as_str().expect("a timestamp")).expect("RFC 3339")
}

#[tokio::test]
async fn an_open_circuit_and_the_deliveries_it_holds_are_shown() {
    // One request at a time and a long retry wait: the five first attempts
    // fail and open the circuit; the other deliveries are held, unattempted.
    let app = spawn_app_with(&[
        ("WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT", "1"),
        ("WEBHOOK_RETRY_SCHEDULE", "1h"),
    ])
    .await;
    let receiver = Receiver::start(Behavior::Status(500)).await.unwrap();
    let token = app.token("circuit-user", false);
    let created = app
        .create_webhook(&token, &receiver.url("/hook"), &["*"], None)
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(
        created["circuit"],
        json!({"state": "closed", "nextProbeAt": null, "failuresInARow": 0})
    );
    for i in 0..10 {
        let (status, body) = app
            .trigger("credit.low", "circuit-user", json!({"seq": i}))
            .await;
        assert_eq!(status, 202, "{body}");
    }

    // The webhook, the list and the held deliveries tell one story (read
    // again if a probe went out between the reads).
    eventually(
        "an open circuit shown on the webhook and its held deliveries",
        Duration::from_secs(20),
        || {
            let (app, token, id) = (&app, &token, &id);
            async move {
                let one = webhook(app, token, id).await;
                let circuit = &one["circuit"];
                if circuit["state"] != "open" {
                    return None;
                }
                assert!(circuit["failuresInARow"].as_u64().unwrap() >= 5, "{one}");
                let probe = millis(&circuit["nextProbeAt"]);
                let (_, list) = app.get("/api/v1/webhooks", token).await;
                let listed = &list["data"][0]["circuit"];
                let items = logs(app, token, id).await;
                let pending: Vec<&Value> =
                    items.iter().filter(|d| d["status"] == "pending").collect();
                let retrying: Vec<&Value> =
                    items.iter().filter(|d| d["status"] == "retrying").collect();
                // Five were attempted; of the other five, each failed probe
                // (1 s, 2 s, 4 s... apart) takes one: some are still held.
                let consistent = listed == circuit
                    && !pending.is_empty()
                    && pending.iter().all(|d| {
                        d["heldByCircuit"] == true && millis(&d["nextAttemptAt"]) == probe
                    });
                // The failed ones wait for their own retry, an hour away: not held.
                assert!(
                    retrying.iter().all(|d| d["heldByCircuit"] == false),
                    "{items:?}"
                );
                consistent.then_some(())
            }
        },
    )
    .await;

    // The endpoint recovers: the probe succeeds, the held deliveries go,
    // and the circuit is closed again. (The failed probes wait for their
    // own retry, an hour away.)
    receiver.set_behavior(Behavior::Status(200));
    eventually("the circuit closed again", Duration::from_secs(20), || {
        let (app, token, id) = (&app, &token, &id);
        async move {
            let one = webhook(app, token, id).await;
            let items = logs(app, token, id).await;
            let delivered = items.iter().filter(|d| d["status"] == "delivered").count();
            let waiting = items.iter().any(|d| d["status"] == "pending");
            (one["circuit"]["state"] == "closed" && delivered > 0 && !waiting).then_some(())
        }
    })
    .await;
    let items = logs(&app, &token, &id).await;
    assert!(
        items.iter().all(|d| d["heldByCircuit"] == false),
        "{items:?}"
    );
}

#[tokio::test]
async fn test_sends_are_counted_in_metrics_under_their_own_name() {
    let app = spawn_app().await;
    let good = Receiver::start(Behavior::Status(200)).await.unwrap();
    let bad = Receiver::start(Behavior::Status(500)).await.unwrap();
    let token = app.token("metrics-user", false);
    for receiver in [&good, &bad, &bad] {
        let hook = app
            .create_webhook(&token, &receiver.url("/hook"), &["*"], None)
            .await;
        let id = hook["id"].as_str().unwrap();
        let (status, body) = app
            .post(&format!("/api/v1/webhooks/{id}/test"), &token, json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        app.metric("webhook_test_sends_total{outcome=\"delivered\"}")
            .await,
        1
    );
    assert_eq!(
        app.metric("webhook_test_sends_total{outcome=\"failed\"}")
            .await,
        2
    );
    // Real traffic's counters are not touched.
    assert_eq!(app.metric("webhook_attempts_succeeded_total ").await, 0);
    assert_eq!(app.metric("webhook_attempts_failed_total ").await, 0);
}

/// With every outbound connection slot taken (`WEBHOOK_MAX_CONNECTIONS`),
/// the next attempt waits for one and the operator sees it waiting; it goes
/// out once the slot is freed.
#[tokio::test]
async fn an_attempt_waiting_for_a_connection_slot_shows_in_metrics() {
    let app = spawn_app_with(&[
        ("WEBHOOK_MAX_CONNECTIONS", "1"),
        // Long enough that a loaded machine still sees the second attempt
        // waiting before the first one times out.
        ("WEBHOOK_TIMEOUT", "6000"),
    ])
    .await;
    let hanging = Receiver::start(Behavior::Hang).await.unwrap();
    let quick = Receiver::start(Behavior::Status(200)).await.unwrap();
    for (user, receiver) in [("slow-user", &hanging), ("quick-user", &quick)] {
        let token = app.token(user, false);
        app.create_webhook(&token, &receiver.url("/hook"), &["*"], None)
            .await;
    }
    assert_eq!(app.metric("webhook_outbound_connections_max ").await, 1);
    assert_eq!(
        app.metric("webhook_attempts_waiting_for_connection ").await,
        0
    );

    let (status, body) = app.trigger("credit.low", "slow-user", json!({})).await;
    assert_eq!(status, 202, "{body}");
    eventually(
        "the hanging attempt holds the only slot",
        Duration::from_secs(10),
        || async { (app.metric("webhook_outbound_connections_open ").await == 1).then_some(()) },
    )
    .await;
    let (status, body) = app.trigger("credit.low", "quick-user", json!({})).await;
    assert_eq!(status, 202, "{body}");
    eventually(
        "the second attempt waits for a slot",
        Duration::from_secs(10),
        || async {
            (app.metric("webhook_attempts_waiting_for_connection ").await == 1).then_some(())
        },
    )
    .await;

    // The hanging attempt times out after 6 s and frees its slot.
    quick.wait_for(1, Duration::from_secs(30)).await.unwrap();
    eventually(
        "nothing waits any more",
        Duration::from_secs(10),
        || async {
            (app.metric("webhook_attempts_waiting_for_connection ").await == 0).then_some(())
        },
    )
    .await;
}
