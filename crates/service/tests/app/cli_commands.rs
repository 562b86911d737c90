//! The command line, end to end: each command runs as a process against a
//! real service started by the test, and its real output is checked.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{INTERNAL_SECRET, TestApp, spawn_app, spawn_app_with};
use serde_json::{Value, json};
use webhook_testkit::{Behavior, Receiver};

const USER: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

/// The CLI with a clean environment (no token or URL leaking in from the shell).
fn cli(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_webhook-service"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null());
    cmd
}

/// Runs the CLI to completion off the async runtime.
async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("run webhook-service"))
        .await
        .expect("join")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// A long-running CLI process whose stdout and stderr lines are collected.
struct Running {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
}

fn lines_of(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn webhook-service");
        let stdout = lines_of(child.stdout.take().expect("stdout"));
        let stderr = lines_of(child.stderr.take().expect("stderr"));
        Running {
            child,
            stdout,
            stderr,
            stderr_seen: Vec::new(),
        }
    }

    /// The first stderr line containing `needle` (panics with what was seen after the deadline).
    async fn stderr_line(&mut self, needle: &str) -> String {
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            match self.stderr.try_recv() {
                Ok(line) => {
                    self.stderr_seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                // Polled, not blocked on: the test's receivers run on this thread.
                Err(mpsc::TryRecvError::Empty) => tokio::time::sleep(POLL).await,
                Err(mpsc::TryRecvError::Disconnected) => break,
            }
        }
        panic!(
            "no stderr line with {needle:?}; seen: {:#?}",
            self.stderr_seen
        );
    }

    /// The next stdout line parsed as JSON that satisfies `pred`.
    async fn json_line(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        let mut seen = Vec::new();
        while start.elapsed() < DEADLINE {
            match self.stdout.try_recv() {
                Ok(line) => {
                    if let Ok(value) = serde_json::from_str::<Value>(&line)
                        && pred(&value)
                    {
                        return value;
                    }
                    seen.push(line);
                }
                Err(mpsc::TryRecvError::Empty) => tokio::time::sleep(POLL).await,
                Err(mpsc::TryRecvError::Disconnected) => break,
            }
        }
        panic!("no matching stdout line; seen: {seen:#?}");
    }

    /// SIGTERM, then the remaining stderr once the process exited.
    fn terminate(mut self) -> String {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut rest = self.stderr_seen.join("\n");
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(500)) {
            rest.push('\n');
            rest.push_str(&line);
        }
        rest
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connection<'a>(app: &'a TestApp, token: &'a str) -> Vec<&'a str> {
    vec!["--url", &app.base, "--token", token]
}

