//! The store contract, written once and run against every backend: the
//! embedded SQLite store always, and PostgreSQL when a server is reachable
//! (see `postgres_support`; a fresh database per test, dropped afterwards).
//!
//! Each `contract_*` function states one part of the [`Store`] contract and
//! takes nothing but a store (or a [`Fixture`] where it must look beneath the
//! store, as for secrets at rest). The `contracts!` macro runs each of them
//! against both backends.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use webhook_domain::delivery::{AttemptErrorKind, DeliveryStatus};
use webhook_domain::filter::PayloadFilter;
use webhook_domain::ids::{DeliveryId, EventId, UserId, WebhookId};
use webhook_domain::ordering::{DeliveryOrder, OrderingKey};
use webhook_domain::retry::RetrySchedule;
use webhook_domain::webhook::WebhookSecret;
use webhook_service::crypto::{EncryptionKey, SecretCipher};
use webhook_service::store::postgres::{PostgresOptions, PostgresStore};
use webhook_service::store::sqlite::SqliteStore;
use webhook_service::store::{
    AttemptRecord, AttemptReport, Claimed, ControlsPatch, DeliveryControls, DeliveryFilter,
    DeliveryRecord, DeliveryStats, FailurePolicy, IngestItem, IngestOutcome, NewDelivery,
    NewWebhook, OrderHead, Owner, Page, StatsScope, Store, StoreError, VisibleWebhook,
    WebhookChanges, WebhookPatch, WebhookRecord,
};

use crate::harness::{DONE, Ran, Test, skip};
use crate::postgres_support::TestDatabase;

// ---------------------------------------------------------------- fixtures

/// The claim TTL of the PostgreSQL fixtures.
const CLAIM_TTL: Duration = Duration::from_millis(200);

/// Heartbeats of `owners` every 40 ms for `period`, as running engines send
/// them, so that the store takes them for live, connected instances.
async fn keep_beating(store: &dyn Store, owners: &[&str], period: Duration) {
    let until = std::time::Instant::now() + period;
    while std::time::Instant::now() < until {
        for owner in owners {
            store.heartbeat(owner).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    for owner in owners {
        store.heartbeat(owner).await.unwrap();
    }
}

/// The proof of access the delivery queries take, for a webhook that exists
/// (as an admin sees it).
async fn visible(store: &dyn Store, id: &WebhookId) -> VisibleWebhook {
    store
        .visible_webhook(id, Owner::Any)
        .await
        .unwrap()
        .expect("the webhook exists")
}

fn cipher() -> SecretCipher {
    SecretCipher::new(&EncryptionKey::new([7; 32]))
}

/// A store under test, with a way to look at what it wrote.
struct Fixture {
    store: Arc<dyn Store>,
    backend: Backend,
}

enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(TestDatabase),
}

impl Fixture {
    fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path(), cipher()).expect("open sqlite store");
        Fixture {
            store: Arc::new(store),
            backend: Backend::Sqlite(dir),
        }
    }

    /// PostgreSQL with a short claim TTL, so that recovery shows within a test.
    async fn postgres() -> Result<Fixture, String> {
        Fixture::postgres_with(PostgresOptions {
            claim_ttl: CLAIM_TTL,
            ..PostgresOptions::default()
        })
        .await
    }

    async fn postgres_with(options: PostgresOptions) -> Result<Fixture, String> {
        let db = TestDatabase::fresh().await?;
        let store = PostgresStore::connect(&db.url, options, cipher())
            .await
            .expect("connect to the test database");
        Ok(Fixture {
            store: Arc::new(store),
            backend: Backend::Postgres(db),
        })
    }

    /// Another store on the same database (a second instance), PostgreSQL only.
    async fn second_instance(&self) -> Arc<dyn Store> {
        let Backend::Postgres(db) = &self.backend else {
            panic!("only PostgreSQL is shared by instances");
        };
        Arc::new(
            PostgresStore::connect(
                &db.url,
                PostgresOptions {
                    claim_ttl: CLAIM_TTL,
                    ..PostgresOptions::default()
                },
                cipher(),
            )
            .await
            .expect("second instance"),
        )
    }

    fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// Everything the backend stored about webhooks, as raw bytes.
    async fn raw_webhook_storage(&self) -> Vec<u8> {
        match &self.backend {
            Backend::Sqlite(dir) => {
                let mut bytes = Vec::new();
                for file in ["webhooks.db", "webhooks.db-wal"] {
                    if let Ok(b) = std::fs::read(dir.path().join(file)) {
                        bytes.extend(b);
                    }
                }
                bytes
            }
            Backend::Postgres(db) => {
                let client = crate::postgres_support::connect(&db.url)
                    .await
                    .expect("connect");
                let rows = client
                    .query("SELECT w::text, secret_enc FROM webhooks w", &[])
                    .await
                    .expect("select webhooks");
                let mut bytes = Vec::new();
                for row in rows {
                    let text: String = row.get(0);
                    let sealed: String = row.get(1);
                    assert!(sealed.starts_with("v1:"), "secret_enc is sealed: {sealed}");
                    bytes.extend(text.into_bytes());
                }
                bytes
            }
        }
    }
}

impl Fixture {
    /// The single number `sql` (a `SELECT COUNT(*) ...`) reads from the
    /// backend's tables, beneath the store.
    async fn count(&self, sql: &str) -> i64 {
        match &self.backend {
            Backend::Sqlite(dir) => {
                let c = rusqlite::Connection::open(dir.path().join("webhooks.db"))
                    .expect("open the store's database");
                c.query_row(sql, [], |r| r.get(0)).expect(sql)
            }
            Backend::Postgres(db) => {
                let client = crate::postgres_support::connect(&db.url)
                    .await
                    .expect("connect");
                client.query_one(sql, &[]).await.expect(sql).get(0)
            }
        }
    }

    /// Attempts without their delivery and deliveries without their
    /// webhook: rows no API reaches any more, which the store must never leave.
    async fn orphans(&self) -> (i64, i64) {
        (
            self.count(
                "SELECT COUNT(*) FROM attempts a \
                 WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.id = a.delivery_id)",
            )
            .await,
            self.count(
                "SELECT COUNT(*) FROM deliveries d \
                 WHERE NOT EXISTS (SELECT 1 FROM webhooks w WHERE w.id = d.webhook_id)",
            )
            .await,
        )
    }
}

// ---------------------------------------------------------------- builders

fn user(name: &str) -> UserId {
    UserId::parse(name).expect("user id")
}

fn secret(text: &str) -> WebhookSecret {
    WebhookSecret::parse(text).expect("secret")
}

fn new_webhook(owner: &str, now: i64) -> NewWebhook {
    NewWebhook {
        id: WebhookId::generate(),
        owner_id: user(owner),
        url: format!("https://{owner}.example.com/hooks"),
        event_types: vec!["user.created".into(), "payment.*".into()],
        description: Some(format!("{owner}'s hook")),
        is_active: true,
        scope_all: false,
        secret: secret("whsec_0123456789abcdef0123456789"),
        now,
        controls: DeliveryControls::default(),
        endpoint: Default::default(),
    }
}

/// Every stored webhook, as the routing table's reload reads them.
async fn all_webhooks(store: &dyn Store) -> Vec<WebhookRecord> {
    let mut all = Vec::new();
    store
        .each_webhook(&mut |record| all.push(record))
        .await
        .expect("each webhook");
    all
}

async fn create(store: &dyn Store, owner: &str, now: i64) -> WebhookRecord {
    store
        .create_webhook(new_webhook(owner, now), 100)
        .await
        .expect("create webhook")
}

/// Loading every webhook a batch at a time (the routing table's reload)
/// hands each one exactly once, however many batches they fill, with the
/// secret and settings it was stored with.
async fn contract_each_webhook_hands_every_webhook_once(store: &dyn Store) {
    // Two full batches of 512 and part of a third, on both stores.
    let mut stored = std::collections::HashMap::new();
    for i in 0..1_100 {
        let owner = format!("user-{}", i % 40);
        let record = create(store, &owner, i).await;
        stored.insert(record.id.clone(), record);
    }
    assert!(
        store
            .delete_webhook(&stored.keys().next().unwrap().clone(), Owner::Any)
            .await
            .unwrap()
    );
    let deleted = stored.len() - 1;
    let mut seen = std::collections::HashMap::new();
    store
        .each_webhook(&mut |record| {
            let again = seen.insert(record.id.clone(), record);
            assert!(again.is_none(), "handed twice");
        })
        .await
        .expect("each webhook");
    assert_eq!(seen.len(), deleted, "every webhook but the deleted one");
    for (id, record) in &seen {
        let kept = &stored[id];
        assert_eq!(record.owner_id, kept.owner_id);
        assert_eq!(record.url, kept.url);
        assert_eq!(record.secret.expose(), kept.secret.expose());
    }
}

/// An event of `user` at `at` with one delivery per `(webhook, claimed)`.
/// A delivery log counts its matches only up to a cap (or one past the
/// page, if further): a page of a large log never reads the whole log to
/// count it, and whether more follow is still known.
async fn contract_log_total_is_counted_up_to_its_cap(store: &dyn Store) {
    use webhook_service::store::{LOG_COUNT_CAP, log_count_cap};
    let hook = create(store, "alice", 1).await.id;
    let n = LOG_COUNT_CAP + 30;
    let targets = [(&hook, false)];
    for chunk in 0..(n / 1_000 + 1) {
        let items: Vec<IngestItem> = (chunk * 1_000..((chunk + 1) * 1_000).min(n))
            .map(|i| event(10 + i as i64, "user.created", &targets).0)
            .collect();
        if !items.is_empty() {
            store.ingest("i-1", Arc::new(items)).await.unwrap();
        }
    }
    let webhook = visible(store, &hook).await;
    let total = |limit: u32, offset: u64| {
        let webhook = webhook.clone();
        async move {
            store
                .list_deliveries(&webhook, DeliveryFilter::default(), limit, offset)
                .await
                .unwrap()
                .total
        }
    };
    // The first page stops counting at the cap.
    assert_eq!(log_count_cap(20, 0), LOG_COUNT_CAP);
    assert_eq!(total(20, 0).await, LOG_COUNT_CAP);
    // A page past the cap counts one row past itself: more follow.
    assert_eq!(total(20, LOG_COUNT_CAP).await, LOG_COUNT_CAP + 21);
    // The last page's count is exact.
    assert_eq!(total(20, LOG_COUNT_CAP + 20).await, n);
    // A filter that matches a few counts them all.
    let few = store
        .list_deliveries(
            &webhook,
            DeliveryFilter {
                event_type: Some("user.updated".into()),
                ..DeliveryFilter::default()
            },
            20,
            0,
        )
        .await
        .unwrap();
    assert_eq!(few.total, 0);
}

