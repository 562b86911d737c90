//! The delivery engine: ingest with fan-out, the dispatcher, the attempt
//! recorder, the retry scheduler and housekeeping.
//!
//! Flow of one event (see ARCHITECTURE.md):
//! 1. [`Engine::ingest`] fans the event out over the routing table, reserves
//!    window slots, and stores event + deliveries in one group commit.
//! 2. After the commit, deliveries that got a slot go straight to the
//!    dispatcher (no polling delay); the others wait in the store.
//! 3. The dispatcher starts attempts within the in-flight caps and circuit
//!    breakers; each attempt runs its life in a task of its own (`runner`)
//!    and its result goes to the recorder, which writes attempts in batches
//!    and frees slots.
//! 4. The scheduler claims due work (retries, overflow, recovered claims)
//!    from the store into free slots.
//!
//! Each part gets the handles it needs and no more: `claims` (the store,
//! this instance's claim marker, the window, the scheduler's wake-up) is
//! what they share.

mod attempt;
pub mod circuit;
mod claims;
mod dispatcher;
mod ingest;
pub mod oauth;
mod recorder;
pub mod routing;
mod runner;
mod scheduler;
pub mod window;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use webhook_domain::envelope::Event;
use webhook_domain::ids::{DeliveryId, EventId, WebhookId};
use webhook_outbound::{ConnectionUsage, OutboundClient};

pub use attempt::sent_headers;
pub use runner::DELIVERY_LOG_TARGET;
pub use runner::TestSendError;

use crate::config::DeliveryConfig;
use crate::metrics::Metrics;
use crate::store::{
    AttemptReport, FailurePolicy, Owner, Store, StoreError, VisibleWebhook, WebhookChanges,
};
use attempt::RetryRules;
use circuit::CircuitView;
use claims::Claims;
use dispatcher::{Caps, Command, Dispatcher};
use ingest::Ingest;
use recorder::{Recorder, RecorderMsg};
use routing::RoutingTable;
use runner::Runner;
use window::Window;

/// The `User-Agent` of every delivery.
pub fn user_agent() -> String {
    format!("SmartAIHub-Webhooks/{}", env!("CARGO_PKG_VERSION"))
}

/// What ingest answered for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The event id (the first copy's for a duplicate).
    pub event_id: EventId,
    /// Deliveries created (or existing, for a duplicate).
    pub deliveries: Vec<DeliveryId>,
    /// The id was seen before; nothing new was stored or will be delivered.
    pub duplicate: bool,
}

/// Pause before reloading again after a reload failed (the store is away).
const RELOAD_RETRY: Duration = claims::RETRY_PAUSE;

/// Applies every instance's webhook changes to the routing table, so that
/// every instance honours a change for its next event: the webhooks
/// announced are read again by id, in one query (a full reload decrypts
/// every secret: with 100,000 webhooks, over a second of CPU per change,
/// and a busy API changes them faster than that). Every webhook is read again
/// only when announcements may have been missed or came in bulk. Reading is
/// retried until it succeeds: a change must not be lost while the store is
/// briefly unreachable.
async fn follow_webhook_changes(
    claims: Arc<Claims>,
    routes: Arc<RoutingTable>,
    dispatch: mpsc::UnboundedSender<Command>,
    route_edits: Arc<tokio::sync::Mutex<()>>,
    mut changes: watch::Receiver<u64>,
) {
    while changes.changed().await.is_ok() {
        let refreshed = match claims.store.take_webhook_changes() {
            WebhookChanges::These(ids) => match refresh(&claims, &routes, &route_edits, &ids).await
            {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read changed webhooks back; reloading all");
                    false
                }
            },
            WebhookChanges::All => false,
        };
        if !refreshed {
            reload_until_done(&claims, &routes).await;
        }
        apply_rate_limits(&claims, &routes, &dispatch);
        // A re-enabled webhook may have deliveries waiting.
        claims.wake_scheduler.notify_one();
    }
}

/// Reads webhooks `ids` again into the routing table in one query (a
/// deleted one leaves it), under `route_edits` as an API change is (see
/// [`Engine::webhook_changed`]): the last to apply has read the last
/// commit. (One query per id fell behind an API creating a webhook every
/// millisecond, and the backlog grew into full reloads.)
async fn refresh(
    claims: &Claims,
    routes: &RoutingTable,
    route_edits: &tokio::sync::Mutex<()>,
    ids: &[WebhookId],
) -> Result<(), StoreError> {
    let _one_at_a_time = route_edits.lock().await;
    let found = claims.store.webhooks_by_id(ids).await?;
    let mut gone: std::collections::HashSet<&WebhookId> = ids.iter().collect();
    for record in found {
        gone.remove(&record.id);
        routes.upsert(record);
    }
    for id in gone {
        routes.remove(id);
    }
    Ok(())
}