#[tokio::test]
async fn listen_verifies_forwards_and_flags_a_forged_delivery() {
    let app = spawn_app().await;
    let token = app.token(USER, false);
    let developer_app = Receiver::start(Behavior::Status(201)).await.expect("app");
    let forward = developer_app.url("/hooks");
    let mut args = vec![
        "listen",
        "--port",
        "0",
        "--json",
        "--secret",
        SECRET,
        "--register",
        "user.created",
        "--forward-to",
        &forward,
    ];
    args.extend(connection(&app, &token));
    let mut listen = Running::start(cli(&args));
    let endpoint = listen
        .stderr_line("listening on ")
        .await
        .trim_start_matches("listening on ")
        .to_string();
    let registered = listen.stderr_line("registered webhook ").await;
    let webhook_id = registered
        .split_whitespace()
        .nth(2)
        .expect("webhook id")
        .to_string();

    let (status, _) = app
        .trigger("user.created", USER, json!({"email": "a@example.com"}))
        .await;
    assert_eq!(status, 202);
    let delivery = listen.json_line(|v| v["eventType"] == "user.created").await;
    assert_eq!(delivery["verified"], true, "{delivery}");
    assert_eq!(delivery["signatures"]["X-Webhook-Signature"], "verified");
    assert_eq!(delivery["signatures"]["standardWebhooks"], "verified");
    assert_eq!(delivery["attempt"], 1);
    assert!(
        delivery["deliveryId"]
            .as_str()
            .is_some_and(|d| d.starts_with("dlv_"))
    );
    assert_eq!(delivery["envelope"]["data"]["email"], "a@example.com");
    assert_eq!(delivery["forwarded"]["status"], 201);
    assert_eq!(delivery["answered"], 201);
    // The app got the exact request: the same body and signature headers.
    let relayed = developer_app
        .wait_for(1, DEADLINE)
        .await
        .expect("forwarded request");
    relayed[0]
        .verify_signatures(SECRET)
        .expect("relayed signatures verify");
    assert_eq!(relayed[0].json(), delivery["envelope"]);
    // The service recorded the app's answer.
    let logs = app
        .wait_for_logs(&token, &webhook_id, DEADLINE, |items| {
            items.iter().any(|d| d["lastStatusCode"] == 201)
        })
        .await;
    assert_eq!(logs[0]["status"], "delivered");

    // A forged delivery: right shape, wrong signatures.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .to_string();
    let forged = app
        .client
        .post(&endpoint)
        .header("content-type", "application/json")
        .header("x-webhook-event", "user.created")
        .header("x-webhook-id", "evt_forged")
        .header("x-webhook-signature", format!("sha256={}", "0".repeat(64)))
        .header("webhook-id", "evt_forged")
        .header("webhook-timestamp", now)
        .header(
            "webhook-signature",
            "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .body(r#"{"id":"evt_forged","eventType":"user.created","data":{}}"#)
        .send()
        .await
        .expect("forged request");
    assert!(forged.status().is_success() || forged.status().as_u16() == 201);
    let flagged = listen.json_line(|v| v["eventId"] == "evt_forged").await;
    assert_eq!(flagged["verified"], false, "{flagged}");
    assert!(
        flagged["signatures"]["X-Webhook-Signature"]
            .as_str()
            .is_some_and(|s| s.starts_with("failed")),
        "{flagged}"
    );
    assert!(
        flagged["signatures"]["standardWebhooks"]
            .as_str()
            .is_some_and(|s| s.starts_with("failed")),
        "{flagged}"
    );

    // Stopping listen deletes the webhook it registered.
    let stderr = listen.terminate();
    assert!(
        stderr.contains(&format!("deleted webhook {webhook_id}")),
        "{stderr}"
    );
    let (status, _) = app
        .get(&format!("/api/v1/webhooks/{webhook_id}"), &token)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn listen_prints_a_readable_block_and_answers_as_told() {
    let app = spawn_app().await;
    let token = app.token(USER, false);
    let mut args = vec![
        "listen",
        "--port",
        "0",
        "--respond",
        "500",
        "--register",
        "credit.low",
    ];
    args.extend(connection(&app, &token));
    let mut listen = Running::start(cli(&args));
    let registered = listen.stderr_line("registered webhook ").await;
    let webhook_id = registered
        .split_whitespace()
        .nth(2)
        .expect("id")
        .to_string();
    app.trigger("credit.low", USER, json!({"balance": 8})).await;
    // Every line of the block, in order: type, event, delivery + attempt, both signatures, answer, envelope.
    let start = Instant::now();
    let mut block = String::new();
    while start.elapsed() < DEADLINE && !block.contains("\"balance\": 8") {
        match listen.stdout.try_recv() {
            Ok(line) => {
                block.push_str(&line);
                block.push('\n');
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
    assert!(block.contains("credit.low"), "{block}");
    assert!(block.contains("(attempt 1)"), "{block}");
    assert!(block.contains("X-Webhook-Signature  ✓ verified"), "{block}");
    assert!(block.contains("Standard Webhooks    ✓ verified"), "{block}");
    assert!(block.contains("answered   500"), "{block}");
    assert!(block.contains("\"balance\": 8"), "{block}");
    // The 500 made the service schedule a retry.
    app.wait_for_logs(&token, &webhook_id, DEADLINE, |items| {
        items.iter().any(|d| d["lastStatusCode"] == 500)
    })
    .await;
    listen.terminate();
}

#[tokio::test]
async fn send_publishes_examples_and_batches_and_reports_rejected_lines() {
    let app = spawn_app().await;
    let token = app.token(USER, false);
    let receiver = Receiver::start(Behavior::Status(200))
        .await
        .expect("receiver");
    app.create_webhook(&token, &receiver.url("/in"), &["user.created"], None)
        .await;
    let base = [
        "--url",
        app.base.as_str(),
        "--internal-secret",
        INTERNAL_SECRET,
    ];

    let mut args = vec!["send", "user.created", "--user", USER, "--example"];
    args.extend(base);
    let out = run(cli(&args)).await;
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("accepted evt_"), "{stdout}");
    assert!(stdout.contains("→ 1 delivery"), "{stdout}");
    let got = receiver.wait_for(1, DEADLINE).await.expect("delivery");
    // The catalogue's example data, not the example's whole envelope.
    assert_eq!(got[0].json()["data"]["email"], "user@example.com");
    assert!(got[0].json()["data"].get("eventType").is_none());

    let mut args = vec![
        "send",
        "user.created",
        "--user",
        USER,
        "--data",
        r#"{"plan":"pro"}"#,
        "--json",
    ];
    args.extend(base);
    let out = run(cli(&args)).await;
    let answer: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(answer["deliveries"], 1, "{answer}");

    // `--data -` reads the data from stdin.
    let mut args = vec!["send", "user.created", "--user", USER, "--data", "-"];
    args.extend(base);
    let mut cmd = cli(&args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = cmd.spawn().expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(br#"{"from":"stdin"}"#)
            .expect("write stdin");
        child.wait_with_output().expect("wait")
    })
    .await
    .expect("join");
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let got = receiver.wait_for(3, DEADLINE).await.expect("deliveries");
    assert!(
        got.iter().any(|r| r.json()["data"]["from"] == "stdin"),
        "no delivery carried the stdin data"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("events.ndjson");
    std::fs::write(
        &file,
        format!(
            "{{\"eventType\":\"user.created\",\"userId\":\"{USER}\",\"data\":{{}}}}\n\
             this is not json\n\
             {{\"eventType\":\"user.exploded\",\"userId\":\"{USER}\",\"data\":{{}}}}\n\
             {{\"eventType\":\"credit.low\",\"userId\":\"{USER}\",\"data\":{{\"balance\":1}}}}\n"
        ),
    )
    .expect("write batch");
    let file = file.display().to_string();
    let mut args = vec!["send", "--batch", &file];
    args.extend(base);
    let out = run(cli(&args)).await;
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), 1, "rejected lines fail the command: {stdout}");
    assert!(stdout.contains("accepted 2 events"), "{stdout}");
    assert!(stdout.contains("rejected 2"), "{stdout}");
    assert!(stdout.contains("line 2: the line is not JSON"), "{stdout}");
    assert!(stdout.contains("line 3: "), "{stdout}");
    assert!(stdout.contains("user.exploded"), "{stdout}");

    let mut args = vec!["send", "--batch", &file, "--json"];
    args.extend(base);
    let out = run(cli(&args)).await;
    let summary: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(summary["accepted"], 2);
    assert_eq!(summary["rejected"], 2);
    assert_eq!(summary["lines"][2]["line"], 3);
    assert_eq!(summary["lines"][2]["accepted"], false);

    // Nothing listens there: exit code 3, and the message says what to do.
    let out = run(cli(&[
        "send",
        "user.created",
        "--user",
        USER,
        "--url",
        "http://127.0.0.1:9",
        "--internal-secret",
        INTERNAL_SECRET,
    ]))
    .await;
    assert_eq!(code(&out), 3);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no answer from http://127.0.0.1:9"),
        "{stderr}"
    );
    assert!(stderr.contains("Is the service running"), "{stderr}");
}

#[tokio::test]
async fn deliveries_follow_shows_a_delivery_that_arrives_after_it_started() {
    let app = spawn_app().await;
    let token = app.token(USER, false);
    let receiver = Receiver::start(Behavior::Status(200))
        .await
        .expect("receiver");
    app.create_webhook(&token, &receiver.url("/in"), &["user.login"], None)
        .await;
    let mut args = vec!["deliveries", "list", "--follow", "--json"];
    args.extend(connection(&app, &token));
    let mut follow = Running::start(cli(&args));
    follow.stderr_line("following new deliveries").await;
    let (status, body) = app.trigger("user.login", USER, json!({})).await;
    assert_eq!(status, 202);
    let event_id = body["data"]["eventId"]
        .as_str()
        .expect("event id")
        .to_string();
    let line = follow
        .json_line(|v| v["eventId"] == event_id.as_str() && v["status"] == "delivered")
        .await;
    assert_eq!(line["eventType"], "user.login");
    follow.terminate();
}

#[tokio::test]
async fn client_commands_answer_json_tables_and_say_what_is_wrong() {
    let app = spawn_app().await;
    let token = app.token(USER, false);
    let receiver = Receiver::start(Behavior::Status(200))
        .await
        .expect("receiver");
    let url = receiver.url("/in");
    let conn = connection(&app, &token);

    let mut args = vec![
        "webhooks",
        "create",
        "--endpoint",
        &url,
        "--events",
        "user.created,credit.*",
        "--json",
    ];
    args.extend(conn.iter().copied());
    let out = run(cli(&args)).await;
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["eventTypes"], json!(["user.created", "credit.*"]));
    assert_eq!(created["secretMasked"], false);

    let mut args = vec!["webhooks", "list"];
    args.extend(conn.iter().copied());
    let out = run(cli(&args)).await;
    let table = text(&out.stdout);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains(&id) && table.contains("active"), "{table}");

    let mut args = vec!["webhooks", "disable", &id];
    args.extend(conn.iter().copied());
    assert_eq!(code(&run(cli(&args)).await), 0);
    let mut args = vec!["webhooks", "get", &id, "--json"];
    args.extend(conn.iter().copied());
    let got: Value = serde_json::from_slice(&run(cli(&args)).await.stdout).expect("json");
    assert_eq!(got["isActive"], false);
    let mut args = vec!["webhooks", "enable", &id];
    args.extend(conn.iter().copied());
    assert_eq!(code(&run(cli(&args)).await), 0);

    app.trigger("credit.low", USER, json!({"balance": 3})).await;
    receiver.wait_for(1, DEADLINE).await.expect("delivery");
    let logs = app
        .wait_for_logs(&token, &id, DEADLINE, |items| {
            items.iter().any(|d| d["status"] == "delivered")
        })
        .await;
    let delivery_id = logs[0]["id"].as_str().expect("delivery id").to_string();
    let mut args = vec!["deliveries", "get", &delivery_id, "--json"];
    args.extend(conn.iter().copied());
    let detail: Value = serde_json::from_slice(&run(cli(&args)).await.stdout).expect("json");
    assert_eq!(detail["attemptLog"][0]["statusCode"], 200, "{detail}");
    let mut args = vec!["deliveries", "get", &delivery_id];
    args.extend(conn.iter().copied());
    let shown = text(&run(cli(&args)).await.stdout);
    assert!(
        shown.contains("ATTEMPT") && shown.contains(" 200 "),
        "{shown}"
    );
    let mut args = vec!["deliveries", "list", "--status", "delivered"];
    args.extend(conn.iter().copied());
    let table = text(&run(cli(&args)).await.stdout);
    assert!(
        table.contains(&delivery_id) && table.contains("credit.low"),
        "{table}"
    );

    let mut args = vec!["stats", &id, "--json"];
    args.extend(conn.iter().copied());
    let stats: Value = serde_json::from_slice(&run(cli(&args)).await.stdout).expect("json");
    assert!(stats.is_object(), "{stats}");

    let out = run(cli(&["event-types", "--json", "--url", &app.base])).await;
    let types: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        types
            .as_array()
            .is_some_and(|t| t.iter().any(|e| e["type"] == "credit.low"))
    );

    // Redelivery: one delivery now, and a replay of the last hour's.
    let mut args = vec!["deliveries", "retry", &delivery_id];
    args.extend(conn.iter().copied());
    let out = run(cli(&args)).await;
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("queued for redelivery"));
    receiver.wait_for(2, DEADLINE).await.expect("redelivered");
    // Replay takes deliveries at rest: wait for the retry's outcome to be logged.
    app.wait_for_logs(&token, &id, DEADLINE, |items| {
        items.iter().any(|d| {
            d["id"] == delivery_id.as_str() && d["attempts"] == 2 && d["status"] == "delivered"
        })
    })
    .await;
    let mut args = vec!["replay", &id, "--since", "1h", "--status", "all", "--json"];
    args.extend(conn.iter().copied());
    let out = run(cli(&args)).await;
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let replayed: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(replayed["replayed"], 1, "{replayed}");

    // Update and rotate: the answers show the change.
    let mut args = vec![
        "webhooks",
        "update",
        &id,
        "--events",
        "credit.low",
        "--json",
    ];
    args.extend(conn.iter().copied());
    let updated: Value = serde_json::from_slice(&run(cli(&args)).await.stdout).expect("json");
    assert_eq!(updated["eventTypes"], json!(["credit.low"]));
    let mut args = vec!["webhooks", "rotate-secret", &id, "--json"];
    args.extend(conn.iter().copied());
    let rotated: Value = serde_json::from_slice(&run(cli(&args)).await.stdout).expect("json");
    assert_eq!(rotated["secretMasked"], false);
    assert_ne!(rotated["secret"], created["secret"]);

    // A test send's exit code says whether the endpoint accepted it.
    let mut args = vec!["webhooks", "test", &id, "--event-type", "credit.low"];
    args.extend(conn.iter().copied());
    let out = run(cli(&args)).await;
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    receiver.set_behavior(Behavior::Status(500));
    let out = run(cli(&args)).await;
    assert_eq!(code(&out), 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("did not accept") && stderr.contains("500"),
        "{stderr}"
    );

    let mut args = vec!["webhooks", "delete", &id];
    args.extend(conn.iter().copied());
    assert_eq!(code(&run(cli(&args)).await), 0);

    // What is wrong, and what to do.
    let out = run(cli(&["webhooks", "list", "--url", &app.base])).await;
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("needs a user token"));
    let out = run(cli(&[
        "webhooks",
        "list",
        "--url",
        &app.base,
        "--token",
        "not.a.token",
    ]))
    .await;
    assert_eq!(code(&out), 1);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("answered 401"), "{stderr}");
    assert!(stderr.contains("webhook-service token"), "{stderr}");
    let out = run(cli(&[
        "webhooks", "get", "wh_nope", "--url", &app.base, "--token", &token,
    ]))
    .await;
    assert_eq!(code(&out), 1);
    assert!(text(&out.stderr).contains("answered 404"));
    // Publishing with a user token needs an admin: the 403 says so.
    let out = run(cli(&[
        "send",
        "user.created",
        "--user",
        USER,
        "--url",
        &app.base,
        "--token",
        &token,
    ]))
    .await;
    assert_eq!(code(&out), 1);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("answered 403"), "{stderr}");
    assert!(stderr.contains("--admin"), "{stderr}");
}

