//! The embedded store's schema migrations.

use rusqlite::Connection;

use crate::store::StoreError;

pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/sqlite/0001_init.sql")),
    (
        2,
        include_str!("../../../migrations/sqlite/0002_compact_hot_tables.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/sqlite/0003_due_by_webhook.sql"),
    ),
];

/// Applies the migrations not yet recorded in `schema_migrations`; returns how many ran.
pub(super) fn migrate(conn: &mut Connection) -> Result<usize, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    let mut applied = 0;
    for (version, sql) in MIGRATIONS {
        let done: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
            [version],
            |r| r.get(0),
        )?;
        if done {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            rusqlite::params![version, webhook_domain::timefmt::now_ms()],
        )?;
        tx.commit()?;
        applied += 1;
    }
    Ok(applied)
}
