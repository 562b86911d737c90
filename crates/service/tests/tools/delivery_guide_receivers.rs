//! The receivers of the developer guide, run as the guide writes them, accept
//! our deliveries; and a Standard Webhooks verifier from a package registry
//! (the Python `standardwebhooks` package) accepts our `webhook-*` headers.
//!
//! These tests need `node`/`npm` and `python3` (with `venv`); a test whose
//! tool is missing is listed as ignored, with the reason (and fails under
//! `CI=true`). Packages (`express`,
//! `body-parser`, `flask`, `standardwebhooks`) are installed once into
//! `target/tmp/guide-receivers/` and reused by later runs.
//!
//! The guide's code is copied verbatim below. The only changes, applied as
//! visible substitutions in [`runnable`], are the ones needed to run it here:
//! the listening port (the guide hard-codes 3000) and, in the Flask sample,
//! the `import os` the guide forgot (it calls `os.environ` without it, so the
//! sample as printed answers 500 to every delivery).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{TestApp, spawn_app_with};
use crate::delivery_support::{delivery_detail, eventually, trigger_one, wait_final};
use crate::harness::{DONE, Ran, skip};
use serde_json::{Value, json};
use webhook_testkit::{Behavior, ReceivedRequest, Receiver};

/// The guide's Quick Start endpoint ("1. Create a Webhook Endpoint"), verbatim.
const NODE_QUICK_START: &str = r#"// Example Express.js endpoint
const express = require('express');
const crypto = require('crypto');
const bodyParser = require('body-parser');

const app = express();

// Use raw body parser for signature verification
app.use('/webhook', bodyParser.raw({ type: 'application/json' }));

app.post('/webhook', (req, res) => {
  const signature = req.headers['x-webhook-signature'];
  const webhookSecret = 'your_webhook_secret';

  // Verify signature
  const expectedSignature = crypto
    .createHmac('sha256', webhookSecret)
    .update(req.body)
    .digest('hex');

  if (`sha256=${expectedSignature}` !== signature) {
    return res.status(401).send('Invalid signature');
  }

  // Parse the event
  const event = JSON.parse(req.body);

  // Handle the event
  handleWebhookEvent(event);

  // Respond quickly
  res.status(200).send('OK');
});

function handleWebhookEvent(event) {
  switch (event.eventType) {
    case 'user.created':
      console.log('New user created:', event.data);
      break;
    case 'credit.low':
      console.log('User credit is low:', event.data);
      break;
    // Handle other event types
  }
}

app.listen(3000);
"#;

/// The guide's "Node.js with Express" implementation example, verbatim.
const NODE_EXPRESS: &str = r#"const express = require('express');
const crypto = require('crypto');
const bodyParser = require('body-parser');

const app = express();

// Store processed event IDs to handle duplicates
const processedEvents = new Set();

// Use raw body parser for signature verification
app.use('/webhook', bodyParser.raw({ type: 'application/json' }));

app.post('/webhook', async (req, res) => {
  try {
    // Verify signature
    const signature = req.headers['x-webhook-signature'];
    const webhookSecret = process.env.WEBHOOK_SECRET;

    if (!verifySignature(req.body, signature, webhookSecret)) {
      return res.status(401).send('Invalid signature');
    }

    // Parse event
    const event = JSON.parse(req.body);

    // Check for duplicates
    if (processedEvents.has(event.id)) {
      return res.status(200).send('Duplicate event');
    }

    // Mark as processed
    processedEvents.add(event.id);

    // Process asynchronously
    processWebhookEvent(event).catch((error) => {
      console.error('Error processing webhook:', error);
    });

    // Respond immediately
    res.status(200).send('OK');
  } catch (error) {
    console.error('Webhook error:', error);
    res.status(500).send('Internal server error');
  }
});

function verifySignature(payload, signature, secret) {
  const expectedSignature = crypto.createHmac('sha256', secret).update(payload).digest('hex');

  return `sha256=${expectedSignature}` === signature;
}

async function processWebhookEvent(event) {
  // Implement your event processing logic here
  console.log(`Processing event: ${event.eventType}`, event.data);

  // Example: Update user in database
  if (event.eventType === 'user.created') {
    await updateUserInDatabase(event.data);
  }

  // Example: Send notification
  if (event.eventType === 'credit.low') {
    await sendLowCreditNotification(event.data);
  }
}

