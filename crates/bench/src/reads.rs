//! `portal-reads`: the API reads the portal's pages make, timed against a
//! store that holds a large delivery log for one user, first at rest and
//! then while ingest runs.
//!
//! The portal issue asks every one of these reads to answer in well under
//! 100 ms with 1,000,000 deliveries for one user; this scenario is how that
//! is measured (five webhooks of one user, 200,000 events to all five).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};
use webhook_domain::timefmt::{format_rfc3339_millis, now_ms};
use webhook_testkit::CountingReceiver;

use crate::load::{Http, closed_loop};
use crate::scenarios::{batch_body, ceiling, create_webhook, push_event_of, report, settle, start};
use crate::service::{INTERNAL_SECRET, Service};
use crate::{Report, Settings, percentile, wait_until};

/// Webhooks of the user, each subscribed to every event.
const WEBHOOKS: usize = 5;
/// Events per ingest request while filling the store.
const FILL_BATCH: usize = 100;
/// An event type only [`RARE_EVENTS`] events have, among all the others'
/// `credit.low`: the log filtered by it finds a handful of matches in the
/// whole log.
const RARE_TYPE: &str = "credit.refunded";
/// Events of [`RARE_TYPE`], sent once the store is full.
const RARE_EVENTS: usize = 5;

/// One read of a portal page: a name for the report and the path it GETs.
struct Read {
    name: &'static str,
    path: String,
    admin: bool,
}

/// The reads of the portal's pages, for the first webhook and one of its
/// deliveries (see `crates/service/portal/*.js` for the calls each page makes).
fn portal_reads(webhook: &str, delivery: &str, hour_ago: &str) -> Vec<Read> {
    let w = format!("/api/v1/webhooks/{webhook}");
    let user = |name, path: String| Read {
        name,
        path,
        admin: false,
    };
    vec![
        user("endpoint_list", "/api/v1/webhooks".into()),
        user("endpoint_figures_24h", format!("{w}/stats")),
        user(
            "endpoint_newest_delivery",
            format!("{w}/deliveries?limit=1"),
        ),
        user("endpoint_detail", w.clone()),
        user("log_page", format!("{w}/deliveries?limit=20&page=1")),
        user("log_page_50", format!("{w}/deliveries?limit=20&page=50")),
        user(
            "log_failed",
            format!("{w}/deliveries?limit=20&page=1&status=failed"),
        ),
        user(
            "log_event_type",
            format!("{w}/deliveries?limit=20&page=1&eventType=credit.low"),
        ),
        user(
            "log_rare_event_type",
            format!("{w}/deliveries?limit=20&page=1&eventType={RARE_TYPE}"),
        ),
        user(
            "log_last_hour",
            format!("{w}/deliveries?limit=20&page=1&since={hour_ago}"),
        ),
        user("delivery_detail", format!("{w}/deliveries/{delivery}")),
        user("chart_24h", format!("{w}/stats/hourly?window=24h")),
        user("chart_7d", format!("{w}/stats/hourly?window=7d")),
        user("user_totals", "/api/v1/webhooks/stats".into()),
        Read {
            name: "operator_totals",
            path: "/api/v1/webhooks/stats".into(),
            admin: true,
        },
        // The overview's charts: every user's aggregate, waiting
        // deliveries and events ingested per bucket.
        Read {
            name: "operator_chart_24h",
            path: "/api/v1/admin/stats/hourly?window=24h".into(),
            admin: true,
        },
        Read {
            name: "operator_chart_7d",
            path: "/api/v1/admin/stats/hourly?window=7d".into(),
            admin: true,
        },
    ]
}

/// Time spent on one read after which it is not repeated: a read that
/// takes seconds has answered the question already.
const READ_BUDGET: Duration = Duration::from_secs(10);

