//! Per-webhook queues and in-flight caps.
//!
//! One task owns every queue, so no locks are needed on the hot path. It
//! starts attempts round-robin across webhooks with queued work, never more
//! than `max_in_flight` in all nor `max_in_flight_per_webhook` for one
//! webhook: a hanging endpoint fills only its own slots while the others
//! keep flowing.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use webhook_domain::ids::{DeliveryId, WebhookId};

use super::Inner;
use crate::store::DueDelivery;

/// Messages to the dispatcher task.
pub enum Command {
    /// New work (already claimed and holding window slots).
    Submit(Vec<DueDelivery>),
    /// An attempt to this webhook finished.
    Done(WebhookId),
    /// Stop starting attempts; answer with the queued work that never started
    /// once in-flight attempts finished or the grace period ran out.
    Shutdown(Duration, oneshot::Sender<Vec<(WebhookId, DeliveryId)>>),
}

#[derive(Default)]
struct EndpointQueue {
    queue: VecDeque<DueDelivery>,
    in_flight: usize,
    ready: bool,
}

struct Dispatcher {
    inner: Arc<Inner>,
    queues: HashMap<WebhookId, EndpointQueue>,
    ready: VecDeque<WebhookId>,
    in_flight: usize,
    stopping: bool,
}

impl Dispatcher {
    fn submit(&mut self, jobs: Vec<DueDelivery>) {
        for job in jobs {
            let id = job.webhook_id.clone();
            let q = self.queues.entry(id.clone()).or_default();
            q.queue.push_back(job);
            if !q.ready {
                q.ready = true;
                self.ready.push_back(id);
            }
        }
    }

    fn done(&mut self, webhook: WebhookId) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.inner.metrics.in_flight.fetch_sub(1, Relaxed);
        if let Some(q) = self.queues.get_mut(&webhook) {
            q.in_flight = q.in_flight.saturating_sub(1);
            if q.queue.is_empty() && q.in_flight == 0 {
                self.queues.remove(&webhook);
            } else if !q.ready && !q.queue.is_empty() {
                q.ready = true;
                self.ready.push_back(webhook);
            }
        }
    }

    fn start_what_fits(&mut self) {
        let per_webhook = self.inner.config.max_in_flight_per_webhook;
        while !self.stopping && self.in_flight < self.inner.config.max_in_flight {
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            let Some(q) = self.queues.get_mut(&id) else {
                continue;
            };
            if q.in_flight >= per_webhook {
                // Full: it becomes ready again when one of its attempts finishes.
                q.ready = false;
                continue;
            }
            let Some(job) = q.queue.pop_front() else {
                q.ready = false;
                continue;
            };
            q.in_flight += 1;
            if !q.queue.is_empty() && q.in_flight < per_webhook {
                self.ready.push_back(id);
            } else {
                q.ready = false;
            }
            self.in_flight += 1;
            self.inner.metrics.in_flight.fetch_add(1, Relaxed);
            tokio::spawn(super::run_attempt(self.inner.clone(), job));
        }
    }

    fn drain_queued(&mut self) -> Vec<(WebhookId, DeliveryId)> {
        self.ready.clear();
        let mut out = Vec::new();
        for (id, q) in &mut self.queues {
            q.ready = false;
            out.extend(q.queue.drain(..).map(|job| (id.clone(), job.id)));
        }
        out
    }
}

/// Runs the dispatcher until shutdown.
pub async fn run(inner: Arc<Inner>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut d = Dispatcher {
        inner,
        queues: HashMap::new(),
        ready: VecDeque::new(),
        in_flight: 0,
        stopping: false,
    };
    while let Some(command) = commands.recv().await {
        match command {
            Command::Submit(jobs) if d.stopping => {
                // Arrived after shutdown began: hand it straight back.
                let back = jobs.into_iter().map(|j| (j.webhook_id, j.id)).collect();
                d.inner.hand_back(back).await;
            }
            Command::Submit(jobs) => d.submit(jobs),
            Command::Done(webhook) => d.done(webhook),
            Command::Shutdown(grace, reply) => {
                d.stopping = true;
                let queued = d.drain_queued();
                let deadline = tokio::time::Instant::now() + grace;
                while d.in_flight > 0 {
                    match tokio::time::timeout_at(deadline, commands.recv()).await {
                        Ok(Some(Command::Done(webhook))) => d.done(webhook),
                        Ok(Some(Command::Submit(jobs))) => {
                            let back = jobs.into_iter().map(|j| (j.webhook_id, j.id)).collect();
                            d.inner.hand_back(back).await;
                        }
                        Ok(Some(Command::Shutdown(..))) => {}
                        // Grace period over: what is still in flight stays claimed and
                        // is attempted again after the restart (at-least-once).
                        Ok(None) | Err(_) => break,
                    }
                }
                let _ = reply.send(queued);
                return;
            }
        }
        d.start_what_fits();
    }
}
