//! `tenants`: a store of 100,000 webhooks owned by 50,000 users (plus a few
//! `scope: "all"` webhooks of an operator), then `throughput` for events of
//! random users, against the same run on a store of 100 webhooks of 50
//! users.
//!
//! On PostgreSQL each store is a database of its own, created beside the
//! one named and dropped at the end.
//!
//! Both stores are filled through the API first (concurrently, timed), then
//! measured in interleaved rounds (small, large, small, large, ...): each
//! round restarts the service on its store and times the start-up, reads
//! its RSS at rest, and runs the events. Medians of the rounds are the
//! figures, as one stall of the shared machine decides a single p99.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::{Value, json};
use webhook_testkit::CountingReceiver;

use crate::load::{Http, closed_loop};
use crate::scenarios::{Ceiling, ceiling, post_webhook, report, settle, start, trigger_event};
use crate::service::{INTERNAL_SECRET, Service};
use crate::{Report, Settings, percentile, wait_until};

/// `scope: "all"` webhooks of the operator: every event goes to each of them too.
const SCOPE_ALL: usize = 3;
/// Deliveries per event: the user's one webhook that takes `credit.low`,
/// and every `scope: "all"` webhook.
const PER_EVENT: usize = 1 + SCOPE_ALL;
/// Concurrent API calls while filling a store.
const FILL_CONCURRENCY: usize = 16;
/// Interleaved rounds of the measurement (one in smoke mode).
const ROUNDS: usize = 3;
/// How long a restarted service is left alone before its RSS is read.
const AT_REST: Duration = Duration::from_secs(2);

/// The targets, reported beside the figures.
const TARGET_STARTUP_SECS: f64 = 2.0;
const TARGET_RSS_AT_REST_MB: f64 = 200.0;
const TARGET_P99_RATIO: f64 = 1.5;

/// The shape of one store: `webhooks` owned by `users`, each user owning
/// `webhooks / users` of them (the first subscribed to the events sent).
#[derive(Debug, Clone, Copy)]
struct Shape {
    webhooks: usize,
    users: usize,
}

/// The name of user `u`.
fn user_name(u: usize) -> String {
    format!("tenant-{u}")
}

/// The user of webhook `k` and which of the user's webhooks it is.
fn owner_of(shape: Shape, k: usize) -> (usize, usize) {
    (k % shape.users, k / shape.users)
}

/// The subscription of a user's webhook `ordinal`: the first takes
/// `credit.low` (the events sent) in one of four spellings, the others
/// take only other types, so routing sees mixed subscriptions but every
/// event has exactly [`PER_EVENT`] deliveries.
fn event_types(k: usize, ordinal: usize) -> Value {
    if ordinal == 0 {
        match k % 4 {
            0 => json!(["*"]),
            1 => json!(["credit.low"]),
            2 => json!(["credit.*"]),
            _ => json!(["credit.low", "user.created"]),
        }
    } else {
        match k % 3 {
            0 => json!(["user.*"]),
            1 => json!(["credit.depleted", "credit.purchased"]),
            _ => json!(["service.*"]),
        }
    }
}

/// The subscription of `scope: "all"` webhook `i` (each takes `credit.low`).
fn scope_all_event_types(i: usize) -> Value {
    match i % 3 {
        0 => json!(["*"]),
        1 => json!(["credit.*"]),
        _ => json!(["credit.low", "credit.depleted"]),
    }
}

/// The user event `i` is for: random, but the same in every run.
fn user_of_event(users: usize, i: usize) -> usize {
    fastrand::Rng::with_seed(i as u64).usize(..users)
}

/// Bodies of `POST /internal/webhooks/trigger`: event `i` of a random user.
fn event_body(users: usize) -> Arc<dyn Fn(usize) -> Bytes + Send + Sync> {
    Arc::new(move |i| trigger_event(&user_name(user_of_event(users, i)), i))
}

/// A filled store, its service (stopped between rounds) and its receiver.
struct Tenancy {
    shape: Shape,
    svc: Service,
    receiver: CountingReceiver,
    /// An operator's token: the statistics of every user (see `settle`).
    admin: String,
    fill_secs: f64,
    fill_errors: usize,
    fill_first_error: Option<String>,
}

