//! The scenarios of the benchmark issue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::{Value, json};
use webhook_testkit::{Behavior, CountingReceiver, Receiver};

use crate::load::{Http, Sent, closed_loop, open_loop};
use crate::machine::{CpuTimes, own_cpu_seconds};
use crate::service::{INTERNAL_SECRET, Service};
use crate::{Report, Settings, match_receipts, percentile, wait_until};

/// Every scenario, in the order `all` runs them.
pub const ALL: &[&str] = &[
    "throughput",
    "batch",
    "fanout",
    "fanout-filtered",
    "latency",
    "backlog",
    "isolation",
    "ratelimit",
    "fifo",
    "portal-reads",
    "https",
    "many-endpoints",
    "tenants",
    "cluster",
];

/// Runs one scenario by name.
///
/// The report says what share of the machine's time the hypervisor took
/// while the scenario ran (`machine_steal_pct`) and how busy the machine
/// was (`machine_busy_pct`), where the kernel tells (see [`CpuTimes`]).
pub async fn run(name: &str, s: &Settings) -> anyhow::Result<Report> {
    let before = CpuTimes::now();
    let mut report = match name {
        "throughput" => throughput(s).await,
        "batch" => batch(s).await,
        "fanout" => fanout(s, false).await,
        "fanout-filtered" => fanout(s, true).await,
        "ratelimit" => ratelimit(s).await,
        "fifo" => fifo(s).await,
        "latency" => latency(s).await,
        "backlog" => backlog(s).await,
        "isolation" => isolation(s).await,
        "portal-reads" => crate::reads::run(s).await,
        "https" => crate::endpoints::https(s).await,
        "many-endpoints" => crate::endpoints::many_endpoints(s).await,
        "tenants" => crate::tenancy::tenants(s).await,
        "cluster" => crate::cluster::run(s).await,
        other => bail!("unknown scenario '{other}' (known: {})", ALL.join(", ")),
    }?;
    let shares = before
        .zip(CpuTimes::now())
        .and_then(|(a, b)| a.shares_until(&b));
    if let Some(shares) = shares {
        report
            .extra
            .insert("machine_steal_pct".into(), json!(shares.steal));
        report
            .extra
            .insert("machine_busy_pct".into(), json!(shares.busy));
    }
    Ok(report)
}

/// An event with a data payload of about the guide's size, as JSON text.
///
/// Written straight into the request body: the producers make one per
/// request, and building a `serde_json::Value` first took 15 % of the
/// harness's CPU in `throughput` (perf), CPU the service then lacked on the
/// machine's two cores. `user` is one of the harness's plain names.
fn push_event(out: &mut String, user: &str, i: usize) {
    push_event_of(out, "credit.low", user, i);
}

/// [`push_event`] with another event type.
pub(crate) fn push_event_of(out: &mut String, event_type: &str, user: &str, i: usize) {
    use std::fmt::Write as _;
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        r#"{{"eventType":"{event_type}","userId":"{user}","data":{},"metadata":{{"service":"core-service","timestamp":"2025-01-01T00:00:00.000Z"}}}}"#,
        event_data(user, i)
    );
}

/// The `data` of event `i`.
fn event_data(user: &str, i: usize) -> String {
    format!(
        r#"{{"userId":"{user}","balance":8,"threshold":10,"seq":{i},"lowCreditAt":"2025-01-01T00:00:00.000Z"}}"#
    )
}

/// The body of `POST /internal/webhooks/trigger` carrying event `i` of `user`.
pub(crate) fn trigger_event(user: &str, i: usize) -> Bytes {
    let mut out = String::with_capacity(320);
    push_event(&mut out, user, i);
    Bytes::from(out)
}

/// Request bodies for `POST /internal/webhooks/trigger`, body `i` carrying event `i`.
fn trigger_body(user: &'static str) -> Arc<dyn Fn(usize) -> Bytes + Send + Sync> {
    Arc::new(move |i| trigger_event(user, i))
}

/// Request bodies for `POST /internal/events/batch`, body `i` carrying events
/// `i * batch_size ..` up to `(i + 1) * batch_size`.
pub(crate) fn batch_body(batch_size: usize) -> Arc<dyn Fn(usize) -> Bytes + Send + Sync> {
    Arc::new(move |i| {
        let mut out = String::with_capacity(16 + 320 * batch_size);
        out.push_str(r#"{"events":["#);
        for j in 0..batch_size {
            if j > 0 {
                out.push(',');
            }
            push_event(&mut out, "bench-user", i * batch_size + j);
        }
        out.push_str("]}");
        Bytes::from(out)
    })
}

pub(crate) async fn create_webhook(
    http: &Http,
    svc: &Service,
    token: &str,
    url: &str,
) -> anyhow::Result<()> {
    create_webhook_with(http, svc, token, url, json!({})).await
}

/// A webhook of `url` with the extra fields of `controls` (a filter, a rate limit).
async fn create_webhook_with(
    http: &Http,
    svc: &Service,
    token: &str,
    url: &str,
    controls: Value,
) -> anyhow::Result<()> {
    let mut body =
        json!({"url": url, "eventTypes": ["*"], "secret": "bench-webhook-secret-0123456789"});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), controls.as_object()) {
        body.extend(extra.clone());
    }
    post_webhook(http, &svc.base, token, &body).await
}

