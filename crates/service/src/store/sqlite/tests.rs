//! The embedded store's own tests: what the contract tests cannot see
//! (the claim search's cost, the writer's transaction state, migrations).

use super::writer::TxState;
use super::*;
use crate::crypto::EncryptionKey;
use crate::store::migrations::SQLITE;
use crate::store::{DeliveryFilter, DeliveryStats, NewDelivery};
use bytes::Bytes;
use rusqlite::params;
use webhook_domain::ids::{EventId, UserId};

fn cipher() -> SecretCipher {
    SecretCipher::new(&EncryptionKey::new([7; 32]))
}

/// A migrated database with active `webhooks` and one event, `EVENT`.
fn claim_fixture(webhooks: &[&str]) -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = open_connection(&dir.path().join("webhooks.db"), 1024).unwrap();
    migrate(&mut conn, dir.path()).unwrap();
    for id in webhooks {
        conn.execute(
            "INSERT INTO webhooks (id, owner_id, url, event_types, is_active, scope_all, secret_enc, created_at, updated_at) \
             VALUES (?1, 'user-1', 'https://example.com/hook', '[\"*\"]', 1, 0, 'sealed', 1, 1)",
            [id],
        )
        .unwrap();
    }
    conn.execute(
        "INSERT INTO events (id, event_type, user_id, payload, created_at) \
         VALUES (?1, 'user.created', 'user-1', X'7B7D', 1)",
        [EVENT],
    )
    .unwrap();
    (dir, conn)
}

const EVENT: &str = "evt_01JD0000000000000000000001";

/// Adds a pending delivery of `event` to `webhook`, due at `due`.
fn add_pending(conn: &Connection, id: &str, event: &str, webhook: &str, due: i64) {
    conn.execute(
        "INSERT INTO deliveries (id, event_id, webhook_id, event_type, user_id, status, attempts, \
         next_attempt_at, created_at, updated_at) \
         VALUES (?1, ?2, ?3, 'user.created', 'user-1', 'pending', 0, ?4, 1, 1)",
        params![id, event, webhook, due],
    )
    .unwrap();
}

/// Claiming due work costs the same whatever the backlog of a webhook it
/// skips: behind an endpoint that hangs (its window share full) the
/// claim query used to step over every one of its due rows, on every
/// pass of the scheduler and inside the writer's transaction.
#[test]
fn claiming_does_not_read_an_excluded_backlog() {
    fn claim_steps(backlog: i64) -> (Vec<String>, i32) {
        let (hanging, healthy) = (
            "wh_01JD00000000000000000000HA",
            "wh_01JD00000000000000000000HE",
        );
        let (_dir, conn) = claim_fixture(&[hanging, healthy]);
        for n in 0..backlog {
            add_pending(
                &conn,
                &format!("dlv_01JD0000000000{n:012}"),
                EVENT,
                hanging,
                n,
            );
        }
        add_pending(
            &conn,
            "dlv_01JD0000000000ZZZZZZZZZZZZ",
            EVENT,
            healthy,
            backlog,
        );
        let excluded = [WebhookId::parse(hanging).unwrap()];
        let due = claims::claim_due(&conn, "me", backlog + 1, 10, &excluded).unwrap();
        let steps = claims::CLAIM_SEARCHES
            .iter()
            .map(|sql| {
                conn.prepare_cached(sql)
                    .unwrap()
                    .get_status(rusqlite::StatementStatus::VmStep)
            })
            .sum();
        (due.iter().map(|d| d.id.to_string()).collect(), steps)
    }
    let (small_due, small_steps) = claim_steps(10);
    let (large_due, large_steps) = claim_steps(5_000);
    assert_eq!(small_due, vec!["dlv_01JD0000000000ZZZZZZZZZZZZ"]);
    assert_eq!(large_due, small_due, "only the healthy webhook's row");
    assert!(small_steps > 0, "the searches ran on the cached statements");
    assert_eq!(
        large_steps, small_steps,
        "the search must not step through the excluded webhook's rows"
    );
}