/// Runs `webhooks ARGS... --json` (with the connection) and parses its answer.
async fn webhooks_json(conn: &[&str], args: &[&str]) -> Value {
    let mut all = vec!["webhooks"];
    all.extend_from_slice(args);
    all.push("--json");
    all.extend_from_slice(conn);
    let out = run(cli(&all)).await;
    assert_eq!(code(&out), 0, "{args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

#[tokio::test]
async fn endpoint_options_set_on_the_command_line_shape_every_delivery() {
    let app = spawn_app().await;
    let token = app.token(USER, false);
    let receiver = Receiver::start(Behavior::Status(200))
        .await
        .expect("receiver");
    let url = receiver.url("/in");
    let conn = connection(&app, &token);
    // The API key sits in a file and the bearer token in the environment:
    // neither appears on the command line.
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("api-key.txt");
    std::fs::write(&key_file, "k-123\n").expect("write key");
    let key_header = format!("X-Api-Key: @{}", key_file.display());

    let mut args = vec![
        "webhooks",
        "create",
        "--endpoint",
        &url,
        "--events",
        "credit.low",
        "--filter",
        r#"{"data": {"balance": {"$lt": 10}}}"#,
        "--rate-limit",
        "50",
        "--header",
        &key_header,
        "--header",
        "X-Tenant: acme",
        "--auth-bearer",
        "env:ENDPOINT_TOKEN",
        "--json",
    ];
    args.extend(conn.iter().copied());
    let mut create = cli(&args);
    create.env("ENDPOINT_TOKEN", "tok-456");
    let out = run(create).await;
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).expect("json");
    let id = created["id"].as_str().expect("id").to_string();

    // Reads show what is set, every secret masked.
    let got = webhooks_json(&conn, &["get", &id]).await;
    assert_eq!(got["filter"], json!({"data": {"balance": {"$lt": 10}}}));
    assert_eq!(got["rateLimitPerSecond"], 50);
    assert_eq!(
        got["headers"],
        json!({"X-Api-Key": "********", "X-Tenant": "********"})
    );
    assert_eq!(got["auth"], json!({"type": "bearer", "token": "********"}));
    assert!(!got.to_string().contains("k-123") && !got.to_string().contains("tok-456"));
    let mut args = vec!["webhooks", "get", &id];
    args.extend(conn.iter().copied());
    let shown = text(&run(cli(&args)).await.stdout);
    for line in [
        "rateLimit ",
        "50/s",
        r#"{"data":{"balance":{"$lt":10}}}"#,
        "X-Api-Key: ********, X-Tenant: ********",
        "bearer",
    ] {
        assert!(shown.contains(line), "{line:?} missing from:\n{shown}");
    }
    // Options at their defaults are not listed.
    assert!(
        !shown.contains("timeout") && !shown.contains("publicKey"),
        "{shown}"
    );

    // An event the filter refuses is not delivered; one it matches arrives
    // with the header and the Authorization the command line set.
    let (_, rich) = app
        .trigger("credit.low", USER, json!({"balance": 50}))
        .await;
    assert_eq!(rich["data"]["deliveries"], 0, "{rich}");
    let (_, low) = app.trigger("credit.low", USER, json!({"balance": 3})).await;
    assert_eq!(low["data"]["deliveries"], 1, "{low}");
    let received = receiver.wait_for(1, DEADLINE).await.expect("delivery");
    assert_eq!(received[0].json()["data"]["balance"], 3);
    assert_eq!(received[0].header("x-api-key"), Some("k-123"));
    assert_eq!(received[0].header("x-tenant"), Some("acme"));
    assert_eq!(received[0].header("authorization"), Some("Bearer tok-456"));

    // Update clears the filter and sets a schedule; what it does not name stays.
    let updated = webhooks_json(
        &conn,
        &[
            "update",
            &id,
            "--no-filter",
            "--retry-schedule",
            "5s,1m",
            "--timeout-ms",
            "5000",
        ],
    )
    .await;
    assert_eq!(updated["filter"], Value::Null, "{updated}");
    assert_eq!(updated["retrySchedule"], json!(["5s", "1m"]));
    assert_eq!(updated["timeoutMs"], 5000);
    assert_eq!(updated["rateLimitPerSecond"], 50);
    assert_eq!(updated["auth"]["type"], "bearer");
    // The headers given replace the set; the resets put the defaults back.
    let updated = webhooks_json(
        &conn,
        &[
            "update",
            &id,
            "--header",
            "X-Tenant: globex",
            "--no-auth",
            "--no-rate-limit",
            "--default-retry-schedule",
            "--default-timeout",
        ],
    )
    .await;
    assert_eq!(updated["headers"], json!({"X-Tenant": "********"}));
    assert_eq!(updated["auth"], Value::Null);
    assert_eq!(updated["rateLimitPerSecond"], Value::Null);
    assert_eq!(updated["retrySchedule"], Value::Null);
    assert_eq!(updated["timeoutMs"], Value::Null);
    let (_, rich) = app
        .trigger("credit.low", USER, json!({"balance": 50}))
        .await;
    assert_eq!(rich["data"]["deliveries"], 1, "{rich}");
    let received = receiver.wait_for(2, DEADLINE).await.expect("delivery");
    assert_eq!(received[1].header("x-tenant"), Some("globex"));
    assert_eq!(received[1].header("x-api-key"), None);
    assert_eq!(received[1].header("authorization"), None);
    let updated = webhooks_json(&conn, &["update", &id, "--no-headers"]).await;
    assert_eq!(updated["headers"], json!({}));
}

#[tokio::test]
async fn endpoint_option_mistakes_say_what_to_fix() {
    let app = spawn_app().await;
    let token = app.token(USER, false);
    let conn = connection(&app, &token);
    let receiver = Receiver::start(Behavior::Status(200))
        .await
        .expect("receiver");
    let url = receiver.url("/in");

    // The service's refusal of a filter names its path and operator.
    let mut args = vec![
        "webhooks",
        "create",
        "--endpoint",
        &url,
        "--events",
        "credit.low",
        "--filter",
        r#"{"data": {"balance": {"$regex": "^1"}}}"#,
    ];
    args.extend(conn.iter().copied());
    let out = run(cli(&args)).await;
    assert_eq!(code(&out), 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("answered 400") && stderr.contains("filter.data.balance.$regex"),
        "{stderr}"
    );
    assert!(stderr.contains("is not an operator"), "{stderr}");

    // Mistakes the command line can see are refused before any request:
    // the "service" here is a receiver that counts what reaches it.
    let counting = Receiver::start(Behavior::Status(200))
        .await
        .expect("counting receiver");
    let base = counting.url("");
    let refused: &[(&[&str], &str)] = &[
        (
            &["--auth-basic", "alice:pw", "--auth-bearer", "t"],
            "cannot be used with",
        ),
        (
            &["--auth-bearer", "t", "--auth-oauth2-client-id", "c"],
            "--auth-oauth2-token-url",
        ),
        (&["--auth-mtls-cert", "client.pem"], "--auth-mtls-key"),
        (&["--filter", "{not json"], "--filter is not valid JSON"),
        (&["--header", "X-Api-Key k-123"], "'Name: value'"),
        (&["--auth-basic", "alice"], "USER:PASSWORD"),
        (
            &["--auth-bearer", "env:WEBHOOK_CLI_TEST_UNSET"],
            "WEBHOOK_CLI_TEST_UNSET is not set",
        ),
    ];
    for (flags, says) in refused {
        let mut args = vec![
            "webhooks",
            "create",
            "--endpoint",
            &url,
            "--events",
            "credit.low",
        ];
        args.extend_from_slice(flags);
        args.extend(["--url", &base, "--token", &token]);
        let out = run(cli(&args)).await;
        assert_eq!(code(&out), 2, "{flags:?}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
    }
    // Clearing is for update only, and cannot be mixed with setting the same option.
    let out = run(cli(&[
        "webhooks",
        "create",
        "--endpoint",
        &url,
        "--events",
        "credit.low",
        "--no-filter",
        "--url",
        &base,
    ]))
    .await;
    assert_eq!(code(&out), 2);
    let out = run(cli(&[
        "webhooks",
        "update",
        "wh_x",
        "--no-auth",
        "--auth-bearer",
        "t",
        "--url",
        &base,
    ]))
    .await;
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("cannot be used with"));
    assert_eq!(counting.count(), 0, "a refused command line sent a request");
}

#[tokio::test]
async fn fifo_ordering_is_set_and_cleared_from_the_command_line() {
    let app = spawn_app().await;
    let token = app.token(USER, false);
    let conn = connection(&app, &token);
    // A slow receiver: without ordering, deliveries would overlap.
    let receiver = Receiver::start(Behavior::Delay(Duration::from_millis(20), 200))
        .await
        .expect("receiver");
    let url = receiver.url("/in");

    let created = webhooks_json(
        &conn,
        &[
            "create",
            "--endpoint",
            &url,
            "--events",
            "credit.low",
            "--ordering",
            "fifo",
            "--ordering-key",
            "userId",
        ],
    )
    .await;
    assert_eq!(created["ordering"], "fifo", "{created}");
    assert_eq!(created["orderingKey"], "userId", "{created}");
    let id = created["id"].as_str().expect("id").to_string();

    // The table says it in words.
    let mut args = vec!["webhooks", "get", &id];
    args.extend(conn.iter().copied());
    let out = run(cli(&args)).await;
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("fifo, one order per user"),
        "{}",
        text(&out.stdout)
    );

    // Events of the user arrive one at a time in the order acknowledged.
    for n in 0..10 {
        let (status, _) = app
            .trigger("credit.low", USER, json!({"balance": n, "threshold": 10}))
            .await;
        assert_eq!(status, 202);
    }
    let got = receiver
        .wait_for(10, Duration::from_secs(20))
        .await
        .expect("deliveries");
    let order: Vec<i64> = got
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).expect("json body");
            body["data"]["balance"].as_i64().expect("balance")
        })
        .collect();
    assert_eq!(order, (0..10).collect::<Vec<_>>());
    // One at a time: each arrived after the answer to the one before.
    for pair in got.windows(2) {
        let gap = pair[1].received_at.duration_since(pair[0].received_at);
        assert!(
            gap >= Duration::from_millis(20),
            "overlapping deliveries: {gap:?}"
        );
    }

    // --ordering-key alone is refused before any request; --no-ordering clears.
    let mut args = vec!["webhooks", "update", &id, "--ordering-key", "webhook"];
    args.extend(conn.iter().copied());
    let out = run(cli(&args)).await;
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--ordering"),
        "{}",
        text(&out.stderr)
    );
    let cleared = webhooks_json(&conn, &["update", &id, "--no-ordering"]).await;
    assert!(cleared["ordering"].is_null(), "{cleared}");
}

