//! The embedded store: SQLite in WAL mode with `synchronous=FULL`.
//!
//! All writes go through one writer thread that owns the only write
//! connection. It takes every job queued while the previous commit was
//! running, runs them in one transaction (see [`WriteJob`] for how a failing
//! job is kept from undoing the others), commits once, and only then answers
//! each caller: group commit, so a commit (0.7–2.5 ms here, most of it
//! writing and syncing the WAL) is shared by every event that queued during
//! the previous one instead of paid by each. Reads use a small pool of
//! separate connections, which WAL lets run alongside the writer.
//!
//! The modules match the PostgreSQL store's, by concept: the SQL is in
//! `webhooks`, `ingest`, `claims`, `record` and `logs` (with `rows`
//! decoding); `writer` and `checkpointer` are the two threads; `connection`
//! opens connections and holds the reader pool; `migrations` checks an
//! existing file and brings its schema up to date.

pub mod backup;
mod checkpointer;
mod claims;
mod connection;
mod ingest;
mod logs;
mod migrations;
mod ordering;
mod record;
mod rows;
mod webhooks;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};

use async_trait::async_trait;
use rusqlite::Connection;
use tokio::sync::oneshot;
use webhook_domain::ids::{DeliveryId, WebhookId};
use webhook_domain::webhook::WebhookSecret;

use self::checkpointer::checkpointer;
use self::connection::{Readers, open_connection};
use self::migrations::{check_existing, migrate};
use self::writer::{IngestJob, Job, WriteJob, writer_loop};
use super::hourly::Spans;
use super::{
    AttemptReport, DeliveryDetail, DeliveryFilter, DeliveryRecord, DeliveryStats, DisabledWebhook,
    DueDelivery, FailurePolicy, IngestItem, IngestOutcome, NewWebhook, OrderHead, Owner, Page,
    PlatformBucket, StatsScope, Store, StoreError, VisibleWebhook, WebhookPatch, WebhookRecord,
};
use crate::crypto::SecretCipher;

/// Webhooks read at a time when loading all of them (see `each_webhook`):
/// a few hundred kilobytes of records in memory instead of all of them.
const WEBHOOK_BATCH: usize = 512;

