//! `cluster`: three instances of the service on one PostgreSQL database,
//! producers going round-robin over them as a load balancer would.
//!
//! Two phases on the same instances. Steady: every instance up; reports the
//! total rate, each instance's share of ingest and of deliveries (from its
//! own `/metrics`), and duplicates at the receiver (target 0). Kill: once
//! 40 % of the phase's events are acknowledged the receiver refuses
//! connections for a second (so every instance holds claimed, undelivered
//! work), then one instance is SIGKILLed and the receiver comes back;
//! producers skip the dead instance (a refused connection or a 503 sends
//! the event to the next one). Reports how long after the kill every event
//! acknowledged before it had arrived (the killed instance's claims are
//! taken over once its heartbeat is stale), and that nothing acknowledged
//! was lost.
//!
//! `crates/service/tests/postgres_cluster.rs` asserts the same takeover as
//! a test; this measures it, with the harness's receiver and producers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::json;
use webhook_testkit::CountingReceiver;

use crate::load::{Http, Sent, event_ids};
use crate::scenarios::{ceiling, create_webhook, report, settle, start, trigger_event};
use crate::service::{INTERNAL_SECRET, Service};
use crate::{Report, Settings, match_receipts};

/// Instances sharing the database.
const INSTANCES: usize = 3;
/// The instance killed in the second phase.
const VICTIM: usize = 0;
/// Users, one webhook each; event `n` is user `n % USERS`'s, so the load
/// spreads over several endpoints as it would in production.
const USERS: usize = 8;
/// Share of the kill phase's events acknowledged before the kill.
const KILL_AT: f64 = 0.4;
/// Longest wait, after the producers are done, with no delivery arriving.
const DRAIN_STALL: Duration = Duration::from_secs(30);
/// How long the receiver refuses connections before the kill: without it
/// the receiver keeps up, the killed instance holds nothing undelivered
/// when it dies (a first run measured a 0.07 s "takeover" of nothing), and
/// the takeover of its claims is not measured at all.
const RECEIVER_DOWN: Duration = Duration::from_secs(1);
/// Short retries on every instance, so that once the receiver is back the
/// survivors' own work goes within a second or two and what is left is
/// the killed instance's, waiting for its claims to be voided.
const RETRY_SCHEDULE: &str = "1s,1s,1s,2s,2s,5s,5s,5s,5s,5s";
/// The target for the takeover.
const TARGET_TAKEOVER_SECS: f64 = 15.0;

/// The name of user `u`.
fn user_name(u: usize) -> String {
    format!("cluster-user-{u}")
}

/// Bodies of `POST /internal/webhooks/trigger`: event `n` of user `n % USERS`.
fn event_body(n: usize) -> Bytes {
    trigger_event(&user_name(n % USERS), n)
}

/// What round-robin producers sent: as [`Sent`], and which instance
/// acknowledged each event.
#[derive(Default)]
struct Spread {
    sent: Sent,
    /// Instance that acknowledged each entry of `sent.accepted`, in order.
    acked_by: Vec<usize>,
    /// Requests refused or unanswered by one instance and sent to the next.
    failovers: usize,
}

/// The instance after `from` that is not marked down.
fn next_up(from: usize, down: &[AtomicBool]) -> usize {
    let n = down.len();
    (1..=n)
        .map(|step| (from + step) % n)
        .find(|i| !down[*i].load(Ordering::Relaxed))
        .unwrap_or((from + 1) % n)
}

