//! CPU per webhook-shaped request of the service's outbound client against
//! hyper-util's pooled client, each posting to the benchmark receiver with 64
//! requests in flight, one spawned task per request (as the engine does).
//!
//! `cargo run --release -p webhook-bench --example client_cost -- outbound|hyper`
//!
//! The figure includes the receiver's CPU (same in both), so the difference
//! between the two is the difference between the clients.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use webhook_domain::address::AddressPolicy;
use webhook_outbound::{OutboundClient, OutboundConfig};

/// The headers the engine sends besides the client's own.
const HEADERS: [(&str, &str); 9] = [
    (
        "x-webhook-signature",
        "sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ),
    ("x-webhook-id", "evt_01JCEILING0000000000000000"),
    ("x-webhook-event", "credit.low"),
    ("x-webhook-timestamp", "1735689600"),
    ("x-webhook-delivery", "dlv_01JCEILING0000000000000000"),
    ("x-webhook-attempt", "1"),
    ("webhook-id", "evt_01JCEILING0000000000000000"),
    ("webhook-timestamp", "1735689600"),
    (
        "webhook-signature",
        "v1,abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG=",
    ),
];

fn cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

const BODY: &str = r#"{"id":"evt_01JCEILING0000000000000000","eventType":"credit.low","userId":"bench-user","data":{"balance":3,"threshold":10},"metadata":{"service":"core-service","timestamp":"2025-01-01T00:00:00.000Z"}}"#;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mode = std::env::args().nth(1).unwrap();
    let n: usize = 200_000;
    let receiver = webhook_testkit::CountingReceiver::start().await.unwrap();
    let url = receiver.url("/hook");
    let sem = Arc::new(Semaphore::new(64));
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(connector);
    let outbound = OutboundClient::new(OutboundConfig {
        timeout: Duration::from_secs(10),
        max_response_body: 64 * 1024,
        user_agent: "client-cost".to_string(),
        policy: Arc::new(AddressPolicy::new(
            vec!["127.0.0.0/8".parse().unwrap()],
            false,
        )),
        pool_idle_per_host: 256,
        pool_idle_timeout: Duration::from_secs(90),
        tls: Default::default(),
        proxy: None,
        limits: Default::default(),
    })
    .unwrap();
    let target = url::Url::parse(&url).unwrap();
    let (c0, t0) = (cpu(), Instant::now());
    let mut handles = Vec::new();
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let (client, url, outbound, target, mode) = (
            client.clone(),
            url.clone(),
            outbound.clone(),
            target.clone(),
            mode.clone(),
        );
        handles.push(tokio::spawn(async move {
            if mode == "hyper" {
                let mut req = http::Request::post(url.as_str())
                    .header("content-type", "application/json")
                    .header("user-agent", "client-cost");
                for (name, value) in HEADERS {
                    req = req.header(name, value);
                }
                let req = req
                    .body(Full::new(Bytes::from_static(BODY.as_bytes())))
                    .unwrap();
                let resp = client.request(req).await.unwrap();
                let _ = resp.into_body().collect().await.unwrap();
            } else {
                let mut headers = HeaderMap::with_capacity(12);
                for (name, value) in HEADERS {
                    headers.insert(name, HeaderValue::from_static(value));
                }
                let outcome = outbound
                    .post(&target, headers, Bytes::from_static(BODY.as_bytes()))
                    .await;
                assert_eq!(outcome.status, Some(200), "{:?}", outcome.error);
            }
            drop(permit);
        }));
        if handles.len() > 10000 {
            for h in handles.drain(..) {
                h.await.unwrap();
            }
        }
    }
    for h in handles {
        h.await.unwrap();
    }
    let (c1, t1) = (cpu(), t0.elapsed());
    println!(
        "{mode}: {:.0}/s, {:.1} us CPU per request (client+receiver), received {}",
        n as f64 / t1.as_secs_f64(),
        (c1 - c0) * 1e6 / n as f64,
        receiver.count()
    );
}
