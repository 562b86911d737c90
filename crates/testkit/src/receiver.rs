//! [`Receiver`]: a webhook endpoint that records every delivery and answers
//! as scripted by a [`Behavior`].

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::sync::watch;
use webhook_verify::{DEFAULT_TOLERANCE_SECS, StandardHeaders, verify_legacy, verify_standard};

use crate::server::{ConnHandler, Server, lock};
use crate::wire::{self, FILL, RespBody};

/// How a [`Receiver`] answers a request, once the request (body included) has
/// been read and recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// Answer with this status and a short text body.
    Status(u16),
    /// Answer with this status, a short text body and these extra headers.
    StatusWithHeaders(u16, Vec<(String, String)>),
    /// Answer with `status` and `Retry-After: seconds`.
    RetryAfter {
        /// Response status (typically 429 or 503).
        status: u16,
        /// Value of the `Retry-After` header.
        seconds: u64,
    },
    /// Answer with `status` and `Location: location`.
    Redirect {
        /// Response status (301, 302, 307, 308...).
        status: u16,
        /// Value of the `Location` header.
        location: String,
    },
    /// Never answer; keep the connection open until the receiver shuts down.
    Hang,
    /// Close the TCP connection abruptly (`SO_LINGER` 0, so the peer gets a
    /// RST) without any response. On HTTP/2 the stream is reset instead.
    Reset,
    /// Send the status and headers (with `Content-Length: bytes`) at once,
    /// then the body one byte every `interval`.
    Trickle {
        /// Response status.
        status: u16,
        /// Body length.
        bytes: usize,
        /// Pause before each body byte.
        interval: Duration,
    },
    /// Answer with the status after the delay.
    Delay(Duration, u16),
    /// Request n (counted from when this behavior was set) uses element n;
    /// the last element repeats. An empty sequence answers 200.
    Sequence(Vec<Behavior>),
    /// Answer with `status` and exactly these body bytes (binary allowed).
    Body {
        /// Response status.
        status: u16,
        /// The body.
        body: Vec<u8>,
    },
    /// Answer with `status` and a body of `bytes` filler bytes.
    BigBody {
        /// Response status.
        status: u16,
        /// Body length.
        bytes: usize,
    },
    /// Answer 200 when the request carries header `name` with exactly
    /// `value`, and 401 otherwise: an endpoint behind a gateway that
    /// demands a credential.
    RequireHeader {
        /// Header name (case-insensitive).
        name: String,
        /// The value demanded.
        value: String,
    },
    /// Answer `status` when the body contains `needle`, and 200 otherwise:
    /// an endpoint that fails for some events only (one user's, say).
    FailWhenBodyContains {
        /// Bytes looked for in the body.
        needle: String,
        /// Status of the failing answer.
        status: u16,
    },
}

impl Default for Behavior {
    /// `Status(200)`.
    fn default() -> Self {
        Behavior::Status(200)
    }
}

/// What to do for one request.
enum Plan {
    Reply(Reply),
    Hang,
    Reset,
}

struct Reply {
    delay: Duration,
    status: u16,
    headers: Vec<(String, String)>,
    body: BodyPlan,
}

enum BodyPlan {
    Small(Bytes),
    Big(usize),
    Trickle(usize, Duration),
}

fn reason(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown")
}

/// Statuses whose responses have no body.
fn bodiless(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

fn small(status: u16, headers: Vec<(String, String)>) -> Reply {
    let body = if bodiless(status) {
        Bytes::new()
    } else {
        Bytes::from(format!("{status} {}\n", reason(status)))
    };
    Reply {
        delay: Duration::ZERO,
        status,
        headers,
        body: BodyPlan::Small(body),
    }
}

impl Behavior {
    /// The plan for the `index`-th request under this behavior.
    fn plan(&self, index: usize, request: &ReceivedRequest) -> Plan {
        match self {
            Behavior::Status(s) => Plan::Reply(small(*s, Vec::new())),
            Behavior::StatusWithHeaders(s, h) => Plan::Reply(small(*s, h.clone())),
            Behavior::RetryAfter { status, seconds } => Plan::Reply(small(
                *status,
                vec![("Retry-After".into(), seconds.to_string())],
            )),
            Behavior::Redirect { status, location } => {
                Plan::Reply(small(*status, vec![("Location".into(), location.clone())]))
            }
            Behavior::Hang => Plan::Hang,
            Behavior::Reset => Plan::Reset,
            Behavior::Trickle {
                status,
                bytes,
                interval,
            } => Plan::Reply(Reply {
                delay: Duration::ZERO,
                status: *status,
                headers: Vec::new(),
                body: BodyPlan::Trickle(*bytes, *interval),
            }),
            Behavior::Delay(delay, status) => Plan::Reply(Reply {
                delay: *delay,
                ..small(*status, Vec::new())
            }),
            Behavior::Sequence(items) => match items.get(index).or(items.last()) {
                Some(item) => item.plan(index, request),
                None => Plan::Reply(small(200, Vec::new())),
            },
            Behavior::Body { status, body } => Plan::Reply(Reply {
                delay: Duration::ZERO,
                status: *status,
                headers: Vec::new(),
                body: BodyPlan::Small(Bytes::from(body.clone())),
            }),
            Behavior::BigBody { status, bytes } => Plan::Reply(Reply {
                delay: Duration::ZERO,
                status: *status,
                headers: Vec::new(),
                body: BodyPlan::Big(*bytes),
            }),
            Behavior::RequireHeader { name, value } => {
                let status = if request.header(name) == Some(value.as_str()) {
                    200
                } else {
                    401
                };
                Plan::Reply(small(status, Vec::new()))
            }
            Behavior::FailWhenBodyContains { needle, status } => {
                let found = request
                    .body
                    .windows(needle.len().max(1))
                    .any(|w| w == needle.as_bytes());
                Plan::Reply(small(if found { *status } else { 200 }, Vec::new()))
            }
        }
    }
}

/// One request as the receiver got it.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// Request method, e.g. `POST`.
    pub method: String,
    /// Request target as sent: path and query, e.g. `/hook?x=1`.
    pub path: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// The raw body bytes.
    pub body: Bytes,
    /// When the body had been fully read.
    pub received_at: Instant,
    /// The same moment as unix milliseconds.
    pub received_unix_ms: i64,
    /// HTTP version of the request (`HTTP_11`, `HTTP_10` or `HTTP_2`).
    pub version: Version,
}

