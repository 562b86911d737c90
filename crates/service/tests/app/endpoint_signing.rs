//! `"signing": "ed25519"`: `webhook-signature` carries Standard Webhooks
//! `v1a` signatures that receivers verify with the published public key
//! only; rotation keeps the previous key signing during the grace period;
//! `X-Webhook-Signature` stays the guide's HMAC.

use std::time::Duration;

use crate::common::spawn_app;
use serde_json::json;
use webhook_testkit::{Behavior, ReceivedRequest, Receiver};
use webhook_verify::StandardHeaders;
use webhook_verify::asymmetric::verify_v1a;

fn verify_with(request: &ReceivedRequest, public_key: &str) -> Result<(), String> {
    let headers = StandardHeaders {
        id: request.header("webhook-id"),
        timestamp: request.header("webhook-timestamp"),
        signature: request.header("webhook-signature"),
    };
    let now = request.received_unix_ms / 1000;
    verify_v1a(public_key, headers, &request.body, now, 300).map_err(|e| e.to_string())
}

#[tokio::test]
async fn ed25519_webhooks_are_verified_with_the_public_key_through_a_rotation() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("user-k", false);
    let secret = "hmac-secret-for-the-guide-header";
    let (status, created) = app
        .post(
            "/api/v1/webhooks",
            &token,
            json!({"url": receiver.url("/hook"), "eventTypes": ["*"], "secret": secret,
                   "signing": "ed25519"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let webhook = created["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(created["data"]["signing"], "ed25519");
    let first_key = created["data"]["publicKey"].as_str().unwrap().to_string();
    assert!(first_key.starts_with("whpk_"), "{created}");
    assert!(!created.to_string().contains("whsk_"), "{created}");

    app.trigger("user.created", "user-k", json!({"n": 1})).await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await.unwrap();
    let signature = got[0].header("webhook-signature").unwrap();
    assert!(
        signature.starts_with("v1a,") && !signature.contains("v1,"),
        "{signature}"
    );
    verify_with(&got[0], &first_key).unwrap();
    got[0].verify_legacy_signature(secret).unwrap();

    // Rotation: a new key, and the old one keeps signing for the grace period.
    let (status, rotated) = app
        .post(
            &format!("/api/v1/webhooks/{webhook}/rotate-secret"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let second_key = rotated["data"]["publicKey"].as_str().unwrap().to_string();
    assert_ne!(second_key, first_key);
    assert_eq!(rotated["data"]["previousPublicKey"], first_key.as_str());
    app.trigger("user.created", "user-k", json!({"n": 2})).await;
    let got = receiver.wait_for(2, Duration::from_secs(10)).await.unwrap();
    verify_with(&got[1], &second_key).unwrap();
    verify_with(&got[1], &first_key).unwrap();

    // Back to HMAC: v1 signatures again, no public key.
    let (status, body, _) = app
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1/webhooks/{webhook}"),
            Some(&token),
            Some(json!({"signing": "hmac"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["signing"], "hmac");
    assert!(body["data"]["publicKey"].is_null(), "{body}");
    app.trigger("user.created", "user-k", json!({"n": 3})).await;
    let got = receiver.wait_for(3, Duration::from_secs(10)).await.unwrap();
    assert!(
        got[2]
            .header("webhook-signature")
            .unwrap()
            .starts_with("v1,")
    );
    let (_, listed) = app.get("/api/v1/webhooks", &token).await;
    assert!(!listed.to_string().contains("whsk_"));

    let (status, body) = app
        .post(
            "/api/v1/webhooks",
            &token,
            json!({"url": receiver.url("/hook"), "eventTypes": ["*"], "signing": "rsa"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}
