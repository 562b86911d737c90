//! The in-memory routing table: which webhooks an event fans out to, and the
//! URL and secrets each delivery is sent and signed with.
//!
//! Rebuilt from the store after every change made through the API (changes
//! are rare; ingest reads it tens of thousands of times a second), and
//! swapped in whole, so readers never see a half-applied change. A change
//! therefore takes effect for the next event.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use webhook_domain::event_type::{EventType, Subscription};
use webhook_domain::ids::{UserId, WebhookId};
use webhook_domain::webhook::WebhookSecret;

use crate::store::{Store, StoreError, WebhookRecord};

/// What the engine needs to deliver to one webhook.
#[derive(Debug)]
pub struct Route {
    /// Webhook id.
    pub id: WebhookId,
    /// Owner.
    pub owner_id: UserId,
    /// Destination.
    pub url: url::Url,
    /// Subscribed types.
    pub subscription: Subscription,
    /// Receives deliveries.
    pub is_active: bool,
    /// Receives every user's events.
    pub scope_all: bool,
    /// Current secret.
    pub secret: WebhookSecret,
    /// Previous secret and the end of its grace period (unix ms).
    pub previous_secret: Option<(WebhookSecret, i64)>,
}

impl Route {
    fn from_record(record: WebhookRecord) -> Option<Route> {
        // Rows were validated when written; one that no longer parses (a
        // catalogue change) is skipped rather than taking the table down.
        let url = url::Url::parse(&record.url).ok()?;
        let subscription = Subscription::parse(&record.event_types).ok()?;
        Some(Route {
            id: record.id,
            owner_id: record.owner_id,
            url,
            subscription,
            is_active: record.is_active,
            scope_all: record.scope_all,
            secret: record.secret,
            previous_secret: record.previous_secret,
        })
    }

    /// Secrets that sign a delivery made at `now_ms`: the current one, then the previous one during its grace period.
    pub fn previous_secret_at(&self, now_ms: i64) -> Option<&WebhookSecret> {
        self.previous_secret
            .as_ref()
            .filter(|(_, until)| *until > now_ms)
            .map(|(secret, _)| secret)
    }
}

#[derive(Debug, Default)]
struct Table {
    by_id: HashMap<WebhookId, Arc<Route>>,
    active_by_user: HashMap<UserId, Vec<Arc<Route>>>,
    active_scope_all: Vec<Arc<Route>>,
}

/// The routing table shared by ingest and the dispatcher.
#[derive(Debug, Default)]
pub struct RoutingTable {
    table: RwLock<Arc<Table>>,
}

impl RoutingTable {
    /// Reloads every webhook from the store.
    pub async fn reload(&self, store: &dyn Store) -> Result<(), StoreError> {
        let records = store.all_webhooks().await?;
        let mut table = Table::default();
        for route in records.into_iter().filter_map(Route::from_record) {
            let route = Arc::new(route);
            if route.is_active {
                if route.scope_all {
                    table.active_scope_all.push(route.clone());
                } else {
                    table
                        .active_by_user
                        .entry(route.owner_id.clone())
                        .or_default()
                        .push(route.clone());
                }
            }
            table.by_id.insert(route.id.clone(), route);
        }
        let table = Arc::new(table);
        match self.table.write() {
            Ok(mut guard) => *guard = table,
            Err(poisoned) => *poisoned.into_inner() = table,
        }
        Ok(())
    }

    fn snapshot(&self) -> Arc<Table> {
        match self.table.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Active webhooks that receive an event of `event_type` for `user`.
    pub fn matching(&self, user: &UserId, event_type: &EventType) -> Vec<Arc<Route>> {
        let table = self.snapshot();
        let own = table
            .active_by_user
            .get(user)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        own.iter()
            .chain(table.active_scope_all.iter())
            .filter(|r| r.subscription.matches(event_type))
            .cloned()
            .collect()
    }

    /// The route of a webhook, active or not.
    pub fn get(&self, id: &WebhookId) -> Option<Arc<Route>> {
        self.snapshot().by_id.get(id).cloned()
    }
}
