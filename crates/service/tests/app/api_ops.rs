//! Running the service: health, metrics, the API description, CORS for the
//! platform's front end, and the binary's start-up behaviour.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::api_support::raw;
use crate::common::{ENCRYPTION_KEY, INTERNAL_SECRET, JWT_SECRET, spawn_app, spawn_app_with};
use reqwest::Method;
use serde_json::{Value, json};

/// The value of an unlabelled sample in Prometheus text.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{name} not in metrics:\n{text}"))
}

#[tokio::test]
async fn health_metrics_openapi_and_docs_are_served() {
    let mut app = spawn_app().await;

    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["status"], "ok", "{body}");

    let metrics = || async {
        let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        resp.text().await.unwrap()
    };
    let before = metrics().await;
    assert!(
        before.contains("# TYPE webhook_events_ingested_total counter"),
        "{before}"
    );
    for line in before
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "not a sample line: {line}");
    }
    let ingested = sample(&before, "webhook_events_ingested_total");
    for _ in 0..2 {
        let (status, body) = app.trigger("user.login", "metrics-user", json!({})).await;
        assert_eq!(status, 202, "{body}");
    }
    let after = metrics().await;
    assert_eq!(
        sample(&after, "webhook_events_ingested_total"),
        ingested + 2.0,
        "the counter counts accepted events"
    );
    assert_eq!(
        sample(&after, "webhook_ingest_commit_seconds_count"),
        sample(&before, "webhook_ingest_commit_seconds_count") + 2.0,
        "each ingest call's commit is timed:\n{after}"
    );
    assert!(
        sample(&after, "webhook_ingest_commit_seconds_sum") > 0.0,
        "{after}"
    );

    let spec = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(spec.status(), 200);
    let spec: Value = spec.json().await.expect("openapi.json is JSON");
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        spec["openapi"]
    );
    let paths = spec["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/api/v1/webhooks", &["get", "post"][..]),
        (
            "/api/v1/webhooks/{id}",
            &["get", "put", "patch", "delete"][..],
        ),
        ("/api/v1/webhooks/{id}/toggle", &["post"][..]),
        ("/api/v1/webhooks/{id}/rotate-secret", &["post"][..]),
        ("/api/v1/webhooks/{id}/secret", &["get"][..]),
        ("/api/v1/webhooks/{id}/test", &["post"][..]),
        ("/api/v1/webhooks/{id}/logs", &["get"][..]),
        ("/api/v1/webhooks/stats", &["get"][..]),
        ("/api/v1/event-types", &["get"][..]),
        ("/internal/webhooks/trigger", &["post"][..]),
        // The front end's names for three of them.
        ("/api/v1/webhooks/{id}/regenerate-secret", &["post"][..]),
        ("/api/v1/webhooks/{id}/deliveries", &["get"][..]),
        ("/api/v1/webhooks/event-types", &["get"][..]),
    ] {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} not in openapi.json"));
        for method in methods {
            assert!(
                item.get(*method).is_some(),
                "{method} {path} not in openapi.json"
            );
        }
    }

    // Operation ids stay unique with the aliases.
    let mut ids: Vec<&str> = paths
        .values()
        .filter_map(Value::as_object)
        .flat_map(|item| item.values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "duplicate operation ids");

    let docs = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(
        docs.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        docs.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    let html = docs.text().await.unwrap();
    assert!(html.contains("<html") && html.contains("/docs/assets/swagger-ui-bundle.js"));
    for asset in [
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "docs.js",
        "LICENSE",
    ] {
        let file = app
            .client
            .get(app.url(&format!("/docs/assets/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(file.status(), 200, "{asset}");
    }

    // An unknown route is a 404 in the usual envelope.
    let unknown = raw(&app, Method::GET, "/api/v1/nope", &[], "").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error_code(), "NOT_FOUND");

    // Every answer has a request id; a caller's own id is kept.
    assert!(
        unknown
            .header("x-request-id")
            .is_some_and(|id| !id.is_empty())
    );
    let traced = raw(
        &app,
        Method::GET,
        "/health",
        &[("x-request-id", "trace-me-42")],
        "",
    )
    .await;
    assert_eq!(traced.header("x-request-id"), Some("trace-me-42"));

    // SIGTERM: a clean, successful exit.
    assert!(app.terminate(Duration::from_secs(20)), "graceful shutdown");
}

/// The two ingest routes are served beside the router (`api::App`), for
/// speed; they must answer exactly as the routes behind it do.
#[tokio::test]
async fn the_ingest_routes_answer_like_every_other_route() {
    let app = spawn_app().await;
    let auth = format!("Bearer {INTERNAL_SECRET}");
    let json_headers = |request_id: &'static str| {
        vec![
            ("authorization", auth.clone()),
            ("content-type", "application/json".to_string()),
            ("x-request-id", request_id.to_string()),
        ]
    };
    let send = |method: Method,
                path: &'static str,
                headers: Vec<(&'static str, String)>,
                body: &'static str| {
        let app = &app;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            raw(app, method, path, &headers, body).await
        }
    };
    let event = r#"{"eventType":"user.login","userId":"parity-user","data":{"a":1}}"#;

    // Accepted: the caller's request id is kept and the rate-limit headers are set.
    let accepted = send(
        Method::POST,
        "/internal/webhooks/trigger",
        json_headers("ingest-7"),
        event,
    )
    .await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    assert_eq!(accepted.header("x-request-id"), Some("ingest-7"));
    assert!(
        accepted.header("x-ratelimit-limit").is_some(),
        "{:?}",
        accepted.headers
    );
    let batch = send(
        Method::POST,
        "/internal/events/batch",
        json_headers("batch-1"),
        r#"{"events":[{"eventType":"user.login","userId":"parity-user","data":{}},{"eventType":"nope","userId":"u","data":{}}]}"#,
    )
    .await;
    assert_eq!(batch.status, 202, "{}", batch.body);
    assert_eq!(batch.body["data"]["accepted"], 1, "{}", batch.body);
    assert_eq!(batch.header("x-request-id"), Some("batch-1"));

    // Refused the same way as behind the router, each with a request id.
    let no_token = send(
        Method::POST,
        "/internal/webhooks/trigger",
        vec![("content-type", "application/json".to_string())],
        event,
    )
    .await;
    assert_eq!(no_token.status, 401, "{}", no_token.body);
    assert!(
        no_token
            .header("x-request-id")
            .is_some_and(|id| !id.is_empty())
    );
    let not_json = send(
        Method::POST,
        "/internal/webhooks/trigger",
        vec![
            ("authorization", auth.clone()),
            ("content-type", "text/plain".to_string()),
        ],
        event,
    )
    .await;
    assert_eq!(not_json.status, 415, "{}", not_json.body);
    assert_eq!(not_json.error_code(), "UNSUPPORTED_MEDIA_TYPE");
    let invalid = send(
        Method::POST,
        "/internal/webhooks/trigger",
        json_headers("bad-1"),
        r#"{"eventType":"user.login","data":{}}"#,
    )
    .await;
    assert_eq!(invalid.status, 400, "{}", invalid.body);
    assert_eq!(invalid.error_code(), "VALIDATION_ERROR");

    // Other methods on these paths are the router's.
    let wrong_method = send(
        Method::GET,
        "/internal/webhooks/trigger",
        json_headers("get-1"),
        "",
    )
    .await;
    assert_eq!(wrong_method.status, 405, "{}", wrong_method.body);
    assert_eq!(wrong_method.error_code(), "METHOD_NOT_ALLOWED");
    assert_eq!(wrong_method.header("x-request-id"), Some("get-1"));

    // Their answers are counted like any other.
    let counted = |class: &'static str| {
        let app = &app;
        async move {
            app.metric(&format!("http_responses_total{{class=\"{class}\"}} "))
                .await
        }
    };
    assert!(counted("2xx").await >= 2);
    assert!(counted("4xx").await >= 4);
}