fn event(
    at: i64,
    event_type: &str,
    targets: &[(&WebhookId, bool)],
) -> (IngestItem, Vec<DeliveryId>) {
    let deliveries: Vec<NewDelivery> = targets
        .iter()
        .map(|(webhook, claimed)| NewDelivery {
            id: DeliveryId::generate(),
            webhook_id: (*webhook).clone(),
            claimed: *claimed,
            ordering_key: None,
        })
        .collect();
    let ids = deliveries.iter().map(|d| d.id.clone()).collect();
    let event_id = EventId::generate();
    let item = IngestItem {
        payload: Bytes::from(format!(r#"{{"id":"{event_id}","type":"{event_type}"}}"#)),
        event_id,
        event_type: event_type.into(),
        user_id: user("alice"),
        idempotent: true,
        created_at: at,
        deliveries,
    };
    (item, ids)
}

/// Ingests one event with one delivery to `webhook`; returns the delivery id.
async fn ingest_one(
    store: &dyn Store,
    owner: &str,
    at: i64,
    webhook: &WebhookId,
    claimed: bool,
) -> DeliveryId {
    let (item, mut ids) = event(at, "user.created", &[(webhook, claimed)]);
    let outcomes = store
        .ingest(owner, Arc::new(vec![item]))
        .await
        .expect("ingest");
    assert_eq!(outcomes, vec![IngestOutcome::Created]);
    ids.remove(0)
}

fn report(
    delivery: &DeliveryId,
    webhook: &WebhookId,
    attempt: u32,
    status: DeliveryStatus,
    code: Option<u16>,
    started_at: i64,
    next_attempt_at: Option<i64>,
) -> AttemptReport {
    AttemptReport {
        delivery_id: delivery.clone(),
        webhook_id: webhook.clone(),
        // A claim no delivery matches: the store reads the row to record
        // the result. The kept statistics' contract passes true ones.
        claimed: Claimed::new_delivery(i64::MIN),
        attempt: AttemptRecord {
            attempt,
            started_at,
            duration_ms: 12,
            request_headers: vec![("webhook-id".into(), delivery.to_string())],
            status_code: code,
            response_headers: vec![("content-type".into(), "text/plain".into())],
            response_body: format!("answer {attempt}"),
            error_kind: match code {
                Some(200..=299) => None,
                _ => Some(AttemptErrorKind::HttpStatus),
            },
            error_message: match code {
                Some(200..=299) => None,
                _ => Some("receiver answered an error".into()),
            },
        },
        status,
        next_attempt_at,
        disable_webhook: None,
        test_send: false,
    }
}

const LENIENT: FailurePolicy = FailurePolicy {
    failing_for_ms: i64::MAX / 4,
    exhausted_in_a_row: 0,
};

async fn record(
    store: &dyn Store,
    reports: Vec<AttemptReport>,
    policy: FailurePolicy,
    now: i64,
) -> Vec<WebhookId> {
    store
        .record_attempts("me", Arc::new(reports), policy, now)
        .await
        .expect("record attempts")
        .into_iter()
        .map(|d| d.webhook_id)
        .collect()
}

fn ids_of(due: &[webhook_service::store::DueDelivery]) -> Vec<DeliveryId> {
    due.iter().map(|d| d.id.clone()).collect()
}

// ---------------------------------------------------------------- contracts

async fn contract_webhook_crud_and_ownership(store: &dyn Store) {
    let alice = user("alice");
    let bob = user("bob");
    let a1 = create(store, "alice", 1000).await;
    let b1 = create(store, "bob", 1500).await;
    let a2 = create(store, "alice", 2000).await;

    let got = store
        .get_webhook(&a1.id, Owner::User(&alice))
        .await
        .unwrap()
        .expect("owner sees it");
    assert_eq!(got.owner_id, alice);
    assert_eq!(got.url, "https://alice.example.com/hooks");
    assert_eq!(got.event_types, vec!["user.created", "payment.*"]);
    assert_eq!(got.description.as_deref(), Some("alice's hook"));
    assert!(got.is_active && !got.scope_all);
    assert_eq!(got.secret.expose(), "whsec_0123456789abcdef0123456789");
    assert!(got.previous_secret.is_none());
    assert_eq!((got.created_at, got.updated_at), (1000, 1000));
    assert_eq!((got.failing_since, got.consecutive_exhausted), (None, 0));

    assert!(
        store
            .get_webhook(&a1.id, Owner::User(&bob))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get_webhook(&a1.id, Owner::Any)
            .await
            .unwrap()
            .is_some()
    );

    let page = store
        .list_webhooks(Owner::User(&alice), 10, 0)
        .await
        .unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(
        page.items.iter().map(|w| &w.id).collect::<Vec<_>>(),
        vec![&a2.id, &a1.id]
    );
    let page = store
        .list_webhooks(Owner::User(&alice), 1, 1)
        .await
        .unwrap();
    assert_eq!((page.total, page.items.len()), (2, 1));
    assert_eq!(page.items[0].id, a1.id);
    let page = store.list_webhooks(Owner::Any, 10, 0).await.unwrap();
    assert_eq!(
        page.items.iter().map(|w| &w.id).collect::<Vec<_>>(),
        vec![&a2.id, &b1.id, &a1.id]
    );
    assert_eq!(all_webhooks(store).await.len(), 3);

    let patch = WebhookPatch {
        url: Some("https://alice.example.com/v2".into()),
        event_types: Some(vec!["*".into()]),
        description: Some(None),
        is_active: Some(false),
        secret: None,
        now: 3000,
        controls: ControlsPatch::default(),
        endpoint: None,
    };
    assert!(
        store
            .update_webhook(&a1.id, Owner::User(&bob), patch.clone())
            .await
            .unwrap()
            .is_none(),
        "another user's webhook is not found"
    );
    let updated = store
        .update_webhook(&a1.id, Owner::User(&alice), patch)
        .await
        .unwrap()
        .expect("updated");
    assert_eq!(updated.url, "https://alice.example.com/v2");
    assert_eq!(updated.event_types, vec!["*"]);
    assert_eq!(updated.description, None);
    assert!(!updated.is_active);
    assert_eq!((updated.created_at, updated.updated_at), (1000, 3000));
    assert_eq!(updated.secret.expose(), "whsec_0123456789abcdef0123456789");

    // An empty patch changes nothing but the time; a description can be set again.
    let same = store
        .update_webhook(
            &a1.id,
            Owner::Any,
            WebhookPatch {
                now: 3500,
                ..WebhookPatch::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (same.url.as_str(), same.is_active, same.updated_at),
        ("https://alice.example.com/v2", false, 3500)
    );
    let described = store
        .update_webhook(
            &a1.id,
            Owner::User(&alice),
            WebhookPatch {
                description: Some(Some("again".into())),
                now: 3600,
                ..WebhookPatch::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(described.description.as_deref(), Some("again"));

    assert!(
        !store
            .delete_webhook(&a1.id, Owner::User(&bob))
            .await
            .unwrap()
    );
    assert!(
        store
            .get_webhook(&a1.id, Owner::Any)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .delete_webhook(&a1.id, Owner::User(&alice))
            .await
            .unwrap()
    );
    assert!(
        store
            .get_webhook(&a1.id, Owner::Any)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!store.delete_webhook(&a1.id, Owner::Any).await.unwrap());
    assert!(
        store.delete_webhook(&b1.id, Owner::Any).await.unwrap(),
        "an admin deletes anyone's"
    );
}

async fn contract_webhook_cap(store: &dyn Store) {
    for i in 0..2 {
        store
            .create_webhook(new_webhook("carol", i), 2)
            .await
            .expect("under the cap");
    }
    match store.create_webhook(new_webhook("carol", 9), 2).await {
        Err(StoreError::WebhookLimit { limit: 2 }) => {}
        other => panic!("expected the cap, got {other:?}"),
    }
    store
        .create_webhook(new_webhook("dave", 9), 2)
        .await
        .expect("the cap is per user");

    // Concurrent creations never exceed the cap.
    let attempts = (0..8).map(|i| store.create_webhook(new_webhook("erin", i), 3));
    let results = futures_join_all(attempts).await;
    let created = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::WebhookLimit { limit: 3 })))
        .count();
    assert_eq!((created, refused), (3, 5), "{results:?}");
    assert_eq!(
        store
            .list_webhooks(Owner::User(&user("erin")), 100, 0)
            .await
            .unwrap()
            .total,
        3
    );
}

async fn contract_rotation_keeps_previous_secret(store: &dyn Store) {
    let alice = user("alice");
    let hook = create(store, "alice", 1000).await;
    let first = hook.secret.expose().to_string();
    assert!(
        store
            .rotate_secret(
                &hook.id,
                Owner::User(&user("bob")),
                secret("whsec_second-secret-000000"),
                9000,
                2000
            )
            .await
            .unwrap()
            .is_none()
    );
    let rotated = store
        .rotate_secret(
            &hook.id,
            Owner::User(&alice),
            secret("whsec_second-secret-000000"),
            9000,
            2000,
        )
        .await
        .unwrap()
        .expect("rotated");
    assert_eq!(rotated.secret.expose(), "whsec_second-secret-000000");
    let (previous, until) = rotated.previous_secret.clone().expect("previous kept");
    assert_eq!((previous.expose(), until), (first.as_str(), 9000));
    assert_eq!(rotated.updated_at, 2000);
    let reread = store
        .get_webhook(&hook.id, Owner::Any)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reread.secret.expose(), "whsec_second-secret-000000");
    assert_eq!(
        reread
            .previous_secret
            .map(|(s, u)| (s.expose().to_string(), u)),
        Some((first, 9000))
    );

    // Rotating again during the grace period drops the oldest secret.
    let again = store
        .rotate_secret(
            &hook.id,
            Owner::Any,
            secret("whsec_third-secret-0000000"),
            12000,
            3000,
        )
        .await
        .unwrap()
        .unwrap();
    let (previous, until) = again.previous_secret.expect("previous kept");
    assert_eq!(
        (previous.expose(), until),
        ("whsec_second-secret-000000", 12000)
    );

    // Replacing the secret by a patch has no grace period.
    let replaced = store
        .update_webhook(
            &hook.id,
            Owner::User(&alice),
            WebhookPatch {
                secret: Some(secret("whsec_fourth-secret-000000")),
                now: 4000,
                ..WebhookPatch::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replaced.secret.expose(), "whsec_fourth-secret-000000");
    assert!(replaced.previous_secret.is_none());
}

async fn contract_secret_not_in_plaintext(f: &Fixture) {
    let store = f.store();
    let mut hook = new_webhook("alice", 1000);
    hook.secret = secret("whsec_PLAINTEXT-MARKER-ONE-1234");
    let hook = store.create_webhook(hook, 100).await.unwrap();
    store
        .rotate_secret(
            &hook.id,
            Owner::Any,
            secret("whsec_PLAINTEXT-MARKER-TWO-5678"),
            9000,
            2000,
        )
        .await
        .unwrap();
    let raw = f.raw_webhook_storage().await;
    assert!(!raw.is_empty(), "the backend stored something");
    for marker in ["PLAINTEXT-MARKER-ONE", "PLAINTEXT-MARKER-TWO"] {
        assert!(
            !raw.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "{marker} found in plaintext at rest"
        );
    }
    let reread = store
        .get_webhook(&hook.id, Owner::Any)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reread.secret.expose(), "whsec_PLAINTEXT-MARKER-TWO-5678");
}

/// A large ingest call (one event to three webhooks, 300 times, with a copy
/// of an event stored before and a repeat within the call): the PostgreSQL
/// store writes such a group commit in two statements rather than one.
async fn contract_ingest_large_call(store: &dyn Store) {
    let hooks = [
        create(store, "alice", 1).await.id,
        create(store, "alice", 2).await.id,
        create(store, "alice", 3).await.id,
    ];
    let targets: Vec<(&WebhookId, bool)> = hooks.iter().map(|w| (w, false)).collect();
    let (earlier, earlier_deliveries) = event(10, "user.created", &targets);
    store
        .ingest("i-1", Arc::new(vec![earlier.clone()]))
        .await
        .unwrap();

    let mut items: Vec<IngestItem> = (0..300)
        .map(|i| event(100 + i, "user.created", &targets).0)
        .collect();
    let (mut stored_before, _) = event(500, "user.created", &targets);
    stored_before.event_id = earlier.event_id.clone();
    let mut repeat = items[7].clone();
    repeat.deliveries = event(501, "user.created", &targets).0.deliveries;
    items.push(stored_before);
    items.push(repeat);
    let outcomes = store.ingest("i-1", Arc::new(items.clone())).await.unwrap();

    assert_eq!(outcomes.len(), 302);
    assert!(
        outcomes[..300].iter().all(|o| *o == IngestOutcome::Created),
        "{:?}",
        &outcomes[..300]
    );
    let mut first_copy = earlier_deliveries.clone();
    first_copy.sort();
    assert_eq!(
        outcomes[300],
        IngestOutcome::Duplicate {
            deliveries: first_copy
        }
    );
    let mut seventh: Vec<DeliveryId> = items[7].deliveries.iter().map(|d| d.id.clone()).collect();
    seventh.sort();
    assert_eq!(
        outcomes[301],
        IngestOutcome::Duplicate {
            deliveries: seventh
        }
    );
    for hook in &hooks {
        let total = store
            .list_deliveries(&visible(store, hook).await, DeliveryFilter::default(), 1, 0)
            .await
            .unwrap()
            .total;
        assert_eq!(total, 1 + 300, "one delivery per stored event to {hook}");
    }
}

async fn contract_ingest_and_duplicate_ids(store: &dyn Store) {
    let w1 = create(store, "alice", 1).await.id;
    let w2 = create(store, "alice", 2).await.id;
    let (e1, mut d1) = event(100, "user.created", &[(&w1, false), (&w2, false)]);
    let (e2, _) = event(100, "user.created", &[]);
    let outcomes = store
        .ingest("i-1", Arc::new(vec![e1.clone(), e2]))
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![IngestOutcome::Created, IngestOutcome::Created]
    );

    // The same id again: nothing written, the first copy's deliveries answered.
    let (mut again, _) = event(200, "user.created", &[(&w1, false)]);
    again.event_id = e1.event_id.clone();
    let outcomes = store.ingest("i-1", Arc::new(vec![again])).await.unwrap();
    d1.sort();
    assert_eq!(
        outcomes,
        vec![IngestOutcome::Duplicate {
            deliveries: d1.clone()
        }]
    );

    // A repeat within one call is a duplicate of the first occurrence.
    let (e3, d3) = event(300, "user.created", &[(&w1, false)]);
    let (mut e3_again, _) = event(300, "user.created", &[(&w1, false)]);
    e3_again.event_id = e3.event_id.clone();
    let outcomes = store
        .ingest("i-1", Arc::new(vec![e3, e3_again]))
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            IngestOutcome::Created,
            IngestOutcome::Duplicate {
                deliveries: d3.clone()
            }
        ]
    );

    let logged = store
        .list_deliveries(
            &visible(store, &w1).await,
            DeliveryFilter::default(),
            100,
            0,
        )
        .await
        .unwrap();
    assert_eq!(
        logged.total, 2,
        "one delivery per stored event: {:?}",
        logged.items
    );
    let detail = store
        .get_delivery(&visible(store, &w1).await, &d3[0])
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(detail.delivery.status, DeliveryStatus::Pending);
    assert_eq!(detail.delivery.next_attempt_at, Some(300));
    assert_eq!(
        &detail.payload[..],
        format!(
            r#"{{"id":"{}","type":"user.created"}}"#,
            detail.delivery.event_id
        )
        .as_bytes()
    );

    // Concurrent callers share commits; each gets its own answer.
    let events: Vec<(IngestItem, Vec<DeliveryId>)> = (0..64)
        .map(|i| event(1000 + i, "user.created", &[(&w2, false)]))
        .collect();
    let calls = events
        .iter()
        .map(|(item, _)| store.ingest("i-1", Arc::new(vec![item.clone()])));
    for outcome in futures_join_all(calls).await {
        assert_eq!(outcome.unwrap(), vec![IngestOutcome::Created]);
    }
    // Concurrent copies of one id: exactly one is stored.
    let (shared, _) = event(5000, "user.created", &[(&w2, false)]);
    let calls = (0..8).map(|_| {
        let mut copy = shared.clone();
        copy.deliveries = vec![NewDelivery {
            id: DeliveryId::generate(),
            webhook_id: w2.clone(),
            claimed: false,
            ordering_key: None,
        }];
        store.ingest("i-1", Arc::new(vec![copy]))
    });
    let outcomes: Vec<IngestOutcome> = futures_join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().remove(0))
        .collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == IngestOutcome::Created)
            .count(),
        1,
        "{outcomes:?}"
    );
    let total = store
        .list_deliveries(&visible(store, &w2).await, DeliveryFilter::default(), 1, 0)
        .await
        .unwrap()
        .total;
    assert_eq!(total, 1 + 64 + 1);
    for outcome in outcomes {
        if let IngestOutcome::Duplicate { deliveries } = outcome {
            assert_eq!(deliveries.len(), 1, "the stored copy's delivery");
        }
    }
}

