//! Helpers shared by the `api_*` black-box tests: the HTTP verbs the harness
//! lacks, raw requests (any body, content type or header), hand-made JWTs and
//! checks of the error envelope.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::common::{JWT_SECRET, TestApp};

/// A well-formed webhook id that no test ever creates.
pub const NONEXISTENT_WEBHOOK: &str = "wh_01J0000000000000000000000Z";
/// A well-formed delivery id that no test ever creates.
pub const NONEXISTENT_DELIVERY: &str = "dlv_01J0000000000000000000000Z";

/// An answer: status, parsed body (a JSON string when it is not JSON), headers.
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The error envelope's `error.code`, after checking the envelope's shape.
    pub fn error_code(&self) -> &str {
        assert_eq!(self.body["success"], false, "not an error: {}", self.body);
        assert_eq!(
            self.body["message"], self.body["error"]["message"],
            "top-level message mirrors error.message: {}",
            self.body
        );
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// `error.message`.
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }

    /// The fields named in `error.details` of a validation error.
    pub fn bad_fields(&self) -> Vec<String> {
        self.body["error"]["details"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|p| p["field"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Sends any method with an optional JSON body and bearer token.
pub async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let (status, body, headers) = app.request(method, path, token, body).await;
    Answer {
        status,
        body,
        headers,
    }
}

/// Sends raw bytes with the given headers.
pub async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> Answer {
    let mut req = app.client.request(method, app.url(path)).body(body);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        body,
        headers,
    }
}

pub async fn put(app: &TestApp, path: &str, token: &str, body: Value) -> Answer {
    call(app, Method::PUT, path, Some(token), Some(body)).await
}

pub async fn patch(app: &TestApp, path: &str, token: &str, body: Value) -> Answer {
    call(app, Method::PATCH, path, Some(token), Some(body)).await
}

pub async fn delete(app: &TestApp, path: &str, token: &str) -> Answer {
    call(app, Method::DELETE, path, Some(token), None).await
}

pub async fn get(app: &TestApp, path: &str, token: &str) -> Answer {
    call(app, Method::GET, path, Some(token), None).await
}

pub async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> Answer {
    call(app, Method::POST, path, Some(token), Some(body)).await
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// An HS256 token over `claims`, signed with `key`.
pub fn hs256(claims: &Value, key: &[u8]) -> String {
    sign(Algorithm::HS256, claims, &EncodingKey::from_secret(key))
}

/// An HS256 token signed with the service's `JWT_SECRET`.
pub fn service_token(claims: &Value) -> String {
    hs256(claims, JWT_SECRET.as_bytes())
}

pub fn sign(alg: Algorithm, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).expect("encode token")
}

/// A token exactly like auth-service's: `userId`, `email`, `roles`, `jti`, 15 minutes.
pub fn platform_token(user_id: &str, admin: bool) -> String {
    let roles = if admin {
        json!(["user", "admin"])
    } else {
        json!(["user"])
    };
    let now = now_secs();
    service_token(&json!({
        "userId": user_id,
        "email": format!("{user_id}@example.com"),
        "roles": roles,
        "jti": format!("jti-{user_id}-{now}"),
        "iat": now,
        "exp": now + 15 * 60,
    }))
}

/// A body that registers a webhook to `url` for `types`.
pub fn webhook_body(url: &str, types: &[&str]) -> Value {
    json!({"url": url, "eventTypes": types})
}
