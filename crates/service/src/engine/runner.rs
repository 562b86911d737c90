//! One attempt's life: from the dispatcher's decision to the recorder.
//!
//! The attempt runs in a task of its own: it finds the webhook's route
//! (handing the claim back if the webhook is gone or paused), signs and
//! sends through [`attempt`](super::attempt), tells the dispatcher when it
//! has run long enough to count as slow, sends its report to the recorder
//! and its verdict to the dispatcher. Test sends live here too: one attempt
//! made and recorded right away, outside the queues.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use webhook_domain::envelope::Event;
use webhook_domain::ids::{DeliveryId, WebhookId};
use webhook_domain::timefmt::now_ms;
use webhook_outbound::OutboundClient;

use super::attempt::{self, RetryRules};
use super::circuit::Verdict;
use super::claims::Claims;
use super::dispatcher::{Command, Launch, SLOW_AFTER};
use super::recorder::RecorderMsg;
use super::routing::{Route, RoutingTable};
use crate::metrics::Metrics;
use crate::store::{
    AttemptReport, Claimed, DueDelivery, IngestItem, NewDelivery, StoreError, WebhookRecord,
};

/// Why a test send could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TestSendError {
    /// The store could not take the test event.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored webhook no longer parses into a destination (its URL or
    /// event types were valid when written, not any more).
    #[error("webhook {0} cannot be routed: its stored URL or event types no longer parse")]
    Unroutable(String),
}

/// What every attempt needs.
pub(crate) struct Runner {
    pub(super) routes: Arc<RoutingTable>,
    pub(super) client: OutboundClient,
    pub(super) rules: RetryRules,
    pub(super) user_agent: String,
    pub(super) metrics: Arc<Metrics>,
    pub(super) claims: Arc<Claims>,
    pub(super) dispatch: mpsc::UnboundedSender<Command>,
    pub(super) recorder: mpsc::UnboundedSender<RecorderMsg>,
}

impl Launch for Arc<Runner> {
    fn launch(&self, job: DueDelivery) {
        tokio::spawn(self.clone().run(job));
    }

    fn rate_limits(&self) -> Vec<(WebhookId, u32)> {
        let instances = self
            .claims
            .live_instances
            .load(std::sync::atomic::Ordering::Relaxed);
        self.routes.rate_limits(instances)
    }
}

impl Runner {
    /// Runs one attempt of `job` and reports it; frees the in-flight slot.
    async fn run(self: Arc<Self>, job: DueDelivery) {
        let webhook = job.webhook_id.clone();
        let mut slow = false;
        let mut overloaded = false;
        let verdict = match self.routes.get(&webhook) {
            // Deleted (its rows went with it, and the release finds nothing), or
            // not in this instance's table yet (created on another instance, not
            // reloaded here) or any more (a stored row that no longer parses):
            // the claim must not outlive this attempt unsent.
            None => {
                self.claims.hand_back(vec![(webhook.clone(), job.id)]).await;
                Verdict::Neutral
            }
            // Paused or disabled: the delivery waits in the store until it is re-enabled.
            Some(route) if !route.is_active => {
                self.claims.hand_back(vec![(webhook.clone(), job.id)]).await;
                Verdict::Neutral
            }
            Some(route) => {
                // Boxed: this task's future is copied whole on every spawn,
                // and inline the attempt's state made it as large (about
                // 1.3 % of the service's CPU in `batch`, perf, when the
                // attempt still held its exchange; that is boxed inside it
                // now, see `attempt`).
                let mut attempt = Box::pin(attempt::attempt(
                    &self.client,
                    &self.rules,
                    &self.user_agent,
                    &route,
                    &job,
                    false,
                ));
                let report = tokio::select! {
                    biased;
                    report = &mut attempt => report,
                    () = tokio::time::sleep(SLOW_AFTER) => {
                        // A hanging endpoint must not hold global slots for a whole timeout.
                        slow = true;
                        let _ = self.dispatch.send(Command::Slow(webhook.clone()));
                        attempt.await
                    }
                };
                self.metrics
                    .observe_attempt(u64::from(report.attempt.duration_ms) * 1000);
                let verdict = verdict_of(&report);
                overloaded = report
                    .attempt
                    .status_code
                    .is_some_and(webhook_domain::pacing::is_overload_status);
                // One readable line per attempt for a developer watching
                // `serve --dev`, which enables this target; production's
                // default filter (`info`) leaves it off, so no per-delivery log.
                tracing::debug!(
                    target: DELIVERY_LOG_TARGET,
                    "{}",
                    attempt_line(&job, route.url.as_str(), &report)
                );
                let _ = self.recorder.send(RecorderMsg::Report(Box::new(report)));
                verdict
            }
        };
        let _ = self
            .dispatch
            .send(Command::Done(webhook, verdict, slow, overloaded));
    }