async fn contract_claim_due_order_limit_exclude_inactive(store: &dyn Store) {
    let w1 = create(store, "alice", 1).await.id;
    let w2 = create(store, "alice", 2).await.id;
    let w3 = create(store, "alice", 3).await.id;
    store
        .update_webhook(
            &w3,
            Owner::Any,
            WebhookPatch {
                is_active: Some(false),
                now: 4,
                ..WebhookPatch::default()
            },
        )
        .await
        .unwrap();
    let t100 = ingest_one(store, "me", 100, &w1, false).await;
    let t200 = ingest_one(store, "me", 200, &w2, false).await;
    let _t300 = ingest_one(store, "me", 300, &w3, false).await;
    let t400 = ingest_one(store, "me", 400, &w1, false).await;
    let t5000 = ingest_one(store, "me", 5000, &w1, false).await;
    let _held = ingest_one(store, "me", 50, &w1, true).await;
    store.heartbeat("me").await.unwrap();

    let due = store.claim_due("me", 1000, 2, vec![]).await.unwrap();
    assert_eq!(
        ids_of(&due),
        vec![t100.clone(), t200],
        "oldest due first, at most the limit"
    );
    assert_eq!(due[0].webhook_id, w1);
    assert_eq!(due[0].event_type, "user.created");
    assert_eq!(due[0].attempts, 0);
    assert_eq!(
        &due[0].payload[..],
        format!(r#"{{"id":"{}","type":"user.created"}}"#, due[0].event_id).as_bytes()
    );

    let due = store
        .claim_due("me", 1000, 10, vec![w1.clone()])
        .await
        .unwrap();
    assert!(
        due.is_empty(),
        "w1 excluded, w3 inactive: {:?}",
        ids_of(&due)
    );
    let due = store.claim_due("me", 1000, 10, vec![]).await.unwrap();
    assert_eq!(ids_of(&due), vec![t400]);
    assert!(
        store
            .claim_due("me", 1000, 10, vec![])
            .await
            .unwrap()
            .is_empty(),
        "claimed rows are not due"
    );
    let due = store.claim_due("me", 10_000, 10, vec![]).await.unwrap();
    assert_eq!(
        ids_of(&due),
        vec![t5000],
        "future work once its time has come"
    );
    assert!(
        store
            .claim_due("me", 10_000, 0, vec![])
            .await
            .unwrap()
            .is_empty()
    );
}

/// Ingests one event of `user` with an ordered delivery to `webhook` (its
/// order: `user`); returns the delivery id.
async fn ingest_ordered(store: &dyn Store, at: i64, webhook: &WebhookId, user: &str) -> DeliveryId {
    let (mut item, ids) = event(at, "user.created", &[(webhook, false)]);
    item.user_id = self::user(user);
    item.deliveries[0].ordering_key = Some(user.to_string());
    let outcomes = store
        .ingest("me", Arc::new(vec![item]))
        .await
        .expect("ingest");
    assert_eq!(outcomes, vec![IngestOutcome::Created]);
    ids[0].clone()
}

/// FIFO: only the head of each order is ever claimed, a failing head holds
/// its order only, a replay joins the order at its end, and switching the
/// ordering off releases the queue.
async fn contract_fifo_claims_one_head_per_order(store: &dyn Store) {
    let mut new = new_webhook("alice", 1);
    new.controls.ordering = Some(DeliveryOrder::Fifo(OrderingKey::UserId));
    let w = store.create_webhook(new, 100).await.unwrap().id;
    store.heartbeat("me").await.unwrap();
    let a1 = ingest_ordered(store, 10, &w, "a").await;
    let a2 = ingest_ordered(store, 11, &w, "a").await;
    let b1 = ingest_ordered(store, 12, &w, "b").await;
    let a3 = ingest_ordered(store, 13, &w, "a").await;

    let mut due = ids_of(&store.claim_due("me", 1000, 10, vec![]).await.unwrap());
    due.sort();
    let mut heads = vec![a1.clone(), b1.clone()];
    heads.sort();
    assert_eq!(due, heads, "one head per order");
    assert!(
        store
            .claim_due("me", 1000, 10, vec![])
            .await
            .unwrap()
            .is_empty(),
        "nothing behind a head in flight"
    );
    // The head of "a" fails and will retry later: "a" waits, "b" finishes.
    let retry = report(
        &a1,
        &w,
        1,
        DeliveryStatus::Retrying,
        Some(500),
        20,
        Some(5000),
    );
    let done_b = report(&b1, &w, 1, DeliveryStatus::Delivered, Some(200), 20, None);
    record(store, vec![retry, done_b], LENIENT, 21).await;
    assert!(
        store
            .claim_due("me", 1000, 10, vec![])
            .await
            .unwrap()
            .is_empty()
    );
    let webhook = visible(store, &w).await;
    let detail = store.get_delivery(&webhook, &a3).await.unwrap().unwrap();
    assert_eq!(detail.blocked_by, Some(a1.clone()));
    let detail = store.get_delivery(&webhook, &a1).await.unwrap().unwrap();
    assert_eq!(detail.blocked_by, None, "a head waits for nothing");
    let orders = store.ordering_heads(&webhook, 10).await.unwrap();
    assert_eq!(
        orders,
        vec![OrderHead {
            key: "a".into(),
            head: a1.clone(),
            status: DeliveryStatus::Retrying,
            attempts: 1,
            waiting: 2,
        }]
    );
    // Due again, the head goes first; once it has failed for good the next one goes.
    assert_eq!(
        ids_of(&store.claim_due("me", 6000, 10, vec![]).await.unwrap()),
        vec![a1.clone()]
    );
    let failed = report(&a1, &w, 2, DeliveryStatus::Failed, Some(500), 6001, None);
    record(store, vec![failed], LENIENT, 6002).await;
    assert_eq!(
        ids_of(&store.claim_due("me", 6003, 10, vec![]).await.unwrap()),
        vec![a2.clone()]
    );
    record(
        store,
        vec![report(
            &a2,
            &w,
            1,
            DeliveryStatus::Delivered,
            Some(200),
            6004,
            None,
        )],
        LENIENT,
        6005,
    )
    .await;
    // A replay of the failed head joins the end of its order: behind a3,
    // before what is acknowledged after it.
    assert_eq!(
        store
            .requeue(&webhook, DeliveryFilter::default(), Some(a1.clone()), 6006)
            .await
            .unwrap(),
        1
    );
    let a4 = ingest_ordered(store, 6007, &w, "a").await;
    assert_eq!(
        ids_of(&store.claim_due("me", 7000, 10, vec![]).await.unwrap()),
        vec![a3.clone()]
    );
    record(
        store,
        vec![report(
            &a3,
            &w,
            1,
            DeliveryStatus::Delivered,
            Some(200),
            7001,
            None,
        )],
        LENIENT,
        7002,
    )
    .await;
    assert_eq!(
        ids_of(&store.claim_due("me", 7003, 10, vec![]).await.unwrap()),
        vec![a1.clone()]
    );
    // Switched off, the queue behind the head in flight goes at once.
    let a5 = ingest_ordered(store, 7004, &w, "a").await;
    store
        .update_webhook(
            &w,
            Owner::Any,
            WebhookPatch {
                controls: ControlsPatch {
                    ordering: Some(None),
                    ..ControlsPatch::default()
                },
                now: 7005,
                ..WebhookPatch::default()
            },
        )
        .await
        .unwrap();
    let mut due = ids_of(&store.claim_due("me", 8000, 10, vec![]).await.unwrap());
    due.sort();
    let mut rest = vec![a4, a5];
    rest.sort();
    assert_eq!(due, rest);
    assert!(store.ordering_heads(&webhook, 10).await.unwrap().is_empty());
}

async fn contract_release(store: &dyn Store) {
    let w = create(store, "alice", 1).await.id;
    let d = ingest_one(store, "me", 100, &w, false).await;
    store.heartbeat("me").await.unwrap();
    store.heartbeat("other").await.unwrap();
    assert_eq!(
        ids_of(&store.claim_due("me", 1000, 10, vec![]).await.unwrap()),
        vec![d.clone()]
    );
    store.release("other", vec![d.clone()]).await.unwrap();
    assert!(
        store
            .claim_due("other", 1000, 10, vec![])
            .await
            .unwrap()
            .is_empty(),
        "only the owner releases"
    );
    store.release("me", vec![d.clone()]).await.unwrap();
    assert_eq!(
        ids_of(&store.claim_due("other", 1000, 10, vec![]).await.unwrap()),
        vec![d]
    );
    store.release("me", vec![]).await.unwrap();
}

/// A release of more claims than the store gives back in one go (a paused
/// webhook's whole memory window) gives back every one of them.
async fn contract_release_many(store: &dyn Store) {
    let w = create(store, "alice", 1).await.id;
    let items: Vec<IngestItem> = (0..600)
        .map(|i| event(100 + i, "user.created", &[(&w, true)]).0)
        .collect();
    let mut ids: Vec<DeliveryId> = items.iter().map(|i| i.deliveries[0].id.clone()).collect();
    store.ingest("me", Arc::new(items)).await.unwrap();
    store.heartbeat("me").await.unwrap();
    store.heartbeat("other").await.unwrap();
    assert!(
        store
            .claim_due("other", 10_000, 1000, vec![])
            .await
            .unwrap()
            .is_empty(),
        "claimed at ingest"
    );
    store.release("me", ids.clone()).await.unwrap();
    let mut claimed = ids_of(
        &store
            .claim_due("other", 10_000, 1000, vec![])
            .await
            .unwrap(),
    );
    claimed.sort();
    ids.sort();
    assert_eq!(claimed, ids);
}

async fn contract_recover_claims_of_dead_instances(store: &dyn Store) {
    let w = create(store, "alice", 1).await.id;
    store.heartbeat("me").await.unwrap();
    let mine = ingest_one(store, "me", 100, &w, true).await;
    // An instance that claimed work and never beat again (killed).
    let theirs = ingest_one(store, "i-dead", 200, &w, true).await;
    keep_beating(store, &["me"], CLAIM_TTL * 2).await;
    assert!(
        store
            .claim_due("me", 1000, 10, vec![])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.recover_claims("me").await.unwrap(),
        1,
        "the dead instance's claim is void"
    );
    assert_eq!(
        ids_of(&store.claim_due("me", 1000, 10, vec![]).await.unwrap()),
        vec![theirs]
    );
    assert_eq!(
        store.recover_claims("me").await.unwrap(),
        0,
        "the caller's own claims stand"
    );
    let _ = mine;
}

async fn contract_two_owners_never_claim_the_same(store: &dyn Store) {
    let w1 = create(store, "alice", 1).await.id;
    let w2 = create(store, "alice", 2).await.id;
    let items: Vec<IngestItem> = (0..300)
        .map(|i| {
            event(
                i,
                "user.created",
                &[(if i % 2 == 0 { &w1 } else { &w2 }, false)],
            )
            .0
        })
        .collect();
    store.ingest("me", Arc::new(items)).await.unwrap();
    store.heartbeat("a").await.unwrap();
    store.heartbeat("b").await.unwrap();
    let claim_all = |owner: &'static str| async move {
        let mut got = Vec::new();
        loop {
            let due = store.claim_due(owner, 10_000, 7, vec![]).await.unwrap();
            if due.is_empty() {
                return got;
            }
            got.extend(ids_of(&due));
        }
    };
    let (a, b) = tokio::join!(claim_all("a"), claim_all("b"));
    let a: HashSet<DeliveryId> = a.into_iter().collect();
    let b: HashSet<DeliveryId> = b.into_iter().collect();
    assert!(a.is_disjoint(&b), "a delivery claimed by both");
    assert_eq!(a.len() + b.len(), 300, "every delivery claimed once");
}

async fn contract_record_attempts_transitions(store: &dyn Store) {
    let w = create(store, "alice", 1).await.id;
    let other = create(store, "alice", 2).await.id;
    store.heartbeat("me").await.unwrap();
    let d = ingest_one(store, "me", 100, &w, true).await;

    let disabled = record(
        store,
        vec![report(
            &d,
            &w,
            1,
            DeliveryStatus::Retrying,
            Some(500),
            1000,
            Some(5000),
        )],
        LENIENT,
        1010,
    )
    .await;
    assert!(disabled.is_empty());
    let detail = store
        .get_delivery(&visible(store, &w).await, &d)
        .await
        .unwrap()
        .unwrap();
    let r = &detail.delivery;
    assert_eq!(
        (r.status, r.attempts, r.next_attempt_at),
        (DeliveryStatus::Retrying, 1, Some(5000))
    );
    assert_eq!(
        (r.last_status_code, r.last_error_kind),
        (Some(500), Some(AttemptErrorKind::HttpStatus))
    );
    assert_eq!(r.last_error.as_deref(), Some("receiver answered an error"));
    assert_eq!(
        (r.last_duration_ms, r.updated_at, r.delivered_at),
        (Some(12), 1010, None)
    );
    let hook = store.get_webhook(&w, Owner::Any).await.unwrap().unwrap();
    assert_eq!(
        (
            hook.failing_since,
            hook.consecutive_exhausted,
            hook.is_active
        ),
        (Some(1000), 0, true)
    );
    // Recording releases the claim: the retry is due at its time, not before.
    assert!(
        store
            .claim_due("me", 4999, 10, vec![])
            .await
            .unwrap()
            .is_empty()
    );
    let due = store.claim_due("me", 5000, 10, vec![]).await.unwrap();
    assert_eq!((ids_of(&due), due[0].attempts), (vec![d.clone()], 1));

    record(
        store,
        vec![report(
            &d,
            &w,
            2,
            DeliveryStatus::Delivered,
            Some(200),
            5000,
            None,
        )],
        LENIENT,
        5020,
    )
    .await;
    let detail = store
        .get_delivery(&visible(store, &w).await, &d)
        .await
        .unwrap()
        .unwrap();
    let r = &detail.delivery;
    assert_eq!(
        (r.status, r.attempts, r.next_attempt_at, r.delivered_at),
        (DeliveryStatus::Delivered, 2, None, Some(5020))
    );
    assert_eq!(
        (
            r.last_status_code,
            r.last_error_kind,
            r.last_error.as_deref()
        ),
        (Some(200), None, None)
    );
    assert_eq!(detail.attempts.len(), 2);
    let (a1, a2) = (&detail.attempts[0], &detail.attempts[1]);
    assert_eq!(
        (a1.attempt, a1.started_at, a1.status_code),
        (1, 1000, Some(500))
    );
    assert_eq!(
        (a2.attempt, a2.started_at, a2.status_code, a2.duration_ms),
        (2, 5000, Some(200), 12)
    );
    assert_eq!(
        a2.request_headers,
        vec![("webhook-id".to_string(), d.to_string())]
    );
    assert_eq!(
        a2.response_headers,
        vec![("content-type".to_string(), "text/plain".to_string())]
    );
    assert_eq!(a2.response_body, "answer 2");
    assert_eq!(
        a1.error_message.as_deref(),
        Some("receiver answered an error")
    );
    let hook = store.get_webhook(&w, Owner::Any).await.unwrap().unwrap();
    assert_eq!(
        (hook.failing_since, hook.consecutive_exhausted),
        (None, 0),
        "a success ends the failure run"
    );
    assert!(
        store
            .get_delivery(&visible(store, &other).await, &d)
            .await
            .unwrap()
            .is_none(),
        "a delivery is read through its webhook"
    );
    assert!(
        store
            .claim_due("me", 100_000, 10, vec![])
            .await
            .unwrap()
            .is_empty(),
        "delivered is final"
    );
}

