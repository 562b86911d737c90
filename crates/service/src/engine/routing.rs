//! The in-memory routing table: which webhooks an event fans out to, and the
//! URL and secrets each delivery is sent and signed with.
//!
//! Rebuilt from the store after every change made through the API (changes
//! are rare; ingest reads it tens of thousands of times a second), and
//! swapped in whole, so readers never see a half-applied change. A change
//! therefore takes effect for the next event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use webhook_domain::asymmetric::Ed25519Signing;
use webhook_domain::endpoint::{EndpointAuth, EndpointOptions};
use webhook_domain::event_type::{EventType, Subscription};
use webhook_domain::ids::{UserId, WebhookId};
use webhook_domain::webhook::WebhookSecret;
use webhook_outbound::ClientIdentity;

use super::oauth::TokenSource;
use crate::store::{DeliveryControls, Store, StoreError, WebhookRecord};

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
    /// Filter, rate limit, retry schedule and timeout.
    pub controls: DeliveryControls,
    /// Custom headers and authentication, ready to send.
    pub endpoint: EndpointHeaders,
}

/// The header lines a webhook's endpoint options add to every attempt,
/// built once per routing change rather than per attempt. Empty for a
/// webhook without options, which then pays nothing for them.
#[derive(Default)]
pub struct EndpointHeaders {
    /// As sent (raw credentials); never logged.
    pub sent: Vec<(String, String)>,
    /// As delivery logs keep them: names with masked values.
    pub logged: Vec<(String, String)>,
    /// The client certificate presented on the TLS handshake.
    pub identity: Option<ClientIdentity>,
    /// Where OAuth2 tokens come from; its cache lives as long as the route.
    pub oauth: Option<Arc<TokenSource>>,
    /// Ed25519 keys, when `webhook-signature` carries `v1a` signatures.
    pub signing: Option<Ed25519Signing>,
    /// The options these lines were built from.
    options: EndpointOptions,
}

impl std::fmt::Debug for EndpointHeaders {
    /// The masked lines only: `sent` holds credentials in clear.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointHeaders")
            .field("lines", &self.logged)
            .field("identity", &self.identity)
            .field("oauth", &self.oauth)
            .field("signing", &self.signing)
            .finish_non_exhaustive()
    }
}

impl EndpointHeaders {
    /// The lines of `options`.
    pub fn new(options: &EndpointOptions) -> Self {
        if options.is_empty() {
            return EndpointHeaders::default();
        }
        let identity = match options.auth() {
            // Checked when the webhook was written; one the TLS library no
            // longer accepts is sent without it, and the endpoint says so.
            Some(EndpointAuth::Mtls {
                certificate,
                private_key,
            }) => ClientIdentity::from_pem(certificate.as_bytes(), private_key.as_bytes()).ok(),
            _ => None,
        };
        let oauth = match options.auth() {
            Some(EndpointAuth::OAuth2 {
                token_url,
                client_id,
                client_secret,
                scope,
                audience,
            }) => TokenSource::new(
                token_url,
                client_id,
                client_secret,
                scope.as_deref(),
                audience.as_deref(),
            )
            .map(Arc::new),
            _ => None,
        };
        EndpointHeaders {
            sent: options.request_headers(),
            logged: options.logged_headers(),
            identity,
            oauth,
            signing: options.signing().cloned(),
            options: options.clone(),
        }
    }
}

impl Route {
    fn from_record(record: WebhookRecord) -> Option<Route> {
        // Rows were validated when written; one that no longer parses (a
        // catalogue change) is skipped rather than taking the table down.
        let url = url::Url::parse(&record.url).ok()?;
        let subscription = Subscription::parse(&record.event_types).ok()?;
        let endpoint = EndpointHeaders::new(&record.endpoint);
        Some(Route {
            id: record.id,
            owner_id: record.owner_id,
            url,
            subscription,
            is_active: record.is_active,
            scope_all: record.scope_all,
            secret: record.secret,
            previous_secret: record.previous_secret,
            controls: record.controls,
            endpoint,
        })
    }

    /// The route a test send goes by: the webhook as stored, active even
    /// when it is paused (the user asked for this one delivery).
    pub(crate) fn for_test_send(record: WebhookRecord) -> Option<Route> {
        let mut route = Route::from_record(record)?;
        route.is_active = true;
        Some(route)
    }