impl ReceivedRequest {
    fn new(
        method: String,
        path: String,
        headers: HeaderMap,
        body: Bytes,
        version: Version,
    ) -> Self {
        let received_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Self {
            method,
            path,
            headers,
            body,
            received_at: Instant::now(),
            received_unix_ms,
            version,
        }
    }

    /// The first value of a header (case-insensitive name), if present and
    /// visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body parsed as JSON; `Value::Null` when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The top-level `"id"` of the JSON body (the event id of a delivery).
    pub fn event_id(&self) -> Option<String> {
        self.json().get("id")?.as_str().map(str::to_owned)
    }

    /// Checks `X-Webhook-Signature` against the body.
    pub fn verify_legacy_signature(&self, secret: &str) -> Result<(), String> {
        verify_legacy(secret, &self.body, self.header("x-webhook-signature"))
            .map_err(|e| format!("X-Webhook-Signature: {e}"))
    }

    /// Checks the Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`) with a 300 s tolerance around the receive time.
    pub fn verify_standard_signature(&self, secret: &str) -> Result<(), String> {
        let headers = StandardHeaders {
            id: self.header("webhook-id"),
            timestamp: self.header("webhook-timestamp"),
            signature: self.header("webhook-signature"),
        };
        let now = self.received_unix_ms.div_euclid(1000);
        verify_standard(secret, headers, &self.body, now, DEFAULT_TOLERANCE_SECS)
            .map_err(|e| format!("Standard Webhooks: {e}"))
    }

    /// Checks both signature schemes; the error names every failing one.
    pub fn verify_signatures(&self, secret: &str) -> Result<(), String> {
        match (
            self.verify_legacy_signature(secret),
            self.verify_standard_signature(secret),
        ) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
            (Err(a), Err(b)) => Err(format!("{a}; {b}")),
        }
    }
}

/// State shared by the connections of one receiver.
struct Shared {
    /// The current behavior and how many requests it has answered.
    behavior: Mutex<(Behavior, usize)>,
    requests: Mutex<Vec<ReceivedRequest>>,
    count: watch::Sender<usize>,
}

impl Shared {
    fn record(&self, request: ReceivedRequest) -> Plan {
        let plan = {
            let mut state = lock(&self.behavior);
            let index = state.1;
            state.1 += 1;
            state.0.plan(index, &request)
        };
        lock(&self.requests).push(request);
        self.count.send_modify(|c| *c += 1);
        plan
    }

    async fn serve_h1(&self, mut stream: TcpStream, mut buf: BytesMut) {
        loop {
            let Ok(Some(info)) = wire::read_head(&mut stream, &mut buf).await else {
                return;
            };
            let head = buf.split_to(info.head_len);
            let (method, path, headers) = match wire::head_parts(&head) {
                Ok(parts) => parts,
                Err(_) => {
                    let _ = stream
                        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                }
            };
            if info.expect_continue
                && stream
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .is_err()
            {
                return;
            }
            let Ok(body) = wire::read_body(&mut stream, &mut buf, &info).await else {
                return;
            };
            let version = version_of(&head);
            let plan = self.record(ReceivedRequest::new(method, path, headers, body, version));
            let reply = match plan {
                Plan::Hang => return std::future::pending().await,
                Plan::Reset => {
                    let _ = stream.set_zero_linger();
                    return;
                }
                Plan::Reply(reply) => reply,
            };
            if write_h1(&mut stream, reply, info.close).await.is_err() || info.close {
                return;
            }
        }
    }
}

fn version_of(head: &[u8]) -> Version {
    let line_end = head.iter().position(|&b| b == b'\r').unwrap_or(head.len());
    if head[..line_end].ends_with(b"HTTP/1.0") {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    }
}

