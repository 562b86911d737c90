//! Several real `webhook-service` processes on one PostgreSQL database (a
//! fresh one per test): one instance killed with SIGKILL mid-run loses no
//! acknowledged event and its leases are taken over; a webhook changed on
//! one instance is honoured by another within 1 s; and ingest under load
//! answers 503 while the database is cut off, never 202 for what was not
//! stored, and recovers without a restart; and an API request stuck on a
//! lock does not stop an instance's heartbeat (no work sent twice).
//!
//! Listed as ignored (with the reason) when no PostgreSQL server is
//! reachable, unless `WEBHOOK_REQUIRE_POSTGRES=1` or `CI=true`, where they fail.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{INTERNAL_SECRET, TestApp, spawn_app_with};
use crate::harness::{DONE, Ran, Test, skip};
use crate::postgres_support::{CuttableProxy, TestDatabase};
use serde_json::{Value, json};
use webhook_testkit::{Behavior, CountingReceiver, Receiver};

/// Settings of every instance in these tests: a small pool (three instances
/// and the other tests share one server's connection limit), no internal
/// rate limit (the load comes from one address), quiet logs, and the
/// default attempt timeout (a retry after a slow answer on a busy machine
/// would be a duplicate that has nothing to do with what is tested).
const INSTANCE_ENV: &[(&str, &str)] = &[
    ("WEBHOOK_TIMEOUT", "10000"),
    ("DATABASE_POOL_SIZE", "4"),
    ("INTERNAL_RATE_LIMIT_MAX_REQUESTS", "0"),
    ("LOG_LEVEL", "warn"),
];

async fn instance(url: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut env: Vec<(&str, &str)> = vec![("DATABASE_URL", url)];
    env.extend_from_slice(INSTANCE_ENV);
    env.extend_from_slice(extra);
    spawn_app_with(&env).await
}

/// One `/internal/webhooks/trigger` call: the status and the event id of a 202,
/// or `None` when the instance could not be reached at all.
async fn post_event(client: &reqwest::Client, base: &str, n: usize) -> Option<(u16, Value)> {
    let response = client
        .post(format!("{base}/internal/webhooks/trigger"))
        .bearer_auth(INTERNAL_SECRET)
        .json(&json!({"eventType": "user.created", "userId": "user-a", "data": {"n": n}}))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Some((status, body))
}

fn event_id(body: &Value) -> String {
    body["data"]["eventId"]
        .as_str()
        .unwrap_or_else(|| panic!("202 without an event id: {body}"))
        .to_string()
}

/// How often each event id reached the receiver.
fn receipts(records: &[(String, Instant)]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for (id, _) in records {
        *seen.entry(id.clone()).or_insert(0) += 1;
    }
    seen
}

