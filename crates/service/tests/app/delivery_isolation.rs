//! A hanging endpoint never delays deliveries to healthy ones: it fills only
//! its own in-flight slots (WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT=4 here) while
//! the healthy endpoint's deliveries keep arriving within a small bound.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{INTERNAL_SECRET, TestApp, spawn_app_with};
use serde_json::json;
use tokio::sync::Semaphore;
use webhook_testkit::{Behavior, Receiver};

const EVENTS: usize = 300;

fn isolated_app_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT", "4"),
        // Hanging attempts stay in flight for the whole test.
        ("WEBHOOK_TIMEOUT", "30000"),
        ("INTERNAL_RATE_LIMIT_MAX_REQUESTS", "1000000"),
    ]
}

/// Posts `EVENTS` events at a steady pace, alternating between `users`, and
/// returns when each was posted, by event id.
async fn post_steadily(app: &TestApp, users: &[&str]) -> HashMap<String, Instant> {
    let gate = Arc::new(Semaphore::new(8));
    let mut tasks = Vec::new();
    for n in 0..EVENTS {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let client = app.client.clone();
        let url = app.url("/internal/webhooks/trigger");
        let user = users[n % users.len()].to_string();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let sent = Instant::now();
            let resp = client
                .post(url)
                .bearer_auth(INTERNAL_SECRET)
                .json(&json!({"eventType": "service.completed", "userId": user, "data": {"n": n}}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 202);
            let body: serde_json::Value = resp.json().await.unwrap();
            (body["data"]["eventId"].as_str().unwrap().to_string(), sent)
        }));
        // About 300 events a second.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let mut posted = HashMap::new();
    for t in tasks {
        let (id, at) = t.await.unwrap();
        posted.insert(id, at);
    }
    posted
}

/// Latency (post → receipt) of every event the healthy receiver got, sorted, in ms.
fn latencies(healthy: &Receiver, posted: &HashMap<String, Instant>) -> Vec<u128> {
    let mut lat: Vec<u128> = healthy
        .received()
        .iter()
        .filter_map(|r| {
            let sent = posted.get(&r.event_id()?)?;
            Some(r.received_at.duration_since(*sent).as_millis())
        })
        .collect();
    lat.sort_unstable();
    lat
}

fn pct(sorted: &[u128], p: f64) -> u128 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn check_isolation(
    hanging: &Receiver,
    healthy: &Receiver,
    expected: usize,
    posted: HashMap<String, Instant>,
) {
    healthy
        .wait_for(expected, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("healthy endpoint starved: {e}"));
    let lat = latencies(healthy, &posted);
    assert_eq!(lat.len(), expected);
    let (p50, p99, max) = (pct(&lat, 0.5), pct(&lat, 0.99), *lat.last().unwrap());
    eprintln!(
        "healthy endpoint: {} deliveries, latency p50 {p50} ms, p99 {p99} ms, max {max} ms; \
         hanging endpoint holds {} requests",
        lat.len(),
        hanging.count()
    );
    assert!(p99 < 1000, "healthy deliveries delayed: p99 {p99} ms");
    assert!(max < 2000, "healthy deliveries delayed: max {max} ms");
    // The hanging endpoint holds exactly its cap, no more.
    assert_eq!(hanging.count(), 4, "in-flight cap per endpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_does_not_delay_another_of_the_same_user() {
    let env = isolated_app_env();
    let app = spawn_app_with(&env).await;
    let hanging = Receiver::start(Behavior::Hang).await.unwrap();
    let healthy = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("iso-user", false);
    app.create_webhook(&token, &hanging.url("/hang"), &["service.*"], None)
        .await;
    app.create_webhook(&token, &healthy.url("/ok"), &["service.*"], None)
        .await;

    let posted = post_steadily(&app, &["iso-user"]).await;
    check_isolation(&hanging, &healthy, EVENTS, posted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_does_not_delay_another_users_endpoint() {
    let env = isolated_app_env();
    let app = spawn_app_with(&env).await;
    let hanging = Receiver::start(Behavior::Hang).await.unwrap();
    let healthy = Receiver::start(Behavior::Status(200)).await.unwrap();
    let slow_owner = app.token("iso-slow", false);
    let ok_owner = app.token("iso-ok", false);
    app.create_webhook(&slow_owner, &hanging.url("/hang"), &["*"], None)
        .await;
    app.create_webhook(&ok_owner, &healthy.url("/ok"), &["*"], None)
        .await;

    let posted = post_steadily(&app, &["iso-slow", "iso-ok"]).await;
    check_isolation(&hanging, &healthy, EVENTS / 2, posted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_endpoints_together_cannot_take_every_global_slot() {
    // Three hanging endpoints may hold 3 × 4 requests, more than the global
    // cap of 8: requests that hang must not keep the healthy endpoint waiting
    // for a whole timeout.
    let mut env = isolated_app_env();
    env.push(("WEBHOOK_MAX_IN_FLIGHT", "8"));
    let app = spawn_app_with(&env).await;
    let token = app.token("iso-many", false);
    let mut hanging = Vec::new();
    for n in 0..3 {
        let r = Receiver::start(Behavior::Hang).await.unwrap();
        app.create_webhook(&token, &r.url(&format!("/hang{n}")), &["service.*"], None)
            .await;
        hanging.push(r);
    }
    let healthy = Receiver::start(Behavior::Status(200)).await.unwrap();
    app.create_webhook(&token, &healthy.url("/ok"), &["service.*"], None)
        .await;

    let posted = post_steadily(&app, &["iso-many"]).await;
    healthy
        .wait_for(EVENTS, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("healthy endpoint starved: {e}"));
    let lat = latencies(&healthy, &posted);
    let (p50, p99, max) = (pct(&lat, 0.5), pct(&lat, 0.99), *lat.last().unwrap());
    let held: Vec<usize> = hanging.iter().map(Receiver::count).collect();
    eprintln!(
        "healthy endpoint beside 3 hanging ones: p50 {p50} ms, p99 {p99} ms, max {max} ms; \
         hanging endpoints hold {held:?}"
    );
    // A request counts as hanging once it has run for 500 ms; until then the
    // healthy endpoint may wait for a global slot.
    assert!(
        max < 2000,
        "healthy deliveries waited for the hanging ones: max {max} ms"
    );
    assert!(p99 < 1500, "healthy deliveries delayed: p99 {p99} ms");
    assert_eq!(
        held,
        [4, 4, 4],
        "each hanging endpoint is held to its own cap"
    );
}