#[tokio::test]
async fn filter_test_says_whether_a_filter_matches() {
    let app = spawn_app().await;
    let token = app.token(USER, false);
    let conn = connection(&app, &token);
    let filter = r#"{"data": {"balance": {"$lt": 10}}}"#;
    let filter_test = |extra: &[&str]| {
        let mut args = vec!["webhooks", "filter-test", "--filter", filter];
        args.extend_from_slice(extra);
        args.extend(conn.iter().copied());
        cli(&args)
    };

    // The catalogue's credit.low example has a balance of 8.
    let out = run(filter_test(&["--event-type", "credit.low"])).await;
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "match");
    // No match is an answer too: exit code 0.
    let dir = tempfile::tempdir().expect("tempdir");
    let event_file = dir.path().join("event.json");
    std::fs::write(
        &event_file,
        r#"{"eventType": "credit.low", "data": {"balance": 80}}"#,
    )
    .expect("write event");
    let event_arg = format!("@{}", event_file.display());
    let out = run(filter_test(&["--event", &event_arg])).await;
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "no match");
    let out = run(filter_test(&[
        "--event",
        r#"{"data": {"balance": 2}}"#,
        "--json",
    ]))
    .await;
    let answer: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(answer, json!({"matches": true}));

    // A bad filter is the service's 400, naming the path.
    let mut args = vec![
        "webhooks",
        "filter-test",
        "--filter",
        r#"{"data": {"balance": {"$lt": "ten", "$near": 1}}}"#,
        "--event-type",
        "credit.low",
    ];
    args.extend(conn.iter().copied());
    let out = run(cli(&args)).await;
    assert_eq!(code(&out), 1);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("filter.data.balance"), "{stderr}");
    // A sample is required, and an unknown type is named.
    let out = run(filter_test(&[])).await;
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("--event"));
    let out = run(filter_test(&["--event-type", "credit.stolen"])).await;
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("event-types"));
}

