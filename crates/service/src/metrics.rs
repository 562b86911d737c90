//! Counters for `/metrics`, in the Prometheus text format.
//!
//! The delivery path is hot, so these are plain atomics updated with relaxed
//! ordering: counters instead of a log line per delivery.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use webhook_domain::ids::WebhookId;
use webhook_outbound::ConnectionUsage;

/// Upper bounds (seconds) of the duration histograms: from 250 µs (a lone
/// ingest commit on an idle embedded store) to 10 s (the longest attempt).
const BUCKETS: [f64; 14] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A Prometheus histogram of durations over [`BUCKETS`].
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    micros_sum: AtomicU64,
}

impl Histogram {
    /// Records one duration, in microseconds.
    fn observe(&self, micros: u64) {
        let secs = micros as f64 / 1e6;
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.micros_sum.fetch_add(micros, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {count}",
            self.micros_sum.load(Relaxed) as f64 / 1e6
        );
    }
}

/// Gauges read from their owners when `/metrics` is asked for, not kept here.
#[derive(Debug, Default)]
pub struct Sampled {
    /// Slots of the in-memory window used, and its capacity.
    pub window: (usize, usize),
    /// The outbound connection pool.
    pub connections: ConnectionUsage,
}

/// The service's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Events stored.
    pub events_ingested: AtomicU64,
    /// Events answered as duplicates of an earlier id.
    pub events_duplicate: AtomicU64,
    /// Events refused by validation.
    pub events_rejected: AtomicU64,
    /// Deliveries created.
    pub deliveries_created: AtomicU64,
    /// Deliveries not created because the webhook's payload filter refused
    /// the event (one per event and webhook).
    pub deliveries_filtered: AtomicU64,
    /// Of `deliveries_filtered`, per webhook, since this instance started.
    filtered_by_webhook: std::sync::Mutex<crate::FastMap<WebhookId, u64>>,
    /// Attempts answered 2xx.
    pub attempts_succeeded: AtomicU64,
    /// Attempts that failed.
    pub attempts_failed: AtomicU64,
    /// Deliveries that ended delivered.
    pub deliveries_delivered: AtomicU64,
    /// Deliveries that ended failed.
    pub deliveries_failed: AtomicU64,
    /// Webhooks disabled by the service.
    pub webhooks_disabled: AtomicU64,
    /// Test sends (`POST /api/v1/webhooks/{id}/test`) answered 2xx.
    pub test_sends_succeeded: AtomicU64,
    /// Test sends that failed.
    pub test_sends_failed: AtomicU64,
    /// Attempts in flight now.
    pub in_flight: AtomicU64,
    /// HTTP responses by class (index 1..=5 for 1xx..5xx).
    pub http_responses: [AtomicU64; 6],
    attempt_duration: Histogram,
    /// From handing an ingest call's events to the store until they are
    /// committed: what every producer waits for before its `202`.
    ingest_commit: Histogram,
}

impl Metrics {
    /// Records an attempt's duration.
    pub fn observe_attempt(&self, micros: u64) {
        self.attempt_duration.observe(micros);
    }