/// Reloads the whole routing table, retrying until the store answers.
async fn reload_until_done(claims: &Claims, routes: &RoutingTable) {
    let mut failed = false;
    while let Err(e) = routes.reload(claims.store.as_ref()).await {
        // Once per outage: the store logs the rest.
        if !failed {
            tracing::warn!(error = %e, "cannot reload webhooks after a change; retrying");
            failed = true;
        }
        tokio::time::sleep(RELOAD_RETRY).await;
    }
}

/// How often a shared store is asked how many instances share it.
const INSTANCES_EVERY: Duration = Duration::from_secs(2);

/// Keeps this instance's part of every rate limit current as instances
/// join and leave a shared store (each paces at limit / instances).
async fn follow_instances(
    claims: Arc<Claims>,
    routes: Arc<RoutingTable>,
    dispatch: mpsc::UnboundedSender<Command>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    loop {
        if let Ok(n) = claims.store.live_instances().await {
            let n = n.max(1);
            if claims.live_instances.swap(n, Relaxed) != n {
                apply_rate_limits(&claims, &routes, &dispatch);
            }
        }
        tokio::time::sleep(INSTANCES_EVERY).await;
    }
}

/// Applies the routing table's rate limits: to deliveries already queued
/// (the dispatcher's buckets), not only to new ones, and to the window (a
/// paced webhook's backlog waits in the store).
fn apply_rate_limits(
    claims: &Claims,
    routes: &RoutingTable,
    dispatch: &mpsc::UnboundedSender<Command>,
) {
    let instances = claims
        .live_instances
        .load(std::sync::atomic::Ordering::Relaxed);
    let limits = routes.rate_limits(instances);
    claims.window.set_shares(
        limits
            .into_iter()
            .map(|(id, limit)| (id, Window::paced_share(limit))),
    );
    let _ = dispatch.send(Command::ControlsChanged);
}

/// Handle to the running engine.
#[derive(Clone)]
pub struct Engine {
    claims: Arc<Claims>,
    routes: Arc<RoutingTable>,
    ingest: Arc<Ingest>,
    runner: Arc<Runner>,
    dispatch: mpsc::UnboundedSender<Command>,
    recorder: mpsc::UnboundedSender<RecorderMsg>,
    window_capacity: usize,
    /// Held while a change is read back and applied to the routing table
    /// (see [`Engine::webhook_changed`]), by the API and by the follower of
    /// other instances' changes.
    route_edits: Arc<tokio::sync::Mutex<()>>,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("owner", &self.claims.owner)
            .finish()
    }
}

