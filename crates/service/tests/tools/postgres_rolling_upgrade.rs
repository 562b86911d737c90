//! A rolling upgrade on PostgreSQL: an instance of the previous release and
//! one of this build run on one database while events flow, the previous
//! one is stopped half-way as an upgrade would stop it (while the receiver
//! is away, so it leaves retries behind), and a webhook is deleted through
//! the old instance meanwhile. Every acknowledged event
//! reaches the webhook that stays, and nothing reaches the deleted one once
//! both instances have heard of the deletion (changes reach every instance
//! within a second).
//!
//! The previous release is the commit [`PREVIOUS_RELEASE`] of this
//! repository, built once into `target/tmp` (a few minutes), or the binary
//! `WEBHOOK_PREVIOUS_BIN` names. Long: listed as ignored unless
//! `WEBHOOK_LONG_TESTS=1` or `WEBHOOK_PREVIOUS_BIN` is set.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{INTERNAL_SECRET, TestApp, spawn_app_with, spawn_binary_with};
use crate::harness::{DONE, Ran, Test, skip};
use crate::postgres_support::TestDatabase;
use serde_json::{Value, json};
use webhook_testkit::CountingReceiver;

/// The release before this one: the last commit on main before the current
/// store layout, typed errors and delivery controls (PostgreSQL schema 5).
const PREVIOUS_RELEASE: &str = "7457cd4";

const EVENTS: usize = 4000;
const LANES: usize = 8;

/// The previous release's binary: `WEBHOOK_PREVIOUS_BIN`, or built from git.
fn previous_binary() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("WEBHOOK_PREVIOUS_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("release-{PREVIOUS_RELEASE}"));
    let bin = dir.join("target/debug/webhook-service");
    if bin.exists() {
        return Ok(bin);
    }
    let source = dir.join("source");
    std::fs::create_dir_all(&source).map_err(|e| e.to_string())?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let archive = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "git -C '{}' archive {PREVIOUS_RELEASE} | tar -x -C '{}'",
            root.display(),
            source.display()
        ))
        .status()
        .map_err(|e| format!("git archive: {e}"))?;
    if !archive.success() {
        return Err(format!("git archive {PREVIOUS_RELEASE} failed"));
    }
    eprintln!(
        "building the previous release ({PREVIOUS_RELEASE}) into {}",
        dir.display()
    );
    // The toolchain's own rustc beside its cargo: through rustup's proxy,
    // a dependency's `rust-toolchain` file would pick another toolchain.
    let cargo = PathBuf::from(env!("CARGO"));
    let mut build = Command::new(&cargo);
    if let Some(rustc) = cargo
        .parent()
        .map(|bin| bin.join("rustc"))
        .filter(|r| r.exists())
    {
        build.env("RUSTC", rustc);
    }
    let built = build
        .args([
            "build",
            "-q",
            "-p",
            "webhook-service",
            "--bin",
            "webhook-service",
        ])
        .current_dir(&source)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    if !built.success() || !bin.exists() {
        return Err(format!("building {PREVIOUS_RELEASE} failed"));
    }
    Ok(bin)
}

fn instance_env(url: &str) -> Vec<(&str, &str)> {
    vec![
        ("DATABASE_URL", url),
        ("DATABASE_POOL_SIZE", "4"),
        ("INTERNAL_RATE_LIMIT_MAX_REQUESTS", "0"),
        ("RATE_LIMIT_MAX_REQUESTS", "0"),
        ("WEBHOOK_TIMEOUT", "10000"),
        ("LOG_LEVEL", "warn"),
    ]
}

async fn create_webhook(app: &TestApp, token: &str, url: &str) -> String {
    let hook = app
        .create_webhook(token, url, &["user.created"], None)
        .await;
    hook["id"].as_str().expect("webhook id").to_string()
}