/// Claiming the head of a FIFO order costs the same whatever waits behind
/// it: the search seeks once per order, never walks an order's backlog, and
/// only the head is claimed.
#[test]
fn claiming_a_fifo_head_does_not_read_its_backlog() {
    fn claim_steps(backlog: i64) -> (Vec<String>, i32) {
        let webhook = "wh_01JD00000000000000000000FI";
        let (_dir, conn) = claim_fixture(&[webhook]);
        for n in 0..backlog {
            conn.execute(
                "INSERT INTO deliveries (id, event_id, webhook_id, event_type, user_id, status, attempts, \
                 next_attempt_at, created_at, updated_at, ordering_key, fifo_seq) \
                 VALUES (?1, ?2, ?3, 'user.created', 'user-1', 'pending', 0, 1, 1, 1, '', ?4)",
                params![format!("dlv_01JD0000000000{n:012}"), EVENT, webhook, n + 1],
            )
            .unwrap();
        }
        let due = claims::claim_due(&conn, "me", 10, 10, &[]).unwrap();
        let steps = ordering::HEAD_SEARCHES
            .iter()
            .chain(claims::CLAIM_SEARCHES.iter())
            .map(|sql| {
                conn.prepare_cached(sql)
                    .unwrap()
                    .get_status(rusqlite::StatementStatus::VmStep)
            })
            .sum();
        (due.iter().map(|d| d.id.to_string()).collect(), steps)
    }
    let (small_due, small_steps) = claim_steps(10);
    let (large_due, large_steps) = claim_steps(5_000);
    assert_eq!(
        small_due,
        vec!["dlv_01JD0000000000000000000000"],
        "the head only"
    );
    assert_eq!(large_due, small_due);
    assert!(small_steps > 0, "the searches ran on the cached statements");
    assert_eq!(
        large_steps, small_steps,
        "the search must not step through the order's backlog"
    );
}

