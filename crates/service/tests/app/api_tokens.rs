//! How a user token's claims are read: which claim names the user, how a
//! numeric id is taken, what makes an admin; and how often an address may
//! fail to authenticate.

use crate::api_support::{
    Answer, call, get, now_secs, platform_token, post, service_token, webhook_body,
};
use crate::common::{INTERNAL_SECRET, JWT_SECRET, spawn_app, spawn_app_with};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::Method;
use serde_json::json;

/// An HS256 token over the claims exactly as written (a number too large
/// for 64 bits survives only as text).
fn token_over_text(claims: &str) -> String {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let message = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(claims.as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        Algorithm::HS256,
    )
    .expect("sign");
    format!("{message}.{signature}")
}

#[tokio::test]
async fn numeric_user_ids_that_would_round_are_refused_not_merged() {
    let app = spawn_app().await;
    let exp = now_secs() + 600;
    let first = token_over_text(&format!(
        r#"{{"userId": 123456789012345678901234567890, "exp": {exp}}}"#
    ));
    let second = token_over_text(&format!(
        r#"{{"userId": 123456789012345678901234567891, "exp": {exp}}}"#
    ));
    for token in [&first, &second] {
        let created = post(
            &app,
            "/api/v1/webhooks",
            token,
            webhook_body("http://127.0.0.1:9/hook", &["*"]),
        )
        .await;
        assert_eq!(created.status, 401, "{}", created.body);
        assert_eq!(created.error_code(), "AUTH_MALFORMED");
        assert!(created.message().contains("'userId'"), "{}", created.body);
    }

    // An integer that fits is taken exactly, as its decimal text.
    let exact = token_over_text(&format!(r#"{{"userId": 9007199254740993, "exp": {exp}}}"#));
    let created = post(
        &app,
        "/api/v1/webhooks",
        &exact,
        webhook_body("http://127.0.0.1:9/hook", &["*"]),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["data"]["userId"], "9007199254740993");
    // Its neighbour (the same f64) is another user and sees nothing.
    let neighbour = token_over_text(&format!(r#"{{"userId": 9007199254740992, "exp": {exp}}}"#));
    let id = created.body["data"]["id"].as_str().expect("id");
    let read = get(&app, &format!("/api/v1/webhooks/{id}/secret"), &neighbour).await;
    assert_eq!(read.status, 404, "{}", read.body);
}

#[tokio::test]
async fn the_platforms_user_id_claim_wins_over_sub() {
    let app = spawn_app().await;
    let token = service_token(&json!({
        "sub": "other-issuers-subject",
        "userId": "platform-user",
        "roles": ["user"],
        "exp": now_secs() + 600,
    }));
    let created = post(
        &app,
        "/api/v1/webhooks",
        &token,
        webhook_body("http://127.0.0.1:9/hook", &["*"]),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["data"]["userId"], "platform-user");
}

#[tokio::test]
async fn only_admin_in_the_roles_array_may_publish() {
    let app = spawn_app().await;
    let event = json!({"eventType": "user.created", "userId": "u-1", "data": {}});
    let publish = |roles: serde_json::Value| {
        let token = service_token(&json!({
            "userId": "would-be-admin",
            "roles": roles,
            "exp": now_secs() + 600,
        }));
        let event = event.clone();
        let app = &app;
        async move {
            call(
                app,
                Method::POST,
                "/api/v1/events",
                Some(&token),
                Some(event),
            )
            .await
        }
    };
    let refused: Answer = publish(json!("admin")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let refused = publish(json!("user,admin")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let accepted = publish(json!(["user", "admin"])).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
}

/// Failure windows are a minute, aligned to the epoch: start a counted
/// sequence well inside one.
async fn away_from_a_minute_edge() {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let left = 60_000 - now_ms % 60_000;
    if left < 10_000 {
        tokio::time::sleep(std::time::Duration::from_millis(left + 50)).await;
    }
}

#[tokio::test]
async fn an_address_that_keeps_failing_to_authenticate_is_refused_even_a_right_guess() {
    let app = spawn_app_with(&[("AUTH_FAILURES_PER_MINUTE", "5")]).await;
    away_from_a_minute_edge().await;
    let event = json!({"eventType": "user.created", "userId": "u-1", "data": {}});
    for i in 0..5 {
        let guess = call(
            &app,
            Method::POST,
            "/internal/webhooks/trigger",
            Some(&format!("wrong-secret-{i}")),
            Some(event.clone()),
        )
        .await;
        assert_eq!(guess.status, 401, "{}", guess.body);
    }
    // The right secret now: refused like any other guess, until the window ends.
    let right = call(
        &app,
        Method::POST,
        "/internal/webhooks/trigger",
        Some(INTERNAL_SECRET),
        Some(event.clone()),
    )
    .await;
    assert_eq!(right.status, 429, "{}", right.body);
    assert_eq!(right.error_code(), "TOO_MANY_AUTH_FAILURES");
    let retry_after: u64 = right
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Every route that checks credentials, for a valid token too.
    let user = get(&app, "/api/v1/webhooks", &platform_token("u-1", false)).await;
    assert_eq!(user.status, 429, "{}", user.body);
    let producer = call(
        &app,
        Method::POST,
        "/api/v1/events",
        Some(&platform_token("admin-1", true)),
        Some(event),
    )
    .await;
    assert_eq!(producer.status, 429, "{}", producer.body);
    // Routes without credentials are not affected.
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test]
async fn tokens_the_platform_issued_do_not_count_as_guesses() {
    let app = spawn_app_with(&[("AUTH_FAILURES_PER_MINUTE", "2")]).await;
    away_from_a_minute_edge().await;
    // An expired token (its signature verifies) and no credentials at all,
    // many times: a client that needs to log in again, not a guess.
    let expired = service_token(&json!({"userId": "u-1", "exp": now_secs() - 3600}));
    for _ in 0..5 {
        assert_eq!(get(&app, "/api/v1/webhooks", &expired).await.status, 401);
        let none = call(&app, Method::GET, "/api/v1/webhooks", None, None).await;
        assert_eq!(none.status, 401);
    }
    let fine = get(&app, "/api/v1/webhooks", &platform_token("u-1", false)).await;
    assert_eq!(fine.status, 200, "{}", fine.body);
    // A forged one counts.
    let forged = crate::api_support::hs256(
        &json!({"userId": "u-1", "exp": now_secs() + 600}),
        b"not-the-platforms-key-0123456789",
    );
    for _ in 0..2 {
        assert_eq!(get(&app, "/api/v1/webhooks", &forged).await.status, 401);
    }
    let refused = get(&app, "/api/v1/webhooks", &platform_token("u-1", false)).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
}
