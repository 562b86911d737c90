//! Receiver faults, all at once: one endpoint per misbehaviour (500s, a hang
//! past the timeout, connection resets, a body trickled slower than the
//! timeout, a redirect, 410, 429 with `Retry-After`) plus a healthy one, on a
//! short retry schedule (200 ms, 400 ms, 800 ms; 2 s timeout). Every delivery
//! ends in the state the rules say, none is left pending or in flight after
//! the schedule, and the healthy endpoint's deliveries keep arriving quickly
//! the whole time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::{TestApp, spawn_app};
use crate::delivery_support::{eventually, logs, webhook};
use serde_json::{Value, json};
use webhook_testkit::{Behavior, Receiver};

const USER: &str = "faults-user";
/// Events each faulty endpoint receives. One: its 4 attempts stay under the
/// breaker's trip count (5), so the schedule alone decides when it ends. With
/// more, the breaker holds the rest and probes every 1, 2, 4.. 10 s, by design.
const EVENTS: usize = 1;

/// What the rules say a faulty endpoint's deliveries end as.
struct Expected {
    name: &'static str,
    behavior: Behavior,
    /// Attempts per delivery (4 = first attempt + the 3 retries of the schedule).
    attempts: u64,
    error_kind: &'static str,
    status_code: Option<u64>,
    disables: bool,
}

fn faults() -> Vec<Expected> {
    let e = |name, behavior, attempts, error_kind, status_code, disables| Expected {
        name,
        behavior,
        attempts,
        error_kind,
        status_code,
        disables,
    };
    vec![
        e(
            "500",
            Behavior::Status(500),
            4,
            "http_status",
            Some(500),
            false,
        ),
        e("hang", Behavior::Hang, 4, "timeout", None, false),
        e("reset", Behavior::Reset, 4, "connect", None, false),
        e(
            "trickle",
            Behavior::Trickle {
                status: 200,
                bytes: 100,
                interval: Duration::from_millis(50),
            },
            4,
            // The status line arrived; the body did not, within the timeout.
            "timeout",
            Some(200),
            false,
        ),
        e(
            "redirect",
            Behavior::Redirect {
                status: 302,
                location: "http://127.0.0.1:9/elsewhere".into(),
            },
            4,
            "redirect",
            Some(302),
            false,
        ),
        e(
            "gone",
            Behavior::Status(410),
            1,
            "http_status",
            Some(410),
            true,
        ),
        e(
            "429",
            Behavior::RetryAfter {
                status: 429,
                seconds: 1,
            },
            4,
            "http_status",
            Some(429),
            false,
        ),
    ]
}

/// Posts `credit.purchased` (the faulty endpoints' type) and returns the event id.
async fn trigger(app: &TestApp, event_type: &str, n: usize) -> String {
    let (status, body) = app.trigger(event_type, USER, json!({"n": n})).await;
    assert_eq!(status, 202, "{body}");
    body["data"]["eventId"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_ends_as_the_rules_say_while_a_healthy_endpoint_keeps_flowing() {
    let app = spawn_app().await;
    let token = app.token(USER, false);
    let healthy = Receiver::start(Behavior::Status(200)).await.unwrap();
    let healthy_hook = app
        .create_webhook(&token, &healthy.url("/healthy"), &["user.*"], None)
        .await;
    let healthy_id = healthy_hook["id"].as_str().unwrap().to_string();

    let expected = faults();
    let mut receivers = Vec::new();
    let mut hooks = Vec::new();
    for fault in &expected {
        let receiver = Receiver::start(fault.behavior.clone()).await.unwrap();
        let hook = app
            .create_webhook(
                &token,
                &receiver.url(&format!("/{}", fault.name)),
                &["credit.*"],
                None,
            )
            .await;
        hooks.push(hook["id"].as_str().unwrap().to_string());
        receivers.push(receiver);
    }
    let started = Instant::now();
    for n in 0..EVENTS {
        trigger(&app, "credit.purchased", n).await;
    }

    // The healthy endpoint gets an event every 50 ms while the faults play out
    // (the longest: 4 hung attempts of 2 s plus 1.4 s of delays).
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(11) {
        let at = Instant::now();
        let id = trigger(&app, "user.login", n).await;
        sent_at.insert(id, at);
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = healthy
        .wait_for(sent_at.len(), Duration::from_secs(10))
        .await
        .expect("every healthy event arrives");
    let mut latencies: Vec<u128> = got
        .iter()
        .filter_map(|r| {
            let id = r.event_id()?;
            Some(r.received_at.duration_since(sent_at[&id]).as_millis())
        })
        .collect();
    latencies.sort_unstable();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    let max = *latencies.last().unwrap();
    eprintln!(
        "healthy endpoint: {} events during the faults; latency p50 {p50} ms, p99 {p99} ms, max {max} ms",
        latencies.len()
    );
    assert_eq!(latencies.len(), sent_at.len(), "each healthy event once");
    assert!(p99 < 500, "healthy deliveries stay fast (p99 {p99} ms)");

    // Every faulty delivery is final, as the rules say.
    for ((fault, hook), receiver) in expected.iter().zip(&hooks).zip(&receivers) {
        let items = eventually(
            &format!("every delivery to {} to be final", fault.name),
            Duration::from_secs(20),
            || async {
                let items = logs(&app, &token, hook).await;
                (items.len() == EVENTS
                    && items
                        .iter()
                        .all(|d| matches!(d["status"].as_str(), Some("delivered" | "failed"))))
                .then_some(items)
            },
        )
        .await;
        for d in &items {
            assert_eq!(d["status"], "failed", "{}: {d}", fault.name);
            assert_eq!(d["attempts"], fault.attempts, "{}: {d}", fault.name);
            assert_eq!(d["lastErrorKind"], fault.error_kind, "{}: {d}", fault.name);
            assert_eq!(
                d["lastStatusCode"].as_u64(),
                fault.status_code,
                "{}: {d}",
                fault.name
            );
        }
        let shown = webhook(&app, &token, hook).await;
        assert_eq!(
            shown["isActive"] == false,
            fault.disables,
            "{}: {shown}",
            fault.name
        );
        eprintln!(
            "{:>8}: {EVENTS} deliveries failed after {} attempt(s) ({}), {} requests received, active: {}",
            fault.name,
            fault.attempts,
            fault.error_kind,
            receiver.count(),
            shown["isActive"]
        );
    }
    // 429 with Retry-After: 1 spaces the attempts by at least a second.
    let arrivals: Vec<Instant> = receivers[6]
        .received()
        .iter()
        .map(|r| r.received_at)
        .collect();
    let span = arrivals.last().unwrap().duration_since(arrivals[0]);
    assert!(
        span >= Duration::from_secs(3),
        "Retry-After honoured: 4 attempts over {span:?}"
    );

    // Nothing pending or in flight anywhere; the healthy log is all delivered.
    let (status, stats) = app.get("/api/v1/webhooks/stats", &token).await;
    assert_eq!(status, 200);
    assert_eq!(stats["data"]["pendingDeliveries"], 0, "{stats}");
    let healthy_log = logs(&app, &token, &healthy_id).await;
    assert!(
        healthy_log.iter().all(|d| d["status"] == "delivered"),
        "{}",
        Value::Array(healthy_log)
    );
    eprintln!("all faults final after {:?}", started.elapsed());
}
