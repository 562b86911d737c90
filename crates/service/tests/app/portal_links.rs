//! Portal links and pages without a browser: who may mint a link, what a
//! link's token may do on `/api/v1` (and never on `/internal`), read-only
//! links, the pages' security headers, and the chart's statistics.

use std::time::Duration;

use crate::common::{
    ENCRYPTION_KEY, INTERNAL_SECRET, JWT_SECRET, TestApp, spawn_app, spawn_app_with,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

async fn mint(app: &TestApp, credential: Option<&str>, body: Value) -> (u16, Value) {
    let (status, answer, _) = app
        .request(Method::POST, "/api/v1/portal/links", credential, Some(body))
        .await;
    (status, answer)
}

async fn link_token(app: &TestApp, body: Value) -> String {
    let (status, answer) = mint(app, Some(INTERNAL_SECRET), body).await;
    assert_eq!(status, 201, "{answer}");
    answer["data"]["token"].as_str().expect("token").to_string()
}

#[tokio::test]
async fn links_are_minted_by_the_platform_or_an_admin_only() {
    let app = spawn_app().await;
    let (status, answer) = mint(
        &app,
        Some(INTERNAL_SECRET),
        json!({"userId": "u-1", "expiresIn": "2h"}),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let data = &answer["data"];
    let url = data["url"].as_str().expect("url");
    let token = data["token"].as_str().expect("token");
    assert_eq!(url, format!("{}/portal#token={token}", app.base));
    assert!(
        data["expiresAt"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{data}"
    );

    let admin = app.token("ops", true);
    assert_eq!(
        mint(&app, Some(&admin), json!({"userId": "u-2"})).await.0,
        201
    );
    let user = app.token("u-1", false);
    assert_eq!(
        mint(&app, Some(&user), json!({"userId": "u-1"})).await.0,
        403
    );
    assert_eq!(mint(&app, None, json!({"userId": "u-1"})).await.0, 401);
    // Refused before the body is read.
    let (status, _, _) = app
        .request(Method::POST, "/api/v1/portal/links", Some(&user), None)
        .await;
    assert_eq!(status, 403);
    // A portal link, even an admin's, cannot mint a wider or longer one.
    let admin_link = link_token(&app, json!({"userId": "ops", "admin": true})).await;
    assert_eq!(
        mint(&app, Some(&admin_link), json!({"userId": "x"}))
            .await
            .0,
        403
    );

    let (status, answer) = mint(&app, Some(INTERNAL_SECRET), json!({"expiresIn": "30d"})).await;
    assert_eq!(status, 400, "{answer}");
    let fields: Vec<&str> = answer["error"]["details"]
        .as_array()
        .expect("details")
        .iter()
        .filter_map(|d| d["field"].as_str())
        .collect();
    assert_eq!(fields, ["userId", "expiresIn"], "{answer}");
}

#[tokio::test]
async fn a_link_grants_its_users_view_and_nothing_on_internal_routes() {
    let app = spawn_app().await;
    let alice = app.token("alice", false);
    let bob = app.token("bob", false);
    let mine = app
        .create_webhook(&alice, "http://127.0.0.1:9/a", &["*"], None)
        .await;
    let theirs = app
        .create_webhook(&bob, "http://127.0.0.1:9/b", &["*"], None)
        .await;
    let link = link_token(&app, json!({"userId": "alice"})).await;

    let (status, list) = app.get("/api/v1/webhooks", &link).await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&Value> = list["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|w| &w["id"])
        .collect();
    assert_eq!(ids, [&mine["id"]]);
    let (status, _) = app
        .get(
            &format!(
                "/api/v1/webhooks/{}",
                theirs["id"].as_str().unwrap_or_default()
            ),
            &link,
        )
        .await;
    assert_eq!(status, 404);
    // Not read-only: it may change its own endpoints.
    let (status, body) = app
        .post(
            &format!(
                "/api/v1/webhooks/{}/toggle",
                mine["id"].as_str().unwrap_or_default()
            ),
            &link,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let (status, body, _) = app
        .request(
            Method::POST,
            "/internal/webhooks/trigger",
            Some(&link),
            Some(json!({"eventType": "user.created", "userId": "alice", "data": {}})),
        )
        .await;
    assert_eq!(status, 401, "{body}");

    // An admin link sees everyone's endpoints.
    let ops = link_token(&app, json!({"userId": "ops", "admin": true})).await;
    let (_, all) = app.get("/api/v1/webhooks", &ops).await;
    assert_eq!(all["data"].as_array().map(Vec::len), Some(2), "{all}");
}

#[tokio::test]
async fn a_read_only_link_reads_but_changes_nothing() {
    let app = spawn_app().await;
    let alice = app.token("alice", false);
    let webhook = app
        .create_webhook(&alice, "http://127.0.0.1:9/a", &["*"], None)
        .await;
    let id = webhook["id"].as_str().expect("id");
    let ro = link_token(&app, json!({"userId": "alice", "readOnly": true})).await;

    for path in [
        "/api/v1/webhooks".to_string(),
        format!("/api/v1/webhooks/{id}"),
        format!("/api/v1/webhooks/{id}/deliveries"),
        format!("/api/v1/webhooks/{id}/stats"),
        format!("/api/v1/webhooks/{id}/stats/hourly"),
    ] {
        let (status, body) = app.get(&path, &ro).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let refused = [
        (Method::POST, "/api/v1/webhooks".to_string()),
        (Method::PUT, format!("/api/v1/webhooks/{id}")),
        (Method::DELETE, format!("/api/v1/webhooks/{id}")),
        (Method::POST, format!("/api/v1/webhooks/{id}/toggle")),
        (Method::POST, format!("/api/v1/webhooks/{id}/rotate-secret")),
        (Method::POST, format!("/api/v1/webhooks/{id}/test")),
        (Method::GET, format!("/api/v1/webhooks/{id}/secret")),
        (Method::POST, "/api/v1/events".to_string()),
    ];
    for (method, path) in refused {
        let (status, body, _) = app
            .request(
                method.clone(),
                &path,
                Some(&ro),
                Some(json!({"url": "http://127.0.0.1:9/x", "eventTypes": ["*"]})),
            )
            .await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], json!("FORBIDDEN"), "{body}");
    }
    let (_, after) = app.get(&format!("/api/v1/webhooks/{id}"), &alice).await;
    assert_eq!(
        after["data"]["isActive"],
        json!(true),
        "nothing changed: {after}"
    );
}

#[tokio::test]
async fn portal_tokens_and_platform_tokens_do_not_cross() {
    let app = spawn_app().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    // A token claiming to be a portal link but signed with the platform's
    // JWT_SECRET: refused, so the platform's key cannot mint portal access.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("webhook-portal".into());
    let claims = json!({"sub": "alice", "aud": "webhook-portal", "ro": false, "exp": now + 600});
    let fake = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("encode");
    let (status, body) = app.get("/api/v1/webhooks", &fake).await;
    assert_eq!(status, 401, "{body}");

    // A portal token with its audience removed does not verify either.
    let link = link_token(&app, json!({"userId": "alice"})).await;
    let (status, _) = app.get("/api/v1/webhooks", &link).await;
    assert_eq!(status, 200);
    let mut parts: Vec<String> = link.split('.').map(String::from).collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut decoded: Value =
        serde_json::from_slice(&b64.decode(&parts[1]).expect("b64")).expect("json");
    decoded["ro"] = json!(false);
    decoded["roles"] = json!(["user", "admin"]);
    parts[1] = b64.encode(decoded.to_string());
    let (status, _) = app.get("/api/v1/webhooks", &parts.join(".")).await;
    assert_eq!(status, 401, "a changed claim breaks the signature");
}

#[tokio::test]
async fn portal_pages_carry_a_strict_policy_and_work_offline() {
    let app = spawn_app_with(&[(
        "WEBHOOK_PORTAL_FRAME_ANCESTORS",
        "'self' https://app.example.com",
    )])
    .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let root = client.get(app.url("/")).send().await.expect("root");
    assert!(root.status().is_redirection());
    assert_eq!(root.headers()["location"], "/portal");

    let shell = client.get(app.url("/portal")).send().await.expect("shell");
    assert_eq!(shell.status(), 200);
    let csp = shell.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(
        csp.contains("script-src 'self';"),
        "no inline script: {csp}"
    );
    assert!(
        csp.contains("frame-ancestors 'self' https://app.example.com"),
        "{csp}"
    );
    let html = shell.text().await.expect("html");
    // Every script and stylesheet comes from this service: no other host,
    // no inline script.
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    for asset in [
        "app.js",
        "api.js",
        "dom.js",
        "endpoints.js",
        "endpoint-options.js",
        "deliveries.js",
        "chart.js",
        "catalogue.js",
        "overview.js",
        "snippets.js",
        "portal.css",
        "icon.svg",
    ] {
        let response = client
            .get(app.url(&format!("/portal/assets/{asset}")))
            .send()
            .await
            .expect("asset");
        assert_eq!(response.status(), 200, "{asset}");
        let body = response.text().await.expect("asset body");
        for (at, _) in body.match_indices(" from '") {
            assert!(
                body[at + 7..].starts_with("./"),
                "{asset} imports only its siblings: {}",
                &body[at..(at + 40).min(body.len())]
            );
        }
    }
    let missing = client
        .get(app.url("/portal/assets/nope.js"))
        .send()
        .await
        .expect("404");
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn the_portal_config_gives_the_bounds_the_api_enforces_on_delivery_controls() {
    let app = spawn_app_with(&[("WEBHOOK_MAX_ENDPOINT_TIMEOUT", "30000")]).await;
    let config: Value = reqwest::get(app.url("/portal/config.json"))
        .await
        .expect("config")
        .json()
        .await
        .expect("json");
    let limits = &config["limits"];
    assert_eq!(limits["maxTimeoutMs"], json!(30000), "{config}");
    assert_eq!(limits["maxRateLimitPerSecond"], json!(10000), "{config}");
    assert_eq!(limits["maxRetryWaits"], json!(50), "{config}");
    assert_eq!(limits["maxRetryWait"], json!("30d"), "{config}");
    // The form's hints say what the API accepts: the bound itself, not one more.
    let token = app.token("bounds-user", false);
    let receiver = webhook_testkit::Receiver::start(webhook_testkit::Behavior::Status(200))
        .await
        .expect("receiver");
    for (field, accepted, refused) in [
        ("timeoutMs", json!(30000), json!(30001)),
        ("rateLimitPerSecond", json!(10000), json!(10001)),
    ] {
        let (status, body) = app
            .post(
                "/api/v1/webhooks",
                &token,
                json!({"url": receiver.url("/b"), "eventTypes": ["*"], field: refused}),
            )
            .await;
        assert_eq!(status, 400, "{field} {refused}: {body}");
        let (status, body) = app
            .post(
                "/api/v1/webhooks",
                &token,
                json!({"url": receiver.url("/b"), "eventTypes": ["*"], field: accepted}),
            )
            .await;
        assert_eq!(status, 201, "{field} {accepted}: {body}");
    }
}

#[tokio::test]
async fn the_default_policy_allows_framing_by_the_same_origin_only() {
    let app = spawn_app().await;
    let shell = reqwest::get(app.url("/portal")).await.expect("shell");
    let csp = shell.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    assert!(csp.ends_with("frame-ancestors 'self'"), "{csp}");
}

#[tokio::test]
async fn hourly_statistics_count_each_delivery_once() {
    let app = spawn_app().await;
    let alice = app.token("alice", false);
    let receiver = webhook_testkit::Receiver::start(webhook_testkit::Behavior::Status(200))
        .await
        .expect("receiver");
    let webhook = app
        .create_webhook(&alice, &receiver.url("/a"), &["*"], None)
        .await;
    let id = webhook["id"].as_str().expect("id");
    for _ in 0..3 {
        app.trigger("user.created", "alice", json!({})).await;
    }
    receiver
        .wait_for(3, Duration::from_secs(10))
        .await
        .expect("delivered");
    let link = link_token(&app, json!({"userId": "alice", "readOnly": true})).await;
    for (window, buckets) in [("24h", 24), ("7d", 28)] {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = app
                .get(
                    &format!("/api/v1/webhooks/{id}/stats/hourly?window={window}"),
                    &link,
                )
                .await;
            assert_eq!(status, 200, "{body}");
            let rows = body["data"]["buckets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert_eq!(rows.len(), buckets, "{body}");
            let delivered: u64 = rows.iter().filter_map(|b| b["delivered"].as_u64()).sum();
            if delivered == 3 {
                assert!(body["data"]["latencyMs"]["p50"].is_u64(), "{body}");
                break;
            }
            assert!(delivered < 3, "counted twice: {body}");
            assert!(std::time::Instant::now() < deadline, "{body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (status, _) = app
        .get(
            &format!("/api/v1/webhooks/{id}/stats/hourly?window=3d"),
            &link,
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn each_bucket_has_its_latency_and_the_operator_sees_the_platform() {
    let app = spawn_app().await;
    crate::common::figures::charts_count_each_bucket_and_the_platform(&app).await;
}

#[tokio::test]
async fn the_portal_link_command_prints_a_link_the_service_accepts() {
    let app = spawn_app().await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-service"))
        .args([
            "portal-link",
            "--user",
            "cli-user",
            "--read-only",
            "--expires-in",
            "10m",
        ])
        .env_clear()
        .env("WEBHOOK_ENCRYPTION_KEY", ENCRYPTION_KEY)
        .env("WEBHOOK_PUBLIC_URL", "https://hooks.example.com")
        .env("WEBHOOK_DATA_DIR", app.data_dir.display().to_string())
        .output()
        .expect("portal-link");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let url = String::from_utf8(output.stdout).expect("utf8");
    let token = url
        .trim()
        .strip_prefix("https://hooks.example.com/portal#token=")
        .unwrap_or_else(|| panic!("a portal URL: {url}"));
    let (status, body) = app.get("/api/v1/webhooks", token).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = app
        .post(
            "/api/v1/webhooks",
            token,
            json!({"url": "http://127.0.0.1:9/x", "eventTypes": ["*"]}),
        )
        .await;
    assert_eq!(status, 403, "--read-only holds");
}

#[tokio::test]
async fn minting_links_is_rate_limited_like_the_callers_other_routes() {
    let app = spawn_app_with(&[("INTERNAL_RATE_LIMIT_MAX_REQUESTS", "2")]).await;
    for _ in 0..2 {
        let (status, body) = mint(&app, Some(INTERNAL_SECRET), json!({"userId": "u"})).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = mint(&app, Some(INTERNAL_SECRET), json!({"userId": "u"})).await;
    assert_eq!(status, 429, "{body}");
}

/// Ends the `serve --dev` child however the test ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serve_dev_prints_a_portal_link_that_opens() {
    use std::io::{BufRead as _, BufReader};
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_webhook-service"))
            .args(["serve", "--dev"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", "0")
            .env("WEBHOOK_DATA_DIR", data.path())
            .env("LOG_LEVEL", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("serve --dev"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some((_, url)) =
                line.split_once("open the portal as '00000000-0000-4000-8000-000000000001': ")
            {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let url = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
        .await
        .expect("join")
        .expect("serve --dev prints a portal link");
    let (base, token) = url.split_once("/portal#token=").expect("a portal URL");
    let client = reqwest::Client::new();
    let page = client
        .get(format!("{base}/portal"))
        .send()
        .await
        .expect("portal");
    assert_eq!(page.status(), 200);
    let answer = client
        .get(format!("{base}/api/v1/webhooks"))
        .bearer_auth(token)
        .send()
        .await
        .expect("api");
    assert_eq!(answer.status(), 200, "the printed link's token is accepted");
}
