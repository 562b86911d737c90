//! The load generator: a lean keep-alive HTTP/1.1 client, closed-loop (fixed
//! concurrency) and open-loop (fixed rate) drivers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A pooled HTTP/1.1 client.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Http {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Http {
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(1024)
                .build(connector),
        }
    }
}

impl Http {
    /// POSTs JSON; returns status and body.
    pub async fn post(
        &self,
        uri: &str,
        bearer: Option<&str>,
        body: Bytes,
    ) -> anyhow::Result<(u16, Bytes)> {
        let req = http::Request::post(uri).header("content-type", "application/json");
        self.send(req, bearer, body).await
    }

    /// GETs; returns status and body.
    pub async fn get(&self, uri: &str, bearer: Option<&str>) -> anyhow::Result<(u16, Bytes)> {
        self.send(http::Request::get(uri), bearer, Bytes::new())
            .await
    }

    async fn send(
        &self,
        mut req: http::request::Builder,
        bearer: Option<&str>,
        body: Bytes,
    ) -> anyhow::Result<(u16, Bytes)> {
        if let Some(token) = bearer {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req.body(Full::new(body))?;
        let resp = self.client.request(req).await.context("request failed")?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .context("body failed")?
            .to_bytes();
        Ok((status, body))
    }
}

/// Every `"eventId":"..."` in a response body (one for a trigger, many for a batch).
pub fn event_ids(body: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\"eventId\":\"";
    let mut ids = Vec::new();
    let mut rest = body;
    while let Some(pos) = rest.windows(KEY.len()).position(|w| w == KEY) {
        rest = &rest[pos + KEY.len()..];
        if let Some(end) = rest.iter().position(|b| *b == b'"') {
            ids.push(String::from_utf8_lossy(&rest[..end]).into_owned());
            rest = &rest[end..];
        }
    }
    ids
}

/// What a driver sent: accepted event ids with their send time, and failures.
#[derive(Debug, Default)]
pub struct Sent {
    /// `(event id, time the request carrying it was sent)`.
    pub accepted: Vec<(String, Instant)>,
    /// Requests that failed or were not answered 2xx.
    pub errors: usize,
    /// First error seen, for the report.
    pub first_error: Option<String>,
    /// When the first request was sent.
    pub started: Option<Instant>,
    /// When the last answer arrived.
    pub finished: Option<Instant>,
    /// Round trips of the answered 2xx requests (ms), in no order: how
    /// long a producer waited for its answer.
    pub round_trips_ms: Vec<f64>,
}

impl Sent {
    fn merge(&mut self, other: Sent) {
        self.accepted.extend(other.accepted);
        self.errors += other.errors;
        self.round_trips_ms.extend(other.round_trips_ms);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.started = match (self.started, other.started) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.finished = match (self.finished, other.finished) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    fn record(&mut self, sent_at: Instant, result: anyhow::Result<(u16, Bytes)>) {
        self.started = Some(self.started.map_or(sent_at, |s| s.min(sent_at)));
        let now = Instant::now();
        self.finished = Some(now);
        match result {
            Ok((status, body)) if (200..300).contains(&status) => {
                self.round_trips_ms
                    .push(now.duration_since(sent_at).as_secs_f64() * 1000.0);
                for id in event_ids(&body) {
                    self.accepted.push((id, sent_at));
                }
            }
            Ok((status, body)) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| {
                    format!("HTTP {status}: {}", String::from_utf8_lossy(&body))
                });
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }

    /// Requests per second over the driver's run.
    pub fn elapsed(&self) -> Duration {
        match (self.started, self.finished) {
            (Some(s), Some(f)) => f.duration_since(s),
            _ => Duration::ZERO,
        }
    }
}

/// Sends `requests` POSTs at `concurrency`, body `i` from `body(i)`.
pub async fn closed_loop(
    http: &Http,
    uri: &str,
    bearer: Option<&str>,
    requests: usize,
    concurrency: usize,
    body: Arc<dyn Fn(usize) -> Bytes + Send + Sync>,
) -> Sent {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (http, uri, bearer, next, body) = (
            http.clone(),
            uri.to_string(),
            bearer.map(String::from),
            next.clone(),
            body.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut sent = Sent::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let at = Instant::now();
                let result = http.post(&uri, bearer.as_deref(), body(i)).await;
                sent.record(at, result);
            }
            sent
        }));
    }
    let mut total = Sent::default();
    for w in workers {
        if let Ok(sent) = w.await {
            total.merge(sent);
        }
    }
    total
}

/// Sends at a steady `rate` per second for `duration` (open loop: a slow
/// answer does not slow the schedule down).
pub async fn open_loop(
    http: &Http,
    uri: &str,
    bearer: Option<&str>,
    rate: u32,
    duration: Duration,
    body: Arc<dyn Fn(usize) -> Bytes + Send + Sync>,
) -> Sent {
    let total = (f64::from(rate) * duration.as_secs_f64()) as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let (http, uri, bearer, body) = (
            http.clone(),
            uri.to_string(),
            bearer.map(String::from),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut sent = Sent::default();
            let at = Instant::now();
            let result = http.post(&uri, bearer.as_deref(), body(i)).await;
            sent.record(at, result);
            sent
        }));
    }
    let mut all = Sent::default();
    for t in tasks {
        if let Ok(sent) = t.await {
            all.merge(sent);
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_event_ids() {
        let body = br#"{"data":{"results":[{"eventId":"evt_1","x":1},{"eventId":"evt_2"}]}}"#;
        assert_eq!(event_ids(body), vec!["evt_1", "evt_2"]);
        assert!(event_ids(b"{}").is_empty());
    }
}
