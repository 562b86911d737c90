//! Connections to PostgreSQL: a connector that fails fast while the server
//! is unreachable, a small pool, and connections that cache their prepared
//! statements and know when they are broken.
//!
//! Nothing here retries by itself: a call made while the server is down
//! fails at once with [`StoreError::Unavailable`] (the API answers 503), and
//! the first call after the server is back opens a fresh connection. A pool
//! of a few connections needs no more machinery than that, so it is written
//! here rather than pulled in as a dependency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Connection, NoTls, Row, Socket, Statement};

use crate::store::StoreError;

/// After a failed connect, further connects fail at once for this long
/// instead of each waiting for its own timeout.
const FAIL_FAST_FOR: Duration = Duration::from_millis(500);

/// Opens connections, remembering the last failure.
pub(super) struct Connector {
    config: tokio_postgres::Config,
    connect_timeout: Duration,
    outage: Mutex<Outage>,
}

/// What the connector knows about the server being away.
#[derive(Default)]
struct Outage {
    /// When and why the last connect failed; `None` while connects succeed.
    last_failure: Option<(Instant, String)>,
    /// A connect is under way after a failure; other callers do not wait for it.
    probing: bool,
}

/// Clears `probing` however the probe ends, even if its caller goes away.
struct ProbeGuard<'a>(&'a Mutex<Outage>);

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut outage) = self.0.lock() {
            outage.probing = false;
        }
    }
}

impl Connector {
    /// A connector for `url` (a `postgres://` URL or key=value string).
    pub(super) fn new(url: &str, connect_timeout: Duration) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Unavailable(format!("DATABASE_URL is not a valid PostgreSQL URL: {e}"))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(connect_timeout);
        }
        // A server that vanished without closing the socket is noticed by keepalives.
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .application_name("webhook-service");
        Ok(Connector {
            config,
            connect_timeout,
            outage: Mutex::new(Outage::default()),
        })
    }

    /// Opens a connection. While the server is known to be away, only one
    /// caller at a time (and at most one per [`FAIL_FAST_FOR`]) tries again;
    /// the others fail at once with the last failure.
    pub(super) async fn connect(&self) -> Result<Conn, StoreError> {
        let (client, connection) = self.connect_raw().await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection closed");
            }
        });
        Ok(Conn::new(client))
    }

    /// Like [`Connector::connect`], leaving the connection for the caller to
    /// drive (to read notifications).
    pub(super) async fn connect_raw(
        &self,
    ) -> Result<(Client, Connection<Socket, NoTlsStream>), StoreError> {
        let _probe = {
            let mut outage = self
                .outage
                .lock()
                .map_err(|_| StoreError::Unavailable("connector state poisoned".into()))?;
            match &outage.last_failure {
                None => None,
                Some((at, reason)) if outage.probing || at.elapsed() < FAIL_FAST_FOR => {
                    return Err(unreachable(reason));
                }
                Some(_) => {
                    outage.probing = true;
                    Some(ProbeGuard(&self.outage))
                }
            }
        };
        let attempt = tokio::time::timeout(self.connect_timeout, self.config.connect(NoTls)).await;
        let failure = match attempt {
            Ok(Ok(connected)) => {
                if let Ok(mut outage) = self.outage.lock() {
                    outage.last_failure = None;
                }
                return Ok(connected);
            }
            Ok(Err(e)) => describe(&e),
            Err(_) => format!("no answer within {:?}", self.connect_timeout),
        };
        if let Ok(mut outage) = self.outage.lock() {
            outage.last_failure = Some((Instant::now(), failure.clone()));
        }
        Err(unreachable(&failure))
    }
}

fn unreachable(reason: &str) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL is unreachable: {reason}"))
}

/// The text of a driver error, with the server's code and message when it sent one.
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                text.push_str(": ");
                text.push_str(&inner.to_string());
                source = inner.source();
            }
            text
        }
    }
}

/// Whether an error means the connection cannot be used any more.
fn breaks_connection(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        // Connection exceptions, the server shutting down or restarting, and
        // "cached plan must not change result type" after a schema change
        // (a new connection prepares its statements afresh).
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || code.starts_with("57P") || code == "0A000"
        }
        None => e.as_db_error().is_none(),
    }
}

/// One connection with its cache of prepared statements.
pub(super) struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
    broken: bool,
    in_transaction: bool,
    /// A round trip was started and has not been seen to end.
    busy: bool,
}

impl Conn {
    fn new(client: Client) -> Self {
        Conn {
            client,
            statements: HashMap::new(),
            broken: false,
            in_transaction: false,
            busy: false,
        }
    }

    /// Whether the connection should be thrown away.
    ///
    /// Also when its caller went away in the middle of a round trip (an API
    /// request past its timeout drops its future): the statement may still
    /// be running on the server, and the next borrower's statements would
    /// queue behind it for as long as it takes. Such a borrower was the
    /// scheduler, whose heartbeat then lapsed and let other instances void
    /// this live instance's claims.
    pub(super) fn is_broken(&self) -> bool {
        self.broken || self.in_transaction || self.busy || self.client.is_closed()
    }

