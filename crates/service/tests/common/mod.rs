//! Black-box test harness: starts the real `webhook-service` binary on an
//! ephemeral port with a fresh data directory and talks to it over HTTP.
#![allow(dead_code)]

pub mod figures;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef";
pub const INTERNAL_SECRET: &str = "test-internal-secret-0123456789";
pub const ENCRYPTION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A running service.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    child: Option<Child>,
    pub log_path: PathBuf,
    env: Vec<(String, String)>,
    /// The `webhook-service` binary it runs (this build's unless told otherwise).
    binary: PathBuf,
}

/// Environment of a test instance: secrets, loopback allowed, quiet logs.
fn base_env(data_dir: &Path) -> Vec<(String, String)> {
    [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("JWT_SECRET", JWT_SECRET),
        ("INTERNAL_SERVICE_SECRET", INTERNAL_SECRET),
        ("WEBHOOK_ENCRYPTION_KEY", ENCRYPTION_KEY),
        ("WEBHOOK_ALLOWED_CIDRS", "127.0.0.0/8,::1/128"),
        ("LOG_FORMAT", "json"),
        ("LOG_LEVEL", "info"),
        ("WEBHOOK_TIMEOUT", "2000"),
        ("WEBHOOK_RETRY_SCHEDULE", "200ms,400ms,800ms"),
        ("WEBHOOK_RETRY_JITTER", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([(
        "WEBHOOK_DATA_DIR".to_string(),
        data_dir.display().to_string(),
    )])
    .collect()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts the service with extra environment (overriding the defaults).
pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    let mut app = unstarted_app(extra);
    app.start().await;
    app
}

/// Starts another build of the service (a previous release's binary, say).
pub async fn spawn_binary_with(binary: &Path, extra: &[(&str, &str)]) -> TestApp {
    let mut app = unstarted_app(extra);
    app.set_binary(binary);
    app.start().await;
    app
}

fn unstarted_app(extra: &[(&str, &str)]) -> TestApp {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().to_path_buf();
    let mut env = base_env(&data_dir);
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
    TestApp {
        base: String::new(),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        log_path: data_dir.join("service.log"),
        data_dir,
        _tmp: Some(tmp),
        child: None,
        env,
        binary: PathBuf::from(env!("CARGO_BIN_EXE_webhook-service")),
    }
}

impl TestApp {
    /// (Re)starts the process on the same data directory (a new port).
    pub async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let mut cmd = Command::new(&self.binary);
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = cmd.spawn().expect("spawn webhook-service");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(url) = line.strip_prefix("webhook-service listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let base = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
            .await
            .expect("join");
        let base = match base {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "service did not start; log:\n{}",
                    std::fs::read_to_string(&self.log_path).unwrap_or_default()
                );
            }
        };
        self.base = base;
        self.child = Some(child);
    }

    /// Runs `binary` (another release's, say) from the next [`start`](Self::start) on.
    pub fn set_binary(&mut self, binary: &Path) {
        self.binary = binary.to_path_buf();
    }

    /// The running service's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGKILL and waits for the process to die.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits up to `limit` for a clean exit; returns the exit success.
    pub fn terminate(&mut self, limit: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Sets (or, with `None`, removes) a variable for the next [`start`](Self::start).
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            self.env.push((key.to_string(), value.to_string()));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Mints a token with the service's own CLI (as a user would).
    pub fn token(&self, user: &str, admin: bool) -> String {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_webhook-service"));
        cmd.args([
            "token",
            "--user",
            user,
            "--email",
            &format!("{user}@example.com"),
        ])
        .env_clear()
        .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if admin {
            cmd.arg("--admin");
        }
        let out = cmd.output().expect("token command");
        assert!(
            out.status.success(),
            "token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_string()
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value, headers)
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let (s, v, _) = self
            .request(reqwest::Method::GET, path, Some(token), None)
            .await;
        (s, v)
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let (s, v, _) = self
            .request(reqwest::Method::POST, path, Some(token), Some(body))
            .await;
        (s, v)
    }

    /// Creates a webhook from a whole body (any optional fields); the
    /// webhook as read.
    pub async fn create_webhook_from(&self, token: &str, body: Value) -> Value {
        let (status, value) = self.post("/api/v1/webhooks", token, body).await;
        assert_eq!(status, 201, "create webhook: {value}");
        value["data"].clone()
    }

    /// `PATCH /api/v1/webhooks/{id}`: status and answer.
    pub async fn patch_webhook(&self, token: &str, id: &str, body: Value) -> (u16, Value) {
        let (status, value, _) = self
            .request(
                reqwest::Method::PATCH,
                &format!("/api/v1/webhooks/{id}"),
                Some(token),
                Some(body),
            )
            .await;
        (status, value)
    }

    pub async fn create_webhook(
        &self,
        token: &str,
        url: &str,
        event_types: &[&str],
        secret: Option<&str>,
    ) -> Value {
        let mut body = json!({"url": url, "eventTypes": event_types});
        if let Some(s) = secret {
            body["secret"] = json!(s);
        }
        let (status, value) = self.post("/api/v1/webhooks", token, body).await;
        assert_eq!(status, 201, "create webhook: {value}");
        value["data"].clone()
    }

    /// The value of the `/metrics` line that starts with `line_start`.
    pub async fn metric(&self, line_start: &str) -> u64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(line_start))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{line_start} not in metrics:\n{text}"))
    }

    /// Posts an event the way the platform's producers do.
    pub async fn trigger(&self, event_type: &str, user_id: &str, data: Value) -> (u16, Value) {
        let (s, v, _) = self
            .request(
                reqwest::Method::POST,
                "/internal/webhooks/trigger",
                Some(INTERNAL_SECRET),
                Some(json!({"eventType": event_type, "userId": user_id, "data": data,
                            "metadata": {"service": "core-service", "timestamp": "2025-01-01T00:00:00.000Z"}})),
            )
            .await;
        (s, v)
    }

    /// Polls the delivery log of a webhook until `pred` holds for it.
    pub async fn wait_for_logs(
        &self,
        token: &str,
        webhook_id: &str,
        timeout: Duration,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let (status, body) = self
                .get(
                    &format!("/api/v1/webhooks/{webhook_id}/logs?limit=100"),
                    token,
                )
                .await;
            assert_eq!(status, 200, "{body}");
            let items = body["data"].as_array().cloned().unwrap_or_default();
            if pred(&items) {
                return items;
            }
            if start.elapsed() > timeout {
                panic!(
                    "condition not met within {timeout:?}; logs: {}",
                    Value::Array(items)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The fields an error answer names in its `details`.
pub fn error_fields(body: &Value) -> Vec<String> {
    body["error"]["details"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|p| p["field"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}
