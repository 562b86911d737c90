//! The in-memory routing table: which webhooks an event fans out to, and the
//! URL and secrets each delivery is sent and signed with.
//!
//! Rebuilt from the store after every change made through the API (changes
//! are rare; ingest reads it tens of thousands of times a second), and
//! swapped in whole, so readers never see a half-applied change. A change
//! therefore takes effect for the next event.

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use webhook_domain::asymmetric::Ed25519Signing;
use webhook_domain::endpoint::{EndpointAuth, EndpointOptions};
use webhook_domain::event_type::{EventType, Subscription};
use webhook_domain::ids::{UserId, WebhookId};
use webhook_domain::webhook::WebhookSecret;
use webhook_outbound::ClientIdentity;

use super::oauth::TokenSource;
use crate::store::{DeliveryControls, Store, StoreError, WebhookRecord};

/// What the engine needs to deliver to one webhook.
///
/// One is held for every webhook in the store (100,000 and more), so the
/// parts most webhooks leave unset (controls, endpoint options) are boxed
/// behind one pointer each rather than kept inline.
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
    pub controls: RouteControls,
    /// Custom headers and authentication, ready to send.
    pub endpoint: EndpointHeaders,
}

/// A webhook's delivery controls, read as [`DeliveryControls`]: a webhook
/// that sets none holds no box, only a null pointer.
#[derive(Default, Clone, PartialEq)]
pub struct RouteControls(Option<Box<DeliveryControls>>);

/// What a webhook without controls reads.
static NO_CONTROLS: DeliveryControls = DeliveryControls {
    filter: None,
    rate_limit_per_second: None,
    retry_schedule: None,
    timeout: None,
    ordering: None,
};

impl From<DeliveryControls> for RouteControls {
    fn from(controls: DeliveryControls) -> Self {
        if controls.is_empty() {
            RouteControls(None)
        } else {
            RouteControls(Some(Box::new(controls)))
        }
    }
}

impl std::ops::Deref for RouteControls {
    type Target = DeliveryControls;

    fn deref(&self) -> &DeliveryControls {
        self.0.as_deref().unwrap_or(&NO_CONTROLS)
    }
}

impl std::ops::DerefMut for RouteControls {
    /// Boxes the controls on the first change.
    fn deref_mut(&mut self) -> &mut DeliveryControls {
        self.0.get_or_insert_with(Box::default)
    }
}

impl std::fmt::Debug for RouteControls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        DeliveryControls::fmt(self, f)
    }
}

/// The header lines a webhook's endpoint options add to every attempt,
/// built once per routing change rather than per attempt, read as
/// [`EndpointLines`]. A webhook without options holds no box, only a null
/// pointer.
#[derive(Default)]
pub struct EndpointHeaders(Option<Box<EndpointLines>>);

/// The lines of a webhook with endpoint options.
pub struct EndpointLines {
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
    /// The options these lines were built from, kept only beside an OAuth2
    /// token source: they decide whether another route of the webhook may
    /// share its tokens (see [`Route::share_tokens_of`]).
    oauth_options: Option<EndpointOptions>,
}

/// What a webhook without endpoint options reads.
static NO_LINES: EndpointLines = EndpointLines {
    sent: Vec::new(),
    logged: Vec::new(),
    identity: None,
    oauth: None,
    signing: None,
    oauth_options: None,
};

impl std::ops::Deref for EndpointHeaders {
    type Target = EndpointLines;

    fn deref(&self) -> &EndpointLines {
        self.0.as_deref().unwrap_or(&NO_LINES)
    }
}

impl std::fmt::Debug for EndpointHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        EndpointLines::fmt(self, f)
    }
}