#[tokio::test]
async fn cors_admits_only_the_configured_origins() {
    let app = spawn_app_with(&[("ALLOWED_ORIGINS", "https://app.example")]).await;
    let shared = &app;
    let preflight = |origin: &'static str| async move {
        raw(
            shared,
            Method::OPTIONS,
            "/api/v1/webhooks",
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "authorization,content-type",
                ),
            ],
            "",
        )
        .await
    };
    let allowed = preflight("https://app.example").await;
    assert!((200..300).contains(&allowed.status), "{}", allowed.status);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let methods = allowed.header("access-control-allow-methods").unwrap_or("");
    assert!(methods == "*" || methods.contains("POST"), "{methods}");
    let headers = allowed
        .header("access-control-allow-headers")
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );

    let denied = preflight("https://evil.example").await;
    assert_eq!(denied.header("access-control-allow-origin"), None);

    // An actual request from the front end: the origin is allowed and the
    // rate-limit headers are readable by its script.
    let token = app.token("cors-user", false);
    let auth = format!("Bearer {token}");
    let listed = raw(
        &app,
        Method::GET,
        "/api/v1/webhooks",
        &[("origin", "https://app.example"), ("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(listed.status, 200);
    assert_eq!(
        listed.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let exposed: Vec<String> = listed
        .header("access-control-expose-headers")
        .unwrap_or("")
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for name in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "retry-after",
    ] {
        assert!(
            exposed.iter().any(|h| h == name),
            "{name} not exposed: {exposed:?}"
        );
    }
    let other = raw(
        &app,
        Method::GET,
        "/api/v1/webhooks",
        &[("origin", "https://evil.example"), ("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(other.header("access-control-allow-origin"), None);
}

/// The binary with exactly `env` (nothing inherited).
fn service(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_webhook-service"));
    cmd.args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd
}

/// Runs to completion, killing it if it is still running after 10 s.
fn run(mut cmd: Command) -> (bool, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn webhook-service");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after 10 s; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn production_env(data_dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("HOST", "127.0.0.1".into()),
        ("PORT", "0".into()),
        ("WEBHOOK_DATA_DIR", data_dir.display().to_string()),
        ("JWT_SECRET", JWT_SECRET.into()),
        ("INTERNAL_SERVICE_SECRET", INTERNAL_SECRET.into()),
        ("WEBHOOK_ENCRYPTION_KEY", ENCRYPTION_KEY.into()),
    ]
}

#[test]
fn print_config_shows_settings_but_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let mut env = production_env(tmp.path());
    env.push((
        "DATABASE_URL",
        "postgres://webhooks:db-password-42@127.0.0.1:5432/webhooks".into(),
    ));
    env.push(("RATE_LIMIT_MAX_REQUESTS", "77".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ok, stdout, stderr) = run(service(&["serve", "--print-config"], &env));
    assert!(ok, "{stderr}");
    let config: Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(config["apiRateLimit"]["maxRequests"], 77);
    assert_eq!(config["jwtSecret"], "[set, redacted]");
    assert_eq!(config["store"], "postgres");
    assert_eq!(config["databasePoolSize"], 16, "the pool size in effect");
    for secret in [
        JWT_SECRET,
        INTERNAL_SECRET,
        ENCRYPTION_KEY,
        "db-password-42",
    ] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
        assert!(!stderr.contains(secret), "{secret} printed:\n{stderr}");
    }
    // It only prints: nothing was created in the data directory.
    assert!(!tmp.path().join("webhooks.db").exists());
}

#[test]
fn serve_refuses_to_start_without_its_secrets() {
    for missing in [
        "JWT_SECRET",
        "INTERNAL_SERVICE_SECRET",
        "WEBHOOK_ENCRYPTION_KEY",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let env = production_env(tmp.path());
        let env: Vec<(&str, &str)> = env
            .iter()
            .filter(|(k, _)| *k != missing)
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        let (ok, stdout, stderr) = run(service(&["serve"], &env));
        assert!(!ok, "started without {missing}: {stdout}");
        assert!(
            stderr.contains(missing),
            "the message names {missing}:\n{stderr}"
        );
        assert!(!stdout.contains("listening"), "{stdout}");
    }
}

#[tokio::test]
async fn serve_dev_starts_with_an_empty_environment_and_accepts_its_own_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().display().to_string();
    let env = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("WEBHOOK_DATA_DIR", data_dir.as_str()),
    ];
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut server = service(&["serve", "--dev"], &env)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log.reopen().unwrap()))
        .spawn()
        .unwrap();
    // Killed even if an assertion below fails.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = server.stdout.take().unwrap();
    let _server = KillOnDrop(server);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("webhook-service listening on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let base = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .unwrap_or_else(|_| {
            panic!(
                "serve --dev did not start:\n{}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            )
        });
    let stderr = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        stderr.contains("token --dev"),
        "says how to mint a token:\n{stderr}"
    );

    let (ok, token, err) = run(service(
        &["token", "--dev", "--user", "dev-user", "--admin"],
        &env,
    ));
    assert!(ok, "{err}");
    let token = token.trim();
    let client = reqwest::Client::new();
    let list = client
        .get(format!("{base}/api/v1/webhooks"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200, "{}", list.text().await.unwrap());
    // --dev allows plain http to loopback, as the guide's development URL needs.
    let created = client
        .post(format!("{base}/api/v1/webhooks"))
        .bearer_auth(token)
        .json(&json!({"url": "http://localhost:3000/webhooks/smartaihub", "eventTypes": ["user.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    // A token signed with anything else is still refused.
    let stranger = crate::api_support::hs256(
        &json!({"userId": "dev-user", "exp": crate::api_support::now_secs() + 60}),
        JWT_SECRET.as_bytes(),
    );
    let refused = client
        .get(format!("{base}/api/v1/webhooks"))
        .bearer_auth(stranger)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}

#[tokio::test]
async fn wrong_methods_get_the_error_envelope() {
    let app = spawn_app().await;
    let token = app.token("method-user", false);
    let auth = format!("Bearer {token}");
    for (method, path) in [
        (Method::DELETE, "/api/v1/webhooks"),
        (Method::POST, "/health"),
        (Method::PUT, "/api/v1/event-types"),
    ] {
        let answer = raw(
            &app,
            method.clone(),
            path,
            &[("authorization", auth.as_str())],
            "",
        )
        .await;
        assert_eq!(answer.status, 405, "{method} {path}: {}", answer.body);
        assert_eq!(answer.error_code(), "METHOD_NOT_ALLOWED", "{method} {path}");
        assert!(
            answer.header("allow").is_some(),
            "{method} {path} names the allowed methods"
        );
    }
}
