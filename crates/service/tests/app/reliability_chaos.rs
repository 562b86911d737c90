//! Chaos: producers post events continuously while the service is killed with
//! SIGKILL at random moments and restarted on the same data directory. At the
//! end every event answered 202 has reached the receiver at least once;
//! duplicates (allowed: delivery is at-least-once) are counted and printed.
//!
//! The short version runs in the suite (about 30 s, 6 kills). The long one
//! (`WEBHOOK_LONG_TESTS=1`, about 5 minutes, 40 kills) runs the same loop
//! longer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::common::{INTERNAL_SECRET, spawn_app_with};
use serde_json::json;
use webhook_testkit::CountingReceiver;

const USER: &str = "chaos-user";

/// What the producers share: where the service is now, whether to go on,
/// and what was acknowledged.
struct Producers {
    base: RwLock<String>,
    running: AtomicBool,
    acknowledged: Mutex<Vec<String>>,
    refused_or_cut: AtomicUsize,
}

/// One producer: posts events `in_flight` at a time, to wherever the service
/// listens now, until told to stop. A post cut off by a kill is not counted
/// as acknowledged (its event may or may not have been stored).
async fn produce(shared: Arc<Producers>, producer: usize, in_flight: usize) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for lane in 0..in_flight {
        let (client, shared) = (client.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while shared.running.load(Ordering::Relaxed) {
                n += 1;
                let url = format!("{}/internal/webhooks/trigger", shared.base.read().unwrap());
                let sent = client
                    .post(url)
                    .bearer_auth(INTERNAL_SECRET)
                    .json(&json!({"eventType": "credit.purchased", "userId": USER,
                                  "data": {"producer": producer, "lane": lane, "n": n}}))
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
                    Some(id) => shared.acknowledged.lock().unwrap().push(id),
                    None => {
                        shared.refused_or_cut.fetch_add(1, Ordering::Relaxed);
                        // The service is down or restarting: do not spin.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn chaos(duration: Duration, kills: usize) {
    let mut app = spawn_app_with(&[
        ("INTERNAL_RATE_LIMIT_MAX_REQUESTS", "100000000"),
        ("WEBHOOK_RETRY_SCHEDULE", "100ms,200ms,400ms,800ms,1s,2s,5s"),
    ])
    .await;
    let receiver = CountingReceiver::start().await.unwrap();
    let token = app.token(USER, false);
    app.create_webhook(&token, &receiver.url("/chaos"), &["credit.*"], None)
        .await;

    let shared = Arc::new(Producers {
        base: RwLock::new(app.base.clone()),
        running: AtomicBool::new(true),
        acknowledged: Mutex::new(Vec::new()),
        refused_or_cut: AtomicUsize::new(0),
    });
    let producers: Vec<_> = (0..4)
        .map(|p| tokio::spawn(produce(shared.clone(), p, 8)))
        .collect();

    // Kills at random moments, spread over the run.
    let started = Instant::now();
    let mean_gap = duration / (kills as u32 + 1);
    let mut downtime = Duration::ZERO;
    for kill in 1..=kills {
        let gap = mean_gap.mul_f64(0.5 + fastrand::f64());
        tokio::time::sleep(gap).await;
        let before = shared.acknowledged.lock().unwrap().len();
        app.kill();
        let down_at = Instant::now();
        // Sometimes restart at once, sometimes after producers hit a closed port.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..300))).await;
        app.start().await;
        downtime += down_at.elapsed();
        *shared.base.write().unwrap() = app.base.clone();
        eprintln!(
            "kill {kill}/{kills} at {:?}: {before} acknowledged so far, {} delivered so far",
            started.elapsed(),
            receiver.count()
        );
    }
    let remaining = duration.saturating_sub(started.elapsed());
    tokio::time::sleep(remaining.max(Duration::from_secs(1))).await;
    shared.running.store(false, Ordering::Relaxed);
    for p in producers {
        p.await.unwrap();
    }
    let load_time = started.elapsed();
    let acknowledged = std::mem::take(&mut *shared.acknowledged.lock().unwrap());

    // Wait for every acknowledged event to arrive.
    let mut arrivals: HashMap<String, usize> = HashMap::new();
    let drain_started = Instant::now();
    loop {
        for (id, _) in receiver.take_records() {
            *arrivals.entry(id).or_default() += 1;
        }
        let missing = acknowledged
            .iter()
            .filter(|id| !arrivals.contains_key(*id))
            .count();
        if missing == 0 || drain_started.elapsed() > Duration::from_secs(90) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Late duplicates (a retry of something recorded just before a kill).
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (id, _) in receiver.take_records() {
        *arrivals.entry(id).or_default() += 1;
    }

    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !arrivals.contains_key(*id))
        .collect();
    let duplicated = arrivals.values().filter(|n| **n > 1).count();
    let extra: usize = arrivals.values().map(|n| n.saturating_sub(1)).sum();
    let unacknowledged_arrivals = arrivals
        .len()
        .saturating_sub(acknowledged.len() - missing.len());
    eprintln!(
        "CHAOS SUMMARY: {kills} SIGKILLs in {load_time:?} ({downtime:?} down in all); \
         {} events acknowledged ({:.0}/s), {} posts refused or cut off; \
         {} requests received for {} distinct events; missing {}; \
         {duplicated} events arrived more than once ({extra} extra requests); \
         {unacknowledged_arrivals} delivered events whose 202 was cut off by a kill; \
         drained {:?} after the load",
        acknowledged.len(),
        acknowledged.len() as f64 / load_time.as_secs_f64(),
        shared.refused_or_cut.load(Ordering::Relaxed),
        receiver.count(),
        arrivals.len(),
        missing.len(),
        drain_started.elapsed()
    );
    assert!(
        acknowledged.len() > 100 * kills,
        "the load was sustained between kills"
    );
    assert!(
        missing.is_empty(),
        "acknowledged but never delivered ({}): {:?}",
        missing.len(),
        missing.iter().take(20).collect::<Vec<_>>()
    );

    // The store agrees: nothing pending once everything arrived.
    let mut stats = serde_json::Value::Null;
    for _ in 0..50 {
        let (status, body) = app.get("/api/v1/webhooks/stats", &token).await;
        assert_eq!(status, 200, "{body}");
        stats = body["data"].clone();
        if stats["pendingDeliveries"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stats["pendingDeliveries"], 0, "{stats}");
    assert_eq!(stats["failedDeliveries"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_events_survive_repeated_sigkills_under_load() {
    chaos(Duration::from_secs(25), 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(not(long_tests), ignore = "long: set WEBHOOK_LONG_TESTS=1")]
async fn long_chaos_acknowledged_events_survive_forty_sigkills() {
    chaos(Duration::from_secs(300), 40).await;
}
