//! The PostgreSQL store, for one or several instances sharing a database
//! (`DATABASE_URL=postgres://...`).
//!
//! - Ingest and attempt recording each go through a group-committing writer
//!   task with its own connection (see [`writer`]): an event is acknowledged
//!   only after the transaction holding it has committed, and one commit
//!   serves every caller that queued meanwhile. Two writers, not one, so that
//!   ingest and recording overlap their round trips and WAL flushes instead
//!   of waiting for each other on one connection.
//! - Everything else runs on a small pool of connections, one statement or
//!   one short transaction per call.
//! - Claims are safe across instances (see [`claims`]).
//! - Webhook changes made by any instance are announced (see [`changes`]).
//! - While the server is unreachable every call fails at once with
//!   [`StoreError::Unavailable`]; the next call after it returns reconnects.

mod changes;
mod check;
mod claims;
mod ingest;
mod logs;
mod migrations;
mod ordering;
mod pool;
mod record;
mod rows;
mod webhooks;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};
use webhook_domain::ids::{DeliveryId, UserId, WebhookId};
use webhook_domain::webhook::WebhookSecret;

use self::migrations::migrate;
use self::pool::{Connector, Pool};
use self::writer::{Done, Job, Work};
use super::hourly::Spans;
use super::{
    AttemptReport, DeliveryDetail, DeliveryFilter, DeliveryRecord, DeliveryStats, DisabledWebhook,
    DueDelivery, FailurePolicy, IngestItem, IngestOutcome, NewWebhook, OrderHead, Owner, Page,
    PendingChanges, PlatformBucket, StatsScope, Store, StoreError, VisibleWebhook, WebhookChanges,
    WebhookPatch, WebhookRecord,
};
use crate::crypto::SecretCipher;

/// How the store connects and when it declares an instance dead.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Connections in the pool (`DATABASE_POOL_SIZE`); the two writers and
    /// the listener for webhook changes have one more each.
    pub pool_size: usize,
    /// Longest wait for a new connection.
    pub connect_timeout: Duration,
    /// Longest wait for a free pooled connection before answering `Unavailable`.
    pub acquire_timeout: Duration,
    /// A claim whose owner has not sent a heartbeat for this long is voided.
    /// The engine beats every 2 s, so 10 s survives a few missed beats.
    pub claim_ttl: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: 16,
            connect_timeout: Duration::from_secs(3),
            acquire_timeout: Duration::from_secs(5),
            claim_ttl: Duration::from_secs(10),
        }
    }
}

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    /// Commits events with their deliveries (and health pings).
    ingest_writer: mpsc::Sender<Job>,
    /// Commits attempt results.
    record_writer: mpsc::Sender<Job>,
    cipher: SecretCipher,
    claim_ttl_ms: i64,
    /// When this instance last started looking for an older release's work
    /// to adopt into the queue (`claims::adopt_from_older`), in ms since
    /// the epoch; and whether that look is still running.
    adopted_at: std::sync::atomic::AtomicI64,
    adopting: Arc<std::sync::atomic::AtomicBool>,
    changes: watch::Receiver<u64>,
    /// What the listener gathered for `changes` (see `changes.rs`).
    pending_changes: Arc<std::sync::Mutex<PendingChanges>>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // The writers stop by themselves once their queue's sender is gone; the listener would not.
        self.listener.abort();
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("claim_ttl_ms", &self.claim_ttl_ms)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Starts a look for an older release's work to adopt into the queue,
    /// at most once per claim TTL and one at a time, in a task of its own:
    /// it scans the log while older instances have been seen lately, and
    /// must not hold back the heartbeat that recovery runs beside.
    fn adopt_from_older(&self) {
        use std::sync::atomic::Ordering::{AcqRel, Relaxed, Release};
        let now = webhook_domain::timefmt::now_ms();
        if now.saturating_sub(self.adopted_at.load(Relaxed)) < self.claim_ttl_ms
            || self.adopting.swap(true, AcqRel)
        {
            return;
        }
        self.adopted_at.store(now, Relaxed);
        let (pool, adopting, ttl_ms) =
            (self.pool.clone(), self.adopting.clone(), self.claim_ttl_ms);
        tokio::spawn(async move {
            let adopted = match pool.get().await {
                Ok(mut c) => claims::adopt_from_older(&mut c, ttl_ms).await,
                Err(e) => Err(e),
            };
            match adopted {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    adopted = n,
                    "an older release's deliveries are in the queue now"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot adopt an older release's deliveries"),
            }
            adopting.store(false, Release);
        });
    }

    /// Connects to `url`, applies pending migrations and starts the writers.
    /// Fails if the server cannot be reached now.
    pub async fn connect(
        url: &str,
        options: PostgresOptions,
        cipher: SecretCipher,
    ) -> Result<Self, StoreError> {
        let connector = Arc::new(Connector::new(url, options.connect_timeout)?);
        let mut conn = connector.connect().await?;
        migrate(&mut conn).await?;
        // Closing the migration connection ends its session (and lock) for sure.
        drop(conn);
        let (ingest_writer, ingest_jobs) = mpsc::channel(writer::QUEUE_CAPACITY);
        tokio::spawn(writer::run(connector.clone(), ingest_jobs));
        let (record_writer, record_jobs) = mpsc::channel(writer::QUEUE_CAPACITY);
        tokio::spawn(writer::run(connector.clone(), record_jobs));
        let (announce, changes) = watch::channel(0);
        let pending_changes = Arc::new(std::sync::Mutex::new(PendingChanges::new()));
        let listener = tokio::spawn(changes::listen(
            connector.clone(),
            pending_changes.clone(),
            announce,
        ));
        Ok(PostgresStore {
            pool: Pool::new(connector, options.pool_size, options.acquire_timeout),
            ingest_writer,
            record_writer,
            cipher,
            claim_ttl_ms: i64::try_from(options.claim_ttl.as_millis()).unwrap_or(i64::MAX),
            adopted_at: std::sync::atomic::AtomicI64::new(0),
            adopting: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            changes,
            pending_changes,
            listener,
        })
    }

    /// Applies pending migrations and returns how many ran (`webhook-service migrate`).
    pub async fn migrate_only(url: &str) -> Result<usize, StoreError> {
        let connector = Connector::new(url, PostgresOptions::default().connect_timeout)?;
        let mut conn = connector.connect().await?;
        migrate(&mut conn).await
    }

    async fn write(&self, work: Work) -> Result<Done, StoreError> {
        let writer = match work {
            Work::Record { .. } => &self.record_writer,
            Work::Ingest { .. } | Work::Ping => &self.ingest_writer,
        };
        Self::write_to(writer, work).await
    }

    async fn write_to(writer: &mpsc::Sender<Job>, work: Work) -> Result<Done, StoreError> {
        let (reply, answer) = oneshot::channel();
        writer
            .send(Job { work, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the PostgreSQL writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the PostgreSQL writer dropped a job".into()))?
    }
}

fn owner_str<'a>(owner: &Owner<'a>) -> Option<&'a str> {
    match owner {
        Owner::User(user) => Some(user.as_str()),
        Owner::Any => None,
    }
}

