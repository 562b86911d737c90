//! The load generator: closed-loop (fixed concurrency) producers, each on a
//! keep-alive HTTP/1.1 connection of its own that it speaks itself, and an
//! open-loop (fixed rate) driver on hyper-util's pooled client, which also
//! serves the harness's API calls.

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

/// Where a closed-loop producer sends: `http://host:port/path` taken apart.
struct Target {
    addr: std::net::SocketAddr,
    /// The request head up to the `content-length` value.
    head: Vec<u8>,
}

impl Target {
    fn parse(uri: &str, bearer: Option<&str>) -> anyhow::Result<Self> {
        let uri: http::Uri = uri.parse().context("bad producer URI")?;
        let authority = uri.authority().context("producer URI without host")?;
        let addr = authority
            .as_str()
            .parse()
            .context("producer URI host is not IP:port")?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\n"
        );
        if let Some(token) = bearer {
            head.push_str(&format!("authorization: Bearer {token}\r\n"));
        }
        head.push_str("content-length: ");
        Ok(Target {
            addr,
            head: head.into_bytes(),
        })
    }
}

/// One producer's keep-alive HTTP/1.1 connection: a request written in one
/// write, its answer read before the next request.
///
/// The closed-loop producers used hyper-util's pooled client, whose
/// connection task, pool and channels cost about two thirds of the
/// harness's CPU in `throughput` (perf), taken from the same two cores as
/// the service; this costs little more than the two system calls.
struct Lane {
    stream: Option<tokio::net::TcpStream>,
    out: Vec<u8>,
    buf: bytes::BytesMut,
}

impl Lane {
    fn new() -> Self {
        Lane {
            stream: None,
            out: Vec::with_capacity(64 * 1024),
            buf: bytes::BytesMut::with_capacity(16 * 1024),
        }
    }

    /// POSTs `body`; returns status and body. A failed exchange drops the
    /// connection. A kept-alive connection that fails before any byte of
    /// an answer (the server closed it while idle) is replaced and the
    /// request sent once more, as hyper-util's client did.
    async fn post(&mut self, target: &Target, body: &[u8]) -> anyhow::Result<(u16, Bytes)> {
        let reused = self.stream.is_some();
        let mut result = self.exchange(target, body).await;
        if result.is_err() && reused && self.buf.is_empty() {
            self.stream = None;
            result = self.exchange(target, body).await;
        }
        if result.is_err() {
            self.stream = None;
            self.buf.clear();
        }
        result
    }

    async fn exchange(&mut self, target: &Target, body: &[u8]) -> anyhow::Result<(u16, Bytes)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if self.stream.is_none() {
            let stream = tokio::net::TcpStream::connect(target.addr)
                .await
                .context("connect failed")?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().context("no connection")?;
        self.out.clear();
        self.out.extend_from_slice(&target.head);
        self.out
            .extend_from_slice(body.len().to_string().as_bytes());
        self.out.extend_from_slice(b"\r\n\r\n");
        self.out.extend_from_slice(body);
        stream
            .write_all(&self.out)
            .await
            .context("request failed")?;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head_len) =
                response.parse(&self.buf).context("invalid HTTP response")?
            {
                let status = response.code.unwrap_or_default();
                let mut length = None;
                let mut close = false;
                for h in response.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<usize>().ok());
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        anyhow::bail!("chunked answers are not read by the producer");
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        close = h.value.eq_ignore_ascii_case(b"close");
                    }
                }
                let length = length.context("answer without content-length")?;
                while self.buf.len() < head_len + length {
                    if stream
                        .read_buf(&mut self.buf)
                        .await
                        .context("body failed")?
                        == 0
                    {
                        anyhow::bail!("connection closed in the body");
                    }
                }
                let mut answer = self.buf.split_to(head_len + length);
                let body = answer.split_off(head_len).freeze();
                if close {
                    self.stream = None;
                    self.buf.clear();
                }
                return Ok((status, body));
            }
            if stream.read_buf(&mut self.buf).await.context("no answer")? == 0 {
                anyhow::bail!("connection closed before an answer");
            }
        }
    }
}

/// Sends `requests` POSTs at `concurrency` (a connection per producer),
/// body `i` from `body(i)`.
pub async fn closed_loop(
    uri: &str,
    bearer: Option<&str>,
    requests: usize,
    concurrency: usize,
    body: Arc<dyn Fn(usize) -> Bytes + Send + Sync>,
) -> Sent {
    let target = match Target::parse(uri, bearer) {
        Ok(target) => Arc::new(target),
        Err(e) => {
            return Sent {
                errors: requests,
                first_error: Some(format!("{e:#}")),
                ..Sent::default()
            };
        }
    };
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (target, next, body) = (target.clone(), next.clone(), body.clone());
        workers.push(tokio::spawn(async move {
            let mut sent = Sent::default();
            let mut lane = Lane::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let request = body(i);
                let at = Instant::now();
                let result = lane.post(&target, &request).await;
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

    #[test]
    fn a_target_is_the_request_head_up_to_its_length() {
        let target = Target::parse("http://127.0.0.1:8080/internal/x?y=1", Some("s3cret")).unwrap();
        assert_eq!(target.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            target.head,
            b"POST /internal/x?y=1 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\ncontent-type: application/json\r\n\
              authorization: Bearer s3cret\r\ncontent-length: "
        );
        assert!(
            Target::parse("http://localhost:80/", None).is_err(),
            "not IP:port"
        );
    }

    #[tokio::test]
    async fn closed_loop_producers_send_every_body_and_count_answers() {
        let receiver = webhook_testkit::CountingReceiver::with_capacity(100)
            .await
            .unwrap();
        let sent = closed_loop(
            &receiver.url("/p"),
            None,
            100,
            4,
            Arc::new(|i| Bytes::from(format!(r#"{{"id":"evt_{i}"}}"#))),
        )
        .await;
        assert_eq!(sent.errors, 0, "{:?}", sent.first_error);
        assert_eq!(sent.round_trips_ms.len(), 100);
        assert_eq!(receiver.count(), 100);
        let ids: std::collections::HashSet<String> = receiver
            .take_records()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids.len(), 100, "every body arrived once");

        // A server that closes each connection after one answer: the next
        // request on it goes out again on a new connection.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut connections = 0;
            while let Ok((mut stream, _)) = listener.accept().await {
                connections += 1;
                let mut request = vec![0u8; 4096];
                let _ = stream.read(&mut request).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}")
                    .await;
                // Dropped here: closed while the client thinks it is kept alive.
                if connections == 3 {
                    break;
                }
            }
            connections
        });
        let sent = closed_loop(
            &format!("http://{addr}/p"),
            None,
            3,
            1,
            Arc::new(|_| Bytes::from_static(b"{}")),
        )
        .await;
        assert_eq!(sent.errors, 0, "{:?}", sent.first_error);
        assert_eq!(sent.round_trips_ms.len(), 3);
        assert_eq!(server.await.unwrap(), 3, "one connection per request");

        // A server that is not there: every request is an error, none hangs.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sent = closed_loop(
            &format!("http://127.0.0.1:{port}/p"),
            None,
            3,
            1,
            Arc::new(|_| Bytes::from_static(b"{}")),
        )
        .await;
        assert_eq!(sent.errors, 3);
        assert!(sent.first_error.unwrap().contains("connect failed"));
    }
}