async fn contract_auto_disable_after_exhausted_deliveries(store: &dyn Store) {
    let policy = FailurePolicy {
        failing_for_ms: i64::MAX / 4,
        exhausted_in_a_row: 2,
    };
    let w = create(store, "alice", 1).await.id;
    let d1 = ingest_one(store, "me", 100, &w, true).await;
    let d2 = ingest_one(store, "me", 200, &w, true).await;
    let d3 = ingest_one(store, "me", 300, &w, false).await;
    let disabled = record(
        store,
        vec![report(
            &d1,
            &w,
            3,
            DeliveryStatus::Failed,
            Some(500),
            1000,
            None,
        )],
        policy,
        1001,
    )
    .await;
    assert!(disabled.is_empty());
    let hook = store.get_webhook(&w, Owner::Any).await.unwrap().unwrap();
    assert_eq!(
        (
            hook.consecutive_exhausted,
            hook.failing_since,
            hook.is_active
        ),
        (1, Some(1000), true)
    );

    let disabled = record(
        store,
        vec![report(
            &d2,
            &w,
            3,
            DeliveryStatus::Failed,
            Some(500),
            2000,
            None,
        )],
        policy,
        2001,
    )
    .await;
    assert_eq!(disabled, vec![w.clone()]);
    let hook = store.get_webhook(&w, Owner::Any).await.unwrap().unwrap();
    assert!(!hook.is_active);
    assert_eq!(
        hook.disabled_reason.as_deref(),
        Some("2 deliveries in a row exhausted every retry")
    );
    assert_eq!(
        (
            hook.disabled_at,
            hook.updated_at,
            hook.consecutive_exhausted
        ),
        (Some(2001), 2001, 2)
    );
    let failed = store
        .get_delivery(&visible(store, &w).await, &d2)
        .await
        .unwrap()
        .unwrap()
        .delivery;
    assert_eq!(
        (failed.status, failed.next_attempt_at),
        (DeliveryStatus::Failed, None)
    );
    assert!(
        store
            .claim_due("me", 10_000, 10, vec![])
            .await
            .unwrap()
            .is_empty(),
        "a disabled webhook's work waits"
    );

    // Enabling clears the failure state, and its waiting work is due again.
    let enabled = store
        .update_webhook(
            &w,
            Owner::Any,
            WebhookPatch {
                is_active: Some(true),
                now: 3000,
                ..WebhookPatch::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(enabled.is_active);
    assert_eq!(
        (
            enabled.disabled_reason,
            enabled.disabled_at,
            enabled.failing_since,
            enabled.consecutive_exhausted
        ),
        (None, None, None, 0)
    );
    assert_eq!(
        ids_of(&store.claim_due("me", 10_000, 10, vec![]).await.unwrap()),
        vec![d3]
    );
}

async fn contract_disable_on_gone(store: &dyn Store) {
    let w = create(store, "alice", 1).await.id;
    let d1 = ingest_one(store, "me", 100, &w, true).await;
    let d2 = ingest_one(store, "me", 200, &w, true).await;
    let mut gone = report(&d1, &w, 1, DeliveryStatus::Failed, Some(410), 1000, None);
    gone.disable_webhook = Some("the receiver answered 410 Gone".into());
    let disabled = store
        .record_attempts("me", Arc::new(vec![gone]), LENIENT, 1001)
        .await
        .unwrap();
    assert_eq!(disabled.len(), 1);
    let d = &disabled[0];
    assert_eq!(
        (&d.webhook_id, d.owner_id.as_str(), d.url.as_str()),
        (&w, "alice", "https://alice.example.com/hooks")
    );
    assert_eq!(
        (d.reason.as_str(), d.at),
        ("the receiver answered 410 Gone", 1001)
    );
    let hook = store.get_webhook(&w, Owner::Any).await.unwrap().unwrap();
    assert_eq!(
        (hook.is_active, hook.disabled_reason.as_deref()),
        (false, Some("the receiver answered 410 Gone"))
    );

    // An inactive webhook is not disabled again.
    let mut again = report(&d2, &w, 1, DeliveryStatus::Failed, Some(410), 2000, None);
    again.disable_webhook = Some("the receiver answered 410 Gone".into());
    assert!(
        store
            .record_attempts("me", Arc::new(vec![again]), LENIENT, 2001)
            .await
            .unwrap()
            .is_empty()
    );
    let hook = store.get_webhook(&w, Owner::Any).await.unwrap().unwrap();
    assert_eq!(hook.disabled_at, Some(1001));
}

/// A report counts only for a delivery its instance still claims, or one
/// nobody claims that is unfinished: an instance whose claims were voided
/// and taken over must not clear the new owner's claim, overwrite its
/// result or attempt, or count towards disabling the webhook.
async fn contract_reports_count_only_for_their_claims(store: &dyn Store) {
    let w = create(store, "alice", 1).await.id;
    let taken_over = ingest_one(store, "i-b", 100, &w, true).await;
    // One exhausted delivery in a row would disable the webhook.
    let strict = FailurePolicy {
        failing_for_ms: i64::MAX / 4,
        exhausted_in_a_row: 1,
    };
    let late = report(
        &taken_over,
        &w,
        1,
        DeliveryStatus::Failed,
        Some(500),
        300,
        None,
    );
    let disabled = store
        .record_attempts("i-a", Arc::new(vec![late.clone()]), strict, 301)
        .await
        .unwrap();
    assert!(disabled.is_empty(), "another's claim does not count");
    let detail = store
        .get_delivery(&visible(store, &w).await, &taken_over)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.delivery.status, DeliveryStatus::Pending);
    assert!(detail.attempts.is_empty(), "{:?}", detail.attempts);
    assert!(
        store
            .claim_due("i-c", 10_000, 10, vec![])
            .await
            .unwrap()
            .is_empty(),
        "i-b's claim is kept"
    );

    // The owner's report counts; a late one after it does not undo it.
    let done = report(
        &taken_over,
        &w,
        1,
        DeliveryStatus::Delivered,
        Some(200),
        400,
        None,
    );
    store
        .record_attempts("i-b", Arc::new(vec![done]), strict, 401)
        .await
        .unwrap();
    let disabled = store
        .record_attempts("i-a", Arc::new(vec![late]), strict, 501)
        .await
        .unwrap();
    assert!(disabled.is_empty());
    let detail = store
        .get_delivery(&visible(store, &w).await, &taken_over)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.delivery.status, DeliveryStatus::Delivered);
    assert_eq!(detail.attempts.len(), 1);
    assert_eq!(detail.attempts[0].status_code, Some(200));
    let hook = store.get_webhook(&w, Owner::Any).await.unwrap().unwrap();
    assert!(hook.is_active);
    assert_eq!(hook.failing_since, None);

    // Unclaimed and unfinished (a claim voided and not yet taken again):
    // the result is kept rather than sent a second time.
    let loose = ingest_one(store, "i-b", 600, &w, false).await;
    let result = report(
        &loose,
        &w,
        1,
        DeliveryStatus::Delivered,
        Some(200),
        700,
        None,
    );
    store
        .record_attempts("i-a", Arc::new(vec![result]), strict, 701)
        .await
        .unwrap();
    let detail = store
        .get_delivery(&visible(store, &w).await, &loose)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.delivery.status, DeliveryStatus::Delivered);
}

async fn contract_list_and_get_deliveries(store: &dyn Store) {
    let w = create(store, "alice", 1).await.id;
    let other = create(store, "alice", 2).await.id;
    let mut ids = Vec::new();
    for (i, event_type) in [
        "user.created",
        "payment.completed",
        "user.created",
        "payment.completed",
        "user.created",
    ]
    .iter()
    .enumerate()
    {
        let (item, d) = event(100 * (i as i64 + 1), event_type, &[(&w, true)]);
        store.ingest("me", Arc::new(vec![item])).await.unwrap();
        ids.push(d[0].clone());
    }
    record(
        store,
        vec![report(
            &ids[1],
            &w,
            1,
            DeliveryStatus::Delivered,
            Some(200),
            1000,
            None,
        )],
        LENIENT,
        1000,
    )
    .await;
    record(
        store,
        vec![report(
            &ids[3],
            &w,
            1,
            DeliveryStatus::Delivered,
            Some(200),
            1000,
            None,
        )],
        LENIENT,
        1000,
    )
    .await;

    let all = DeliveryFilter::default();
    let page = store
        .list_deliveries(&visible(store, &w).await, all.clone(), 2, 0)
        .await
        .unwrap();
    assert_eq!(page.total, 5);
    assert_eq!(
        page.items.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        vec![ids[4].clone(), ids[3].clone()],
        "newest first"
    );
    let page = store
        .list_deliveries(&visible(store, &w).await, all.clone(), 2, 4)
        .await
        .unwrap();
    assert_eq!((page.total, page.items.len()), (5, 1));
    assert_eq!(page.items[0].id, ids[0]);
    assert_eq!(page.items[0].user_id, "alice");

    let delivered = DeliveryFilter {
        status: Some(DeliveryStatus::Delivered),
        ..DeliveryFilter::default()
    };
    let page = store
        .list_deliveries(&visible(store, &w).await, delivered, 10, 0)
        .await
        .unwrap();
    assert_eq!(
        page.items.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        vec![ids[3].clone(), ids[1].clone()]
    );
    let typed = DeliveryFilter {
        event_type: Some("user.created".into()),
        ..DeliveryFilter::default()
    };
    assert_eq!(
        store
            .list_deliveries(&visible(store, &w).await, typed.clone(), 10, 0)
            .await
            .unwrap()
            .total,
        3
    );
    // A type's pages keep the log's order (read through its own index).
    let typed_ids =
        |page: Page<DeliveryRecord>| page.items.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        typed_ids(
            store
                .list_deliveries(&visible(store, &w).await, typed.clone(), 2, 0)
                .await
                .unwrap()
        ),
        vec![ids[4].clone(), ids[2].clone()],
        "a type's deliveries newest first"
    );
    assert_eq!(
        typed_ids(
            store
                .list_deliveries(&visible(store, &w).await, typed, 2, 2)
                .await
                .unwrap()
        ),
        vec![ids[0].clone()]
    );
    let window = DeliveryFilter {
        since: Some(200),
        until: Some(400),
        ..DeliveryFilter::default()
    };
    let page = store
        .list_deliveries(&visible(store, &w).await, window, 10, 0)
        .await
        .unwrap();
    assert_eq!(
        page.items.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        vec![ids[2].clone(), ids[1].clone()]
    );
    let combined = DeliveryFilter {
        status: Some(DeliveryStatus::Pending),
        event_type: Some("user.created".into()),
        since: Some(200),
        until: None,
    };
    assert_eq!(
        store
            .list_deliveries(&visible(store, &w).await, combined, 10, 0)
            .await
            .unwrap()
            .total,
        2
    );

    assert_eq!(
        store
            .list_deliveries(&visible(store, &other).await, all, 10, 0)
            .await
            .unwrap()
            .total,
        0
    );
    assert!(
        store
            .get_delivery(&visible(store, &w).await, &DeliveryId::generate())
            .await
            .unwrap()
            .is_none()
    );
    let detail = store
        .get_delivery(&visible(store, &w).await, &ids[0])
        .await
        .unwrap()
        .unwrap();
    assert!(detail.attempts.is_empty());
    assert_eq!(detail.delivery.created_at, 100);
}

async fn contract_requeue(store: &dyn Store) {
    let w = create(store, "alice", 1).await.id;
    let failed = ingest_one(store, "me", 100, &w, true).await;
    let delivered = ingest_one(store, "me", 200, &w, true).await;
    let held = ingest_one(store, "me", 300, &w, true).await;
    let fresh = ingest_one(store, "me", 400, &w, false).await;
    record(
        store,
        vec![
            report(
                &failed,
                &w,
                3,
                DeliveryStatus::Failed,
                Some(500),
                1000,
                None,
            ),
            report(
                &delivered,
                &w,
                1,
                DeliveryStatus::Delivered,
                Some(200),
                1000,
                None,
            ),
        ],
        LENIENT,
        1000,
    )
    .await;

    let only_failed = DeliveryFilter {
        status: Some(DeliveryStatus::Failed),
        ..DeliveryFilter::default()
    };
    assert_eq!(
        store
            .requeue(&visible(store, &w).await, only_failed, None, 2000)
            .await
            .unwrap(),
        1
    );
    let r = store
        .get_delivery(&visible(store, &w).await, &failed)
        .await
        .unwrap()
        .unwrap()
        .delivery;
    assert_eq!(
        (r.status, r.next_attempt_at, r.attempts, r.updated_at),
        (DeliveryStatus::Retrying, Some(2000), 3, 2000)
    );

    assert_eq!(
        store
            .requeue(
                &visible(store, &w).await,
                DeliveryFilter::default(),
                Some(delivered.clone()),
                2100
            )
            .await
            .unwrap(),
        1
    );
    let r = store
        .get_delivery(&visible(store, &w).await, &delivered)
        .await
        .unwrap()
        .unwrap()
        .delivery;
    assert_eq!(
        (r.status, r.next_attempt_at),
        (DeliveryStatus::Retrying, Some(2100))
    );

    // Everything not held by an instance right now.
    assert_eq!(
        store
            .requeue(
                &visible(store, &w).await,
                DeliveryFilter::default(),
                None,
                2200
            )
            .await
            .unwrap(),
        3
    );
    let r = store
        .get_delivery(&visible(store, &w).await, &fresh)
        .await
        .unwrap()
        .unwrap()
        .delivery;
    assert_eq!(
        (r.status, r.next_attempt_at),
        (DeliveryStatus::Pending, Some(2200)),
        "never attempted stays pending"
    );
    let r = store
        .get_delivery(&visible(store, &w).await, &held)
        .await
        .unwrap()
        .unwrap()
        .delivery;
    assert_eq!(
        r.next_attempt_at,
        Some(300),
        "a claimed delivery is left to its instance"
    );
    assert_eq!(
        store
            .requeue(
                &visible(store, &w).await,
                DeliveryFilter::default(),
                Some(DeliveryId::generate()),
                2300
            )
            .await
            .unwrap(),
        0
    );
}

async fn contract_delivery_stats(store: &dyn Store) {
    let alice = user("alice");
    let wa = create(store, "alice", 1).await.id;
    let wb = create(store, "bob", 2).await.id;
    let old = ingest_one(store, "me", 10, &wa, true).await;
    let ok = ingest_one(store, "me", 100, &wa, true).await;
    let bad = ingest_one(store, "me", 110, &wa, true).await;
    let _waiting = ingest_one(store, "me", 120, &wa, false).await;
    let retrying = ingest_one(store, "me", 130, &wa, true).await;
    let bobs = ingest_one(store, "me", 140, &wb, true).await;
    let mut slow = report(
        &bobs,
        &wb,
        1,
        DeliveryStatus::Delivered,
        Some(200),
        1000,
        None,
    );
    slow.attempt.duration_ms = 99;
    record(
        store,
        vec![
            report(
                &old,
                &wa,
                1,
                DeliveryStatus::Delivered,
                Some(200),
                1000,
                None,
            ),
            report(
                &ok,
                &wa,
                1,
                DeliveryStatus::Delivered,
                Some(200),
                1000,
                None,
            ),
            report(&bad, &wa, 3, DeliveryStatus::Failed, Some(500), 1000, None),
            report(
                &retrying,
                &wa,
                1,
                DeliveryStatus::Retrying,
                Some(500),
                1000,
                Some(9000),
            ),
            slow,
        ],
        LENIENT,
        1000,
    )
    .await;
    let mine = store
        .delivery_stats(StatsScope::Owner(Owner::User(&alice)), 50)
        .await
        .unwrap();
    assert_eq!(
        (mine.pending, mine.retrying, mine.delivered, mine.failed),
        (1, 1, 1, 1)
    );
    assert_eq!(
        (mine.latency.len(), mine.latency.percentile(0.5)),
        (1, Some(12))
    );
    let everyone = store
        .delivery_stats(StatsScope::Owner(Owner::Any), 0)
        .await
        .unwrap();
    assert_eq!(everyone.delivered, 3);
    assert_eq!(everyone.latency.len(), 3);
    assert_eq!(
        (
            everyone.latency.percentile(0.50),
            everyone.latency.percentile(0.95)
        ),
        (Some(12), Some(99))
    );
    let one = store
        .delivery_stats(StatsScope::Webhook(&visible(store, &wb).await), 0)
        .await
        .unwrap();
    assert_eq!((one.delivered, one.failed, one.pending), (1, 0, 0));
    // Another user's webhook: no proof of access, so no statistic to ask for.
    assert!(
        store
            .visible_webhook(&wb, Owner::User(&alice))
            .await
            .unwrap()
            .is_none(),
        "another user's webhook is not visible"
    );
}

const HOUR: i64 = 3_600_000;

/// What the deliveries of `webhook` created since `since` add up to,
/// counted one by one from the log.
async fn counted_from_the_log(
    store: &dyn Store,
    webhook: &WebhookId,
    since: i64,
    until: i64,
) -> DeliveryStats {
    let page = store
        .list_deliveries(
            &visible(store, webhook).await,
            DeliveryFilter {
                since: Some(since),
                until: Some(until),
                ..Default::default()
            },
            10_000,
            0,
        )
        .await
        .unwrap();
    let mut stats = DeliveryStats::default();
    for d in page.items {
        match d.status {
            DeliveryStatus::Pending => stats.pending += 1,
            DeliveryStatus::Retrying => stats.retrying += 1,
            DeliveryStatus::Failed => stats.failed += 1,
            DeliveryStatus::Delivered => {
                stats.delivered += 1;
                stats
                    .latency
                    .record(d.last_duration_ms.expect("a delivered one was timed"));
            }
        }
    }
    stats
}

fn figures(s: &DeliveryStats) -> (u64, u64, u64, u64, u64, Option<u32>, Option<u32>) {
    (
        s.pending,
        s.retrying,
        s.delivered,
        s.failed,
        s.latency.len(),
        s.latency.percentile(0.5),
        s.latency.percentile(0.95),
    )
}

/// The statistics of `webhook` (over several windows, and hour by hour as
/// the chart reads them) agree with its log.
async fn assert_stats_match_the_log(store: &dyn Store, webhook: &WebhookId, step: &str) {
    let seen = visible(store, webhook).await;
    for since in [0, HOUR / 2, HOUR, HOUR + 1, 2 * HOUR, 3 * HOUR] {
        let kept = store
            .delivery_stats(StatsScope::Webhook(&seen), since)
            .await
            .unwrap();
        let counted = counted_from_the_log(store, webhook, since, i64::MAX).await;
        assert_eq!(figures(&kept), figures(&counted), "{step}: since {since}");
    }
    let hours = store.delivery_buckets(&seen, 0, 1, 3).await.unwrap();
    assert_eq!(hours.len(), 3);
    for (h, kept) in hours.iter().enumerate() {
        let h = h as i64;
        let counted = counted_from_the_log(store, webhook, h * HOUR, (h + 1) * HOUR).await;
        assert_eq!(figures(kept), figures(&counted), "{step}: hour {h}");
    }
}