app.listen(3000);
"#;

/// The guide's "Python with Flask" implementation example, verbatim.
const PYTHON_FLASK: &str = r#"from flask import Flask, request, jsonify
import hmac
import hashlib
import json
import threading

app = Flask(__name__)

# Store processed event IDs
processed_events = set()

@app.route('/webhook', methods=['POST'])
def webhook():
    try:
        # Get signature
        signature = request.headers.get('X-Webhook-Signature')
        webhook_secret = os.environ.get('WEBHOOK_SECRET')

        # Verify signature
        if not verify_signature(request.data, signature, webhook_secret):
            return jsonify({'error': 'Invalid signature'}), 401

        # Parse event
        event = json.loads(request.data)

        # Check for duplicates
        if event['id'] in processed_events:
            return jsonify({'status': 'duplicate'}), 200

        # Mark as processed
        processed_events.add(event['id'])

        # Process asynchronously
        threading.Thread(target=process_webhook_event, args=(event,)).start()

        return jsonify({'status': 'ok'}), 200
    except Exception as e:
        print(f'Webhook error: {e}')
        return jsonify({'error': 'Internal server error'}), 500

def verify_signature(payload, signature, secret):
    expected_signature = hmac.new(
        secret.encode('utf-8'),
        payload,
        hashlib.sha256
    ).hexdigest()

    return f'sha256={expected_signature}' == signature

def process_webhook_event(event):
    try:
        print(f"Processing event: {event['eventType']}")
        # Implement your event processing logic here
    except Exception as e:
        print(f"Error processing webhook: {e}")

if __name__ == '__main__':
    app.run(port=3000)
"#;

/// The only edits made to the guide's code so that it runs here, each one
/// asserted to apply exactly once.
fn runnable(source: &str, edits: &[(&str, &str)]) -> String {
    let mut out = source.to_string();
    for (from, to) in edits {
        assert_eq!(out.matches(from).count(), 1, "edit target {from:?}");
        out = out.replace(from, to);
    }
    out
}

/// Where installs and scripts are kept between runs.
fn scratch() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guide-receivers")
}

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Serializes installs: the tests of this file run in parallel.
static INSTALL: Mutex<()> = Mutex::new(());

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `express` and `body-parser` in `target/tmp/guide-receivers/node`, or why not.
fn node_project() -> Result<PathBuf, String> {
    if !have("node", "--version") || !have("npm", "--version") {
        return Err("node/npm not found".into());
    }
    let _guard = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = scratch().join("node");
    let installed = ["express", "body-parser"].iter().all(|m| {
        dir.join("node_modules")
            .join(m)
            .join("package.json")
            .exists()
    });
    if !installed {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::write(
            dir.join("package.json"),
            r#"{"name": "guide-receivers", "private": true}"#,
        )
        .map_err(|e| e.to_string())?;
        eprintln!(
            "installing express and body-parser with npm into {}",
            dir.display()
        );
        run(
            Command::new("npm")
                .args([
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    "express",
                    "body-parser",
                ])
                .current_dir(&dir),
            "npm install express body-parser",
        )?;
    }
    Ok(dir)
}

/// A virtualenv in `target/tmp/guide-receivers/venv` with `flask` and
/// `standardwebhooks`; returns its python, or why not.
fn python_venv() -> Result<PathBuf, String> {
    if !have("python3", "--version") {
        return Err("python3 not found".into());
    }
    let _guard = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let venv = scratch().join("venv");
    let python = venv.join("bin").join("python");
    let ready = Command::new(&python)
        .args(["-c", "import flask, standardwebhooks"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        std::fs::create_dir_all(scratch()).map_err(|e| e.to_string())?;
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv",
        )?;
        eprintln!(
            "installing flask and standardwebhooks with pip into {}",
            venv.display()
        );
        run(
            Command::new(&python).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "flask",
                "standardwebhooks",
            ]),
            "pip install flask standardwebhooks",
        )?;
    }
    Ok(python)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A receiver process of the guide; its output lines are collected; killed on drop.
