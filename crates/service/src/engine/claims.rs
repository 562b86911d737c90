//! The work this instance holds: window slots in memory, claims in the
//! store, and how both are given back.
//!
//! Every part of the engine that takes or frees work goes through here, so
//! that a slot freed wakes the scheduler when the window runs low, and a
//! claim this instance will not act on is always released (see
//! ARCHITECTURE.md, "At-least-once").

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use webhook_domain::ids::{DeliveryId, WebhookId};
use webhook_domain::timefmt::now_ms;

use super::window::Window;
use crate::store::{AttemptReport, FailurePolicy, Store};

/// First pause before trying a failed store call again.
pub(super) const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Slots and claims of this instance.
pub(crate) struct Claims {
    pub(super) store: Arc<dyn Store>,
    /// This process's claim marker in the store.
    pub(super) owner: String,
    pub(super) window: Window,
    pub(super) failure_policy: FailurePolicy,
    /// Wakes the scheduler to look for due work now.
    pub(super) wake_scheduler: Notify,
    /// Set once the engine starts stopping.
    pub(super) stopping: watch::Sender<bool>,
    /// Instances sharing the store (1 for the embedded store): each paces
    /// a rate-limited webhook at its share of the limit.
    pub(super) live_instances: std::sync::atomic::AtomicU32,
}

impl Claims {
    /// Frees a window slot of `webhook`, and wakes the scheduler when the
    /// window should be refilled from the store (see [`Window::release`]).
    pub(super) fn free_slot(&self, webhook: &WebhookId) {
        if self.window.release(webhook) {
            self.wake_scheduler.notify_one();
        }
    }

    /// Gives claimed work back to the store unattempted (shutdown, paused
    /// or unknown webhook).
    pub(super) async fn hand_back(self: &Arc<Self>, jobs: Vec<(WebhookId, DeliveryId)>) {
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
    pub(super) fn release_later(self: &Arc<Self>, ids: Vec<DeliveryId>) {
        self.keep_trying(move |claims| {
            let ids = ids.clone();
            async move {
                let released = claims.store.release(&claims.owner, ids).await.is_ok();
                if released {
                    // Due again: the scheduler finds them.
                    claims.wake_scheduler.notify_one();
                }
                released
            }
        });
    }

    /// Keeps trying to record attempt reports that hold no window slot (a
    /// test send's), until the store takes them or the engine stops.
    pub(super) fn record_later(self: &Arc<Self>, reports: Arc<Vec<AttemptReport>>) {
        self.keep_trying(move |claims| {
            let reports = reports.clone();
            async move {
                let policy = claims.failure_policy;
                claims
                    .store
                    .record_attempts(&claims.owner, reports, policy, now_ms())
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
        F: FnMut(Arc<Claims>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = bool> + Send,
    {
        let claims = self.clone();
        tokio::spawn(async move {
            let mut stopping = claims.stopping.subscribe();
            let mut pause = RETRY_PAUSE;
            loop {
                if *stopping.borrow() {
                    return;
                }
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = stopping.changed() => return,
                }
                if attempt(claims.clone()).await {
                    return;
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        });
    }
}