/// Waits until every id of `acked` reached `receiver`; returns all records.
async fn wait_for_all(
    receiver: &CountingReceiver,
    acked: &HashSet<String>,
    limit: Duration,
) -> Vec<(String, Instant)> {
    let deadline = Instant::now() + limit;
    let mut records = Vec::new();
    loop {
        records.extend(receiver.take_records());
        let seen: HashSet<&String> = records.iter().map(|(id, _)| id).collect();
        let missing = acked.iter().filter(|id| !seen.contains(id)).count();
        if missing == 0 {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} acknowledged events were not delivered within {limit:?}",
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn query_strings(db: &TestDatabase, sql: &str, owner: &str) -> Vec<String> {
    let client = crate::postgres_support::connect(&db.url)
        .await
        .expect("connect");
    client
        .query(sql, &[&owner])
        .await
        .expect(sql)
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The instance ids that have sent a heartbeat.
async fn instance_ids(db: &TestDatabase) -> Vec<String> {
    let client = crate::postgres_support::connect(&db.url)
        .await
        .expect("connect");
    client
        .query("SELECT id FROM instances WHERE id <> 'delivery_queue'", &[])
        .await
        .expect("instances")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

const EVENTS: usize = 10_000;
const PRODUCERS: usize = 48;
/// The killed instance's caps: every delivery it can hold claimed is in its
/// window (in-flight attempts included), so at most this many attempts can be
/// made by it and not recorded, i.e. repeated by another instance.
const KILLED_MAX_IN_FLIGHT: usize = 64;
const KILLED_WINDOW: usize = 512;

async fn three_instances_lose_nothing_when_one_is_killed_and_its_leases_are_taken_over() -> Ran {
    let db = match TestDatabase::fresh().await {
        Ok(db) => db,
        Err(why) => return skip(why),
    };
    let receiver = CountingReceiver::with_capacity(EVENTS + 1000)
        .await
        .unwrap();
    let in_flight = KILLED_MAX_IN_FLIGHT.to_string();
    let window = KILLED_WINDOW.to_string();
    let mut victim = instance(
        &db.url,
        &[
            ("WEBHOOK_MAX_IN_FLIGHT", in_flight.as_str()),
            ("WEBHOOK_MEMORY_WINDOW", window.as_str()),
        ],
    )
    .await;
    // Started alone, so the one heartbeat row is its instance id.
    let victim_id = instance_ids(&db).await;
    assert_eq!(victim_id.len(), 1, "{victim_id:?}");
    let victim_id = victim_id[0].clone();
    let token = victim.token("user-a", false);
    victim
        .create_webhook(&token, &receiver.url("/hook"), &["user.*"], None)
        .await;
    let survivors = [instance(&db.url, &[]).await, instance(&db.url, &[]).await];
    let bases: Arc<Vec<String>> = Arc::new(
        [&victim, &survivors[0], &survivors[1]]
            .iter()
            .map(|app| app.base.clone())
            .collect(),
    );

    // Producers: event n goes to instance n % 3; an instance that cannot be
    // reached (the killed one) or answers 503 is skipped, as a load balancer
    // would, and the event is posted again to the next one.
    let next = Arc::new(AtomicUsize::new(0));
    let acked_count = Arc::new(AtomicUsize::new(0));
    let victim_down = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(PRODUCERS)
        .build()
        .unwrap();
    let started = Instant::now();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            let (next, acked_count, victim_down, client, bases) = (
                next.clone(),
                acked_count.clone(),
                victim_down.clone(),
                client.clone(),
                bases.clone(),
            );
            tokio::spawn(async move {
                let mut acked = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= EVENTS {
                        return acked;
                    }
                    let mut target = n % 3;
                    let mut tries = 0;
                    loop {
                        if target == 0 && victim_down.load(Ordering::Relaxed) {
                            target = 1 + n % 2;
                        }
                        match post_event(&client, &bases[target], n).await {
                            Some((202, body)) => {
                                acked.push((target, event_id(&body)));
                                acked_count.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Some((503, _)) | None => {}
                            Some((status, body)) => panic!("event {n}: {status} {body}"),
                        }
                        tries += 1;
                        assert!(tries < 50, "event {n} was never accepted");
                        target = (target + 1) % 3;
                    }
                }
            })
        })
        .collect();

    // Kill the victim mid-run, while it holds claimed work.
    while acked_count.load(Ordering::Relaxed) < EVENTS * 2 / 5 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    victim.kill();
    let killed = Instant::now();
    victim_down.store(true, Ordering::Relaxed);
    let killed_at = acked_count.load(Ordering::Relaxed);
    let orphaned = query_strings(
        &db,
        "SELECT id FROM delivery_queue WHERE lease_owner = $1",
        &victim_id,
    )
    .await;

    let mut acked = HashSet::new();
    let mut acked_by_victim = 0;
    for producer in producers {
        for (target, id) in producer.await.expect("producer") {
            acked_by_victim += usize::from(target == 0);
            acked.insert(id);
        }
    }
    assert_eq!(acked.len(), EVENTS, "every event was accepted once");
    let ingest_time = started.elapsed();

    // Takeover waits for the victim's heartbeat to be 10 s old. Besides the
    // acknowledged events, the victim can hold deliveries of events it stored
    // but died before answering for: those are delivered too.
    let mut records = wait_for_all(&receiver, &acked, Duration::from_secs(45)).await;
    let client = crate::postgres_support::connect(&db.url)
        .await
        .expect("connect");
    let deadline = Instant::now() + Duration::from_secs(45);
    let still_open = loop {
        let open: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM deliveries WHERE id = ANY($1) AND status <> 'delivered'",
                &[&orphaned],
            )
            .await
            .unwrap()
            .get(0);
        if open == 0 || Instant::now() > deadline {
            break open;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let takeover_after = killed.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    records.extend(receiver.take_records());
    let seen = receipts(&records);
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    let duplicated_events = seen.values().filter(|n| **n > 1).count();

    // Every delivery the victim held claimed when it died was delivered by a survivor.
    let taken_over: i64 = client
        .query_one(
            "SELECT COUNT(DISTINCT delivery_id) FROM attempts WHERE delivery_id = ANY($1)",
            &[&orphaned],
        )
        .await
        .unwrap()
        .get(0);
    let held_by_victim: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM delivery_queue WHERE lease_owner = $1",
            &[&victim_id],
        )
        .await
        .unwrap()
        .get(0);

    eprintln!(
        "SIGKILL test: {EVENTS} events in {ingest_time:?} ({acked_by_victim} acknowledged by the \
         killed instance, killed after {killed_at}); {} deliveries it held claimed were taken over \
         ({takeover_after:?} after the kill); {} receipts, duplicates: {duplicates} (of {duplicated_events} events); bound {}",
        orphaned.len(),
        records.len(),
        KILLED_WINDOW + KILLED_MAX_IN_FLIGHT,
    );
    assert!(
        !orphaned.is_empty(),
        "the killed instance held no claimed work: the test proved nothing"
    );
    assert_eq!(
        still_open, 0,
        "deliveries claimed by the dead instance were delivered"
    );
    assert_eq!(taken_over as usize, orphaned.len(), "each has its attempt");
    assert_eq!(held_by_victim, 0, "no lease of the dead instance is left");
    assert!(
        duplicates <= KILLED_WINDOW + KILLED_MAX_IN_FLIGHT,
        "{duplicates} duplicates: more than the killed instance can have had in flight"
    );
    // Only the victim's unrecorded attempts can be repeated: a duplicate is
    // always a delivery it held claimed.
    assert!(
        duplicated_events <= orphaned.len(),
        "{duplicated_events} events duplicated, but the dead instance held only {} claims",
        orphaned.len()
    );
    drop(survivors);
    drop(db);
    DONE
}

/// Triggers an event on `app` every 50 ms until `done` holds for the answer;
/// returns how long that took.
async fn until_honoured(app: &TestApp, done: impl Fn(&Value) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = app.trigger("user.created", "user-a", json!({})).await;
        assert_eq!(status, 202, "{body}");
        if done(&body["data"]) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the change never reached the other instance"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_webhook_changed_on_one_instance_is_honoured_by_another_within_a_second() -> Ran {
    let db = match TestDatabase::fresh().await {
        Ok(db) => db,
        Err(why) => return skip(why),
    };
    // Both run before the webhook exists: B learns of it only by notification.
    let a = instance(&db.url, &[]).await;
    let b = instance(&db.url, &[]).await;
    let first = Receiver::start(Behavior::Status(200)).await.unwrap();
    let second = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = a.token("user-a", false);

    let webhook = a
        .create_webhook(&token, &first.url("/hook"), &["user.*"], None)
        .await;
    let id = webhook["id"].as_str().unwrap().to_string();
    let created = until_honoured(&b, |data| data["deliveries"] == 1).await;
    first.wait_for(1, Duration::from_secs(5)).await.unwrap();

    // A new URL: the next event B takes after 1 s goes to it.
    let (status, body, _) = a
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1/webhooks/{id}"),
            Some(&token),
            Some(json!({"url": second.url("/moved")})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, body) = b.trigger("user.created", "user-a", json!({})).await;
    assert_eq!(status, 202, "{body}");
    let moved = second.wait_for(1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        moved[0].event_id().as_deref(),
        body["data"]["eventId"].as_str()
    );
    assert_eq!(first.count(), 1, "nothing more went to the old URL");

    // Disabled on A: B stops routing to it.
    let (status, body, _) = a
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1/webhooks/{id}"),
            Some(&token),
            Some(json!({"isActive": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let disabled = until_honoured(&b, |data| data["deliveries"] == 0).await;

    // Enabled again, then deleted on A: B routes to it, then forgets it.
    let (status, body, _) = a
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1/webhooks/{id}"),
            Some(&token),
            Some(json!({"isActive": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    until_honoured(&b, |data| data["deliveries"] == 1).await;
    let (status, body, _) = a
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/webhooks/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert!(status == 200 || status == 204, "{status} {body}");
    let deleted = until_honoured(&b, |data| data["deliveries"] == 0).await;

    eprintln!(
        "change propagation: created in {created:?}, disabled in {disabled:?}, deleted in {deleted:?}"
    );
    assert!(
        created < Duration::from_secs(1),
        "creation took {created:?}"
    );
    assert!(
        disabled < Duration::from_secs(1),
        "disabling took {disabled:?}"
    );
    assert!(
        deleted < Duration::from_secs(1),
        "deleting took {deleted:?}"
    );
    drop((a, b));
    drop(db);
    DONE
}

async fn ingest_under_load_refuses_during_a_database_outage_and_loses_nothing_acknowledged() -> Ran
{
    let db = match TestDatabase::fresh().await {
        Ok(db) => db,
        Err(why) => return skip(why),
    };
    let proxy = CuttableProxy::start().await;
    let proxied = proxy.url_for(&db);
    let app = instance(&proxied, &[]).await;
    let receiver = CountingReceiver::start().await.unwrap();
    let token = app.token("user-a", false);
    app.create_webhook(&token, &receiver.url("/hook"), &["user.*"], None)
        .await;

    // Producers post as fast as the service answers until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let producers: Vec<_> = (0..16)
        .map(|p| {
            let (stop, client, base) = (stop.clone(), client.clone(), app.base.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut n = p * 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    let (status, body) = post_event(&client, &base, n)
                        .await
                        .expect("the service itself stays up");
                    let id = (status == 202).then(|| event_id(&body));
                    answers.push((Instant::now(), status, id));
                    n += 1;
                }
                answers
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.cut();
    let cut_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (status, health) = app.get("/health", &token).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    proxy.restore();
    let restored_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    stop.store(true, Ordering::Relaxed);

    let mut answers = Vec::new();
    for producer in producers {
        answers.extend(producer.await.expect("producer"));
    }
    assert_eq!(status, 503, "/health during the outage: {health}");
    let reason = health["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("PostgreSQL"), "{health}");
    let port = proxied
        .split(':')
        .next_back()
        .unwrap_or_default()
        .to_string();
    assert!(
        !reason.contains("postgres://") && !reason.contains(&port),
        "{health}"
    );

    let unexpected: Vec<u16> = answers
        .iter()
        .map(|(_, status, _)| *status)
        .filter(|s| *s != 202 && *s != 503)
        .collect();
    assert!(unexpected.is_empty(), "only 202 or 503: {unexpected:?}");
    let refused = answers.iter().filter(|(_, s, _)| *s == 503).count();
    let during = |at: &Instant| *at > cut_at + Duration::from_millis(500) && *at < restored_at;
    let acked_during = answers
        .iter()
        .filter(|(at, s, _)| *s == 202 && during(at))
        .count();
    let acked_after = answers
        .iter()
        .filter(|(at, s, _)| *s == 202 && *at > restored_at)
        .count();
    let acked: HashSet<String> = answers.iter().filter_map(|(_, _, id)| id.clone()).collect();
    eprintln!(
        "outage under load: {} answers, {} acknowledged ({acked_after} after the outage), \
         {refused} refused with 503; health said {reason:?}",
        answers.len(),
        acked.len()
    );
    assert!(refused > 0, "ingest refused during the outage");
    assert_eq!(acked_during, 0, "nothing acknowledged while cut off");
    assert!(
        acked_after > 0,
        "ingest recovered without restarting the service"
    );
    let (status, _) = app.get("/health", &token).await;
    assert_eq!(status, 200, "healthy again");

    // Every acknowledged event is stored, and delivered.
    let client = crate::postgres_support::connect(&db.url)
        .await
        .expect("connect");
    let ids: Vec<String> = acked.iter().cloned().collect();
    let stored: i64 = client
        .query_one("SELECT COUNT(*) FROM events WHERE id = ANY($1)", &[&ids])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored as usize, acked.len(), "every 202 was stored");
    wait_for_all(&receiver, &acked, Duration::from_secs(30)).await;
    drop(app);
    drop(proxy);
    drop(db);
    DONE
}

/// An API request that outlives `HTTP_REQUEST_TIMEOUT` while its statement
/// waits for a lock leaves that statement running on the server. Its
/// connection used to go back to the pool and be lent to the scheduler,
/// whose heartbeat then waited behind the lock past the claims' time to
/// live: another instance voided this live instance's claims and sent its
/// work a second time. Now such a connection is discarded and the heartbeat
/// has a task of its own: every event arrives exactly once.
async fn a_request_stuck_on_a_lock_does_not_stop_the_heartbeat() -> Ran {
    let db = match TestDatabase::fresh().await {
        Ok(db) => db,
        Err(why) => return skip(why),
    };
    let a = instance(
        &db.url,
        &[
            ("HTTP_REQUEST_TIMEOUT", "2s"),
            ("DATABASE_POOL_SIZE", "1"),
            ("WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT", "1"),
        ],
    )
    .await;
    let _b = instance(&db.url, &[]).await;
    let receiver = Receiver::start(Behavior::Delay(Duration::from_millis(800), 200))
        .await
        .unwrap();
    let token = a.token("user-a", false);
    a.create_webhook(&token, &receiver.url("/w"), &["user.created"], None)
        .await;
    let locked = a
        .create_webhook(&token, &receiver.url("/x"), &["credit.low"], None)
        .await;
    let locked_id = locked["id"].as_str().unwrap().to_string();

    // Another client holds the second webhook's row.
    let holder = crate::postgres_support::connect(&db.url)
        .await
        .expect("connect");
    holder.batch_execute("BEGIN").await.unwrap();
    holder
        .execute(
            "SELECT 1 FROM webhooks WHERE id = $1 FOR UPDATE",
            &[&locked_id],
        )
        .await
        .unwrap();
    let (status, body, _) = a
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1/webhooks/{locked_id}"),
            Some(&token),
            Some(json!({"description": "waits for the lock"})),
        )
        .await;
    assert_eq!(status, 408, "{body}");

    let client = reqwest::Client::new();
    let mut acked = HashSet::new();
    for n in 0..16 {
        let (status, body) = post_event(&client, &a.base, n)
            .await
            .expect("instance A answers");
        assert_eq!(status, 202, "{body}");
        acked.insert(event_id(&body));
    }
    // Past the claims' time to live (10 s) before the lock goes.
    tokio::time::sleep(Duration::from_secs(13)).await;
    holder.batch_execute("ROLLBACK").await.unwrap();

    receiver
        .wait_for(16, Duration::from_secs(30))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for request in receiver.received() {
        if let Some(id) = request.event_id() {
            *seen.entry(id).or_insert(0) += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), acked);
    DONE
}

/// A FIFO webhook on two instances: events acknowledged alternately by
/// each arrive in exactly the order of acknowledgement, though both
/// instances ingest and both deliver; and when one of them is killed with
/// SIGKILL half-way (perhaps holding the order's head), the order waits for
/// its claim to be voided and goes on in order from the survivor.
async fn fifo_events_arrive_in_acknowledged_order_across_two_instances() -> Ran {
    let db = match TestDatabase::fresh().await {
        Ok(db) => db,
        Err(why) => return skip(why),
    };
    let receiver = Receiver::start(Behavior::Delay(Duration::from_millis(2), 200))
        .await
        .unwrap();
    let survivor = instance(&db.url, &[]).await;
    let mut victim = instance(&db.url, &[]).await;
    let token = survivor.token("user-a", false);
    let (status, hook) = survivor
        .post(
            "/api/v1/webhooks",
            &token,
            json!({"url": receiver.url("/ordered"), "eventTypes": ["user.*"], "ordering": "fifo"}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    // The other instance routes to the webhook too (changes reach it within a second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let client = reqwest::Client::new();
    let mut acked = Vec::with_capacity(1000);
    for n in 0..1000 {
        if n == 500 {
            victim.kill();
        }
        let base = if n % 2 == 0 || n >= 500 {
            &survivor.base
        } else {
            &victim.base
        };
        let (status, body) = post_event(&client, base, n)
            .await
            .expect("instance reachable");
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["data"]["deliveries"], 1, "{body}");
        acked.push(event_id(&body));
    }
    // The victim's claims are voided after the claims' time to live (10 s).
    let deadline = Instant::now() + Duration::from_secs(180);
    let arrivals = loop {
        let arrivals: Vec<String> = receiver
            .received()
            .iter()
            .filter_map(|r| r.event_id())
            .collect();
        if arrivals.iter().collect::<HashSet<_>>().len() >= acked.len() {
            break arrivals;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} arrived",
            arrivals.iter().collect::<HashSet<_>>().len(),
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut seen = HashSet::new();
    let firsts: Vec<&String> = arrivals.iter().filter(|id| seen.insert(*id)).collect();
    if let Some(k) = firsts.iter().zip(&acked).position(|(a, b)| *a != b) {
        panic!(
            "out of order at position {k}: arrived {}, acknowledged {}",
            firsts[k], acked[k]
        );
    }
    assert_eq!(firsts.len(), acked.len());
    // At-least-once: only the delivery the victim had in flight may come
    // again, and only right after its first arrival's place.
    let place: HashMap<&String, usize> = acked.iter().enumerate().map(|(n, id)| (id, n)).collect();
    let mut highest = 0;
    let mut firsts_seen = HashSet::new();
    for id in &arrivals {
        let p = place[id];
        if firsts_seen.insert(id) {
            highest = p;
        } else {
            assert!(
                p + 1 >= highest,
                "event {p} arrived again after event {highest} had gone"
            );
        }
    }
    DONE
}

/// The tests of this file, for the binary's harness.
pub fn tests() -> Vec<crate::harness::Test> {
    vec![
        Test::new(stringify!(three_instances_lose_nothing_when_one_is_killed_and_its_leases_are_taken_over), || Box::pin(three_instances_lose_nothing_when_one_is_killed_and_its_leases_are_taken_over())).multi_thread(2),
        Test::new(stringify!(a_webhook_changed_on_one_instance_is_honoured_by_another_within_a_second), || Box::pin(a_webhook_changed_on_one_instance_is_honoured_by_another_within_a_second())).multi_thread(2),
        Test::new(stringify!(ingest_under_load_refuses_during_a_database_outage_and_loses_nothing_acknowledged), || Box::pin(ingest_under_load_refuses_during_a_database_outage_and_loses_nothing_acknowledged())).multi_thread(2),
        Test::new(stringify!(a_request_stuck_on_a_lock_does_not_stop_the_heartbeat), || Box::pin(a_request_stuck_on_a_lock_does_not_stop_the_heartbeat())).multi_thread(2),
        Test::new(stringify!(fifo_events_arrive_in_acknowledged_order_across_two_instances), || Box::pin(fifo_events_arrive_in_acknowledged_order_across_two_instances())).multi_thread(2),
    ]
}
