//! The API's edges under clients that do not follow the happy path: answers
//! given before a body was read keep reused connections usable; actions
//! without fields refuse bodies; every event, in a batch or alone, meets the
//! same size limit; text that strict JSON parsers refuse, URLs the URL parser
//! would rewrite and misspelt fields are refused, naming the field; and
//! every error's `details` has one shape.

use std::time::Duration;

use crate::api_support::{Answer, get, patch, post, raw};
use crate::common::{INTERNAL_SECRET, TestApp, spawn_app, spawn_app_with};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.base.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

/// One HTTP/1.1 answer read from `stream`: its head (lowercase) and body.
/// `None` if the connection ends first.
async fn read_answer(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let read = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        };
        let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().expect("content-length"))
            .unwrap_or(0);
        while got.len() < head_end + length {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        Some((head, got[head_end..head_end + length].to_vec()))
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("an answer within 20 s")
}

fn status_of(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// After an answer on a kept connection, the next request on it must work:
/// either the answer said `Connection: close` (and the client opens a new
/// connection), or the connection carries the next request.
async fn next_request_works(stream: &mut TcpStream, head: &str) -> bool {
    if head.contains("\r\nconnection: close") {
        // Told so: the server closes it, and a client does not reuse it.
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut rest))
            .await
            .is_ok();
        return closed;
    }
    if stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    matches!(read_answer(stream).await, Some((h, _)) if status_of(&h) == 200)
}

#[tokio::test]
async fn an_answer_before_the_body_is_read_leaves_no_broken_connection() {
    // Dozens of wrong credentials from one address: the limit on failed
    // authentications (tested on its own) would answer 429 part-way.
    let app = spawn_app_with(&[("AUTH_FAILURES_PER_MINUTE", "0")]).await;
    let body = json!({"eventType": "user.created", "userId": "u1", "data": {}}).to_string();
    let token = app.token("keepalive-user", false);
    let cases = [
        // The authentication layer answers before the handler reads the body.
        (
            "/internal/webhooks/trigger",
            "wrong-secret".to_string(),
            401,
        ),
        ("/internal/events/batch", "wrong-secret".to_string(), 401),
        ("/api/v1/webhooks", "not-a-jwt".to_string(), 401),
        // No route: nothing reads the body.
        ("/api/v1/nowhere", token.clone(), 404),
    ];
    for (path, bearer, expected) in cases {
        for _ in 0..3 {
            let mut stream = connect(&app).await;
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bearer}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            // The body follows the head a little later, as over a real network.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let (answer, _) = read_answer(&mut stream).await.expect("an answer");
            assert_eq!(status_of(&answer), expected, "{path}: {answer}");
            assert!(
                next_request_works(&mut stream, &answer).await,
                "{path}: after {answer} the connection is neither closed as announced nor usable"
            );
        }
    }

    // An answer after the body was read keeps the connection for the next request.
    let mut stream = connect(&app).await;
    let head = format!(
        "POST /internal/webhooks/trigger HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {INTERNAL_SECRET}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (answer, _) = read_answer(&mut stream).await.expect("an answer");
    assert_eq!(status_of(&answer), 202, "{answer}");
    assert!(!answer.contains("connection: close"), "{answer}");
    assert!(next_request_works(&mut stream, &answer).await);

    // A pooled client reusing its connections sees only answers, no errors.
    for _ in 0..30 {
        let response = app
            .client
            .post(app.url("/internal/webhooks/trigger"))
            .bearer_auth("wrong-secret")
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("an answer, not a connection error");
        assert_eq!(response.status(), 401);
    }
}

async fn create(app: &TestApp, token: &str) -> Value {
    app.create_webhook(token, "http://127.0.0.1:9/hook", &["user.created"], None)
        .await
}

async fn secret_of(app: &TestApp, token: &str, id: &str) -> String {
    let answer = get(app, &format!("/api/v1/webhooks/{id}/secret"), token).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["data"]["secret"].as_str().unwrap().to_string()
}