impl std::fmt::Debug for EndpointLines {
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
        let oauth_options = oauth.as_ref().map(|_| options.clone());
        EndpointHeaders(Some(Box::new(EndpointLines {
            sent: options.request_headers(),
            logged: options.logged_headers(),
            identity,
            oauth,
            signing: options.signing().cloned(),
            oauth_options,
        })))
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
            controls: record.controls.into(),
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
    ///
    /// Options are kept only beside a token source, and the same options
    /// always build one or always fail to, so comparing the kept options
    /// decides as comparing the whole options would.
    pub(crate) fn share_tokens_of(&mut self, live: &Route) {
        let (Some(own), Some(theirs)) =
            (self.endpoint.0.as_deref_mut(), live.endpoint.0.as_deref())
        else {
            return;
        };
        if own.oauth_options.is_some() && own.oauth_options == theirs.oauth_options {
            own.oauth.clone_from(&theirs.oauth);
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

/// The routes and the indexes ingest reads them by. Cloned only when an
/// edit lands while a reader still holds the previous version (see
/// [`RoutingTable::edit`]).
#[derive(Debug, Default, Clone)]
struct Table {
    by_id: crate::FastMap<WebhookId, Arc<Route>>,
    active_by_user: crate::FastMap<UserId, Vec<Arc<Route>>>,
    active_scope_all: Vec<Arc<Route>>,
    /// Routes that deliver in order (FIFO).
    ordered: usize,
    /// Rate limits (per second) of the webhooks that have one: read on
    /// every API change, so kept apart from the 100,000 that have none.
    limited: crate::FastMap<WebhookId, u32>,
}

impl Table {
    /// Adds `route`, replacing the route of the same webhook: the work of
    /// one webhook and its owner's other webhooks, never of the whole table.
    fn insert(&mut self, route: Arc<Route>) {
        self.remove(&route.id);
        if route.controls.ordering.is_some() {
            self.ordered += 1;
        }
        if let Some(limit) = route.controls.rate_limit_per_second {
            self.limited.insert(route.id.clone(), limit);
        }
        if route.is_active {
            if route.scope_all {
                self.active_scope_all.push(route.clone());
            } else {
                self.active_by_user
                    .entry(route.owner_id.clone())
                    .or_default()
                    .push(route.clone());
            }
        }
        self.by_id.insert(route.id.clone(), route);
    }

    /// Removes the route of webhook `id`, if there is one.
    fn remove(&mut self, id: &WebhookId) {
        let Some(old) = self.by_id.remove(id) else {
            return;
        };
        if old.controls.ordering.is_some() {
            self.ordered -= 1;
        }
        self.limited.remove(id);
        if old.scope_all {
            self.active_scope_all.retain(|r| r.id != *id);
        } else if let Some(own) = self.active_by_user.get_mut(&old.owner_id) {
            own.retain(|r| r.id != *id);
            if own.is_empty() {
                self.active_by_user.remove(&old.owner_id);
            }
        }
    }
}

/// The routing table shared by ingest and the dispatcher.
#[derive(Debug, Default)]
pub struct RoutingTable {
    table: RwLock<Arc<Table>>,
    /// The webhooks edited while a reload reads the store (`None`: no
    /// reload is running); see [`RoutingTable::reload`].
    edited_during_reload: Mutex<Option<Vec<WebhookId>>>,
    /// Held by a reload from start to end: one at a time.
    reloading: tokio::sync::Mutex<()>,
}

impl RoutingTable {
    /// Reloads every webhook from the store (start-up, changes made by
    /// other instances, webhooks the engine disabled).
    ///
    /// Routes are built as the store hands the webhooks over, a batch at a
    /// time, and the memory the load freed (records, the replaced table) is
    /// returned to the system at once rather than whenever the allocator
    /// next gets to it (see [`crate::memory`]).
    ///
    /// An edit that lands while the store is being read may be newer than
    /// what was read: the edited routes of the live table are kept over the
    /// read ones. (Discarding the read and reading again instead never
    /// finished while an API created webhooks faster than every webhook
    /// could be read: filling 100,000 webhooks through the API on
    /// PostgreSQL spent half the service's CPU rereading them.)
    pub async fn reload(&self, store: &dyn Store) -> Result<(), StoreError> {
        let _one_at_a_time = self.reloading.lock().await;
        *self.edited() = Some(Vec::new());
        let mut table = Table::default();
        let read = store
            .each_webhook(&mut |record| {
                if let Some(route) = Route::from_record(record) {
                    table.insert(Arc::new(route));
                }
            })
            .await;
        let replaced = {
            let mut guard = match self.table.write() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            // Under the table's lock, so no edit falls between the list
            // and the swap.
            let edited = self.edited().take().unwrap_or_default();
            read?;
            for id in edited {
                match guard.by_id.get(&id) {
                    Some(route) => table.insert(route.clone()),
                    None => table.remove(&id),
                }
            }
            std::mem::replace(&mut *guard, Arc::new(table))
        };
        // Outside the lock: routing need not wait for 100,000 drops.
        drop(replaced);
        crate::memory::release_freed();
        Ok(())
    }

    fn edited(&self) -> std::sync::MutexGuard<'_, Option<Vec<WebhookId>>> {
        self.edited_during_reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies one webhook's new state without reading the others back (an
    /// API change: a full reload decrypts every secret, which made creating
    /// the n-th webhook cost O(n)).
    pub fn upsert(&self, record: WebhookRecord) {
        let id = record.id.clone();
        self.edit(&id, |table| match Route::from_record(record) {
            Some(route) => table.insert(Arc::new(route)),
            None => table.remove(&id),
        });
    }

    /// Forgets a deleted webhook.
    pub fn remove(&self, id: &WebhookId) {
        self.edit(id, |table| table.remove(id));
    }

    /// Read-modify-write under the write lock, so concurrent edits are not
    /// lost. The table is changed in place when no reader holds it (no
    /// event is being routed at that moment), else copied first, so a
    /// reader never sees a half-applied change: with 100,000 webhooks,
    /// copying and re-indexing the whole table on every API change made
    /// creating one cost milliseconds.
    fn edit(&self, id: &WebhookId, change: impl FnOnce(&mut Table)) {
        let mut guard = match self.table.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        change(Arc::make_mut(&mut guard));
        if let Some(edited) = self.edited().as_mut() {
            edited.push(id.clone());
        }
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
            .limited
            .iter()
            .map(|(id, limit)| (id.clone(), (limit / instances).max(1)))
            .collect()
    }

    /// Whether any webhook delivers in order: one flag read, so that
    /// services without FIFO webhooks look nothing up per attempt.
    pub fn any_ordered(&self) -> bool {
        self.snapshot().ordered > 0
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

#[cfg(test)]
mod tests {
    use webhook_domain::ordering::{DeliveryOrder, OrderingKey};

    use super::*;

    fn record(id: &str, owner: &str, types: &[&str]) -> WebhookRecord {
        WebhookRecord {
            id: WebhookId::parse(id).unwrap(),
            owner_id: UserId::parse(owner).unwrap(),
            url: format!("http://127.0.0.1:9/{id}"),
            event_types: types.iter().map(|t| t.to_string()).collect(),
            description: None,
            is_active: true,
            scope_all: false,
            secret: WebhookSecret::parse("whsec_routing-test-secret-0123456789").unwrap(),
            previous_secret: None,
            disabled_reason: None,
            disabled_at: None,
            failing_since: None,
            consecutive_exhausted: 0,
            created_at: 0,
            updated_at: 0,
            controls: DeliveryControls::default(),
            endpoint: EndpointOptions::default(),
        }
    }

    fn ids(routes: &[Arc<Route>]) -> Vec<String> {
        let mut ids: Vec<String> = routes.iter().map(|r| r.id.to_string()).collect();
        ids.sort();
        ids
    }

    fn credit_low() -> EventType {
        EventType::parse("credit.low").unwrap()
    }

    #[test]
    fn edits_change_only_the_webhook_they_name() {
        let table = RoutingTable::default();
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        table.upsert(record("wh_a1", "alice", &["credit.low"]));
        table.upsert(record("wh_a2", "alice", &["user.*"]));
        table.upsert(record("wh_b1", "bob", &["*"]));
        let mut everyone = record("wh_all", "admin", &["credit.*"]);
        everyone.scope_all = true;
        table.upsert(everyone);
        assert_eq!(
            ids(&table.matching(&alice, &credit_low())),
            ["wh_a1", "wh_all"]
        );
        assert_eq!(
            ids(&table.matching(&bob, &credit_low())),
            ["wh_all", "wh_b1"]
        );

        // A changed subscription replaces the route; no other moves.
        table.upsert(record("wh_a2", "alice", &["credit.low"]));
        assert_eq!(
            ids(&table.matching(&alice, &credit_low())),
            ["wh_a1", "wh_a2", "wh_all"]
        );
        // Paused: still known, no longer routed to.
        let mut paused = record("wh_a1", "alice", &["credit.low"]);
        paused.is_active = false;
        table.upsert(paused);
        assert_eq!(
            ids(&table.matching(&alice, &credit_low())),
            ["wh_a2", "wh_all"]
        );
        assert!(table.get(&WebhookId::parse("wh_a1").unwrap()).is_some());
        // Deleted: forgotten everywhere.
        table.remove(&WebhookId::parse("wh_all").unwrap());
        table.remove(&WebhookId::parse("wh_b1").unwrap());
        assert_eq!(ids(&table.matching(&alice, &credit_low())), ["wh_a2"]);
        assert!(table.matching(&bob, &credit_low()).is_empty());
        assert!(table.get(&WebhookId::parse("wh_b1").unwrap()).is_none());
    }

    #[test]
    fn order_and_rate_limits_follow_each_edit() {
        let table = RoutingTable::default();
        let mut ordered = record("wh_o", "alice", &["*"]);
        ordered.controls.ordering = Some(DeliveryOrder::Fifo(OrderingKey::Webhook));
        ordered.controls.rate_limit_per_second = Some(90);
        table.upsert(ordered);
        table.upsert(record("wh_p", "alice", &["*"]));
        assert!(table.any_ordered());
        assert_eq!(
            table.rate_limits(3),
            [(WebhookId::parse("wh_o").unwrap(), 30)]
        );
        // The same webhook without either control.
        table.upsert(record("wh_o", "alice", &["*"]));
        assert!(!table.any_ordered());
        assert!(table.rate_limits(1).is_empty());
        let mut limited = record("wh_p", "alice", &["*"]);
        limited.controls.rate_limit_per_second = Some(1);
        table.upsert(limited);
        assert_eq!(
            table.rate_limits(4),
            [(WebhookId::parse("wh_p").unwrap(), 1)],
            "at least 1 a second"
        );
        table.remove(&WebhookId::parse("wh_p").unwrap());
        assert!(table.rate_limits(1).is_empty());
    }

    #[test]
    fn a_webhook_without_controls_or_options_pays_a_pointer_for_each() {
        let route = Route::from_record(record("wh_a", "alice", &["*"])).unwrap();
        assert!(route.controls.0.is_none() && route.endpoint.0.is_none());
        assert_eq!(*route.controls, DeliveryControls::default());
        assert!(route.endpoint.sent.is_empty() && route.endpoint.logged.is_empty());
        assert!(route.endpoint.oauth.is_none() && route.endpoint.signing.is_none());
        // Held for every webhook: controls and options inline made it 1.6 KB.
        let size = std::mem::size_of::<Route>();
        assert!(size <= 256, "{size} bytes");
    }

    #[test]
    fn controls_read_as_stored_and_are_boxed_on_the_first_change() {
        let mut limited = record("wh_l", "alice", &["*"]);
        limited.controls.rate_limit_per_second = Some(5);
        limited.controls.ordering = Some(DeliveryOrder::Fifo(OrderingKey::UserId));
        let route = Route::from_record(limited.clone()).unwrap();
        assert_eq!(*route.controls, limited.controls);
        assert!(route.controls.timeout.is_none());

        let mut plain = Route::from_record(record("wh_p", "alice", &["*"])).unwrap();
        plain.controls.timeout = Some(std::time::Duration::from_secs(3));
        assert_eq!(
            plain.controls.timeout,
            Some(std::time::Duration::from_secs(3))
        );
        assert!(plain.controls.0.is_some());
        assert_eq!(RouteControls::from(DeliveryControls::default()).0, None);
    }

    fn oauth_options(client_secret: &str) -> EndpointOptions {
        use webhook_domain::endpoint::CustomHeaders;
        let auth = EndpointAuth::oauth2(
            "https://auth.example.com/token".into(),
            "client".into(),
            client_secret.into(),
            None,
            None,
        )
        .unwrap();
        EndpointOptions::new(CustomHeaders::default(), Some(auth)).unwrap()
    }

    fn with_options(options: EndpointOptions) -> Route {
        let mut webhook = record("wh_o", "alice", &["*"]);
        webhook.endpoint = options;
        Route::from_record(webhook).unwrap()
    }

    #[test]
    fn a_test_send_shares_tokens_only_under_the_same_credentials() {
        let live = with_options(oauth_options("secret-1"));
        let source = |r: &Route| r.endpoint.oauth.clone().unwrap();
        let mut same = with_options(oauth_options("secret-1"));
        assert!(!Arc::ptr_eq(&source(&same), &source(&live)));
        same.share_tokens_of(&live);
        assert!(Arc::ptr_eq(&source(&same), &source(&live)));

        let mut rotated = with_options(oauth_options("secret-2"));
        rotated.share_tokens_of(&live);
        assert!(!Arc::ptr_eq(&source(&rotated), &source(&live)));

        // Without OAuth2 there is nothing to share, either way.
        let mut plain = with_options(EndpointOptions::default());
        plain.share_tokens_of(&live);
        assert!(plain.endpoint.oauth.is_none());
        let mut oauth = with_options(oauth_options("secret-1"));
        oauth.share_tokens_of(&plain);
        assert!(oauth.endpoint.oauth.is_some());
    }

    #[tokio::test]
    async fn reload_builds_the_table_from_every_stored_webhook() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(
            dir.path(),
            crate::crypto::SecretCipher::new(&crate::crypto::EncryptionKey::new([7; 32])),
        )
        .unwrap();
        // More than a batch of the store's reads, so batches are joined.
        for i in 0..1200 {
            let owner = format!("user-{}", i % 600);
            let webhook = record(&format!("wh_{i}"), &owner, &["credit.low"]);
            store
                .create_webhook(new_webhook(webhook), 10)
                .await
                .unwrap();
        }
        let table = RoutingTable::default();
        table.upsert(record("wh_gone", "alice", &["*"]));
        table.reload(&store).await.unwrap();
        let snapshot = table.snapshot();
        assert_eq!(snapshot.by_id.len(), 1200, "the deleted one is forgotten");
        let user = UserId::parse("user-7").unwrap();
        assert_eq!(
            ids(&table.matching(&user, &credit_low())),
            ["wh_607", "wh_7"]
        );
        assert!(table.get(&WebhookId::parse("wh_gone").unwrap()).is_none());
    }

    // One runtime thread: the reload runs only while this test yields, and
    // its first run hands the read to a reader thread and waits, so every
    // edit after the first lands between the reload's start and its swap,
    // however busy the machine (on two runtime threads a descheduled test
    // could see the reload finish beside a single edit).
    #[tokio::test]
    async fn a_reload_finishes_under_a_stream_of_edits_and_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(
            dir.path(),
            crate::crypto::SecretCipher::new(&crate::crypto::EncryptionKey::new([7; 32])),
        )
        .unwrap();
        for i in 0..3000 {
            let webhook = record(&format!("wh_{i}"), &format!("user-{i}"), &["credit.low"]);
            store
                .create_webhook(new_webhook(webhook), 10)
                .await
                .unwrap();
        }
        let table = Arc::new(RoutingTable::default());
        let reload = tokio::spawn({
            let table = Arc::clone(&table);
            async move { table.reload(&store).await }
        });
        // Edits land throughout the read, as an API creating webhooks makes
        // them. This one is newer than anything the store holds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut edits = 0;
        while !reload.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "the reload never ends"
            );
            table.upsert(record("wh_edited", "alice", &["*"]));
            edits += 1;
            tokio::task::yield_now().await;
        }
        reload.await.unwrap().unwrap();
        assert!(edits > 1, "edits landed while the store was read ({edits})");
        assert_eq!(table.snapshot().by_id.len(), 3001);
        assert!(table.get(&WebhookId::parse("wh_edited").unwrap()).is_some());
        assert_eq!(
            ids(&table.matching(&UserId::parse("user-42").unwrap(), &credit_low())),
            ["wh_42"]
        );
    }

    fn new_webhook(r: WebhookRecord) -> crate::store::NewWebhook {
        crate::store::NewWebhook {
            id: r.id,
            owner_id: r.owner_id,
            url: r.url,
            event_types: r.event_types,
            description: r.description,
            is_active: r.is_active,
            scope_all: r.scope_all,
            secret: r.secret,
            now: r.created_at,
            controls: r.controls,
            endpoint: r.endpoint,
        }
    }

    #[test]
    fn a_reader_keeps_the_table_it_read_while_an_edit_lands() {
        let table = RoutingTable::default();
        let alice = UserId::parse("alice").unwrap();
        table.upsert(record("wh_a1", "alice", &["*"]));
        let held = table.snapshot();
        table.upsert(record("wh_a2", "alice", &["*"]));
        table.remove(&WebhookId::parse("wh_a1").unwrap());
        // The reader's version is whole and unchanged ...
        assert_eq!(held.by_id.len(), 1);
        assert_eq!(ids(&held.active_by_user[&alice]), ["wh_a1"]);
        // ... and the next reader sees both edits.
        assert_eq!(ids(&table.matching(&alice, &credit_low())), ["wh_a2"]);
    }
}
