//! The schema migrations of both backends, and the one decision their
//! runners share: which migrations a database still needs.
//!
//! Each backend applies them its own way (in a transaction each, recording
//! the version in `schema_migrations`); what to apply, and refusing a
//! database this release cannot know, is decided here once.

use super::StoreError;

/// One schema change, applied once per database in version order.
#[derive(Debug)]
pub(crate) struct Migration {
    /// Its number in `schema_migrations`.
    pub version: i64,
    /// The statements.
    pub sql: &'static str,
}

/// The embedded store's migrations.
pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../../migrations/sqlite/0002_compact_hot_tables.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("../../migrations/sqlite/0003_due_by_webhook.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("../../migrations/sqlite/0004_delivery_controls.sql"),
    },
    Migration {
        version: 5,
        sql: include_str!("../../migrations/sqlite/0005_endpoint_options.sql"),
    },
    Migration {
        version: 6,
        sql: include_str!("../../migrations/sqlite/0006_fifo_ordering.sql"),
    },
    Migration {
        version: 7,
        sql: include_str!("../../migrations/sqlite/0007_delivery_hourly.sql"),
    },
    Migration {
        version: 8,
        sql: include_str!("../../migrations/sqlite/0008_waiting_counts.sql"),
    },
    Migration {
        version: 9,
        sql: include_str!("../../migrations/sqlite/0009_deliveries_by_type.sql"),
    },
    Migration {
        version: 10,
        sql: include_str!("../../migrations/sqlite/0010_event_hourly.sql"),
    },
    Migration {
        version: 11,
        sql: include_str!("../../migrations/sqlite/0011_one_log_index.sql"),
    },
];

/// The PostgreSQL store's migrations.
pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../../migrations/postgres/0002_due_by_webhook.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("../../migrations/postgres/0003_deliveries_without_event_key.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("../../migrations/postgres/0004_no_finished_index.sql"),
    },
    Migration {
        version: 5,
        sql: include_str!("../../migrations/postgres/0005_parent_keys_by_hand.sql"),
    },
    Migration {
        version: 6,
        sql: include_str!("../../migrations/postgres/0006_delivery_controls.sql"),
    },
    Migration {
        version: 7,
        sql: include_str!("../../migrations/postgres/0007_endpoint_options.sql"),
    },
    Migration {
        version: 8,
        sql: include_str!("../../migrations/postgres/0008_fifo_ordering.sql"),
    },
    Migration {
        version: 9,
        sql: include_str!("../../migrations/postgres/0009_delivery_hourly.sql"),
    },
    Migration {
        version: 10,
        sql: include_str!("../../migrations/postgres/0010_deliveries_by_type.sql"),
    },
    Migration {
        version: 11,
        sql: include_str!("../../migrations/postgres/0011_event_hourly.sql"),
    },
    Migration {
        version: 12,
        sql: include_str!("../../migrations/postgres/0012_delivery_queue.sql"),
    },
];

/// The migrations of `known` not in `applied` (the versions the database
/// records), in order.
///
/// A database that records a version this release does not know was
/// written by a newer release: running on it could misread or damage its
/// rows, so it is refused, naming `database`.
pub(crate) fn pending<'m>(
    database: &str,
    known: &'m [Migration],
    applied: &[i64],
) -> Result<Vec<&'m Migration>, StoreError> {
    let newest_known = known.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some(newer) = applied.iter().copied().filter(|v| *v > newest_known).max() {
        return Err(StoreError::Corrupt(format!(
            "{database} has schema version {newer}, written by a newer release of \
             webhook-service (this one knows up to {newest_known}); run that release or a later one"
        )));
    }
    Ok(known
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_skips_applied_and_refuses_newer_versions() {
        let versions = |ms: Vec<&Migration>| ms.iter().map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(
            versions(pending("db", SQLITE, &[]).unwrap()),
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
        );
        assert_eq!(
            versions(pending("db", SQLITE, &[1, 2]).unwrap()),
            [3, 4, 5, 6, 7, 8, 9, 10, 11]
        );
        assert!(
            pending("db", SQLITE, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            versions(pending("db", POSTGRES, &[1, 2, 3, 4, 5, 6, 7]).unwrap()),
            [8, 9, 10, 11, 12]
        );
        let err = pending(
            "/data/webhooks.db",
            SQLITE,
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
        )
        .unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains("/data/webhooks.db") && m.contains("12")),
            "{err}"
        );
    }
}
