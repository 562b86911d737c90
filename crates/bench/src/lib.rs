//! Benchmark harness of the webhook service.
//!
//! Each scenario starts the real `webhook-service` binary (embedded store in
//! a temporary directory, or PostgreSQL), a minimal receiver and a load
//! generator in this process, and reports one JSON object. Latency is from
//! the moment the producer sends an event to the moment the receiver has the
//! delivery. The ceiling is measured in the same run: the same generator
//! posting straight to the same kind of receiver.

mod cluster;
mod endpoints;
pub mod load;
pub mod machine;
pub mod metrics;
mod reads;
pub mod scenarios;
pub mod service;
mod tenancy;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

/// Scenarios that need PostgreSQL (`--database-url`): `all` on the
/// embedded store leaves them out.
pub const POSTGRES_ONLY: &[&str] = &["cluster"];

/// Whether scenario `name` runs on the store `settings` name.
pub fn runs_on(name: &str, settings: &Settings) -> bool {
    settings.database_url.is_some() || !POSTGRES_ONLY.contains(&name)
}

/// Settings shared by all scenarios.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The service binary.
    pub binary: std::path::PathBuf,
    /// PostgreSQL URL (else the embedded store).
    pub database_url: Option<String>,
    /// Small counts (CI smoke runs): checks correctness, says nothing about speed.
    pub smoke: bool,
    /// Override of the event count.
    pub events: Option<usize>,
    /// Producer concurrency.
    pub concurrency: usize,
    /// Override of the steady rate (events/s per endpoint) of `latency` and `isolation`.
    pub rate: Option<u32>,
}

impl Settings {
    /// `full` normally, `smoke` in smoke mode, unless `--events` says otherwise.
    pub fn count(&self, full: usize, smoke: usize) -> usize {
        self.events.unwrap_or(if self.smoke { smoke } else { full })
    }

    /// The steady rate: `full` normally, `smoke` in smoke mode, unless `--rate` says otherwise.
    pub fn rate(&self, full: u32, smoke: u32) -> u32 {
        self.rate.unwrap_or(if self.smoke { smoke } else { full })
    }

    /// `sqlite` or `postgres`.
    pub fn store(&self) -> &'static str {
        if self.database_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }
}

/// The result of one scenario.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Store backend.
    pub store: String,
    /// Events accepted by the service.
    pub events: usize,
    /// Events accepted per second.
    pub ingest_per_sec: f64,
    /// Deliveries received per second (first send to last receipt).
    pub deliveries_per_sec: f64,
    /// Producer-to-receiver latency percentiles (ms).
    pub latency_ms: (f64, f64, f64),
    /// Peak RSS of the service (MB).
    pub peak_rss_mb: f64,
    /// Same generator straight to the receiver (requests per second).
    pub ceiling_per_sec: f64,
    /// Deliveries that never arrived.
    pub lost: usize,
    /// Deliveries that arrived more than once.
    pub duplicates: usize,
    /// Producer requests that failed.
    pub errors: usize,
    /// The first producer error.
    pub first_error: Option<String>,
    /// Scenario-specific figures.
    pub extra: Map<String, Value>,
}

impl Report {
    /// The JSON line of the report.
    pub fn to_json(&self) -> Value {
        let ratio = if self.ceiling_per_sec > 0.0 {
            self.deliveries_per_sec / self.ceiling_per_sec
        } else {
            0.0
        };
        let mut v = json!({
            "scenario": self.scenario,
            "store": self.store,
            "events": self.events,
            "ingest_per_sec": round(self.ingest_per_sec),
            "deliveries_per_sec": round(self.deliveries_per_sec),
            "latency_ms": {"p50": round(self.latency_ms.0), "p99": round(self.latency_ms.1), "p999": round(self.latency_ms.2)},
            "peak_rss_mb": round(self.peak_rss_mb),
            "ceiling_per_sec": round(self.ceiling_per_sec),
            "ratio_to_ceiling": (ratio * 1000.0).round() / 1000.0,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "errors": self.errors,
        });
        if let Some(e) = &self.first_error {
            v["first_error"] = json!(e);
        }
        for (k, val) in &self.extra {
            v[k] = val.clone();
        }
        v
    }

    /// Whether the run is correct (no loss, no failed request, no crash).
    pub fn is_correct(&self) -> bool {
        self.lost == 0 && self.errors == 0 && self.events > 0
    }

