//! Scenarios of real receivers: HTTPS, and many endpoints that each get a
//! few events.
//!
//! * `https`: `throughput` with the receiver behind TLS 1.3 (a CA of the
//!   run's own, given to the service in `WEBHOOK_CA_FILE`), in rounds that
//!   alternate with the plain-HTTP run, side by side in one invocation.
//! * `many-endpoints`: events spread evenly over thousands of webhooks, each
//!   with an HTTPS endpoint of its own address, under a bound on the
//!   service's open connections: few connections are reused, so handshakes
//!   (most of them resumed from session tickets) dominate.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Map, Value, json};
use webhook_testkit::{CountingReceiver, TestCa, TlsCountingReceiver};

use crate::load::{Http, closed_loop};
use crate::scenarios::{
    Ceiling, Sink, ceiling, create_webhook, post_webhook, report, settle, start, trigger_event,
};
use crate::service::{INTERNAL_SECRET, Service};
use crate::{Report, Settings, wait_until};

/// Interleaved rounds of `https` (plain, then HTTPS, in each).
const HTTPS_ROUNDS: usize = 3;
/// The target: HTTPS at least this share of the plain-HTTP rate.
const HTTPS_MIN_RATIO: f64 = 0.6;
/// The targets for `many-endpoints`.
const MANY_MIN_DELIVERIES_PER_SEC: f64 = 5000.0;
const MANY_MAX_RSS_MB: f64 = 300.0;
/// `WEBHOOK_MAX_CONNECTIONS` of `many-endpoints`: a tenth of the endpoints.
const MANY_MAX_CONNECTIONS: usize = 1000;

impl Sink for TlsCountingReceiver {
    fn count(&self) -> usize {
        TlsCountingReceiver::count(self)
    }
    fn take_records(&self) -> Vec<(String, Instant)> {
        TlsCountingReceiver::take_records(self)
    }
}

/// The run's certificate authority, and its certificate in a file for
/// `WEBHOOK_CA_FILE`.
struct RunCa {
    ca: TestCa,
    _dir: tempfile::TempDir,
    file: String,
}

impl RunCa {
    fn generate() -> anyhow::Result<RunCa> {
        let ca = TestCa::generate().context("cannot generate the run's CA")?;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, &ca.ca_pem)?;
        Ok(RunCa {
            ca,
            file: path.display().to_string(),
            _dir: dir,
        })
    }
}

/// `events` events of one user to one webhook at `url`, delivered to `sink`.
async fn one_webhook_run(
    name: &str,
    s: &Settings,
    events: usize,
    sink: &dyn Sink,
    url: &str,
    env: &[(&str, String)],
    ceiling: Ceiling,
) -> anyhow::Result<Report> {
    let http = Http::default();
    let svc = start(s, env)?;
    let token = svc.token("bench-user", false)?;
    create_webhook(&http, &svc, &token, url).await?;
    let sent = closed_loop(
        &format!("{}/internal/webhooks/trigger", svc.base),
        Some(INTERNAL_SECRET),
        events,
        s.concurrency,
        Arc::new(|i| trigger_event("bench-user", i)),
    )
    .await;
    let stall = Duration::from_secs(15);
    wait_until(|| sink.count(), sent.accepted.len(), stall).await;
    let receipts = sink.take_records();
    let mut r = report(name, s, &sent, &receipts, 1, &svc, ceiling);
    settle(&mut r, &http, &svc, &token, sink, &sent, receipts, 1).await?;
    Ok(r)
}