struct GuideReceiver {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
    port: u16,
}

impl GuideReceiver {
    async fn start(mut cmd: Command, port: u16) -> GuideReceiver {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the guide's receiver");
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    output.lock().unwrap().push(line);
                }
            });
        }
        let mut receiver = GuideReceiver {
            child,
            output,
            port,
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return receiver;
            }
            if let Ok(Some(status)) = receiver.child.try_wait() {
                panic!(
                    "the guide's receiver exited ({status}): {:?}",
                    receiver.lines()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the guide's receiver did not listen: {:?}",
            receiver.lines()
        );
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/webhook", self.port)
    }

    fn lines(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for GuideReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deliveries of `user.created` and `credit.low` to the guide's receiver,
/// registered with `secret`: both are accepted (200, their signature checked
/// by the guide's code), and a redelivery is recognised as a duplicate by id.
/// A webhook with another secret is refused with 401. Returns the response
/// bodies of (first attempt, redelivery).
async fn deliver_to_guide_receiver(
    app: &TestApp,
    receiver: &GuideReceiver,
    secret: &str,
) -> (String, String) {
    let token = app.token("guide-user", false);
    let hook = app
        .create_webhook(
            &token,
            &receiver.url(),
            &["user.created", "credit.low"],
            Some(secret),
        )
        .await;
    let id = hook["id"].as_str().unwrap();

    let (_, created) = trigger_one(
        app,
        "user.created",
        "guide-user",
        json!({"userId": "guide-user", "email": "guide@example.com", "createdAt": "2025-01-01T00:00:00.000Z"}),
    )
    .await;
    let (_, low) = trigger_one(
        app,
        "credit.low",
        "guide-user",
        json!({"userId": "guide-user", "balance": 8, "threshold": 10}),
    )
    .await;
    for delivery in [&created, &low] {
        let d = wait_final(app, &token, id, delivery, Duration::from_secs(15)).await;
        assert_eq!(
            d["status"],
            "delivered",
            "the guide's receiver refused our delivery: {d}\noutput: {:?}",
            receiver.lines()
        );
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["lastStatusCode"], 200);
    }

    // Redelivered (same event id): the guide's duplicate check recognises it.
    let (status, body) = app
        .post(
            &format!("/api/v1/webhooks/{id}/deliveries/{low}/retry"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let d = eventually(
        "the redelivery to be logged",
        Duration::from_secs(10),
        || async {
            let d = delivery_detail(app, &token, id, &low).await;
            (d["attempts"] == 2 && d["status"] == "delivered").then_some(d)
        },
    )
    .await;
    let first = d["attemptLog"][0]["responseBody"]
        .as_str()
        .unwrap()
        .to_string();
    let again = d["attemptLog"][1]["responseBody"]
        .as_str()
        .unwrap()
        .to_string();

    // The receiver really checks: a webhook signing with another secret is refused.
    let wrong = app
        .create_webhook(
            &token,
            &receiver.url(),
            &["user.logout"],
            Some("not_the_receivers_secret"),
        )
        .await;
    let wrong_id = wrong["id"].as_str().unwrap();
    let (_, refused) = trigger_one(app, "user.logout", "guide-user", json!({})).await;
    let d = eventually(
        "the refused attempt to be logged",
        Duration::from_secs(10),
        || async {
            let d = delivery_detail(app, &token, wrong_id, &refused).await;
            (d["attempts"].as_u64() >= Some(1)).then_some(d)
        },
    )
    .await;
    assert_eq!(d["attemptLog"][0]["statusCode"], 401, "{d}");
    (first, again)
}

fn no_retry_app_env() -> [(&'static str, &'static str); 1] {
    [("WEBHOOK_MAX_RETRIES", "0")]
}

async fn the_guides_express_receiver_accepts_our_deliveries() -> Ran {
    let dir = match tokio::task::spawn_blocking(node_project).await.unwrap() {
        Ok(dir) => dir,
        Err(why) => return skip(why),
    };
    let port = free_port();
    let script = dir.join("guide-express.js");
    std::fs::write(
        &script,
        runnable(
            NODE_EXPRESS,
            &[("app.listen(3000);", "app.listen(process.env.PORT);")],
        ),
    )
    .unwrap();
    let secret = "express_guide_secret_0123";
    let mut cmd = Command::new("node");
    cmd.arg(&script)
        .current_dir(&dir)
        .env("PORT", port.to_string())
        .env("WEBHOOK_SECRET", secret);
    let receiver = GuideReceiver::start(cmd, port).await;
    let app = spawn_app_with(&no_retry_app_env()).await;

    let (first, again) = deliver_to_guide_receiver(&app, &receiver, secret).await;
    assert_eq!(first, "OK");
    assert_eq!(again, "Duplicate event");
    let lines = receiver.lines();
    for want in [
        "Processing event: user.created",
        "Processing event: credit.low",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(want)),
            "{want} not in {lines:?}"
        );
    }
    DONE
}

