//! Webhook secrets: shown in full only on create, rotation and the secret
//! route; rotated with a grace period during which both secrets sign; never
//! stored or logged in plaintext.

use std::time::Duration;

use crate::api_support::{get, patch, post, put};
use crate::common::{ENCRYPTION_KEY, INTERNAL_SECRET, JWT_SECRET, spawn_app, spawn_app_with};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use webhook_testkit::{Behavior, ReceivedRequest, Receiver};
use webhook_verify::{StandardHeaders, verify_standard};

/// Whether `secret` verifies the delivery's Standard Webhooks signature.
fn standard_ok(req: &ReceivedRequest, secret: &str) -> bool {
    let headers = StandardHeaders {
        id: req.header("webhook-id"),
        timestamp: req.header("webhook-timestamp"),
        signature: req.header("webhook-signature"),
    };
    let now = req.received_unix_ms / 1000;
    verify_standard(secret, headers, &req.body, now, 300).is_ok()
}

fn signature_entries(req: &ReceivedRequest) -> Vec<String> {
    req.header("webhook-signature")
        .expect("webhook-signature header")
        .split(' ')
        .map(String::from)
        .collect()
}

fn assert_masked(view: &Value, secret: &str) {
    let shown = view["secret"].as_str().expect("secret field");
    assert_eq!(view["secretMasked"], true, "{view}");
    assert_ne!(shown, secret);
    assert!(!shown.contains(secret), "{shown}");
    assert!(shown.contains('…'), "a preview, not the secret: {shown}");
    assert!(
        shown.chars().count() <= secret.chars().count() / 3 + 1,
        "{shown}"
    );
}

#[tokio::test]
async fn the_full_secret_is_shown_only_on_create_rotate_and_the_secret_route() {
    let app = spawn_app().await;
    let token = app.token("masking-user", false);
    let admin = app.token("masking-admin", true);
    let secret = "masking_secret_0123456789abcdef";
    let created = app
        .create_webhook(&token, "http://127.0.0.1:9/m", &["*"], Some(secret))
        .await;
    assert_eq!(created["secret"], secret);
    assert_eq!(created["secretMasked"], false);
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/webhooks/{id}");

    let list = get(&app, "/api/v1/webhooks", &token).await;
    assert_masked(&list.body["data"][0], secret);
    let admin_list = get(&app, "/api/v1/webhooks", &admin).await;
    assert_masked(&admin_list.body["data"][0], secret);
    assert_masked(&get(&app, &path, &token).await.body["data"], secret);
    assert_masked(&get(&app, &path, &admin).await.body["data"], secret);
    let updated = put(&app, &path, &token, json!({"description": "d"})).await;
    assert_masked(&updated.body["data"], secret);
    let patched = patch(&app, &path, &token, json!({"description": "e"})).await;
    assert_masked(&patched.body["data"], secret);
    let toggled = post(&app, &format!("{path}/toggle"), &token, json!({})).await;
    assert_masked(&toggled.body["data"], secret);
    // None of these answers carries the secret anywhere.
    for answer in [&list, &admin_list, &updated, &patched, &toggled] {
        assert!(!answer.body.to_string().contains(secret), "{}", answer.body);
    }

    let revealed = get(&app, &format!("{path}/secret"), &token).await;
    assert_eq!(revealed.status, 200, "{}", revealed.body);
    assert_eq!(revealed.body["data"]["secret"], secret);
    assert_eq!(revealed.body["data"]["id"], id.as_str());

    // Setting a new secret by PATCH: the answer masks it, the secret route shows it.
    let replacement = "replacement_secret_0123456789";
    let changed = patch(&app, &path, &token, json!({"secret": replacement})).await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_masked(&changed.body["data"], replacement);
    let revealed = get(&app, &format!("{path}/secret"), &token).await;
    assert_eq!(revealed.body["data"]["secret"], replacement);

    // Rotation answers with the new secret in full.
    let rotated = post(&app, &format!("{path}/rotate-secret"), &token, json!({})).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert_eq!(rotated.body["data"]["secretMasked"], false);
    let new_secret = rotated.body["data"]["secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_"), "{new_secret}");
    assert_masked(&get(&app, &path, &token).await.body["data"], new_secret);
}