#[tokio::test]
async fn ed25519_signing_client_certificates_basic_and_oauth2_are_set_from_the_command_line() {
    let app = spawn_app().await;
    let token = app.token(USER, false);
    let conn = connection(&app, &token);
    let receiver = Receiver::start(Behavior::Status(200))
        .await
        .expect("receiver");
    let url = receiver.url("/in");

    let mut args = vec![
        "webhooks",
        "create",
        "--endpoint",
        &url,
        "--events",
        "user.created",
        "--signing",
        "ed25519",
    ];
    args.extend(conn.iter().copied());
    let out = run(cli(&args)).await;
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let key_line = shown
        .lines()
        .find(|l| l.starts_with("publicKey"))
        .unwrap_or_else(|| panic!("no publicKey line in:\n{shown}"));
    let public_key = key_line.split_whitespace().nth(1).expect("key");
    assert!(public_key.starts_with("whpk_"), "{key_line}");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("signing") && l.ends_with("ed25519")),
        "{shown}"
    );
    let id = shown
        .lines()
        .find_map(|l| l.strip_prefix("id "))
        .expect("id line")
        .trim()
        .to_string();
    let got = webhooks_json(&conn, &["get", &id]).await;
    assert_eq!(got["signing"], "ed25519");
    assert_eq!(got["publicKey"], public_key);

    // A client certificate comes from PEM files; the key is never shown.
    let ca = webhook_testkit::TestCa::generate().expect("test CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("client.pem");
    let key = dir.path().join("client-key.pem");
    std::fs::write(&cert, &ca.client.certificate).expect("write cert");
    std::fs::write(&key, &ca.client.private_key).expect("write key");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let created = webhooks_json(
        &conn,
        &[
            "create",
            "--endpoint",
            &url,
            "--events",
            "user.created",
            "--auth-mtls-cert",
            &cert,
            "--auth-mtls-key",
            &key,
        ],
    )
    .await;
    assert_eq!(created["auth"]["type"], "mtls", "{created}");
    assert_eq!(created["auth"]["privateKey"], "********");
    assert_eq!(created["signing"], "hmac");
    let id = created["id"].as_str().expect("id").to_string();

    // Another kind of auth replaces it; what reads show in clear is shown.
    let token_url = receiver.url("/token");
    let updated = webhooks_json(
        &conn,
        &[
            "update",
            &id,
            "--auth-oauth2-token-url",
            &token_url,
            "--auth-oauth2-client-id",
            "hooks",
            "--auth-oauth2-client-secret",
            "cs-789",
            "--auth-oauth2-scope",
            "events:write",
        ],
    )
    .await;
    assert_eq!(
        updated["auth"],
        json!({"type": "oauth2", "tokenUrl": token_url, "clientId": "hooks",
               "clientSecret": "********", "scope": "events:write", "audience": null})
    );
    let mut args = vec!["webhooks", "get", &id];
    args.extend(conn.iter().copied());
    let shown = text(&run(cli(&args)).await.stdout);
    assert!(
        shown.contains(&format!(
            "oauth2 (client hooks at {token_url}, scope events:write)"
        )),
        "{shown}"
    );
    assert!(!shown.contains("cs-789"), "{shown}");
    let updated = webhooks_json(
        &conn,
        &["update", &id, "--auth-basic", "alice:pw:with:colons"],
    )
    .await;
    assert_eq!(
        updated["auth"],
        json!({"type": "basic", "username": "alice", "password": "********"})
    );
    app.trigger("user.created", USER, json!({"email": "a@example.com"}))
        .await;
    // Both webhooks subscribe to user.created: the Ed25519 one sends no Authorization.
    let received = receiver.wait_for(2, DEADLINE).await.expect("deliveries");
    let basic = received
        .iter()
        .find_map(|r| r.header("authorization"))
        .expect("an Authorization header");
    // base64("alice:pw:with:colons"): the password keeps its colons.
    assert_eq!(basic, "Basic YWxpY2U6cHc6d2l0aDpjb2xvbnM=");
}

