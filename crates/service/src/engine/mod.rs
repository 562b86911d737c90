//! The delivery engine: ingest with fan-out, the dispatcher, the attempt
//! recorder, the retry scheduler and housekeeping.
//!
//! Flow of one event (see ARCHITECTURE.md):
//! 1. [`Engine::ingest`] fans the event out over the routing table, reserves
//!    window slots, and stores event + deliveries in one group commit.
//! 2. After the commit, deliveries that got a slot go straight to the
//!    dispatcher (no polling delay); the others wait in the store.
//! 3. The dispatcher starts attempts within the in-flight caps; each result
//!    goes to the recorder, which writes attempts in batches and frees slots.
//! 4. The scheduler claims due work (retries, overflow, recovered claims)
//!    from the store into free slots.

pub mod attempt;
mod dispatcher;
mod recorder;
pub mod routing;
mod scheduler;
pub mod window;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use webhook_domain::envelope::Event;
use webhook_domain::ids::{DeliveryId, EventId, WebhookId};
use webhook_domain::timefmt::now_ms;
use webhook_outbound::OutboundClient;

use crate::config::DeliveryConfig;
use crate::metrics::Metrics;
use crate::store::{
    AttemptReport, DueDelivery, FailurePolicy, IngestItem, IngestOutcome, NewDelivery, Owner,
    Store, StoreError,
};
use attempt::RetryRules;
use dispatcher::{Command, Verdict};
use recorder::RecorderMsg;
use routing::RoutingTable;
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

/// Shared state of the engine's tasks.
pub(crate) struct Inner {
    store: Arc<dyn Store>,
    routes: Arc<RoutingTable>,
    window: Window,
    client: OutboundClient,
    rules: RetryRules,
    failure_policy: FailurePolicy,
    config: DeliveryConfig,
    /// This process's claim marker in the store.
    owner: String,
    user_agent: String,
    metrics: Arc<Metrics>,
    dispatch: mpsc::UnboundedSender<Command>,
    recorder: mpsc::UnboundedSender<RecorderMsg>,
    wake_scheduler: Notify,
    stopping: watch::Sender<bool>,
    /// Held while an API change is applied to the routing table (see
    /// [`Engine::webhook_changed`]).
    route_edits: tokio::sync::Mutex<()>,
}

impl Inner {
    /// Frees a window slot of `webhook`, and wakes the scheduler when the
    /// window should be refilled from the store (see [`Window::release`]).
    fn free_slot(&self, webhook: &WebhookId) {
        if self.window.release(webhook) {
            self.wake_scheduler.notify_one();
        }
    }

    /// Gives claimed work back to the store unattempted (shutdown, paused
    /// or unknown webhook).
    async fn hand_back(self: &Arc<Self>, jobs: Vec<(WebhookId, DeliveryId)>) {
        if jobs.is_empty() {
            return;
        }
        let ids: Vec<DeliveryId> = jobs.iter().map(|(_, d)| d.clone()).collect();
        if let Err(e) = self.store.release(&self.owner, ids.clone()).await {
            tracing::warn!(error = %e, deliveries = ids.len(), "could not release claimed deliveries; retrying");
            self.release_later(ids);
        }
        for (webhook, _) in &jobs {
            self.free_slot(webhook);
        }
    }

    /// Keeps trying to release claims this process no longer acts on.
    ///
    /// A forgotten claim holds its delivery until the claim is voided, and
    /// only the claims of a process that has stopped are (at the next
    /// start-up, or by another instance once its heartbeat is gone): a
    /// running instance would never send it. Releasing a row that does not
    /// exist, or is no longer ours, changes nothing, so this is safe
    /// whatever the store did. While stopping, the claims are left to that
    /// voiding instead.
    fn release_later(self: &Arc<Self>, ids: Vec<DeliveryId>) {
        self.keep_trying(move |inner| {
            let ids = ids.clone();
            async move {
                let released = inner.store.release(&inner.owner, ids).await.is_ok();
                if released {
                    // Due again: the scheduler finds them.
                    inner.wake_scheduler.notify_one();
                }
                released
            }
        });
    }

