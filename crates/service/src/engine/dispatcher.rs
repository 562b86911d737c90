//! Per-webhook queues and in-flight caps.
//!
//! One task owns every queue, so no locks are needed on the hot path. It
//! starts attempts round-robin across webhooks with queued work, never more
//! than `max_in_flight` in all nor `max_in_flight_per_webhook` for one
//! webhook: a hanging endpoint fills only its own slots while the others
//! keep flowing.
//!
//! Each webhook also has a circuit breaker. After [`TRIP_AFTER`] failed
//! attempts in a row (timeouts, refused connections, 5xx, 429) its queued
//! deliveries are held instead of being sent into a dead endpoint, which
//! would only burn their retry schedules; one probe goes out after a cool-down
//! (1 s, doubling up to [`MAX_COOLDOWN`]) and the first success reopens the
//! flow at full speed. Held deliveries keep their claims; the ones behind
//! them wait in the store.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::{mpsc, oneshot};
use webhook_domain::ids::{DeliveryId, WebhookId};

use super::Inner;
use crate::store::DueDelivery;

/// Messages to the dispatcher task.
pub enum Command {
    /// New work (already claimed and holding window slots).
    Submit(Vec<DueDelivery>),
    /// An attempt to this webhook finished.
    Done(WebhookId, Verdict),
    /// Stop starting attempts; answer with the queued work that never started
    /// once in-flight attempts finished or the grace period ran out.
    Shutdown(Duration, oneshot::Sender<Vec<(WebhookId, DeliveryId)>>),
}

/// What an attempt says about the endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It answered 2xx.
    Healthy,
    /// Timeout, connection failure, 5xx or 429.
    Failing,
    /// Nothing learned (a 4xx, or the attempt was not made).
    Neutral,
}

/// Failed attempts in a row that open a webhook's circuit.
pub const TRIP_AFTER: u32 = 5;
/// First cool-down of an open circuit.
const FIRST_COOLDOWN: Duration = Duration::from_secs(1);
/// Longest cool-down between probes.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(10);

#[derive(Default)]
struct EndpointQueue {
    queue: VecDeque<DueDelivery>,
    in_flight: usize,
    ready: bool,
    failures_in_a_row: u32,
    /// While set and in the future, only a probe may go out after it.
    open_until: Option<Instant>,
    cooldown: Duration,
    probing: bool,
}

impl EndpointQueue {
    /// Whether an attempt may start now (circuit closed, or due for a probe).
    fn may_start(&self, now: Instant) -> bool {
        match self.open_until {
            None => true,
            Some(until) => !self.probing && self.in_flight == 0 && now >= until,
        }
    }

    fn observe(&mut self, verdict: Verdict, now: Instant) {
        match verdict {
            Verdict::Healthy => {
                self.failures_in_a_row = 0;
                self.open_until = None;
                self.cooldown = Duration::ZERO;
            }
            Verdict::Failing => {
                self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
                if self.probing || self.open_until.is_some() {
                    self.cooldown = (self.cooldown * 2).clamp(FIRST_COOLDOWN, MAX_COOLDOWN);
                    self.open_until = Some(now + self.cooldown);
                } else if self.failures_in_a_row >= TRIP_AFTER {
                    self.cooldown = FIRST_COOLDOWN;
                    self.open_until = Some(now + self.cooldown);
                }
            }
            Verdict::Neutral => {}
        }
        self.probing = false;
    }
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

    fn done(&mut self, webhook: WebhookId, verdict: Verdict) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.inner.metrics.in_flight.fetch_sub(1, Relaxed);
        if let Some(q) = self.queues.get_mut(&webhook) {
            q.in_flight = q.in_flight.saturating_sub(1);
            q.observe(verdict, Instant::now());
            // A healthy, empty queue is forgotten; a failing one keeps its breaker state.
            if q.queue.is_empty()
                && q.in_flight == 0
                && q.open_until.is_none()
                && q.failures_in_a_row == 0
            {
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
            if !q.queue.is_empty() && q.in_flight < per_webhook && q.open_until.is_none() {
                self.ready.push_back(id);
            } else {
                q.ready = false;
            }
            self.in_flight += 1;
            self.inner.metrics.in_flight.fetch_add(1, Relaxed);
            tokio::spawn(super::run_attempt(self.inner.clone(), job));
        }
    }

    /// The earliest end of a cool-down among webhooks with held work.
    fn next_probe(&self) -> Option<Instant> {
        self.queues
            .values()
            .filter(|q| !q.queue.is_empty() && !q.ready && !q.probing)
            .filter_map(|q| q.open_until)
            .min()
    }

    /// Makes webhooks whose cool-down ended ready for their probe.
    fn wake_cooled(&mut self) {
        let now = Instant::now();
        for (id, q) in &mut self.queues {
            if !q.ready && !q.queue.is_empty() && q.may_start(now) && q.open_until.is_some() {
                q.ready = true;
                self.ready.push_back(id.clone());
            }
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
    loop {
        let command = match d.next_probe() {
            None => commands.recv().await,
            Some(at) => match tokio::time::timeout_at(at, commands.recv()).await {
                Ok(command) => command,
                Err(_) => {
                    d.wake_cooled();
                    d.start_what_fits();
                    continue;
                }
            },
        };
        let Some(command) = command else { return };
        match command {
            Command::Submit(jobs) if d.stopping => {
                // Arrived after shutdown began: hand it straight back.
                let back = jobs.into_iter().map(|j| (j.webhook_id, j.id)).collect();
                d.inner.hand_back(back).await;
            }
            Command::Submit(jobs) => d.submit(jobs),
            Command::Done(webhook, verdict) => d.done(webhook, verdict),
            Command::Shutdown(grace, reply) => {
                d.stopping = true;
                let queued = d.drain_queued();
                let deadline = tokio::time::Instant::now() + grace;
                while d.in_flight > 0 {
                    match tokio::time::timeout_at(deadline, commands.recv()).await {
                        Ok(Some(Command::Done(webhook, verdict))) => d.done(webhook, verdict),
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
