//! The PostgreSQL part of `webhook-service check`: reads, never writes.

use super::PostgresStore;
use super::pool::Connector;
use crate::crypto::SecretCipher;
use crate::store::StoreError;
use crate::store::check::StoreCheck;
use crate::store::migrations::POSTGRES;

impl PostgresStore {
    /// Connects to `url` and reports its migrations and whether `cipher`
    /// opens every stored webhook secret, without migrating or writing.
    pub async fn check(url: &str, cipher: Option<&SecretCipher>) -> Result<StoreCheck, StoreError> {
        let connector = Connector::new(url, super::PostgresOptions::default().connect_timeout)?;
        let (conn, connection) = connector.connect_raw().await?;
        // The connection's I/O runs beside the queries; it ends when `conn` is dropped.
        tokio::spawn(connection);
        let applied = conn
            .query("SELECT version FROM schema_migrations", &[])
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot read schema_migrations: {e}")))?
            .len();
        let mut report = StoreCheck {
            applied,
            known: POSTGRES.len(),
            secrets_opened: 0,
            secrets_failed: Vec::new(),
        };
        let Some(cipher) = cipher else {
            return Ok(report);
        };
        let rows = conn
            .query("SELECT id, secret_enc FROM webhooks", &[])
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot read webhooks: {e}")))?;
        for row in rows {
            let id: String = row.get(0);
            let sealed: String = row.get(1);
            match cipher.open(&sealed, &id) {
                Ok(_) => report.secrets_opened += 1,
                Err(_) => report.secrets_failed.push(id),
            }
        }
        Ok(report)
    }
}