    /// Keeps trying to record attempt reports that hold no window slot (a
    /// test send's), until the store takes them or the engine stops.
    fn record_later(self: &Arc<Self>, reports: Arc<Vec<AttemptReport>>) {
        self.keep_trying(move |inner| {
            let reports = reports.clone();
            async move {
                let policy = inner.failure_policy;
                inner
                    .store
                    .record_attempts(&inner.owner, reports, policy, now_ms())
                    .await
                    .is_ok()
            }
        });
    }

    /// Runs `attempt` in the background after a pause that doubles (up to
    /// 5 s) each time it answers `false`, until it answers `true` or the
    /// engine starts stopping.
    fn keep_trying<F, Fut>(self: &Arc<Self>, mut attempt: F)
    where
        F: FnMut(Arc<Inner>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = bool> + Send,
    {
        let inner = self.clone();
        tokio::spawn(async move {
            let mut stopping = inner.stopping.subscribe();
            let mut pause = RELOAD_RETRY;
            loop {
                if *stopping.borrow() {
                    return;
                }
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = stopping.changed() => return,
                }
                if attempt(inner.clone()).await {
                    return;
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        });
    }

    async fn ingest(self: &Arc<Self>, events: Vec<Event>) -> Result<Vec<Accepted>, StoreError> {
        let mut items = Vec::with_capacity(events.len());
        for event in events {
            let routes = self.routes.matching(&event.user_id, &event.event_type);
            let deliveries: Vec<NewDelivery> = routes
                .iter()
                .map(|route| NewDelivery {
                    id: DeliveryId::generate(),
                    webhook_id: route.id.clone(),
                    claimed: self.window.try_reserve(&route.id),
                })
                .collect();
            let payload = Bytes::from(event.envelope_bytes());
            items.push(IngestItem {
                event_id: event.id,
                event_type: event.event_type.as_str().to_string(),
                user_id: event.user_id,
                payload,
                idempotent: event.id_supplied,
                created_at: event.created_at_ms,
                deliveries,
            });
        }
        // Runs to completion even if the HTTP request that asked for it goes
        // away: claimed rows must reach the dispatcher once committed.
        // Shared with the store, not copied: the hot path allocates enough.
        let items = Arc::new(items);
        let inner = self.clone();
        let committed = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let result = inner.store.ingest(&inner.owner, items.clone()).await;
            if result.is_ok() {
                inner.metrics.observe_ingest_commit(started.elapsed());
            }
            inner.after_ingest(&items, result)
        });
        committed
            .await
            .map_err(|e| StoreError::Unavailable(format!("ingest task failed: {e}")))?
    }

