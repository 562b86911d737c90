//! The PostgreSQL store's schema migrations.

use super::pool::Conn;
use crate::store::StoreError;

const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/postgres/0002_due_by_webhook.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/postgres/0003_deliveries_without_event_key.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/postgres/0004_no_finished_index.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/postgres/0005_parent_keys_by_hand.sql"),
    ),
];
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
    let mut applied = 0;
    for (version, sql) in MIGRATIONS {
        let done = c
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[version],
            )
            .await?
            .is_some();
        if done {
            continue;
        }
        c.transaction(async |c| {
            c.batch(sql).await?;
            c.execute(
                "INSERT INTO schema_migrations (version, applied_at) \
                 VALUES ($1, (extract(epoch FROM clock_timestamp()) * 1000)::int8)",
                &[version],
            )
            .await
        })
        .await?;
        applied += 1;
    }
    c.batch(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
        .await?;
    Ok(applied)
}
