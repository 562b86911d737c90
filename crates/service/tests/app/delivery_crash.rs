//! No acknowledged event is lost: events accepted under load reach the
//! receiver at least once even when the service is killed with SIGKILL
//! mid-way and restarted on the same data directory; and a SIGTERM shuts the
//! service down cleanly (exit 0) handing back what it had not delivered.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{INTERNAL_SECRET, spawn_app_with};
use crate::delivery_support::eventually;
use serde_json::json;
use tokio::sync::Semaphore;
use webhook_testkit::{Behavior, Receiver};

/// Producers may post far more than 1000 events a minute in these tests.
const NO_INTERNAL_LIMIT: (&str, &str) = ("INTERNAL_RATE_LIMIT_MAX_REQUESTS", "1000000");

/// Posts `total` events for `user`, `concurrency` at a time, as the producers
/// do; returns the event ids answered 202 and how many posts failed otherwise.
/// `accepted` counts the 202s as they come, so a test can act mid-way.
async fn post_events(
    base: String,
    user: &'static str,
    total: usize,
    concurrency: usize,
    accepted: Arc<AtomicUsize>,
) -> (Vec<String>, usize) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let ids = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let failed = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(concurrency));
    let mut tasks = Vec::with_capacity(total);
    for n in 0..total {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let (client, url) = (client.clone(), format!("{base}/internal/webhooks/trigger"));
        let (ids, failed, accepted) = (ids.clone(), failed.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let sent = client
                .post(url)
                .bearer_auth(INTERNAL_SECRET)
                .json(&json!({"eventType": "credit.purchased", "userId": user,
                              "data": {"n": n, "amount": 10}}))
                .send()
                .await;
            let id = match sent {
                Ok(resp) if resp.status().as_u16() == 202 => resp
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|b| b["data"]["eventId"].as_str().map(String::from)),
                _ => None,
            };
            match id {
                Some(id) => {
                    ids.lock().unwrap().push(id);
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let ids = std::mem::take(&mut *ids.lock().unwrap());
    (ids, failed.load(Ordering::Relaxed))
}

/// Counts how often each id arrived; returns (missing ids, duplicated ids with counts).
fn compare(accepted: &[String], arrived: &[String]) -> (Vec<String>, Vec<(String, usize)>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for id in arrived {
        *seen.entry(id.as_str()).or_default() += 1;
    }
    let missing = accepted
        .iter()
        .filter(|id| !seen.contains_key(id.as_str()))
        .cloned()
        .collect();
    let mut duplicates: Vec<(String, usize)> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, n)| (id.to_string(), *n))
        .collect();
    duplicates.sort();
    (missing, duplicates)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_event_is_delivered_after_a_sigkill_and_restart() {
    // The receiver takes 10 ms per delivery and at most 8 go out at once, so
    // ingest outpaces delivery: at the kill, accepted events are committed but
    // queued, in flight, and delivered-but-not-yet-recorded.
    let mut app = spawn_app_with(&[
        NO_INTERNAL_LIMIT,
        ("WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT", "8"),
    ])
    .await;
    let receiver = Receiver::start(Behavior::Delay(Duration::from_millis(10), 200))
        .await
        .unwrap();
    let token = app.token("crash-user", false);
    app.create_webhook(&token, &receiver.url("/sink"), &["credit.*"], None)
        .await;

    let accepted = Arc::new(AtomicUsize::new(0));
    let producers = tokio::spawn(post_events(
        app.base.clone(),
        "crash-user",
        2000,
        64,
        accepted.clone(),
    ));
    // Kill it mid-way through the load: acknowledged events are in every
    // state then (just committed, queued, in flight, delivered).
    eventually(
        "600 events to be accepted",
        Duration::from_secs(60),
        || async { (accepted.load(Ordering::Relaxed) >= 600).then_some(()) },
    )
    .await;
    let delivered_before_kill = receiver.count();
    app.kill();
    let killed_at = accepted.load(Ordering::Relaxed);
    let (ids, failed) = producers.await.unwrap();
    eprintln!(
        "killed after {killed_at} acceptances ({delivered_before_kill} delivered by then); \
         {} accepted in all, {failed} posts failed or were cut off",
        ids.len()
    );
    assert!(
        ids.len() >= 600 && ids.len() < 2000,
        "the kill came mid-way"
    );
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());

    app.start().await;
    let started = Instant::now();
    let want: HashSet<&str> = ids.iter().map(String::as_str).collect();
    loop {
        let got: HashSet<String> = receiver
            .received()
            .iter()
            .filter_map(|r| r.event_id())
            .collect();
        if want.iter().all(|id| got.contains(*id)) || started.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("all delivered {:?} after the restart", started.elapsed());
    // Let any late duplicates arrive before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let arrived: Vec<String> = receiver
        .received()
        .iter()
        .filter_map(|r| r.event_id())
        .collect();

    let (missing, duplicates) = compare(&ids, &arrived);
    let extra: usize = duplicates.iter().map(|(_, n)| n - 1).sum();
    eprintln!(
        "after restart: {} requests for {} accepted events; {} events arrived more than once \
         ({extra} extra requests); {} missing",
        arrived.len(),
        ids.len(),
        duplicates.len(),
        missing.len()
    );
    for (id, n) in duplicates.iter().take(20) {
        eprintln!("  duplicate: {id} x{n}");
    }
    assert!(
        missing.is_empty(),
        "accepted but never delivered: {missing:?}"
    );

    // The log agrees: every delivery of an accepted event is delivered.
    let (status, stats) = app.get("/api/v1/webhooks/stats", &token).await;
    assert_eq!(status, 200);
    let stats = &stats["data"];
    assert!(
        stats["successfulDeliveries"].as_u64().unwrap() >= ids.len() as u64,
        "{stats}"
    );
    assert_eq!(stats["pendingDeliveries"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_exits_cleanly_and_loses_nothing_accepted() {
    // A slow receiver and a small in-flight cap, so that plenty is queued,
    // in flight and still arriving when the signal comes.
    let mut app = spawn_app_with(&[
        NO_INTERNAL_LIMIT,
        ("WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT", "8"),
    ])
    .await;
    let receiver = Receiver::start(Behavior::Delay(Duration::from_millis(100), 200))
        .await
        .unwrap();
    let token = app.token("term-user", false);
    let hook = app
        .create_webhook(&token, &receiver.url("/slow"), &["credit.*"], None)
        .await;
    let hook_id = hook["id"].as_str().unwrap().to_string();

    let accepted = Arc::new(AtomicUsize::new(0));
    let producers = tokio::spawn(post_events(
        app.base.clone(),
        "term-user",
        600,
        16,
        accepted.clone(),
    ));
    eventually(
        "200 events to be accepted",
        Duration::from_secs(30),
        || async { (accepted.load(Ordering::Relaxed) >= 200).then_some(()) },
    )
    .await;
    let signalled = Instant::now();
    let clean = tokio::task::block_in_place(|| app.terminate(Duration::from_secs(20)));
    let took = signalled.elapsed();
    let (ids, failed) = producers.await.unwrap();
    let before_restart = receiver.count();
    eprintln!(
        "SIGTERM: exited in {took:?}; {} events accepted, {failed} posts refused; \
         {before_restart} delivered before the restart",
        ids.len()
    );
    assert!(
        clean,
        "the service did not exit 0 on SIGTERM; log:\n{}",
        app.logs()
    );
    assert!(
        before_restart < ids.len(),
        "the test meant to stop the service with work left over"
    );
    let logs = app.logs();
    assert!(
        logs.contains("webhook-service stopped"),
        "clean shutdown logged"
    );

    app.start().await;
    let received = eventually(
        "every accepted event to arrive after the restart",
        Duration::from_secs(30),
        || async {
            let got = receiver.received();
            let ids_got: HashSet<String> = got.iter().filter_map(|r| r.event_id()).collect();
            ids.iter().all(|id| ids_got.contains(id)).then_some(got)
        },
    )
    .await;
    let arrived: Vec<String> = received.iter().filter_map(|r| r.event_id()).collect();
    let (missing, duplicates) = compare(&ids, &arrived);
    eprintln!(
        "after restart: {} requests, {} events duplicated",
        arrived.len(),
        duplicates.len()
    );
    assert!(missing.is_empty());
    // Queued work was handed back unattempted and in-flight work finished, so
    // a graceful stop causes no duplicates.
    assert!(
        duplicates.is_empty(),
        "duplicates after SIGTERM: {duplicates:?}"
    );
    let (_, body) = app
        .get(&format!("/api/v1/webhooks/{hook_id}/stats"), &token)
        .await;
    eventually(
        "the log to show everything delivered",
        Duration::from_secs(10),
        || async {
            let (_, body) = app
                .get(&format!("/api/v1/webhooks/{hook_id}/stats"), &token)
                .await;
            (body["data"]["byStatus"]["delivered"] == ids.len()).then_some(())
        },
    )
    .await;
    drop(body);
}
