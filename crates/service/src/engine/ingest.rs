//! Ingest: fan an event out over the routing table, reserve window slots,
//! store event and deliveries in one group commit, and hand what got a
//! slot straight to the dispatcher.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use tokio::sync::mpsc;
use webhook_domain::envelope::Event;
use webhook_domain::filter::filter_envelope;
use webhook_domain::ids::{DeliveryId, WebhookId};

use super::Accepted;
use super::claims::Claims;
use super::dispatcher::Command;
use super::routing::RoutingTable;
use crate::metrics::Metrics;
use crate::store::{Claimed, DueDelivery, IngestItem, IngestOutcome, NewDelivery, StoreError};

/// What ingest needs.
pub(crate) struct Ingest {
    pub(super) routes: Arc<RoutingTable>,
    pub(super) claims: Arc<Claims>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) dispatch: mpsc::UnboundedSender<Command>,
}

impl Ingest {
    /// Stores events durably with their deliveries and queues the ones that
    /// got a window slot; answers after the commit.
    pub(super) async fn ingest(
        self: &Arc<Self>,
        events: Vec<Event>,
    ) -> Result<Vec<Accepted>, StoreError> {
        let mut items = Vec::with_capacity(events.len());
        let mut ordered = false;
        for event in events {
            let routes = self.routes.matching(&event.user_id, &event.event_type);
            // Built once per event, and only if a matching webhook has a
            // filter: webhooks without one pay an `Option` check.
            let mut envelope = None;
            let mut deliveries = Vec::with_capacity(routes.len());
            for route in &routes {
                if let Some(filter) = &route.controls.filter {
                    let envelope = envelope.get_or_insert_with(|| filter_envelope(&event));
                    if !filter.matches(envelope) {
                        self.metrics.observe_filtered(&route.id, 1);
                        continue;
                    }
                }
                // An ordered delivery never takes the fast path: it may go
                // only once every earlier one of its order has finished,
                // which the claim checks in the store.
                if let Some(order) = route.controls.ordering {
                    ordered = true;
                    deliveries.push(NewDelivery {
                        id: DeliveryId::generate(),
                        webhook_id: route.id.clone(),
                        claimed: false,
                        ordering_key: Some(order.key().key_of(&event.user_id).to_owned()),
                    });
                    continue;
                }
                deliveries.push(NewDelivery {
                    id: DeliveryId::generate(),
                    webhook_id: route.id.clone(),
                    claimed: self.claims.window.try_reserve(&route.id),
                    ordering_key: None,
                });
            }
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
            let result = inner
                .claims
                .store
                .ingest(&inner.claims.owner, items.clone())
                .await;
            if result.is_ok() {
                inner.metrics.observe_ingest_commit(started.elapsed());
                if ordered {
                    // The scheduler claims the heads of the orders now
                    // rather than at its next tick.
                    inner.claims.wake_scheduler.notify_one();
                }
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
                    self.claims.free_slot(&d.webhook_id);
                    claimed.push(d.id.clone());
                }
                // A commit cut off mid-way (PostgreSQL's connection lost) may
                // have stored the rows after all, claimed by this running
                // process, which will not send them: a producer retrying with
                // its event id gets "duplicate" and nothing would go out.
                // Released, they are due work like any other. (Any other
                // failure stored nothing: there is nothing to release.)
                if uncertain && !claimed.is_empty() {
                    self.claims.release_later(claimed);
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
                                self.claims.free_slot(&d.webhook_id);
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
                                claimed: Claimed::new_delivery(item.created_at),
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
                        self.claims.free_slot(&d.webhook_id);
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