    fn after_ingest(
        self: &Arc<Self>,
        items: &[IngestItem],
        result: Result<Vec<IngestOutcome>, StoreError>,
    ) -> Result<Vec<Accepted>, StoreError> {
        let outcomes = match result {
            Ok(outcomes) => outcomes,
            Err(e) => {
                let uncertain = matches!(e, StoreError::OutcomeUnknown(_));
                let mut claimed = Vec::new();
                for d in items
                    .iter()
                    .flat_map(|i| &i.deliveries)
                    .filter(|d| d.claimed)
                {
                    self.free_slot(&d.webhook_id);
                    claimed.push(d.id.clone());
                }
                // A commit cut off mid-way (PostgreSQL's connection lost) may
                // have stored the rows after all, claimed by this running
                // process, which will not send them: a producer retrying with
                // its event id gets "duplicate" and nothing would go out.
                // Released, they are due work like any other. (Any other
                // failure stored nothing: there is nothing to release.)
                if uncertain && !claimed.is_empty() {
                    self.release_later(claimed);
                }
                return Err(e);
            }
        };
        let mut accepted = Vec::with_capacity(items.len());
        let mut fast_path = Vec::new();
        for (item, outcome) in items.iter().zip(outcomes) {
            match outcome {
                IngestOutcome::Created | IngestOutcome::CreatedWithout { .. } => {
                    // A webhook deleted since the routing table was read got
                    // no delivery row: nothing of it may be sent or counted.
                    let skipped: &[WebhookId] = match &outcome {
                        IngestOutcome::CreatedWithout { skipped } => skipped,
                        _ => &[],
                    };
                    let mut ids = Vec::with_capacity(item.deliveries.len());
                    for d in &item.deliveries {
                        if skipped.contains(&d.webhook_id) {
                            if d.claimed {
                                self.free_slot(&d.webhook_id);
                            }
                            continue;
                        }
                        ids.push(d.id.clone());
                        if d.claimed {
                            fast_path.push(DueDelivery {
                                id: d.id.clone(),
                                event_id: item.event_id.clone(),
                                event_type: item.event_type.clone(),
                                webhook_id: d.webhook_id.clone(),
                                attempts: 0,
                                payload: item.payload.clone(),
                            });
                        }
                    }
                    self.metrics.events_ingested.fetch_add(1, Relaxed);
                    self.metrics
                        .deliveries_created
                        .fetch_add(ids.len() as u64, Relaxed);
                    accepted.push(Accepted {
                        event_id: item.event_id.clone(),
                        deliveries: ids,
                        duplicate: false,
                    });
                }
                IngestOutcome::Duplicate { deliveries } => {
                    self.metrics.events_duplicate.fetch_add(1, Relaxed);
                    for d in item.deliveries.iter().filter(|d| d.claimed) {
                        self.free_slot(&d.webhook_id);
                    }
                    accepted.push(Accepted {
                        event_id: item.event_id.clone(),
                        deliveries,
                        duplicate: true,
                    });
                }
            }
        }
        if !fast_path.is_empty() {
            // The dispatcher only stops at shutdown, after the HTTP server; a
            // failed send leaves the claims to be voided at the next start.
            let _ = self.dispatch.send(Command::Submit(fast_path));
        }
        Ok(accepted)
    }
}

/// Runs one attempt of `job` and reports it; frees the in-flight slot.
async fn run_attempt(inner: Arc<Inner>, job: DueDelivery) {
    let webhook = job.webhook_id.clone();
    let mut slow = false;
    let verdict = match inner.routes.get(&webhook) {
        // Deleted (its rows went with it, and the release finds nothing), or
        // not in this instance's table yet (created on another instance, not
        // reloaded here) or any more (a stored row that no longer parses):
        // the claim must not outlive this attempt unsent.
        None => {
            inner.hand_back(vec![(webhook.clone(), job.id)]).await;
            Verdict::Neutral
        }
        // Paused or disabled: the delivery waits in the store until it is re-enabled.
        Some(route) if !route.is_active => {
            inner.hand_back(vec![(webhook.clone(), job.id)]).await;
            Verdict::Neutral
        }
        Some(route) => {
            // Boxed: the attempt's state (the outbound exchange, its
            // connect and TLS handshake) is kilobytes, and kept inline it
            // made this task's future as large, copied whole on every
            // spawn (about 1.3 % of the service's CPU in `batch`, perf).
            let mut attempt = Box::pin(attempt::attempt(
                &inner.client,
                &inner.rules,
                &inner.user_agent,
                &route,
                &job,
                false,
            ));
            let report = tokio::select! {
                biased;
                report = &mut attempt => report,
                () = tokio::time::sleep(dispatcher::SLOW_AFTER) => {
                    // A hanging endpoint must not hold global slots for a whole timeout.
                    slow = true;
                    let _ = inner.dispatch.send(Command::Slow(webhook.clone()));
                    attempt.await
                }
            };
            inner
                .metrics
                .observe_attempt(u64::from(report.attempt.duration_ms) * 1000);
            let verdict = verdict_of(&report);
            let _ = inner.recorder.send(RecorderMsg::Report(Box::new(report)));
            verdict
        }
    };
    let _ = inner.dispatch.send(Command::Done(webhook, verdict, slow));
}