/// Posts events `first..first + events`, event `n` to instance `n % INSTANCES`
/// (or the next one up), `concurrency` at a time. `acked` counts acknowledged
/// events as they come, for the caller to act on mid-run.
async fn round_robin(
    http: &Http,
    bases: Arc<Vec<String>>,
    down: Arc<Vec<AtomicBool>>,
    first: usize,
    events: usize,
    concurrency: usize,
    acked: Arc<AtomicUsize>,
) -> Spread {
    let next = Arc::new(AtomicUsize::new(first));
    let end = first + events;
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (http, bases, down, next, acked) = (
            http.clone(),
            bases.clone(),
            down.clone(),
            next.clone(),
            acked.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut spread = Spread::default();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= end {
                    break;
                }
                let mut target = n % bases.len();
                if down[target].load(Ordering::Relaxed) {
                    target = next_up(target, &down);
                }
                // Each instance twice at most, then the event counts as failed.
                for attempt in 0..2 * bases.len() {
                    let at = Instant::now();
                    let uri = format!("{}/internal/webhooks/trigger", bases[target]);
                    let result = http.post(&uri, Some(INTERNAL_SECRET), event_body(n)).await;
                    let answered = Instant::now();
                    match result {
                        Ok((202, body)) => {
                            spread.sent.started =
                                Some(spread.sent.started.map_or(at, |s| s.min(at)));
                            spread.sent.finished = Some(answered);
                            spread
                                .sent
                                .round_trips_ms
                                .push(answered.duration_since(at).as_secs_f64() * 1000.0);
                            for id in event_ids(&body) {
                                spread.sent.accepted.push((id, at));
                                spread.acked_by.push(target);
                            }
                            acked.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        // The instance is gone or cannot store: the next one.
                        Ok((503, _)) | Err(_) if attempt + 1 < 2 * bases.len() => {
                            spread.failovers += 1;
                            target = next_up(target, &down);
                        }
                        Ok((status, body)) => {
                            spread.sent.errors += 1;
                            spread.sent.first_error.get_or_insert_with(|| {
                                format!(
                                    "event {n}: HTTP {status}: {}",
                                    String::from_utf8_lossy(&body)
                                )
                            });
                            break;
                        }
                        Err(e) => {
                            spread.sent.errors += 1;
                            spread
                                .sent
                                .first_error
                                .get_or_insert_with(|| format!("event {n}: {e:#}"));
                            break;
                        }
                    }
                }
            }
            spread
        }));
    }
    let mut all = Spread::default();
    for w in workers {
        if let Ok(part) = w.await {
            all.absorb(part);
        }
    }
    all
}