async fn the_guides_quick_start_receiver_accepts_our_deliveries() -> Ran {
    let dir = match tokio::task::spawn_blocking(node_project).await.unwrap() {
        Ok(dir) => dir,
        Err(why) => return skip(why),
    };
    let port = free_port();
    let script = dir.join("guide-quick-start.js");
    std::fs::write(
        &script,
        runnable(
            NODE_QUICK_START,
            &[("app.listen(3000);", "app.listen(process.env.PORT);")],
        ),
    )
    .unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(&script)
        .current_dir(&dir)
        .env("PORT", port.to_string());
    let receiver = GuideReceiver::start(cmd, port).await;
    let app = spawn_app_with(&no_retry_app_env()).await;

    // The quick start hard-codes its secret; the webhook is registered with it, as the guide shows.
    let (first, again) = deliver_to_guide_receiver(&app, &receiver, "your_webhook_secret").await;
    assert_eq!(first, "OK");
    assert_eq!(again, "OK", "the quick start has no duplicate check");
    let lines = receiver.lines();
    for want in ["New user created:", "User credit is low:"] {
        assert!(
            lines.iter().any(|l| l.contains(want)),
            "{want} not in {lines:?}"
        );
    }
    DONE
}

async fn the_guides_flask_receiver_accepts_our_deliveries() -> Ran {
    let python = match tokio::task::spawn_blocking(python_venv).await.unwrap() {
        Ok(p) => p,
        Err(why) => return skip(why),
    };
    eprintln!(
        "note: the guide's Flask sample calls os.environ without `import os`; the test adds that import"
    );
    let port = free_port();
    let script = scratch().join("guide_flask.py");
    std::fs::write(
        &script,
        runnable(
            PYTHON_FLASK,
            &[
                (
                    "import threading\n",
                    "import threading\nimport os  # missing in the guide\n",
                ),
                (
                    "app.run(port=3000)",
                    "app.run(port=int(os.environ['PORT']))",
                ),
            ],
        ),
    )
    .unwrap();
    let secret = "flask_guide_secret_01234";
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .env("PORT", port.to_string())
        .env("WEBHOOK_SECRET", secret)
        .env("PYTHONUNBUFFERED", "1");
    let receiver = GuideReceiver::start(cmd, port).await;
    let app = spawn_app_with(&no_retry_app_env()).await;

    let (first, again) = deliver_to_guide_receiver(&app, &receiver, secret).await;
    assert_eq!(
        serde_json::from_str::<Value>(&first).unwrap(),
        json!({"status": "ok"})
    );
    assert_eq!(
        serde_json::from_str::<Value>(&again).unwrap(),
        json!({"status": "duplicate"})
    );
    let lines = eventually("the receiver's output", Duration::from_secs(5), || async {
        let lines = receiver.lines();
        (lines
            .iter()
            .any(|l| l.contains("Processing event: credit.low")))
        .then_some(lines)
    })
    .await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Processing event: user.created")),
        "{lines:?}"
    );
    DONE
}

/// Verifies captured deliveries with the `standardwebhooks` package: each
/// must verify with each of its secrets, and must fail once its body is altered.
const VERIFY_SCRIPT: &str = r#"
import base64, json, sys
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