async fn post_raw(
    app: &TestApp,
    path: &str,
    token: &str,
    body: impl Into<reqwest::Body>,
) -> Answer {
    let auth = format!("Bearer {token}");
    raw(
        app,
        Method::POST,
        path,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await
}

#[tokio::test]
async fn actions_without_fields_refuse_bodies_but_take_none_or_an_empty_object() {
    let app = spawn_app().await;
    let token = app.token("action-bodies", false);
    let webhook = create(&app, &token).await;
    let id = webhook["id"].as_str().unwrap();
    let rotate = format!("/api/v1/webhooks/{id}/rotate-secret");
    let toggle = format!("/api/v1/webhooks/{id}/toggle");
    let before = secret_of(&app, &token, id).await;

    // 10 MB of nonsense: refused by size before anything happens. The
    // server answers after the first KiB and closes the connection, so the
    // client may see the connection reset while it is still sending.
    let big = "a".repeat(10 * 1024 * 1024);
    for path in [&rotate, &toggle] {
        let sent = app
            .client
            .post(app.url(path))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await;
        if let Ok(response) = sent {
            assert_eq!(response.status(), 413, "{path}");
        }
    }
    // 64 KiB fits in the socket buffers: the answer is read.
    let nonsense = "a".repeat(64 * 1024);
    for path in [&rotate, &toggle] {
        let answer = post_raw(&app, path, &token, nonsense.clone()).await;
        assert_eq!(answer.status, 413, "{}", answer.body);
    }
    // Small nonsense and fields these actions do not take: 400.
    let answer = post_raw(&app, &rotate, &token, "aaaa").await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.error_code(), "INVALID_JSON");
    let answer = post_raw(
        &app,
        &rotate,
        &token,
        r#"{"secret": "mine-0123456789abcdef"}"#,
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.bad_fields(), ["secret"]);
    let answer = post_raw(&app, &toggle, &token, r#"{"enabled": false}"#).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.bad_fields(), ["enabled"]);
    let answer = post_raw(&app, &toggle, &token, "[]").await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(secret_of(&app, &token, id).await, before, "nothing rotated");
    let (_, current) = app.get(&format!("/api/v1/webhooks/{id}"), &token).await;
    assert_eq!(current["data"]["isActive"], true, "nothing toggled");

    // What the front end sends: no body, or `{}`.
    let answer = raw(
        &app,
        Method::POST,
        &rotate,
        &[("authorization", &format!("Bearer {token}"))],
        "",
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = post(&app, &rotate, &token, json!({})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_ne!(secret_of(&app, &token, id).await, before);
    let answer = post_raw(&app, &rotate, &token, "null").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = post(&app, &toggle, &token, json!({})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["data"]["isActive"], false);
    let answer = post_raw(&app, &toggle, &token, "").await;
    assert_eq!(answer.body["data"]["isActive"], true);
    // `isActive` sets the state, so a repeated request does not flip it back.
    for _ in 0..2 {
        let answer = post(&app, &toggle, &token, json!({"isActive": false})).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["data"]["isActive"], false);
    }

    // Retry takes no fields either.
    let retry = format!("/api/v1/webhooks/{id}/deliveries/dlv_01J0000000000000000000000Z/retry");
    let answer = post_raw(&app, &retry, &token, r#"{"force": true}"#).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.bad_fields(), ["force"]);
    let answer = post(&app, &retry, &token, json!({})).await;
    assert_eq!(answer.status, 404, "{}", answer.body);
}

#[tokio::test]
async fn misspelt_fields_are_refused_naming_them() {
    let app = spawn_app().await;
    let token = app.token("misspelt-fields", false);
    let answer = post(
        &app,
        "/api/v1/webhooks",
        &token,
        json!({"url": "http://127.0.0.1:9/hook", "eventTypes": ["user.created"], "evnetTypes": ["*"]}),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.bad_fields(), ["evnetTypes"]);
    assert!(
        answer.message().contains("did you mean eventTypes?"),
        "{}",
        answer.message()
    );
    let (_, list) = app.get("/api/v1/webhooks", &token).await;
    assert_eq!(list["data"], json!([]), "nothing created");

    // The front end's names are all known: `events` for `eventTypes`.
    let answer = post(
        &app,
        "/api/v1/webhooks",
        &token,
        json!({"url": "http://127.0.0.1:9/hook", "events": ["user.*"], "secret": "s3cret-0123456789abcdef",
               "description": "d", "isActive": true}),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let id = answer.body["data"]["id"].as_str().unwrap().to_string();
    // Both names with different lists: one would be dropped silently.
    let answer = patch(
        &app,
        &format!("/api/v1/webhooks/{id}"),
        &token,
        json!({"eventTypes": ["user.created"], "events": ["credit.*"]}),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.bad_fields(), ["events"]);
    let answer = patch(
        &app,
        &format!("/api/v1/webhooks/{id}"),
        &token,
        json!({"eventTypes": ["credit.*"], "events": ["credit.*"]}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    let answer = patch(
        &app,
        &format!("/api/v1/webhooks/{id}"),
        &token,
        json!({"descripton": "x", "isActive": false}),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.bad_fields(), ["descripton"]);
    let answer = post(
        &app,
        &format!("/api/v1/webhooks/{id}/replay"),
        &token,
        json!({"since": "2025-01-01T00:00:00Z", "stauts": "all"}),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.bad_fields(), ["stauts"]);
    let answer = post(
        &app,
        &format!("/api/v1/webhooks/{id}/test"),
        &token,
        json!({"eventType": "user.created", "paylaod": {"a": 1}}),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.bad_fields(), ["paylaod"]);
}

#[tokio::test]
async fn urls_the_parser_would_rewrite_are_refused_naming_the_problem() {
    let app = spawn_app().await;
    let token = app.token("url-rewrites", false);
    for (url, fragment) in [
        (
            "https://example.com/\r\nX-Injected: 1",
            "control character U+000D",
        ),
        ("https://example.com/a b", "white space"),
        ("https:///x", "empty host"),
        ("https:example.com", "'//' after 'https:'"),
    ] {
        let answer = post(
            &app,
            "/api/v1/webhooks",
            &token,
            json!({"url": url, "eventTypes": ["*"]}),
        )
        .await;
        assert_eq!(answer.status, 400, "{url:?}: {}", answer.body);
        assert_eq!(answer.bad_fields(), ["url"], "{url:?}");
        assert!(
            answer.message().contains(fragment),
            "{url:?}: {}",
            answer.message()
        );
    }
    let label = "a".repeat(300);
    let answer = post(
        &app,
        "/api/v1/webhooks",
        &token,
        json!({"url": format!("https://{label}.example.com/"), "eventTypes": ["*"]}),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(answer.message().contains("label of 300 characters"));
}

fn trigger_text(data: &str, metadata: &str) -> String {
    format!(r#"{{"eventType":"user.created","userId":"u1","data":{data},"metadata":{metadata}}}"#)
}

#[tokio::test]
async fn unpaired_surrogate_escapes_are_refused_in_data_and_metadata() {
    let app = spawn_app().await;
    for (body, field) in [
        (trigger_text(r#"{"name":"\ud800"}"#, "{}"), "data"),
        (trigger_text(r#"{"\udc00":1}"#, "{}"), "data"),
        (trigger_text("{}", r#"{"source":"\ud800x"}"#), "metadata"),
    ] {
        let answer = post_raw(
            &app,
            "/internal/webhooks/trigger",
            INTERNAL_SECRET,
            body.clone(),
        )
        .await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        assert_eq!(answer.bad_fields(), [field], "{body}: {}", answer.body);
        assert!(
            answer.message().contains("surrogate"),
            "{}",
            answer.message()
        );
    }
    // A proper pair is an ordinary character.
    let body = trigger_text(r#"{"smile":"\ud83d\ude00"}"#, r#"{"s":"\ud83d\ude00"}"#);
    let answer = post_raw(&app, "/internal/webhooks/trigger", INTERNAL_SECRET, body).await;
    assert_eq!(answer.status, 202, "{}", answer.body);

    // In a batch: that event refused, the other stored.
    let batch = format!(
        r#"{{"events":[{},{}]}}"#,
        trigger_text("{}", r#"{"a":"\udfff"}"#),
        trigger_text("{}", "{}")
    );
    let answer = post_raw(&app, "/internal/events/batch", INTERNAL_SECRET, batch).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let results = &answer.body["data"]["results"];
    assert_eq!(results[0]["success"], false);
    assert_eq!(results[0]["errors"][0]["field"], "metadata", "{results}");
    assert_eq!(results[1]["success"], true);
}

#[tokio::test]
async fn every_event_of_a_batch_meets_the_single_event_size_limit() {
    let app = spawn_app().await;
    let big = "x".repeat(5 * 1024 * 1024);
    let events = json!({"events": [
        {"eventType": "user.created", "userId": "u1", "data": {"n": 0}},
        {"eventType": "user.created", "userId": "u1", "data": {"blob": big}},
        {"eventType": "user.created", "userId": "u1", "data": {"n": 2}},
    ]});
    let answer = post(&app, "/internal/events/batch", INTERNAL_SECRET, events).await;
    assert_eq!(answer.status, 202);
    assert_eq!(answer.body["data"]["accepted"], 2);
    let rejected = &answer.body["data"]["results"][1];
    assert_eq!(rejected["index"], 1);
    assert_eq!(rejected["success"], false);
    assert_eq!(rejected["errors"][0]["field"], "event");
    assert!(
        rejected["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("at most 1048576 bytes"),
        "{rejected}"
    );
    // Just under the limit, as on the trigger route, is stored.
    let fits = "x".repeat(1024 * 1024 - 200);
    let events =
        json!({"events": [{"eventType": "user.created", "userId": "u1", "data": {"blob": fits}}]});
    let answer = post(&app, "/internal/events/batch", INTERNAL_SECRET, events).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
}

#[tokio::test]
async fn error_details_have_one_shape_on_every_route() {
    let app = spawn_app().await;
    let token = app.token("details-shape", false);
    let is_problem_list = |answer: &Answer| {
        let details = answer.body["error"]["details"]
            .as_array()
            .unwrap_or_else(|| panic!("details is an array: {}", answer.body));
        assert!(!details.is_empty());
        for problem in details {
            let keys: Vec<&String> = problem.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["field", "message"], "{problem}");
        }
    };
    // The producers' route: an unknown type (its message lists the known ones).
    let answer = post(
        &app,
        "/internal/webhooks/trigger",
        INTERNAL_SECRET,
        json!({"eventType": "user.exploded", "userId": "u1", "data": {}}),
    )
    .await;
    assert_eq!(answer.status, 400);
    is_problem_list(&answer);
    assert_eq!(answer.bad_fields(), ["eventType"]);
    assert!(answer.message().contains("known types are: user.created"));
    // A batch where nothing is valid: each problem, placed in the batch.
    let answer = post(
        &app,
        "/internal/events/batch",
        INTERNAL_SECRET,
        json!({"events": [{"eventType": "nope", "userId": "u1", "data": {}}, {"eventType": "user.created", "data": 1}]}),
    )
    .await;
    assert_eq!(answer.status, 400);
    is_problem_list(&answer);
    assert_eq!(
        answer.bad_fields(),
        ["events[0].eventType", "events[1].userId", "events[1].data"]
    );
    // The user API.
    let answer = post(&app, "/api/v1/webhooks", &token, json!({"url": 5})).await;
    assert_eq!(answer.status, 400);
    is_problem_list(&answer);
}

#[tokio::test]
async fn the_openapi_document_states_the_enforced_constraints_and_links() {
    let app = spawn_app().await;
    let spec: Value = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let op = |path: &str, method: &str| spec["paths"][path][method].clone();
    let param = |path: &str, method: &str, name: &str| {
        op(path, method)["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name).cloned())
            .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))
    };
    let limit = param("/api/v1/webhooks", "get", "limit");
    assert_eq!(limit["schema"]["minimum"], 1, "{limit}");
    assert_eq!(limit["schema"]["maximum"], 100, "{limit}");
    let page = param("/api/v1/webhooks/{id}/logs", "get", "page");
    assert_eq!(page["schema"]["minimum"], 1, "{page}");
    let window = param("/api/v1/webhooks/{id}/stats", "get", "window");
    let pattern = window["schema"]["pattern"]
        .as_str()
        .expect("window pattern");
    assert!(pattern.contains("ms"), "{pattern}");
    // No body, `{}` or `null` on actions without fields.
    let rotate = op("/api/v1/webhooks/{id}/rotate-secret", "post");
    assert_eq!(
        rotate["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/NoFields"
    );

    // Creating requires url and the event types (under either name).
    let create = op("/api/v1/webhooks", "post");
    let schema = &create["requestBody"]["content"]["application/json"]["schema"];
    let schema = match schema["$ref"].as_str() {
        Some(reference) => spec
            .pointer(reference.trim_start_matches('#'))
            .unwrap()
            .clone(),
        None => schema.clone(),
    };
    assert_eq!(schema["required"], json!(["url"]), "{schema}");
    assert!(schema["anyOf"].is_array(), "{schema}");
    assert_eq!(schema["additionalProperties"], false, "{schema}");

    // An event's required fields, on the producers' route too.
    let trigger = op("/internal/webhooks/trigger", "post");
    let reference = trigger["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .expect("the trigger body is a named schema");
    let event = spec.pointer(reference.trim_start_matches('#')).unwrap();
    assert_eq!(event["required"], json!(["eventType", "userId", "data"]));

    // The create answer links its id to the operations on `{id}`.
    let links = create["responses"]["201"]["links"]
        .as_object()
        .expect("links on the 201 of create");
    let mut targets: Vec<&str> = links
        .values()
        .filter_map(|l| l["operationId"].as_str())
        .collect();
    targets.sort_unstable();
    for expected in [
        "get_webhook",
        "delete",
        "toggle",
        "rotate_secret",
        "list_deliveries",
    ] {
        assert!(
            targets.contains(&expected),
            "{expected} not linked: {targets:?}"
        );
    }
    for link in links.values() {
        assert_eq!(
            link["parameters"]["id"], "$response.body#/data/id",
            "{link}"
        );
        let target = link["operationId"].as_str().unwrap();
        let exists = spec["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .any(|o| o["operationId"] == target);
        assert!(exists, "link to a missing operation {target}");
    }
}