/// Times each read up to `rounds` times (fewer once it has used
/// [`READ_BUDGET`]); answers `{name: {p50, max, rounds}}` in ms, with
/// `status` for a read that did not answer 200 (a 408 is the service's
/// request timeout), which is then not repeated.
async fn time_reads(
    http: &Http,
    svc: &Service,
    reads: &[Read],
    user_token: &str,
    admin_token: &str,
    rounds: usize,
) -> anyhow::Result<Map<String, Value>> {
    let mut timings: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut refused: BTreeMap<&str, u16> = BTreeMap::new();
    for _ in 0..rounds {
        for read in reads {
            let spent: f64 = timings.get(read.name).map_or(0.0, |t| t.iter().sum());
            if refused.contains_key(read.name) || spent > READ_BUDGET.as_secs_f64() * 1000.0 {
                continue;
            }
            let token = if read.admin { admin_token } else { user_token };
            let started = Instant::now();
            let (status, _) = http
                .get(&format!("{}{}", svc.base, read.path), Some(token))
                .await
                .with_context(|| format!("{} ({})", read.name, read.path))?;
            timings
                .entry(read.name)
                .or_default()
                .push(started.elapsed().as_secs_f64() * 1000.0);
            if status != 200 {
                refused.insert(read.name, status);
            }
        }
    }
    Ok(timings
        .into_iter()
        .map(|(name, mut ms)| {
            ms.sort_by(f64::total_cmp);
            let mut figures = json!({
                "p50": (percentile(&ms, 0.5) * 100.0).round() / 100.0,
                "max": (ms.last().copied().unwrap_or(0.0) * 100.0).round() / 100.0,
                "rounds": ms.len(),
            });
            if let Some(status) = refused.get(name) {
                figures["status"] = json!(status);
            }
            (name.to_string(), figures)
        })
        .collect())
}

/// Reads that did not answer 200, by name.
fn refused(timings: &Map<String, Value>) -> Vec<String> {
    timings
        .iter()
        .filter(|(_, t)| t.get("status").is_some())
        .map(|(name, _)| name.clone())
        .collect()
}

/// The slowest median of a timing map.
fn slowest_p50(timings: &Map<String, Value>) -> f64 {
    timings
        .values()
        .filter_map(|t| t["p50"].as_f64())
        .fold(0.0, f64::max)
}