fn mismatched() -> StoreError {
    StoreError::Unavailable("the PostgreSQL writer answered another kind of job".into())
}

#[async_trait]
impl Store for PostgresStore {
    async fn health(&self) -> Result<(), StoreError> {
        let mut c = self.pool.get().await?;
        c.query_one("SELECT 1", &[]).await?;
        drop(c);
        // A write round trip proves the writers and their connections work too.
        for writer in [&self.ingest_writer, &self.record_writer] {
            match Self::write_to(writer, Work::Ping).await? {
                Done::Ping => {}
                _ => return Err(mismatched()),
            }
        }
        Ok(())
    }

    async fn create_webhook(
        &self,
        new: NewWebhook,
        limit: u32,
    ) -> Result<WebhookRecord, StoreError> {
        let mut c = self.pool.get().await?;
        webhooks::create(&mut c, &self.cipher, new, limit).await
    }

    async fn get_webhook(
        &self,
        id: &WebhookId,
        owner: Owner<'_>,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        let mut c = self.pool.get().await?;
        webhooks::get_one(&mut c, &self.cipher, id, owner_str(&owner)).await
    }

    async fn webhooks_by_id(&self, ids: &[WebhookId]) -> Result<Vec<WebhookRecord>, StoreError> {
        let mut c = self.pool.get().await?;
        webhooks::by_ids(&mut c, &self.cipher, ids).await
    }

    async fn list_webhooks(
        &self,
        owner: Owner<'_>,
        limit: u32,
        offset: u64,
    ) -> Result<Page<WebhookRecord>, StoreError> {
        let mut c = self.pool.get().await?;
        webhooks::list(&mut c, &self.cipher, owner_str(&owner), limit, offset).await
    }

    async fn each_webhook(
        &self,
        each: &mut (dyn FnMut(WebhookRecord) + Send),
    ) -> Result<(), StoreError> {
        let mut c = self.pool.get().await?;
        webhooks::each(&mut c, &self.cipher, each).await
    }

    async fn update_webhook(
        &self,
        id: &WebhookId,
        owner: Owner<'_>,
        patch: WebhookPatch,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        let mut c = self.pool.get().await?;
        webhooks::update(&mut c, &self.cipher, id, owner_str(&owner), patch).await
    }

    async fn rotate_secret(
        &self,
        id: &WebhookId,
        owner: Owner<'_>,
        secret: WebhookSecret,
        grace_until: i64,
        now: i64,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        let mut c = self.pool.get().await?;
        webhooks::rotate(
            &mut c,
            &self.cipher,
            id,
            owner_str(&owner),
            &secret,
            grace_until,
            now,
        )
        .await
    }

