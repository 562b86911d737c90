//! Applies the embedded store's schema migrations
//! ([`crate::store::migrations::SQLITE`]).

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::store::StoreError;
use crate::store::migrations::{self, SQLITE};

/// Checks, before anything is written to it, that the file at `path` (if
/// there is one) is a database of this service.
///
/// A file that is not an SQLite database, or is damaged where its schema
/// lies, is refused; so is a database with tables but no
/// `schema_migrations`, another application's: neither is ever given this
/// service's tables or switched to WAL mode. An empty or missing file is a
/// new store.
pub(super) fn check_existing(path: &Path) -> Result<(), StoreError> {
    let is_empty = match std::fs::metadata(path) {
        Ok(meta) => meta.len() == 0,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            return Err(StoreError::Unavailable(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    if is_empty {
        return Ok(());
    }
    // No pragmas here: they would write to the file (the journal mode).
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Reading the schema reads the file's first page: this is where a file
    // that is not a database, or a damaged one, fails.
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if !tables.is_empty() && !tables.iter().any(|t| t == "schema_migrations") {
        let shown: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
        return Err(StoreError::Corrupt(format!(
            "{} is not a webhook-service database (it holds tables {} and no schema_migrations)",
            path.display(),
            shown.join(", ")
        )));
    }
    Ok(())
}

/// Applies the migrations not yet recorded in `schema_migrations`; returns
/// how many ran. `path` names the file in errors.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<usize, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    let applied: Vec<i64> = conn
        .prepare("SELECT version FROM schema_migrations")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let pending = migrations::pending(&path.display().to_string(), SQLITE, &applied)?;
    for migration in &pending {
        let tx = conn.transaction()?;
        tx.execute_batch(migration.sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            rusqlite::params![migration.version, webhook_domain::timefmt::now_ms()],
        )?;
        tx.commit()?;
    }
    Ok(pending.len())
}