/// The kept hourly figures follow every change of a delivery's status:
/// results recorded, a replay of a delivered and of a failed delivery,
/// their new results, pruning, and deleting the webhook.
async fn contract_kept_statistics_agree_with_the_log(store: &dyn Store) {
    let w = create(store, "alice", 1).await.id;
    let other = create(store, "alice", 2).await.id;
    let at = |hour: i64, ms: i64| hour * HOUR + ms;
    let fast = ingest_one_made_at(store, at(0, 10), &w, true).await;
    let slow = ingest_one_made_at(store, at(0, 20), &w, true).await;
    let failed = ingest_one_made_at(store, at(0, 30), &w, true).await;
    let later = ingest_one_made_at(store, at(1, 10), &w, true).await;
    let retrying = ingest_one_made_at(store, at(1, 20), &w, true).await;
    let _waiting = ingest_one_made_at(store, at(2, 10), &w, false).await;
    let newest = ingest_one_made_at(store, at(2, 20), &w, true).await;
    let elsewhere = ingest_one_made_at(store, at(1, 30), &other, true).await;
    assert_stats_match_the_log(store, &w, "nothing finished").await;
    // Each report carries the delivery as the engine claimed it (made at
    // `created_at`, pending), as the engine's reports do.
    let created_at: std::collections::HashMap<&DeliveryId, i64> = [
        (&fast, at(0, 10)),
        (&slow, at(0, 20)),
        (&failed, at(0, 30)),
        (&later, at(1, 10)),
        (&retrying, at(1, 20)),
        (&newest, at(2, 20)),
        (&elsewhere, at(1, 30)),
    ]
    .into();
    let timed = |id: &DeliveryId, status, ms: u32| {
        let code = if status == DeliveryStatus::Delivered {
            200
        } else {
            500
        };
        let mut r = report(id, &w, 1, status, Some(code), 1000, None);
        r.claimed = Claimed::new_delivery(created_at[id]);
        r.attempt.duration_ms = ms;
        r
    };
    let mut retry = timed(&retrying, DeliveryStatus::Retrying, 70);
    retry.next_attempt_at = Some(9_000_000);
    let mut elsewhere_done = timed(&elsewhere, DeliveryStatus::Delivered, 5);
    elsewhere_done.webhook_id = other.clone();
    // A claim that no longer matches the row (made in another hour, or
    // already retrying) must count under what the row says.
    let mut stale_hour = timed(&slow, DeliveryStatus::Delivered, 1_234);
    stale_hour.claimed.created_at = at(5, 0);
    let mut stale_status = timed(&later, DeliveryStatus::Delivered, 99);
    stale_status.claimed.status = DeliveryStatus::Retrying;
    record(
        store,
        vec![
            timed(&fast, DeliveryStatus::Delivered, 7),
            stale_hour,
            timed(&failed, DeliveryStatus::Failed, 30_000),
            stale_status,
            retry,
            timed(&newest, DeliveryStatus::Delivered, 250),
            elsewhere_done,
        ],
        LENIENT,
        2000,
    )
    .await;
    let kept = store
        .delivery_stats(StatsScope::Webhook(&visible(store, &w).await), 0)
        .await
        .unwrap();
    assert_eq!(
        (kept.pending, kept.retrying, kept.delivered, kept.failed),
        (1, 1, 4, 1),
        "the finished ones are counted once"
    );
    assert_stats_match_the_log(store, &w, "results recorded").await;
    // A result reported again (a retried batch) is not counted twice.
    record(
        store,
        vec![timed(&fast, DeliveryStatus::Delivered, 7)],
        LENIENT,
        2100,
    )
    .await;
    assert_stats_match_the_log(store, &w, "a result reported twice").await;

    let seen = visible(store, &w).await;
    for replayed in [&slow, &failed] {
        let n = store
            .requeue(
                &seen,
                DeliveryFilter::default(),
                Some(replayed.clone()),
                3000,
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert_stats_match_the_log(store, &w, "replayed").await;
    }
    let due = store.claim_due("me", 4000, 10, vec![]).await.unwrap();
    assert!(due.iter().any(|d| d.id == slow) && due.iter().any(|d| d.id == failed));
    for d in &due {
        assert_eq!(d.claimed.created_at, created_at[&d.id], "{}", d.id);
    }
    let second = |id: &DeliveryId, status, ms| {
        let mut r = timed(id, status, ms);
        r.attempt.attempt = 2;
        r.claimed = due.iter().find(|d| &d.id == id).expect("claimed").claimed;
        r
    };
    let reports = vec![
        second(&slow, DeliveryStatus::Failed, 40),
        second(&failed, DeliveryStatus::Delivered, 3),
    ];
    record(store, reports, LENIENT, 5000).await;
    assert_stats_match_the_log(store, &w, "replays finished").await;

    // Bulk replay of everything failed since the start.
    let n = store
        .requeue(
            &seen,
            DeliveryFilter {
                status: Some(DeliveryStatus::Failed),
                ..Default::default()
            },
            None,
            6000,
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_stats_match_the_log(store, &w, "failed ones replayed").await;

    // Everything finished before hour 1 goes.
    while store.prune(HOUR).await.unwrap() > 0 {}
    assert_stats_match_the_log(store, &w, "pruned").await;
    let old = counted_from_the_log(store, &w, 0, HOUR).await;
    assert_eq!((old.delivered, old.failed), (0, 0), "hour 0 was pruned");

    assert!(store.delete_webhook(&w, Owner::Any).await.unwrap());
    let alices = store
        .delivery_stats(StatsScope::Owner(Owner::User(&user("alice"))), 0)
        .await
        .unwrap();
    assert_eq!(
        figures(&alices),
        figures(&counted_from_the_log(store, &other, 0, i64::MAX).await),
        "only the remaining webhook's deliveries count"
    );
    let everyone = store
        .delivery_stats(StatsScope::Owner(Owner::Any), 0)
        .await
        .unwrap();
    assert_eq!((everyone.delivered, everyone.latency.len()), (1, 1));
    // A webhook made again afterwards starts from nothing.
    let again = create(store, "alice", 3).await.id;
    let fresh = store
        .delivery_stats(StatsScope::Webhook(&visible(store, &again).await), 0)
        .await
        .unwrap();
    assert_eq!(figures(&fresh), figures(&DeliveryStats::default()));
}

/// The platform's figures per bucket sum every user's webhooks: events
/// ingested (with or without deliveries), deliveries by status, and each
/// bucket's own latency; nothing outside the buckets counts.
async fn contract_platform_buckets_sum_every_users_webhooks(store: &dyn Store) {
    let alices = create(store, "alice", 1).await.id;
    let bobs = create(store, "bob", 2).await.id;
    let at = |hour: i64, ms: i64| hour * HOUR + ms;
    let ingest = |at: i64, targets: Vec<(WebhookId, bool)>| async move {
        let targets: Vec<(&WebhookId, bool)> = targets.iter().map(|(w, c)| (w, *c)).collect();
        let (item, ids) = event(at, "user.created", &targets);
        let outcomes = store.ingest("me", Arc::new(vec![item])).await.unwrap();
        assert_eq!(outcomes, vec![IngestOutcome::Created]);
        ids
    };
    // Hour 0: one event to both users (delivered in 7 ms to alice, failed
    // for bob) and one event nobody subscribed to.
    let both = ingest(
        at(0, 10),
        vec![(alices.clone(), true), (bobs.clone(), true)],
    )
    .await;
    ingest(at(0, 20), vec![]).await;
    // And one sent three times, twice in one call: counted once.
    let (thrice, _) = event(at(0, 30), "user.created", &[]);
    let outcomes = store
        .ingest("me", Arc::new(vec![thrice.clone(), thrice.clone()]))
        .await
        .unwrap();
    let repeat = IngestOutcome::Duplicate { deliveries: vec![] };
    assert_eq!(outcomes, vec![IngestOutcome::Created, repeat.clone()]);
    let outcomes = store.ingest("me", Arc::new(vec![thrice])).await.unwrap();
    assert_eq!(outcomes, vec![repeat]);
    // Hour 1: alice's deliveries in 99 and 250 ms, and one retrying.
    let quick = ingest(at(1, 10), vec![(alices.clone(), true)]).await;
    let slow = ingest(at(1, 20), vec![(alices.clone(), true)]).await;
    let retrying = ingest(at(1, 30), vec![(alices.clone(), true)]).await;
    // Hour 2: bob's delivery waiting.
    ingest(at(2, 10), vec![(bobs.clone(), false)]).await;
    // Hour 5: outside the buckets asked for.
    ingest(at(5, 10), vec![(alices.clone(), false)]).await;
    let timed = |id: &DeliveryId, webhook: &WebhookId, status, ms: u32| {
        let code = if status == DeliveryStatus::Delivered {
            200
        } else {
            500
        };
        let mut r = report(id, webhook, 1, status, Some(code), 1000, None);
        r.attempt.duration_ms = ms;
        r
    };
    let mut retry = timed(&retrying[0], &alices, DeliveryStatus::Retrying, 40);
    retry.next_attempt_at = Some(9_000_000);
    record(
        store,
        vec![
            timed(&both[0], &alices, DeliveryStatus::Delivered, 7),
            timed(&both[1], &bobs, DeliveryStatus::Failed, 30),
            timed(&quick[0], &alices, DeliveryStatus::Delivered, 99),
            timed(&slow[0], &alices, DeliveryStatus::Delivered, 250),
            retry,
        ],
        LENIENT,
        2000,
    )
    .await;

    let hours = store.platform_buckets(0, 1, 3).await.unwrap();
    let seen: Vec<_> = hours
        .iter()
        .map(|b| (b.events, figures(&b.deliveries)))
        .collect();
    let mut expected_hour_1 = DeliveryStats::default();
    for ms in [99, 250] {
        expected_hour_1.latency.record(ms);
    }
    let (p50, p95) = (
        expected_hour_1.latency.percentile(0.5),
        expected_hour_1.latency.percentile(0.95),
    );
    assert_eq!(
        seen,
        vec![
            (3, (0, 0, 1, 1, 1, Some(7), Some(7))),
            (3, (0, 1, 2, 0, 2, p50, p95)),
            (1, (1, 0, 0, 0, 0, None, None)),
        ],
        "hour by hour: events, then (pending, retrying, delivered, failed, timed, p50, p95)"
    );
    assert!(p50 < p95, "two latencies apart: {p50:?} {p95:?}");
    // Each bucket is the sum of every webhook's own figures.
    let per_webhook = [
        store
            .delivery_buckets(&visible(store, &alices).await, 0, 1, 3)
            .await
            .unwrap(),
        store
            .delivery_buckets(&visible(store, &bobs).await, 0, 1, 3)
            .await
            .unwrap(),
    ];
    for (h, bucket) in hours.iter().enumerate() {
        let mut sum = DeliveryStats::default();
        for webhook in &per_webhook {
            let one = &webhook[h];
            sum.pending += one.pending;
            sum.retrying += one.retrying;
            sum.delivered += one.delivered;
            sum.failed += one.failed;
            sum.latency.merge(&one.latency);
        }
        assert_eq!(figures(&bucket.deliveries), figures(&sum), "hour {h}");
    }
    // Wider buckets: hours 0-1 and 2-3.
    let wide = store.platform_buckets(0, 2, 2).await.unwrap();
    let seen: Vec<_> = wide
        .iter()
        .map(|b| {
            let d = &b.deliveries;
            (b.events, d.pending, d.retrying, d.delivered, d.failed)
        })
        .collect();
    assert_eq!(seen, vec![(6, 0, 1, 3, 1), (1, 1, 0, 0, 0)]);
    // Hour 5 alone, and nothing from a deleted webhook's deliveries.
    assert!(store.delete_webhook(&alices, Owner::Any).await.unwrap());
    let later = store.platform_buckets(5, 1, 1).await.unwrap();
    assert_eq!(
        (later[0].events, figures(&later[0].deliveries)),
        (1, (0, 0, 0, 0, 0, None, None)),
        "the event stays, its deleted webhook's delivery goes"
    );
}

/// Like [`ingest_one`], with a delivery id generated at `at` as well: a
/// delivery's age, for pruning, is that of its id.
async fn ingest_one_made_at(
    store: &dyn Store,
    at: i64,
    webhook: &WebhookId,
    claimed: bool,
) -> DeliveryId {
    let (mut item, _) = event(at, "user.created", &[(webhook, claimed)]);
    let id = DeliveryId::generate_at(at);
    item.deliveries[0].id = id.clone();
    let outcomes = store
        .ingest("me", Arc::new(vec![item]))
        .await
        .expect("ingest");
    assert_eq!(outcomes, vec![IngestOutcome::Created]);
    id
}

async fn contract_prune(store: &dyn Store) {
    let w = create(store, "alice", 1).await.id;
    let old_done = ingest_one_made_at(store, 100, &w, true).await;
    let old_failed = ingest_one_made_at(store, 110, &w, true).await;
    let old_waiting = ingest_one_made_at(store, 120, &w, false).await;
    let new_done = ingest_one_made_at(store, 5000, &w, true).await;
    // Made now, so young however old its stored time says it is.
    let recent_id = ingest_one(store, "me", 200, &w, true).await;
    let (orphan, _) = event(130, "user.created", &[]);
    store.ingest("me", Arc::new(vec![orphan])).await.unwrap();
    record(
        store,
        vec![
            report(
                &old_done,
                &w,
                1,
                DeliveryStatus::Delivered,
                Some(200),
                200,
                None,
            ),
            report(
                &old_failed,
                &w,
                3,
                DeliveryStatus::Failed,
                Some(500),
                200,
                None,
            ),
            report(
                &new_done,
                &w,
                1,
                DeliveryStatus::Delivered,
                Some(200),
                5100,
                None,
            ),
            report(
                &recent_id,
                &w,
                1,
                DeliveryStatus::Delivered,
                Some(200),
                300,
                None,
            ),
        ],
        LENIENT,
        5200,
    )
    .await;
    let mut removed = 0;
    loop {
        let n = store.prune(1000).await.unwrap();
        if n == 0 {
            break;
        }
        removed += n;
    }
    // Two deliveries, their two events and the orphan event.
    assert_eq!(removed, 5);
    assert!(
        store
            .get_delivery(&visible(store, &w).await, &old_done)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get_delivery(&visible(store, &w).await, &old_failed)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get_delivery(&visible(store, &w).await, &old_waiting)
            .await
            .unwrap()
            .is_some(),
        "unfinished work is kept"
    );
    assert!(
        store
            .get_delivery(&visible(store, &w).await, &new_done)
            .await
            .unwrap()
            .is_some(),
        "recent logs are kept"
    );
    assert!(
        store
            .get_delivery(&visible(store, &w).await, &recent_id)
            .await
            .unwrap()
            .is_some(),
        "a delivery's age is its id's, not the time stored with its event"
    );
    assert_eq!(
        store
            .list_deliveries(&visible(store, &w).await, DeliveryFilter::default(), 10, 0)
            .await
            .unwrap()
            .total,
        3
    );
}

async fn contract_delete_removes_deliveries(store: &dyn Store) {
    let w = create(store, "alice", 1).await.id;
    let d = ingest_one(store, "me", 100, &w, false).await;
    // Taken before the deletion: the queries of a webhook deleted since find nothing.
    let proof = visible(store, &w).await;
    assert!(store.delete_webhook(&w, Owner::Any).await.unwrap());
    assert!(store.get_delivery(&proof, &d).await.unwrap().is_none());
    assert_eq!(
        store
            .list_deliveries(&proof, DeliveryFilter::default(), 10, 0)
            .await
            .unwrap()
            .total,
        0
    );
    assert!(
        store
            .claim_due("me", 10_000, 10, vec![])
            .await
            .unwrap()
            .is_empty()
    );
}

/// Events for a webhook deleted since the routing table was read are stored
/// without its deliveries, and the outcome says which webhooks got none, so
/// that the engine sends nothing there. Both a single event and a batch
/// large enough for PostgreSQL's two-statement form.
/// Reading webhooks back by id returns those that exist, whoever owns them.
async fn contract_webhooks_by_id_returns_those_that_exist(store: &dyn Store) {
    let alice = create(store, "alice", 1).await.id;
    let gone = create(store, "alice", 2).await.id;
    let bob = create(store, "bob", 3).await.id;
    assert!(store.delete_webhook(&gone, Owner::Any).await.unwrap());
    let never = WebhookId::generate();
    let found = store
        .webhooks_by_id(&[alice.clone(), gone, bob.clone(), never])
        .await
        .expect("webhooks by id");
    let mut ids: Vec<_> = found.iter().map(|w| w.id.clone()).collect();
    ids.sort();
    let mut expected = vec![alice, bob];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(store.webhooks_by_id(&[]).await.unwrap().is_empty());
}

async fn contract_ingest_names_the_deleted_webhooks_it_skipped(store: &dyn Store) {
    let kept = create(store, "alice", 1).await.id;
    let gone = create(store, "alice", 2).await.id;
    let gone_proof = visible(store, &gone).await;
    assert!(store.delete_webhook(&gone, Owner::Any).await.unwrap());

    let (item, ids) = event(100, "user.created", &[(&kept, true), (&gone, true)]);
    let outcomes = store
        .ingest("me", Arc::new(vec![item]))
        .await
        .expect("ingest");
    assert_eq!(
        outcomes,
        vec![IngestOutcome::CreatedWithout {
            skipped: vec![gone.clone()]
        }]
    );
    assert!(
        store
            .get_delivery(&visible(store, &kept).await, &ids[0])
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .get_delivery(&gone_proof, &ids[1])
            .await
            .unwrap()
            .is_none()
    );

    let batch: Vec<IngestItem> = (0..100)
        .map(|i| event(200 + i, "user.created", &[(&gone, false), (&kept, false)]).0)
        .collect();
    let outcomes = store.ingest("me", Arc::new(batch)).await.expect("ingest");
    assert_eq!(outcomes.len(), 100);
    for outcome in outcomes {
        assert_eq!(
            outcome,
            IngestOutcome::CreatedWithout {
                skipped: vec![gone.clone()]
            }
        );
    }
    // A webhook that exists is not reported.
    let (item, _) = event(400, "user.created", &[(&kept, false)]);
    let outcomes = store.ingest("me", Arc::new(vec![item])).await.unwrap();
    assert_eq!(outcomes, vec![IngestOutcome::Created]);
    assert_eq!(
        store
            .list_deliveries(
                &visible(store, &kept).await,
                DeliveryFilter::default(),
                1,
                0
            )
            .await
            .unwrap()
            .total,
        102
    );
}

/// Pruning a delivery and deleting a webhook take the attempts (and the
/// deliveries) with them: neither store has foreign keys that would cascade.
async fn contract_children_go_with_their_parents(f: &Fixture) {
    let store = f.store();
    let kept_hook = create(store, "alice", 1).await.id;
    let doomed_hook = create(store, "alice", 2).await.id;
    let old = ingest_one_made_at(store, 100, &kept_hook, true).await;
    let young = ingest_one_made_at(store, 5000, &kept_hook, true).await;
    let other = ingest_one_made_at(store, 5000, &doomed_hook, true).await;
    let mut reports = Vec::new();
    for (delivery, hook) in [
        (&old, &kept_hook),
        (&young, &kept_hook),
        (&other, &doomed_hook),
    ] {
        reports.push(report(
            delivery,
            hook,
            1,
            DeliveryStatus::Retrying,
            Some(500),
            5100,
            Some(5200),
        ));
        reports.push(report(
            delivery,
            hook,
            2,
            DeliveryStatus::Delivered,
            Some(200),
            5200,
            None,
        ));
    }
    record(store, reports, LENIENT, 5300).await;
    assert_eq!(f.count("SELECT COUNT(*) FROM attempts").await, 6);

    while store.prune(1000).await.unwrap() > 0 {}
    assert!(
        store
            .get_delivery(&visible(store, &kept_hook).await, &old)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        f.count("SELECT COUNT(*) FROM attempts").await,
        4,
        "the pruned delivery's two attempts went with it"
    );

    assert!(
        store
            .delete_webhook(&doomed_hook, Owner::Any)
            .await
            .unwrap()
    );
    assert_eq!(
        f.count("SELECT COUNT(*) FROM attempts").await,
        2,
        "the deleted webhook's attempts went with it"
    );
    assert_eq!(f.count("SELECT COUNT(*) FROM deliveries").await, 1);
    assert_eq!(f.orphans().await, (0, 0));
    assert_eq!(
        store
            .get_delivery(&visible(store, &kept_hook).await, &young)
            .await
            .unwrap()
            .map(|d| d.attempts.len()),
        Some(2)
    );
}

/// A webhook deleted while its events are ingested and its attempts
/// recorded leaves nothing behind: every write either lands before the
/// deletion (and is deleted with the webhook) or finds the webhook gone.
async fn contract_deleting_while_writing_leaves_no_orphans(f: &Fixture) {
    let store = f.store();
    for round in 0..4i64 {
        let hook = create(store, "alice", round).await.id;
        let mut first = Vec::new();
        for i in 0..20 {
            first.push(ingest_one(store, "me", 100 + i, &hook, true).await);
        }
        let ingesting = async {
            for i in 0..10 {
                let (item, _) = event(200 + i, "user.created", &[(&hook, true)]);
                // A webhook gone before this commit gets no delivery; the event is kept.
                store
                    .ingest("me", Arc::new(vec![item]))
                    .await
                    .expect("ingest");
                tokio::task::yield_now().await;
            }
        };
        let recording = async {
            for pair in first.chunks(2) {
                let reports = pair
                    .iter()
                    .map(|d| report(d, &hook, 1, DeliveryStatus::Delivered, Some(200), 300, None))
                    .collect();
                store
                    .record_attempts("me", Arc::new(reports), LENIENT, 400)
                    .await
                    .expect("record attempts");
                tokio::task::yield_now().await;
            }
        };
        // Taken before the deletion: the log of a webhook deleted since is empty.
        let proof = visible(store, &hook).await;
        let deleting = async {
            for _ in 0..round * 2 {
                tokio::task::yield_now().await;
            }
            assert!(store.delete_webhook(&hook, Owner::Any).await.unwrap());
        };
        tokio::join!(ingesting, recording, deleting);
        assert_eq!(
            f.orphans().await,
            (0, 0),
            "round {round}: orphan attempts, orphan deliveries"
        );
        assert_eq!(
            store
                .list_deliveries(&proof, DeliveryFilter::default(), 10, 0)
                .await
                .unwrap()
                .total,
            0
        );
    }
}

/// The proof of access the delivery queries take is given only to a caller
/// who may see the webhook: its owner, or an admin.
async fn contract_visible_webhook_is_the_ownership_check(store: &dyn Store) {
    let (alice, bob) = (user("alice"), user("bob"));
    let hook = create(store, "alice", 1).await.id;
    for (owner, visible) in [
        (Owner::User(&alice), true),
        (Owner::Any, true),
        (Owner::User(&bob), false),
    ] {
        let proof = store.visible_webhook(&hook, owner).await.unwrap();
        assert_eq!(
            proof.map(|v| v.id.clone()),
            visible.then(|| hook.clone()),
            "{owner:?}"
        );
    }
    assert!(
        store
            .visible_webhook(&WebhookId::generate(), Owner::Any)
            .await
            .unwrap()
            .is_none(),
        "a webhook that does not exist"
    );
}

/// A webhook's delivery controls are stored whole, and an update changes
/// only the controls it names (a cleared one goes, the others stay).
async fn contract_delivery_controls_stored_and_merged(store: &dyn Store) {
    let alice = user("alice");
    let mut new = new_webhook("alice", 1000);
    new.controls = DeliveryControls {
        filter: Some(
            PayloadFilter::parse(serde_json::json!({"data": {"plan": {"$in": ["pro"]}}})).unwrap(),
        ),
        rate_limit_per_second: Some(50),
        retry_schedule: Some(RetrySchedule::parse("5s,1m").unwrap()),
        timeout: Some(Duration::from_millis(2500)),
        ordering: Some(DeliveryOrder::Fifo(OrderingKey::UserId)),
    };
    let created = store.create_webhook(new.clone(), 10).await.unwrap();
    assert_eq!(created.controls, new.controls);
    let read = store
        .get_webhook(&created.id, Owner::User(&alice))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.controls, new.controls);

    let patch = WebhookPatch {
        now: 2000,
        controls: ControlsPatch {
            rate_limit_per_second: Some(None),
            timeout: Some(Some(Duration::from_secs(1))),
            ..ControlsPatch::default()
        },
        ..WebhookPatch::default()
    };
    let updated = store
        .update_webhook(&created.id, Owner::User(&alice), patch)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.controls.rate_limit_per_second, None);
    assert_eq!(updated.controls.timeout, Some(Duration::from_secs(1)));
    assert_eq!(updated.controls.filter, new.controls.filter);
    assert_eq!(updated.controls.retry_schedule, new.controls.retry_schedule);

    // A patch without controls leaves them; clearing every one empties them.
    let untouched = store
        .update_webhook(
            &created.id,
            Owner::Any,
            WebhookPatch {
                description: Some(None),
                now: 3000,
                ..WebhookPatch::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(untouched.controls, updated.controls);
    let cleared = store
        .update_webhook(
            &created.id,
            Owner::Any,
            WebhookPatch {
                now: 4000,
                controls: ControlsPatch {
                    filter: Some(None),
                    rate_limit_per_second: Some(None),
                    retry_schedule: Some(None),
                    timeout: Some(None),
                    ordering: Some(None),
                },
                ..WebhookPatch::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(cleared.controls.is_empty());
    let all = all_webhooks(store).await;
    assert!(all.iter().all(|w| w.controls.is_empty()));
}

/// The instances alive on a store, by which a rate limit is shared: every
/// instance that beat within the time to live on PostgreSQL; the one
/// process that owns the file on the embedded store.
async fn contract_live_instances(f: &Fixture) {
    let store = f.store();
    store.heartbeat("i-one").await.unwrap();
    store.heartbeat("i-two").await.unwrap();
    let expected = match f.backend {
        Backend::Sqlite(_) => 1,
        Backend::Postgres(_) => 2,
    };
    assert_eq!(store.live_instances().await.unwrap(), expected);
}

async fn contract_health(store: &dyn Store) {
    store.health().await.expect("a working store is healthy");
}

/// Polls futures concurrently on the current task (no extra dependency).
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut results: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results
        .into_iter()
        .map(|r| r.expect("every future finished"))
        .collect()
}

/// A webhook's custom headers and auth read back as written, are never
/// stored in plaintext, are kept by a patch that does not name them and
/// replaced whole by one that does.
async fn contract_endpoint_options_sealed_and_replaced_whole(f: &Fixture) {
    use webhook_domain::endpoint::{CustomHeaders, EndpointAuth, EndpointOptions};
    let store = f.store();
    let options = EndpointOptions::new(
        CustomHeaders::parse(vec![("X-Api-Key".into(), "plain-api-key-4411".into())]).unwrap(),
        Some(EndpointAuth::basic("alice".into(), "plain-password-4412".into()).unwrap()),
    )
    .unwrap();
    let mut new = new_webhook("alice", 1000);
    new.endpoint = options.clone();
    let created = store.create_webhook(new, 10).await.unwrap();
    assert_eq!(created.endpoint, options);
    let plain = create(store, "bob", 1000).await;
    assert!(plain.endpoint.is_empty());
    let raw = f.raw_webhook_storage().await;
    for secret in ["plain-api-key-4411", "plain-password-4412", "X-Api-Key"] {
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} stored in plaintext"
        );
    }
    let kept = store
        .update_webhook(
            &created.id,
            Owner::Any,
            WebhookPatch {
                description: Some(None),
                now: 2000,
                ..WebhookPatch::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.endpoint, options);
    let bearer = EndpointOptions::new(
        CustomHeaders::default(),
        Some(EndpointAuth::bearer("t".into()).unwrap()),
    )
    .unwrap();
    let replaced = store
        .update_webhook(
            &created.id,
            Owner::Any,
            WebhookPatch {
                endpoint: Some(bearer.clone()),
                now: 3000,
                ..WebhookPatch::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replaced.endpoint, bearer);
    let cleared = store
        .update_webhook(
            &created.id,
            Owner::Any,
            WebhookPatch {
                endpoint: Some(EndpointOptions::default()),
                now: 4000,
                ..WebhookPatch::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(cleared.endpoint.is_empty());
    let all = all_webhooks(store).await;
    assert!(all.iter().all(|w| w.endpoint.is_empty()));
}

// ---------------------------------------------------------------- runners

/// Runs each named contract against the embedded store and against
/// PostgreSQL (listed as ignored when no server is reachable).
macro_rules! contracts {
    (stores: $($store_contract:ident),* ; fixtures: $($fixture_contract:ident),* $(,)?) => {
        fn contract_tests() -> Vec<Test> {
            vec![
                $(
                    Test::new(concat!("sqlite::", stringify!($store_contract)), || Box::pin(async {
                        let fixture = Fixture::sqlite();
                        $store_contract(fixture.store()).await;
                        DONE
                    })).multi_thread(2),
                )*
                $(
                    Test::new(concat!("sqlite::", stringify!($fixture_contract)), || Box::pin(async {
                        let fixture = Fixture::sqlite();
                        $fixture_contract(&fixture).await;
                        DONE
                    })).multi_thread(2),
                )*
                $(
                    Test::new(concat!("postgres::", stringify!($store_contract)), || Box::pin(async {
                        let fixture = match Fixture::postgres().await {
                            Ok(fixture) => fixture,
                            Err(why) => return skip(why),
                        };
                        $store_contract(fixture.store()).await;
                        DONE
                    })).multi_thread(2),
                )*
                $(
                    Test::new(concat!("postgres::", stringify!($fixture_contract)), || Box::pin(async {
                        let fixture = match Fixture::postgres().await {
                            Ok(fixture) => fixture,
                            Err(why) => return skip(why),
                        };
                        $fixture_contract(&fixture).await;
                        DONE
                    })).multi_thread(2),
                )*
            ]
        }
    };
}

contracts!(
    stores:
        contract_health,
        contract_delivery_controls_stored_and_merged,
        contract_visible_webhook_is_the_ownership_check,
        contract_webhook_crud_and_ownership,
        contract_webhook_cap,
        contract_each_webhook_hands_every_webhook_once,
        contract_rotation_keeps_previous_secret,
        contract_ingest_and_duplicate_ids,
        contract_ingest_large_call,
        contract_claim_due_order_limit_exclude_inactive,
        contract_fifo_claims_one_head_per_order,
        contract_release,
        contract_release_many,
        contract_recover_claims_of_dead_instances,
        contract_two_owners_never_claim_the_same,
        contract_record_attempts_transitions,
        contract_auto_disable_after_exhausted_deliveries,
        contract_disable_on_gone,
        contract_list_and_get_deliveries,
        contract_requeue,
        contract_delivery_stats,
        contract_log_total_is_counted_up_to_its_cap,
        contract_kept_statistics_agree_with_the_log,
        contract_platform_buckets_sum_every_users_webhooks,
        contract_prune,
        contract_delete_removes_deliveries,
        contract_ingest_names_the_deleted_webhooks_it_skipped,
        contract_webhooks_by_id_returns_those_that_exist,
        contract_reports_count_only_for_their_claims;
    fixtures:
        contract_live_instances,
        contract_secret_not_in_plaintext,
        contract_children_go_with_their_parents,
        contract_deleting_while_writing_leaves_no_orphans,
        contract_endpoint_options_sealed_and_replaced_whole,
);

// ------------------------------------------------- schema versions

/// A database that records a migration this release does not know was
/// written by a newer release: both stores refuse it by type, naming it,
/// instead of running on a schema they cannot know.
mod schema_versions {
    use super::*;

    pub async fn sqlite_refuses_a_database_of_a_newer_release() -> Ran {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(dir.path(), cipher()).expect("open"));
        let db = dir.path().join("webhooks.db");
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)",
                [],
            )
            .unwrap();
        match SqliteStore::open(dir.path(), cipher()) {
            Err(StoreError::Corrupt(m)) => {
                assert!(m.contains(&db.display().to_string()), "{m}");
                assert!(m.contains("newer release"), "{m}");
            }
            Err(other) => panic!("not refused as corrupt: {other}"),
            Ok(_) => panic!("a database of a newer release was opened"),
        }
        DONE
    }

    pub async fn postgres_refuses_a_database_of_a_newer_release() -> Ran {
        let db = match TestDatabase::fresh().await {
            Ok(v) => v,
            Err(why) => return skip(why),
        };
        drop(
            PostgresStore::connect(&db.url, PostgresOptions::default(), cipher())
                .await
                .expect("connect"),
        );
        crate::postgres_support::connect(&db.url)
            .await
            .expect("connect")
            .execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)",
                &[],
            )
            .await
            .unwrap();
        match PostgresStore::connect(&db.url, PostgresOptions::default(), cipher()).await {
            Err(StoreError::Corrupt(m)) => assert!(m.contains("newer release"), "{m}"),
            Err(other) => panic!("not refused as corrupt: {other}"),
            Ok(_) => panic!("a database of a newer release was opened"),
        }
        DONE
    }
}

