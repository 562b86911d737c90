//! Operations on the store file from outside the service: an online,
//! consistent copy (`webhook-service backup`, SQLite's backup API), putting
//! a copy back (`restore`), and the store part of `webhook-service check`.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::crypto::SecretCipher;
use crate::store::check::StoreCheck;
use crate::store::migrations::SQLITE;

/// The store's file in a data directory.
const DB_FILE: &str = "webhooks.db";
/// The lock file the running service holds.
const LOCK_FILE: &str = "webhooks.lock";
/// How long a backup waits for the writer's lock on the file.
const BUSY_TIMEOUT_MS: u64 = 10_000;

/// Why a backup, a restore or a check of the store file failed.
#[derive(Debug, thiserror::Error)]
pub enum FileOpError {
    /// There is no store at the path.
    #[error("no store at {0} (start the service or run `webhook-service migrate` first)")]
    NoStore(PathBuf),
    /// A service runs on the data directory: restoring under it would corrupt it.
    #[error("{0} is in use by a running webhook-service; stop it before restoring")]
    InUse(PathBuf),
    /// The target exists and `--force` was not given.
    #[error("{0} already exists (pass --force to replace it)")]
    Exists(PathBuf),
    /// The file is not a copy of this service's store.
    #[error("{path} is not a webhook-service store: {reason}")]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// SQLite failed.
    #[error("{path}: {source}")]
    Sqlite {
        /// The file SQLite worked on.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> FileOpError + '_ {
    move |source| FileOpError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> FileOpError + '_ {
    move |source| FileOpError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens an existing store file without creating one.
fn open_existing(path: &Path) -> Result<Connection, FileOpError> {
    if !path.is_file() {
        return Err(FileOpError::NoStore(path.to_path_buf()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite(path))?;
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(sqlite(path))?;
    Ok(conn)
}

/// The migration versions recorded in a store file.
fn applied_versions(conn: &Connection, path: &Path) -> Result<Vec<i64>, FileOpError> {
    let mut stmt = conn
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .map_err(|e| FileOpError::NotAStore {
            path: path.to_path_buf(),
            reason: format!("no schema_migrations table ({e})"),
        })?;
    stmt.query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect::<Result<Vec<i64>, _>>())
        .map_err(sqlite(path))
}

/// How often a copy step that found the source locked is tried again.
const BUSY_RETRIES: u32 = 200;

/// Copies every page of `source` into `target` in one backup step, so under
/// one read transaction: the copy is `source` as of one commit. `path` names
/// the source in errors.
fn copy_all(source: &Connection, target: &mut Connection, path: &Path) -> Result<i32, FileOpError> {
    let copy = Backup::new(source, target).map_err(sqlite(path))?;
    for _ in 0..BUSY_RETRIES {
        // -1: all pages at once (a partial step would let a commit in between
        // restart the copy, or under a steady load never let it finish).
        match copy.step(-1).map_err(sqlite(path))? {
            StepResult::Done => return Ok(copy.progress().pagecount),
            // Busy, Locked (and More, which one step over all pages does not
            // answer): the writer holds the file; try again shortly.
            _ => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    Err(FileOpError::Sqlite {
        path: path.to_path_buf(),
        source: rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some("the store stayed locked for 10 s".into()),
        ),
    })
}

/// What a finished backup copied.
#[derive(Debug)]
pub struct BackupReport {
    /// Pages copied.
    pub pages: i32,
    /// Size of the copy in bytes.
    pub bytes: u64,
}

/// Copies the store of `data_dir` to `dest` while the service may be running.
///
/// The copy is one backup step over all pages: one read transaction, so the
/// copy is the store as of one commit, holding every event acknowledged
/// before the backup began (WAL mode lets the service keep writing meanwhile).
/// It is written beside `dest` and renamed into place, so a failed backup
/// leaves no partial file, and it is a single self-contained file (no WAL).
pub fn backup(data_dir: &Path, dest: &Path) -> Result<BackupReport, FileOpError> {
    let path = data_dir.join(DB_FILE);
    let source = open_existing(&path)?;
    applied_versions(&source, &path)?;
    let partial = dest.with_extension("partial");
    // A previous failed attempt's leftovers; absence is fine.
    let _ = std::fs::remove_file(&partial);
    let mut target = Connection::open(&partial).map_err(sqlite(&partial))?;
    let pages = copy_all(&source, &mut target, &path)?;
    // The copy keeps the source's WAL mode; fold it into one file.
    target
        .execute_batch("PRAGMA journal_mode = DELETE;")
        .map_err(sqlite(&partial))?;
    drop(target);
    std::fs::rename(&partial, dest).map_err(io(dest))?;
    let bytes = std::fs::metadata(dest).map_err(io(dest))?.len();
    Ok(BackupReport { pages, bytes })
}

/// Replaces the store of `data_dir` with the backup `from`; the service
/// must be stopped (its lock is taken for the duration).
pub fn restore(data_dir: &Path, from: &Path, force: bool) -> Result<(), FileOpError> {
    let source = open_existing(from)?;
    let check: String = source
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| FileOpError::NotAStore {
            path: from.to_path_buf(),
            reason: e.to_string(),
        })?;
    if check != "ok" {
        return Err(FileOpError::NotAStore {
            path: from.to_path_buf(),
            reason: format!("integrity check: {check}"),
        });
    }
    applied_versions(&source, from)?;
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let lock_path = data_dir.join(LOCK_FILE);
    let lock = File::create(&lock_path).map_err(io(&lock_path))?;
    lock.try_lock()
        .map_err(|_| FileOpError::InUse(data_dir.to_path_buf()))?;
    let path = data_dir.join(DB_FILE);
    if path.exists() && !force {
        return Err(FileOpError::Exists(path));
    }
    let partial = data_dir.join("webhooks.db.restoring");
    let _ = std::fs::remove_file(&partial);
    {
        let mut target = Connection::open(&partial).map_err(sqlite(&partial))?;
        copy_all(&source, &mut target, from)?;
    }
    // The old store's WAL must not be replayed onto the restored file.
    for suffix in ["-wal", "-shm"] {
        let side = data_dir.join(format!("{DB_FILE}{suffix}"));
        match std::fs::remove_file(&side) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&side)(e)),
            _ => {}
        }
    }
    std::fs::rename(&partial, &path).map_err(io(&path))?;
    drop(lock);
    Ok(())
}