/// `POST /api/v1/webhooks` of `body` as `token`'s user on the service at
/// `base`; anything but 201 is an error naming the status and the answer.
pub(crate) async fn post_webhook(
    http: &Http,
    base: &str,
    token: &str,
    body: &Value,
) -> anyhow::Result<()> {
    let (status, resp) = http
        .post(
            &format!("{base}/api/v1/webhooks"),
            Some(token),
            Bytes::from(body.to_string()),
        )
        .await?;
    if status != 201 {
        bail!(
            "creating a webhook answered {status}: {}",
            String::from_utf8_lossy(&resp)
        );
    }
    Ok(())
}

/// Longest wait, after a measurement, for deliveries the service still holds.
const STRAGGLERS_WAIT: Duration = Duration::from_secs(120);

/// Deliveries of `token`'s user that the service has not finished (pending or
/// retrying), from its own statistics.
async fn unfinished(http: &Http, svc: &Service, token: &str) -> anyhow::Result<u64> {
    let (status, body) = http
        .get(&format!("{}/api/v1/webhooks/stats", svc.base), Some(token))
        .await?;
    if status != 200 {
        bail!(
            "the statistics answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let stats: Value = serde_json::from_slice(&body).context("statistics are not JSON")?;
    stats
        .pointer("/data/pendingDeliveries")
        .and_then(Value::as_u64)
        .with_context(|| format!("no pendingDeliveries in the statistics: {stats}"))
}

/// Where the deliveries of a run arrive: the counting receiver, plain or
/// behind TLS.
pub(crate) trait Sink: Sync {
    fn count(&self) -> usize;
    fn take_records(&self) -> Vec<(String, Instant)>;
}

impl Sink for CountingReceiver {
    fn count(&self) -> usize {
        CountingReceiver::count(self)
    }
    fn take_records(&self) -> Vec<(String, Instant)> {
        CountingReceiver::take_records(self)
    }
}

/// Tells late deliveries from lost ones.
///
/// A measurement stops waiting once receipts stall; an event missing then may
/// still be on its way (a retry after a timeout). While the service reports
/// unfinished deliveries for the user, wait (at most [`STRAGGLERS_WAIT`]),
/// then match every receipt again: `lost` counts what is still missing when
/// nothing is left to deliver, `late` what arrived after the measurement. The
/// rates and latencies stay those of the measurement. Last, the service's
/// histogram of ingest commits goes into the report (`ingest_commit_ms`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn settle(
    r: &mut Report,
    http: &Http,
    svc: &Service,
    token: &str,
    receiver: &dyn Sink,
    sent: &Sent,
    mut receipts: Vec<(String, Instant)>,
    per_event: usize,
) -> anyhow::Result<()> {
    // Receipts come before the service records them: even with nothing
    // missing, the last few deliveries may still count as unfinished briefly.
    let deadline = Instant::now() + STRAGGLERS_WAIT;
    let mut left = unfinished(http, svc, token).await?;
    while left > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = unfinished(http, svc, token).await?;
    }
    let mut late = 0;
    if r.lost > 0 {
        receipts.extend(receiver.take_records());
        let m = match_receipts(&sent.accepted, &receipts, per_event);
        late = r.lost - m.lost;
        r.lost = m.lost;
        r.duplicates = m.duplicates;
    }
    r.extra.insert("late".into(), json!(late));
    r.extra.insert("unfinished_at_end".into(), json!(left));
    r.extra
        .insert("ingest_commit_ms".into(), ingest_commits(http, svc).await?);
    Ok(())
}

/// The service's own histogram of ingest commits (every ingest call of the
/// run): how much of the producers' wait was the store.
async fn ingest_commits(http: &Http, svc: &Service) -> anyhow::Result<Value> {
    let (status, body) = http.get(&format!("{}/metrics", svc.base), None).await?;
    if status != 200 {
        bail!("/metrics answered {status}");
    }
    let text = String::from_utf8_lossy(&body);
    let histogram = crate::metrics::histogram(&text, "webhook_ingest_commit_seconds")
        .context("no webhook_ingest_commit_seconds in /metrics")?;
    Ok(histogram.to_json_ms())
}

/// Rounds of the ceiling measurement; the best counts.
const CEILING_ROUNDS: usize = 3;