// ------------------------------------------------- kept statistics of existing deliveries

/// The migration that brings in the kept statistics (embedded 7,
/// PostgreSQL 9) fills them from the deliveries a store already holds: a
/// store is built at the version before, given delivered (with durations
/// across the latency buckets and one without), failed, pending and
/// retrying deliveries in three hours, and opened by this release; its
/// statistics then agree with its log.
mod kept_statistics_backfill {
    use super::*;

    /// The embedded store's migrations before its kept statistics.
    const SQLITE_BEFORE: [&str; 6] = [
        include_str!("../../migrations/sqlite/0001_init.sql"),
        include_str!("../../migrations/sqlite/0002_compact_hot_tables.sql"),
        include_str!("../../migrations/sqlite/0003_due_by_webhook.sql"),
        include_str!("../../migrations/sqlite/0004_delivery_controls.sql"),
        include_str!("../../migrations/sqlite/0005_endpoint_options.sql"),
        include_str!("../../migrations/sqlite/0006_fifo_ordering.sql"),
    ];

    /// PostgreSQL's migrations before its kept statistics.
    const POSTGRES_BEFORE: [&str; 8] = [
        include_str!("../../migrations/postgres/0001_init.sql"),
        include_str!("../../migrations/postgres/0002_due_by_webhook.sql"),
        include_str!("../../migrations/postgres/0003_deliveries_without_event_key.sql"),
        include_str!("../../migrations/postgres/0004_no_finished_index.sql"),
        include_str!("../../migrations/postgres/0005_parent_keys_by_hand.sql"),
        include_str!("../../migrations/postgres/0006_delivery_controls.sql"),
        include_str!("../../migrations/postgres/0007_endpoint_options.sql"),
        include_str!("../../migrations/postgres/0008_fifo_ordering.sql"),
    ];

