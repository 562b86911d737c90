//! Rate limits: per user on `/api/v1`, per caller on `/internal`, announced
//! on every limited response, enforced with 429 and `Retry-After`.

use std::time::Duration;

use crate::api_support::{Answer, NONEXISTENT_WEBHOOK, call, get, now_secs, post};
use crate::common::{INTERNAL_SECRET, spawn_app_with};
use reqwest::Method;
use serde_json::json;

fn number(answer: &Answer, name: &str) -> i64 {
    answer
        .header(name)
        .unwrap_or_else(|| panic!("{name} missing on {} {}", answer.status, answer.body))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

/// Checks both header families against the expected limit and remaining count.
fn assert_limit_headers(answer: &Answer, limit: i64, remaining: i64, window_secs: i64) {
    assert_eq!(number(answer, "x-ratelimit-limit"), limit);
    assert_eq!(number(answer, "x-ratelimit-remaining"), remaining);
    assert_eq!(number(answer, "ratelimit-limit"), limit);
    assert_eq!(number(answer, "ratelimit-remaining"), remaining);
    // X-RateLimit-Reset is a unix time within the window; RateLimit-Reset is seconds from now.
    let reset_at = number(answer, "x-ratelimit-reset");
    let now = now_secs();
    assert!(
        reset_at >= now && reset_at <= now + window_secs + 1,
        "x-ratelimit-reset {reset_at} vs now {now}"
    );
    let reset_in = number(answer, "ratelimit-reset");
    assert!(
        (1..=window_secs).contains(&reset_in),
        "ratelimit-reset {reset_in}"
    );
    assert!(
        (reset_at - now - reset_in).abs() <= 1,
        "both resets name the same instant"
    );
}

/// Windows are fixed and aligned to the epoch: start a counted sequence well
/// inside one, so that it cannot straddle a reset.
async fn away_from_a_window_edge(window: Duration) {
    let window_ms = window.as_millis() as u64;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let left = window_ms - now_ms % window_ms;
    if left < 3000 {
        tokio::time::sleep(Duration::from_millis(left + 50)).await;
    }
}

#[tokio::test]
async fn users_are_limited_per_window_and_independently() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_MAX_REQUESTS", "5"),
        ("RATE_LIMIT_WINDOW_MS", "60000"),
    ])
    .await;
    let alice = app.token("limited-alice", false);
    let bob = app.token("limited-bob", false);
    let admin = app.token("limited-admin", true);
    away_from_a_window_edge(Duration::from_secs(60)).await;

    // Five requests of every kind of outcome; each carries the headers.
    let answers = [
        get(&app, "/api/v1/webhooks", &alice).await,
        post(
            &app,
            "/api/v1/webhooks",
            &alice,
            json!({"url": "http://127.0.0.1:9/a", "eventTypes": ["*"]}),
        )
        .await,
        post(&app, "/api/v1/webhooks", &alice, json!({"url": "ftp://x"})).await,
        get(
            &app,
            &format!("/api/v1/webhooks/{NONEXISTENT_WEBHOOK}"),
            &alice,
        )
        .await,
        get(&app, "/api/v1/webhooks/stats", &alice).await,
    ];
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 201, 400, 404, 200]);
    for (n, answer) in answers.iter().enumerate() {
        assert_limit_headers(answer, 5, 4 - n as i64, 60);
    }

    // The sixth is refused, and does nothing.
    let refused = post(
        &app,
        "/api/v1/webhooks",
        &alice,
        json!({"url": "http://127.0.0.1:9/too-many", "eventTypes": ["*"]}),
    )
    .await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.error_code(), "RATE_LIMITED");
    assert!(
        refused.message().contains("Rate limit of 5 requests"),
        "{}",
        refused.message()
    );
    assert_limit_headers(&refused, 5, 0, 60);
    let retry_after = number(&refused, "retry-after");
    assert!((1..=60).contains(&retry_after), "retry-after {retry_after}");
    assert_eq!(get(&app, "/api/v1/webhooks", &alice).await.status, 429);

    // Others are not affected: Bob has his own five.
    let bobs = get(&app, "/api/v1/webhooks", &bob).await;
    assert_eq!(bobs.status, 200);
    assert_limit_headers(&bobs, 5, 4, 60);
    // Alice's refused create was not stored.
    let all = get(&app, "/api/v1/webhooks", &admin).await;
    assert_eq!(all.body["meta"]["total"], 1, "{}", all.body);
}

#[tokio::test]
async fn internal_callers_have_their_own_limit() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_MAX_REQUESTS", "5"),
        ("RATE_LIMIT_WINDOW_MS", "60000"),
        ("INTERNAL_RATE_LIMIT_MAX_REQUESTS", "3"),
    ])
    .await;
    let token = app.token("user-beside-producers", false);
    away_from_a_window_edge(Duration::from_secs(60)).await;
    let event = json!({"eventType": "user.login", "userId": "u-1", "data": {}});
    let trigger = || {
        call(
            &app,
            Method::POST,
            "/internal/webhooks/trigger",
            Some(INTERNAL_SECRET),
            Some(event.clone()),
        )
    };
    for remaining in [2, 1, 0] {
        let answer = trigger().await;
        assert_eq!(answer.status, 202, "{}", answer.body);
        assert_limit_headers(&answer, 3, remaining, 60);
    }
    let refused = trigger().await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.error_code(), "RATE_LIMITED");
    assert!(number(&refused, "retry-after") >= 1);
    assert_limit_headers(&refused, 3, 0, 60);
    // Users' limits are separate from the producers'.
    let answer = get(&app, "/api/v1/webhooks", &token).await;
    assert_eq!(answer.status, 200);
    assert_limit_headers(&answer, 5, 4, 60);
}

#[tokio::test]
async fn the_limit_resets_with_the_window() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_MAX_REQUESTS", "2"),
        ("RATE_LIMIT_WINDOW_MS", "1000"),
    ])
    .await;
    let token = app.token("resetting", false);
    // Two per window: within at most two windows' worth of quick requests, one is refused.
    let mut refused = None;
    for _ in 0..10 {
        let answer = get(&app, "/api/v1/webhooks", &token).await;
        if answer.status == 429 {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("a third request within one second is refused");
    let wait = number(&refused, "retry-after");
    assert_eq!(wait, 1);
    tokio::time::sleep(Duration::from_secs(wait as u64)).await;
    let answer = get(&app, "/api/v1/webhooks", &token).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        number(&answer, "x-ratelimit-remaining"),
        1,
        "a fresh window"
    );
}