    /// Takes the token cache of `live` (the routing table's route of the
    /// same webhook) when the credentials are the same, so that a test
    /// send shares the token deliveries use instead of fetching its own.
    pub(crate) fn share_tokens_of(&mut self, live: &Route) {
        if self.endpoint.options == live.endpoint.options {
            self.endpoint.oauth.clone_from(&live.endpoint.oauth);
        }
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
    by_id: crate::FastMap<WebhookId, Arc<Route>>,
    active_by_user: crate::FastMap<UserId, Vec<Arc<Route>>>,
    active_scope_all: Vec<Arc<Route>>,
    /// Whether any webhook delivers in order (FIFO).
    any_ordered: bool,
}

impl Table {
    /// Builds the fan-out indexes over every route.
    fn index(by_id: crate::FastMap<WebhookId, Arc<Route>>) -> Table {
        let mut table = Table {
            by_id,
            ..Table::default()
        };
        table.any_ordered = table.by_id.values().any(|r| r.controls.ordering.is_some());
        for route in table.by_id.values().filter(|r| r.is_active) {
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
        table
    }
}

/// The routing table shared by ingest and the dispatcher.
#[derive(Debug, Default)]
pub struct RoutingTable {
    table: RwLock<Arc<Table>>,
    /// Incremental edits applied so far (see `reload`).
    edits: AtomicU64,
}

impl RoutingTable {
    /// Reloads every webhook from the store (start-up, changes made by
    /// other instances, webhooks the engine disabled).
    pub async fn reload(&self, store: &dyn Store) -> Result<(), StoreError> {
        loop {
            let before = self.edits.load(Ordering::SeqCst);
            let records = store.all_webhooks().await?;
            let by_id = records
                .into_iter()
                .filter_map(Route::from_record)
                .map(|route| (route.id.clone(), Arc::new(route)))
                .collect();
            let mut guard = match self.table.write() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            // An edit that landed while the store was being read may be newer
            // than what was read: read again rather than undo it.
            if self.edits.load(Ordering::SeqCst) == before {
                *guard = Arc::new(Table::index(by_id));
                return Ok(());
            }
        }
    }

    /// Applies one webhook's new state without reading the others back (an
    /// API change: a full reload decrypts every secret, which made creating
    /// the n-th webhook cost O(n)).
    pub fn upsert(&self, record: WebhookRecord) {
        let id = record.id.clone();
        self.edit(|by_id| match Route::from_record(record) {
            Some(route) => {
                by_id.insert(id, Arc::new(route));
            }
            None => {
                by_id.remove(&id);
            }
        });
    }

    /// Forgets a deleted webhook.
    pub fn remove(&self, id: &WebhookId) {
        self.edit(|by_id| {
            by_id.remove(id);
        });
    }

    /// Read-modify-write under the write lock, so concurrent edits are not lost.
    fn edit(&self, change: impl FnOnce(&mut crate::FastMap<WebhookId, Arc<Route>>)) {
        let mut guard = match self.table.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut by_id = guard.by_id.clone();
        change(&mut by_id);
        *guard = Arc::new(Table::index(by_id));
        self.edits.fetch_add(1, Ordering::SeqCst);
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

    /// Every webhook with a rate limit, and this instance's part of it
    /// when `instances` share the store (at least 1 a second each), so that
    /// together they keep to the limit.
    pub fn rate_limits(&self, instances: u32) -> Vec<(WebhookId, u32)> {
        let instances = instances.max(1);
        self.snapshot()
            .by_id
            .values()
            .filter_map(|r| {
                let limit = r.controls.rate_limit_per_second?;
                Some((r.id.clone(), (limit / instances).max(1)))
            })
            .collect()
    }

    /// Whether any webhook delivers in order: one flag read, so that
    /// services without FIFO webhooks look nothing up per attempt.
    pub fn any_ordered(&self) -> bool {
        self.snapshot().any_ordered
    }

    /// Whether any of `reports` (finished deliveries) is of a FIFO webhook.
    pub fn orders_finished<'a>(
        &self,
        mut reports: impl Iterator<Item = &'a crate::store::AttemptReport>,
    ) -> bool {
        let table = self.snapshot();
        reports.any(|r| {
            table
                .by_id
                .get(&r.webhook_id)
                .is_some_and(|route| route.controls.ordering.is_some())
        })
    }

    /// The route of a webhook, active or not.
    pub fn get(&self, id: &WebhookId) -> Option<Arc<Route>> {
        self.snapshot().by_id.get(id).cloned()
    }
}
