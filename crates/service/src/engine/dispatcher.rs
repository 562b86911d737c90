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
//! Each webhook also has a [`Circuit`] breaker: while it is open, the
//! webhook's queued deliveries are held (they keep their claims; the ones
//! behind them wait in the store) and only its probe goes out.
//!
//! A webhook with a rate limit has a [`TokenBucket`]: while it is empty the
//! webhook's queue waits (on the same timer as an open circuit) and the
//! others flow; answers of 429, 502, 503 and 504 slow it down further.
//!
//! The dispatcher decides; a [`Launch`] starts what it decided (in the
//! service, the attempt's own task: [`super::runner`]), so the decisions
//! are tested without a network or a store.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use webhook_domain::ids::{DeliveryId, WebhookId};
use webhook_domain::pacing::TokenBucket;
use webhook_domain::timefmt::now_ms;

use super::circuit::{Circuit, CircuitView, Verdict};
use super::claims::Claims;
use crate::metrics::Metrics;
use crate::store::DueDelivery;

/// Messages to the dispatcher task.
pub enum Command {
    /// New work (already claimed and holding window slots).
    Submit(Vec<DueDelivery>),
    /// An attempt to this webhook has run for [`SLOW_AFTER`].
    Slow(WebhookId),
    /// An attempt to this webhook finished; `true` if it had been reported
    /// slow; then `true` if the endpoint answered an overload status.
    Done(WebhookId, Verdict, bool, bool),
    /// Webhooks' settings changed: read their rate limits again.
    ControlsChanged,
    /// Answer with the circuits of these webhooks (closed for any the
    /// dispatcher holds nothing of).
    Circuits(Vec<WebhookId>, oneshot::Sender<Vec<CircuitView>>),
    /// Stop starting attempts; answer with the queued work that never started
    /// once in-flight attempts finished or the grace period ran out.
    Shutdown(Duration, oneshot::Sender<Vec<(WebhookId, DeliveryId)>>),
}

/// Starts the attempts the dispatcher decided on.
pub trait Launch {
    /// Starts one attempt of `job` in the background. Its end must come back
    /// to the dispatcher as [`Command::Done`] (and [`Command::Slow`] first if
    /// it runs for [`SLOW_AFTER`]).
    fn launch(&self, job: DueDelivery);

    /// Every rate-limited webhook with its limit, in deliveries a second.
    fn rate_limits(&self) -> Vec<(WebhookId, u32)> {
        Vec::new()
    }
}

/// How long an attempt runs before it counts as slow and leaves the global cap.
/// Healthy receivers answer in milliseconds; the guide allows them 10 s.
pub const SLOW_AFTER: Duration = Duration::from_millis(500);
/// Slow attempts allowed in all, as a multiple of the global cap.
const SLOW_BUDGET_FACTOR: usize = 4;

/// The in-flight caps.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Attempts in flight in all (slow ones apart).
    pub max_in_flight: usize,
    /// Attempts in flight to one webhook.
    pub per_webhook: usize,
}

#[derive(Default)]
struct EndpointQueue {
    queue: VecDeque<DueDelivery>,
    in_flight: usize,
    /// Of `in_flight`, the attempts moved to the slow budget.
    slow: usize,
    ready: bool,
    circuit: Circuit,
    /// Pacing of a rate-limited webhook.
    bucket: Option<TokenBucket>,
}

/// The dispatcher's state: queues, counts and circuits.
pub struct Dispatcher<L> {
    launcher: L,
    caps: Caps,
    metrics: Arc<Metrics>,
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
    /// The origin of the buckets' clock.
    origin: Instant,
    /// Rate limits of the webhooks that have one, read from the launcher
    /// when settings change (not per delivery: most webhooks have none).
    limits: crate::FastMap<WebhookId, u32>,
}

impl<L: Launch> Dispatcher<L> {
    /// A dispatcher with nothing queued.
    pub fn new(launcher: L, caps: Caps, metrics: Arc<Metrics>) -> Self {
        Dispatcher {
            launcher,
            caps,
            metrics,
            queues: crate::FastMap::default(),
            ready: VecDeque::new(),
            cooling: BinaryHeap::new(),
            in_flight: 0,
            slow: 0,
            stopping: false,
            origin: Instant::now(),
            limits: crate::FastMap::default(),
        }
    }