/// The lower middle of `values`.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0.0)
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        (a / b * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

fn unfinished_of(r: &Report) -> u64 {
    r.extra
        .get("unfinished_at_end")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// `throughput` over HTTPS beside plain HTTP, in [`HTTPS_ROUNDS`]
/// interleaved rounds (one in smoke mode), each run on a fresh service.
/// The main figures are those of the HTTPS run whose rate is the median.
pub(crate) async fn https(s: &Settings) -> anyhow::Result<Report> {
    let events = s.count(50_000, 300);
    let rounds = if s.smoke { 1 } else { HTTPS_ROUNDS };
    let ceiling = ceiling(events.min(100_000), s.concurrency).await?;
    let run_ca = RunCa::generate()?;
    let env = [("WEBHOOK_CA_FILE", run_ca.file.clone())];
    let loopback = IpAddr::from([127, 0, 0, 1]);

    let mut plains = Vec::with_capacity(rounds);
    let mut secures = Vec::with_capacity(rounds);
    let mut handshakes = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let plain = CountingReceiver::with_capacity(events).await?;
        let url = plain.url("/hook");
        plains.push(one_webhook_run("https", s, events, &plain, &url, &env, ceiling).await?);
        drop(plain);

        let tls = TlsCountingReceiver::start(&run_ca.ca, &[loopback], 1, events).await?;
        let url = tls.url(0, "/hook");
        secures.push(one_webhook_run("https", s, events, &tls, &url, &env, ceiling).await?);
        handshakes.push(tls.handshakes());
    }
    let rates = |rs: &[Report]| -> Vec<f64> { rs.iter().map(|r| r.deliveries_per_sec).collect() };
    let (plain_rate, https_rate) = (median(&rates(&plains)), median(&rates(&secures)));
    let middle = secures
        .iter()
        .position(|r| r.deliveries_per_sec == https_rate)
        .unwrap_or(0);
    let mut r = secures.swap_remove(middle);
    let mut unfinished = unfinished_of(&r);
    for other in secures.iter().chain(plains.iter()) {
        r.lost += other.lost;
        r.duplicates += other.duplicates;
        r.errors += other.errors;
        unfinished += unfinished_of(other);
    }
    r.extra
        .insert("unfinished_at_end".into(), json!(unfinished));
    let round2 = |v: Vec<f64>| -> Vec<f64> { v.into_iter().map(|x| x.round()).collect() };
    let mut https_rounds = rates(&secures);
    https_rounds.insert(middle, https_rate);
    let https_to_plain = ratio(https_rate, plain_rate);
    r.extra.insert("rounds".into(), json!(rounds));
    r.extra
        .insert("plain_deliveries_per_sec".into(), json!(plain_rate.round()));
    r.extra
        .insert("plain_rounds_per_sec".into(), json!(round2(rates(&plains))));
    r.extra
        .insert("https_rounds_per_sec".into(), json!(round2(https_rounds)));
    r.extra
        .insert("https_to_plain_ratio".into(), json!(https_to_plain));
    r.extra.insert(
        "handshakes".into(),
        json!(
            handshakes
                .iter()
                .map(|h| json!({"full": h.full, "resumed": h.resumed, "failed": h.failed}))
                .collect::<Vec<_>>()
        ),
    );
    r.extra.insert(
        "targets".into(),
        json!({
            "https_to_plain_ratio": {"min": HTTPS_MIN_RATIO, "met": https_to_plain >= HTTPS_MIN_RATIO},
        }),
    );
    Ok(r)
}

/// Address `i` of the endpoints of `many-endpoints`: 127.1.0.0 onwards.
fn endpoint_address(i: usize) -> IpAddr {
    let [_, b, c, d] = u32::try_from(i).unwrap_or(u32::MAX).to_be_bytes();
    IpAddr::from([127, 1u8.saturating_add(b), c, d])
}

/// The largest number of open file descriptors of `pid` seen while it runs,
/// sampled every 50 ms.
struct FdSampler {
    peak: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// Open file descriptors of `pid` now (entries of /proc/PID/fd).
fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

impl FdSampler {
    fn start(pid: u32) -> FdSampler {
        let peak = Arc::new(AtomicUsize::new(open_fds(pid).unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, st) = (Arc::clone(&peak), Arc::clone(&stop));
        let task = tokio::spawn(async move {
            while !st.load(Ordering::Relaxed) {
                if let Some(n) = open_fds(pid) {
                    p.fetch_max(n, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        FdSampler { peak, stop, task }
    }

    async fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak.load(Ordering::Relaxed)
    }
}

/// Creates one webhook per endpoint, each of a user of its own (so that an
/// event of user `i` goes to endpoint `i` only), `parallel` at a time.
async fn create_webhooks(
    http: &Http,
    svc: &Service,
    receiver: &TlsCountingReceiver,
    webhooks: usize,
    parallel: usize,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let urls: Arc<Vec<String>> = Arc::new(
        (0..webhooks)
            .map(|i| receiver.url(i, &format!("/hook/{i}")))
            .collect(),
    );
    let mut tasks = Vec::with_capacity(parallel);
    for _ in 0..parallel {
        let (next, urls) = (Arc::clone(&next), Arc::clone(&urls));
        let (http, base) = (http.clone(), svc.base.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= urls.len() {
                    return anyhow::Ok(());
                }
                let token = Service::mint_token(&format!("ep-user-{i}"), false)?;
                let body = json!({"url": urls[i], "eventTypes": ["*"],
                                  "secret": "bench-webhook-secret-0123456789"});
                post_webhook(&http, &base, &token, &body)
                    .await
                    .with_context(|| format!("webhook {i}"))?;
            }
        }));
    }
    for task in tasks {
        task.await.context("a webhook-creating task panicked")??;
    }
    Ok(())
}

/// 100,000 events spread evenly over 10,000 webhooks (200 over 20 in smoke
/// mode), each with an HTTPS endpoint of its own address (smoke: 10
/// addresses with 2 ports each), under `WEBHOOK_MAX_CONNECTIONS`.
pub(crate) async fn many_endpoints(s: &Settings) -> anyhow::Result<Report> {
    let (addresses, ports, max_connections) = if s.smoke {
        (10, 2, 8)
    } else {
        (10_000, 1, MANY_MAX_CONNECTIONS)
    };
    let webhooks = addresses * ports;
    let events = s.count(100_000, 200);
    let run_ca = RunCa::generate()?;
    let addrs: Vec<IpAddr> = (0..addresses).map(endpoint_address).collect();
    let receiver = TlsCountingReceiver::start(&run_ca.ca, &addrs, ports, events).await?;
    let http = Http::default();
    let svc = start(
        s,
        &[
            ("WEBHOOK_CA_FILE", run_ca.file.clone()),
            ("WEBHOOK_MAX_CONNECTIONS", max_connections.to_string()),
        ],
    )?;
    let admin = svc.token("bench-admin", true)?;
    let created = Instant::now();
    create_webhooks(&http, &svc, &receiver, webhooks, 8).await?;
    let creating_secs = created.elapsed().as_secs_f64();
    let idle_fds = open_fds(svc.pid()).unwrap_or(0);

    let sampler = FdSampler::start(svc.pid());
    let sent = closed_loop(
        &format!("{}/internal/webhooks/trigger", svc.base),
        Some(INTERNAL_SECRET),
        events,
        s.concurrency,
        Arc::new(move |i: usize| trigger_event(&format!("ep-user-{}", i % webhooks), i)),
    )
    .await;
    let stall = Duration::from_secs(15);
    wait_until(|| receiver.count(), sent.accepted.len(), stall).await;
    let receipts = receiver.take_records();
    let peak_fds = sampler.finish().await;
    let mut r = report(
        "many-endpoints",
        s,
        &sent,
        &receipts,
        1,
        &svc,
        Ceiling::default(),
    );
    settle(&mut r, &http, &svc, &admin, &receiver, &sent, receipts, 1).await?;

    let handshakes = receiver.handshakes();
    let mut extra = Map::new();
    extra.insert("webhooks".into(), json!(webhooks));
    extra.insert(
        "endpoints".into(),
        json!({"addresses": addresses, "ports_per_address": ports}),
    );
    extra.insert("max_connections".into(), json!(max_connections));
    extra.insert("peak_open_fds".into(), json!(peak_fds));
    extra.insert("idle_open_fds".into(), json!(idle_fds));
    extra.insert(
        "receiver_peak_connections".into(),
        json!(receiver.peak_connections()),
    );
    extra.insert(
        "handshakes".into(),
        json!({"full": handshakes.full, "resumed": handshakes.resumed, "failed": handshakes.failed}),
    );
    extra.insert(
        "creating_webhooks_secs".into(),
        json!((creating_secs * 10.0).round() / 10.0),
    );
    // Outbound connections come on top of what the service held idle (its
    // store, listener and the harness's API connections) and the producers'
    // connections.
    let fd_bound = idle_fds + s.concurrency + max_connections;
    extra.insert(
        "targets".into(),
        json!({
            "deliveries_per_sec": {"min": MANY_MIN_DELIVERIES_PER_SEC, "met": r.deliveries_per_sec >= MANY_MIN_DELIVERIES_PER_SEC},
            "peak_rss_mb": {"max": MANY_MAX_RSS_MB, "met": r.peak_rss_mb <= MANY_MAX_RSS_MB},
            "peak_open_fds": {"max": fd_bound, "met": peak_fds <= fd_bound},
        }),
    );
    r.extra.extend(extra);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_addresses_are_distinct_and_on_loopback() {
        assert_eq!(endpoint_address(0), IpAddr::from([127, 1, 0, 0]));
        assert_eq!(endpoint_address(258), IpAddr::from([127, 1, 1, 2]));
        assert_eq!(endpoint_address(9_999), IpAddr::from([127, 1, 39, 15]));
    }

    #[test]
    fn the_median_is_the_lower_middle() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0]), 1.0);
        assert_eq!(median(&[]), 0.0);
    }
}
