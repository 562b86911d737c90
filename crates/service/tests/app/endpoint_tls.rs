//! Endpoints behind a private certificate authority: extra trust roots from
//! `WEBHOOK_CA_FILE`, and a client certificate per webhook for endpoints
//! that demand one (mutual TLS).

use std::time::Duration;

use crate::common::{TestApp, spawn_app, spawn_app_with};
use serde_json::{Value, json};
use webhook_testkit::{TestCa, TlsReceiver};

/// The newest delivery's last attempt, once the webhook has a delivery
/// whose attempts satisfy `done`.
async fn last_attempt(app: &TestApp, token: &str, webhook: &str) -> Value {
    let logs = app
        .wait_for_logs(token, webhook, Duration::from_secs(15), |items| {
            items
                .first()
                .is_some_and(|d| d["attempts"].as_u64().unwrap_or(0) >= 1)
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
        .and_then(|a| a.last().cloned())
        .unwrap_or(Value::Null)
}

async fn create(app: &TestApp, token: &str, body: Value) -> String {
    let (status, created) = app.post("/api/v1/webhooks", token, body).await;
    assert_eq!(status, 201, "{created}");
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
async fn a_private_ca_is_trusted_only_when_given_in_webhook_ca_file() {
    let ca = TestCa::generate().unwrap();
    let receiver = TlsReceiver::start(&ca, false).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();

    // The bundled roots alone do not know the test's CA.
    let app = spawn_app().await;
    let token = app.token("user-t", false);
    let webhook = create(
        &app,
        &token,
        json!({"url": receiver.url("/hook"), "eventTypes": ["*"]}),
    )
    .await;
    let sent = test_send(&app, &token, &webhook).await;
    assert_eq!(sent["success"], false, "{sent}");
    let attempt = last_attempt(&app, &token, &webhook).await;
    assert_eq!(attempt["errorKind"], "tls", "{attempt}");
    assert!(receiver.requests().is_empty());
    drop(app);

    let app = spawn_app_with(&[("WEBHOOK_CA_FILE", ca_file.to_str().unwrap())]).await;
    let token = app.token("user-t", false);
    let webhook = create(
        &app,
        &token,
        json!({"url": receiver.url("/hook"), "eventTypes": ["*"]}),
    )
    .await;
    let sent = test_send(&app, &token, &webhook).await;
    assert_eq!(sent["success"], true, "{sent}");
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test]
async fn a_client_certificate_is_presented_to_an_endpoint_that_demands_one() {
    let ca = TestCa::generate().unwrap();
    let receiver = TlsReceiver::start(&ca, true).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let app = spawn_app_with(&[
        ("WEBHOOK_CA_FILE", ca_file.to_str().unwrap()),
        ("WEBHOOK_TLS_ROOTS", "both"),
    ])
    .await;
    let token = app.token("user-m", false);
    let webhook = create(
        &app,
        &token,
        json!({"url": receiver.url("/hook"), "eventTypes": ["*"]}),
    )
    .await;

    // Without a certificate the endpoint refuses the handshake.
    let sent = test_send(&app, &token, &webhook).await;
    assert_eq!(sent["success"], false, "{sent}");
    let attempt = last_attempt(&app, &token, &webhook).await;
    assert_eq!(attempt["errorKind"], "tls", "{attempt}");
    assert!(receiver.requests().is_empty());

    // With one it is let in.
    let (status, body) = app
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1/webhooks/{webhook}"),
            Some(&token),
            Some(
                json!({"auth": {"type": "mtls", "certificate": ca.client.certificate,
                                 "privateKey": ca.client.private_key}}),
            ),
        )
        .await
        .into_parts();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["auth"]["type"], "mtls", "{body}");
    assert_eq!(body["data"]["auth"]["privateKey"], "********", "{body}");
    let sent = test_send(&app, &token, &webhook).await;
    assert_eq!(sent["success"], true, "{sent}");
    let got = receiver.requests();
    assert_eq!(got.len(), 1);
    assert!(got[0].client_certificate);

    // Events go the same way.
    app.trigger("user.created", "user-m", json!({"n": 1})).await;
    for _ in 0..300 {
        if receiver.requests().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(receiver.requests().len() >= 2, "the event was delivered");

    // The key is nowhere: not in reads, the logs or the data directory.
    let key_body: String = ca
        .client
        .private_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let (_, one) = app
        .get(&format!("/api/v1/webhooks/{webhook}"), &token)
        .await;
    assert!(!one.to_string().contains(&key_body[..40]), "{one}");
    assert!(!app.logs().contains(&key_body[..40]));
    let mut stack = vec![app.data_dir.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                let needle = &key_body.as_bytes()[..40];
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "the private key is in {}",
                    path.display()
                );
            }
        }
    }
}

#[tokio::test]
async fn an_unusable_client_certificate_is_refused() {
    let ca = TestCa::generate().unwrap();
    let app = spawn_app().await;
    let token = app.token("user-x", false);
    for auth in [
        json!({"type": "mtls", "certificate": "not pem", "privateKey": ca.client.private_key}),
        json!({"type": "mtls", "certificate": ca.client.certificate, "privateKey": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}),
        json!({"type": "mtls", "certificate": ca.client.certificate}),
    ] {
        let (status, body) = app
            .post(
                "/api/v1/webhooks",
                &token,
                json!({"url": "https://localhost:9/hook", "eventTypes": ["*"], "auth": auth}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(body.to_string().contains("\"auth\""), "{body}");
        assert!(!body.to_string().contains("BEGIN PRIVATE KEY"), "{body}");
    }
}

trait IntoParts {
    fn into_parts(self) -> (u16, Value);
}

impl IntoParts for (u16, Value, reqwest::header::HeaderMap) {
    fn into_parts(self) -> (u16, Value) {
        (self.0, self.1)
    }
}
