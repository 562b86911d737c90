//! How a user token's claims are read: which claim names the user, how a
//! numeric id is taken, what makes an admin.

mod api_support;
mod common;

use api_support::{Answer, call, get, now_secs, post, service_token, webhook_body};
use base64::Engine as _;
use common::{JWT_SECRET, spawn_app};
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
