//! What the API refuses, and how it says so: each bad field named, malformed
//! JSON located, wrong content types, oversized and hostile bodies, unsafe
//! destinations and the per-user cap.

use crate::api_support::{Answer, get, patch, post, raw};
use crate::common::{INTERNAL_SECRET, spawn_app, spawn_app_with};
use reqwest::Method;
use serde_json::{Value, json};

/// Posts `body` as a new webhook and expects a 400 naming exactly `fields`,
/// with each message containing its fragment.
async fn refused(
    app: &crate::common::TestApp,
    token: &str,
    body: Value,
    expected: &[(&str, &str)],
) -> Answer {
    let answer = post(app, "/api/v1/webhooks", token, body.clone()).await;
    assert_eq!(answer.status, 400, "{body} -> {}", answer.body);
    assert_eq!(answer.error_code(), "VALIDATION_ERROR", "{body}");
    let fields: Vec<&str> = expected.iter().map(|(f, _)| *f).collect();
    assert_eq!(answer.bad_fields(), fields, "{body} -> {}", answer.body);
    let details = answer.body["error"]["details"].as_array().unwrap();
    for ((field, fragment), problem) in expected.iter().zip(details) {
        let text = problem["message"].as_str().unwrap();
        assert!(
            text.contains(fragment),
            "{field}: '{text}' should contain '{fragment}'"
        );
        assert!(
            answer.message().contains(text),
            "the message names every problem: {}",
            answer.message()
        );
    }
    answer
}

const OK_URL: &str = "http://127.0.0.1:9/hook";