/// The loopback ceiling of a run: the same generator straight to a fresh
/// receiver, in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ceiling {
    /// Requests per second of the best round.
    pub per_sec: f64,
    /// This process's CPU (generator and receiver: both ends of one plain
    /// HTTP exchange) per request, the least of the rounds, in ms.
    ///
    /// The least, because a round's CPU only grows with what else the
    /// machine does (cache misses, migrations between cores), never shrinks.
    pub cpu_ms_per_request: f64,
}

/// The loopback ceiling: the same generator straight to a fresh receiver.
///
/// The best of [`CEILING_ROUNDS`] rounds: on this shared machine one round of
/// a second or two varied from 24,000 to 74,000 requests/s between runs, and
/// a ceiling is the fastest the machine was seen to go, not an average.
pub(crate) async fn ceiling(requests: usize, concurrency: usize) -> anyhow::Result<Ceiling> {
    let mut best = Ceiling::default();
    for _ in 0..CEILING_ROUNDS {
        let round = ceiling_round(requests, concurrency).await?;
        best.per_sec = best.per_sec.max(round.per_sec);
        if best.cpu_ms_per_request == 0.0 || round.cpu_ms_per_request < best.cpu_ms_per_request {
            best.cpu_ms_per_request = round.cpu_ms_per_request;
        }
    }
    Ok(best)
}

async fn ceiling_round(requests: usize, concurrency: usize) -> anyhow::Result<Ceiling> {
    let receiver = CountingReceiver::with_capacity(requests).await?;
    let envelope = bare_envelope();
    let cpu_before = own_cpu_seconds();
    let sent = closed_loop(
        &receiver.url("/ceiling"),
        None,
        requests,
        concurrency,
        Arc::new(move |_| envelope.clone()),
    )
    .await;
    let answered = requests - sent.errors;
    let cpu_ms_per_request = (own_cpu_seconds() - cpu_before) * 1000.0 / answered.max(1) as f64;
    let secs = sent.elapsed().as_secs_f64();
    Ok(Ceiling {
        per_sec: if secs > 0.0 {
            answered as f64 / secs
        } else {
            0.0
        },
        cpu_ms_per_request,
    })
}

/// What the ceiling and the floor post straight to the receiver: an
/// envelope of the size the service delivers.
fn bare_envelope() -> Bytes {
    // `id` first, as the service writes it: the receiver reads the id of
    // such a body without parsing the JSON, for the ceiling as for the run.
    Bytes::from(format!(
        r#"{{"id":"evt_01JCEILING0000000000000000","eventType":"credit.low","userId":"bench-user","data":{},"metadata":{{"service":"core-service","timestamp":"2025-01-01T00:00:00.000Z"}}}}"#,
        event_data("bench-user", 0)
    ))
}

/// How long the floor of a steady scenario is measured.
fn floor_duration(s: &Settings) -> Duration {
    if s.smoke {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    }
}

/// The latency floor of a steady rate: the same open-loop generator at the
/// same rate posting straight to the same kind of receiver, nothing in
/// between. Its round trip crosses loopback twice, as an event does on its
/// way through the service (producer to service, service to receiver), so
/// its tail is the part of a scenario's tail that the machine makes by
/// itself (scheduling, waking idle cores) at that rate.
async fn latency_floor(http: &Http, rate: u32, duration: Duration) -> anyhow::Result<Value> {
    let receiver =
        CountingReceiver::with_capacity((f64::from(rate) * duration.as_secs_f64()) as usize)
            .await?;
    let envelope = bare_envelope();
    let sent = open_loop(
        http,
        &receiver.url("/floor"),
        None,
        rate,
        duration,
        Arc::new(move |_| envelope.clone()),
    )
    .await;
    receiver.shutdown();
    if sent.round_trips_ms.is_empty() {
        bail!(
            "the latency floor got no answer: {}",
            sent.first_error.unwrap_or_default()
        );
    }
    Ok(percentiles(sent.round_trips_ms))
}

/// p50, p99 and p999 of `values` (ms) as JSON, to 0.01 ms.
fn percentiles(mut values: Vec<f64>) -> Value {
    values.sort_by(f64::total_cmp);
    let at = |p: f64| (percentile(&values, p) * 100.0).round() / 100.0;
    json!({"p50": at(0.50), "p99": at(0.99), "p999": at(0.999)})
}

pub(crate) fn start(s: &Settings, extra: &[(&str, String)]) -> anyhow::Result<Service> {
    Service::start(&s.binary, s.database_url.as_deref(), extra)
}