    /// A delivery stored before the migration.
    struct OldDelivery {
        /// Index into the webhooks of [`OldStore`].
        webhook: usize,
        created_at: i64,
        status: &'static str,
        attempts: i32,
        duration_ms: Option<i32>,
    }

    /// The deliveries: the first webhook's are all timed when delivered, so
    /// its log gives their latencies; the second has one delivered without
    /// a recorded duration (a row older than the duration column's use).
    fn old_deliveries() -> Vec<OldDelivery> {
        let d = |webhook, hour: i64, ms, status, attempts, duration_ms| OldDelivery {
            webhook,
            created_at: hour * HOUR + ms,
            status,
            attempts,
            duration_ms,
        };
        vec![
            d(0, 0, 5, "delivered", 1, Some(0)),
            d(0, 0, 10, "delivered", 1, Some(31)),
            d(0, 0, 20, "delivered", 2, Some(32)),
            d(0, 0, 30, "failed", 5, Some(30_000)),
            d(0, 0, HOUR / 2 + 1, "delivered", 1, Some(1_234)),
            d(0, 0, HOUR / 2 + 2, "retrying", 2, Some(70)),
            d(0, 1, 0, "delivered", 1, Some(99)),
            d(0, 1, 1, "delivered", 1, Some(5_000_000)),
            d(0, 1, 2, "pending", 0, None),
            d(0, 1, HOUR - 1, "failed", 3, Some(7)),
            d(0, 2, 10, "delivered", 1, Some(250)),
            d(0, 2, 20, "retrying", 1, Some(12)),
            d(0, 2, 30, "pending", 0, None),
            d(0, 2, 40, "pending", 0, None),
            d(1, 0, 50, "delivered", 1, None),
            d(1, 1, 50, "delivered", 1, Some(3)),
            d(1, 1, 60, "failed", 1, Some(3)),
            d(1, 2, 60, "pending", 0, None),
        ]
    }

    /// What is written before the migration: two webhooks of alice and their
    /// deliveries, one event each.
    struct OldStore {
        webhooks: [WebhookId; 2],
        deliveries: Vec<OldDelivery>,
    }

    impl OldStore {
        fn new() -> Self {
            OldStore {
                webhooks: [WebhookId::generate(), WebhookId::generate()],
                deliveries: old_deliveries(),
            }
        }

        /// The second webhook's figures since the start, written out: one
        /// of its delivered deliveries has no duration to read from the log.
        fn check_untimed(&self, kept: &DeliveryStats) {
            assert_eq!(
                (kept.pending, kept.retrying, kept.delivered, kept.failed),
                (1, 0, 2, 1)
            );
            assert_eq!(kept.latency.len(), 1, "only the timed one has a latency");
        }
    }

    /// The statistics of the reopened store against its log.
    async fn check(store: &dyn Store, old: &OldStore) {
        let [first, second] = &old.webhooks;
        assert_stats_match_the_log(store, first, "filled by the migration").await;
        let kept = store
            .delivery_stats(StatsScope::Webhook(&visible(store, second).await), 0)
            .await
            .unwrap();
        old.check_untimed(&kept);
        let alices = store
            .delivery_stats(StatsScope::Owner(Owner::User(&user("alice"))), 0)
            .await
            .unwrap();
        let counted = counted_from_the_log(store, first, 0, i64::MAX).await;
        assert_eq!(
            (
                alices.pending,
                alices.retrying,
                alices.delivered,
                alices.failed
            ),
            (
                counted.pending + kept.pending,
                counted.retrying + kept.retrying,
                counted.delivered + kept.delivered,
                counted.failed + kept.failed
            ),
            "the owner's totals are the two webhooks'"
        );
        // The operator's events per hour: one stored with each old delivery.
        let events: Vec<u64> = store
            .platform_buckets(0, 1, 3)
            .await
            .unwrap()
            .iter()
            .map(|b| b.events)
            .collect();
        let stored: Vec<u64> = (0..3)
            .map(|hour| {
                let of_hour = old
                    .deliveries
                    .iter()
                    .filter(|d| d.created_at / HOUR == hour);
                of_hour.count() as u64
            })
            .collect();
        assert_eq!(
            events, stored,
            "events per hour, counted from the old store"
        );
    }

    pub async fn sqlite_fills_kept_statistics_from_existing_deliveries() -> Ran {
        let dir = tempfile::tempdir().unwrap();
        let old = OldStore::new();
        {
            let conn = rusqlite::Connection::open(dir.path().join("webhooks.db")).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
            )
            .unwrap();
            for (version, sql) in (1_i64..).zip(SQLITE_BEFORE) {
                conn.execute_batch(sql).unwrap();
                conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 0)",
                    [version],
                )
                .unwrap();
            }
            for webhook in &old.webhooks {
                let sealed = cipher()
                    .seal("whsec_backfill_test_secret_0123", webhook.as_str())
                    .unwrap();
                conn.execute(
                    "INSERT INTO webhooks (id, owner_id, url, event_types, is_active, scope_all, secret_enc, \
                     created_at, updated_at) VALUES (?1, 'alice', 'https://alice.example.com/hooks', '[\"*\"]', \
                     1, 0, ?2, 1, 1)",
                    [webhook.as_str(), sealed.as_str()],
                )
                .unwrap();
            }
            for d in &old.deliveries {
                let event = EventId::generate();
                conn.execute(
                    "INSERT INTO events (id, event_type, user_id, payload, created_at) \
                     VALUES (?1, 'user.created', 'user-1', X'7B7D', ?2)",
                    rusqlite::params![event.as_str(), d.created_at],
                )
                .unwrap();
                let finished = matches!(d.status, "delivered" | "failed");
                conn.execute(
                    "INSERT INTO deliveries (id, event_id, webhook_id, event_type, user_id, status, attempts, \
                     next_attempt_at, last_duration_ms, created_at, updated_at, delivered_at) \
                     VALUES (?1, ?2, ?3, 'user.created', 'user-1', ?4, ?5, ?6, ?7, ?8, ?8, ?9)",
                    rusqlite::params![
                        DeliveryId::generate().as_str(),
                        event.as_str(),
                        old.webhooks[d.webhook].as_str(),
                        d.status,
                        d.attempts,
                        (!finished).then_some(d.created_at),
                        d.duration_ms,
                        d.created_at,
                        (d.status == "delivered").then_some(d.created_at + 1),
                    ],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(dir.path(), cipher()).expect("open and migrate");
        check(&store, &old).await;
        DONE
    }

    pub async fn postgres_fills_kept_statistics_from_existing_deliveries() -> Ran {
        let db = match TestDatabase::fresh().await {
            Ok(v) => v,
            Err(why) => return skip(why),
        };
        let old = OldStore::new();
        {
            let client = crate::postgres_support::connect(&db.url)
                .await
                .expect("connect");
            client
                .batch_execute(
                    "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
                )
                .await
                .unwrap();
            for (version, sql) in (1_i64..).zip(POSTGRES_BEFORE) {
                client.batch_execute(sql).await.unwrap();
                client
                    .execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)",
                        &[&version],
                    )
                    .await
                    .unwrap();
            }
            for webhook in &old.webhooks {
                let sealed = cipher()
                    .seal("whsec_backfill_test_secret_0123", webhook.as_str())
                    .unwrap();
                client
                    .execute(
                        "INSERT INTO webhooks (id, owner_id, url, event_types, is_active, scope_all, secret_enc, \
                         created_at, updated_at) VALUES ($1, 'alice', 'https://alice.example.com/hooks', \
                         ARRAY['*'], TRUE, FALSE, $2, 1, 1)",
                        &[&webhook.as_str(), &sealed],
                    )
                    .await
                    .unwrap();
            }
            for d in &old.deliveries {
                let event = EventId::generate();
                client
                    .execute(
                        "INSERT INTO events (id, event_type, user_id, payload, created_at) \
                         VALUES ($1, 'user.created', 'user-1', '\\x7b7d'::bytea, $2)",
                        &[&event.as_str(), &d.created_at],
                    )
                    .await
                    .unwrap();
                let finished = matches!(d.status, "delivered" | "failed");
                client
                    .execute(
                        "INSERT INTO deliveries (id, event_id, webhook_id, event_type, user_id, status, attempts, \
                         next_attempt_at, last_duration_ms, created_at, updated_at, delivered_at) \
                         VALUES ($1, $2, $3, 'user.created', 'user-1', $4, $5, $6, $7, $8, $8, $9)",
                        &[
                            &DeliveryId::generate().as_str(),
                            &event.as_str(),
                            &old.webhooks[d.webhook].as_str(),
                            &d.status,
                            &d.attempts,
                            &(!finished).then_some(d.created_at),
                            &d.duration_ms,
                            &d.created_at,
                            &(d.status == "delivered").then_some(d.created_at + 1),
                        ],
                    )
                    .await
                    .unwrap();
            }
        }
        let store = PostgresStore::connect(&db.url, PostgresOptions::default(), cipher())
            .await
            .expect("connect and migrate");
        check(&store, &old).await;
        DONE
    }
}

// ------------------------------------------------- PostgreSQL: the queue beside the log

/// What only PostgreSQL's layout shows: each waiting delivery has a queue
/// row beside its log row (migration 12), and an attempt's result is a HOT
/// update of the log row.
mod postgres_queue {
    use super::*;

    /// Rows where the queue and the log disagree: a waiting delivery
    /// without a queue row, a queue row without a waiting delivery, a
    /// status or due time that differ, a failure time on a delivery that
    /// has not failed or none on one that has.
    async fn disagreements(f: &Fixture) -> i64 {
        f.count(
            "SELECT (SELECT COUNT(*) FROM deliveries d WHERE d.status IN ('pending', 'retrying') \
               AND NOT EXISTS (SELECT 1 FROM delivery_queue q WHERE q.id = d.id)) \
             + (SELECT COUNT(*) FROM delivery_queue q LEFT JOIN deliveries d ON d.id = q.id \
               WHERE d.id IS NULL OR d.status <> q.status OR d.next_attempt_at IS DISTINCT FROM q.next_attempt_at) \
             + (SELECT COUNT(*) FROM deliveries WHERE (status = 'failed') <> (failed_at IS NOT NULL))",
        )
        .await
    }

    async fn queued(f: &Fixture) -> i64 {
        f.count("SELECT COUNT(*) FROM delivery_queue").await
    }