/// A FIFO webhook whose window share is full is skipped in one seek,
/// however many orders wait in it (one per user, say).
#[test]
fn claiming_skips_an_excluded_webhooks_orders_in_one_seek() {
    fn claim_steps(orders: i64) -> (Vec<String>, i32) {
        let (hanging, healthy) = (
            "wh_01JD00000000000000000000HA",
            "wh_01JD00000000000000000000HE",
        );
        let (_dir, conn) = claim_fixture(&[hanging, healthy]);
        for n in 0..orders {
            conn.execute(
                "INSERT INTO deliveries (id, event_id, webhook_id, event_type, user_id, status, attempts, \
                 next_attempt_at, created_at, updated_at, ordering_key, fifo_seq) \
                 VALUES (?1, ?2, ?3, 'user.created', ?4, 'pending', 0, 1, 1, 1, ?4, ?5)",
                params![
                    format!("dlv_01JD0000000000{n:012}"),
                    EVENT,
                    hanging,
                    format!("user-{n:06}"),
                    n + 1
                ],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO deliveries (id, event_id, webhook_id, event_type, user_id, status, attempts, \
             next_attempt_at, created_at, updated_at, ordering_key, fifo_seq) \
             VALUES ('dlv_01JD0000000000ZZZZZZZZZZZZ', ?1, ?2, 'user.created', 'u', 'pending', 0, 1, 1, 1, 'u', 1)",
            params![EVENT, healthy],
        )
        .unwrap();
        let excluded = [WebhookId::parse(hanging).unwrap()];
        let due = claims::claim_due(&conn, "me", 10, 10, &excluded).unwrap();
        let steps = ordering::HEAD_SEARCHES
            .iter()
            .map(|sql| {
                conn.prepare_cached(sql)
                    .unwrap()
                    .get_status(rusqlite::StatementStatus::VmStep)
            })
            .sum();
        (due.iter().map(|d| d.id.to_string()).collect(), steps)
    }
    let (small_due, small_steps) = claim_steps(10);
    let (large_due, large_steps) = claim_steps(2_000);
    assert_eq!(small_due, vec!["dlv_01JD0000000000ZZZZZZZZZZZZ"]);
    assert_eq!(large_due, small_due, "only the healthy webhook's head");
    assert_eq!(
        large_steps, small_steps,
        "the search must not visit the excluded webhook's orders"
    );
}

/// A due delivery whose event row is missing is skipped, not an error
/// that would fail every later claim; one claimed since the search is
/// skipped too.
#[test]
fn claiming_skips_a_delivery_without_its_event() {
    let webhook = "wh_01JD00000000000000000000HE";
    let (_dir, conn) = claim_fixture(&[webhook]);
    add_pending(
        &conn,
        "dlv_01JD0000000000000000000001",
        "evt_01JD000000000000000000GONE",
        webhook,
        1,
    );
    add_pending(&conn, "dlv_01JD0000000000000000000002", EVENT, webhook, 2);
    let due = claims::claim_due(&conn, "me", 10, 10, &[]).unwrap();
    let ids: Vec<String> = due.iter().map(|d| d.id.to_string()).collect();
    assert_eq!(ids, vec!["dlv_01JD0000000000000000000002"]);
    // The search may have read an older snapshot: a row claimed since is
    // not claimed again.
    let again = claims::claim_ids(&conn, "other", &ids).unwrap();
    assert!(again.is_empty(), "claimed twice: {:?}", again.len());
}

/// A database written by the first schema (rowid tables, foreign keys)
/// opens under the current one with every row kept and still linked.
#[tokio::test]
async fn migration_2_keeps_existing_rows() {
    let dir = tempfile::tempdir().unwrap();
    let cipher = cipher();
    let (webhook, event, delivery) = (
        "wh_01JD0000000000000000000001",
        "evt_01JD0000000000000000000001",
        "dlv_01JD0000000000000000000001",
    );
    {
        let conn = open_connection(&dir.path().join("webhooks.db"), 1024).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 0);",
        )
        .unwrap();
        conn.execute_batch(SQLITE[0].sql).unwrap();
        let sealed = cipher
            .seal("whsec_migration_test_secret_0123", webhook)
            .unwrap();
        conn.execute(
            "INSERT INTO webhooks (id, owner_id, url, event_types, is_active, scope_all, secret_enc, created_at, updated_at) \
             VALUES (?1, 'user-1', 'https://example.com/hook', '[\"*\"]', 1, 0, ?2, 1, 1)",
            [webhook, sealed.as_str()],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO events (id, event_type, user_id, payload, created_at) VALUES (?1, 'user.created', 'user-1', X'7B7D', 1)",
            [event],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO deliveries (id, event_id, webhook_id, event_type, user_id, status, attempts, created_at, updated_at, delivered_at) \
             VALUES (?1, ?2, ?3, 'user.created', 'user-1', 'delivered', 1, 1, 2, 2)",
            [delivery, event, webhook],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, request_headers, status_code, response_headers, response_body) \
             VALUES (?1, 1, 1, 5, '[]', 200, '[]', 'ok')",
            [delivery],
        )
        .unwrap();
    }
    let store = SqliteStore::open(dir.path(), cipher).unwrap();
    let webhook = WebhookId::parse(webhook).unwrap();
    let delivery = DeliveryId::parse(delivery).unwrap();
    let proof = store
        .visible_webhook(&webhook, Owner::Any)
        .await
        .unwrap()
        .expect("webhook kept");
    let detail = store
        .get_delivery(&proof, &delivery)
        .await
        .unwrap()
        .expect("delivery kept");
    assert_eq!(detail.delivery.event_id.as_str(), event);
    assert_eq!(&detail.payload[..], b"{}");
    assert_eq!(detail.attempts.len(), 1);
    assert_eq!(detail.attempts[0].status_code, Some(200));
    let page = store
        .list_deliveries(&proof, DeliveryFilter::default(), 10, 0)
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    // The relations the foreign keys kept are now the store's: deleting the
    // webhook takes its deliveries and their attempts with it.
    assert!(store.delete_webhook(&webhook, Owner::Any).await.unwrap());
    let conn = open_connection(&dir.path().join("webhooks.db"), 1024).unwrap();
    let left: i64 = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM deliveries) + (SELECT COUNT(*) FROM attempts)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
}