/// Acknowledged event ids, from batches posted until `stop` is set.
async fn ingest_until(
    client: reqwest::Client,
    base: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<(Instant, Vec<String>)> {
    let mut acked = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let events: Vec<Value> = (0..50)
            .map(|i| json!({"eventType": "user.login", "userId": USER, "data": {"i": i}}))
            .collect();
        let resp = client
            .post(format!("{base}/internal/events/batch"))
            .bearer_auth(INTERNAL_SECRET)
            .json(&json!({"events": events}))
            .send()
            .await
            .expect("batch");
        assert_eq!(resp.status().as_u16(), 202);
        let body: Value = resp.json().await.expect("json");
        let ids = body["data"]["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| r["eventId"].as_str().expect("id").to_string())
            .collect();
        acked.push((Instant::now(), ids));
    }
    acked
}

fn data_dir_env(cmd: &mut Command, dir: &Path) {
    cmd.env("WEBHOOK_DATA_DIR", dir)
        .env("WEBHOOK_ENCRYPTION_KEY", crate::common::ENCRYPTION_KEY);
}

#[tokio::test]
async fn backup_under_load_restores_every_acknowledged_event() {
    let app = spawn_app().await;
    let token = app.token(USER, false);
    let receiver = Receiver::start(Behavior::Status(200))
        .await
        .expect("receiver");
    let webhook = app
        .create_webhook(&token, &receiver.url("/in"), &["user.login"], None)
        .await;
    let webhook_id = webhook["id"].as_str().expect("id").to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(ingest_until(
        app.client.clone(),
        app.base.clone(),
        stop.clone(),
    ));
    // Some events stored before the backup starts, the load still running during it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let backup_dir = tempfile::tempdir().expect("tempdir");
    let file = backup_dir.path().join("copy.db");
    let started = Instant::now();
    let mut cmd = cli(&["backup", "--to", &file.display().to_string()]);
    data_dir_env(&mut cmd, &app.data_dir);
    let out = run(cmd).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = load.await.expect("load");
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("backed up"),
        "{}",
        text(&out.stdout)
    );
    // Every event acknowledged before the backup began must be in the copy.
    let expected: Vec<String> = acked
        .iter()
        .filter(|(at, _)| *at < started)
        .flat_map(|(_, ids)| ids.clone())
        .collect();
    assert!(
        !expected.is_empty(),
        "the load acknowledged nothing before the backup"
    );
    assert!(
        acked.iter().any(|(at, _)| *at > started),
        "the load did not run during the backup"
    );

    let restored_dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = cli(&["restore", "--from", &file.display().to_string()]);
    data_dir_env(&mut cmd, restored_dir.path());
    let out = run(cmd).await;
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    // Restoring into a running service's directory is refused.
    let mut cmd = cli(&["restore", "--from", &file.display().to_string(), "--force"]);
    data_dir_env(&mut cmd, &app.data_dir);
    let out = run(cmd).await;
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("in use"),
        "{}",
        text(&out.stderr)
    );

    let restored_path = restored_dir.path().display().to_string();
    let restored = spawn_app_with(&[("WEBHOOK_DATA_DIR", restored_path.as_str())]).await;
    let mut found = std::collections::HashSet::new();
    for page in 1.. {
        let (status, body) = restored
            .get(
                &format!("/api/v1/webhooks/{webhook_id}/logs?limit=100&page={page}"),
                &token,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let items = body["data"].as_array().cloned().unwrap_or_default();
        found.extend(
            items
                .iter()
                .filter_map(|d| d["eventId"].as_str().map(str::to_string)),
        );
        if items.len() < 100 {
            break;
        }
    }
    let missing: Vec<&String> = expected.iter().filter(|id| !found.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events missing from the restored store",
        missing.len(),
        expected.len()
    );
}

