//! The PostgreSQL store while the database is unreachable: every call fails
//! fast with `Unavailable` (or, for a write whose connection the cut broke
//! mid-statement, `OutcomeUnknown`; the API turns both into 503), nothing committed
//! before is lost, and the store reconnects by itself when the database is
//! back. The outage is made by cutting a proxy in front of the shared server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use webhook_domain::ids::{DeliveryId, EventId, UserId, WebhookId};
use webhook_domain::webhook::WebhookSecret;
use webhook_service::crypto::{EncryptionKey, SecretCipher};
use webhook_service::store::postgres::{PostgresOptions, PostgresStore};
use webhook_service::store::{
    DeliveryFilter, IngestItem, IngestOutcome, NewDelivery, NewWebhook, Owner, Store, StoreError,
};

use crate::harness::{DONE, Ran, Test, skip};
use crate::postgres_support::{CuttableProxy, TestDatabase};

fn item(webhook: &WebhookId) -> IngestItem {
    let event_id = EventId::generate();
    IngestItem {
        payload: Bytes::from(format!(r#"{{"id":"{event_id}"}}"#)),
        event_id,
        event_type: "user.created".into(),
        user_id: UserId::parse("alice").unwrap(),
        idempotent: false,
        created_at: 1000,
        deliveries: vec![NewDelivery {
            id: DeliveryId::generate(),
            webhook_id: webhook.clone(),
            claimed: false,
            ordering_key: None,
        }],
    }
}

fn assert_unavailable<T: std::fmt::Debug>(what: &str, result: Result<T, StoreError>) {
    match result {
        // A writer whose connection the cut broke after it had sent its
        // statement cannot know whether it committed: both answer 503.
        Err(StoreError::Unavailable(_) | StoreError::OutcomeUnknown(_)) => {}
        other => panic!("{what}: expected Unavailable during the outage, got {other:?}"),
    }
}

async fn calls_fail_fast_while_unreachable_and_recover_by_themselves() -> Ran {
    let db = match TestDatabase::fresh().await {
        Ok(db) => db,
        Err(why) => return skip(why),
    };
    let proxy = CuttableProxy::start().await;
    let store: Arc<dyn Store> = Arc::new(
        PostgresStore::connect(
            &proxy.url_for(&db),
            PostgresOptions::default(),
            SecretCipher::new(&EncryptionKey::new([3; 32])),
        )
        .await
        .expect("connect through the proxy"),
    );
    let hook = store
        .create_webhook(
            NewWebhook {
                id: WebhookId::generate(),
                owner_id: UserId::parse("alice").unwrap(),
                url: "https://example.com/hook".into(),
                event_types: vec!["*".into()],
                description: None,
                is_active: true,
                scope_all: false,
                secret: WebhookSecret::parse("whsec_outage-test-secret-0000").unwrap(),
                now: 1,
                controls: Default::default(),
                endpoint: Default::default(),
            },
            100,
        )
        .await
        .unwrap();
    let acked: Vec<IngestItem> = (0..20).map(|_| item(&hook.id)).collect();
    let outcomes = store.ingest("i-1", Arc::new(acked.clone())).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == IngestOutcome::Created));
    store.health().await.unwrap();

    let mut changes = store
        .webhook_changes()
        .expect("PostgreSQL announces changes");
    changes.borrow_and_update();

    proxy.cut();
    let started = Instant::now();
    assert_unavailable("health", store.health().await);
    assert_unavailable(
        "ingest",
        store.ingest("i-1", Arc::new(vec![item(&hook.id)])).await,
    );
    assert_unavailable("get_webhook", store.get_webhook(&hook.id, Owner::Any).await);
    assert_unavailable(
        "claim_due",
        store.claim_due("i-1", 10_000, 10, vec![]).await,
    );
    assert_unavailable("heartbeat", store.heartbeat("i-1").await);
    for _ in 0..20 {
        assert_unavailable(
            "ingest",
            store.ingest("i-1", Arc::new(vec![item(&hook.id)])).await,
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "calls during the outage fail fast (took {:?})",
        started.elapsed()
    );

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.health().await {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the store did not reconnect: {e}"),
        }
    }
    let outcomes = store
        .ingest("i-1", Arc::new(vec![item(&hook.id)]))
        .await
        .unwrap();
    assert_eq!(outcomes, vec![IngestOutcome::Created]);
    // Listening again, changes missed meanwhile are announced as one.
    let relistened = tokio::time::timeout(Duration::from_secs(5), changes.changed()).await;
    assert!(
        matches!(relistened, Ok(Ok(()))),
        "a reload is announced after reconnecting"
    );
    let logged = store
        .list_deliveries(
            &store
                .visible_webhook(&hook.id, Owner::Any)
                .await
                .unwrap()
                .expect("the webhook exists"),
            DeliveryFilter::default(),
            1,
            0,
        )
        .await
        .unwrap();
    // The 20 acknowledged before the outage and the one after; none of the refused ones.
    assert_eq!(logged.total, 21);
    drop(store);
    drop(db);
    DONE
}

async fn connecting_to_an_unreachable_server_fails_with_a_clear_error() -> Ran {
    let started = Instant::now();
    let result = PostgresStore::connect(
        "postgres://postgres@127.0.0.1:1/nowhere",
        PostgresOptions::default(),
        SecretCipher::new(&EncryptionKey::new([3; 32])),
    )
    .await;
    match result {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("PostgreSQL is unreachable"), "{message}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    DONE
}

/// The tests of this file, for the binary's harness.
pub fn tests() -> Vec<crate::harness::Test> {
    vec![
        Test::new(
            stringify!(calls_fail_fast_while_unreachable_and_recover_by_themselves),
            || Box::pin(calls_fail_fast_while_unreachable_and_recover_by_themselves()),
        )
        .multi_thread(2),
        Test::new(
            stringify!(connecting_to_an_unreachable_server_fails_with_a_clear_error),
            || Box::pin(connecting_to_an_unreachable_server_fails_with_a_clear_error()),
        ),
    ]
}