/// Starts a service on a fresh store and fills it with `shape` through the
/// API, [`FILL_CONCURRENCY`] calls at a time, each signed as its owner.
async fn fill(s: &Settings, http: &Http, shape: Shape, events: usize) -> anyhow::Result<Tenancy> {
    let receiver = CountingReceiver::with_capacity(events * PER_EVENT).await?;
    let per_user = shape.webhooks.div_ceil(shape.users);
    // The cap holds for the operator's `scope: "all"` webhooks too.
    let cap = per_user.max(SCOPE_ALL);
    let svc = start(s, &[("WEBHOOK_MAX_PER_USER", cap.to_string())])?;
    let admin = Service::mint_token("tenants-operator", true)?;
    let started = Instant::now();
    for i in 0..SCOPE_ALL {
        let body = json!({"url": receiver.url(&format!("/all/{i}")),
                          "eventTypes": scope_all_event_types(i), "scope": "all"});
        post_webhook(http, &svc.base, &admin, &body).await?;
    }
    let next = Arc::new(AtomicUsize::new(0));
    let base_url = Arc::new(receiver.url("/t/"));
    let mut workers = Vec::with_capacity(FILL_CONCURRENCY);
    for _ in 0..FILL_CONCURRENCY {
        let (http, next, base_url) = (http.clone(), next.clone(), base_url.clone());
        let svc_base = svc.base.clone();
        workers.push(tokio::spawn(async move {
            let mut errors = 0;
            let mut first_error = None;
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= shape.webhooks {
                    break;
                }
                let (user, ordinal) = owner_of(shape, k);
                let body = json!({"url": format!("{base_url}{k}"),
                                  "eventTypes": event_types(k, ordinal)});
                let result = match Service::mint_token(&user_name(user), false) {
                    Ok(token) => post_webhook(&http, &svc_base, &token, &body).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    errors += 1;
                    first_error.get_or_insert(format!("{e:#}"));
                }
            }
            (errors, first_error)
        }));
    }
    let mut fill_errors = 0;
    let mut fill_first_error = None;
    for w in workers {
        let (errors, first) = w.await.context("a fill worker failed")?;
        fill_errors += errors;
        if fill_first_error.is_none() {
            fill_first_error = first;
        }
    }
    Ok(Tenancy {
        shape,
        svc,
        receiver,
        admin,
        fill_secs: started.elapsed().as_secs_f64(),
        fill_errors,
        fill_first_error,
    })
}

/// One measured round on a filled store: restart, start-up time, RSS at
/// rest, then `events` events of random users.
async fn round(
    s: &Settings,
    http: &Http,
    t: &mut Tenancy,
    events: usize,
    ceiling: Ceiling,
) -> anyhow::Result<Report> {
    t.svc.restart()?;
    let startup = t.svc.started_in.as_secs_f64();
    tokio::time::sleep(AT_REST).await;
    let rss_at_rest = t.svc.rss_mb();
    let before = t.receiver.count();
    let sent = closed_loop(
        &format!("{}/internal/webhooks/trigger", t.svc.base),
        Some(INTERNAL_SECRET),
        events,
        s.concurrency,
        event_body(t.shape.users),
    )
    .await;
    wait_until(
        || t.receiver.count() - before,
        sent.accepted.len() * PER_EVENT,
        Duration::from_secs(15),
    )
    .await;
    let receipts = t.receiver.take_records();
    let mut r = report("tenants", s, &sent, &receipts, PER_EVENT, &t.svc, ceiling);
    settle(
        &mut r,
        http,
        &t.svc,
        &t.admin,
        &t.receiver,
        &sent,
        receipts,
        PER_EVENT,
    )
    .await?;
    r.extra
        .insert("startup_secs".into(), json!(round3(startup)));
    r.extra
        .insert("rss_at_rest_mb".into(), json!(round3(rss_at_rest)));
    // Idle between rounds: the other store's service has the machine.
    t.svc.stop();
    Ok(r)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The lower median of the figures `key` of `reports` (or of `of`).
fn median_of(reports: &[Report], of: impl Fn(&Report) -> f64) -> f64 {
    let mut values: Vec<f64> = reports.iter().map(of).collect();
    values.sort_by(f64::total_cmp);
    percentile(&values, 0.5)
}

fn extra_f64(r: &Report, key: &str) -> f64 {
    r.extra.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

/// The URL `url` with its database name replaced by `name`, and the name it
/// had: `postgres://u@h:5432/bench?x=y` → (`postgres://u@h:5432/NAME?x=y`, `bench`).
fn with_database(url: &str, name: &str) -> anyhow::Result<(String, String)> {
    let authority_at = url.find("://").map_or(0, |i| i + 3);
    let path_at = url[authority_at..]
        .find('/')
        .map(|i| authority_at + i)
        .with_context(|| format!("the database URL names no database: {url}"))?;
    let end = url[path_at..].find('?').map_or(url.len(), |i| path_at + i);
    let current = &url[path_at + 1..end];
    if current.is_empty() {
        bail!("the database URL names no database: {url}");
    }
    Ok((
        format!("{}/{name}{}", &url[..path_at], &url[end..]),
        current.to_string(),
    ))
}

/// On PostgreSQL the two stores cannot share one database: each gets a
/// database of its own beside the one `--database-url` names
/// (`<name>_tenants_small`, `<name>_tenants_large`), created empty and
/// dropped at the end.
struct Databases {
    /// Connected to the named database, to create and drop the others.
    client: tokio_postgres::Client,
    created: Vec<String>,
}

impl Databases {
    async fn connect(url: &str) -> anyhow::Result<Databases> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        tokio::spawn(connection);
        Ok(Databases {
            client,
            created: Vec::new(),
        })
    }

    /// An empty database `<name of url>_<suffix>`, and its URL.
    async fn fresh(&mut self, url: &str, suffix: &str) -> anyhow::Result<String> {
        let (_, current) = with_database(url, "")?;
        let name = format!("{current}_{suffix}");
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("cannot derive a database name from {current:?}: letters, digits and _ only");
        }
        self.drop_database(&name).await?;
        self.client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        self.created.push(name.clone());
        Ok(with_database(url, &name)?.0)
    }

    async fn drop_database(&self, name: &str) -> anyhow::Result<()> {
        self.client
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .with_context(|| format!("cannot drop database {name}"))
    }

    async fn drop_all(self) -> anyhow::Result<()> {
        for name in &self.created {
            self.drop_database(name).await?;
        }
        Ok(())
    }
}