#[tokio::test]
async fn check_reports_store_migrations_and_a_wrong_key() {
    let app = spawn_app().await;
    let token = app.token(USER, false);
    app.create_webhook(&token, "http://127.0.0.1:9/in", &["user.created"], None)
        .await;
    let env = |cmd: &mut Command, key: &str| {
        cmd.env("WEBHOOK_DATA_DIR", &app.data_dir)
            .env("JWT_SECRET", crate::common::JWT_SECRET)
            .env("INTERNAL_SERVICE_SECRET", INTERNAL_SECRET)
            .env("WEBHOOK_ENCRYPTION_KEY", key);
    };
    let mut cmd = cli(&["check", "--json"]);
    env(&mut cmd, crate::common::ENCRYPTION_KEY);
    let out = run(cmd).await;
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["ok"], true, "{report}");
    assert!(
        report["checks"][2]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("opens all 1 stored secrets")),
        "{report}"
    );
    let mut cmd = cli(&["check"]);
    env(&mut cmd, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh4=");
    let out = run(cmd).await;
    assert_eq!(code(&out), 1);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("✗ encryption key: does not open"),
        "{stdout}"
    );
}

#[tokio::test]
async fn completions_generate_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(cli(&["completions", shell])).await;
        assert_eq!(code(&out), 0);
        let script = text(&out.stdout);
        assert!(script.contains("webhook-service"), "{shell}");
        assert!(
            script.contains("listen") && script.contains("deliveries"),
            "{shell}"
        );
        // Derived flags and subcommands are completed without a list kept by hand.
        assert!(
            script.contains("filter-test") && script.contains("auth-bearer"),
            "{shell}"
        );
    }
}

