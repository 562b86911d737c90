//! Connections to the database file: opening one with the store's settings,
//! the pool of reader connections, and SQLite's errors as the store's.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::store::StoreError;

/// Idle reader connections kept for reuse; more are opened when needed.
const MAX_IDLE_READERS: usize = 4;
/// How long a connection waits for a lock held by another before giving up.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The WAL file is cut back to this size when it starts over.
///
/// Larger than one second of WAL at high load: a smaller limit cuts the
/// file at every rewind, and the next commit grows it again, allocating
/// blocks while ingest waits. A file that keeps its size is rewritten in
/// place.
pub(super) const WAL_SIZE_LIMIT: i64 = 256 * 1024 * 1024;

/// SQLite's errors by their code: a full disk and a damaged or foreign file
/// say so; everything else (I/O errors, locks, a closed connection) is
/// `Unavailable`.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match &e {
            rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
                ErrorCode::DiskFull => StoreError::DiskFull(e.to_string()),
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                    StoreError::Corrupt(e.to_string())
                }
                _ => StoreError::Unavailable(e.to_string()),
            },
            // A stored value of the wrong type or out of range: the row, not the store, is bad.
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::Utf8Error(..) => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Unavailable(e.to_string()),
        }
    }
}

pub(super) fn open_connection(path: &Path, cache_kib: i64) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA journal_size_limit = {WAL_SIZE_LIMIT};
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -{cache_kib};
         PRAGMA temp_store = MEMORY;"
    ))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Idle reader connections, reused by the store's reads; WAL lets them run
/// alongside the writer.
pub(super) struct Readers {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl Readers {
    pub(super) fn new(path: PathBuf) -> Self {
        Readers {
            path,
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Runs `work` on a reader connection, off the async runtime's threads.
    pub(super) async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let readers = self.idle.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers
                .lock()
                .map_err(|_| StoreError::Unavailable("reader pool poisoned".into()))?
                .pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_connection(&path, 8 * 1024)?,
            };
            let result = work(&conn);
            if let Ok(mut pool) = readers.lock()
                && pool.len() < MAX_IDLE_READERS
            {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("reader task failed: {e}")))?
    }
}
