//! Endpoints that demand an OAuth2 bearer token: the service obtains it by
//! the client-credentials grant from a local token endpoint that counts
//! its fetches, caches it, shares it between concurrent attempts, fetches
//! once more on a 401, and logs a failed token request as `auth`.

use std::time::Duration;

use crate::common::{TestApp, spawn_app};
use serde_json::{Value, json};
use webhook_testkit::{Behavior, Receiver};

const CLIENT_SECRET: &str = "client-secret-93e1-never-shown";

fn token_body(token: &str, expires_in: u64) -> Behavior {
    Behavior::Body {
        status: 200,
        body: format!(
            r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{expires_in}}}"#
        )
        .into_bytes(),
    }
}

fn needs(token: &str) -> Behavior {
    Behavior::RequireHeader {
        name: "authorization".into(),
        value: format!("Bearer {token}"),
    }
}

async fn create(app: &TestApp, token: &str, url: &str, token_url: &str) -> String {
    let (status, created) = app
        .post(
            "/api/v1/webhooks",
            token,
            json!({"url": url, "eventTypes": ["*"],
                   "auth": {"type": "oauth2", "tokenUrl": token_url, "clientId": "svc-client",
                            "clientSecret": CLIENT_SECRET, "scope": "webhooks:write"}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["data"]["auth"]["clientSecret"], "********",
        "{created}"
    );
    assert_eq!(
        created["data"]["auth"]["clientId"], "svc-client",
        "{created}"
    );
    created["data"]["id"].as_str().unwrap().to_string()
}

async fn test_send(app: &TestApp, token: &str, webhook: &str) -> Value {
    let (status, body) = app
        .post(
            &format!("/api/v1/webhooks/{webhook}/test"),
            token,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

#[tokio::test]
async fn one_token_is_fetched_and_shared_by_concurrent_deliveries() {
    let app = spawn_app().await;
    let issuer = Receiver::start(token_body("tok-A", 3600)).await.unwrap();
    let endpoint = Receiver::start(needs("tok-A")).await.unwrap();
    let token = app.token("user-o", false);
    let webhook = create(&app, &token, &endpoint.url("/hook"), &issuer.url("/token")).await;

    for n in 0..10 {
        let (status, body) = app.trigger("user.created", "user-o", json!({"n": n})).await;
        assert_eq!(status, 202, "{body}");
    }
    app.wait_for_logs(&token, &webhook, Duration::from_secs(20), |items| {
        items.len() == 10 && items.iter().all(|d| d["status"] == "delivered")
    })
    .await;
    assert_eq!(issuer.count(), 1, "one fetch served every delivery");

    // The grant as RFC 6749 §4.4 has it, credentials in Basic.
    let request = &issuer.received()[0];
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let body = String::from_utf8_lossy(&request.body).to_string();
    assert!(body.contains("grant_type=client_credentials"), "{body}");
    assert!(body.contains("scope=webhooks%3Awrite"), "{body}");
    let basic = request.header("authorization").unwrap_or_default();
    assert!(basic.starts_with("Basic "), "{basic}");
    // The endpoint never sees the client credentials, only the token.
    for got in endpoint.received() {
        assert_eq!(got.header("authorization"), Some("Bearer tok-A"));
    }
}

#[tokio::test]
async fn a_refused_token_is_fetched_again_once_and_an_expired_one_is_replaced() {
    let app = spawn_app().await;
    let issuer = Receiver::start(Behavior::Sequence(vec![
        token_body("tok-A", 3600),
        token_body("tok-B", 1),
        token_body("tok-C", 3600),
    ]))
    .await
    .unwrap();
    let endpoint = Receiver::start(needs("tok-B")).await.unwrap();
    let token = app.token("user-p", false);
    let webhook = create(&app, &token, &endpoint.url("/hook"), &issuer.url("/token")).await;

    // tok-A is refused with a 401: one more fetch, the same attempt succeeds.
    let sent = test_send(&app, &token, &webhook).await;
    assert_eq!(sent["success"], true, "{sent}");
    assert_eq!(issuer.count(), 2);
    assert_eq!(endpoint.count(), 2);

    // tok-B lived one second: after it, a new one is fetched unasked.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    endpoint.set_behavior(needs("tok-C"));
    let sent = test_send(&app, &token, &webhook).await;
    assert_eq!(sent["success"], true, "{sent}");
    assert_eq!(issuer.count(), 3);
    assert_eq!(endpoint.count(), 3, "the expired token was never sent");

    // A token the endpoint keeps refusing: one refetch, then a 401 failure.
    endpoint.set_behavior(Behavior::Status(401));
    let sent = test_send(&app, &token, &webhook).await;
    assert_eq!(sent["success"], false, "{sent}");
    assert_eq!(
        issuer.count(),
        4,
        "one refetch per attempt, no more; endpoint saw {}",
        endpoint.count()
    );
}

#[tokio::test]
async fn a_failed_token_request_is_logged_as_auth_and_nothing_is_sent() {
    let app = spawn_app().await;
    let issuer = Receiver::start(Behavior::Status(401)).await.unwrap();
    let endpoint = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("user-f", false);
    let webhook = create(&app, &token, &endpoint.url("/hook"), &issuer.url("/token")).await;

    let sent = test_send(&app, &token, &webhook).await;
    assert_eq!(sent["success"], false, "{sent}");
    app.trigger("user.created", "user-f", json!({})).await;
    let logs = app
        .wait_for_logs(&token, &webhook, Duration::from_secs(15), |items| {
            items.len() == 2 && items.iter().all(|d| d["attempts"].as_u64() >= Some(1))
        })
        .await;
    for delivery in &logs {
        assert_eq!(delivery["lastErrorKind"], "auth", "{delivery}");
        assert_ne!(delivery["status"], "delivered", "{delivery}");
    }
    assert_eq!(endpoint.count(), 0, "nothing goes out without a token");

    // The client secret is in no read, log or file.
    let (_, one) = app
        .get(&format!("/api/v1/webhooks/{webhook}"), &token)
        .await;
    assert!(!one.to_string().contains(CLIENT_SECRET));
    assert!(!Value::Array(logs).to_string().contains(CLIENT_SECRET));
    assert!(!app.logs().contains(CLIENT_SECRET));
    let mut stack = vec![app.data_dir.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                let needle = CLIENT_SECRET.as_bytes();
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "the client secret is in {}",
                    path.display()
                );
            }
        }
    }
}

#[tokio::test]
async fn a_token_url_the_address_policy_refuses_is_refused() {
    let app = spawn_app().await;
    let token = app.token("user-s", false);
    let (status, body) = app
        .post(
            "/api/v1/webhooks",
            &token,
            json!({"url": "http://127.0.0.1:9/hook", "eventTypes": ["*"],
                   "auth": {"type": "oauth2", "tokenUrl": "http://169.254.169.254/token",
                            "clientId": "c", "clientSecret": "s"}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("tokenUrl"), "{body}");
}
