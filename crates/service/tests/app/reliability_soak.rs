//! Soak: a steady 1,000 events/s for an hour (`WEBHOOK_SOAK_SECS` changes
//! the length) to receivers that answer 200, and to receivers that spend
//! a quarter of every 20 s answering 500, hanging or resetting the
//! connection (and one that answers 410 once, which disables its webhook).
//! Sampled every 10 s: the service's resident
//! memory, its open file descriptors and the size of the store's WAL, which
//! must stay flat after the first part of the run; at the end every
//! delivery is final and every acknowledged event reached the healthy
//! receivers.
//!
//! Long: compiled in only with `WEBHOOK_LONG_TESTS=1`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{INTERNAL_SECRET, TestApp, spawn_app_with};
use serde_json::{Value, json};
use webhook_testkit::{Behavior, CountingReceiver, Receiver};

const RATE: usize = 1000;
const BATCH: usize = 10;

/// One reading of the service's footprint.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at_secs: u64,
    rss_kib: u64,
    fds: usize,
    wal_bytes: u64,
}

fn sample(app: &TestApp, started: Instant) -> Sample {
    let pid = app.pid().expect("service running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    let wal_bytes = std::fs::read_dir(&app.data_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("-wal"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    Sample {
        at_secs: started.elapsed().as_secs(),
        rss_kib,
        fds,
        wal_bytes,
    }
}

/// The largest value of `f` over `samples`.
fn peak(samples: &[Sample], f: impl Fn(&Sample) -> u64) -> u64 {
    samples.iter().map(f).max().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(not(long_tests), ignore = "long: set WEBHOOK_LONG_TESTS=1")]
