//! [`CountingReceiver`]: the cheapest possible webhook endpoint, for benchmarks.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use http::{Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::server::{ConnHandler, Server, lock};
use crate::wire::{self, RespBody};

const SHARDS: usize = 64;
const RESPONSE_OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
const RESPONSE_OK_CLOSE: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

pub(crate) type Shard = Mutex<Vec<(String, Instant)>>;

/// The event id of a delivery body: fast path for bodies starting with
/// `{"id":"`, otherwise the JSON's top-level `"id"`; empty when there is none.
fn event_id(body: &[u8]) -> String {
    if let Some(rest) = body.strip_prefix(b"{\"id\":\"")
        && let Some(end) = rest.iter().position(|&b| b == b'"' || b == b'\\')
        && rest[end] == b'"'
    {
        return String::from_utf8_lossy(&rest[..end]).into_owned();
    }
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("id")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The receipt logic shared by the plain and the TLS counting receivers.
pub(crate) struct Counter {
    shards: Box<[Shard]>,
    count: AtomicUsize,
    /// How long each batch of answers waits (zero: none), to hold
    /// connections busy in tests of connection bounds.
    delay_ms: std::sync::atomic::AtomicU64,
}

impl Counter {
    /// A counter with room preallocated for about `expected` records.
    pub(crate) fn new(expected: usize) -> Counter {
        let per_shard = expected.div_ceil(SHARDS);
        Counter {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Vec::with_capacity(per_shard)))
                .collect(),
            count: AtomicUsize::new(0),
            delay_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The shard of connection `conn_id`.
    pub(crate) fn shard(&self, conn_id: u64) -> &Shard {
        &self.shards[usize::try_from(conn_id).unwrap_or_default() % SHARDS]
    }

    /// Requests received so far.
    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Removes the records so far, sorted by receive time.
    pub(crate) fn take_records(&self) -> Vec<(String, Instant)> {
        let mut all = Vec::with_capacity(self.count());
        for shard in &self.shards {
            all.append(&mut lock(shard));
        }
        all.sort_by_key(|(_, at)| *at);
        all
    }

    /// Delays every answer by `delay` from now on.
    pub(crate) fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::Relaxed);
    }

    async fn pause(&self) {
        let ms = self.delay_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    fn record(&self, shard: &Shard, body: &[u8]) {
        let id = event_id(body);
        let now = Instant::now();
        lock(shard).push((id, now));
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Answers HTTP/1.1 requests on `stream` (keep-alive and pipelining)
    /// until it ends, recording each into `shard`.
    pub(crate) async fn serve_h1<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        mut buf: BytesMut,
        shard: &Shard,
    ) {
        let mut out: Vec<u8> = Vec::with_capacity(1024);
        let mut continued = false;
        loop {
            // Answer every complete request already buffered, then write the
            // answers in one go.
            loop {
                let info = match wire::parse_head(&buf) {
                    Ok(Some(info)) => info,
                    Ok(None) => break,
                    Err(_) => return,
                };
                if info.chunked {
                    self.pause().await;
                    if !out.is_empty() && stream.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                    buf.advance(info.head_len);
                    let Ok(body) = wire::read_chunked(&mut stream, &mut buf).await else {
                        return;
                    };
                    self.record(shard, &body);
                } else {
                    let total = info.head_len + info.content_length.unwrap_or(0);
                    if buf.len() < total {
                        buf.reserve(total - buf.len());
                        if info.expect_continue && !continued {
                            continued = true;
                            out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                        }
                        break;
                    }
                    self.record(shard, &buf[info.head_len..total]);
                    buf.advance(total);
                }
                continued = false;
                if info.close {
                    self.pause().await;
                    out.extend_from_slice(RESPONSE_OK_CLOSE);
                    let _ = stream.write_all(&out).await;
                    return;
                }
                out.extend_from_slice(RESPONSE_OK);
            }
            if !out.is_empty() {
                self.pause().await;
                if stream.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
            }
            match wire::read_more(&mut stream, &mut buf).await {
                Ok(true) => {}
                Ok(false) | Err(_) => return,
            }
        }
    }
}

async fn handle_h2(
    counter: Arc<Counter>,
    shard: usize,
    request: Request<Incoming>,
) -> Result<Response<RespBody>, io::Error> {
    let body = request
        .into_body()
        .collect()
        .await
        .map_err(io::Error::other)?
        .to_bytes();
    counter.record(&counter.shards[shard], &body);
    Ok(Response::new(RespBody::Full(None)))
}

impl ConnHandler for Counter {
    async fn serve(self: Arc<Self>, mut stream: TcpStream, conn_id: u64) {
        let shard = usize::try_from(conn_id).unwrap_or_default() % SHARDS;
        let mut buf = BytesMut::with_capacity(16 * 1024);
        match wire::sniff_h2(&mut stream, &mut buf).await {
            Ok(true) => {
                let counter = Arc::clone(&self);
                wire::serve_h2(stream, buf.freeze(), move |req| {
                    handle_h2(Arc::clone(&counter), shard, req)
                })
                .await;
            }
            Ok(false) => self.serve_h1(stream, buf, &self.shards[shard]).await,
            Err(_) => {}
        }
    }
}

/// A benchmark endpoint on `127.0.0.1` (ephemeral port): answers every request
/// `200` with an empty body (HTTP/1.1 keep-alive and pipelining, or HTTP/2
/// prior knowledge) and records only the event id and the receive time.
///
/// Dropping it shuts it down.
pub struct CountingReceiver {
    server: Server<Counter>,
}

impl CountingReceiver {
    /// Binds an ephemeral port and starts serving.
    pub async fn start() -> io::Result<Self> {
        Self::with_capacity(0).await
    }

    /// Like [`start`](Self::start), with room preallocated for about
    /// `expected` records.
    pub async fn with_capacity(expected: usize) -> io::Result<Self> {
        Ok(Self {
            server: Server::start(Counter::new(expected))?,
        })
    }

    /// The listening address (the same across [`set_down`](Self::set_down) cycles).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT{path}`; `path` should start with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// Requests received since start (not reset by [`take_records`](Self::take_records)).
    pub fn count(&self) -> usize {
        self.server.handler.count()
    }

    /// Removes and returns the records so far: `(event id, receive time)`,
    /// sorted by receive time. The id is empty when the body had none.
    pub fn take_records(&self) -> Vec<(String, Instant)> {
        self.server.handler.take_records()
    }

    /// `true`: close the listener (connects are refused) and drop every open
    /// connection. `false`: listen again on the same port. Returns once the
    /// change is in effect.
    pub async fn set_down(&self, down: bool) -> io::Result<()> {
        self.server.set_down(down).await
    }

    /// Stops accepting and drops every connection (also done on drop).
    pub fn shutdown(&self) {
        self.server.stop();
    }
}

impl std::fmt::Debug for CountingReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingReceiver")
            .field("addr", &self.addr())
            .field("count", &self.count())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::event_id;

    #[test]
    fn finds_event_ids() {
        assert_eq!(event_id(br#"{"id":"evt_1","x":1}"#), "evt_1");
        assert_eq!(event_id(br#"{ "x": {"id":"no"}, "id": "evt_2"}"#), "evt_2");
        assert_eq!(event_id(br#"{"id":"a\"b"}"#), "a\"b");
        assert_eq!(event_id(b"not json"), "");
    }
}