/// The embedded SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::Sender<Box<dyn WriteJob>>,
    readers: Readers,
    cipher: SecretCipher,
    // Held for the life of the store: a second process on the same data directory would corrupt claims.
    _lock: File,
    /// The last batch that had rows to write found the disk full (see `writer_loop`).
    disk_full: Arc<AtomicBool>,
    // Dropping the store ends the checkpointer thread.
    _alive: Arc<()>,
    /// Claims of earlier processes were voided (see `recover_claims`).
    claims_recovered: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`, applying migrations.
    ///
    /// A `webhooks.db` that is not this service's (not a database, damaged,
    /// another application's, or of a newer release) is refused with
    /// [`StoreError::Corrupt`] naming it, and left untouched.
    pub fn open(data_dir: &Path, cipher: SecretCipher) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let lock_path = data_dir.join("webhooks.lock");
        let lock = File::create(&lock_path).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", lock_path.display()))
        })?;
        lock.try_lock().map_err(|_| {
            StoreError::Unavailable(format!(
                "{} is in use by another webhook-service process",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join("webhooks.db");
        // 8 MiB: the writer's statements touch the right edges of the indexes
        // and one claim's rows. A 32 MiB cache added 25 MB of RSS, and a
        // per-commit walk of the cache (2.4 % of the service's CPU), for no
        // measurable gain once claims stopped reading skipped backlogs.
        check_existing(&path).map_err(naming(&path))?;
        let mut conn = open_connection(&path, 8 * 1024).map_err(naming(&path))?;
        migrate(&mut conn, &path).map_err(naming(&path))?;
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0")?;
        let alive = Arc::new(());
        let weak = Arc::downgrade(&alive);
        let checkpoint_path = path.clone();
        let rewind_due = Arc::new(AtomicBool::new(false));
        let rewind_signal = rewind_due.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpointer(checkpoint_path, weak, rewind_signal))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the checkpoint thread: {e}"))
            })?;
        let (writer, jobs) = mpsc::channel::<Box<dyn WriteJob>>();
        let disk_full = Arc::new(AtomicBool::new(false));
        let writer_disk_full = disk_full.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, jobs, rewind_due, writer_disk_full))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer thread: {e}")))?;
        Ok(SqliteStore {
            readers: Readers::new(path.clone()),
            path,
            writer,
            cipher,
            _lock: lock,
            disk_full,
            _alive: alive,
            claims_recovered: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Applies pending migrations and returns how many ran (`webhook-service migrate`).
    pub fn migrate_only(data_dir: &Path) -> Result<usize, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join("webhooks.db");
        check_existing(&path).map_err(naming(&path))?;
        let mut conn = open_connection(&path, 2048).map_err(naming(&path))?;
        migrate(&mut conn, &path).map_err(naming(&path))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Box::new(Job { work, reply }))
            .map_err(|_| StoreError::Unavailable("the writer thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer thread dropped a job".into()))?
    }

    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.readers.run(work).await
    }
}

/// Makes an error met while opening the store name the database file, and
/// say that the file was left alone.
fn naming(path: &Path) -> impl Fn(StoreError) -> StoreError + '_ {
    move |e| {
        let file = path.display().to_string();
        let named = |detail: String| {
            if detail.contains(&file) {
                detail
            } else {
                format!("{file}: {detail}")
            }
        };
        match e {
            StoreError::Corrupt(detail) => StoreError::Corrupt(format!(
                "{}; the file was left untouched (restore it from a backup, or move it away \
                 or set WEBHOOK_DATA_DIR elsewhere to start an empty store)",
                named(detail)
            )),
            StoreError::DiskFull(detail) => StoreError::DiskFull(named(detail)),
            StoreError::Unavailable(detail) => StoreError::Unavailable(named(detail)),
            other => other,
        }
    }
}

fn owner_string(owner: Owner<'_>) -> Option<String> {
    owner.user().map(|u| u.as_str().to_string())
}

#[async_trait]
impl Store for SqliteStore {
    async fn health(&self) -> Result<(), StoreError> {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .await?;
        // A write round trip proves the writer thread is alive too.
        self.write(|_| Ok(())).await?;
        // That round trip writes nothing, so it cannot find the disk full:
        // the last real write tells.
        if self.disk_full.load(Ordering::Acquire) {
            return Err(StoreError::DiskFull(
                "the last write found no space left; writes resume once there is".into(),
            ));
        }
        Ok(())
    }

    async fn create_webhook(
        &self,
        new: NewWebhook,
        limit: u32,
    ) -> Result<WebhookRecord, StoreError> {
        let cipher = self.cipher.clone();
        self.write(move |c| webhooks::create_webhook(c, &cipher, new, limit))
            .await
    }

    async fn get_webhook(
        &self,
        id: &WebhookId,
        owner: Owner<'_>,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        let (cipher, id, owner) = (self.cipher.clone(), id.clone(), owner_string(owner));
        self.read(move |c| webhooks::get_webhook(c, &cipher, &id, owner.as_deref()))
            .await
    }

    async fn list_webhooks(
        &self,
        owner: Owner<'_>,
        limit: u32,
        offset: u64,
    ) -> Result<Page<WebhookRecord>, StoreError> {
        let (cipher, owner) = (self.cipher.clone(), owner_string(owner));
        self.read(move |c| webhooks::list_webhooks(c, &cipher, owner.as_deref(), limit, offset))
            .await
    }

    async fn each_webhook(
        &self,
        each: &mut (dyn FnMut(WebhookRecord) + Send),
    ) -> Result<(), StoreError> {
        // Two batches in flight: the reader fills the next while the
        // caller takes the last.
        let (batches, mut received) = tokio::sync::mpsc::channel(2);
        let cipher = self.cipher.clone();
        let reading = self.read(move |c| {
            webhooks::each_webhook(c, &cipher, WEBHOOK_BATCH, |batch| {
                batches.blocking_send(batch).is_ok()
            })
        });
        let taking = async {
            while let Some(batch) = received.recv().await {
                batch.into_iter().for_each(&mut *each);
            }
        };
        let (read, ()) = tokio::join!(reading, taking);
        read
    }

    async fn update_webhook(
        &self,
        id: &WebhookId,
        owner: Owner<'_>,
        patch: WebhookPatch,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        let (cipher, id, owner) = (self.cipher.clone(), id.clone(), owner_string(owner));
        self.write(move |c| webhooks::update_webhook(c, &cipher, &id, owner.as_deref(), patch))
            .await
    }

    async fn rotate_secret(
        &self,
        id: &WebhookId,
        owner: Owner<'_>,
        secret: WebhookSecret,
        grace_until: i64,
        now: i64,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        let (cipher, id, owner) = (self.cipher.clone(), id.clone(), owner_string(owner));
        self.write(move |c| {
            webhooks::rotate_secret(c, &cipher, &id, owner.as_deref(), secret, grace_until, now)
        })
        .await
    }

    async fn delete_webhook(&self, id: &WebhookId, owner: Owner<'_>) -> Result<bool, StoreError> {
        let (id, owner) = (id.clone(), owner_string(owner));
        self.write(move |c| webhooks::delete_webhook(c, &id, owner.as_deref()))
            .await
    }

    async fn ingest(
        &self,
        owner: &str,
        items: Arc<Vec<IngestItem>>,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = IngestJob {
            owner: owner.to_string(),
            items,
            reply,
        };
        self.writer
            .send(Box::new(job))
            .map_err(|_| StoreError::Unavailable("the writer thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer thread dropped a job".into()))?
    }

    async fn heartbeat(&self, _owner: &str) -> Result<(), StoreError> {
        // One process owns the file (the lock), so it is the only live instance.
        Ok(())
    }

    async fn claim_due(
        &self,
        owner: &str,
        now: i64,
        limit: u32,
        exclude: Vec<WebhookId>,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        // The search runs on a reader: its cost grows with the number of
        // webhooks with waiting work, and in the writer it would hold every
        // ingest commit back. The writer claims only what is still waiting.
        let ids = self
            .read(move |c| claims::due_ids(c, now, limit, &exclude))
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let owner = owner.to_string();
        self.write(move |c| claims::claim_ids(c, &owner, &ids))
            .await
    }

    async fn release(&self, owner: &str, deliveries: Vec<DeliveryId>) -> Result<(), StoreError> {
        // A chunk per writer job: the ingest commits queued meanwhile go
        // between them instead of waiting for the whole release.
        for chunk in deliveries.chunks(claims::RELEASE_CHUNK) {
            let owner = owner.to_string();
            let chunk = chunk.to_vec();
            self.write(move |c| claims::release(c, &owner, &chunk))
                .await?;
        }
        Ok(())
    }

    async fn recover_claims(&self, live_owner: &str) -> Result<u64, StoreError> {
        // Once is enough: the file lock keeps every other process out, so no
        // other owner's claim can appear after the first recovery. The engine
        // asks every heartbeat (for PostgreSQL's sake), and the query scans
        // every delivery (no index on the claim), in the writer, every two
        // seconds.
        if self.claims_recovered.load(Ordering::Acquire) {
            return Ok(0);
        }
        let owner = live_owner.to_string();
        let recovered = self
            .write(move |c| claims::recover_claims(c, &owner))
            .await?;
        self.claims_recovered.store(true, Ordering::Release);
        Ok(recovered)
    }

    async fn record_attempts(
        &self,
        owner: &str,
        reports: Arc<Vec<AttemptReport>>,
        policy: FailurePolicy,
        now: i64,
    ) -> Result<Vec<DisabledWebhook>, StoreError> {
        let owner = owner.to_string();
        self.write(move |c| record::record_attempts(c, &owner, &reports, policy, now))
            .await
    }

    async fn list_deliveries(
        &self,
        webhook: &VisibleWebhook,
        filter: DeliveryFilter,
        limit: u32,
        offset: u64,
    ) -> Result<Page<DeliveryRecord>, StoreError> {
        let webhook = webhook.id.clone();
        self.read(move |c| logs::list_deliveries(c, &webhook, &filter, limit, offset))
            .await
    }

    async fn get_delivery(
        &self,
        webhook: &VisibleWebhook,
        delivery: &DeliveryId,
    ) -> Result<Option<DeliveryDetail>, StoreError> {
        let (webhook, delivery) = (webhook.id.clone(), delivery.clone());
        self.read(move |c| logs::get_delivery(c, &webhook, &delivery))
            .await
    }

    async fn requeue(
        &self,
        webhook: &VisibleWebhook,
        filter: DeliveryFilter,
        only: Option<DeliveryId>,
        now: i64,
    ) -> Result<u64, StoreError> {
        let webhook = webhook.id.clone();
        self.write(move |c| logs::requeue(c, &webhook, &filter, only.as_ref(), now))
            .await
    }

    async fn ordering_heads(
        &self,
        webhook: &VisibleWebhook,
        limit: u32,
    ) -> Result<Vec<OrderHead>, StoreError> {
        let webhook = webhook.id.clone();
        self.read(move |c| ordering::heads(c, &webhook, limit))
            .await
    }

    async fn delivery_stats(
        &self,
        scope: StatsScope<'_>,
        since: i64,
    ) -> Result<DeliveryStats, StoreError> {
        let (webhook, owner) = scope.filters();
        let (webhook, owner) = (webhook.cloned(), owner.map(|u| u.as_str().to_string()));
        self.read(move |c| logs::delivery_stats(c, owner.as_deref(), webhook.as_ref(), since))
            .await
    }

    async fn delivery_buckets(
        &self,
        webhook: &VisibleWebhook,
        first_hour: i64,
        bucket_hours: u32,
        buckets: u32,
    ) -> Result<Vec<DeliveryStats>, StoreError> {
        let webhook = webhook.id.clone();
        let spans = Spans::new(first_hour, bucket_hours, buckets);
        self.read(move |c| logs::delivery_buckets(c, &webhook, spans))
            .await
    }

    async fn platform_buckets(
        &self,
        first_hour: i64,
        bucket_hours: u32,
        buckets: u32,
    ) -> Result<Vec<PlatformBucket>, StoreError> {
        let spans = Spans::new(first_hour, bucket_hours, buckets);
        self.read(move |c| logs::platform_buckets(c, spans)).await
    }

    async fn prune(&self, before: i64) -> Result<u64, StoreError> {
        self.write(move |c| logs::prune(c, before)).await
    }
}

#[cfg(test)]
mod tests;
