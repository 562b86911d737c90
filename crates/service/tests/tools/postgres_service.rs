//! The real `webhook-service` binary on PostgreSQL (`DATABASE_URL`), each
//! test on a fresh database: events are delivered, several instances share
//! one database without delivering an event twice, and ingest answers 503
//! while the database is unreachable, then recovers by itself.
//!
//! Listed as ignored (with the reason) when no PostgreSQL server is
//! reachable, unless `WEBHOOK_REQUIRE_POSTGRES=1` or `CI=true`, where they fail.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::common::{TestApp, spawn_app_with};
use crate::harness::{DONE, Ran, Test, skip};
use crate::postgres_support::{CuttableProxy, TestDatabase};
use serde_json::json;
use webhook_testkit::{Behavior, Receiver};

const SECRET: &str = "whsec_postgres-service-test-0001";

async fn app_on(url: &str) -> TestApp {
    spawn_app_with(&[("DATABASE_URL", url)]).await
}

fn event_ids(receiver: &Receiver) -> Vec<String> {
    receiver
        .received()
        .iter()
        .filter_map(|r| r.event_id())
        .collect()
}

async fn count_delivered(db: &TestDatabase) -> i64 {
    let client = crate::postgres_support::connect(&db.url)
        .await
        .expect("connect");
    client
        .query_one(
            "SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'",
            &[],
        )
        .await
        .expect("count")
        .get(0)
}

async fn events_are_delivered_from_a_postgres_backed_service() -> Ran {
    let db = match TestDatabase::fresh().await {
        Ok(db) => db,
        Err(why) => return skip(why),
    };
    let app = app_on(&db.url).await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("user-a", false);
    let webhook = app
        .create_webhook(&token, &receiver.url("/hook"), &["user.*"], Some(SECRET))
        .await;
    let (status, health) = app.get("/health", &token).await;
    assert_eq!(status, 200, "{health}");

    for i in 0..50 {
        let (status, body) = app.trigger("user.created", "user-a", json!({"n": i})).await;
        assert_eq!(status, 202, "{body}");
    }
    let got = receiver
        .wait_for(50, Duration::from_secs(20))
        .await
        .unwrap();
    for request in &got {
        request.verify_signatures(SECRET).unwrap();
    }
    let distinct: HashSet<String> = event_ids(&receiver).into_iter().collect();
    assert_eq!(distinct.len(), 50);

    let id = webhook["id"].as_str().unwrap();
    app.wait_for_logs(&token, id, Duration::from_secs(10), |items| {
        items.len() == 50 && items.iter().all(|d| d["status"] == "delivered")
    })
    .await;
    assert_eq!(
        count_delivered(&db).await,
        50,
        "the rows live in PostgreSQL"
    );
    DONE
}

async fn two_instances_share_one_database() -> Ran {
    let db = match TestDatabase::fresh().await {
        Ok(db) => db,
        Err(why) => return skip(why),
    };
    let first = app_on(&db.url).await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = first.token("user-a", false);
    let webhook = first
        .create_webhook(&token, &receiver.url("/hook"), &["user.*"], Some(SECRET))
        .await;
    // Started after the webhook exists, so its routing table has it.
    let second = app_on(&db.url).await;
    let id = webhook["id"].as_str().unwrap();
    let (status, seen) = second.get(&format!("/api/v1/webhooks/{id}"), &token).await;
    assert_eq!(
        status, 200,
        "the second instance reads the shared webhook: {seen}"
    );

    for i in 0..100 {
        let app = if i % 2 == 0 { &first } else { &second };
        let (status, body) = app.trigger("user.created", "user-a", json!({"n": i})).await;
        assert_eq!(status, 202, "{body}");
    }
    receiver
        .wait_for(100, Duration::from_secs(20))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = event_ids(&receiver);
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 100, "every event delivered");
    assert_eq!(ids.len(), 100, "no instance delivered another's event");
    assert_eq!(count_delivered(&db).await, 100);
    DONE
}