impl Spread {
    fn absorb(&mut self, other: Spread) {
        self.sent.accepted.extend(other.sent.accepted);
        self.acked_by.extend(other.acked_by);
        self.sent.errors += other.sent.errors;
        self.sent.round_trips_ms.extend(other.sent.round_trips_ms);
        self.failovers += other.failovers;
        if self.sent.first_error.is_none() {
            self.sent.first_error = other.sent.first_error;
        }
        self.sent.started = match (self.sent.started, other.sent.started) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.sent.finished = match (self.sent.finished, other.sent.finished) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// A counter of the instance's `/metrics`.
async fn counter(http: &Http, svc: &Service, name: &str) -> anyhow::Result<u64> {
    let (status, body) = http.get(&format!("{}/metrics", svc.base), None).await?;
    if status != 200 {
        bail!("/metrics answered {status}");
    }
    let text = String::from_utf8_lossy(&body);
    counter_in(&text, name).with_context(|| format!("no {name} in /metrics"))
}

/// The value of counter `name` in Prometheus text.
fn counter_in(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Percentages of `counts`, to 0.1 %.
fn shares_pct(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|c| {
            if total == 0 {
                0.0
            } else {
                (*c as f64 * 1000.0 / total as f64).round() / 10.0
            }
        })
        .collect()
}

fn secs3(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Receives until every accepted event of `sent` has arrived or nothing
/// arrives for [`DRAIN_STALL`]; returns every record taken.
///
/// Matched by id, not counted: events an instance stored but could not
/// acknowledge before it was killed are delivered too, under ids the
/// producers never saw, and counting them made the wait end while an
/// acknowledged event was still on its way.
async fn drain(receiver: &CountingReceiver, sent: &Sent) -> Vec<(String, Instant)> {
    let mut missing: std::collections::HashSet<&str> =
        sent.accepted.iter().map(|(id, _)| id.as_str()).collect();
    let mut records = Vec::with_capacity(sent.accepted.len());
    let mut last_arrival = Instant::now();
    while !missing.is_empty() && last_arrival.elapsed() < DRAIN_STALL {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let taken = receiver.take_records();
        if !taken.is_empty() {
            last_arrival = Instant::now();
        }
        for (id, _) in &taken {
            missing.remove(id.as_str());
        }
        records.extend(taken);
    }
    records.extend(receiver.take_records());
    records
}

/// Runs both phases on three instances of one PostgreSQL database.
pub(crate) async fn run(s: &Settings) -> anyhow::Result<Report> {
    if s.database_url.is_none() {
        bail!("cluster runs instances on one PostgreSQL database: pass --database-url");
    }
    let steady_events = s.count(20_000, 300);
    let kill_events = steady_events;
    let http = Http::default();
    let ceiling = ceiling(steady_events.min(100_000), s.concurrency).await?;
    let receiver = CountingReceiver::with_capacity(steady_events + kill_events).await?;
    let mut instances = Vec::with_capacity(INSTANCES);
    for _ in 0..INSTANCES {
        instances.push(start(
            s,
            &[("WEBHOOK_RETRY_SCHEDULE", RETRY_SCHEDULE.to_string())],
        )?);
    }
    for u in 0..USERS {
        let token = Service::mint_token(&user_name(u), false)?;
        let url = receiver.url(&format!("/hook/{u}"));
        create_webhook(&http, &instances[u % INSTANCES], &token, &url).await?;
    }
    // Every instance routes to every webhook (changes reach the others
    // within a second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let admin = Service::mint_token("cluster-operator", true)?;
    let bases = Arc::new(instances.iter().map(|i| i.base.clone()).collect::<Vec<_>>());
    let down: Arc<Vec<AtomicBool>> =
        Arc::new((0..INSTANCES).map(|_| AtomicBool::new(false)).collect());

    // Steady: every instance up.
    const DELIVERED: &str = "webhook_deliveries_delivered_total";
    let mut delivered_before = Vec::with_capacity(INSTANCES);
    for svc in &instances {
        delivered_before.push(counter(&http, svc, DELIVERED).await?);
    }
    let steady = round_robin(
        &http,
        bases.clone(),
        down.clone(),
        0,
        steady_events,
        s.concurrency,
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    let steady_records = drain(&receiver, &steady.sent).await;
    let mut delivered = Vec::with_capacity(INSTANCES);
    for (svc, before) in instances.iter().zip(&delivered_before) {
        delivered.push(
            counter(&http, svc, DELIVERED)
                .await?
                .saturating_sub(*before),
        );
    }
    let mut ingested = [0u64; INSTANCES];
    for i in &steady.acked_by {
        ingested[*i] += 1;
    }
    let mut r = report(
        "cluster",
        s,
        &steady.sent,
        &steady_records,
        1,
        &instances[VICTIM],
        ceiling,
    );
    // Every instance's CPU and memory, not only the first one's.
    let cpu: f64 = instances.iter().map(Service::cpu_seconds).sum();
    r.extra.insert(
        "service_cpu_ms_per_delivery".into(),
        json!((cpu * 1e6 / steady_records.len().max(1) as f64).round() / 1000.0),
    );
    r.peak_rss_mb = instances
        .iter()
        .map(Service::peak_rss_mb)
        .fold(0.0, f64::max);

    // Kill: the victim goes once 40 % of the phase is acknowledged.
    let acked = Arc::new(AtomicUsize::new(0));
    let producers = {
        let (http, bases, down, acked) = (http.clone(), bases.clone(), down.clone(), acked.clone());
        let concurrency = s.concurrency;
        tokio::spawn(async move {
            round_robin(
                &http,
                bases,
                down,
                steady_events,
                kill_events,
                concurrency,
                acked,
            )
            .await
        })
    };
    let kill_after = (kill_events as f64 * KILL_AT) as usize;
    while acked.load(Ordering::Relaxed) < kill_after && !producers.is_finished() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Every instance now claims work it cannot deliver; then one dies
    // holding its share and the receiver comes back.
    receiver.set_down(true).await?;
    tokio::time::sleep(RECEIVER_DOWN).await;
    down[VICTIM].store(true, Ordering::Relaxed);
    instances[VICTIM].kill();
    let killed_at = Instant::now();
    receiver.set_down(false).await?;
    let killing = producers.await.context("the producers failed")?;
    let records = drain(&receiver, &killing.sent).await;

    // Everything acknowledged before the kill: the killed instance may have
    // held any of it claimed, whoever acknowledged it.
    let before_kill: Vec<usize> = (0..killing.sent.accepted.len())
        .filter(|i| killing.sent.accepted[*i].1 < killed_at)
        .collect();
    let first_arrival: std::collections::HashMap<&str, Instant> = {
        let mut m = std::collections::HashMap::with_capacity(records.len());
        for (id, at) in &records {
            m.entry(id.as_str()).or_insert(*at);
        }
        m
    };
    let mut pending_at_kill = 0;
    let mut victim_pending_at_kill = 0;
    let mut takeover = Duration::ZERO;
    let mut victim_takeover = Duration::ZERO;
    for i in &before_kill {
        let (id, _) = &killing.sent.accepted[*i];
        let arrived = first_arrival.get(id.as_str()).copied();
        // Missing ones count as lost below, not here.
        let Some(arrived) = arrived else { continue };
        if arrived > killed_at {
            pending_at_kill += 1;
            takeover = takeover.max(arrived - killed_at);
            if killing.acked_by[*i] == VICTIM {
                victim_pending_at_kill += 1;
                victim_takeover = victim_takeover.max(arrived - killed_at);
            }
        }
    }
    let killed = match_receipts(&killing.sent.accepted, &records, 1);
    let lost_before_kill = before_kill
        .iter()
        .filter(|i| !first_arrival.contains_key(killing.sent.accepted[**i].0.as_str()))
        .count();

    // Loss and errors of both phases; unfinished work on a survivor's
    // view of the shared database.
    let mut all = Sent {
        accepted: steady.sent.accepted.clone(),
        ..Sent::default()
    };
    all.accepted.extend(killing.sent.accepted.iter().cloned());
    let mut all_records = steady_records;
    all_records.extend(records);
    r.lost = match_receipts(&all.accepted, &all_records, 1).lost;
    r.errors += killing.sent.errors;
    if r.first_error.is_none() {
        r.first_error = killing.sent.first_error.clone();
    }
    settle(
        &mut r,
        &http,
        &instances[1],
        &admin,
        &receiver,
        &all,
        all_records,
        1,
    )
    .await?;

    let figures = [
        ("instances", json!(INSTANCES)),
        ("webhooks", json!(USERS)),
        ("ingest_share_pct", json!(shares_pct(&ingested))),
        ("delivery_share_pct", json!(shares_pct(&delivered))),
        ("failovers_steady", json!(steady.failovers)),
        ("kill_phase_events", json!(killing.sent.accepted.len())),
        (
            "receiver_down_before_kill_secs",
            json!(RECEIVER_DOWN.as_secs_f64()),
        ),
        ("retry_schedule", json!(RETRY_SCHEDULE)),
        ("acked_before_kill", json!(before_kill.len())),
        ("pending_at_kill", json!(pending_at_kill)),
        (
            "victim_acked_pending_at_kill",
            json!(victim_pending_at_kill),
        ),
        ("takeover_secs", json!(secs3(takeover))),
        ("victim_acked_takeover_secs", json!(secs3(victim_takeover))),
        ("lost_acked_before_kill", json!(lost_before_kill)),
        ("lost_kill_phase", json!(killed.lost)),
        ("duplicates_kill_phase", json!(killed.duplicates)),
        ("failovers_kill_phase", json!(killing.failovers)),
        (
            "targets",
            json!({"duplicates": 0, "takeover_secs": TARGET_TAKEOVER_SECS, "lost": 0}),
        ),
        (
            "targets_met",
            json!({"duplicates": r.duplicates == 0,
                   "takeover_secs": takeover.as_secs_f64() <= TARGET_TAKEOVER_SECS,
                   "lost": r.lost == 0}),
        ),
    ];
    for (key, value) in figures {
        r.extra.insert(key.into(), value);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn the_next_instance_up_skips_the_ones_down() {
        let down: Vec<AtomicBool> = [true, false, false]
            .into_iter()
            .map(AtomicBool::new)
            .collect();
        assert_eq!(next_up(2, &down), 1);
        assert_eq!(next_up(1, &down), 2);
        assert_eq!(next_up(0, &down), 1);
    }

    #[test]
    fn reads_a_counter_and_splits_it_into_shares() {
        let text = "# TYPE webhook_deliveries_delivered_total counter\n\
                    webhook_deliveries_delivered_total_x 9\n\
                    webhook_deliveries_delivered_total 42\n";
        assert_eq!(
            counter_in(text, "webhook_deliveries_delivered_total"),
            Some(42)
        );
        assert_eq!(counter_in(text, "webhook_absent_total"), None);
        assert_eq!(shares_pct(&[1, 1, 2]), [25.0, 25.0, 50.0]);
        assert_eq!(shares_pct(&[0, 0]), [0.0, 0.0]);
    }

    #[test]
    fn event_bodies_are_for_users_in_turn() {
        let body: Value = serde_json::from_slice(&event_body(USERS + 3)).unwrap();
        assert_eq!(body["userId"], user_name(3));
        assert_eq!(body["data"]["seq"], USERS + 3);
    }
}