#[tokio::test]
async fn each_invalid_field_is_named_with_what_is_wrong() {
    let app = spawn_app().await;
    let token = app.token("val-user", false);
    let cases: Vec<(Value, Vec<(&str, &str)>)> = vec![
        (
            json!({}),
            vec![
                ("url", "url is required"),
                ("eventTypes", "eventTypes is required"),
            ],
        ),
        (
            json!({"eventTypes": ["user.created"]}),
            vec![("url", "required")],
        ),
        (
            json!({"url": "", "eventTypes": ["user.created"]}),
            vec![("url", "required")],
        ),
        (
            json!({"url": 42, "eventTypes": ["user.created"]}),
            vec![("url", "must be a string")],
        ),
        (
            json!({"url": "not a url", "eventTypes": ["user.created"]}),
            vec![("url", "not a valid absolute URL")],
        ),
        (
            json!({"url": "ftp://127.0.0.1/hook", "eventTypes": ["user.created"]}),
            vec![("url", "must be an http or https URL")],
        ),
        (
            json!({"url": "javascript:alert(1)", "eventTypes": ["user.created"]}),
            vec![("url", "must be an http or https URL")],
        ),
        (
            json!({"url": format!("https://8.8.8.8/{}", "a".repeat(2040)), "eventTypes": ["user.created"]}),
            vec![("url", "at most 2048")],
        ),
        (
            json!({"url": "https://user:pw@8.8.8.8/hook", "eventTypes": ["user.created"]}),
            vec![("url", "user name or password")],
        ),
        (
            json!({"url": "https://token@8.8.8.8/hook", "eventTypes": ["user.created"]}),
            vec![("url", "user name or password")],
        ),
        (json!({"url": OK_URL}), vec![("eventTypes", "required")]),
        (
            json!({"url": OK_URL, "eventTypes": []}),
            vec![("eventTypes", "at least one")],
        ),
        (
            json!({"url": OK_URL, "eventTypes": "user.created"}),
            vec![("eventTypes", "must be an array")],
        ),
        (
            json!({"url": OK_URL, "eventTypes": [1, 2]}),
            vec![("eventTypes", "array of strings")],
        ),
        (
            json!({"url": OK_URL, "eventTypes": ["user.created", "user.exploded"]}),
            vec![("eventTypes", "'user.exploded'")],
        ),
        (
            json!({"url": OK_URL, "eventTypes": ["bogus.*"]}),
            vec![("eventTypes", "'bogus.*'")],
        ),
        (
            json!({"url": OK_URL, "eventTypes": ["user.**"]}),
            vec![("eventTypes", "'user.**'")],
        ),
        (
            json!({"url": OK_URL, "eventTypes": ["USER.CREATED"]}),
            vec![("eventTypes", "'USER.CREATED'")],
        ),
        (
            json!({"url": OK_URL, "eventTypes": [""]}),
            vec![("eventTypes", "empty")],
        ),
        (
            json!({"url": OK_URL, "events": ["nope.nope"]}),
            vec![("events", "'nope.nope'")],
        ),
        (
            json!({"url": OK_URL, "eventTypes": ["*"], "secret": "short"}),
            vec![("secret", "at least 16")],
        ),
        (
            json!({"url": OK_URL, "eventTypes": ["*"], "secret": "s".repeat(129)}),
            vec![("secret", "at most 128")],
        ),
        (
            json!({"url": OK_URL, "eventTypes": ["*"], "secret": "has spaces in the secret"}),
            vec![("secret", "printable")],
        ),
        (
            json!({"url": OK_URL, "eventTypes": ["*"], "secret": 1234567890123456789_u64}),
            vec![("secret", "must be a string")],
        ),
        (
            json!({"url": OK_URL, "eventTypes": ["*"], "description": "d".repeat(501)}),
            vec![("description", "at most 500")],
        ),
        (
            json!({"url": OK_URL, "eventTypes": ["*"], "description": "nul \u{0} inside"}),
            vec![("description", "control character U+0000")],
        ),
        (
            json!({"url": OK_URL, "eventTypes": ["*"], "isActive": "yes"}),
            vec![("isActive", "true or false")],
        ),
        (
            json!({"url": OK_URL, "eventTypes": ["*"], "isActive": 1}),
            vec![("isActive", "true or false")],
        ),
        // Several problems at once: every one is named, in one answer.
        (
            json!({"url": "ftp://x", "eventTypes": [], "secret": "short", "description": "d".repeat(600), "isActive": "no"}),
            vec![
                ("url", "http or https"),
                ("eventTypes", "at least one"),
                ("secret", "at least 16"),
                ("description", "600 characters"),
                ("isActive", "true or false"),
            ],
        ),
    ];
    for (body, expected) in cases {
        refused(&app, &token, body, &expected).await;
    }
    // Nothing was created by any of them.
    let list = get(&app, "/api/v1/webhooks", &token).await;
    assert_eq!(list.body["meta"]["total"], 0, "{}", list.body);

    // The limits themselves are accepted: 16 and 128 character secrets, 500 characters of description.
    for body in [
        json!({"url": OK_URL, "eventTypes": ["*"], "secret": "s".repeat(16)}),
        json!({"url": OK_URL, "eventTypes": ["*"], "secret": "s".repeat(128), "description": "é".repeat(500)}),
    ] {
        let ok = post(&app, "/api/v1/webhooks", &token, body).await;
        assert_eq!(ok.status, 201, "{}", ok.body);
    }

    // An update is validated the same way and leaves the webhook as it was.
    let hook = app
        .create_webhook(&token, OK_URL, &["user.created"], None)
        .await;
    let id = hook["id"].as_str().unwrap();
    let bad = patch(
        &app,
        &format!("/api/v1/webhooks/{id}"),
        &token,
        json!({"url": "ftp://x", "eventTypes": ["nope"], "description": "d".repeat(501)}),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(bad.bad_fields(), ["url", "eventTypes", "description"]);
    let now = get(&app, &format!("/api/v1/webhooks/{id}"), &token).await;
    assert_eq!(now.body["data"]["url"], OK_URL);
    assert_eq!(now.body["data"]["eventTypes"], json!(["user.created"]));
    assert_eq!(now.body["data"]["updatedAt"], hook["updatedAt"]);
}

#[tokio::test]
async fn scope_all_is_for_admins_only() {
    let app = spawn_app().await;
    let user = app.token("plain-user", false);
    let admin = app.token("the-admin", true);
    let body = json!({"url": OK_URL, "eventTypes": ["*"], "scope": "all"});
    let forbidden = post(&app, "/api/v1/webhooks", &user, body.clone()).await;
    assert_eq!(forbidden.status, 403, "{}", forbidden.body);
    assert_eq!(forbidden.error_code(), "FORBIDDEN");
    assert!(
        forbidden.message().contains("admin"),
        "{}",
        forbidden.message()
    );
    assert_eq!(
        get(&app, "/api/v1/webhooks", &user).await.body["meta"]["total"],
        0
    );
    let allowed = post(&app, "/api/v1/webhooks", &admin, body).await;
    assert_eq!(allowed.status, 201, "{}", allowed.body);
    assert_eq!(allowed.body["data"]["scope"], "all");
    let bad = post(
        &app,
        "/api/v1/webhooks",
        &admin,
        json!({"url": OK_URL, "eventTypes": ["*"], "scope": "everyone"}),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.bad_fields(), ["scope"]);
}

#[tokio::test]
async fn unsafe_destinations_are_refused_without_an_allow_list() {
    // Not --dev and WEBHOOK_ALLOWED_CIDRS unset: only public https destinations.
    let app = spawn_app_with(&[("WEBHOOK_ALLOWED_CIDRS", "")]).await;
    let token = app.token("ssrf-user", false);
    let cases = [
        (
            "http://127.0.0.1/hook",
            "127.0.0.1, which is a loopback address",
        ),
        (
            "https://127.0.0.1/hook",
            "127.0.0.1, which is a loopback address",
        ),
        ("http://127.0.0.1:3000/hook", "loopback"),
        (
            "http://2130706433/",
            "127.0.0.1, which is a loopback address",
        ),
        (
            "http://0x7f.0.0.1/",
            "127.0.0.1, which is a loopback address",
        ),
        (
            "http://0177.0.0.1/",
            "127.0.0.1, which is a loopback address",
        ),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("https://[::1]/", "loopback"),
        ("https://localhost/hook", "localhost"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("https://169.254.1.1/", "link-local"),
        ("http://10.0.0.5/hook", "private-network"),
        ("https://10.255.255.255/hook", "private-network"),
        ("http://192.168.1.1/hook", "private-network"),
        ("https://172.16.0.1/hook", "private-network"),
        ("http://100.64.0.1/hook", "carrier-grade NAT"),
        ("https://0.0.0.0/hook", "unspecified"),
        ("https://224.0.0.1/hook", "multicast"),
        ("https://[fe80::1]/hook", "link-local"),
        ("https://[fd00::1]/hook", "private-network"),
        // A public address still needs https.
        ("http://8.8.8.8/hook", "must use https"),
    ];
    for (url, fragment) in cases {
        let answer = refused(
            &app,
            &token,
            json!({"url": url, "eventTypes": ["*"]}),
            &[("url", fragment)],
        )
        .await;
        assert!(
            answer.message().contains("WEBHOOK_ALLOWED_CIDRS") || fragment == "must use https",
            "{url}: the message says how to allow it: {}",
            answer.message()
        );
    }
    // Public https is accepted (nothing is sent to it: no event is published).
    let ok = post(
        &app,
        "/api/v1/webhooks",
        &token,
        json!({"url": "https://8.8.8.8/hook", "eventTypes": ["*"], "isActive": false}),
    )
    .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    // Nor can an existing webhook be pointed inside.
    let id = ok.body["data"]["id"].as_str().unwrap();
    let moved = patch(
        &app,
        &format!("/api/v1/webhooks/{id}"),
        &token,
        json!({"url": "http://169.254.169.254/"}),
    )
    .await;
    assert_eq!(moved.status, 400, "{}", moved.body);
    assert_eq!(moved.bad_fields(), ["url"]);
}

#[tokio::test]
async fn bodies_must_be_json_well_formed_and_reasonably_sized() {
    let app = spawn_app().await;
    let token = app.token("body-user", false);
    let auth = format!("Bearer {token}");
    let json_headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];

    // Malformed JSON: 400 saying where.
    let broken = raw(
        &app,
        Method::POST,
        "/api/v1/webhooks",
        &json_headers,
        "{\n  \"url\": \"http://127.0.0.1:9/x\",\n  \"eventTypes\": [\"user.created\",]\n}",
    )
    .await;
    assert_eq!(broken.status, 400, "{}", broken.body);
    assert_eq!(broken.error_code(), "INVALID_JSON");
    assert!(
        broken.message().contains("line 3 column"),
        "{}",
        broken.message()
    );
    let truncated = raw(
        &app,
        Method::POST,
        "/api/v1/webhooks",
        &json_headers,
        "{\"url\": ",
    )
    .await;
    assert_eq!(truncated.status, 400);
    assert!(
        truncated.message().contains("line 1 column"),
        "{}",
        truncated.message()
    );
    let not_object = raw(
        &app,
        Method::POST,
        "/api/v1/webhooks",
        &json_headers,
        "[1,2]",
    )
    .await;
    assert_eq!(not_object.status, 400, "{}", not_object.body);
    // An array that would fit the fields by position is refused too, and nothing is stored.
    let internal = format!("Bearer {INTERNAL_SECRET}");
    for (path, body) in [
        ("/api/v1/webhooks", r#"["http://127.0.0.1:9/arr", ["*"]]"#),
        (
            "/internal/webhooks/trigger",
            r#"[null, "user.created", "body-user", {}, {}]"#,
        ),
    ] {
        let headers = if path.starts_with("/internal") {
            vec![
                ("authorization", internal.as_str()),
                ("content-type", "application/json"),
            ]
        } else {
            json_headers.to_vec()
        };
        let array = raw(&app, Method::POST, path, &headers, body).await;
        assert_eq!(array.status, 400, "{path}: {}", array.body);
        assert_eq!(
            array.message(),
            "The request body must be a JSON object, not an array",
            "{path}"
        );
    }
    let (_, listed) = app.get("/api/v1/webhooks", &token).await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(0), "{listed}");

    // Not JSON: 415, with or without a content type.
    let valid = json!({"url": "http://127.0.0.1:9/x", "eventTypes": ["*"]}).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut headers = vec![("authorization", auth.as_str())];
        if let Some(ct) = content_type {
            headers.push(("content-type", ct));
        }
        let answer = raw(
            &app,
            Method::POST,
            "/api/v1/webhooks",
            &headers,
            valid.clone(),
        )
        .await;
        assert_eq!(answer.status, 415, "{content_type:?}: {}", answer.body);
        assert_eq!(answer.error_code(), "UNSUPPORTED_MEDIA_TYPE");
        assert!(answer.message().contains("application/json"));
    }
    // A charset parameter is fine.
    let with_charset = raw(
        &app,
        Method::POST,
        "/api/v1/webhooks",
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json; charset=utf-8"),
        ],
        valid.clone(),
    )
    .await;
    assert_eq!(with_charset.status, 201, "{}", with_charset.body);

    // 1 MiB exactly is read (and judged on its content); one byte more is a 413.
    let padded = |size: usize| {
        let mut body = valid.clone();
        body.insert_str(1, &" ".repeat(size - valid.len()));
        assert_eq!(body.len(), size);
        body
    };
    let at_limit = raw(
        &app,
        Method::POST,
        "/api/v1/webhooks",
        &json_headers,
        padded(1024 * 1024),
    )
    .await;
    assert_eq!(at_limit.status, 201, "{}", at_limit.body);
    let over = raw(
        &app,
        Method::POST,
        "/api/v1/webhooks",
        &json_headers,
        padded(1024 * 1024 + 1),
    )
    .await;
    assert_eq!(over.status, 413, "{}", over.body);
    assert_eq!(over.error_code(), "PAYLOAD_TOO_LARGE");
    let huge_event = raw(
        &app,
        Method::POST,
        "/internal/webhooks/trigger",
        &[
            ("authorization", &format!("Bearer {INTERNAL_SECRET}")),
            ("content-type", "application/json"),
        ],
        format!(
            "{{\"eventType\":\"user.created\",\"userId\":\"u\",\"data\":{{\"blob\":\"{}\"}}}}",
            "x".repeat(2 * 1024 * 1024)
        ),
    )
    .await;
    assert_eq!(huge_event.status, 413, "{}", huge_event.body);

    // Deeply nested JSON is refused, not followed down until the stack runs out.
    let deep = format!(
        "{{\"url\": {}1{}, \"eventTypes\": [\"*\"]}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let nested = raw(&app, Method::POST, "/api/v1/webhooks", &json_headers, deep).await;
    assert_eq!(nested.status, 400, "{}", nested.body);
    assert!(
        nested.message().contains("nested too deeply"),
        "{}",
        nested.message()
    );
    let deep_event = format!(
        "{{\"eventType\":\"user.created\",\"userId\":\"u\",\"data\":{{\"x\":{}0{}}}}}",
        "{\"a\":".repeat(50_000),
        "}".repeat(50_000)
    );
    let nested = raw(
        &app,
        Method::POST,
        "/internal/webhooks/trigger",
        &[
            ("authorization", &format!("Bearer {INTERNAL_SECRET}")),
            ("content-type", "application/json"),
        ],
        deep_event,
    )
    .await;
    assert_eq!(nested.status, 400, "{}", nested.body);
    // Still up and answering.
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let list = get(&app, "/api/v1/webhooks", &token).await;
    assert_eq!(list.body["meta"]["total"], 2, "the two valid bodies only");
}