/// Fills the report from what was sent and received.
pub(crate) fn report(
    name: &str,
    s: &Settings,
    sent: &Sent,
    receipts: &[(String, Instant)],
    per_event: usize,
    svc: &Service,
    ceiling: Ceiling,
) -> Report {
    let m = match_receipts(&sent.accepted, receipts, per_event);
    let span = match (sent.started, m.last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let ingest_secs = sent.elapsed().as_secs_f64();
    let mut extra = serde_json::Map::new();
    // How long producers waited for their answers (per request: 100 events
    // in `batch`).
    extra.insert(
        "ingest_latency_ms".into(),
        percentiles(sent.round_trips_ms.clone()),
    );
    let deliveries = m.received.max(1) as f64;
    // CPU seconds as milliseconds per delivery, to the microsecond.
    let per_delivery = |seconds: f64| json!((seconds * 1e6 / deliveries).round() / 1000.0);
    let service_cpu_ms = svc.cpu_seconds() * 1000.0 / deliveries;
    extra.insert(
        "service_cpu_ms_per_delivery".into(),
        per_delivery(svc.cpu_seconds()),
    );
    // The efficiency figure: a delivery's CPU in units of one plain HTTP
    // exchange (both ends) measured in the same run. Both move with the
    // machine's speed, so their ratio does not (a delivery is one request in
    // and one out, plus the store: 2 would be a service that costs no more
    // than relaying).
    let exchange_ms = ceiling.cpu_ms_per_request;
    if exchange_ms > 0.0 {
        extra.insert(
            "ceiling_cpu_ms_per_request".into(),
            json!((exchange_ms * 1e6).round() / 1e6),
        );
        extra.insert(
            "cpu_per_delivery_to_ceiling".into(),
            json!((service_cpu_ms / exchange_ms * 100.0).round() / 100.0),
        );
    }
    // The database's share: Svix and PostgreSQL spent about 1 ms each per
    // message on this machine, and the issue measures us against both.
    if let Some(seconds) = svc.postgres_cpu_seconds() {
        extra.insert("postgres_cpu_ms_per_delivery".into(), per_delivery(seconds));
    }
    // The rest of the machine: the receivers and producers share the
    // service's cores, so a scenario whose receivers work hard (each
    // delivery a TLS handshake in `many-endpoints`) caps the rate whatever
    // the service spends.
    extra.insert(
        "harness_cpu_ms_per_delivery".into(),
        per_delivery(svc.harness_cpu_seconds()),
    );
    Report {
        scenario: name.into(),
        store: s.store().into(),
        events: sent.accepted.len(),
        ingest_per_sec: if ingest_secs > 0.0 {
            sent.accepted.len() as f64 / ingest_secs
        } else {
            0.0
        },
        deliveries_per_sec: if span > 0.0 {
            m.received.min(sent.accepted.len() * per_event) as f64 / span
        } else {
            0.0
        },
        latency_ms: (
            percentile(&m.latencies, 0.50),
            percentile(&m.latencies, 0.99),
            percentile(&m.latencies, 0.999),
        ),
        peak_rss_mb: svc.peak_rss_mb(),
        ceiling_per_sec: ceiling.per_sec,
        lost: m.lost,
        duplicates: m.duplicates,
        errors: sent.errors,
        first_error: sent.first_error.clone(),
        extra,
    }
}

async fn single_webhook_run(
    name: &str,
    s: &Settings,
    events: usize,
    batch_size: usize,
    concurrency: usize,
) -> anyhow::Result<Report> {
    single_webhook_run_with(name, s, events, batch_size, concurrency, None).await
}

/// [`single_webhook_run`] with delivery controls on the webhook.
async fn single_webhook_run_with(
    name: &str,
    s: &Settings,
    events: usize,
    batch_size: usize,
    concurrency: usize,
    controls: Option<Value>,
) -> anyhow::Result<Report> {
    let http = Http::default();
    let ceiling = ceiling(events.min(100_000), s.concurrency).await?;
    let receiver = CountingReceiver::with_capacity(events).await?;
    let svc = start(s, &[])?;
    let token = svc.token("bench-user", false)?;
    // Ordered deliveries cannot overlap: they take longer to drain.
    let drain = if controls.is_some() {
        Duration::from_secs(120)
    } else {
        Duration::from_secs(15)
    };
    match controls {
        Some(controls) => {
            create_webhook_with(&http, &svc, &token, &receiver.url("/hook"), controls).await?
        }
        None => create_webhook(&http, &svc, &token, &receiver.url("/hook")).await?,
    }
    let (uri, body): (String, Arc<dyn Fn(usize) -> Bytes + Send + Sync>) = if batch_size > 1 {
        (
            format!("{}/internal/events/batch", svc.base),
            batch_body(batch_size),
        )
    } else {
        (
            format!("{}/internal/webhooks/trigger", svc.base),
            trigger_body("bench-user"),
        )
    };
    let requests = events.div_ceil(batch_size);
    let sent = closed_loop(&uri, Some(INTERNAL_SECRET), requests, concurrency, body).await;
    wait_until(|| receiver.count(), sent.accepted.len(), drain).await;
    let receipts = receiver.take_records();
    let mut r = report(name, s, &sent, &receipts, 1, &svc, ceiling);
    settle(&mut r, &http, &svc, &token, &receiver, &sent, receipts, 1).await?;
    Ok(r)
}

async fn throughput(s: &Settings) -> anyhow::Result<Report> {
    single_webhook_run("throughput", s, s.count(100_000, 500), 1, s.concurrency).await
}

/// `throughput` with `"ordering": "fifo"` on the webhook: what ordered
/// delivery costs. Every event is one user's, so one order: deliveries go
/// one at a time, each after the previous one's result is committed, and
/// the delivery rate is bounded by that round trip rather than by the
/// endpoint's in-flight cap. Fewer events than `throughput`, as the
/// deliveries cannot overlap.
async fn fifo(s: &Settings) -> anyhow::Result<Report> {
    single_webhook_run_with(
        "fifo",
        s,
        s.count(20_000, 300),
        1,
        s.concurrency,
        Some(json!({"ordering": "fifo"})),
    )
    .await
}

async fn batch(s: &Settings) -> anyhow::Result<Report> {
    single_webhook_run("batch", s, s.count(100_000, 1_000), 100, 16).await
}

/// One event to 100 webhooks. `filtered`: every webhook has a payload
/// filter and half of them refuse the event, so the cost of evaluating
/// filters shows against the plain run (per event and webhook).
async fn fanout(s: &Settings, filtered: bool) -> anyhow::Result<Report> {
    const WEBHOOKS: usize = 100;
    let name = if filtered {
        "fanout-filtered"
    } else {
        "fanout"
    };
    // Both filters look into `data`, so the payload is parsed as it would be.
    let refuse = json!({"filter": {"data": {"absent": {"$exist": true}}}});
    let accept = json!({"filter": {"data": {"absent": {"$exist": false}}}});
    let delivered_per_event = if filtered { WEBHOOKS / 2 } else { WEBHOOKS };
    let events = s.count(1_000, 20);
    let http = Http::default();
    let ceiling = ceiling((events * WEBHOOKS).min(100_000), s.concurrency).await?;
    let receiver = CountingReceiver::with_capacity(events * WEBHOOKS).await?;
    let svc = start(s, &[("WEBHOOK_MAX_PER_USER", "1000".into())])?;
    let token = svc.token("bench-user", false)?;
    for i in 0..WEBHOOKS {
        let controls = match (filtered, i % 2) {
            (false, _) => json!({}),
            (true, 0) => accept.clone(),
            (true, _) => refuse.clone(),
        };
        let url = receiver.url(&format!("/hook/{i}"));
        create_webhook_with(&http, &svc, &token, &url, controls).await?;
    }
    let sent = closed_loop(
        &format!("{}/internal/webhooks/trigger", svc.base),
        Some(INTERNAL_SECRET),
        events,
        s.concurrency,
        trigger_body("bench-user"),
    )
    .await;
    wait_until(
        || receiver.count(),
        sent.accepted.len() * delivered_per_event,
        Duration::from_secs(15),
    )
    .await;
    let receipts = receiver.take_records();
    let mut r = report(
        name,
        s,
        &sent,
        &receipts,
        delivered_per_event,
        &svc,
        ceiling,
    );
    settle(
        &mut r,
        &http,
        &svc,
        &token,
        &receiver,
        &sent,
        receipts,
        delivered_per_event,
    )
    .await?;
    r.extra.insert("webhooks_per_event".into(), json!(WEBHOOKS));
    r.extra
        .insert("deliveries_per_event".into(), json!(delivered_per_event));
    Ok(r)
}

/// The limit of the paced endpoint in `ratelimit`, deliveries per second.
const RATE_LIMIT: u32 = 50;

/// A backlog of events to two endpoints at once: one limited to
/// [`RATE_LIMIT`] a second, one unlimited. Reports the limited endpoint's
/// rate over a 20 s window (3 s in smoke mode) starting a second after its
/// first delivery (after its initial burst), and the unlimited endpoint's
/// ordinary figures, which the limited one must not hold back.
async fn ratelimit(s: &Settings) -> anyhow::Result<Report> {
    let events = s.count(5_000, 200);
    let window = if s.smoke {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(20)
    };
    let http = Http::default();
    let ceiling = ceiling(events, s.concurrency).await?;
    let limited = CountingReceiver::with_capacity(events).await?;
    let unlimited = CountingReceiver::with_capacity(events).await?;
    let svc = start(s, &[])?;
    let token = svc.token("bench-user", false)?;
    let limit = json!({"rateLimitPerSecond": RATE_LIMIT});
    create_webhook_with(&http, &svc, &token, &limited.url("/limited"), limit).await?;
    create_webhook(&http, &svc, &token, &unlimited.url("/unlimited")).await?;
    let batch_size = 100;
    let sent = closed_loop(
        &format!("{}/internal/events/batch", svc.base),
        Some(INTERNAL_SECRET),
        events.div_ceil(batch_size),
        16,
        batch_body(batch_size),
    )
    .await;
    wait_until(
        || unlimited.count(),
        sent.accepted.len(),
        Duration::from_secs(60),
    )
    .await;
    let receipts = unlimited.take_records();
    let mut r = report("ratelimit", s, &sent, &receipts, 1, &svc, ceiling);
    r.extra.insert(
        "unlimited_done_secs".into(),
        json!(
            match (sent.started, receipts.iter().map(|(_, at)| *at).max()) {
                (Some(a), Some(b)) => (b.duration_since(a).as_secs_f64() * 100.0).round() / 100.0,
                _ => 0.0,
            }
        ),
    );
    // The limited endpoint's window: from a second after its first delivery.
    wait_until(|| limited.count(), 1, Duration::from_secs(10)).await;
    // Kept whole: a second take would miss what the first one drained.
    let mut records = limited.take_records();
    // Receipts are kept per shard: the earliest, not the first listed.
    let first = records
        .iter()
        .map(|(_, at)| *at)
        .min()
        .context("the limited endpoint received nothing")?;
    let from = first + Duration::from_secs(1);
    let until = from + window;
    tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
    records.extend(limited.take_records());
    let in_window = records
        .iter()
        .filter(|(_, at)| *at >= from && *at < until)
        .count();
    let rate = in_window as f64 / window.as_secs_f64();
    r.extra
        .insert("rate_limit_per_sec".into(), json!(RATE_LIMIT));
    r.extra
        .insert("limited_window_secs".into(), json!(window.as_secs()));
    r.extra.insert(
        "limited_per_sec".into(),
        json!((rate * 100.0).round() / 100.0),
    );
    r.extra.insert(
        "limited_error_pct".into(),
        json!(((rate / f64::from(RATE_LIMIT) - 1.0) * 1000.0).round() / 10.0),
    );
    // Waits for the limited endpoint's rest too (about 80 s at 50/s after a
    // full run's window), so that nothing is left unfinished.
    settle(&mut r, &http, &svc, &token, &unlimited, &sent, receipts, 1).await?;
    Ok(r)
}

/// `rate` events per second for `duration` to one healthy endpoint of `user`.
async fn steady_run(
    name: &str,
    s: &Settings,
    env: &[(&str, String)],
    user: &'static str,
    rate: u32,
    duration: Duration,
    ceiling: Ceiling,
) -> anyhow::Result<Report> {
    let http = Http::default();
    let expected = (f64::from(rate) * duration.as_secs_f64()) as usize;
    let receiver = CountingReceiver::with_capacity(expected).await?;
    let svc = start(s, env)?;
    let token = svc.token(user, false)?;
    create_webhook(&http, &svc, &token, &receiver.url("/hook")).await?;
    let sent = open_loop(
        &http,
        &format!("{}/internal/webhooks/trigger", svc.base),
        Some(INTERNAL_SECRET),
        rate,
        duration,
        trigger_body(user),
    )
    .await;
    wait_until(
        || receiver.count(),
        sent.accepted.len(),
        Duration::from_secs(10),
    )
    .await;
    let receipts = receiver.take_records();
    let mut r = report(name, s, &sent, &receipts, 1, &svc, ceiling);
    settle(&mut r, &http, &svc, &token, &receiver, &sent, receipts, 1).await?;
    Ok(r)
}

async fn latency(s: &Settings) -> anyhow::Result<Report> {
    let rate = s.rate(1000, 1000);
    let duration = if s.smoke {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(30)
    };
    let http = Http::default();
    let ceiling = ceiling(s.count(100_000, 500), s.concurrency).await?;
    let floor = latency_floor(&http, rate, floor_duration(s)).await?;
    let mut r = steady_run("latency", s, &[], "bench-user", rate, duration, ceiling).await?;
    r.extra.insert("offered_per_sec".into(), json!(rate));
    r.extra.insert("floor_latency_ms".into(), floor);
    Ok(r)
}

async fn backlog(s: &Settings) -> anyhow::Result<Report> {
    let events = s.count(1_000_000, 2_000);
    let http = Http::default();
    let ceiling = ceiling(events.min(100_000), s.concurrency).await?;
    let receiver = CountingReceiver::with_capacity(events).await?;
    // Short waits so that the few deliveries used as circuit-breaker probes
    // during the outage are retried within the measurement.
    let svc = start(
        s,
        &[(
            "WEBHOOK_RETRY_SCHEDULE",
            "1s,2s,5s,10s,10s,10s,10s,10s,10s,10s".into(),
        )],
    )?;
    let token = svc.token("bench-user", false)?;
    create_webhook(&http, &svc, &token, &receiver.url("/hook")).await?;
    receiver.set_down(true).await?;
    let batch_size = 100;
    let sent = closed_loop(
        &format!("{}/internal/events/batch", svc.base),
        Some(INTERNAL_SECRET),
        events.div_ceil(batch_size),
        16,
        batch_body(batch_size),
    )
    .await;
    let rss_during_backlog = svc.peak_rss_mb();
    let up_at = Instant::now();
    receiver.set_down(false).await?;
    wait_until(
        || receiver.count(),
        sent.accepted.len(),
        Duration::from_secs(60),
    )
    .await;
    let receipts = receiver.take_records();
    let mut r = report("backlog", s, &sent, &receipts, 1, &svc, ceiling);
    let drained = receipts.iter().filter(|(_, at)| *at >= up_at).count();
    let drain_secs = receipts
        .last()
        .map(|(_, at)| at.duration_since(up_at).as_secs_f64())
        .unwrap_or(0.0);
    r.extra.insert(
        "peak_rss_mb_during_backlog".into(),
        json!((rss_during_backlog * 100.0).round() / 100.0),
    );
    r.extra.insert(
        "drain_per_sec".into(),
        json!(if drain_secs > 0.0 {
            (drained as f64 / drain_secs).round()
        } else {
            0.0
        }),
    );
    r.extra.insert(
        "delivered_before_up".into(),
        json!(receipts.len() - drained),
    );
    // The endpoint's circuit is open when the receiver comes back (every
    // attempt failed while it was down), so the first delivery waits for the
    // next probe, up to the longest cool-down (10 s): `drain_per_sec`
    // includes that wait, these two tell it apart from the sending rate.
    let first_after_up = receipts
        .iter()
        .find(|(_, at)| *at >= up_at)
        .map(|(_, at)| *at);
    if let (Some(first), Some((_, last))) = (first_after_up, receipts.last()) {
        r.extra.insert(
            "first_delivery_after_up_ms".into(),
            json!(first.duration_since(up_at).as_millis()),
        );
        let sending = last.duration_since(first).as_secs_f64();
        if sending > 0.0 {
            r.extra.insert(
                "drain_from_first_delivery_per_sec".into(),
                json!((drained as f64 / sending).round()),
            );
        }
    }
    settle(&mut r, &http, &svc, &token, &receiver, &sent, receipts, 1).await?;
    Ok(r)
}

/// Rounds of `isolation`: each runs the healthy endpoint alone, then beside
/// one that hangs. A p99 is a run's 1 %-slowest deliveries, so one stall of
/// the shared machine in either half decided a single comparison; medians
/// of interleaved rounds do not hang on one stall. Every round's figures
/// are reported too.
const ISOLATION_ROUNDS: usize = 3;

/// The median of `values` (the lower middle one for an even count).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
        .get((sorted.len().saturating_sub(1)) / 2)
        .copied()
        .unwrap_or(0.0)
}