fn ingest_item(event: &str, delivery: &str, webhook: &str) -> IngestItem {
    IngestItem {
        event_id: EventId::parse(event).unwrap(),
        event_type: "user.created".to_string(),
        user_id: UserId::parse("user-1").unwrap(),
        payload: Bytes::from_static(b"{}"),
        idempotent: false,
        created_at: 1,
        deliveries: vec![NewDelivery {
            id: DeliveryId::parse(delivery).unwrap(),
            webhook_id: WebhookId::parse(webhook).unwrap(),
            claimed: true,
            ordering_key: None,
        }],
    }
}

/// Runs `job` as the writer does, inside the transaction state `tx`.
fn run_job<'c, T>(
    job: Box<dyn WriteJob>,
    conn: &'c Connection,
    tx: &mut TxState<'c>,
    answer: oneshot::Receiver<Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let (completion, failed) = job.run(conn, tx);
    assert!(failed.is_none());
    completion(Ok(()));
    answer.blocking_recv().unwrap()
}

#[test]
fn a_webhook_deleted_between_ingest_jobs_of_one_transaction_gets_no_delivery() {
    let (_dir, conn) = claim_fixture(&["wh_a"]);
    let mut tx = TxState::default();
    let ingest = |event: &str, delivery: &str| {
        let (reply, answer) = oneshot::channel();
        let job = IngestJob {
            owner: "me".to_string(),
            items: Arc::new(vec![ingest_item(event, delivery, "wh_a")]),
            reply,
        };
        (Box::new(job) as Box<dyn WriteJob>, answer)
    };
    let (job, answer) = ingest("evt_one", "dlv_one");
    run_job(job, &conn, &mut tx, answer).unwrap();
    assert!(tx.ingester.is_some(), "kept for the next ingest job");

    // Another kind of job (here: deleting the webhook) drops what the
    // ingester looked up.
    let (reply, answer) = oneshot::channel();
    let delete = Job {
        work: |c: &Connection| {
            c.execute("DELETE FROM webhooks WHERE id = 'wh_a'", [])?;
            Ok(())
        },
        reply,
    };
    run_job(Box::new(delete), &conn, &mut tx, answer).unwrap();
    assert!(tx.ingester.is_none());

    let (job, answer) = ingest("evt_two", "dlv_two");
    run_job(job, &conn, &mut tx, answer).unwrap();
    let deliveries: Vec<String> = conn
        .prepare("SELECT id FROM deliveries ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(deliveries, ["dlv_one"]);
}

/// A full disk (here: the file's page limit reached) aborts the whole
/// batch, and every job in it is told that the disk is full, not only the
/// one whose statement found it out: nothing of the batch was stored, and
/// for none of them is it a passing outage.
#[test]
fn a_full_disk_fails_every_job_of_the_batch_as_disk_full() {
    let (_dir, conn) = claim_fixture(&["wh_a"]);
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let _: i64 = conn
        .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
            r.get(0)
        })
        .unwrap();
    let (jobs, queue) = mpsc::channel::<Box<dyn WriteJob>>();
    // Queued before the writer starts, so that both share one transaction.
    let (reply, innocent) = oneshot::channel();
    jobs.send(Box::new(Job {
        work: |_: &Connection| Ok(()),
        reply,
    }))
    .unwrap();
    let mut item = ingest_item("evt_big", "dlv_big", "wh_a");
    item.payload = Bytes::from(vec![b'x'; 256 * 1024]);
    let (reply, large) = oneshot::channel();
    jobs.send(Box::new(IngestJob {
        owner: "me".to_string(),
        items: Arc::new(vec![item]),
        reply,
    }))
    .unwrap();
    drop(jobs);
    let disk_full = Arc::new(AtomicBool::new(false));
    let flag = disk_full.clone();
    let writer = std::thread::spawn(move || {
        writer_loop(conn, queue, Arc::new(AtomicBool::new(false)), flag)
    });
    let large = large.blocking_recv().unwrap();
    assert!(
        matches!(large, Err(StoreError::DiskFull(_))),
        "the job that hit the limit: {large:?}"
    );
    let innocent = innocent.blocking_recv().unwrap();
    assert!(
        matches!(innocent, Err(StoreError::DiskFull(_))),
        "a job of the same batch: {innocent:?}"
    );
    writer.join().unwrap();
    assert!(
        disk_full.load(Ordering::Acquire),
        "kept for the health check"
    );
}