/// Reads the store of `data_dir` (without migrating or writing): its
/// migrations, and whether `cipher` opens every stored webhook secret.
pub fn check(data_dir: &Path, cipher: Option<&SecretCipher>) -> Result<StoreCheck, FileOpError> {
    let path = data_dir.join(DB_FILE);
    let conn = open_existing(&path)?;
    let applied = applied_versions(&conn, &path)?;
    let mut report = StoreCheck {
        applied: applied.len(),
        known: SQLITE.len(),
        secrets_opened: 0,
        secrets_failed: Vec::new(),
    };
    let Some(cipher) = cipher else {
        return Ok(report);
    };
    let mut stmt = conn
        .prepare("SELECT id, secret_enc FROM webhooks")
        .map_err(sqlite(&path))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(sqlite(&path))?;
    for row in rows {
        let (id, sealed) = row.map_err(sqlite(&path))?;
        match cipher.open(&sealed, &id) {
            Ok(_) => report.secrets_opened += 1,
            Err(_) => report.secrets_failed.push(id),
        }
    }
    Ok(report)
}

/// What `migrate` is about to do to a store file, for its progress display.
#[derive(Debug)]
pub struct MigrationPlan {
    /// Versions not yet applied.
    pub pending: Vec<i64>,
    /// Rows of the tables a table-rebuilding migration copies (events,
    /// deliveries, attempts); 0 for a new store.
    pub rows: u64,
    /// Size of the store file in bytes.
    pub bytes: u64,
}

/// Reads which migrations `data_dir`'s store still needs and how much data
/// they may copy, without changing anything.
pub fn migration_plan(data_dir: &Path) -> Result<MigrationPlan, FileOpError> {
    let path = data_dir.join(DB_FILE);
    let all: Vec<i64> = SQLITE.iter().map(|m| m.version).collect();
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if bytes == 0 {
        return Ok(MigrationPlan {
            pending: all,
            rows: 0,
            bytes,
        });
    }
    let conn = open_existing(&path)?;
    let applied = applied_versions(&conn, &path)?;
    let mut rows = 0u64;
    for table in ["events", "deliveries", "attempts"] {
        // A table missing in an unusual file counts as empty; migrate names the problem.
        let count: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap_or(0);
        rows += count.max(0) as u64;
    }
    Ok(MigrationPlan {
        pending: all.into_iter().filter(|v| !applied.contains(v)).collect(),
        rows,
        bytes,
    })
}

/// The store's write-ahead log in `data_dir`, which grows while a migration
/// copies rows: the progress a display can show.
pub fn wal_path(data_dir: &Path) -> PathBuf {
    data_dir.join(format!("{DB_FILE}-wal"))
}