    /// Records how long an ingest call's commit took.
    pub fn observe_ingest_commit(&self, took: std::time::Duration) {
        self.ingest_commit
            .observe(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records that `webhook`'s filter refused `n` events (only webhooks
    /// with a filter ever get here, so the lock is off the common path).
    pub fn observe_filtered(&self, webhook: &WebhookId, n: u64) {
        self.deliveries_filtered.fetch_add(n, Relaxed);
        let mut counts = self
            .filtered_by_webhook
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *counts.entry(webhook.clone()).or_default() += n;
    }

    /// Events `webhook`'s filter refused since this instance started.
    pub fn filtered_for(&self, webhook: &WebhookId) -> u64 {
        self.filtered_by_webhook
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(webhook)
            .copied()
            .unwrap_or(0)
    }

    /// Records an HTTP response status.
    pub fn observe_response(&self, status: u16) {
        let class = usize::from(status / 100).min(5);
        self.http_responses[class].fetch_add(1, Relaxed);
    }

    /// Renders every metric; the gauges of `sampled` are read by the caller.
    pub fn render(&self, sampled: &Sampled) -> String {
        let (window_used, window_capacity) = sampled.window;
        let mut out = String::with_capacity(4096);
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "webhook_events_ingested_total",
            "Events durably stored.",
            self.events_ingested.load(Relaxed),
        );
        counter(
            "webhook_events_duplicate_total",
            "Events answered as duplicates of an earlier id.",
            self.events_duplicate.load(Relaxed),
        );
        counter(
            "webhook_events_rejected_total",
            "Events refused by validation.",
            self.events_rejected.load(Relaxed),
        );
        counter(
            "webhook_deliveries_created_total",
            "Deliveries created by fan-out.",
            self.deliveries_created.load(Relaxed),
        );
        counter(
            "webhook_deliveries_filtered_total",
            "Deliveries not created because a webhook's payload filter refused the event.",
            self.deliveries_filtered.load(Relaxed),
        );
        counter(
            "webhook_attempts_succeeded_total",
            "Delivery attempts answered with 2xx.",
            self.attempts_succeeded.load(Relaxed),
        );
        counter(
            "webhook_attempts_failed_total",
            "Delivery attempts that failed.",
            self.attempts_failed.load(Relaxed),
        );
        counter(
            "webhook_deliveries_delivered_total",
            "Deliveries that ended delivered.",
            self.deliveries_delivered.load(Relaxed),
        );
        counter(
            "webhook_deliveries_failed_total",
            "Deliveries that ended failed.",
            self.deliveries_failed.load(Relaxed),
        );
        counter(
            "webhook_webhooks_disabled_total",
            "Webhooks disabled by the service.",
            self.webhooks_disabled.load(Relaxed),
        );
        // Apart from the delivery counters: a test send is one attempt asked
        // for by a user, never retried, and says nothing of real traffic.
        let _ = writeln!(
            out,
            "# HELP webhook_test_sends_total Test sends by outcome.\n# TYPE webhook_test_sends_total counter\n\
             webhook_test_sends_total{{outcome=\"delivered\"}} {}\nwebhook_test_sends_total{{outcome=\"failed\"}} {}",
            self.test_sends_succeeded.load(Relaxed),
            self.test_sends_failed.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP webhook_attempts_in_flight Delivery attempts in flight.\n# TYPE webhook_attempts_in_flight gauge\nwebhook_attempts_in_flight {}",
            self.in_flight.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP webhook_window_used Deliveries held in memory.\n# TYPE webhook_window_used gauge\nwebhook_window_used {window_used}\n\
             # HELP webhook_window_capacity Deliveries that may be held in memory.\n# TYPE webhook_window_capacity gauge\nwebhook_window_capacity {window_capacity}"
        );
        let c = &sampled.connections;
        let _ = writeln!(
            out,
            "# HELP webhook_outbound_connections_open Outbound connections open, busy or idle.\n\
             # TYPE webhook_outbound_connections_open gauge\nwebhook_outbound_connections_open {}\n\
             # HELP webhook_outbound_connections_idle Outbound connections kept idle for reuse.\n\
             # TYPE webhook_outbound_connections_idle gauge\nwebhook_outbound_connections_idle {}\n\
             # HELP webhook_outbound_connections_max The bound on open outbound connections (WEBHOOK_MAX_CONNECTIONS).\n\
             # TYPE webhook_outbound_connections_max gauge\nwebhook_outbound_connections_max {}\n\
             # HELP webhook_attempts_waiting_for_connection Attempts waiting for a connection slot because the bound is reached.\n\
             # TYPE webhook_attempts_waiting_for_connection gauge\nwebhook_attempts_waiting_for_connection {}",
            c.open, c.idle, c.max_open, c.waiting
        );
        let _ = writeln!(
            out,
            "# HELP http_responses_total HTTP responses by status class.\n# TYPE http_responses_total counter"
        );
        for (class, n) in self.http_responses.iter().enumerate().skip(1) {
            let _ = writeln!(
                out,
                "http_responses_total{{class=\"{class}xx\"}} {}",
                n.load(Relaxed)
            );
        }
        self.attempt_duration.render(
            &mut out,
            "webhook_attempt_duration_seconds",
            "Duration of delivery attempts.",
        );
        self.ingest_commit.render(
            &mut out,
            "webhook_ingest_commit_seconds",
            "Time from handing an ingest call's events to the store until they are committed (waiting for the writer included).",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.events_ingested.fetch_add(3, Relaxed);
        m.observe_attempt(1500);
        m.observe_attempt(20_000_000);
        m.observe_ingest_commit(std::time::Duration::from_micros(400));
        m.observe_response(202);
        m.test_sends_failed.fetch_add(2, Relaxed);
        let text = m.render(&Sampled {
            window: (5, 10),
            connections: ConnectionUsage {
                open: 7,
                idle: 3,
                waiting: 2,
                max_open: 8,
            },
        });
        assert!(text.contains("webhook_test_sends_total{outcome=\"delivered\"} 0"));
        assert!(text.contains("webhook_test_sends_total{outcome=\"failed\"} 2"));
        assert!(text.contains("webhook_events_ingested_total 3"));
        assert!(text.contains("webhook_attempt_duration_seconds_bucket{le=\"0.0025\"} 1"));
        assert!(text.contains("webhook_attempt_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("webhook_ingest_commit_seconds_bucket{le=\"0.00025\"} 0"));
        assert!(text.contains("webhook_ingest_commit_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("webhook_ingest_commit_seconds_count 1"));
        assert!(text.contains("http_responses_total{class=\"2xx\"} 1"));
        assert!(text.contains("webhook_window_used 5"));
        assert!(text.contains("webhook_outbound_connections_open 7\n"));
        assert!(text.contains("webhook_outbound_connections_idle 3\n"));
        assert!(text.contains("webhook_outbound_connections_max 8\n"));
        assert!(text.contains("webhook_attempts_waiting_for_connection 2\n"));
    }
}