/// Adds a delivered delivery of `EVENT` to `webhook`, of `event_type`,
/// created at `created_at`.
fn add_delivered(conn: &Connection, id: &str, webhook: &str, event_type: &str, created_at: i64) {
    conn.execute(
        "INSERT INTO deliveries (id, event_id, webhook_id, event_type, user_id, status, attempts, \
         last_duration_ms, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, 'user-1', 'delivered', 1, 5, ?5, ?5)",
        params![id, EVENT, webhook, event_type, created_at],
    )
    .unwrap();
}

const LOG_TYPES: [&str; 3] = ["user.created", "credit.low", "payment.completed"];

/// A webhook whose log holds `older` deliveries and, after them, twelve
/// more, of three types in turn; the n-th is created at n.
fn log_fixture(older: i64) -> (tempfile::TempDir, Connection, WebhookId) {
    let hook = "wh_01JD00000000000000000000LG";
    let (dir, conn) = claim_fixture(&[hook]);
    for n in 0..older + 12 {
        let event_type = LOG_TYPES[usize::try_from(n % 3).unwrap()];
        add_delivered(&conn, &log_id(n), hook, event_type, n);
    }
    (dir, conn, WebhookId::parse(hook).unwrap())
}

fn log_id(n: i64) -> String {
    format!("dlv_01JD0000000000{n:012}")
}

/// A page of a webhook's log that names no type costs the same whatever
/// the log holds before it: the log's one index by webhook is by type
/// (`deliveries_type`, migration 11), and the page merges the types' ranges
/// in order, stopping at its end, rather than reading and sorting the log.
#[test]
fn a_log_page_merges_its_types_without_reading_the_older_log() {
    fn page_steps(older: i64) -> (Vec<String>, i32) {
        let (_dir, conn, hook) = log_fixture(older);
        let page = logs::list_deliveries(&conn, &hook, &DeliveryFilter::default(), 10, 0).unwrap();
        // The statement the page ran: no filter, so the webhook at ?1, three
        // types in four parts from ?2, the limit and offset at ?6 and ?7.
        let steps = conn
            .prepare_cached(&logs::merged_page_sql("", 4, 2, 6, 7))
            .unwrap()
            .get_status(rusqlite::StatementStatus::VmStep);
        (page.items.iter().map(|d| d.id.to_string()).collect(), steps)
    }
    let (small_page, small_steps) = page_steps(0);
    let (large_page, large_steps) = page_steps(5_000);
    assert_eq!(
        small_page,
        (2..12).rev().map(log_id).collect::<Vec<_>>(),
        "the ten newest, newest first, whatever their type"
    );
    assert_eq!(
        large_page,
        (5_002..5_012).rev().map(log_id).collect::<Vec<_>>()
    );
    assert!(small_steps > 0, "the page ran on the cached statement");
    assert_eq!(
        large_steps, small_steps,
        "the page must not step through the older log"
    );
}

/// The part of an hour a statistics window starts in is read from each
/// type's range of the log, whatever the log holds before the window.
#[test]
fn a_statistics_window_reads_only_its_span_of_the_log() {
    fn window_steps(older: i64) -> (DeliveryStats, i32) {
        let (_dir, conn, hook) = log_fixture(older);
        // The newest three (created at older + 9 to older + 11), in a window
        // that ends at the next whole hour.
        let stats = logs::delivery_stats(&conn, None, Some(&hook), older + 9).unwrap();
        let (scope, values) = logs::stats_scope(None, Some(&hook));
        let steps = conn
            .prepare_cached(&logs::window_start_sql(
                &scope,
                values.len() + 1,
                values.len() + 2,
            ))
            .unwrap()
            .get_status(rusqlite::StatementStatus::VmStep);
        (stats, steps)
    }
    let (small, small_steps) = window_steps(0);
    let (large, large_steps) = window_steps(5_000);
    assert_eq!(small.delivered, 3, "{small:?}");
    assert_eq!(large.delivered, 3, "{large:?}");
    assert!(small_steps > 0, "the window ran on the cached statement");
    assert_eq!(
        large_steps, small_steps,
        "the window must not step through the log before it"
    );
}