async fn write_h1(stream: &mut TcpStream, reply: Reply, close: bool) -> io::Result<()> {
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let len = match &reply.body {
        BodyPlan::Small(b) => b.len(),
        BodyPlan::Big(n) | BodyPlan::Trickle(n, _) => *n,
    };
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (name, value) in &reply.headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    if !bodiless(reply.status) {
        if matches!(reply.body, BodyPlan::Small(_)) {
            head.push_str("content-type: text/plain\r\n");
        }
        head.push_str(&format!("content-length: {len}\r\n"));
    }
    if close {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    match reply.body {
        BodyPlan::Small(body) => {
            let mut out = head.into_bytes();
            out.extend_from_slice(&body);
            stream.write_all(&out).await
        }
        BodyPlan::Big(mut remaining) => {
            stream.write_all(head.as_bytes()).await?;
            while remaining > 0 {
                let n = remaining.min(FILL.len());
                stream.write_all(&FILL[..n]).await?;
                remaining -= n;
            }
            Ok(())
        }
        BodyPlan::Trickle(bytes, interval) => {
            stream.write_all(head.as_bytes()).await?;
            for _ in 0..bytes {
                tokio::time::sleep(interval).await;
                stream.write_all(&FILL[..1]).await?;
            }
            Ok(())
        }
    }
}

async fn handle_h2(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<RespBody>, io::Error> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let received = ReceivedRequest::new(
        parts.method.to_string(),
        path,
        parts.headers,
        body,
        parts.version,
    );
    let reply = match shared.record(received) {
        Plan::Hang => return std::future::pending().await,
        Plan::Reset => {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "scripted reset",
            ));
        }
        Plan::Reply(reply) => reply,
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (len, body) = match reply.body {
        BodyPlan::Small(b) => (b.len(), RespBody::Full(Some(b))),
        BodyPlan::Big(n) => (n, RespBody::Big { remaining: n }),
        BodyPlan::Trickle(n, interval) => (n, RespBody::trickle(n, interval)),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in &reply.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    if !bodiless(reply.status) {
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    Ok(response)
}

impl ConnHandler for Shared {
    async fn serve(self: Arc<Self>, mut stream: TcpStream, _conn_id: u64) {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        match wire::sniff_h2(&mut stream, &mut buf).await {
            Ok(true) => {
                let shared = Arc::clone(&self);
                wire::serve_h2(stream, buf.freeze(), move |req| {
                    handle_h2(Arc::clone(&shared), req)
                })
                .await;
            }
            Ok(false) => self.serve_h1(stream, buf).await,
            Err(_) => {}
        }
    }
}

/// A local webhook endpoint on `127.0.0.1` (ephemeral port) that records
/// every request and answers according to its current [`Behavior`].
///
/// Speaks HTTP/1.1 with keep-alive (and HTTP/1.0), plus HTTP/2 with prior
/// knowledge. Request bodies may use `Content-Length` or chunked encoding.
/// Dropping the receiver shuts it down.
pub struct Receiver {
    server: Server<Shared>,
}

impl Receiver {
    /// Binds an ephemeral port on 127.0.0.1 and starts serving.
    pub async fn start(behavior: Behavior) -> io::Result<Receiver> {
        let (count, _) = watch::channel(0);
        let shared = Shared {
            behavior: Mutex::new((behavior, 0)),
            requests: Mutex::new(Vec::new()),
            count,
        };
        Ok(Receiver {
            server: Server::start(shared)?,
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT{path}`; `path` should start with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// Replaces the behavior for the next requests (a [`Behavior::Sequence`]
    /// starts again from its first element).
    pub fn set_behavior(&self, behavior: Behavior) {
        *lock(&self.server.handler.behavior) = (behavior, 0);
    }

    /// A snapshot of every request received so far, in arrival order.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        lock(&self.server.handler.requests).clone()
    }

    /// How many requests have been fully received, whatever the answer.
    pub fn count(&self) -> usize {
        *self.server.handler.count.borrow()
    }

    /// Waits until at least `n` requests have been received, then returns all
    /// of them; the error says how many arrived within `timeout`.
    pub async fn wait_for(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<ReceivedRequest>, String> {
        let mut rx = self.server.handler.count.subscribe();
        let reached = matches!(
            tokio::time::timeout(timeout, async { rx.wait_for(|c| *c >= n).await.is_ok() }).await,
            Ok(true)
        );
        if reached {
            Ok(self.received())
        } else {
            Err(format!(
                "expected {n} request(s) within {timeout:?}, but {} arrived",
                self.count()
            ))
        }
    }

    /// Closes the listener and drops all connections (`true`: connects are
    /// refused), or listens again on the same port (`false`).
    pub async fn set_down(&self, down: bool) -> io::Result<()> {
        self.server.set_down(down).await
    }

    /// Stops accepting and drops every connection (also done on drop).
    pub fn shutdown(&self) {
        self.server.stop();
    }
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("addr", &self.addr())
            .field("count", &self.count())
            .finish()
    }
}