/// Healthy endpoint alone, then beside one that hangs past the timeout, in
/// [`ISOLATION_ROUNDS`] interleaved rounds (one in smoke mode).
async fn isolation(s: &Settings) -> anyhow::Result<Report> {
    let rate = s.rate(4000, 200);
    let duration = if s.smoke {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(10)
    };
    let rounds = if s.smoke { 1 } else { ISOLATION_ROUNDS };
    let http = Http::default();
    let ceiling = ceiling(s.count(100_000, 500), s.concurrency).await?;
    let floor = latency_floor(&http, rate, floor_duration(s)).await?;

    let mut solos = Vec::with_capacity(rounds);
    let mut besides = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let (solo, beside) = isolation_round(s, &http, rate, duration, ceiling).await?;
        solos.push(solo);
        besides.push(beside);
    }
    let p99s =
        |reports: &[Report]| -> Vec<f64> { reports.iter().map(|r| r.latency_ms.1).collect() };
    let rates =
        |reports: &[Report]| -> Vec<f64> { reports.iter().map(|r| r.deliveries_per_sec).collect() };
    let (solo_p99, beside_p99) = (median(&p99s(&solos)), median(&p99s(&besides)));
    let (solo_rate, beside_rate) = (median(&rates(&solos)), median(&rates(&besides)));

    // The main figures are those of the round whose p99 beside the hanging
    // endpoint is the median one; loss, errors and stragglers count every round.
    let middle = besides
        .iter()
        .position(|r| r.latency_ms.1 == beside_p99)
        .unwrap_or(0);
    let mut r = besides.swap_remove(middle);
    let late_of = |report: &Report| {
        report
            .extra
            .get("late")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let mut late = late_of(&r);
    let mut unfinished = r
        .extra
        .get("unfinished_at_end")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    for other in besides.iter().chain(solos.iter()) {
        r.lost += other.lost;
        r.duplicates += other.duplicates;
        r.errors += other.errors;
        late += late_of(other);
        unfinished += other
            .extra
            .get("unfinished_at_end")
            .and_then(Value::as_u64)
            .unwrap_or(0);
    }
    r.extra.insert("late".into(), json!(late));
    r.extra
        .insert("unfinished_at_end".into(), json!(unfinished));
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            (a / b * 1000.0).round() / 1000.0
        } else {
            0.0
        }
    };
    let round =
        |v: Vec<f64>| -> Vec<f64> { v.into_iter().map(|x| (x * 100.0).round() / 100.0).collect() };
    r.extra
        .insert("offered_per_sec_per_endpoint".into(), json!(rate));
    r.extra.insert("floor_latency_ms".into(), floor);
    r.extra.insert("rounds".into(), json!(rounds));
    r.extra
        .insert("solo_deliveries_per_sec".into(), json!(solo_rate.round()));
    r.extra
        .insert("solo_latency_p99_ms".into(), json!(solo_p99));
    r.extra
        .insert("latency_p99_median_ms".into(), json!(beside_p99));
    r.extra
        .insert("rate_ratio".into(), json!(ratio(beside_rate, solo_rate)));
    r.extra
        .insert("p99_ratio".into(), json!(ratio(beside_p99, solo_p99)));
    r.extra
        .insert("solo_p99_rounds_ms".into(), json!(round(p99s(&solos))));
    let mut beside_p99s = p99s(&besides);
    beside_p99s.insert(middle, beside_p99);
    r.extra
        .insert("p99_rounds_ms".into(), json!(round(beside_p99s)));
    Ok(r)
}