    /// Runs one round trip, marking the connection busy until it ends.
    async fn round_trip<T>(
        &mut self,
        work: impl AsyncFnOnce(&Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, StoreError> {
        self.busy = true;
        let result = work(&self.client).await;
        self.busy = false;
        result.map_err(|e| self.fail(e))
    }

    fn fail(&mut self, e: tokio_postgres::Error) -> StoreError {
        if breaks_connection(&e) {
            self.broken = true;
        }
        StoreError::Unavailable(describe(&e))
    }

    async fn statement(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.round_trip(async |c| c.prepare(sql).await).await?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Runs a (cached) statement and returns its rows.
    pub(super) async fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let statement = self.statement(sql).await?;
        self.round_trip(async |c| c.query(&statement, params).await)
            .await
    }

    /// Runs a (cached) statement expected to return at most one row.
    pub(super) async fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let statement = self.statement(sql).await?;
        self.round_trip(async |c| c.query_opt(&statement, params).await)
            .await
    }

    /// Runs a (cached) statement that returns exactly one row.
    pub(super) async fn query_one(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, StoreError> {
        let statement = self.statement(sql).await?;
        self.round_trip(async |c| c.query_one(&statement, params).await)
            .await
    }

    /// Runs a (cached) statement and returns the rows it changed.
    pub(super) async fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let statement = self.statement(sql).await?;
        self.round_trip(async |c| c.execute(&statement, params).await)
            .await
    }

    /// Runs statements without parameters (migrations, transaction control).
    pub(super) async fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.round_trip(async |c| c.batch_execute(sql).await).await
    }

    /// Starts a transaction. If the caller goes away before
    /// [`Conn::commit`] or [`Conn::rollback`], the connection is discarded
    /// (closing it rolls the transaction back) rather than reused mid-transaction.
    pub(super) async fn begin(&mut self) -> Result<(), StoreError> {
        self.in_transaction = true;
        self.batch("BEGIN").await
    }

    /// Commits the open transaction.
    pub(super) async fn commit(&mut self) -> Result<(), StoreError> {
        self.batch("COMMIT").await?;
        self.in_transaction = false;
        Ok(())
    }

    /// Rolls the open transaction back.
    pub(super) async fn rollback(&mut self) -> Result<(), StoreError> {
        self.batch("ROLLBACK").await?;
        self.in_transaction = false;
        Ok(())
    }

    /// Runs `work` in a transaction: committed if it succeeds, rolled back if not.
    pub(super) async fn transaction<T>(
        &mut self,
        work: impl AsyncFnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.begin().await?;
        match work(self).await {
            Ok(value) => {
                self.commit().await?;
                Ok(value)
            }
            Err(e) => {
                if !self.broken && !self.client.is_closed() {
                    // Best effort: if even the rollback fails, the connection is discarded.
                    let _ = self.rollback().await;
                }
                Err(e)
            }
        }
    }
}

/// A bounded set of connections shared by the store's calls.
pub(super) struct Pool {
    connector: Arc<Connector>,
    idle: Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
    size: usize,
    acquire_timeout: Duration,
}

impl Pool {
    /// A pool of at most `size` connections (none is opened yet).
    pub(super) fn new(connector: Arc<Connector>, size: usize, acquire_timeout: Duration) -> Self {
        let size = size.max(1);
        Pool {
            connector,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Arc::new(Semaphore::new(size)),
            size,
            acquire_timeout,
        }
    }

    /// A connection for one call: an idle one if it is still open, else a new one.
    pub(super) async fn get(&self) -> Result<Pooled<'_>, StoreError> {
        let permit =
            tokio::time::timeout(self.acquire_timeout, self.permits.clone().acquire_owned())
                .await
                .map_err(|_| {
                    StoreError::Unavailable(format!(
                        "all {} PostgreSQL connections stayed busy for {:?} (DATABASE_POOL_SIZE)",
                        self.size, self.acquire_timeout
                    ))
                })?
                .map_err(|_| StoreError::Unavailable("the connection pool is closed".into()))?;
        let reused = loop {
            let candidate = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            match candidate {
                Some(conn) if conn.is_broken() => continue,
                other => break other,
            }
        };
        let conn = match reused {
            Some(conn) => conn,
            None => self.connector.connect().await?,
        };
        Ok(Pooled {
            conn: Some(conn),
            pool: self,
            _permit: permit,
        })
    }
}

/// A connection borrowed from the pool; it goes back when dropped, unless broken.
pub(super) struct Pooled<'a> {
    conn: Option<Conn>,
    pool: &'a Pool,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        // Only `drop` takes the connection out.
        self.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && !conn.is_broken()
            && let Ok(mut idle) = self.pool.idle.lock()
        {
            idle.push(conn);
        }
    }
}
