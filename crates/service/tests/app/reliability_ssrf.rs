//! SSRF through DNS and redirects, end to end: a host name that resolves to
//! loopback (`localhost`, from /etc/hosts) is refused at registration without
//! an allow-list; registered while the allow-list allowed it, it is refused
//! again at delivery time once the allow-list is gone (the resolver of the
//! delivery client drops the address: `blocked_address`); and an endpoint
//! that redirects to a private address is not followed (`redirect`).
//! Everything contacted here is on 127.0.0.1.

use std::time::Duration;

use crate::common::spawn_app_with;
use crate::delivery_support::{trigger_one, wait_final};
use serde_json::json;
use webhook_testkit::{Behavior, Receiver};

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_at_registration_without_an_allow_list() {
    let app = spawn_app_with(&[("WEBHOOK_ALLOWED_CIDRS", "")]).await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("ssrf-dns-user", false);
    let port = receiver.addr().port();
    for url in [
        format!("http://localhost:{port}/hook"),
        format!("http://LOCALHOST:{port}/hook"),
        format!("http://localhost.:{port}/hook"),
    ] {
        let (status, body) = app
            .post(
                "/api/v1/webhooks",
                &token,
                json!({"url": url, "eventTypes": ["*"]}),
            )
            .await;
        assert_eq!(status, 400, "{url} is refused: {body}");
    }
    assert_eq!(receiver.count(), 0, "registration never contacts the URL");
}

#[tokio::test]
async fn a_name_allowed_at_registration_is_refused_at_delivery_once_the_allow_list_is_gone() {
    let mut app = spawn_app_with(&[]).await; // the harness allows 127.0.0.0/8
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("ssrf-rebind-user", false);
    let url = format!("http://localhost:{}/hook", receiver.addr().port());
    let hook = app.create_webhook(&token, &url, &["user.*"], None).await;
    let id = hook["id"].as_str().unwrap().to_string();
    // Allowed: it is delivered.
    let (_, first) = trigger_one(&app, "user.login", "ssrf-rebind-user", json!({})).await;
    let detail = wait_final(&app, &token, &id, &first, Duration::from_secs(10)).await;
    assert_eq!(detail["status"], "delivered", "{detail}");
    assert_eq!(receiver.count(), 1);

    // Restarted without the allow-list: the same registered name now fails
    // at connect time, before any byte is sent.
    app.kill();
    app.set_env("WEBHOOK_ALLOWED_CIDRS", None);
    app.start().await;
    let (_, second) = trigger_one(&app, "user.login", "ssrf-rebind-user", json!({})).await;
    let detail = wait_final(&app, &token, &id, &second, Duration::from_secs(10)).await;
    assert_eq!(detail["status"], "failed", "{detail}");
    assert_eq!(detail["lastErrorKind"], "blocked_address", "{detail}");
    for attempt in detail["attemptLog"].as_array().unwrap() {
        assert_eq!(attempt["errorKind"], "blocked_address", "{attempt}");
        assert!(attempt["statusCode"].is_null());
    }
    assert_eq!(receiver.count(), 1, "nothing reached the receiver");
}

#[tokio::test]
async fn a_redirect_to_a_private_address_is_not_followed() {
    let app = spawn_app_with(&[]).await;
    let internal = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("ssrf-redirect-user", false);
    for location in [
        internal.url("/admin"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://localhost:{}/admin", internal.addr().port()),
    ] {
        let public_looking = Receiver::start(Behavior::Redirect {
            status: 307,
            location: location.clone(),
        })
        .await
        .unwrap();
        let hook = app
            .create_webhook(&token, &public_looking.url("/hook"), &["user.*"], None)
            .await;
        let id = hook["id"].as_str().unwrap().to_string();
        let (_, delivery) = trigger_one(&app, "user.login", "ssrf-redirect-user", json!({})).await;
        let detail = wait_final(&app, &token, &id, &delivery, Duration::from_secs(10)).await;
        assert_eq!(detail["status"], "failed", "{detail}");
        assert_eq!(detail["lastErrorKind"], "redirect", "{detail}");
        assert_eq!(detail["lastStatusCode"], 307);
        // Other webhooks of the user get this event too; pause them.
        let (status, _) = app
            .post(&format!("/api/v1/webhooks/{id}/toggle"), &token, json!({}))
            .await;
        assert_eq!(status, 200);
    }
    assert_eq!(internal.count(), 0, "no redirect was followed");
}