#[tokio::test]
async fn during_a_rotation_deliveries_are_signed_with_both_secrets() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("rotating-user", false);
    let first = "rotation_first_secret_0001";
    let hook = app
        .create_webhook(&token, &receiver.url("/r"), &["credit.*"], Some(first))
        .await;
    let id = hook["id"].as_str().unwrap().to_string();
    assert_eq!(hook["previousSecretExpiresAt"], Value::Null);

    let rotated = post(
        &app,
        &format!("/api/v1/webhooks/{id}/rotate-secret"),
        &token,
        json!({}),
    )
    .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let second = rotated.body["data"]["secret"].as_str().unwrap().to_string();
    assert!(second.starts_with("whsec_"), "{second}");
    assert_ne!(second, first);
    // The grace period is 24 hours by default.
    let until = rotated.body["data"]["previousSecretExpiresAt"]
        .as_str()
        .expect("previousSecretExpiresAt during a rotation");
    let until = OffsetDateTime::parse(until, &Rfc3339).unwrap();
    let left = until - OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::hours(23) && left <= time::Duration::hours(24),
        "{left}"
    );
    let shown = get(&app, &format!("/api/v1/webhooks/{id}/secret"), &token).await;
    assert_eq!(shown.body["data"]["secret"], second.as_str());

    // A delivery during the grace period carries two signatures; each secret verifies it.
    let (status, body) = app
        .trigger("credit.low", "rotating-user", json!({"balance": 3}))
        .await;
    assert_eq!(status, 202, "{body}");
    let got = receiver.wait_for(1, Duration::from_secs(10)).await.unwrap();
    let req = &got[0];
    let entries = signature_entries(req);
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries.iter().all(|e| e.starts_with("v1,")), "{entries:?}");
    assert!(standard_ok(req, &second), "the new secret verifies");
    assert!(
        standard_ok(req, first),
        "the previous secret still verifies"
    );
    assert!(!standard_ok(req, "some_other_secret_entirely"));
    // The guide's header is signed with the current secret.
    req.verify_legacy_signature(&second).unwrap();

    // The alias rotates again: the newest two secrets sign, the oldest is dropped.
    let regenerated = post(
        &app,
        &format!("/api/v1/webhooks/{id}/regenerate-secret"),
        &token,
        json!({}),
    )
    .await;
    assert_eq!(regenerated.status, 200, "{}", regenerated.body);
    let third = regenerated.body["data"]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(third.starts_with("whsec_"));
    assert_ne!(third, second);
    let (status, _) = app
        .trigger("credit.low", "rotating-user", json!({"balance": 2}))
        .await;
    assert_eq!(status, 202);
    let got = receiver.wait_for(2, Duration::from_secs(10)).await.unwrap();
    let req = &got[1];
    assert_eq!(signature_entries(req).len(), 2);
    assert!(standard_ok(req, &third));
    assert!(standard_ok(req, &second));
    assert!(!standard_ok(req, first));
    req.verify_signatures(&third).unwrap();

    // A test send during the grace period is signed the same way.
    let tested = post(
        &app,
        &format!("/api/v1/webhooks/{id}/test"),
        &token,
        json!({"eventType": "credit.low", "data": {"balance": 1}}),
    )
    .await;
    assert_eq!(tested.body["data"]["success"], true, "{}", tested.body);
    let got = receiver.wait_for(3, Duration::from_secs(10)).await.unwrap();
    assert!(standard_ok(&got[2], &third) && standard_ok(&got[2], &second));
}