/// What one attempt says about its endpoint, for the circuit breaker.
fn verdict_of(report: &AttemptReport) -> Verdict {
    use webhook_domain::delivery::{AttemptErrorKind as K, DeliveryStatus};
    if report.status == DeliveryStatus::Delivered {
        return Verdict::Healthy;
    }
    match (report.attempt.error_kind, report.attempt.status_code) {
        (Some(K::Timeout | K::Connect | K::Dns | K::Tls), _) => Verdict::Failing,
        (_, Some(code)) if code >= 500 || code == 429 => Verdict::Failing,
        _ => Verdict::Neutral,
    }
}

/// Pause before reloading again after a reload failed (the store is away).
const RELOAD_RETRY: Duration = Duration::from_millis(250);

/// Reloads the routing table whenever any instance changes a webhook, so that
/// every instance honours the change for its next event. A reload that fails
/// is retried until it succeeds: the change must not be lost while the store
/// is briefly unreachable (after reconnecting the store announces one too).
async fn follow_webhook_changes(inner: Arc<Inner>, mut changes: watch::Receiver<u64>) {
    while changes.changed().await.is_ok() {
        reload_until_done(&inner).await;
    }
}

/// Reloads the whole routing table, retrying until the store answers, then
/// wakes the scheduler (a re-enabled webhook may have deliveries waiting).
async fn reload_until_done(inner: &Inner) {
    let mut failed = false;
    while let Err(e) = inner.routes.reload(inner.store.as_ref()).await {
        // Once per outage: the store logs the rest.
        if !failed {
            tracing::warn!(error = %e, "cannot reload webhooks after a change; retrying");
            failed = true;
        }
        tokio::time::sleep(RELOAD_RETRY).await;
    }
    inner.wake_scheduler.notify_one();
}