impl Engine {
    /// Starts the engine's tasks: recovers claims left by a previous run, then
    /// dispatches, records, schedules and prunes.
    pub async fn start(
        store: Arc<dyn Store>,
        routes: Arc<RoutingTable>,
        client: OutboundClient,
        config: DeliveryConfig,
        log_retention: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Engine, StoreError> {
        let owner = format!("i-{:016x}", fastrand::u64(..));
        store.heartbeat(&owner).await?;
        let recovered = store.recover_claims(&owner).await?;
        if recovered > 0 {
            tracing::info!(
                recovered,
                "deliveries claimed by a previous run are due again"
            );
        }
        let (dispatch, dispatch_rx) = mpsc::unbounded_channel();
        let (recorder_tx, recorder_rx) = mpsc::unbounded_channel();
        let claims = Arc::new(Claims {
            store,
            owner,
            window: Window::new(config.window, config.window_per_webhook),
            failure_policy: FailurePolicy {
                failing_for_ms: config.disable_after_failing_for.as_millis() as i64,
                exhausted_in_a_row: config.disable_after_exhausted,
            },
            wake_scheduler: Notify::new(),
            stopping: watch::channel(false).0,
            live_instances: std::sync::atomic::AtomicU32::new(1),
        });
        let ingest = Arc::new(Ingest {
            routes: routes.clone(),
            claims: claims.clone(),
            metrics: metrics.clone(),
            dispatch: dispatch.clone(),
        });
        let runner = Arc::new(Runner {
            routes: routes.clone(),
            client,
            rules: RetryRules {
                schedule: config.schedule.clone(),
                max_retry_after: config.max_retry_after,
            },
            user_agent: user_agent(),
            metrics: metrics.clone(),
            claims: claims.clone(),
            dispatch: dispatch.clone(),
            recorder: recorder_tx.clone(),
        });
        let dispatcher = Dispatcher::new(
            runner.clone(),
            Caps {
                max_in_flight: config.max_in_flight,
                per_webhook: config.max_in_flight_per_webhook,
            },
            metrics.clone(),
        );
        apply_rate_limits(&claims, &routes, &dispatch);
        let recorder = Recorder {
            claims: claims.clone(),
            metrics,
            routes: routes.clone(),
            ingest: ingest.clone(),
        };
        let mut tasks = vec![
            tokio::spawn(dispatcher::run(dispatcher, claims.clone(), dispatch_rx)),
            tokio::spawn(recorder::run(recorder, recorder_rx)),
            tokio::spawn(scheduler::run(claims.clone(), dispatch.clone())),
            tokio::spawn(scheduler::beat(claims.clone())),
            tokio::spawn(scheduler::prune(claims.clone(), log_retention)),
        ];
        let route_edits = Arc::new(tokio::sync::Mutex::new(()));
        if let Some(changes) = claims.store.webhook_changes() {
            tasks.push(tokio::spawn(follow_instances(
                claims.clone(),
                routes.clone(),
                dispatch.clone(),
            )));
            tasks.push(tokio::spawn(follow_webhook_changes(
                claims.clone(),
                routes.clone(),
                dispatch.clone(),
                route_edits.clone(),
                changes,
            )));
        }
        Ok(Engine {
            claims,
            routes,
            ingest,
            runner,
            dispatch,
            recorder: recorder_tx,
            window_capacity: config.window,
            route_edits,
            tasks: Arc::new(std::sync::Mutex::new(tasks)),
        })
    }

    /// Stores events durably with their deliveries and queues them; answers after the commit.
    pub async fn ingest(&self, events: Vec<Event>) -> Result<Vec<Accepted>, StoreError> {
        self.ingest.ingest(events).await
    }

    /// Makes the scheduler look for due work now (after a retry or replay).
    pub fn wake(&self) {
        self.claims.wake_scheduler.notify_one();
    }

    /// Routes the next events by a webhook's state as stored now (changed or
    /// deleted through the API), then wakes the scheduler (a re-enabled
    /// webhook may have deliveries waiting).
    ///
    /// Two changes of one webhook committed together (a `PATCH` and a
    /// `DELETE`) reach here in either order: applying the record each request
    /// got let the older one win, and a deleted webhook's route came back.
    /// Read back one at a time under a lock, the last to apply has read the
    /// last commit. If the store cannot be read, the whole table is reloaded
    /// until it can.
    pub async fn webhook_changed(&self, id: &WebhookId) {
        {
            let _one_at_a_time = self.route_edits.lock().await;
            match self.claims.store.get_webhook(id, Owner::Any).await {
                Ok(Some(record)) => self.routes.upsert(record),
                Ok(None) => self.routes.remove(id),
                Err(e) => {
                    tracing::warn!(error = %e, webhook_id = %id, "cannot read a changed webhook back; reloading all");
                    let (claims, routes) = (self.claims.clone(), self.routes.clone());
                    let dispatch = self.dispatch.clone();
                    tokio::spawn(async move {
                        reload_until_done(&claims, &routes).await;
                        apply_rate_limits(&claims, &routes, &dispatch);
                        claims.wake_scheduler.notify_one();
                    });
                }
            }
        }
        apply_rate_limits(&self.claims, &self.routes, &self.dispatch);
        self.wake();
    }

    /// Slots used and capacity of the in-memory window.
    pub fn window_usage(&self) -> (usize, usize) {
        (self.claims.window.used(), self.window_capacity)
    }

    /// The outbound connections open and idle, and the attempts waiting
    /// for one (`WEBHOOK_MAX_CONNECTIONS`).
    pub fn connection_usage(&self) -> ConnectionUsage {
        self.runner.client.connection_usage()
    }

    /// Sends `event` to `webhook` once, synchronously: stores it with one
    /// claimed delivery, makes a single attempt and records it as a test send
    /// (which never changes the webhook's health, so nothing is disabled here).
    ///
    /// Runs to completion even if the caller goes away: a delivery left
    /// claimed and pending would be sent again as real traffic after a restart.
    pub async fn test_send(
        &self,
        event: Event,
        webhook: VisibleWebhook,
    ) -> Result<AttemptReport, TestSendError> {
        self.runner.test_send(event, webhook.into_record()).await
    }

    /// This instance's circuit breakers of `webhooks`, in the same order
    /// (closed for a webhook it has seen no failure of). On PostgreSQL each
    /// instance judges an endpoint by its own attempts.
    pub async fn circuits(&self, webhooks: Vec<WebhookId>) -> Vec<CircuitView> {
        let n = webhooks.len();
        let (reply, answer) = oneshot::channel();
        if self
            .dispatch
            .send(Command::Circuits(webhooks, reply))
            .is_err()
        {
            // Stopped: no attempt goes out, nothing is held.
            return vec![CircuitView::CLOSED; n];
        }
        answer
            .await
            .unwrap_or_else(|_| vec![CircuitView::CLOSED; n])
    }

    /// Stops scheduling, lets in-flight attempts finish within `grace`, hands
    /// queued work back to the store and flushes the recorder.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.claims.stopping.send(true);
        let (reply, queued) = oneshot::channel();
        if self.dispatch.send(Command::Shutdown(grace, reply)).is_ok()
            && let Ok(queued) = queued.await
        {
            self.claims.hand_back(queued).await;
        }
        let (flushed, done) = oneshot::channel();
        if self.recorder.send(RecorderMsg::Flush(flushed)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), done).await;
        }
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            task.abort();
        }
    }
}