#[tokio::test]
async fn a_user_cannot_own_more_webhooks_than_the_cap() {
    let app = spawn_app_with(&[("WEBHOOK_MAX_PER_USER", "3")]).await;
    let token = app.token("capped", false);
    let mut ids = Vec::new();
    for n in 0..3 {
        let hook = app
            .create_webhook(&token, &format!("http://127.0.0.1:9/{n}"), &["*"], None)
            .await;
        ids.push(hook["id"].as_str().unwrap().to_string());
    }
    let fourth = post(
        &app,
        "/api/v1/webhooks",
        &token,
        json!({"url": "http://127.0.0.1:9/4", "eventTypes": ["*"]}),
    )
    .await;
    assert_eq!(fourth.status, 409, "{}", fourth.body);
    assert_eq!(fourth.error_code(), "WEBHOOK_LIMIT_REACHED");
    assert!(
        fourth.message().contains("maximum of 3 webhooks"),
        "{}",
        fourth.message()
    );
    assert_eq!(
        get(&app, "/api/v1/webhooks", &token).await.body["meta"]["total"],
        3
    );
    // The cap is per user.
    let other = app.token("uncapped", false);
    app.create_webhook(&other, "http://127.0.0.1:9/o", &["*"], None)
        .await;
    // Concurrent creates cannot overshoot the cap either.
    let racer = app.token("racer", false);
    let mut racing = tokio::task::JoinSet::new();
    for n in 0..12 {
        let request = app
            .client
            .post(app.url("/api/v1/webhooks"))
            .bearer_auth(&racer)
            .json(&json!({"url": format!("http://127.0.0.1:9/race/{n}"), "eventTypes": ["*"]}));
        racing.spawn(async move { request.send().await.expect("request").status().as_u16() });
    }
    let statuses = racing.join_all().await;
    let created = statuses.iter().filter(|s| **s == 201).count();
    let refused = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((created, refused), (3, 9));
    assert_eq!(
        get(&app, "/api/v1/webhooks", &racer).await.body["meta"]["total"],
        3
    );
    // Deleting one makes room again.
    let deleted =
        crate::api_support::delete(&app, &format!("/api/v1/webhooks/{}", ids[0]), &token).await;
    assert_eq!(deleted.status, 200);
    app.create_webhook(&token, "http://127.0.0.1:9/5", &["*"], None)
        .await;
}

#[tokio::test]
async fn a_test_send_names_its_bad_fields() {
    let app = spawn_app().await;
    let token = app.token("test-send-user", false);
    let hook = app.create_webhook(&token, OK_URL, &["*"], None).await;
    let path = format!("/api/v1/webhooks/{}/test", hook["id"].as_str().unwrap());
    for (body, field, fragment) in [
        (json!({"eventType": 5}), "eventType", "must be a string"),
        (
            json!({"eventType": "user.exploded"}),
            "eventType",
            "user.exploded",
        ),
        (
            json!({"eventType": "user.created", "data": "text"}),
            "data",
            "JSON object",
        ),
        (
            json!({"payload": [1]}),
            "payload",
            "payload must be a JSON object",
        ),
    ] {
        let answer = post(&app, &path, &token, body.clone()).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        assert_eq!(answer.bad_fields(), [field], "{body}");
        assert!(
            answer.message().contains(fragment),
            "{body}: {}",
            answer.message()
        );
    }
    // None of them was sent or logged.
    let logs = get(
        &app,
        &format!("/api/v1/webhooks/{}/logs", hook["id"].as_str().unwrap()),
        &token,
    )
    .await;
    assert_eq!(logs.body["meta"]["total"], 0, "{}", logs.body);
}
