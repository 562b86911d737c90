//! A full disk under the embedded store: ingest answers 503 saying the disk
//! is full, nothing acknowledged is lost, what is stored is still sent, and
//! the service recovers by itself once there is space again.
//!
//! The data directory is a small tmpfs mounted for the test, which needs
//! root (as in CI). Where it cannot be mounted the test is listed as
//! ignored with the reason (and fails under `CI=true`).

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{INTERNAL_SECRET, spawn_app_with};
use crate::delivery_support::eventually;
use crate::harness::{DONE, Ran, Test, skip};
use reqwest::Method;
use serde_json::{Value, json};
use webhook_testkit::{Behavior, Receiver};

/// A tmpfs mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it), or says why not.
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a file still open (a process not yet reaped) must not leave
        // the mount behind.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes a file into `dir` until the file system is full; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("create the filler");
    for chunk in [64 * 1024, 4096, 512] {
        let bytes = vec![0xA5u8; chunk];
        loop {
            match file.write_all(&bytes) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
    let _ = file.sync_all();
    path
}

/// Posts one event of about 4 KB; returns the status, body and headers.
async fn trigger(
    app: &crate::common::TestApp,
    n: usize,
) -> (u16, Value, reqwest::header::HeaderMap) {
    app.request(
        Method::POST,
        "/internal/webhooks/trigger",
        Some(INTERNAL_SECRET),
        Some(json!({"eventType": "user.created", "userId": "dora",
                    "data": {"n": n, "padding": "x".repeat(4000)}})),
    )
    .await
}

fn event_id(body: &Value) -> String {
    body["data"]["eventId"]
        .as_str()
        .unwrap_or_else(|| panic!("no eventId in {body}"))
        .to_string()
}

async fn a_full_disk_refuses_ingest_with_503_and_the_service_recovers_by_itself() -> Ran {
    let disk = match Tmpfs::mount("8m") {
        Ok(disk) => disk,
        Err(why) => {
            return skip(format!(
                "a tmpfs cannot be mounted here (needs root): {why}"
            ));
        }
    };
    let data_dir = disk.path().display().to_string();
    // Dropped before `disk`: the service is gone before the unmount.
    let app = spawn_app_with(&[("WEBHOOK_DATA_DIR", &data_dir)]).await;
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let token = app.token("dora", false);
    let hook = app
        .create_webhook(&token, &receiver.url("/h"), &["*"], None)
        .await;
    let hook_id = hook["id"].as_str().unwrap().to_string();

    let mut acknowledged = Vec::new();
    for n in 0..3 {
        let (status, body, _) = trigger(&app, n).await;
        assert_eq!(status, 202, "{body}");
        acknowledged.push(event_id(&body));
    }
    receiver.wait_for(3, Duration::from_secs(20)).await.unwrap();

    // No space left: the next commits that need a new page of the log fail.
    let filler = fill(disk.path());
    let started = Instant::now();
    let (refused, headers) = loop {
        let (status, body, headers) = trigger(&app, acknowledged.len()).await;
        match status {
            202 => acknowledged.push(event_id(&body)),
            _ => break (body, (status, headers)),
        }
        assert!(
            started.elapsed() < Duration::from_secs(60) && acknowledged.len() < 5000,
            "ingest never refused an event on a full disk ({} acknowledged)",
            acknowledged.len()
        );
    };
    let (status, headers) = headers;
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["error"]["code"], "STORE_DISK_FULL", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("disk") && message.contains("full"),
        "{message}"
    );
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    // Still full: still refused, the same way.
    let (status, body, _) = trigger(&app, 0).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("STORE_DISK_FULL"))
    );

    // The health check says why.
    let (status, health) = app.get("/health", &token).await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["reason"], "the disk holding the store is full");

    // What was stored keeps going out meanwhile.
    let stored = acknowledged.len();
    receiver
        .wait_for(stored, Duration::from_secs(30))
        .await
        .expect("every acknowledged event is sent while the disk is full");

    // Space returns: the service takes events again without a restart.
    std::fs::remove_file(&filler).expect("remove the filler");
    let recovered = eventually("ingest accepted again", Duration::from_secs(30), || async {
        let (status, body, _) = trigger(&app, 9999).await;
        (status == 202).then(|| event_id(&body))
    })
    .await;
    acknowledged.push(recovered);
    let (status, health) = app.get("/health", &token).await;
    assert_eq!(status, 200, "healthy again: {health}");

    // Nothing acknowledged was lost: each was received, and each is logged
    // as delivered (the attempt results that waited for space are recorded).
    let total = acknowledged.len();
    let got = receiver
        .wait_for(total, Duration::from_secs(30))
        .await
        .unwrap();
    let received: HashSet<String> = got.iter().filter_map(|r| r.event_id()).collect();
    for id in &acknowledged {
        assert!(
            received.contains(id),
            "acknowledged event {id} was never sent"
        );
    }
    eventually(
        "every acknowledged event logged as delivered",
        Duration::from_secs(30),
        || async {
            let (status, body) = app
                .get(&format!("/api/v1/webhooks/{hook_id}/stats"), &token)
                .await;
            (status == 200 && body["data"]["byStatus"]["delivered"] == json!(total)).then_some(())
        },
    )
    .await;
    drop(app);
    DONE
}

/// The tests of this file, for the binary's harness.
pub fn tests() -> Vec<crate::harness::Test> {
    vec![Test::new(
        "a_full_disk_refuses_ingest_with_503_and_the_service_recovers_by_itself",
        || Box::pin(a_full_disk_refuses_ingest_with_503_and_the_service_recovers_by_itself()),
    )]
}