async fn ingest_answers_503_while_the_database_is_unreachable_and_recovers() -> Ran {
    let db = match TestDatabase::fresh().await {
        Ok(db) => db,
        Err(why) => return skip(why),
    };
    let proxy = CuttableProxy::start().await;
    let app = app_on(&proxy.url_for(&db)).await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("user-a", false);
    app.create_webhook(&token, &receiver.url("/hook"), &["user.*"], Some(SECRET))
        .await;
    let mut acknowledged = HashSet::new();
    for i in 0..10 {
        let (status, body) = app
            .trigger("user.created", "user-a", json!({"before": i}))
            .await;
        assert_eq!(status, 202, "{body}");
        acknowledged.insert(body["data"]["eventId"].as_str().unwrap().to_string());
    }

    proxy.cut();
    let started = Instant::now();
    for i in 0..5 {
        let (status, body) = app
            .trigger("user.created", "user-a", json!({"during": i}))
            .await;
        assert_eq!(
            status, 503,
            "ingest refuses while the database is away: {body}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5), "503s come fast");
    let (status, body) = app.get("/health", &token).await;
    assert_eq!(status, 503, "{body}");

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = app
            .trigger("user.created", "user-a", json!({"after": true}))
            .await;
        if status == 202 {
            acknowledged.insert(body["data"]["eventId"].as_str().unwrap().to_string());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ingest did not recover: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let n = acknowledged.len();
    receiver.wait_for(n, Duration::from_secs(30)).await.unwrap();
    let delivered: HashSet<String> = event_ids(&receiver).into_iter().collect();
    assert!(
        acknowledged.is_subset(&delivered),
        "every acknowledged event is delivered after the outage"
    );
    DONE
}

/// A receiver may answer with any bytes. PostgreSQL's `text` holds no NUL:
/// an excerpt with one used to fail its whole batch of attempt results again
/// and again, so that no later result of any webhook was recorded either.
async fn a_binary_answer_is_logged_and_later_results_are_still_recorded() -> Ran {
    let db = match TestDatabase::fresh().await {
        Ok(db) => db,
        Err(why) => return skip(why),
    };
    let app = app_on(&db.url).await;
    let binary = Receiver::start(Behavior::Body {
        status: 200,
        body: b"ok\0\xff!".to_vec(),
    })
    .await
    .unwrap();
    let healthy = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("user-a", false);
    let odd = app
        .create_webhook(
            &token,
            &binary.url("/hook"),
            &["user.created"],
            Some(SECRET),
        )
        .await;
    let plain = app
        .create_webhook(&token, &healthy.url("/hook"), &["credit.low"], Some(SECRET))
        .await;

    let (status, body) = app.trigger("user.created", "user-a", json!({})).await;
    assert_eq!(status, 202, "{body}");
    binary.wait_for(1, Duration::from_secs(10)).await.unwrap();
    for i in 0..20 {
        let (status, body) = app.trigger("credit.low", "user-a", json!({"n": i})).await;
        assert_eq!(status, 202, "{body}");
    }
    healthy.wait_for(20, Duration::from_secs(10)).await.unwrap();

    let odd_id = odd["id"].as_str().unwrap();
    let items = app
        .wait_for_logs(&token, odd_id, Duration::from_secs(10), |items| {
            items.len() == 1 && items[0]["status"] == "delivered"
        })
        .await;
    let delivery = items[0]["id"].as_str().unwrap();
    let (status, detail) = app
        .get(
            &format!("/api/v1/webhooks/{odd_id}/deliveries/{delivery}"),
            &token,
        )
        .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(
        detail["data"]["attemptLog"][0]["responseBody"], "ok\u{FFFD}\u{FFFD}!",
        "{detail}"
    );
    let plain_id = plain["id"].as_str().unwrap();
    app.wait_for_logs(&token, plain_id, Duration::from_secs(10), |items| {
        items.len() == 20 && items.iter().all(|d| d["status"] == "delivered")
    })
    .await;
    DONE
}

/// Queued work of a paused webhook is given back to the store when its turn
/// comes. If the database is away at that moment, the release is retried
/// until it succeeds: a claim kept by this running instance would never be
/// voided (only a dead instance's are) and the deliveries would never go out.
async fn queued_work_of_a_paused_webhook_is_released_even_across_an_outage() -> Ran {
    let db = match TestDatabase::fresh().await {
        Ok(db) => db,
        Err(why) => return skip(why),
    };
    let proxy = CuttableProxy::start().await;
    let app = spawn_app_with(&[
        ("DATABASE_URL", proxy.url_for(&db).as_str()),
        ("WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT", "1"),
    ])
    .await;
    let receiver = Receiver::start(Behavior::Delay(Duration::from_millis(1500), 200))
        .await
        .unwrap();
    let token = app.token("user-a", false);
    let hook = app
        .create_webhook(&token, &receiver.url("/hook"), &["user.*"], Some(SECRET))
        .await;
    let id = hook["id"].as_str().unwrap();
    let patch = |active: bool| {
        let app = &app;
        let token = &token;
        async move {
            let (status, body, _) = app
                .request(
                    reqwest::Method::PATCH,
                    &format!("/api/v1/webhooks/{id}"),
                    Some(token),
                    Some(json!({"isActive": active})),
                )
                .await;
            (status, body)
        }
    };
    let mut acknowledged = HashSet::new();
    for i in 0..5 {
        let (status, body) = app.trigger("user.created", "user-a", json!({"n": i})).await;
        assert_eq!(status, 202, "{body}");
        acknowledged.insert(body["data"]["eventId"].as_str().unwrap().to_string());
    }
    // One attempt in flight (the receiver takes 1.5 s), four queued in memory.
    receiver.wait_for(1, Duration::from_secs(5)).await.unwrap();
    let (status, body) = patch(false).await;
    assert_eq!(status, 200, "{body}");
    // The queued four reach their turn while the database is away.
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    proxy.restore();
    receiver.set_behavior(Behavior::Status(200));
    assert_eq!(receiver.count(), 1, "nothing went to the paused webhook");

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = patch(true).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "re-enabling failed: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    receiver
        .wait_for(5, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("the released deliveries went out after re-enabling: {e:?}"));
    let delivered: HashSet<String> = event_ids(&receiver).into_iter().collect();
    assert_eq!(delivered, acknowledged);
    DONE
}

/// A test send whose result cannot be recorded (the database went away
/// while the receiver answered) still answers with the receiver's outcome,
/// and the result is recorded once the database is back, instead of the
/// test delivery staying pending and claimed, to be sent again as real
/// traffic after a restart.
async fn a_test_send_is_recorded_after_an_outage() -> Ran {
    let db = match TestDatabase::fresh().await {
        Ok(db) => db,
        Err(why) => return skip(why),
    };
    let proxy = CuttableProxy::start().await;
    let app = app_on(&proxy.url_for(&db)).await;
    let receiver = Receiver::start(Behavior::Delay(Duration::from_millis(1500), 200))
        .await
        .unwrap();
    let token = app.token("user-a", false);
    let hook = app
        .create_webhook(&token, &receiver.url("/hook"), &["user.*"], Some(SECRET))
        .await;
    let id = hook["id"].as_str().unwrap().to_string();

    let sending = {
        let app = &app;
        let token = &token;
        let id = &id;
        async move {
            app.post(&format!("/api/v1/webhooks/{id}/test"), token, json!({}))
                .await
        }
    };
    let cutting = async {
        receiver.wait_for(1, Duration::from_secs(5)).await.unwrap();
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        proxy.restore();
    };
    let ((status, body), ()) = tokio::join!(sending, cutting);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["statusCode"], 200, "{body}");
    let delivery = body["data"]["deliveryId"].as_str().unwrap().to_string();

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, detail) = app
            .get(
                &format!("/api/v1/webhooks/{id}/deliveries/{delivery}"),
                &token,
            )
            .await;
        if status == 200 && detail["data"]["status"] == "delivered" {
            assert_eq!(detail["data"]["attempts"], 1, "{detail}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the test send was never recorded: {status} {detail}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.count(), 1, "sent once");
    DONE
}

/// A webhook's delivery controls on PostgreSQL: a filter set on one
/// instance decides fan-out on another, a change made on one applies on the
/// other within moments (the change notification), and a webhook's own
/// retry schedule is honoured.
async fn delivery_controls_apply_on_every_instance() -> Ran {
    let db = match TestDatabase::fresh().await {
        Ok(db) => db,
        Err(why) => return skip(why),
    };
    let first = app_on(&db.url).await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let failing = Receiver::start(Behavior::Status(500)).await.unwrap();
    let token = first.token("user-c", false);
    let (status, hook) = first
        .post(
            "/api/v1/webhooks",
            &token,
            json!({"url": receiver.url("/f"), "eventTypes": ["user.*"],
                   "filter": {"data": {"n": {"$gte": 5}}}}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let id = hook["data"]["id"].as_str().unwrap().to_string();
    let (status, retried) = first
        .post(
            "/api/v1/webhooks",
            &token,
            json!({"url": failing.url("/r"), "eventTypes": ["credit.*"], "retrySchedule": ["100ms"]}),
        )
        .await;
    assert_eq!(status, 201, "{retried}");
    let second = app_on(&db.url).await;

    let (_, low) = second
        .trigger("user.created", "user-c", json!({"n": 1}))
        .await;
    assert_eq!(low["data"]["deliveries"], 0, "refused by the filter: {low}");
    let (_, high) = second
        .trigger("user.created", "user-c", json!({"n": 7}))
        .await;
    assert_eq!(high["data"]["deliveries"], 1, "{high}");
    let (_, stats) = second
        .get(&format!("/api/v1/webhooks/{id}/stats"), &token)
        .await;
    assert_eq!(stats["data"]["filteredOut"], 1, "{stats}");

    // Cleared on the first instance, the second routes by it soon after.
    let (status, body, _) = first
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1/webhooks/{id}"),
            Some(&token),
            Some(json!({"filter": null})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, again) = second
            .trigger("user.created", "user-c", json!({"n": 1}))
            .await;
        if again["data"]["deliveries"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the change never reached the second instance"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // One try and one retry, by the webhook's own schedule (the service's has three).
    let (_, credit) = second.trigger("credit.low", "user-c", json!({})).await;
    let delivery = credit["data"]["deliveryIds"][0]
        .as_str()
        .unwrap()
        .to_string();
    let retried_id = retried["data"]["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, detail) = first
            .get(
                &format!("/api/v1/webhooks/{retried_id}/deliveries/{delivery}"),
                &token,
            )
            .await;
        if detail["data"]["status"] == "failed" {
            assert_eq!(detail["data"]["attempts"], 2, "{detail}");
            break;
        }
        assert!(Instant::now() < deadline, "never failed: {detail}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    DONE
}

/// A rate-limited webhook on PostgreSQL is paced (a burst of 10, then 10
/// a second: the 30th no sooner than 2 s after the first), also for the
/// deliveries the scheduler claims from the store rather than the fast path.
async fn a_rate_limit_paces_deliveries_on_postgres() -> Ran {
    let db = match TestDatabase::fresh().await {
        Ok(db) => db,
        Err(why) => return skip(why),
    };
    // A small window: most deliveries wait in the store and are claimed later.
    let app = spawn_app_with(&[
        ("DATABASE_URL", db.url.as_str()),
        ("WEBHOOK_MEMORY_WINDOW_PER_ENDPOINT", "5"),
    ])
    .await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("user-d", false);
    let (status, hook) = app
        .post(
            "/api/v1/webhooks",
            &token,
            json!({"url": receiver.url("/p"), "eventTypes": ["*"], "rateLimitPerSecond": 10}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    assert_eq!(hook["data"]["rateLimitPerSecond"], 10);
    for n in 0..30 {
        let (status, body) = app.trigger("user.created", "user-d", json!({"n": n})).await;
        assert_eq!(status, 202, "{body}");
    }
    let got = receiver
        .wait_for(30, Duration::from_secs(30))
        .await
        .unwrap();
    let span = got[29].received_at - got[0].received_at;
    assert!(span >= Duration::from_millis(1500), "paced: {span:?}");
    DONE
}

/// Two instances share a rate limit: each paces at half of it, so that
/// together they keep to it (40 events at 10 a second, ingested on both:
/// about 3 s, where each at the full limit took about 1 s).
async fn instances_share_a_rate_limit() -> Ran {
    let db = match TestDatabase::fresh().await {
        Ok(db) => db,
        Err(why) => return skip(why),
    };
    let first = app_on(&db.url).await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = first.token("user-e", false);
    let (status, hook) = first
        .post(
            "/api/v1/webhooks",
            &token,
            json!({"url": receiver.url("/s"), "eventTypes": ["*"], "rateLimitPerSecond": 10}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let second = app_on(&db.url).await;
    // Each instance counts the live ones every 2 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in 0..40 {
        let app = if n % 2 == 0 { &first } else { &second };
        let (status, body) = app.trigger("user.created", "user-e", json!({"n": n})).await;
        assert_eq!(status, 202, "{body}");
    }
    let got = receiver
        .wait_for(40, Duration::from_secs(30))
        .await
        .unwrap();
    let mut times: Vec<Instant> = got.iter().map(|r| r.received_at).collect();
    times.sort();
    let span = times[39] - times[0];
    assert!(
        span >= Duration::from_millis(2200),
        "paced together: {span:?}"
    );
    DONE
}

/// The charts' figures per bucket, and the operator's, on PostgreSQL.
async fn charts_count_each_bucket_and_the_platform_on_postgres() -> Ran {
    let db = match TestDatabase::fresh().await {
        Ok(db) => db,
        Err(why) => return skip(why),
    };
    let app = app_on(&db.url).await;
    crate::common::figures::charts_count_each_bucket_and_the_platform(&app).await;
    DONE
}

/// The tests of this file, for the binary's harness.
pub fn tests() -> Vec<crate::harness::Test> {
    vec![
        Test::new(
            stringify!(events_are_delivered_from_a_postgres_backed_service),
            || Box::pin(events_are_delivered_from_a_postgres_backed_service()),
        )
        .multi_thread(2),
        Test::new(stringify!(two_instances_share_one_database), || {
            Box::pin(two_instances_share_one_database())
        })
        .multi_thread(2),
        Test::new(
            stringify!(ingest_answers_503_while_the_database_is_unreachable_and_recovers),
            || Box::pin(ingest_answers_503_while_the_database_is_unreachable_and_recovers()),
        )
        .multi_thread(2),
        Test::new(
            stringify!(a_binary_answer_is_logged_and_later_results_are_still_recorded),
            || Box::pin(a_binary_answer_is_logged_and_later_results_are_still_recorded()),
        )
        .multi_thread(2),
        Test::new(
            stringify!(queued_work_of_a_paused_webhook_is_released_even_across_an_outage),
            || Box::pin(queued_work_of_a_paused_webhook_is_released_even_across_an_outage()),
        )
        .multi_thread(2),
        Test::new(stringify!(a_test_send_is_recorded_after_an_outage), || {
            Box::pin(a_test_send_is_recorded_after_an_outage())
        })
        .multi_thread(2),
        Test::new(
            stringify!(delivery_controls_apply_on_every_instance),
            || Box::pin(delivery_controls_apply_on_every_instance()),
        )
        .multi_thread(2),
        Test::new(
            stringify!(a_rate_limit_paces_deliveries_on_postgres),
            || Box::pin(a_rate_limit_paces_deliveries_on_postgres()),
        )
        .multi_thread(2),
        Test::new(stringify!(instances_share_a_rate_limit), || {
            Box::pin(instances_share_a_rate_limit())
        })
        .multi_thread(2),
        Test::new(
            stringify!(charts_count_each_bucket_and_the_platform_on_postgres),
            || Box::pin(charts_count_each_bucket_and_the_platform_on_postgres()),
        )
        .multi_thread(2),
    ]
}