/// Handle to the running engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("owner", &self.inner.owner)
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
        let inner = Arc::new(Inner {
            store,
            routes,
            window: Window::new(config.window, config.window_per_webhook),
            client,
            rules: RetryRules {
                schedule: config.schedule.clone(),
                max_retry_after: config.max_retry_after,
            },
            failure_policy: FailurePolicy {
                failing_for_ms: config.disable_after_failing_for.as_millis() as i64,
                exhausted_in_a_row: config.disable_after_exhausted,
            },
            config,
            owner,
            user_agent: user_agent(),
            metrics,
            dispatch,
            recorder: recorder_tx,
            wake_scheduler: Notify::new(),
            stopping: watch::channel(false).0,
            route_edits: tokio::sync::Mutex::new(()),
        });
        let mut tasks = vec![
            tokio::spawn(dispatcher::run(inner.clone(), dispatch_rx)),
            tokio::spawn(recorder::run(inner.clone(), recorder_rx)),
            tokio::spawn(scheduler::run(inner.clone())),
            tokio::spawn(scheduler::beat(inner.clone())),
            tokio::spawn(scheduler::prune(inner.clone(), log_retention)),
        ];
        if let Some(changes) = inner.store.webhook_changes() {
            tasks.push(tokio::spawn(follow_webhook_changes(inner.clone(), changes)));
        }
        Ok(Engine {
            inner,
            tasks: Arc::new(std::sync::Mutex::new(tasks)),
        })
    }

    /// Stores events durably with their deliveries and queues them; answers after the commit.
    pub async fn ingest(&self, events: Vec<Event>) -> Result<Vec<Accepted>, StoreError> {
        self.inner.ingest(events).await
    }

    /// Makes the scheduler look for due work now (after a retry or replay).
    pub fn wake(&self) {
        self.inner.wake_scheduler.notify_one();
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
            let _one_at_a_time = self.inner.route_edits.lock().await;
            match self.inner.store.get_webhook(id, Owner::Any).await {
                Ok(Some(record)) => self.inner.routes.upsert(record),
                Ok(None) => self.inner.routes.remove(id),
                Err(e) => {
                    tracing::warn!(error = %e, webhook_id = %id, "cannot read a changed webhook back; reloading all");
                    let inner = self.inner.clone();
                    tokio::spawn(async move { reload_until_done(&inner).await });
                }
            }
        }
        self.wake();
    }

    /// Slots used and capacity of the in-memory window.
    pub fn window_usage(&self) -> (usize, usize) {
        (self.inner.window.used(), self.inner.config.window)
    }

    /// Sends `event` to `route` once, synchronously: stores it with one
    /// claimed delivery, makes a single attempt and records it as a test send
    /// (which never changes the webhook's health, so nothing is disabled here).
    ///
    /// Runs to completion even if the caller goes away: a delivery left
    /// claimed and pending would be sent again as real traffic after a restart.
    pub async fn test_send(
        &self,
        event: Event,
        route: Arc<routing::Route>,
    ) -> Result<AttemptReport, StoreError> {
        let inner = self.inner.clone();
        let payload = Bytes::from(event.envelope_bytes());
        let job = DueDelivery {
            id: DeliveryId::generate(),
            event_id: event.id.clone(),
            event_type: event.event_type.as_str().to_string(),
            webhook_id: route.id.clone(),
            attempts: 0,
            payload: payload.clone(),
        };
        let item = IngestItem {
            event_id: event.id,
            event_type: job.event_type.clone(),
            user_id: event.user_id,
            payload,
            idempotent: false,
            created_at: event.created_at_ms,
            deliveries: vec![NewDelivery {
                id: job.id.clone(),
                webhook_id: route.id.clone(),
                claimed: true,
            }],
        };
        let task = tokio::spawn(async move {
            if let Err(e) = inner.store.ingest(&inner.owner, Arc::new(vec![item])).await {
                // Perhaps stored after all, claimed by this process: given
                // back, it goes out once like any due delivery (its event
                // says `test: true`) instead of staying pending and claimed.
                if matches!(e, StoreError::OutcomeUnknown(_)) {
                    inner.release_later(vec![job.id.clone()]);
                }
                return Err(e);
            }
            let report = attempt::attempt(
                &inner.client,
                &inner.rules,
                &inner.user_agent,
                &route,
                &job,
                true,
            )
            .await;
            let reports = Arc::new(vec![report]);
            if let Err(e) = inner
                .store
                .record_attempts(
                    &inner.owner,
                    reports.clone(),
                    inner.failure_policy,
                    now_ms(),
                )
                .await
            {
                // The request was sent and its answer is the caller's; the
                // log gets it once the store is back. Left unrecorded, the
                // claimed, pending test delivery would be sent again as
                // real traffic after a restart.
                tracing::warn!(error = %e, "cannot record a test send yet; retrying");
                inner.record_later(reports.clone());
            }
            Ok(Arc::unwrap_or_clone(reports).remove(0))
        });
        task.await
            .map_err(|e| StoreError::Unavailable(format!("test send task failed: {e}")))?
    }

    /// Stops scheduling, lets in-flight attempts finish within `grace`, hands
    /// queued work back to the store and flushes the recorder.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.inner.stopping.send(true);
        let (reply, queued) = oneshot::channel();
        if self
            .inner
            .dispatch
            .send(Command::Shutdown(grace, reply))
            .is_ok()
            && let Ok(queued) = queued.await
        {
            self.inner.hand_back(queued).await;
        }
        let (flushed, done) = oneshot::channel();
        if self
            .inner
            .recorder
            .send(RecorderMsg::Flush(flushed))
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(10), done).await;
        }
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            task.abort();
        }
    }
}