    /// Sends `event` to `webhook` once, synchronously: stores it with one
    /// claimed delivery, makes a single attempt and records it as a test
    /// send (which never changes the webhook's health, so nothing is
    /// disabled here). A paused webhook is sent to as well: the user asked.
    ///
    /// Runs to completion even if the caller goes away: a delivery left
    /// claimed and pending would be sent again as real traffic after a restart.
    pub(super) async fn test_send(
        self: &Arc<Self>,
        event: Event,
        webhook: WebhookRecord,
    ) -> Result<AttemptReport, TestSendError> {
        let webhook_id = webhook.id.clone();
        let mut route = Route::for_test_send(webhook)
            .ok_or_else(|| TestSendError::Unroutable(webhook_id.to_string()))?;
        if let Some(live) = self.routes.get(&webhook_id) {
            route.share_tokens_of(&live);
        }
        let payload = Bytes::from(event.envelope_bytes());
        let job = DueDelivery {
            id: DeliveryId::generate(),
            event_id: event.id.clone(),
            event_type: event.event_type.as_str().to_string(),
            webhook_id: webhook_id.clone(),
            attempts: 0,
            payload: payload.clone(),
            claimed: Claimed::new_delivery(event.created_at_ms),
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
                webhook_id,
                claimed: true,
                // A test send is outside the webhook's order, if it has one.
                ordering_key: None,
            }],
        };
        let runner = self.clone();
        let task = tokio::spawn(async move {
            let claims = &runner.claims;
            if let Err(e) = claims
                .store
                .ingest(&claims.owner, Arc::new(vec![item]))
                .await
            {
                // Perhaps stored after all, claimed by this process: given
                // back, it goes out once like any due delivery (its event
                // says `test: true`) instead of staying pending and claimed.
                if matches!(e, StoreError::OutcomeUnknown(_)) {
                    claims.release_later(vec![job.id.clone()]);
                }
                return Err(e);
            }
            let report = attempt::attempt(
                &runner.client,
                &runner.rules,
                &runner.user_agent,
                &route,
                &job,
                true,
            )
            .await;
            let counter = match verdict_of(&report) {
                Verdict::Healthy => &runner.metrics.test_sends_succeeded,
                Verdict::Failing | Verdict::Neutral => &runner.metrics.test_sends_failed,
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let reports = Arc::new(vec![report]);
            if let Err(e) = claims
                .store
                .record_attempts(
                    &claims.owner,
                    reports.clone(),
                    claims.failure_policy,
                    now_ms(),
                )
                .await
            {
                // The request was sent and its answer is the caller's; the
                // log gets it once the store is back. Left unrecorded, the
                // claimed, pending test delivery would be sent again as
                // real traffic after a restart.
                tracing::warn!(error = %e, "cannot record a test send yet; retrying");
                claims.record_later(reports.clone());
            }
            Ok(Arc::unwrap_or_clone(reports).remove(0))
        });
        let report = task
            .await
            .map_err(|e| StoreError::Unavailable(format!("test send task failed: {e}")))??;
        Ok(report)
    }
}

/// The tracing target of the one-line-per-attempt log `serve --dev` shows.
pub const DELIVERY_LOG_TARGET: &str = "webhook_service::delivery";

/// `user.created evt_… → http://… : delivered (200 in 12 ms, attempt 1)`.
fn attempt_line(job: &DueDelivery, url: &str, report: &AttemptReport) -> String {
    let a = &report.attempt;
    let answer = match (a.status_code, &a.error_message) {
        (Some(code), _) => format!("{code} in {} ms", a.duration_ms),
        (None, Some(error)) => format!("{error} after {} ms", a.duration_ms),
        (None, None) => format!("no answer after {} ms", a.duration_ms),
    };
    let next = match report.next_attempt_at {
        Some(at) => format!(
            ", next attempt at {}",
            webhook_domain::timefmt::format_rfc3339_millis(at)
        ),
        None => String::new(),
    };
    format!(
        "{} {} {} → {url}: {} ({answer}, attempt {}{next})",
        job.event_type,
        job.event_id,
        job.id,
        report.status.as_str(),
        a.attempt
    )
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
