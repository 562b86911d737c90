//! Endpoints behind a private certificate authority: extra trust roots from
//! `WEBHOOK_CA_FILE`, and a client certificate per webhook for endpoints
//! that demand one (mutual TLS).

use std::time::Duration;

use crate::common::{TestApp, spawn_app, spawn_app_with};
use serde_json::{Value, json};
use webhook_testkit::{Handshakes, TestCa, TlsCountingReceiver, TlsReceiver};

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

/// Polls `count` until it reaches `n` (or 30 s pass) and returns it.
async fn wait_for_count(count: impl Fn() -> usize, n: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while count() < n && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    count()
}

/// The service's open TCP connections to any of `ports` (its socket file
/// descriptors matched with the kernel's TCP table). Counted at the
/// service: a receiver learns of a close only when it next reads, so it can
/// count a connection closed for a new one a moment too long.
fn connections_to(pid: u32, ports: &[u16]) -> usize {
    let sockets: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter_map(|link| {
            let inode = link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?;
            Some(inode.to_string())
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            // sl local remote state tx:rx tr:when retrnsmt uid timeout inode
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = fields
                .get(2)
                .and_then(|remote| remote.rsplit(':').next())
                .and_then(|port| u16::from_str_radix(port, 16).ok());
            fields.get(9).is_some_and(|inode| sockets.contains(*inode))
                && remote_port.is_some_and(|port| ports.contains(&port))
        })
        .count()
}

/// Five events to six slow HTTPS endpoints under `WEBHOOK_MAX_CONNECTIONS`
/// = `bound`: the most connections the service had open to them at once
/// (sampled every 2 ms), after checking that every delivery arrived.
async fn peak_connections_under(bound: &str) -> usize {
    let ca = TestCa::generate().unwrap();
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    let receiver = TlsCountingReceiver::start(&ca, &[loopback], 6, 64)
        .await
        .unwrap();
    // Answers take a while, so that every endpoint has work waiting at once.
    receiver.set_delay(Duration::from_millis(50));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let app = spawn_app_with(&[
        ("WEBHOOK_CA_FILE", ca_file.to_str().unwrap()),
        ("WEBHOOK_MAX_CONNECTIONS", bound),
    ])
    .await;
    let token = app.token("user-bound", false);
    for endpoint in 0..6 {
        create(
            &app,
            &token,
            json!({"url": receiver.url(endpoint, "/hook"), "eventTypes": ["*"]}),
        )
        .await;
    }
    let pid = app.pid().unwrap();
    let ports: Vec<u16> = receiver.endpoints().iter().map(|a| a.port()).collect();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = std::thread::spawn({
        let done = done.clone();
        move || {
            // One more sample once every delivery has arrived: the pool
            // still holds its idle connections then, and on a loaded
            // machine one pass over /proc can take longer than the burst.
            let mut peak = 0;
            loop {
                let stop = done.load(std::sync::atomic::Ordering::Relaxed);
                peak = peak.max(connections_to(pid, &ports));
                if stop {
                    return peak;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    for i in 0..5 {
        let (status, body) = app
            .trigger("credit.low", "user-bound", json!({"i": i}))
            .await;
        assert_eq!(status, 202, "{body}");
    }
    assert!(wait_for_count(|| receiver.count(), 30).await >= 30);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let records = receiver.take_records();
    let mut per_event = std::collections::HashMap::new();
    for (id, _) in &records {
        *per_event.entry(id.clone()).or_insert(0) += 1;
    }
    assert_eq!(per_event.len(), 5, "{per_event:?}");
    assert!(per_event.values().all(|n| *n >= 6), "{per_event:?}");
    assert_eq!(receiver.handshakes().failed, 0);
    peak
}

#[tokio::test]
async fn open_connections_stay_within_webhook_max_connections_and_every_delivery_arrives() {
    let peak = peak_connections_under("2").await;
    assert!(peak <= 2, "{peak} connections were open at once");
    // The same work without a tight bound opens more: the bound is what held it.
    let unbounded = peak_connections_under("100").await;
    assert!(
        unbounded > 2,
        "only {unbounded} connections without the bound"
    );
}

#[tokio::test]
async fn a_new_connection_to_an_endpoint_resumes_its_tls_session() {
    let ca = TestCa::generate().unwrap();
    let addresses = [
        std::net::IpAddr::from([127, 0, 0, 1]),
        std::net::IpAddr::from([127, 0, 0, 2]),
    ];
    let receiver = TlsCountingReceiver::start(&ca, &addresses, 1, 8)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    // One connection at most: each delivery to the other endpoint closes it.
    let app = spawn_app_with(&[
        ("WEBHOOK_CA_FILE", ca_file.to_str().unwrap()),
        ("WEBHOOK_MAX_CONNECTIONS", "1"),
    ])
    .await;
    for (user, endpoint) in [("user-a", 0), ("user-b", 1)] {
        let token = app.token(user, false);
        create(
            &app,
            &token,
            json!({"url": receiver.url(endpoint, "/hook"), "eventTypes": ["*"]}),
        )
        .await;
    }
    for (n, user) in ["user-a", "user-b", "user-a"].into_iter().enumerate() {
        let (status, body) = app.trigger("credit.low", user, json!({"n": n})).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(wait_for_count(|| receiver.count(), n + 1).await, n + 1);
    }
    assert_eq!(
        receiver.handshakes(),
        Handshakes {
            full: 2,
            resumed: 1,
            failed: 0
        },
        "the second connection to the first endpoint resumes its session"
    );
}
