//! Writes attempt results to the store in batches and frees their window slots.
//!
//! Attempts finish one by one, but each commit takes every result that
//! arrived meanwhile or within a few milliseconds of the first, so
//! bookkeeping costs one transaction per batch, not per attempt. A slot is freed only after its attempt is committed: while the
//! store is down, the window fills and the engine stops taking work instead
//! of piling results up in memory.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use webhook_domain::delivery::DeliveryStatus;
use webhook_domain::envelope::EventInput;
use webhook_domain::timefmt::{format_rfc3339_millis, now_ms};

use super::claims::Claims;
use super::ingest::Ingest;
use super::routing::RoutingTable;
use crate::metrics::Metrics;
use crate::store::{AttemptReport, DisabledWebhook};

const MAX_BATCH: usize = 4096;

/// How long the recorder waits for more results after the first of a batch.
///
/// No caller waits for these commits (the receiver already has the delivery;
/// only the log and the window slot do), but each costs the writer a
/// transaction whose pages go to the WAL whole: at low rates one commit per
/// result would write those pages again for every delivery.
const GATHER: Duration = Duration::from_millis(5);

/// Messages to the recorder.
pub enum RecorderMsg {
    /// One finished attempt.
    Report(Box<AttemptReport>),
    /// Answer once everything sent before is committed.
    Flush(oneshot::Sender<()>),
}

/// What the recorder needs: the store and slots (through `claims`), and
/// for webhooks the store disabled, the routing table to reload and ingest
/// to announce them with.
pub(crate) struct Recorder {
    pub(super) claims: Arc<Claims>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) routes: Arc<RoutingTable>,
    pub(super) ingest: Arc<Ingest>,
}

/// Runs the recorder until its channel closes.
pub async fn run(inner: Recorder, mut messages: mpsc::UnboundedReceiver<RecorderMsg>) {
    let mut flushes = Vec::new();
    while let Some(first) = messages.recv().await {
        let mut batch: Vec<AttemptReport> = Vec::new();
        let deadline = tokio::time::Instant::now() + GATHER;
        let mut next = Some(first);
        // Read once per batch: without FIFO webhooks nothing is looked up per report.
        let any_ordered = inner.routes.any_ordered();
        let mut order_waits = false;
        // Until the batch is full, a flush is asked for, the time is up, or
        // a FIFO order waits for this commit to let its next delivery go.
        while let Some(msg) = next.take() {
            match msg {
                RecorderMsg::Report(r) => {
                    order_waits |= any_ordered
                        && inner
                            .routes
                            .orders_finished(finished(std::slice::from_ref(&*r)));
                    batch.push(*r);
                }
                RecorderMsg::Flush(reply) => flushes.push(reply),
            }
            if batch.len() >= MAX_BATCH || !flushes.is_empty() || order_waits {
                break;
            }
            next = match messages.try_recv() {
                Ok(msg) => Some(msg),
                Err(_) => tokio::time::timeout_at(deadline, messages.recv())
                    .await
                    .ok()
                    .flatten(),
            };
        }
        if !batch.is_empty() {
            commit(&inner, batch).await;
        }
        for reply in flushes.drain(..) {
            let _ = reply.send(());
        }
    }
}

async fn commit(inner: &Recorder, batch: Vec<AttemptReport>) {
    for report in &batch {
        let m = &inner.metrics;
        match report.status {
            DeliveryStatus::Delivered => {
                m.attempts_succeeded.fetch_add(1, Relaxed);
                m.deliveries_delivered.fetch_add(1, Relaxed);
            }
            DeliveryStatus::Failed => {
                m.attempts_failed.fetch_add(1, Relaxed);
                m.deliveries_failed.fetch_add(1, Relaxed);
            }
            DeliveryStatus::Retrying | DeliveryStatus::Pending => {
                m.attempts_failed.fetch_add(1, Relaxed);
            }
        }
    }
    let batch = Arc::new(batch);
    let mut backoff = Duration::from_millis(100);
    let disabled = loop {
        match inner
            .claims
            .store
            .record_attempts(
                &inner.claims.owner,
                batch.clone(),
                inner.claims.failure_policy,
                now_ms(),
            )
            .await
        {
            Ok(disabled) => break disabled,
            Err(e) => {
                // The results are kept and retried: losing them would only cause
                // duplicates (the claims stay), but retrying keeps the log exact.
                tracing::error!(error = %e, attempts = batch.len(), "cannot record delivery attempts; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    for report in batch.iter() {
        inner.claims.free_slot(&report.webhook_id);
    }
    // A finished head of a FIFO order lets the next one go: claimed now,
    // not at the scheduler's next tick.
    if inner.routes.any_ordered() && inner.routes.orders_finished(finished(&batch)) {
        inner.claims.wake_scheduler.notify_one();
    }
    if !disabled.is_empty() {
        announce_disabled(inner, disabled).await;
    }
}

/// The reports of deliveries that are finished (delivered, or failed for good).
fn finished(reports: &[AttemptReport]) -> impl Iterator<Item = &AttemptReport> {
    reports
        .iter()
        .filter(|r| matches!(r.status, DeliveryStatus::Delivered | DeliveryStatus::Failed))
}

/// Reloads routes and emits `webhook.disabled` to the owners' other webhooks.
async fn announce_disabled(inner: &Recorder, disabled: Vec<DisabledWebhook>) {
    inner
        .metrics
        .webhooks_disabled
        .fetch_add(disabled.len() as u64, Relaxed);
    if let Err(e) = inner.routes.reload(inner.claims.store.as_ref()).await {
        tracing::error!(error = %e, "cannot reload webhooks after disabling some");
    }
    let now = now_ms();
    let mut events = Vec::new();
    for d in &disabled {
        tracing::warn!(webhook_id = %d.webhook_id, reason = %d.reason, "webhook disabled");
        let mut data = Map::new();
        data.insert("webhookId".into(), Value::String(d.webhook_id.to_string()));
        data.insert("url".into(), Value::String(d.url.clone()));
        data.insert("reason".into(), Value::String(d.reason.clone()));
        data.insert(
            "disabledAt".into(),
            Value::String(format_rfc3339_millis(d.at)),
        );
        let mut metadata = Map::new();
        metadata.insert("service".into(), Value::String("webhook-service".into()));
        let input = EventInput {
            id: None,
            event_type: Some("webhook.disabled".into()),
            user_id: Some(Value::String(d.owner_id.to_string())),
            data: serde_json::value::to_raw_value(&data).ok(),
            metadata: Some(Value::Object(metadata)),
        };
        match input.validate(now) {
            Ok(event) => events.push(event),
            Err(e) => tracing::error!(error = %e, "cannot build the webhook.disabled event"),
        }
    }
    if let Err(e) = inner.ingest.ingest(events).await {
        tracing::error!(error = %e, "cannot store webhook.disabled events");
    }
}