/// `GET` of JSON, failing on anything but 200.
async fn get_json(http: &Http, svc: &Service, path: &str, token: &str) -> anyhow::Result<Value> {
    let (status, body) = http
        .get(&format!("{}{path}", svc.base), Some(token))
        .await?;
    if status != 200 {
        bail!(
            "{path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    serde_json::from_slice(&body).with_context(|| format!("{path} did not answer JSON"))
}

/// Sends the [`RARE_EVENTS`] events of [`RARE_TYPE`] (one request) and
/// waits for their deliveries, which are then left out of the receipts.
async fn send_rare_events(
    http: &Http,
    batch_uri: &str,
    receiver: &CountingReceiver,
) -> anyhow::Result<()> {
    let mut body = String::from(r#"{"events":["#);
    for i in 0..RARE_EVENTS {
        if i > 0 {
            body.push(',');
        }
        push_event_of(&mut body, RARE_TYPE, "bench-user", i);
    }
    body.push_str("]}");
    let before = receiver.count();
    let (status, answer) = http
        .post(batch_uri, Some(INTERNAL_SECRET), body.into())
        .await?;
    if status != 202 && status != 200 {
        bail!(
            "the {RARE_TYPE} events were refused ({status}): {}",
            String::from_utf8_lossy(&answer)
        );
    }
    let expected = before + RARE_EVENTS * WEBHOOKS;
    wait_until(|| receiver.count(), expected, Duration::from_secs(30)).await;
    if receiver.count() < expected {
        bail!("the {RARE_TYPE} events were not all delivered within 30 s");
    }
    receiver.take_records();
    Ok(())
}

/// Fills the store, then times the portal's reads at rest and under ingest.
pub(crate) async fn run(s: &Settings) -> anyhow::Result<Report> {
    let events = s.count(200_000, 200);
    let rounds = if s.smoke { 2 } else { 20 };
    let http = Http::default();
    let ceiling = ceiling(events.min(100_000), s.concurrency).await?;
    let receiver = CountingReceiver::with_capacity(events * WEBHOOKS).await?;
    let svc = start(s, &[])?;
    let token = svc.token("bench-user", false)?;
    let admin = svc.token("bench-admin", true)?;
    for i in 0..WEBHOOKS {
        create_webhook(&http, &svc, &token, &receiver.url(&format!("/hook/{i}"))).await?;
    }

    // Fill: every event reaches all five webhooks.
    let batch_uri = format!("{}/internal/events/batch", svc.base);
    let fill_started = Instant::now();
    let sent = closed_loop(
        &batch_uri,
        Some(INTERNAL_SECRET),
        events.div_ceil(FILL_BATCH),
        16,
        batch_body(FILL_BATCH),
    )
    .await;
    wait_until(
        || receiver.count(),
        sent.accepted.len() * WEBHOOKS,
        Duration::from_secs(30),
    )
    .await;
    let receipts = receiver.take_records();
    let mut r = report("portal-reads", s, &sent, &receipts, WEBHOOKS, &svc, ceiling);
    settle(
        &mut r, &http, &svc, &token, &receiver, &sent, receipts, WEBHOOKS,
    )
    .await?;
    r.extra.insert(
        "fill_secs".into(),
        json!((fill_started.elapsed().as_secs_f64() * 10.0).round() / 10.0),
    );
    send_rare_events(&http, &batch_uri, &receiver).await?;

    let list = get_json(&http, &svc, "/api/v1/webhooks", &token).await?;
    let webhook = list
        .pointer("/data/0/id")
        .and_then(Value::as_str)
        .context("the user has no webhook")?
        .to_string();
    let page = get_json(
        &http,
        &svc,
        &format!("/api/v1/webhooks/{webhook}/deliveries?limit=20&page=1"),
        &token,
    )
    .await?;
    let delivery = page
        .pointer("/data/19/id")
        .and_then(Value::as_str)
        .context("the log's first page is not full")?
        .to_string();
    let hour_ago = format_rfc3339_millis(now_ms() - 3_600_000);
    let reads = portal_reads(&webhook, &delivery, &hour_ago);
    r.extra.insert(
        "deliveries_stored".into(),
        json!(sent.accepted.len() * WEBHOOKS),
    );

    let at_rest = time_reads(&http, &svc, &reads, &token, &admin, rounds).await?;
    r.extra
        .insert("slowest_read_p50_ms".into(), json!(slowest_p50(&at_rest)));
    r.extra
        .insert("reads_refused".into(), json!(refused(&at_rest)));
    r.extra.insert("reads_ms".into(), Value::Object(at_rest));

    // The same reads while producers keep ingesting (batches of 10 at a
    // concurrency of 4, for as long as the reads take).
    let busy = Arc::new(AtomicBool::new(true));
    let ingest = {
        let busy = busy.clone();
        let uri = batch_uri.clone();
        tokio::spawn(async move {
            let mut sent = 0usize;
            let mut round = 0usize;
            while busy.load(Ordering::Relaxed) {
                let s = closed_loop(&uri, Some(INTERNAL_SECRET), 200, 4, batch_body(10)).await;
                sent += s.accepted.len();
                round += 1;
                if round > 10_000 {
                    break;
                }
            }
            sent
        })
    };
    let under_ingest = time_reads(&http, &svc, &reads, &token, &admin, rounds).await;
    busy.store(false, Ordering::Relaxed);
    let ingested = ingest.await.context("the ingest task failed")?;
    let under_ingest = under_ingest?;
    r.extra.insert(
        "slowest_read_p50_under_ingest_ms".into(),
        json!(slowest_p50(&under_ingest)),
    );
    r.extra.insert(
        "reads_refused_under_ingest".into(),
        json!(refused(&under_ingest)),
    );
    r.extra
        .insert("reads_under_ingest_ms".into(), Value::Object(under_ingest));
    r.extra
        .insert("events_ingested_during_reads".into(), json!(ingested));
    Ok(r)
}
