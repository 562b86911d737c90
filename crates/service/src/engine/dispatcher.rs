//! Per-webhook queues and in-flight caps.
//!
//! One task owns every queue, so no locks are needed on the hot path. It
//! starts attempts round-robin across webhooks with queued work, never more
//! than `max_in_flight` in all nor `max_in_flight_per_webhook` for one
//! webhook: a hanging endpoint fills only its own slots while the others
//! keep flowing.
//!
//! The global cap bounds the work of responsive endpoints only: an attempt
//! still running after [`SLOW_AFTER`] is moved to a separate budget of slow
//! attempts (while that has room), so that several hanging endpoints together
//! cannot take every global slot for a whole timeout. They stay bounded by
//! their own per-webhook caps, and all of them together by the slow budget.
//!
//! Each webhook also has a circuit breaker. After [`TRIP_AFTER`] failed
//! attempts in a row (timeouts, refused connections, 5xx, 429) its queued
//! deliveries are held instead of being sent into a dead endpoint, which
//! would only burn their retry schedules; one probe goes out after a cool-down
//! (1 s, doubling up to [`MAX_COOLDOWN`]) and the first success reopens the
//! flow at full speed. Held deliveries keep their claims; the ones behind
//! them wait in the store.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
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
    /// An attempt to this webhook has run for [`SLOW_AFTER`].
    Slow(WebhookId),
    /// An attempt to this webhook finished; `true` if it had been reported slow.
    Done(WebhookId, Verdict, bool),
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

/// How long an attempt runs before it counts as slow and leaves the global cap.
/// Healthy receivers answer in milliseconds; the guide allows them 10 s.
pub const SLOW_AFTER: Duration = Duration::from_millis(500);
/// Slow attempts allowed in all, as a multiple of the global cap.
const SLOW_BUDGET_FACTOR: usize = 4;

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
    /// Of `in_flight`, the attempts moved to the slow budget.
    slow: usize,
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
    queues: crate::FastMap<WebhookId, EndpointQueue>,
    ready: VecDeque<WebhookId>,
    /// Webhooks held by an open circuit, by the end of their cool-down
    /// (entries may be stale; they are checked when they come due).
    cooling: BinaryHeap<Reverse<(Instant, WebhookId)>>,
    /// Attempts counted against the global cap.
    in_flight: usize,
    /// Slow attempts, counted against the slow budget instead.
    slow: usize,
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

    /// Moves one attempt of `webhook` from the global cap to the slow budget, if it has room.
    fn slow(&mut self, webhook: WebhookId) {
        if self.slow >= self.inner.config.max_in_flight * SLOW_BUDGET_FACTOR {
            return;
        }
        if let Some(q) = self.queues.get_mut(&webhook) {
            q.slow += 1;
            self.slow += 1;
            self.in_flight = self.in_flight.saturating_sub(1);
        }
    }

    fn done(&mut self, webhook: WebhookId, verdict: Verdict, was_slow: bool) {
        // The attempts of one webhook that were reported slow are alike: any
        // of them may give back a slot of the slow budget.
        let moved = was_slow
            && self.queues.get_mut(&webhook).is_some_and(|q| {
                let moved = q.slow > 0;
                q.slow = q.slow.saturating_sub(1);
                moved
            });
        if moved {
            self.slow -= 1;
        } else {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
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
        let now = Instant::now();
        while !self.stopping && self.in_flight < self.inner.config.max_in_flight {
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            let Some(q) = self.queues.get_mut(&id) else {
                continue;
            };
            if q.in_flight >= per_webhook || !q.may_start(now) {
                // Full, or its circuit is open: it becomes ready again when one
                // of its attempts finishes or its cool-down ends (`wake_cooled`).
                q.ready = false;
                if let (Some(until), false) = (q.open_until, q.probing) {
                    self.cooling.push(Reverse((until, id)));
                }
                continue;
            }
            if q.open_until.is_some() {
                // Cool-down over: this one attempt is the probe.
                q.probing = true;
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

    /// The earliest end of a cool-down among webhooks held by their circuit.
    fn next_probe(&self) -> Option<Instant> {
        self.cooling.peek().map(|Reverse((at, _))| *at)
    }

    /// Makes webhooks whose cool-down ended ready for their probe.
    fn wake_cooled(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, _))) = self.cooling.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, id))) = self.cooling.pop() else {
                break;
            };
            if let Some(q) = self.queues.get_mut(&id)
                && !q.ready
                && !q.queue.is_empty()
                && q.may_start(now)
            {
                q.ready = true;
                self.ready.push_back(id);
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
        queues: crate::FastMap::default(),
        ready: VecDeque::new(),
        cooling: BinaryHeap::new(),
        in_flight: 0,
        slow: 0,
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
            Command::Slow(webhook) => d.slow(webhook),
            Command::Done(webhook, verdict, slow) => d.done(webhook, verdict, slow),
            Command::Shutdown(grace, reply) => {
                d.stopping = true;
                let queued = d.drain_queued();
                let deadline = tokio::time::Instant::now() + grace;
                while d.in_flight + d.slow > 0 {
                    match tokio::time::timeout_at(deadline, commands.recv()).await {
                        Ok(Some(Command::Slow(webhook))) => d.slow(webhook),
                        Ok(Some(Command::Done(webhook, verdict, slow))) => {
                            d.done(webhook, verdict, slow)
                        }
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