#[tokio::test]
async fn after_the_grace_period_only_the_new_secret_signs() {
    let app = spawn_app_with(&[("WEBHOOK_SECRET_GRACE", "1s")]).await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("grace-user", false);
    let old = "grace_old_secret_000000001";
    let hook = app
        .create_webhook(&token, &receiver.url("/g"), &["*"], Some(old))
        .await;
    let id = hook["id"].as_str().unwrap();
    let rotated = post(
        &app,
        &format!("/api/v1/webhooks/{id}/rotate-secret"),
        &token,
        json!({}),
    )
    .await;
    let new = rotated.body["data"]["secret"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let view = get(&app, &format!("/api/v1/webhooks/{id}"), &token).await;
    assert_eq!(view.body["data"]["previousSecretExpiresAt"], Value::Null);
    app.trigger("user.login", "grace-user", json!({})).await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await.unwrap();
    assert_eq!(signature_entries(&got[0]).len(), 1);
    assert!(standard_ok(&got[0], &new));
    assert!(!standard_ok(&got[0], old));
}

/// Every occurrence of `needle` in `haystack`.
fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn secrets_are_encrypted_at_rest_and_never_logged() {
    let mut app = spawn_app_with(&[("LOG_LEVEL", "debug")]).await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("at-rest-user", false);
    let mut secrets: Vec<String> = vec![
        "plaintext_secret_alpha_0001".into(),
        "plaintext_secret_bravo_0002".into(),
        "plaintext_secret_charlie_03".into(),
    ];
    let mut urls = Vec::new();
    let mut ids = Vec::new();
    for (n, secret) in secrets.iter().enumerate() {
        let url = receiver.url(&format!("/at-rest-{n}"));
        let hook = app.create_webhook(&token, &url, &["*"], Some(secret)).await;
        ids.push(hook["id"].as_str().unwrap().to_string());
        urls.push(url);
    }
    // A generated secret, a rotated-out one (still kept for the grace period)
    // and one set by PATCH are stored too.
    let generated = app
        .create_webhook(&token, &receiver.url("/generated"), &["*"], None)
        .await;
    secrets.push(generated["secret"].as_str().unwrap().to_string());
    let rotated = post(
        &app,
        &format!("/api/v1/webhooks/{}/rotate-secret", ids[0]),
        &token,
        json!({}),
    )
    .await;
    secrets.push(rotated.body["data"]["secret"].as_str().unwrap().to_string());
    let patched_secret = "plaintext_secret_patched_04";
    let patched = patch(
        &app,
        &format!("/api/v1/webhooks/{}", ids[1]),
        &token,
        json!({"secret": patched_secret}),
    )
    .await;
    assert_eq!(patched.status, 200);
    secrets.push(patched_secret.into());
    // Deliveries and their attempt logs are stored as well.
    app.trigger(
        "user.created",
        "at-rest-user",
        json!({"userId": "at-rest-user"}),
    )
    .await;
    receiver.wait_for(4, Duration::from_secs(10)).await.unwrap();
    app.wait_for_logs(&token, &ids[2], Duration::from_secs(10), |items| {
        items.first().is_some_and(|d| d["status"] == "delivered")
    })
    .await;
    // The rest of a full scenario at debug level: an admin, a failing
    // endpoint with retries, test sends, refused credentials.
    let admin = app.token("at-rest-admin", true);
    assert_eq!(get(&app, "/api/v1/webhooks", &admin).await.status, 200);
    let failing = Receiver::start(Behavior::Status(500)).await.unwrap();
    let failing_secret = "plaintext_secret_failing_05";
    let failing_hook = app
        .create_webhook(
            &token,
            &failing.url("/failing"),
            &["*"],
            Some(failing_secret),
        )
        .await;
    secrets.push(failing_secret.into());
    let failing_id = failing_hook["id"].as_str().unwrap();
    let sent = post(
        &app,
        &format!("/api/v1/webhooks/{failing_id}/test"),
        &token,
        json!({"eventType": "credit.low"}),
    )
    .await;
    assert_eq!(sent.status, 200);
    assert_eq!(sent.body["data"]["success"], false);
    app.trigger("credit.low", "at-rest-user", json!({"balance": 1}))
        .await;
    failing.wait_for(2, Duration::from_secs(10)).await.unwrap();
    let forged = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VySWQiOiJ4In0.forged-signature-value";
    assert_eq!(get(&app, "/api/v1/webhooks", forged).await.status, 401);
    let wrong_internal = "wrong-internal-secret-value-0001";
    let (status, _, _) = app
        .request(
            reqwest::Method::POST,
            "/internal/webhooks/trigger",
            Some(wrong_internal),
            Some(json!({"eventType": "credit.low", "userId": "u", "data": {}})),
        )
        .await;
    assert_eq!(status, 401);

    // Killed, not stopped: whatever is only in the WAL stays there to be read.
    app.kill();
    let db = std::fs::read(app.data_dir.join("webhooks.db")).expect("webhooks.db");
    let wal = std::fs::read(app.data_dir.join("webhooks.db-wal")).unwrap_or_default();
    let stored = [db.as_slice(), wal.as_slice()].concat();
    // These are the right files: the webhooks are in them.
    for url in &urls {
        assert!(
            contains(&stored, url),
            "{url} is stored in webhooks.db(-wal)"
        );
    }
    for secret in &secrets {
        assert!(
            !contains(&db, secret),
            "secret {secret} in plaintext in webhooks.db"
        );
        assert!(
            !contains(&wal, secret),
            "secret {secret} in plaintext in webhooks.db-wal"
        );
    }
    // Nor in the logs, and neither is the user's token.
    let logs = app.logs();
    assert!(!logs.is_empty());
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "secret {secret} in the logs"
        );
    }
    for (what, value) in [
        ("the user's token", token.as_str()),
        ("the admin's token", admin.as_str()),
        ("a forged token", forged),
        ("a wrong internal secret", wrong_internal),
        ("INTERNAL_SERVICE_SECRET", INTERNAL_SECRET),
        ("JWT_SECRET", JWT_SECRET),
        ("WEBHOOK_ENCRYPTION_KEY", ENCRYPTION_KEY),
    ] {
        assert!(!logs.contains(value), "{what} in the logs");
    }
    assert!(
        logs.contains("DEBUG") || logs.contains("\"level\":\"DEBUG\""),
        "the logs are at debug level"
    );

    // Restarted on the same data, the secrets decrypt to what they were.
    app.start().await;
    let shown = get(&app, &format!("/api/v1/webhooks/{}/secret", ids[2]), &token).await;
    assert_eq!(shown.body["data"]["secret"], secrets[2].as_str());
}