cases = json.load(open(sys.argv[1]))
for case in cases:
    body = base64.b64decode(case["body"])
    for secret in case["secrets"]:
        # whsec_ secrets are base64 keys; any other secret is used as its bytes.
        wh = Webhook(secret) if secret.startswith("whsec_") else Webhook(secret.encode())
        event = wh.verify(body, case["headers"])
        assert event["id"] == case["headers"]["webhook-id"], event
        try:
            wh.verify(body + b" ", case["headers"])
        except WebhookVerificationError:
            pass
        else:
            sys.exit("an altered body verified")
    print("verified", case["headers"]["webhook-id"], "with", len(case["secrets"]), "secret(s)")
print("ALL VERIFIED", len(cases))
"#;

fn case(request: &ReceivedRequest, secrets: &[&str]) -> Value {
    use base64::Engine as _;
    let headers: serde_json::Map<String, Value> = [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-webhook-signature",
        "content-type",
    ]
    .iter()
    .map(|h| (h.to_string(), json!(request.header(h).unwrap_or_default())))
    .collect();
    json!({
        "body": base64::engine::general_purpose::STANDARD.encode(&request.body),
        "headers": headers,
        "secrets": secrets,
    })
}

async fn the_standardwebhooks_package_verifies_our_deliveries() -> Ran {
    let python = match tokio::task::spawn_blocking(python_venv).await.unwrap() {
        Ok(p) => p,
        Err(why) => return skip(why),
    };
    let app = spawn_app_with(&[]).await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("std-user", false);

    // A generated (whsec_) secret, and a plain one chosen by the user.
    let generated = app
        .create_webhook(&token, &receiver.url("/generated"), &["user.created"], None)
        .await;
    let generated_secret = generated["secret"].as_str().unwrap().to_string();
    assert!(generated_secret.starts_with("whsec_"));
    let plain_secret = "plain_user_chosen_secret_42";
    app.create_webhook(
        &token,
        &receiver.url("/plain"),
        &["user.created"],
        Some(plain_secret),
    )
    .await;
    trigger_one(
        &app,
        "user.created",
        "std-user",
        json!({"userId": "std-user"}),
    )
    .await;
    let got = receiver.wait_for(2, Duration::from_secs(10)).await.unwrap();
    let by_path = |p: &str| got.iter().find(|r| r.path == p).unwrap().clone();
    let mut cases = vec![
        case(&by_path("/generated"), &[&generated_secret]),
        case(&by_path("/plain"), &[plain_secret]),
    ];

    // During a rotation's grace period, a delivery carries one signature per
    // valid secret: the verifier accepts it with the old and with the new one.
    let id = generated["id"].as_str().unwrap();
    let (status, rotated) = app
        .post(
            &format!("/api/v1/webhooks/{id}/rotate-secret"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["data"]["secret"].as_str().unwrap().to_string();
    trigger_one(&app, "user.created", "std-user", json!({"n": 2})).await;
    let got = receiver.wait_for(4, Duration::from_secs(10)).await.unwrap();
    let during = got[2..].iter().find(|r| r.path == "/generated").unwrap();
    assert_eq!(
        during
            .header("webhook-signature")
            .unwrap()
            .split(' ')
            .count(),
        2,
        "one signature per valid secret"
    );
    cases.push(case(during, &[&generated_secret, &new_secret]));

    let dir = scratch();
    let cases_file = dir.join(format!("cases-{}.json", std::process::id()));
    let script = dir.join("verify_standard.py");
    std::fs::write(&cases_file, serde_json::to_vec(&cases).unwrap()).unwrap();
    std::fs::write(&script, VERIFY_SCRIPT).unwrap();
    let out = Command::new(&python)
        .arg(&script)
        .arg(&cases_file)
        .output()
        .expect("run the verifier");
    let _ = std::fs::remove_file(&cases_file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "standardwebhooks refused our delivery:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ALL VERIFIED 3"), "{stdout}");
    DONE
}

/// The tests of this file, for the binary's harness.
pub fn tests() -> Vec<crate::harness::Test> {
    crate::tests![
        the_guides_express_receiver_accepts_our_deliveries,
        the_guides_quick_start_receiver_accepts_our_deliveries,
        the_guides_flask_receiver_accepts_our_deliveries,
        the_standardwebhooks_package_verifies_our_deliveries,
    ]
}