#[tokio::test]
async fn the_first_five_minutes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().display().to_string();
    // `--port` is accepted, and --print-config shows what --dev runs with.
    let mut cmd = cli(&["serve", "--dev", "--port", "4000", "--print-config"]);
    cmd.env("WEBHOOK_DATA_DIR", &data);
    let out = run(cmd).await;
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let config: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(config["port"], 4000);
    assert_eq!(config["jwtSecret"], "[set, redacted]");
    assert_eq!(config["internalServiceSecret"], "[set, redacted]");
    assert!(
        config["allowedCidrs"]
            .as_array()
            .is_some_and(|c| c.contains(&json!("127.0.0.0/8"))),
        "{config}"
    );
    // The help names the environment variables.
    let help = text(&run(cli(&["serve", "--help"])).await.stdout);
    assert!(
        help.contains("JWT_SECRET") && help.contains("WEBHOOK_DATA_DIR"),
        "{help}"
    );
    // Unusable user ids are refused, and ids that are not UUIDs are warned about.
    let mut cmd = cli(&["token", "--dev", "--user", "   "]);
    cmd.env("WEBHOOK_DATA_DIR", &data);
    let out = run(cmd).await;
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("--user"));
    let mut cmd = cli(&["token", "--dev", "--user", "not-a-uuid"]);
    cmd.env("WEBHOOK_DATA_DIR", &data);
    let out = run(cmd).await;
    assert_eq!(code(&out), 0);
    assert!(text(&out.stderr).contains("is not a UUID"));

    // serve --dev, listen --dev --register, send --dev --example: no other set-up,
    // and the service's terminal shows each attempt's outcome.
    let mut serve = cli(&["serve", "--dev", "--port", "0"]);
    serve.env("WEBHOOK_DATA_DIR", &data);
    let mut serve = Running::start(serve);
    let base = serve
        .stdout_line("webhook-service listening on ")
        .await
        .trim_start_matches("webhook-service listening on ")
        .to_string();
    let dev = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--dev", "--url", base.as_str()]);
        let mut cmd = cli(&all);
        cmd.env("WEBHOOK_DATA_DIR", &data);
        cmd
    };
    let mut listen = Running::start(dev(&[
        "listen",
        "--port",
        "0",
        "--json",
        "--register",
        "user.created",
    ]));
    listen.stderr_line("registered webhook ").await;
    let out = run(dev(&["send", "user.created", "--example"])).await;
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let got = listen.json_line(|v| v["eventType"] == "user.created").await;
    assert_eq!(got["verified"], true, "{got}");
    let line = serve.stderr_line("webhook_service::delivery").await;
    assert!(
        line.contains("user.created") && line.contains("delivered"),
        "{line}"
    );
    listen.terminate();
    serve.terminate();
}

impl Running {
    /// The first stdout line containing `needle`.
    async fn stdout_line(&mut self, needle: &str) -> String {
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            match self.stdout.try_recv() {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
        panic!("no stdout line with {needle:?}");
    }
}