    fn clock(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.origin)
    }

    fn submit(&mut self, jobs: Vec<DueDelivery>) {
        let now = self.clock(Instant::now());
        for job in jobs {
            let id = job.webhook_id.clone();
            let q = self
                .queues
                .entry(id.clone())
                .or_insert_with(|| EndpointQueue {
                    // `ControlsChanged` updates the buckets of existing queues.
                    bucket: if self.limits.is_empty() {
                        None // the common case: no webhook is rate-limited
                    } else {
                        self.limits
                            .get(&id)
                            .map(|limit| TokenBucket::new(*limit, now))
                    },
                    ..EndpointQueue::default()
                });
            q.queue.push_back(job);
            if !q.ready {
                q.ready = true;
                self.ready.push_back(id);
            }
        }
    }

    /// Moves one attempt of `webhook` from the global cap to the slow budget, if it has room.
    fn slow(&mut self, webhook: WebhookId) {
        if self.slow >= self.caps.max_in_flight * SLOW_BUDGET_FACTOR {
            return;
        }
        if let Some(q) = self.queues.get_mut(&webhook) {
            q.slow += 1;
            self.slow += 1;
            self.in_flight = self.in_flight.saturating_sub(1);
        }
    }

    /// Reads every queued webhook's rate limit again; a queue that waited
    /// only for its bucket may go at once.
    fn controls_changed(&mut self, now: Instant) {
        let clock = self.clock(now);
        self.limits = self.launcher.rate_limits().into_iter().collect();
        for (id, q) in &mut self.queues {
            q.bucket = match (self.limits.get(id).copied(), q.bucket.take()) {
                (None, _) => None,
                (Some(limit), None) => Some(TokenBucket::new(limit, clock)),
                (Some(limit), Some(mut bucket)) => {
                    bucket.set_limit(limit, clock);
                    Some(bucket)
                }
            };
            if !q.ready && !q.queue.is_empty() && q.circuit.may_start(now, q.in_flight) {
                q.ready = true;
                self.ready.push_back(id.clone());
            }
        }
    }

    fn done(
        &mut self,
        webhook: WebhookId,
        verdict: Verdict,
        was_slow: bool,
        overloaded: bool,
        now: Instant,
    ) {
        let clock = self.clock(now);
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
        self.metrics.in_flight.fetch_sub(1, Relaxed);
        if let Some(q) = self.queues.get_mut(&webhook) {
            q.in_flight = q.in_flight.saturating_sub(1);
            q.circuit.observe(verdict, now);
            if overloaded && let Some(bucket) = &mut q.bucket {
                bucket.slow_down(clock);
            }
            // A healthy, empty queue is forgotten; a failing one keeps its
            // breaker state, and a paced one its bucket until it is full
            // again (a new bucket starts full: forgetting a spent one would
            // allow a second burst).
            if q.queue.is_empty()
                && q.in_flight == 0
                && q.circuit.is_clean()
                && q.bucket.as_ref().is_none_or(|b| b.is_idle(clock))
            {
                self.queues.remove(&webhook);
            } else if !q.ready && !q.queue.is_empty() {
                q.ready = true;
                self.ready.push_back(webhook);
            }
        }
    }

    fn start_what_fits(&mut self, now: Instant) {
        let per_webhook = self.caps.per_webhook;
        let clock = self.clock(now);
        while !self.stopping && self.in_flight < self.caps.max_in_flight {
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            let Some(q) = self.queues.get_mut(&id) else {
                continue;
            };
            if q.in_flight >= per_webhook || !q.circuit.may_start(now, q.in_flight) {
                // Full, or its circuit is open: it becomes ready again when one
                // of its attempts finishes or its cool-down ends (`wake_cooled`).
                q.ready = false;
                if let Some(until) = q.circuit.probe_due_at() {
                    self.cooling.push(Reverse((until, id)));
                }
                continue;
            }
            if q.queue.is_empty() {
                q.ready = false;
                continue;
            }
            if let Some(bucket) = &mut q.bucket
                && let Err(wait) = bucket.try_take(clock)
            {
                // Paced: it waits for its next token; the others go on.
                q.ready = false;
                self.cooling.push(Reverse((now + wait, id)));
                continue;
            }
            let Some(job) = q.queue.pop_front() else {
                q.ready = false;
                continue;
            };
            // On an open circuit, this one attempt is the probe.
            q.circuit.started();
            q.in_flight += 1;
            if !q.queue.is_empty() && q.in_flight < per_webhook && q.circuit.is_closed() {
                self.ready.push_back(id);
            } else {
                q.ready = false;
            }
            self.in_flight += 1;
            self.metrics.in_flight.fetch_add(1, Relaxed);
            self.launcher.launch(job);
        }
    }

    /// The earliest end of a cool-down among webhooks held by their circuit.
    fn next_probe(&self) -> Option<Instant> {
        self.cooling.peek().map(|Reverse((at, _))| *at)
    }

    /// Makes webhooks whose cool-down ended ready for their probe.
    fn wake_cooled(&mut self, now: Instant) {
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
                && q.circuit.may_start(now, q.in_flight)
            {
                q.ready = true;
                self.ready.push_back(id);
            }
        }
    }

    fn circuits(&self, ids: &[WebhookId]) -> Vec<CircuitView> {
        let (now, now_ms) = (Instant::now(), now_ms());
        ids.iter()
            .map(|id| {
                self.queues
                    .get(id)
                    .map_or(CircuitView::CLOSED, |q| q.circuit.view(now, now_ms))
            })
            .collect()
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

/// Runs the dispatcher until shutdown; work it will not start goes back
/// to the store through `claims`.
pub async fn run<L: Launch>(
    mut d: Dispatcher<L>,
    claims: Arc<Claims>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    d.controls_changed(Instant::now());
    loop {
        let command = match d.next_probe() {
            None => commands.recv().await,
            Some(at) => match tokio::time::timeout_at(at, commands.recv()).await {
                Ok(command) => command,
                Err(_) => {
                    let now = Instant::now();
                    d.wake_cooled(now);
                    d.start_what_fits(now);
                    continue;
                }
            },
        };
        let Some(command) = command else { return };
        match command {
            Command::Submit(jobs) if d.stopping => {
                // Arrived after shutdown began: hand it straight back.
                let back = jobs.into_iter().map(|j| (j.webhook_id, j.id)).collect();
                claims.hand_back(back).await;
            }
            Command::Submit(jobs) => d.submit(jobs),
            Command::Slow(webhook) => d.slow(webhook),
            Command::Done(webhook, verdict, slow, overloaded) => {
                d.done(webhook, verdict, slow, overloaded, Instant::now())
            }
            Command::ControlsChanged => d.controls_changed(Instant::now()),
            Command::Circuits(ids, reply) => {
                let _ = reply.send(d.circuits(&ids));
                continue;
            }
            Command::Shutdown(grace, reply) => {
                d.stopping = true;
                let queued = d.drain_queued();
                let deadline = Instant::now() + grace;
                while d.in_flight + d.slow > 0 {
                    match tokio::time::timeout_at(deadline, commands.recv()).await {
                        Ok(Some(Command::Slow(webhook))) => d.slow(webhook),
                        Ok(Some(Command::Done(webhook, verdict, slow, overloaded))) => {
                            d.done(webhook, verdict, slow, overloaded, Instant::now())
                        }
                        Ok(Some(Command::ControlsChanged)) => {}
                        Ok(Some(Command::Submit(jobs))) => {
                            let back = jobs.into_iter().map(|j| (j.webhook_id, j.id)).collect();
                            claims.hand_back(back).await;
                        }
                        Ok(Some(Command::Circuits(ids, reply))) => {
                            let _ = reply.send(d.circuits(&ids));
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
        // Under a steady stream of commands the timer above may never fire:
        // webhooks whose cool-down or pacing wait ended are woken here too.
        let now = Instant::now();
        d.wake_cooled(now);
        d.start_what_fits(now);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::engine::circuit::{CircuitState, TRIP_AFTER};
    use webhook_domain::ids::EventId;

    /// Records what the dispatcher started instead of sending it.
    #[derive(Clone, Default)]
    struct Started(
        Rc<RefCell<Vec<DueDelivery>>>,
        Rc<RefCell<Vec<(WebhookId, u32)>>>,
    );

    impl Launch for Started {
        fn launch(&self, job: DueDelivery) {
            self.0.borrow_mut().push(job);
        }

        fn rate_limits(&self) -> Vec<(WebhookId, u32)> {
            self.1.borrow().clone()
        }
    }

    impl Started {
        fn take(&self) -> Vec<DueDelivery> {
            std::mem::take(&mut *self.0.borrow_mut())
        }
    }

    fn dispatcher(max_in_flight: usize, per_webhook: usize) -> (Dispatcher<Started>, Started) {
        let started = Started::default();
        let caps = Caps {
            max_in_flight,
            per_webhook,
        };
        (
            Dispatcher::new(started.clone(), caps, Arc::new(Metrics::default())),
            started,
        )
    }

    fn jobs(webhook: &WebhookId, n: usize) -> Vec<DueDelivery> {
        (0..n)
            .map(|_| DueDelivery {
                id: DeliveryId::generate(),
                event_id: EventId::generate(),
                event_type: "user.created".into(),
                webhook_id: webhook.clone(),
                attempts: 0,
                payload: bytes::Bytes::from_static(b"{}"),
                claimed: crate::store::Claimed::new_delivery(0),
            })
            .collect()
    }

    fn webhooks_of(started: &[DueDelivery]) -> Vec<WebhookId> {
        started.iter().map(|j| j.webhook_id.clone()).collect()
    }

    #[test]
    fn starts_round_robin_within_the_global_and_per_webhook_caps() {
        let (mut d, started) = dispatcher(4, 2);
        let (a, b) = (WebhookId::generate(), WebhookId::generate());
        d.submit(jobs(&a, 5));
        d.submit(jobs(&b, 5));
        let now = Instant::now();
        d.start_what_fits(now);
        let first = started.take();
        assert_eq!(
            webhooks_of(&first),
            [a.clone(), b.clone(), a.clone(), b.clone()],
            "alternating, two each"
        );
        assert_eq!(d.metrics.in_flight.load(Relaxed), 4);
        // At the global cap: nothing more until one ends.
        d.start_what_fits(now);
        assert!(started.take().is_empty());
        d.done(a.clone(), Verdict::Healthy, false, false, now);
        d.start_what_fits(now);
        assert_eq!(webhooks_of(&started.take()), vec![a.clone()]);
        // Per-webhook cap: with room globally, `b` still holds only two.
        d.done(a.clone(), Verdict::Healthy, false, false, now);
        d.done(a.clone(), Verdict::Healthy, false, false, now);
        d.start_what_fits(now);
        assert_eq!(webhooks_of(&started.take()), [a.clone(), a.clone()]);
        assert_eq!(d.in_flight, 4);
    }

    #[test]
    fn slow_attempts_leave_the_global_cap_within_their_budget() {
        let (mut d, started) = dispatcher(1, 10);
        let (hanging, healthy) = (WebhookId::generate(), WebhookId::generate());
        d.submit(jobs(&hanging, 10));
        let now = Instant::now();
        d.start_what_fits(now);
        assert_eq!(started.take().len(), 1);
        // Reported slow, it no longer counts against the global cap.
        d.slow(hanging.clone());
        d.submit(jobs(&healthy, 1));
        d.start_what_fits(now);
        assert_eq!(started.take().len(), 1);
        // The budget is SLOW_BUDGET_FACTOR times the global cap.
        for _ in 0..SLOW_BUDGET_FACTOR + 2 {
            d.slow(hanging.clone());
        }
        assert_eq!(d.slow, SLOW_BUDGET_FACTOR);
        // A slow attempt that ends gives its slot back to the budget.
        d.done(hanging.clone(), Verdict::Failing, true, false, now);
        assert_eq!(d.slow, SLOW_BUDGET_FACTOR - 1);
    }

    #[test]
    fn an_open_circuit_holds_the_queue_until_its_probe_succeeds() {
        let (mut d, started) = dispatcher(100, 100);
        let webhook = WebhookId::generate();
        let now = Instant::now();
        d.submit(jobs(&webhook, TRIP_AFTER as usize));
        d.start_what_fits(now);
        assert_eq!(started.take().len(), TRIP_AFTER as usize);
        d.submit(jobs(&webhook, 3));
        for _ in 0..TRIP_AFTER {
            d.done(webhook.clone(), Verdict::Failing, false, false, now);
        }
        d.start_what_fits(now);
        assert!(started.take().is_empty(), "held while open");
        let view = d.circuits(std::slice::from_ref(&webhook))[0];
        assert_eq!(view.state, CircuitState::Open);
        assert_eq!(view.failures_in_a_row, TRIP_AFTER);
        assert!(view.next_probe_at.is_some());

        // The cool-down ends: one probe, and only one.
        let probe_at = d.next_probe().expect("a probe is scheduled");
        d.wake_cooled(probe_at);
        d.start_what_fits(probe_at);
        assert_eq!(started.take().len(), 1, "the probe");
        d.start_what_fits(probe_at);
        assert!(started.take().is_empty(), "one probe at a time");
        assert_eq!(
            d.circuits(std::slice::from_ref(&webhook))[0].state,
            CircuitState::Probing
        );

        // It succeeds: the rest flows at once.
        d.done(webhook.clone(), Verdict::Healthy, false, false, probe_at);
        d.start_what_fits(probe_at);
        assert_eq!(started.take().len(), 2);
        assert_eq!(
            d.circuits(std::slice::from_ref(&webhook))[0],
            CircuitView::CLOSED
        );
    }

    #[test]
    fn a_failed_probe_waits_for_a_longer_cool_down() {
        let (mut d, started) = dispatcher(100, 100);
        let webhook = WebhookId::generate();
        let now = Instant::now();
        d.submit(jobs(&webhook, TRIP_AFTER as usize + 2));
        d.start_what_fits(now);
        let first = started.take().len();
        assert_eq!(first, TRIP_AFTER as usize + 2);
        for _ in 0..first {
            d.done(webhook.clone(), Verdict::Failing, false, false, now);
        }
        d.submit(jobs(&webhook, 2));
        d.start_what_fits(now);
        let probe_at = d.next_probe().expect("scheduled");
        d.wake_cooled(probe_at);
        d.start_what_fits(probe_at);
        assert_eq!(started.take().len(), 1);
        d.done(webhook.clone(), Verdict::Failing, false, false, probe_at);
        d.start_what_fits(probe_at);
        let next = d.next_probe().expect("scheduled again");
        assert!(next > probe_at, "a new cool-down");
        d.wake_cooled(probe_at);
        d.start_what_fits(probe_at);
        assert!(started.take().is_empty(), "not before it ends");
        d.wake_cooled(next);
        d.start_what_fits(next);
        assert_eq!(started.take().len(), 1);
    }

    #[test]
    fn healthy_idle_webhooks_are_forgotten_and_failing_ones_remembered() {
        let (mut d, started) = dispatcher(10, 10);
        let (healthy, failing) = (WebhookId::generate(), WebhookId::generate());
        let now = Instant::now();
        d.submit(jobs(&healthy, 1));
        d.submit(jobs(&failing, 1));
        d.start_what_fits(now);
        assert_eq!(started.take().len(), 2);
        d.done(healthy.clone(), Verdict::Healthy, false, false, now);
        d.done(failing.clone(), Verdict::Failing, false, false, now);
        assert!(!d.queues.contains_key(&healthy));
        let views = d.circuits(&[healthy, failing]);
        assert_eq!(views[0], CircuitView::CLOSED);
        assert_eq!(views[1].state, CircuitState::Closed);
        assert_eq!(views[1].failures_in_a_row, 1);
    }

    #[test]
    fn a_rate_limited_webhook_waits_for_tokens_while_others_flow() {
        let (mut d, started) = dispatcher(100, 100);
        let (limited, free) = (WebhookId::generate(), WebhookId::generate());
        started.1.borrow_mut().push((limited.clone(), 2));
        d.controls_changed(Instant::now());
        d.submit(jobs(&limited, 6));
        d.submit(jobs(&free, 6));
        let now = Instant::now();
        d.start_what_fits(now);
        let first = webhooks_of(&started.take());
        assert_eq!(
            first.iter().filter(|w| **w == limited).count(),
            2,
            "a burst of 2"
        );
        assert_eq!(first.iter().filter(|w| **w == free).count(), 6);
        // Its next token is half a second away; the timer is set for it.
        let at = d.next_probe().expect("woken for its next token");
        assert!(at > now && at <= now + Duration::from_millis(500));
        d.wake_cooled(at);
        d.start_what_fits(at);
        assert_eq!(webhooks_of(&started.take()), std::slice::from_ref(&limited));
        // An overload answer halves the rate: the next token takes a second.
        d.done(limited.clone(), Verdict::Failing, false, true, at);
        d.start_what_fits(at);
        assert!(started.take().is_empty());
        let half = at + Duration::from_millis(600);
        d.wake_cooled(half);
        d.start_what_fits(half);
        assert!(
            started.take().is_empty(),
            "slowed down: no token after 600 ms"
        );
        let full = at + Duration::from_millis(1001);
        d.wake_cooled(full);
        d.start_what_fits(full);
        assert_eq!(webhooks_of(&started.take()), std::slice::from_ref(&limited));
        // The limit lifted: what is queued goes at once.
        started.1.borrow_mut().clear();
        d.controls_changed(full);
        d.start_what_fits(full);
        assert_eq!(started.take().len(), 2);
    }

    #[test]
    fn shutdown_drains_the_queues_and_starts_nothing_more() {
        let (mut d, started) = dispatcher(1, 1);
        let webhook = WebhookId::generate();
        d.submit(jobs(&webhook, 3));
        d.start_what_fits(Instant::now());
        assert_eq!(started.take().len(), 1);
        d.stopping = true;
        let queued = d.drain_queued();
        assert_eq!(queued.len(), 2);
        d.done(webhook, Verdict::Healthy, false, false, Instant::now());
        d.start_what_fits(Instant::now());
        assert!(started.take().is_empty());
    }
}