    pub async fn the_queue_holds_the_waiting_deliveries_and_results_are_hot_updates() -> Ran {
        let f = match Fixture::postgres().await {
            Ok(v) => v,
            Err(why) => return skip(why),
        };
        let store = f.store();
        let w = create(store, "alice", 1).await.id;
        let delivered = ingest_one(store, "me", 100, &w, true).await;
        let retried = ingest_one(store, "me", 200, &w, true).await;
        let failed = ingest_one(store, "me", 300, &w, true).await;
        ingest_one(store, "me", 400, &w, false).await;
        assert_eq!((queued(&f).await, disagreements(&f).await), (4, 0));

        record(
            store,
            vec![
                report(
                    &delivered,
                    &w,
                    1,
                    DeliveryStatus::Delivered,
                    Some(200),
                    1000,
                    None,
                ),
                report(
                    &retried,
                    &w,
                    1,
                    DeliveryStatus::Retrying,
                    Some(500),
                    1000,
                    Some(5000),
                ),
                report(
                    &failed,
                    &w,
                    3,
                    DeliveryStatus::Failed,
                    Some(500),
                    1000,
                    None,
                ),
            ],
            LENIENT,
            1000,
        )
        .await;
        // The retry and the unclaimed delivery wait; the final two left the queue.
        assert_eq!((queued(&f).await, disagreements(&f).await), (2, 0));
        let only_failed = DeliveryFilter {
            status: Some(DeliveryStatus::Failed),
            ..DeliveryFilter::default()
        };
        let page = store
            .list_deliveries(&visible(store, &w).await, only_failed.clone(), 10, 0)
            .await
            .unwrap();
        assert_eq!(
            page.items.iter().map(|d| &d.id).collect::<Vec<_>>(),
            [&failed]
        );

        // A replay of the failed one queues it again, and it leaves the failed log.
        let replayed = store
            .requeue(&visible(store, &w).await, only_failed.clone(), None, 2000)
            .await
            .unwrap();
        assert_eq!(replayed, 1);
        assert_eq!((queued(&f).await, disagreements(&f).await), (3, 0));
        let page = store
            .list_deliveries(&visible(store, &w).await, only_failed, 10, 0)
            .await
            .unwrap();
        assert!(page.items.is_empty(), "{:?}", page.items);

        // Replaying everything: the delivered one is queued again, the
        // waiting ones become due now.
        let replayed = store
            .requeue(
                &visible(store, &w).await,
                DeliveryFilter::default(),
                None,
                3000,
            )
            .await
            .unwrap();
        assert_eq!(replayed, 4);
        assert_eq!((queued(&f).await, disagreements(&f).await), (4, 0));
        assert_eq!(
            f.count("SELECT COUNT(*) FROM delivery_queue WHERE next_attempt_at = 3000")
                .await,
            4
        );

        // Recording the delivery and the retry changed no indexed column
        // of their log rows: HOT updates, counted once the store's
        // connections report their statistics (within about 10 s of going idle).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let hot = f
                .count("SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'deliveries'")
                .await;
            if hot >= 2 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no HOT update of the log within 30 s ({hot})"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        // A deleted webhook leaves no queue rows.
        assert!(store.delete_webhook(&w, Owner::Any).await.unwrap());
        assert_eq!((queued(&f).await, disagreements(&f).await), (0, 0));
        DONE
    }

    /// An instance of the release before the queue, beside this one on the
    /// same database (a rolling upgrade), as its statements leave the
    /// tables: it stores deliveries without queue rows, gives claims back
    /// into the log's owner column, and finishes deliveries in the log.
    pub async fn an_older_release_s_deliveries_are_adopted_into_the_queue() -> Ran {
        let f = match Fixture::postgres().await {
            Ok(v) => v,
            Err(why) => return skip(why),
        };
        let Backend::Postgres(db) = &f.backend else {
            unreachable!("a PostgreSQL fixture")
        };
        let sql = crate::postgres_support::connect(&db.url)
            .await
            .expect("connect");
        let store = f.store();
        let w = create(store, "alice", 1).await.id;
        // This release's delivery, which the older instance then finished in
        // the log (as it would one it held): its queue row is stale.
        let finished_by_older = ingest_one(store, "me", 100, &w, false).await;
        sql.execute(
            "UPDATE deliveries SET status = 'delivered', lease_owner = NULL WHERE id = $1",
            &[&finished_by_older.as_str()],
        )
        .await
        .expect("finish in the log");
        // The older instance's own delivery, given back on its way out.
        sql.batch_execute(&format!(
            "INSERT INTO events (id, event_type, user_id, payload, created_at) \
             VALUES ('evt_01JX0000000000000000000001', 'user.created', 'alice', '{{}}'::bytea, 200); \
             INSERT INTO deliveries (id, event_id, webhook_id, event_type, user_id, status, attempts, \
             next_attempt_at, lease_owner, created_at, updated_at) VALUES ('dlv_01JX0000000000000000000000', \
             'evt_01JX0000000000000000000001', '{w}', 'user.created', 'alice', 'pending', 0, 200, NULL, 200, 200); \
             INSERT INTO instances (id, started_at, heartbeat_at, beating_since) VALUES ('inst_older', \
             (extract(epoch FROM clock_timestamp()) * 1000)::int8, (extract(epoch FROM clock_timestamp()) * 1000)::int8, \
             (extract(epoch FROM clock_timestamp()) * 1000)::int8)"
        ))
        .await
        .expect("the older instance's rows");

        // This instance's recovery adopts the one and drops the other. The
        // older instance keeps beating meanwhile, as a live one does, so that
        // a slow pass still sees it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            sql.execute(
                "UPDATE instances SET heartbeat_at = (extract(epoch FROM clock_timestamp()) * 1000)::int8 \
                 WHERE id = 'inst_older'",
                &[],
            )
            .await
            .expect("the older instance's heartbeat");
            store.recover_claims("me").await.expect("recover");
            let adopted = f
                .count("SELECT COUNT(*) FROM delivery_queue WHERE id = 'dlv_01JX0000000000000000000000'")
                .await;
            let stale = f
                .count(&format!(
                    "SELECT COUNT(*) FROM delivery_queue WHERE id = '{}'",
                    finished_by_older.as_str()
                ))
                .await;
            if (adopted, stale) == (1, 0) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not adopted within 10 s: adopted {adopted}, stale {stale}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(disagreements(&f).await, 0);
        // Its log row now names the queue as its owner, so the older
        // instance's claim (owner NULL) cannot take it as well.
        assert_eq!(
            f.count(
                "SELECT COUNT(*) FROM deliveries WHERE id = 'dlv_01JX0000000000000000000000' \
                 AND lease_owner = 'delivery_queue'"
            )
            .await,
            1
        );
        let claimed = store
            .claim_due("me", 1000, 10, Vec::new())
            .await
            .expect("claim");
        assert_eq!(
            claimed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["dlv_01JX0000000000000000000000"]
        );
        DONE
    }
}

// ------------------------------------------------- PostgreSQL: several instances

/// What only a shared database can show: claims across separate instances.
mod postgres_instances {
    use super::*;

    pub async fn live_instances_keep_their_claims_and_silent_ones_lose_them() -> Ran {
        let fixture = match Fixture::postgres().await {
            Ok(v) => v,
            Err(why) => return skip(why),
        };
        let (a, b) = (fixture.store(), fixture.second_instance().await);
        let w = create(a, "alice", 1).await.id;
        a.heartbeat("i-a").await.unwrap();
        b.heartbeat("i-b").await.unwrap();
        let held_by_b = ingest_one(b.as_ref(), "i-b", 100, &w, true).await;
        keep_beating(a, &["i-a", "i-b"], CLAIM_TTL * 2).await;
        assert_eq!(a.recover_claims("i-a").await.unwrap(), 0, "i-b is alive");
        assert!(
            a.claim_due("i-a", 1000, 10, vec![])
                .await
                .unwrap()
                .is_empty()
        );

        // i-b stops beating (killed): once the TTL has passed its claim is void.
        keep_beating(a, &["i-a"], CLAIM_TTL * 2).await;
        assert_eq!(a.recover_claims("i-a").await.unwrap(), 1, "i-b is gone");
        assert_eq!(
            ids_of(&a.claim_due("i-a", 1000, 10, vec![]).await.unwrap()),
            vec![held_by_b]
        );
        DONE
    }

    pub async fn an_instance_back_from_a_database_outage_voids_no_live_claims() -> Ran {
        let fixture = match Fixture::postgres().await {
            Ok(v) => v,
            Err(why) => return skip(why),
        };
        let store = fixture.store();
        let w = create(store, "alice", 1).await.id;
        store.heartbeat("i-b").await.unwrap();
        let held_by_b = ingest_one(store, "i-b", 100, &w, true).await;
        keep_beating(store, &["i-a", "i-b"], CLAIM_TTL * 2).await;

        // Nobody could beat for longer than the TTL (the database was away).
        tokio::time::sleep(CLAIM_TTL * 3).await;
        store.heartbeat("i-a").await.unwrap();
        assert_eq!(
            store.recover_claims("i-a").await.unwrap(),
            0,
            "i-b's heartbeat is stale only because of the outage"
        );
        // i-b is alive and beats again; its claim stands.
        keep_beating(store, &["i-a", "i-b"], CLAIM_TTL * 2).await;
        assert_eq!(store.recover_claims("i-a").await.unwrap(), 0);
        let b_claims = store.claim_due("i-a", 1000, 10, vec![]).await.unwrap();
        assert!(b_claims.is_empty(), "{held_by_b} is still i-b's");
        DONE
    }

    /// Waits for the next announcement; `false` if none comes within `limit`.
    async fn announced(changes: &mut tokio::sync::watch::Receiver<u64>, limit: Duration) -> bool {
        matches!(
            tokio::time::timeout(limit, changes.changed()).await,
            Ok(Ok(()))
        )
    }

    pub async fn webhook_changes_are_announced_to_every_instance_within_a_second() -> Ran {
        let fixture = match Fixture::postgres().await {
            Ok(v) => v,
            Err(why) => return skip(why),
        };
        let (a, b) = (fixture.store(), fixture.second_instance().await);
        let mut changes = b.webhook_changes().expect("PostgreSQL announces changes");
        assert!(
            announced(&mut changes, Duration::from_secs(5)).await,
            "listening starts with a reload"
        );
        assert_eq!(
            b.take_webhook_changes(),
            WebhookChanges::All,
            "changes made before listening are unknown"
        );
        let second = Duration::from_secs(1);

        let hook = create(a, "alice", 1).await;
        assert!(announced(&mut changes, second).await, "created");
        assert_eq!(
            b.take_webhook_changes(),
            WebhookChanges::These(vec![hook.id.clone()]),
            "only the webhook created is read again"
        );
        let paused = WebhookPatch {
            is_active: Some(false),
            now: 2,
            ..WebhookPatch::default()
        };
        a.update_webhook(&hook.id, Owner::Any, paused)
            .await
            .unwrap();
        assert!(announced(&mut changes, second).await, "disabled");
        a.rotate_secret(
            &hook.id,
            Owner::Any,
            secret("whsec_rotated-secret-00000"),
            9,
            3,
        )
        .await
        .unwrap();
        assert!(announced(&mut changes, second).await, "secret rotated");

        // Failure bookkeeping does not make every instance reload.
        let enabled = WebhookPatch {
            is_active: Some(true),
            now: 4,
            ..WebhookPatch::default()
        };
        a.update_webhook(&hook.id, Owner::Any, enabled)
            .await
            .unwrap();
        assert!(announced(&mut changes, second).await, "enabled");
        let d = ingest_one(a, "i-a", 100, &hook.id, true).await;
        let retry = report(
            &d,
            &hook.id,
            1,
            DeliveryStatus::Retrying,
            Some(500),
            100,
            Some(900),
        );
        record(a, vec![retry], LENIENT, 110).await;
        assert!(
            !announced(&mut changes, Duration::from_millis(300)).await,
            "failing_since changed, nothing that routes"
        );

        // What was announced since the last take, each webhook once.
        assert_eq!(
            b.take_webhook_changes(),
            WebhookChanges::These(vec![hook.id.clone()])
        );

        a.delete_webhook(&hook.id, Owner::Any).await.unwrap();
        assert!(announced(&mut changes, second).await, "deleted");
        assert_eq!(
            b.take_webhook_changes(),
            WebhookChanges::These(vec![hook.id.clone()])
        );
        assert!(a.webhook_changes().is_some());
        DONE
    }

    pub async fn concurrent_instances_claim_disjoint_sets() -> Ran {
        let fixture = match Fixture::postgres().await {
            Ok(v) => v,
            Err(why) => return skip(why),
        };
        let first = fixture.store.clone();
        let second = fixture.second_instance().await;
        let hooks = [
            create(first.as_ref(), "alice", 1).await.id,
            create(first.as_ref(), "alice", 2).await.id,
        ];
        for chunk in 0..4 {
            let items: Vec<IngestItem> = (0..500)
                .map(|i| {
                    event(
                        chunk * 500 + i,
                        "user.created",
                        &[(&hooks[(i % 2) as usize], false)],
                    )
                    .0
                })
                .collect();
            first.ingest("i-first", Arc::new(items)).await.unwrap();
        }
        let claim_all = |store: Arc<dyn Store>, owner: &'static str| {
            tokio::spawn(async move {
                store.heartbeat(owner).await.unwrap();
                let mut got = Vec::new();
                loop {
                    let due = store.claim_due(owner, 1_000_000, 50, vec![]).await.unwrap();
                    if due.is_empty() {
                        return got;
                    }
                    got.extend(ids_of(&due));
                }
            })
        };
        let tasks = [
            claim_all(first.clone(), "i-a1"),
            claim_all(first.clone(), "i-a2"),
            claim_all(second.clone(), "i-b1"),
            claim_all(second.clone(), "i-b2"),
        ];
        let mut seen = HashSet::new();
        let mut per_owner = Vec::new();
        for task in tasks {
            let got = task.await.unwrap();
            per_owner.push(got.len());
            for id in got {
                assert!(seen.insert(id.clone()), "{id} claimed twice");
            }
        }
        assert_eq!(
            seen.len(),
            2000,
            "every delivery claimed exactly once ({per_owner:?})"
        );
        DONE
    }
}

/// The tests of this file, for the binary's harness.
pub fn tests() -> Vec<crate::harness::Test> {
    let mut tests = contract_tests();
    tests.push(
        Test::new(
            "schema_versions::sqlite_refuses_a_database_of_a_newer_release",
            || Box::pin(schema_versions::sqlite_refuses_a_database_of_a_newer_release()),
        )
        .multi_thread(2),
    );
    tests.push(
        Test::new(
            "schema_versions::postgres_refuses_a_database_of_a_newer_release",
            || Box::pin(schema_versions::postgres_refuses_a_database_of_a_newer_release()),
        )
        .multi_thread(2),
    );
    tests.push(
        Test::new(
            "kept_statistics_backfill::sqlite_fills_kept_statistics_from_existing_deliveries",
            || {
                Box::pin(
                    kept_statistics_backfill::sqlite_fills_kept_statistics_from_existing_deliveries(
                    ),
                )
            },
        )
        .multi_thread(2),
    );
    tests.push(
        Test::new(
            "kept_statistics_backfill::postgres_fills_kept_statistics_from_existing_deliveries",
            || Box::pin(kept_statistics_backfill::postgres_fills_kept_statistics_from_existing_deliveries()),
        )
        .multi_thread(2),
    );
    tests.push(
        Test::new(
            "postgres_instances::live_instances_keep_their_claims_and_silent_ones_lose_them",
            || {
                Box::pin(
                    postgres_instances::live_instances_keep_their_claims_and_silent_ones_lose_them(
                    ),
                )
            },
        )
        .multi_thread(2),
    );
    tests.push(
        Test::new(
            "postgres_queue::the_queue_holds_the_waiting_deliveries_and_results_are_hot_updates",
            || {
                Box::pin(
                    postgres_queue::the_queue_holds_the_waiting_deliveries_and_results_are_hot_updates(),
                )
            },
        )
        .multi_thread(2),
    );
    tests.push(
        Test::new(
            "postgres_queue::an_older_release_s_deliveries_are_adopted_into_the_queue",
            || Box::pin(postgres_queue::an_older_release_s_deliveries_are_adopted_into_the_queue()),
        )
        .multi_thread(2),
    );
    tests.push(Test::new("postgres_instances::an_instance_back_from_a_database_outage_voids_no_live_claims", || Box::pin(postgres_instances::an_instance_back_from_a_database_outage_voids_no_live_claims())).multi_thread(2));
    tests.push(Test::new("postgres_instances::webhook_changes_are_announced_to_every_instance_within_a_second", || Box::pin(postgres_instances::webhook_changes_are_announced_to_every_instance_within_a_second())).multi_thread(2));
    tests.push(
        Test::new(
            "postgres_instances::concurrent_instances_claim_disjoint_sets",
            || Box::pin(postgres_instances::concurrent_instances_claim_disjoint_sets()),
        )
        .multi_thread(4),
    );
    tests
}
