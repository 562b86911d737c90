//! A database file the service cannot take as its own, found at start: one
//! that is not a database, another application's, or a damaged one. The
//! service refuses to start with an error naming the file, and leaves the
//! file exactly as it was: never a silent re-initialisation.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{ENCRYPTION_KEY, INTERNAL_SECRET, JWT_SECRET};

/// Runs `webhook-service serve` on `data_dir` until it exits (at most 30 s);
/// returns whether it succeeded and what it wrote to stderr.
fn serve_until_exit(data_dir: &Path) -> (bool, String) {
    let log = data_dir.join("service.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_webhook-service"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs([
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("JWT_SECRET", JWT_SECRET),
            ("INTERNAL_SERVICE_SECRET", INTERNAL_SECRET),
            ("WEBHOOK_ENCRYPTION_KEY", ENCRYPTION_KEY),
            ("LOG_LEVEL", "info"),
        ])
        .env("WEBHOOK_DATA_DIR", data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn webhook-service");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the service kept running on a database it cannot use; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.success(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

/// Starts the service on `dir`, whose `webhooks.db` it must refuse, and
/// checks the refusal: a failed start, an error naming the file and saying
/// `why`, the file unchanged.
fn assert_refused(dir: &Path, why: &str) {
    let db = dir.join("webhooks.db");
    let before = std::fs::read(&db).expect("read the database file");
    let (ok, stderr) = serve_until_exit(dir);
    assert!(!ok, "the service started; log:\n{stderr}");
    assert!(
        stderr.contains(&db.display().to_string()),
        "the error names the file {}:\n{stderr}",
        db.display()
    );
    assert!(stderr.contains(why), "the error says {why:?}:\n{stderr}");
    assert!(
        stderr.contains("left untouched"),
        "the error says the file was kept:\n{stderr}"
    );
    let after = std::fs::read(&db).expect("read the database file");
    assert!(before == after, "the file was changed");
    assert!(
        !dir.join("webhooks.db-wal").exists(),
        "the file was opened for writing (a WAL was made)"
    );
}

#[test]
fn a_file_that_is_not_a_database_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let text = "these are somebody's notes, not a database\n".repeat(200);
    std::fs::write(dir.path().join("webhooks.db"), text).unwrap();
    assert_refused(dir.path(), "not a database");
}

#[test]
fn another_applications_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join("webhooks.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
             INSERT INTO notes (body) VALUES ('keep me');",
        )
        .unwrap();
    }
    assert_refused(dir.path(), "not a webhook-service database");
    let conn = rusqlite::Connection::open(dir.path().join("webhooks.db")).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(tables, ["notes"], "no table of the service was added");
}

#[test]
fn a_damaged_database_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // A store of this service, made by its own migrate command.
    let out = Command::new(env!("CARGO_BIN_EXE_webhook-service"))
        .arg("migrate")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WEBHOOK_DATA_DIR", dir.path())
        .env("WEBHOOK_ENCRYPTION_KEY", ENCRYPTION_KEY)
        .env("JWT_SECRET", JWT_SECRET)
        .env("INTERNAL_SERVICE_SECRET", INTERNAL_SECRET)
        .output()
        .expect("migrate");
    assert!(
        out.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = dir.path().join("webhooks.db");
    // Checkpoint the WAL into the file and drop it, so that the file alone
    // holds the schema; then damage the schema page behind its header.
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA journal_mode = DELETE;").unwrap();
    }
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 4096, "a page beyond the first");
    for (i, b) in bytes[100..4096].iter_mut().enumerate() {
        *b = (i * 7 + 13) as u8;
    }
    std::fs::write(&db, &bytes).unwrap();
    assert_refused(dir.path(), "malformed");
}