async fn rolling_upgrade_loses_nothing_and_honours_a_deletion() -> Ran {
    let db = match TestDatabase::fresh().await {
        Ok(db) => db,
        Err(why) => return skip(why),
    };
    let previous = tokio::task::spawn_blocking(previous_binary)
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("the previous release: {e}"));
    let mut old = spawn_binary_with(&previous, &instance_env(&db.url)).await;
    // This build migrates the database further while the old one runs.
    let new = spawn_app_with(&instance_env(&db.url)).await;

    let kept = CountingReceiver::with_capacity(EVENTS * 2).await.unwrap();
    let gone = CountingReceiver::with_capacity(EVENTS * 2).await.unwrap();
    let token = new.token("upgrade-user", false);
    let kept_id = create_webhook(&old, &token, &kept.url("/kept")).await;
    let gone_id = create_webhook(&new, &token, &gone.url("/gone")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // both instances route both

    let bases = Arc::new(vec![old.base.clone(), new.base.clone()]);
    let old_stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let client = new.client.clone();
    let lanes: Vec<_> = (0..LANES)
        .map(|_| {
            let (bases, next, acked, client, old_stopped) = (
                bases.clone(),
                next.clone(),
                acked.clone(),
                client.clone(),
                old_stopped.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= EVENTS {
                        return;
                    }
                    // Alternate between the instances until the old one stops.
                    let base = if old_stopped.load(Ordering::Relaxed) {
                        &bases[1]
                    } else {
                        &bases[n % 2]
                    };
                    let answer = client
                        .post(format!("{base}/internal/webhooks/trigger"))
                        .bearer_auth(INTERNAL_SECRET)
                        .json(&json!({"eventType": "user.created", "userId": "upgrade-user", "data": {"n": n}}))
                        .send()
                        .await;
                    if let Ok(answer) = answer
                        && answer.status() == 202
                        && let Ok(body) = answer.json::<Value>().await
                        && let Some(id) = body["data"]["eventId"].as_str()
                    {
                        acked.lock().expect("acked").insert(id.to_string());
                    }
                }
            })
        })
        .collect();

    // A quarter in: the webhook is deleted through the old instance.
    while next.load(Ordering::Relaxed) < EVENTS / 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, body, _) = old
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/webhooks/{gone_id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "delete through the previous release: {body}");
    let deleted_at = Instant::now();

    // Half-way: the old instance is stopped as an upgrade stops it, while
    // the receiver is away, so that it leaves retries behind: deliveries
    // stored in its layout, which this build has to take over.
    while next.load(Ordering::Relaxed) < EVENTS / 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    kept.set_down(true).await.expect("receiver down");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    old_stopped.store(true, Ordering::Relaxed);
    assert!(
        old.terminate(Duration::from_secs(60)),
        "the previous release did not stop cleanly"
    );
    kept.set_down(false).await.expect("receiver up");
    for lane in lanes {
        lane.await.expect("lane");
    }

    let acked = acked.lock().expect("acked").clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut records = Vec::new();
    loop {
        records.extend(kept.take_records());
        let seen: HashSet<&String> = records.iter().map(|(id, _)| id).collect();
        let missing = acked.iter().filter(|id| !seen.contains(id)).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} acknowledged events never reached the webhook that stayed",
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Anything still on its way to the deleted webhook arrives meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let late: Vec<Duration> = gone
        .take_records()
        .iter()
        .filter_map(|(_, at)| at.checked_duration_since(deleted_at))
        .filter(|after| *after > Duration::from_secs(2))
        .collect();
    let duplicates = records.len()
        - records
            .iter()
            .map(|(id, _)| id)
            .collect::<HashSet<_>>()
            .len();
    eprintln!(
        "rolling upgrade: {} of {EVENTS} events acknowledged and delivered ({duplicates} duplicates); \
         {} deliveries reached the deleted webhook more than 2 s after its deletion",
        acked.len(),
        late.len()
    );
    assert!(
        acked.len() >= EVENTS * 9 / 10,
        "only {} acknowledged",
        acked.len()
    );
    assert!(
        late.is_empty(),
        "sent to a deleted webhook {late:?} after its deletion"
    );
    let (status, _) = new
        .get(&format!("/api/v1/webhooks/{kept_id}"), &token)
        .await;
    assert_eq!(status, 200);
    drop(new);
    drop(db);
    DONE
}

/// The tests of this file, for the binary's harness.
pub fn tests() -> Vec<crate::harness::Test> {
    let asked = cfg!(long_tests) || std::env::var_os("WEBHOOK_PREVIOUS_BIN").is_some();
    vec![
        Test::new(
            "rolling_upgrade_loses_nothing_and_honours_a_deletion",
            || Box::pin(rolling_upgrade_loses_nothing_and_honours_a_deletion()),
        )
        .multi_thread(4)
        .ignored_unless(asked),
    ]
}