async fn an_hour_at_a_thousand_events_a_second_stays_flat_and_finishes_every_delivery() {
    let secs: u64 = std::env::var("WEBHOOK_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3600);
    let app = spawn_app_with(&[
        ("WEBHOOK_TIMEOUT", "1000"),
        ("WEBHOOK_RETRY_SCHEDULE", "1s,2s"),
        // Failing endpoints stay subscribed for the whole run.
        ("WEBHOOK_DISABLE_AFTER", "3650d"),
        ("WEBHOOK_DISABLE_AFTER_EXHAUSTED", "100000000"),
        ("INTERNAL_RATE_LIMIT_MAX_REQUESTS", "0"),
        ("LOG_LEVEL", "warn"),
    ])
    .await;

    let healthy = CountingReceiver::start().await.unwrap();
    let faults = [Behavior::Status(500), Behavior::Hang, Behavior::Reset];
    let flapping_count = faults.len();
    let mut faulty = Vec::new();
    for _ in &faults {
        faulty.push(Receiver::start(Behavior::Status(200)).await.unwrap());
    }
    faulty.push(
        Receiver::start(Behavior::Sequence(vec![
            Behavior::Status(410),
            Behavior::Status(200),
        ]))
        .await
        .unwrap(),
    );
    let faulty = Arc::new(faulty);
    let mut users: Vec<(String, String)> = Vec::new(); // (user, webhook id)
    for i in 0..9 {
        let user = format!("healthy-{i}");
        let token = app.token(&user, false);
        let hook = app
            .create_webhook(&token, &healthy.url(&format!("/h{i}")), &["*"], None)
            .await;
        users.push((user, hook["id"].as_str().unwrap().to_string()));
    }
    for (i, receiver) in faulty.iter().enumerate() {
        let user = format!("faulty-{i}");
        let token = app.token(&user, false);
        let hook = app
            .create_webhook(&token, &receiver.url("/f"), &["*"], None)
            .await;
        users.push((user, hook["id"].as_str().unwrap().to_string()));
    }
    let users = Arc::new(users);

    // The faulty receivers fail for 5 s of every 20 s, then recover.
    let flapping = {
        let faulty = faulty.clone();
        tokio::spawn(async move {
            loop {
                for (receiver, fault) in faulty.iter().zip(&faults) {
                    receiver.set_behavior(fault.clone());
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
                for receiver in faulty.iter().take(flapping_count) {
                    receiver.set_behavior(Behavior::Status(200));
                }
                tokio::time::sleep(Duration::from_secs(15)).await;
            }
        })
    };

    // Producers: a batch of ten every 10 ms, each event for a user in turn
    // (so 9 of 13 users, about 70 %, are healthy; 4 faulty at ~8 % each).
    // The load is open: a batch leaves on its tick whether or not the one
    // before has been answered (up to 64 in flight), so a slow answer
    // shows as latency rather than as a lower offered rate.
    let started = Instant::now();
    let acknowledged_healthy = Arc::new(AtomicUsize::new(0));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let producer = {
        let client = app.client.clone();
        let url = app.url("/internal/events/batch");
        let users = users.clone();
        let acknowledged_healthy = acknowledged_healthy.clone();
        let acknowledged = acknowledged.clone();
        tokio::spawn(async move {
            let in_flight = Arc::new(tokio::sync::Semaphore::new(64));
            let mut tick =
                tokio::time::interval(Duration::from_millis((1000 * BATCH / RATE) as u64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n = 0usize;
            let until = Instant::now() + Duration::from_secs(secs);
            let mut sends = tokio::task::JoinSet::new();
            while Instant::now() < until {
                tick.tick().await;
                let mut healthy_in_batch = 0;
                let events: Vec<Value> = (0..BATCH)
                    .map(|_| {
                        let (user, _) = &users[n % users.len()];
                        healthy_in_batch += usize::from(user.starts_with("healthy"));
                        n += 1;
                        json!({"eventType": "service.completed", "userId": user,
                               "data": {"n": n, "service": "soak"}})
                    })
                    .collect();
                let permit = in_flight.clone().acquire_owned().await.unwrap();
                let send = client
                    .post(&url)
                    .bearer_auth(INTERNAL_SECRET)
                    .json(&json!({"events": events}))
                    .send();
                let acknowledged = acknowledged.clone();
                let acknowledged_healthy = acknowledged_healthy.clone();
                sends.spawn(async move {
                    if let Ok(resp) = send.await
                        && resp.status() == 202
                    {
                        acknowledged.fetch_add(BATCH, Ordering::Relaxed);
                        acknowledged_healthy.fetch_add(healthy_in_batch, Ordering::Relaxed);
                    }
                    drop(permit);
                });
                while sends.try_join_next().is_some() {}
            }
            while sends.join_next().await.is_some() {}
        })
    };

    let mut samples = Vec::new();
    while !producer.is_finished() {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let s = sample(&app, started);
        eprintln!(
            "{:>5} s: RSS {} KiB, {} fds, WAL {} bytes, {} acknowledged",
            s.at_secs,
            s.rss_kib,
            s.fds,
            s.wal_bytes,
            acknowledged.load(Ordering::Relaxed)
        );
        samples.push(s);
    }
    producer.await.unwrap();
    flapping.abort();
    for receiver in faulty.iter().take(flapping_count) {
        receiver.set_behavior(Behavior::Status(200));
    }
    let acknowledged = acknowledged.load(Ordering::Relaxed);
    let want_healthy = acknowledged_healthy.load(Ordering::Relaxed);
    let achieved = acknowledged as f64 / secs as f64;
    assert!(
        achieved >= RATE as f64 * 0.9,
        "the load was not held: {achieved:.0} events/s acknowledged"
    );

    // Every delivery of an active webhook becomes final (the webhook that
    // answered 410 is disabled, and its queued deliveries wait for it to be
    // enabled again).
    let deadline = Instant::now() + Duration::from_secs(300);
    for (user, id) in users.iter() {
        let token = app.token(user, false);
        loop {
            let (_, hook) = app.get(&format!("/api/v1/webhooks/{id}"), &token).await;
            if hook["data"]["isActive"] == false {
                break;
            }
            let (status, stats) = app
                .get(&format!("/api/v1/webhooks/{id}/stats?window=30d"), &token)
                .await;
            assert_eq!(status, 200, "{stats}");
            let waiting = &stats["data"]["byStatus"];
            if waiting["pending"] == 0 && waiting["retrying"] == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "deliveries of {user}'s webhook still waiting: {stats}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let (gone_user, gone_id) = &users[users.len() - 1];
    let (_, gone) = app
        .get(
            &format!("/api/v1/webhooks/{gone_id}"),
            &app.token(gone_user, false),
        )
        .await;
    assert_eq!(gone["data"]["isActive"], false, "410 disables: {gone}");
    assert!(
        healthy.count() >= want_healthy,
        "{} deliveries reached the healthy receivers, {want_healthy} acknowledged",
        healthy.count()
    );

    // Flat after the first part: the peaks of the last quarter against those
    // of the second tenth of the run, with room for allocator noise.
    let n = samples.len();
    assert!(n >= 8, "too few samples ({n}) to judge a trend");
    let early = &samples[n / 10..(n / 5).max(n / 10 + 1)];
    let late = &samples[n * 3 / 4..];
    let (rss_early, rss_late) = (peak(early, |s| s.rss_kib), peak(late, |s| s.rss_kib));
    let (fds_early, fds_late) = (peak(early, |s| s.fds as u64), peak(late, |s| s.fds as u64));
    let (wal_early, wal_late) = (peak(early, |s| s.wal_bytes), peak(late, |s| s.wal_bytes));
    eprintln!(
        "soak {secs} s: {acknowledged} acknowledged ({achieved:.0}/s); RSS {rss_early} → {rss_late} KiB; \
         fds {fds_early} → {fds_late}; WAL {wal_early} → {wal_late} bytes; \
         healthy deliveries {} for {want_healthy} events",
        healthy.count()
    );
    assert!(
        rss_late <= rss_early * 13 / 10 + 32 * 1024,
        "memory grew: {rss_early} → {rss_late} KiB"
    );
    assert!(
        fds_late <= fds_early + 64,
        "file descriptors grew: {fds_early} → {fds_late}"
    );
    assert!(
        wal_late <= wal_early * 3 / 2 + 64 * 1024 * 1024,
        "the WAL grew: {wal_early} → {wal_late} bytes"
    );
}
