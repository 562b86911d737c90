//! Applies the PostgreSQL store's schema migrations
//! ([`crate::store::migrations::POSTGRES`]).

use super::pool::Conn;
use super::rows::get;
use crate::store::StoreError;
use crate::store::migrations::{self, POSTGRES};

/// Key of the advisory lock held while migrating, so instances starting
/// together do not apply the same migration twice.
const MIGRATION_LOCK: i64 = 0x7765_6268_6f6f_6b73; // "webhooks"

/// Applies the migrations not yet recorded in `schema_migrations`; returns how many ran.
pub(super) async fn migrate(c: &mut Conn) -> Result<usize, StoreError> {
    // A session lock, released when this connection closes even if a migration fails.
    c.batch(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .await?;
    c.batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await?;
    let applied: Vec<i64> = c
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| get(r, 0, "schema version"))
        .collect::<Result<_, _>>()?;
    let pending = migrations::pending("the PostgreSQL database", POSTGRES, &applied)?;
    for migration in &pending {
        c.transaction(async |c| {
            c.batch(migration.sql).await?;
            c.execute(
                "INSERT INTO schema_migrations (version, applied_at) \
                 VALUES ($1, (extract(epoch FROM clock_timestamp()) * 1000)::int8)",
                &[&migration.version],
            )
            .await
        })
        .await?;
    }
    c.batch(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
        .await?;
    Ok(pending.len())
}