/// Fills both stores, then measures them in interleaved rounds.
pub(crate) async fn tenants(s: &Settings) -> anyhow::Result<Report> {
    let Some(url) = &s.database_url else {
        return measure(s, s, s).await;
    };
    let mut databases = Databases::connect(url).await?;
    let small = Settings {
        database_url: Some(databases.fresh(url, "tenants_small").await?),
        ..s.clone()
    };
    let large = Settings {
        database_url: Some(databases.fresh(url, "tenants_large").await?),
        ..s.clone()
    };
    let report = measure(s, &small, &large).await;
    databases.drop_all().await?;
    report
}

/// [`tenants`] with the store settings of each shape.
async fn measure(s: &Settings, s_small: &Settings, s_large: &Settings) -> anyhow::Result<Report> {
    let large = if s.smoke {
        Shape {
            webhooks: 400,
            users: 200,
        }
    } else {
        Shape {
            webhooks: 100_000,
            users: 50_000,
        }
    };
    let small = Shape {
        webhooks: 100,
        users: 50,
    };
    let events = s.count(40_000, 300);
    let rounds = if s.smoke { 1 } else { ROUNDS };
    let http = Http::default();
    let ceiling = ceiling((events * PER_EVENT).min(100_000), s.concurrency).await?;

    let mut small = fill(s_small, &http, small, events * rounds).await?;
    small.svc.stop();
    let mut large = fill(s_large, &http, large, events * rounds).await?;
    large.svc.stop();

    let mut small_runs = Vec::with_capacity(rounds);
    let mut large_runs = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        small_runs.push(round(s_small, &http, &mut small, events, ceiling).await?);
        large_runs.push(round(s_large, &http, &mut large, events, ceiling).await?);
    }

    let p99 = |r: &Report| r.latency_ms.1;
    let (small_p99, large_p99) = (median_of(&small_runs, p99), median_of(&large_runs, p99));
    let startup = median_of(&large_runs, |r| extra_f64(r, "startup_secs"));
    let rss = median_of(&large_runs, |r| extra_f64(r, "rss_at_rest_mb"));
    let ratio = if small_p99 > 0.0 {
        round3(large_p99 / small_p99)
    } else {
        0.0
    };

    // The main figures are the large store's round with the median p99;
    // loss, errors and what was left unfinished count every round.
    let middle = large_runs
        .iter()
        .position(|r| p99(r) == large_p99)
        .unwrap_or(0);
    let mut r = large_runs[middle].clone();
    let (mut late, mut unfinished) = (0, 0);
    for (i, other) in large_runs.iter().chain(small_runs.iter()).enumerate() {
        late += other.extra.get("late").and_then(Value::as_u64).unwrap_or(0);
        unfinished += other
            .extra
            .get("unfinished_at_end")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if i != middle {
            r.lost += other.lost;
            r.duplicates += other.duplicates;
            r.errors += other.errors;
        }
    }
    r.errors += small.fill_errors + large.fill_errors;
    if r.first_error.is_none() {
        r.first_error = large
            .fill_first_error
            .clone()
            .or(small.fill_first_error.clone());
    }
    let list = |runs: &[Report], f: &dyn Fn(&Report) -> f64| -> Vec<f64> {
        runs.iter().map(|r| round3(f(r))).collect()
    };
    let figures = [
        ("webhooks", json!(large.shape.webhooks)),
        ("users", json!(large.shape.users)),
        ("scope_all_webhooks", json!(SCOPE_ALL)),
        ("deliveries_per_event", json!(PER_EVENT)),
        ("rounds", json!(rounds)),
        ("fill_secs", json!(round3(large.fill_secs))),
        (
            "fill_webhooks_per_sec",
            json!(((large.shape.webhooks + SCOPE_ALL) as f64 / large.fill_secs).round()),
        ),
        ("startup_secs", json!(startup)),
        (
            "startup_rounds_secs",
            json!(list(&large_runs, &|r: &Report| extra_f64(
                r,
                "startup_secs"
            ))),
        ),
        ("rss_at_rest_mb", json!(rss)),
        ("latency_p99_median_ms", json!(round3(large_p99))),
        (
            "p99_rounds_ms",
            json!(list(&large_runs, &|r: &Report| r.latency_ms.1)),
        ),
        ("small_webhooks", json!(small.shape.webhooks)),
        ("small_users", json!(small.shape.users)),
        ("small_fill_secs", json!(round3(small.fill_secs))),
        (
            "small_startup_secs",
            json!(median_of(&small_runs, |r| extra_f64(r, "startup_secs"))),
        ),
        (
            "small_rss_at_rest_mb",
            json!(median_of(&small_runs, |r| extra_f64(r, "rss_at_rest_mb"))),
        ),
        ("small_latency_p99_median_ms", json!(round3(small_p99))),
        (
            "small_p99_rounds_ms",
            json!(list(&small_runs, &|r: &Report| r.latency_ms.1)),
        ),
        (
            "small_deliveries_per_sec",
            json!(median_of(&small_runs, |r| r.deliveries_per_sec).round()),
        ),
        ("p99_ratio", json!(ratio)),
        ("late", json!(late)),
        ("unfinished_at_end", json!(unfinished)),
        (
            "targets",
            json!({"startup_secs": TARGET_STARTUP_SECS, "rss_at_rest_mb": TARGET_RSS_AT_REST_MB,
                   "p99_ratio": TARGET_P99_RATIO}),
        ),
        (
            "targets_met",
            json!({"startup_secs": startup <= TARGET_STARTUP_SECS,
                   "rss_at_rest_mb": rss <= TARGET_RSS_AT_REST_MB,
                   "p99_ratio": ratio <= TARGET_P99_RATIO}),
        ),
    ];
    for (key, value) in figures {
        r.extra.insert(key.into(), value);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use webhook_domain::event_type::{EventType, Subscription};

    use super::*;

    /// Whether a subscription (as the API takes it) takes `credit.low`, by
    /// the domain's own matching.
    fn takes_credit_low(types: &Value) -> bool {
        let entries: Vec<&str> = types
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let subscription = Subscription::parse(&entries).expect("a valid subscription");
        subscription.matches(&EventType::parse("credit.low").unwrap())
    }

    #[test]
    fn every_user_owns_its_share_and_exactly_one_webhook_takes_the_events() {
        let shape = Shape {
            webhooks: 24,
            users: 4,
        };
        let mut owned = vec![0; shape.users];
        let mut taking = vec![0; shape.users];
        for k in 0..shape.webhooks {
            let (user, ordinal) = owner_of(shape, k);
            owned[user] += 1;
            taking[user] += usize::from(takes_credit_low(&event_types(k, ordinal)));
        }
        assert_eq!(owned, [6, 6, 6, 6]);
        assert_eq!(taking, [1, 1, 1, 1]);
        for i in 0..SCOPE_ALL {
            assert!(takes_credit_low(&scope_all_event_types(i)), "{i}");
        }
    }

    #[test]
    fn a_stores_database_is_named_beside_the_one_given() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/bench", "bench_x").unwrap(),
            (
                "postgres://postgres@127.0.0.1:5432/bench_x".to_string(),
                "bench".to_string()
            )
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "y").unwrap(),
            (
                "postgres://u:p@h/y?sslmode=disable".to_string(),
                "db".to_string()
            )
        );
        assert!(with_database("postgres://u@h", "y").is_err());
        assert!(with_database("postgres://u@h/?a=b", "y").is_err());
    }

    #[test]
    fn events_go_to_random_users_the_same_in_every_run() {
        let users: Vec<usize> = (0..1000).map(|i| user_of_event(50, i)).collect();
        assert!(users.iter().all(|u| *u < 50));
        let distinct: std::collections::HashSet<_> = users.iter().collect();
        assert!(distinct.len() > 40, "{} users", distinct.len());
        assert_eq!(users[7], user_of_event(50, 7));
        let body: Value = serde_json::from_slice(&event_body(50)(7)).unwrap();
        assert_eq!(body["userId"], user_name(users[7]));
        assert_eq!(body["data"]["seq"], 7);
    }
}
