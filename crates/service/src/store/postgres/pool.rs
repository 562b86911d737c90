//! Connections to PostgreSQL: a connector that fails fast while the server
//! is unreachable, a small pool, and connections that cache their prepared
//! statements and know when they are broken.
//!
//! Nothing here retries by itself: a call made while the server is down
//! fails at once with [`StoreError::Unavailable`] (the API answers 503), and
//! the first call after the server is back opens a fresh connection. The
//! pool itself is deadpool's; what it lends is this module's [`Conn`], which
//! deadpool-postgres's client cannot replace: it must remember that its
//! caller left in the middle of a statement.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool::Runtime;
use deadpool::managed::{self, PoolError, QueueMode, RecycleError, RecycleResult};
use tokio_postgres::error::SqlState;
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

/// The store error a failed statement stands for: a full disk and damaged
/// data say so (the operator's fix is space or a restore, not a restart);
/// everything else is the backend being unavailable.
fn classify(e: &tokio_postgres::Error) -> StoreError {
    let detail = describe(e);
    match e.code() {
        Some(code) if *code == SqlState::DISK_FULL => StoreError::DiskFull(detail),
        Some(code) if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED => {
            StoreError::Corrupt(detail)
        }
        _ => StoreError::Unavailable(detail),
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
        classify(&e)
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

    /// Starts a read-only transaction whose statements all see one snapshot
    /// (as [`Conn::begin`] for the caller going away).
    pub(super) async fn begin_snapshot(&mut self) -> Result<(), StoreError> {
        self.in_transaction = true;
        self.batch("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
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

/// The planner settings of every pooled connection (see `Manager::create`).
///
/// JIT is off with them: a statement that must scan a table no index
/// serves (the few webhooks, the instances) carries the disabled scan's
/// cost of 10^10, far above `jit_above_cost`, and was compiled on every
/// run: 60 ms of JIT for a list of five webhooks that took 0.05 ms to read
/// (performance log, 2026-12-06). No statement of the store is long
/// enough for JIT to pay.
pub(super) const PLAN_BY_INDEX: &str =
    "SET enable_bitmapscan = off; SET enable_seqscan = off; SET jit = off";

/// Opens the pool's connections through the fail-fast [`Connector`] and
/// vets an idle one before it is lent again.
struct Manager {
    connector: Arc<Connector>,
}

impl managed::Manager for Manager {
    type Type = Conn;
    type Error = StoreError;

    /// A connection that plans by index: no bitmap scans, and sequential
    /// scans only where no index serves.
    ///
    /// Bitmaps: the log's pages and counts stop at a limit, which an index
    /// walked in order honours and a bitmap (built from every matching
    /// entry first) cannot, and only a plain index scan marks the dead
    /// entries it meets (a delivery's row version from before its final
    /// update) so that the next read skips them. For a table without
    /// statistics yet, bitmaps made the first page of a 200,000-delivery
    /// log take 40-540 ms instead of 6 ms.
    ///
    /// Sequential scans: a connection caches a statement's generic plan
    /// after a few runs, and keeps it. Planned while the tables were empty
    /// (a new database), the claim of due work joined a sequential scan of
    /// every delivery to one of every event; on the grown table each claim
    /// of 1,000 then took 10 s, and a backlog drained at 100 deliveries/s
    /// (performance log, 2026-12-06). The writers' connections are set the
    /// same way for the same reason (`writer::connect`).
    async fn create(&self) -> Result<Conn, StoreError> {
        let mut conn = self.connector.connect().await?;
        conn.batch(PLAN_BY_INDEX).await?;
        Ok(conn)
    }

    async fn recycle(&self, conn: &mut Conn, _: &managed::Metrics) -> RecycleResult<StoreError> {
        // Broken connections are discarded on return (see `Pooled`'s drop);
        // this catches one that the server closed while it was idle.
        if conn.is_broken() {
            return Err(RecycleError::message("the connection is closed"));
        }
        Ok(())
    }
}

/// A bounded set of connections shared by the store's calls (deadpool's
/// managed pool: at most `size` connections, idle ones reused newest first).
/// A clone shares the same connections.
#[derive(Clone)]
pub(super) struct Pool {
    inner: managed::Pool<Manager>,
    size: usize,
    acquire_timeout: Duration,
}

impl Pool {
    /// A pool of at most `size` connections (none is opened yet); a call
    /// waits up to `acquire_timeout` for one before it fails as unavailable.
    pub(super) fn new(connector: Arc<Connector>, size: usize, acquire_timeout: Duration) -> Self {
        let size = size.max(1);
        let inner = managed::Pool::builder(Manager { connector })
            .max_size(size)
            .wait_timeout(Some(acquire_timeout))
            // Opening a connection has its own limit: the connector's connect timeout.
            .create_timeout(None)
            .queue_mode(QueueMode::Lifo)
            .runtime(Runtime::Tokio1)
            .build()
            // Infallible: building fails only when a timeout is set without
            // a runtime, and the runtime is set just above.
            .expect("a pool with a runtime builds");
        Pool {
            inner,
            size,
            acquire_timeout,
        }
    }

    /// A connection for one call: an idle one if it is still open, else a new one.
    pub(super) async fn get(&self) -> Result<Pooled, StoreError> {
        match self.inner.get().await {
            Ok(conn) => Ok(Pooled { conn: Some(conn) }),
            Err(PoolError::Backend(e)) => Err(e),
            Err(PoolError::Timeout(_)) => Err(StoreError::Unavailable(format!(
                "all {} PostgreSQL connections stayed busy for {:?} (DATABASE_POOL_SIZE)",
                self.size, self.acquire_timeout
            ))),
            Err(PoolError::Closed) => Err(StoreError::Unavailable(
                "the connection pool is closed".into(),
            )),
            Err(e @ (PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_))) => Err(
                StoreError::Unavailable(format!("the connection pool failed: {e}")),
            ),
        }
    }
}

/// A connection borrowed from the pool; it goes back when dropped, unless broken.
pub(super) struct Pooled {
    /// Taken out only by `drop`.
    conn: Option<managed::Object<Manager>>,
}

impl std::ops::Deref for Pooled {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        // Only `drop` takes the connection out.
        self.conn.as_deref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_deref_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        // A broken connection (one whose caller left mid-statement above all)
        // is closed now and its slot freed, rather than parked in the pool
        // until the next call vets it: its statement may still be running.
        if let Some(conn) = self.conn.take()
            && conn.is_broken()
        {
            drop(managed::Object::take(conn));
        }
    }
}

#[cfg(test)]
mod tests {
    //! The pool against the PostgreSQL server the integration tests use
    //! (`WEBHOOK_TEST_POSTGRES_URL`, default the local trust-auth server);
    //! skipped when it is unreachable unless `WEBHOOK_REQUIRE_POSTGRES=1`.

    use super::*;

    fn server_url() -> String {
        std::env::var("WEBHOOK_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
    }

    /// A pool of one connection, or `None` when the server is away and not required.
    async fn pool_of_one(acquire_timeout: Duration) -> Option<Pool> {
        let connector = Arc::new(Connector::new(&server_url(), Duration::from_secs(5)).unwrap());
        let pool = Pool::new(connector, 1, acquire_timeout);
        match pool.get().await {
            Ok(_) => Some(pool),
            Err(e) if std::env::var("WEBHOOK_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") => {
                panic!("PostgreSQL is required: {e}")
            }
            Err(e) => {
                eprintln!("skipped: PostgreSQL unreachable ({e})");
                None
            }
        }
    }

    async fn backend_pid(conn: &mut Conn) -> i32 {
        let row = conn
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap();
        row.get(0)
    }

    /// A statement whose generic plan is made while its tables are empty
    /// (as on a new database) still reads by index: the plan is kept for
    /// the connection's life, long after the tables have grown.
    #[tokio::test]
    async fn a_pooled_connection_plans_by_index_while_the_tables_are_empty() {
        let Some(pool) = pool_of_one(Duration::from_secs(5)).await else {
            return;
        };
        let mut c = pool.get().await.unwrap();
        c.batch(
            "CREATE TEMP TABLE probe_claims (id text PRIMARY KEY, event_id text NOT NULL); \
             CREATE TEMP TABLE probe_events (id text PRIMARY KEY, payload bytea); \
             SET plan_cache_mode = force_generic_plan; \
             PREPARE probe_claim(text[]) AS UPDATE probe_claims d SET event_id = d.event_id \
             FROM probe_events e WHERE d.id = ANY($1) AND e.id = d.event_id RETURNING e.payload",
        )
        .await
        .unwrap();
        let plan: Vec<String> = c
            .query("EXPLAIN EXECUTE probe_claim('{dlv_1}')", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        // A table no index serves is scanned, without compiling the scan.
        let scan: Vec<String> = c
            .query(
                "EXPLAIN SELECT count(*) FROM probe_events WHERE payload IS NULL",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        c.batch(
            "DEALLOCATE probe_claim; RESET plan_cache_mode; DROP TABLE probe_claims, probe_events",
        )
        .await
        .unwrap();
        let scan = scan.join("\n");
        assert!(!scan.contains("JIT"), "{scan}");
        let plan = plan.join("\n");
        assert!(
            plan.contains("Index Scan using probe_claims_pkey")
                && plan.contains("Index Scan using probe_events_pkey"),
            "{plan}"
        );
        assert!(
            !plan.contains("Seq Scan") && !plan.contains("Bitmap"),
            "{plan}"
        );
    }

    #[tokio::test]
    async fn a_call_waits_for_a_busy_pool_then_fails_as_unavailable() {
        let Some(pool) = pool_of_one(Duration::from_millis(300)).await else {
            return;
        };
        let mut held = pool.get().await.unwrap();
        let pid = backend_pid(&mut held).await;
        let started = Instant::now();
        let Err(StoreError::Unavailable(message)) = pool.get().await else {
            panic!("a second connection was lent from a pool of one");
        };
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(message.contains("stayed busy"), "{message}");
        assert!(message.contains("DATABASE_POOL_SIZE"), "{message}");
        drop(held);
        // Returned healthy, so lent again rather than replaced.
        let mut again = pool.get().await.unwrap();
        assert_eq!(backend_pid(&mut again).await, pid);
    }

    #[tokio::test]
    async fn a_connection_whose_caller_left_mid_statement_is_not_lent_again() {
        let Some(pool) = pool_of_one(Duration::from_secs(5)).await else {
            return;
        };
        let mut conn = pool.get().await.unwrap();
        let pid = backend_pid(&mut conn).await;
        let sleep = conn.execute("SELECT pg_sleep(10)", &[]);
        // The caller gives up mid-statement: the future is dropped.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), sleep)
                .await
                .is_err()
        );
        assert!(conn.is_broken());
        drop(conn);
        // The pool of one has its slot back at once, with a fresh connection
        // that does not queue behind the abandoned statement.
        let mut next = pool.get().await.unwrap();
        assert_ne!(backend_pid(&mut next).await, pid);
    }

    /// PostgreSQL raises the errors a full disk or damaged pages give.
    #[tokio::test]
    async fn a_full_disk_and_damaged_data_are_named_not_called_unavailable() {
        let Some(pool) = pool_of_one(Duration::from_secs(5)).await else {
            return;
        };
        let mut conn = pool.get().await.unwrap();
        let full = conn
            .execute(
                "DO $$ BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = 'disk_full'; END $$",
                &[],
            )
            .await;
        assert!(
            matches!(full, Err(StoreError::DiskFull(ref m)) if m.contains("53100")),
            "{full:?}"
        );
        let damaged = conn
            .execute(
                "DO $$ BEGIN RAISE EXCEPTION 'invalid page in block 7' USING ERRCODE = 'data_corrupted'; END $$",
                &[],
            )
            .await;
        assert!(
            matches!(damaged, Err(StoreError::Corrupt(ref m)) if m.contains("XX001")),
            "{damaged:?}"
        );
        let other = conn
            .execute(
                "DO $$ BEGIN RAISE EXCEPTION 'too many connections' USING ERRCODE = 'too_many_connections'; END $$",
                &[],
            )
            .await;
        assert!(
            matches!(other, Err(StoreError::Unavailable(_))),
            "{other:?}"
        );
        // None of them breaks the connection.
        assert!(!conn.is_broken());
    }
}