/// One round of `isolation`: (healthy alone, healthy beside a hanging endpoint).
async fn isolation_round(
    s: &Settings,
    http: &Http,
    rate: u32,
    duration: Duration,
    ceiling: Ceiling,
) -> anyhow::Result<(Report, Report)> {
    let env = [("WEBHOOK_TIMEOUT", "1000".to_string())];
    let solo = steady_run(
        "isolation",
        s,
        &env,
        "healthy-user",
        rate,
        duration,
        ceiling,
    )
    .await?;

    // The same load, plus as many events to an endpoint that hangs.
    let receiver = CountingReceiver::with_capacity(rate as usize * 12).await?;
    let hanging = Receiver::start(Behavior::Hang)
        .await
        .context("hanging receiver")?;
    let svc = start(s, &env)?;
    let healthy_token = svc.token("healthy-user", false)?;
    let hanging_token = svc.token("hanging-user", false)?;
    create_webhook(http, &svc, &healthy_token, &receiver.url("/healthy")).await?;
    create_webhook(http, &svc, &hanging_token, &hanging.url("/hang")).await?;
    let uri = format!("{}/internal/webhooks/trigger", svc.base);
    let (healthy_sent, hanging_sent) = tokio::join!(
        open_loop(
            http,
            &uri,
            Some(INTERNAL_SECRET),
            rate,
            duration,
            trigger_body("healthy-user")
        ),
        open_loop(
            http,
            &uri,
            Some(INTERNAL_SECRET),
            rate,
            duration,
            trigger_body("hanging-user")
        ),
    );
    wait_until(
        || receiver.count(),
        healthy_sent.accepted.len(),
        Duration::from_secs(10),
    )
    .await;
    let receipts = receiver.take_records();
    let mut r = report("isolation", s, &healthy_sent, &receipts, 1, &svc, ceiling);
    settle(
        &mut r,
        http,
        &svc,
        &healthy_token,
        &receiver,
        &healthy_sent,
        receipts,
        1,
    )
    .await?;
    r.errors += hanging_sent.errors;
    r.extra.insert(
        "hanging_events_accepted".into(),
        json!(hanging_sent.accepted.len()),
    );
    Ok((solo, r))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{bare_envelope, batch_body, median, trigger_body};

    fn parse(body: &[u8]) -> Value {
        serde_json::from_slice(body).expect("a body of the harness is JSON")
    }

    #[test]
    fn trigger_bodies_are_the_events_producers_send() {
        let body = parse(&trigger_body("bench-user")(7));
        assert_eq!(
            body,
            json!({"eventType": "credit.low", "userId": "bench-user",
                   "data": {"userId": "bench-user", "balance": 8, "threshold": 10, "seq": 7,
                            "lowCreditAt": "2025-01-01T00:00:00.000Z"},
                   "metadata": {"service": "core-service", "timestamp": "2025-01-01T00:00:00.000Z"}})
        );
    }

    #[test]
    fn batch_bodies_carry_consecutive_events() {
        let body = parse(&batch_body(3)(2));
        let seqs: Vec<u64> = body["events"]
            .as_array()
            .expect("an events array")
            .iter()
            .map(|e| e["data"]["seq"].as_u64().expect("a seq"))
            .collect();
        assert_eq!(seqs, [6, 7, 8]);
    }

    #[test]
    fn the_bare_envelope_leads_with_its_id() {
        let body = bare_envelope();
        assert!(body.starts_with(br#"{"id":"evt_"#));
        assert_eq!(parse(&body)["data"]["seq"], 0);
    }

    #[test]
    fn median_takes_the_middle_or_the_lower_middle() {
        assert_eq!(median(&[30.0, 1.5, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.0);
        assert_eq!(median(&[7.0]), 7.0);
        assert_eq!(median(&[]), 0.0);
    }
}