    async fn delete_webhook(&self, id: &WebhookId, owner: Owner<'_>) -> Result<bool, StoreError> {
        let mut c = self.pool.get().await?;
        webhooks::delete(&mut c, id, owner_str(&owner)).await
    }

    async fn ingest(
        &self,
        owner: &str,
        items: Arc<Vec<IngestItem>>,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let work = Work::Ingest {
            owner: owner.to_string(),
            items,
        };
        match self.write(work).await? {
            Done::Ingest(outcomes) => Ok(outcomes),
            _ => Err(mismatched()),
        }
    }

    async fn heartbeat(&self, owner: &str) -> Result<(), StoreError> {
        let mut c = self.pool.get().await?;
        claims::heartbeat(&mut c, owner, self.claim_ttl_ms).await
    }

    async fn claim_due(
        &self,
        owner: &str,
        now: i64,
        limit: u32,
        exclude: Vec<WebhookId>,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut c = self.pool.get().await?;
        claims::claim_due(&mut c, owner, now, limit, &exclude).await
    }

    async fn release(&self, owner: &str, deliveries: Vec<DeliveryId>) -> Result<(), StoreError> {
        let mut c = self.pool.get().await?;
        claims::release(&mut c, owner, &deliveries).await
    }

    async fn live_instances(&self) -> Result<u32, StoreError> {
        let mut c = self.pool.get().await?;
        claims::live_instances(&mut c, self.claim_ttl_ms).await
    }

    async fn recover_claims(&self, live_owner: &str) -> Result<u64, StoreError> {
        let mut c = self.pool.get().await?;
        let voided = claims::recover(&mut c, live_owner, self.claim_ttl_ms).await?;
        self.adopt_from_older();
        Ok(voided)
    }

    async fn record_attempts(
        &self,
        owner: &str,
        reports: Arc<Vec<AttemptReport>>,
        policy: FailurePolicy,
        now: i64,
    ) -> Result<Vec<DisabledWebhook>, StoreError> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        match self
            .write(Work::Record {
                owner: owner.to_string(),
                reports,
                policy,
                now,
            })
            .await?
        {
            Done::Record(disabled) => Ok(disabled),
            _ => Err(mismatched()),
        }
    }

    async fn list_deliveries(
        &self,
        webhook: &VisibleWebhook,
        filter: DeliveryFilter,
        limit: u32,
        offset: u64,
    ) -> Result<Page<DeliveryRecord>, StoreError> {
        let mut c = self.pool.get().await?;
        logs::list(&mut c, &webhook.id, &filter, limit, offset).await
    }

    async fn get_delivery(
        &self,
        webhook: &VisibleWebhook,
        delivery: &DeliveryId,
    ) -> Result<Option<DeliveryDetail>, StoreError> {
        let mut c = self.pool.get().await?;
        logs::get_one(&mut c, &webhook.id, delivery).await
    }

    async fn requeue(
        &self,
        webhook: &VisibleWebhook,
        filter: DeliveryFilter,
        only: Option<DeliveryId>,
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut c = self.pool.get().await?;
        logs::requeue(&mut c, &webhook.id, &filter, only.as_ref(), now).await
    }

    async fn ordering_heads(
        &self,
        webhook: &VisibleWebhook,
        limit: u32,
    ) -> Result<Vec<OrderHead>, StoreError> {
        let mut c = self.pool.get().await?;
        ordering::heads(&mut c, &webhook.id, limit).await
    }

    async fn delivery_stats(
        &self,
        scope: StatsScope<'_>,
        since: i64,
    ) -> Result<DeliveryStats, StoreError> {
        let (webhook, owner) = scope.filters();
        let mut c = self.pool.get().await?;
        logs::stats(&mut c, owner.map(UserId::as_str), webhook, since).await
    }

    async fn delivery_buckets(
        &self,
        webhook: &VisibleWebhook,
        first_hour: i64,
        bucket_hours: u32,
        buckets: u32,
    ) -> Result<Vec<DeliveryStats>, StoreError> {
        let mut c = self.pool.get().await?;
        logs::buckets(
            &mut c,
            &webhook.id,
            Spans::new(first_hour, bucket_hours, buckets),
        )
        .await
    }

    async fn platform_buckets(
        &self,
        first_hour: i64,
        bucket_hours: u32,
        buckets: u32,
    ) -> Result<Vec<PlatformBucket>, StoreError> {
        let mut c = self.pool.get().await?;
        logs::platform_buckets(&mut c, Spans::new(first_hour, bucket_hours, buckets)).await
    }

    async fn prune(&self, before: i64) -> Result<u64, StoreError> {
        let mut c = self.pool.get().await?;
        logs::prune(&mut c, before).await
    }

    fn webhook_changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.changes.clone())
    }

    fn take_webhook_changes(&self) -> WebhookChanges {
        self.pending_changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}
