//! Reaching endpoints that demand more than a signature: custom headers and
//! endpoint authentication (Basic, bearer) are sent on every attempt and
//! test send, refused when they would replace the service's own headers,
//! and never shown, logged or stored in clear.

use std::path::Path;
use std::time::Duration;

use crate::common::{TestApp, spawn_app};
use serde_json::{Value, json};
use webhook_testkit::{Behavior, Receiver};

const API_KEY: &str = "key-7f3a9c-never-shown";
const PASSWORD: &str = "pw-5e1d0b-never-shown";
const TOKEN: &str = "tok-2c8f4e-never-shown";

/// Every file under `dir`, as bytes.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
    out
}

/// Fails if `secret` appears in the data directory (database, WAL, logs).
fn assert_nowhere_on_disk(app: &TestApp, secret: &str) {
    for (path, bytes) in files_under(&app.data_dir) {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} found in {path}"
        );
    }
    assert!(!app.logs().contains(secret), "{secret} found in the logs");
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Value,
) -> (u16, Value) {
    let (status, value, _) = app.request(method, path, Some(token), Some(body)).await;
    (status, value)
}

/// The attempts of the webhook's newest delivery, once it has `n` of them.
async fn attempts_of_latest(app: &TestApp, token: &str, webhook: &str, n: usize) -> Vec<Value> {
    let logs = app
        .wait_for_logs(token, webhook, Duration::from_secs(15), |items| {
            items
                .first()
                .is_some_and(|d| d["attempts"].as_u64().unwrap_or(0) >= n as u64)
        })
        .await;
    let delivery = logs[0]["id"].as_str().unwrap().to_string();
    let (status, body) = app
        .get(
            &format!("/api/v1/webhooks/{webhook}/deliveries/{delivery}"),
            token,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["attemptLog"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn custom_headers_are_sent_on_every_attempt_and_never_shown() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::RequireHeader {
        name: "x-api-key".into(),
        value: API_KEY.into(),
    })
    .await
    .unwrap();
    let token = app.token("user-h", false);
    let (status, created) = app
        .post(
            "/api/v1/webhooks",
            &token,
            json!({"url": receiver.url("/hook"), "eventTypes": ["user.created"],
                   "headers": {"X-Api-Key": API_KEY, "X-Tenant": "acme"}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let webhook = created["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        created["data"]["headers"],
        json!({"X-Api-Key": "********", "X-Tenant": "********"})
    );

    let (status, body) = app.trigger("user.created", "user-h", json!({"n": 1})).await;
    assert_eq!(status, 202, "{body}");
    let got = receiver.wait_for(1, Duration::from_secs(10)).await.unwrap();
    assert_eq!(got[0].header("x-api-key"), Some(API_KEY));
    assert_eq!(got[0].header("x-tenant"), Some("acme"));
    let attempts = attempts_of_latest(&app, &token, &webhook, 1).await;
    assert_eq!(attempts[0]["statusCode"], 200, "{attempts:?}");
    let logged = &attempts[0]["requestHeaders"];
    assert_eq!(logged["x-api-key"], "********", "{logged}");
    assert!(logged["x-webhook-signature"].is_string(), "{logged}");

    // A test send carries them too.
    let (status, body) = app
        .post(
            &format!("/api/v1/webhooks/{webhook}/test"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["success"], true, "{body}");
    let got = receiver.wait_for(2, Duration::from_secs(10)).await.unwrap();
    assert_eq!(got[1].header("x-api-key"), Some(API_KEY));

    // Retries carry them: a receiver that first fails, then checks again.
    receiver.set_behavior(Behavior::Sequence(vec![
        Behavior::Status(500),
        Behavior::RequireHeader {
            name: "x-api-key".into(),
            value: API_KEY.into(),
        },
    ]));
    app.trigger("user.created", "user-h", json!({"n": 2})).await;
    let attempts = attempts_of_latest(&app, &token, &webhook, 2).await;
    assert_eq!(attempts[1]["statusCode"], 200, "{attempts:?}");

    // Reads mask them: one webhook, the list.
    let (_, one) = app
        .get(&format!("/api/v1/webhooks/{webhook}"), &token)
        .await;
    assert_eq!(one["data"]["headers"]["X-Api-Key"], "********", "{one}");
    let (_, list) = app.get("/api/v1/webhooks", &token).await;
    assert!(!list.to_string().contains(API_KEY), "{list}");
    assert!(!one.to_string().contains(API_KEY), "{one}");

    // Replacing them with null removes them.
    let (status, body) = send(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/webhooks/{webhook}"),
        &token,
        json!({"headers": null}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["headers"], json!({}));
    assert_nowhere_on_disk(&app, API_KEY);
}

#[tokio::test]
async fn headers_the_service_writes_itself_are_refused() {
    let app = spawn_app().await;
    let token = app.token("user-r", false);
    for (headers, needle) in [
        (json!({"X-Webhook-Signature": "x"}), "X-Webhook-Signature"),
        (json!({"webhook-id": "x"}), "webhook-id"),
        (json!({"Content-Type": "text/plain"}), "Content-Type"),
        (json!({"Host": "evil.example"}), "Host"),
        (json!({"User-Agent": "x"}), "User-Agent"),
        (json!({"Transfer-Encoding": "chunked"}), "Transfer-Encoding"),
        (json!({"Connection": "close"}), "Connection"),
        (json!({"Content-Length": "1"}), "Content-Length"),
        (json!({"X Bad": "x"}), "X Bad"),
        (json!({"X-Ok": "a\r\nX-Evil: 1"}), "X-Ok"),
        (json!({"X-Ok": 5}), "X-Ok"),
        (json!({"X-Api-Key": "********"}), "masked value"),
        (json!(["X-Ok"]), "object"),
    ] {
        let (status, body) = app
            .post(
                "/api/v1/webhooks",
                &token,
                json!({"url": "http://127.0.0.1:9/hook", "eventTypes": ["*"], "headers": headers}),
            )
            .await;
        assert_eq!(status, 400, "{headers}: {body}");
        let text = body.to_string();
        assert!(
            text.contains("\"headers\"") && text.contains(needle),
            "{body}"
        );
    }
    let many: serde_json::Map<String, Value> =
        (0..33).map(|i| (format!("X-{i}"), json!("v"))).collect();
    let (status, body) = app
        .post(
            "/api/v1/webhooks",
            &token,
            json!({"url": "http://127.0.0.1:9/hook", "eventTypes": ["*"], "headers": many}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    for auth in [
        json!({"type": "basic", "username": "a:b", "password": "p"}),
        json!({"type": "basic", "username": "a"}),
        json!({"type": "bearer", "token": "two words"}),
        json!({"type": "digest"}),
        json!({"type": "bearer", "token": "t", "extra": 1}),
        json!({"type": "bearer", "token": "********"}),
        json!("bearer t"),
    ] {
        let (status, body) = app
            .post(
                "/api/v1/webhooks",
                &token,
                json!({"url": "http://127.0.0.1:9/hook", "eventTypes": ["*"], "auth": auth}),
            )
            .await;
        assert_eq!(status, 400, "{auth}: {body}");
        assert!(body.to_string().contains("\"auth\""), "{body}");
    }
    // `Authorization` is one or the other.
    let (status, body) = app
        .post(
            "/api/v1/webhooks",
            &token,
            json!({"url": "http://127.0.0.1:9/hook", "eventTypes": ["*"],
                   "headers": {"Authorization": "x"}, "auth": {"type": "bearer", "token": "t"}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn basic_and_bearer_auth_reach_the_endpoint_and_stay_masked() {
    let app = spawn_app().await;
    let basic = format!(
        "Basic {}",
        base64_encode(format!("alice:{PASSWORD}").as_bytes())
    );
    let receiver = Receiver::start(Behavior::RequireHeader {
        name: "authorization".into(),
        value: basic.clone(),
    })
    .await
    .unwrap();
    let token = app.token("user-a", false);
    let (status, created) = app
        .post(
            "/api/v1/webhooks",
            &token,
            json!({"url": receiver.url("/hook"), "eventTypes": ["user.created"],
                   "auth": {"type": "basic", "username": "alice", "password": PASSWORD}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let webhook = created["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        created["data"]["auth"],
        json!({"type": "basic", "username": "alice", "password": "********"})
    );
    app.trigger("user.created", "user-a", json!({"n": 1})).await;
    let attempts = attempts_of_latest(&app, &token, &webhook, 1).await;
    assert_eq!(attempts[0]["statusCode"], 200, "{attempts:?}");
    assert_eq!(
        attempts[0]["requestHeaders"]["authorization"],
        "Basic ********"
    );

    // A wrong bearer token: the endpoint's 401 is logged as what it is.
    let (status, body) = send(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/webhooks/{webhook}"),
        &token,
        json!({"auth": {"type": "bearer", "token": "forged-token"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["auth"],
        json!({"type": "bearer", "token": "********"})
    );
    receiver.set_behavior(Behavior::RequireHeader {
        name: "authorization".into(),
        value: format!("Bearer {TOKEN}"),
    });
    let (_, sent) = app
        .post(
            &format!("/api/v1/webhooks/{webhook}/test"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(sent["data"]["success"], false, "{sent}");
    assert_eq!(sent["data"]["statusCode"], 401, "{sent}");
    let attempts = attempts_of_latest(&app, &token, &webhook, 1).await;
    assert_eq!(attempts[0]["errorKind"], "http_status", "{attempts:?}");
    assert_eq!(attempts[0]["statusCode"], 401, "{attempts:?}");

    // The right token; headers left as they are keep the auth.
    let (status, body) = send(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/webhooks/{webhook}"),
        &token,
        json!({"auth": {"type": "bearer", "token": TOKEN}, "description": "gateway"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/webhooks/{webhook}"),
        &token,
        json!({"headers": {"X-Extra": "1"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["auth"]["type"], "bearer", "{body}");
    let (_, sent) = app
        .post(
            &format!("/api/v1/webhooks/{webhook}/test"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(sent["data"]["success"], true, "{sent}");
    let last = receiver.received().pop().unwrap();
    assert_eq!(last.header("x-extra"), Some("1"));

    // Nothing secret in any read, the logs or the data directory.
    let (_, one) = app
        .get(&format!("/api/v1/webhooks/{webhook}"), &token)
        .await;
    let (_, logs) = app
        .get(
            &format!("/api/v1/webhooks/{webhook}/logs?limit=100"),
            &token,
        )
        .await;
    for text in [one.to_string(), logs.to_string()] {
        for secret in [PASSWORD, TOKEN, &basic] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    for secret in [PASSWORD, TOKEN] {
        assert_nowhere_on_disk(&app, secret);
    }
}

#[tokio::test]
async fn the_openapi_document_describes_headers_and_auth() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    let doc: Value = response.json().await.unwrap();
    let body = &doc["components"]["schemas"]["WebhookBody"];
    assert!(body["properties"]["headers"].is_object(), "{body}");
    assert!(body["properties"]["auth"].is_object(), "{body}");
    let view = &doc["components"]["schemas"]["WebhookView"];
    assert!(view["properties"]["headers"].is_object(), "{view}");
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