    /// What fails a smoke run, in words: no event accepted, failed
    /// requests, lost deliveries, or deliveries the service still held once
    /// every one had arrived. Empty when the run is sound.
    pub fn smoke_failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if self.events == 0 {
            failures.push("no event accepted".to_string());
        }
        if self.errors > 0 {
            failures.push(format!(
                "{} producer errors, the first: {:?}",
                self.errors, self.first_error
            ));
        }
        if self.lost > 0 {
            failures.push(format!("{} deliveries lost", self.lost));
        }
        let unfinished = self.extra.get("unfinished_at_end");
        if unfinished != Some(&json!(0)) {
            failures.push(format!(
                "the service still held deliveries after every one arrived: {unfinished:?}"
            ));
        }
        failures
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Percentile of sorted values (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Joins what was sent with what was received.
pub struct Matched {
    /// Latencies of first receipts (ms), sorted.
    pub latencies: Vec<f64>,
    /// Expected deliveries missing.
    pub lost: usize,
    /// Receipts beyond the expected count.
    pub duplicates: usize,
    /// Receipts of accepted events.
    pub received: usize,
    /// Last receipt.
    pub last: Option<Instant>,
}

/// Matches receipts to sends; each accepted event should arrive `per_event` times.
pub fn match_receipts(
    accepted: &[(String, Instant)],
    receipts: &[(String, Instant)],
    per_event: usize,
) -> Matched {
    let sent: HashMap<&str, Instant> = accepted.iter().map(|(id, at)| (id.as_str(), *at)).collect();
    let mut counts: HashMap<&str, usize> = HashMap::with_capacity(sent.len());
    let mut latencies = Vec::with_capacity(receipts.len());
    let mut last = None;
    let mut received = 0;
    for (id, at) in receipts {
        let Some(sent_at) = sent.get(id.as_str()) else {
            continue;
        };
        received += 1;
        last = Some(last.map_or(*at, |l: Instant| l.max(*at)));
        let n = counts.entry(id.as_str()).or_insert(0);
        *n += 1;
        if *n <= per_event {
            latencies.push(at.saturating_duration_since(*sent_at).as_secs_f64() * 1000.0);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let mut lost = 0;
    let mut duplicates = 0;
    for id in sent.keys() {
        let n = counts.get(id).copied().unwrap_or(0);
        lost += per_event.saturating_sub(n);
        duplicates += n.saturating_sub(per_event);
    }
    Matched {
        latencies,
        lost,
        duplicates,
        received,
        last,
    }
}

/// Waits until `count()` reaches `target` or stops growing for `stall`.
pub async fn wait_until(count: impl Fn() -> usize, target: usize, stall: Duration) {
    let mut last = count();
    let mut since = Instant::now();
    while last < target {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = count();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() > stall {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sound() -> Report {
        let mut extra = serde_json::Map::new();
        extra.insert("unfinished_at_end".into(), json!(0));
        Report {
            scenario: "throughput".into(),
            store: "sqlite".into(),
            events: 10,
            ingest_per_sec: 1.0,
            deliveries_per_sec: 1.0,
            latency_ms: (1.0, 2.0, 3.0),
            peak_rss_mb: 1.0,
            ceiling_per_sec: 1.0,
            lost: 0,
            duplicates: 0,
            errors: 0,
            first_error: None,
            extra,
        }
    }

    #[test]
    fn a_sound_smoke_run_has_no_failures() {
        assert_eq!(sound().smoke_failures(), Vec::<String>::new());
    }

    #[test]
    fn each_way_a_smoke_run_fails_is_named() {
        let mut r = sound();
        r.events = 0;
        r.errors = 2;
        r.first_error = Some("connection refused".into());
        r.lost = 3;
        r.extra.insert("unfinished_at_end".into(), json!(7));
        let failures = r.smoke_failures();
        assert_eq!(failures.len(), 4, "{failures:?}");
        assert!(failures[1].contains("connection refused"), "{failures:?}");
        assert!(failures[2].contains("3 deliveries lost"), "{failures:?}");
        // A report that never asked the service counts as unfinished too.
        let mut r = sound();
        r.extra.remove("unfinished_at_end");
        assert_eq!(r.smoke_failures().len(), 1);
    }
}
