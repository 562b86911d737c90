//! Exercises every receiver behavior over real sockets.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use webhook_testkit::{Behavior, CountingReceiver, Receiver};
use webhook_verify::{sign_legacy, sign_standard, standard_key};

const SECRET: &str = "your_webhook_secret";
const VECTOR_BODY: &str = r#"{"id":"evt_1","eventType":"user.created","userId":"u1","data":{"userId":"u1"},"metadata":{"service":"auth-service","timestamp":"2025-01-01T00:00:00.000Z"}}"#;
const VECTOR_HEADER: &str =
    "sha256=c33e21c9201c59d4052d39da193e87ff7df983b2f8c88a7056c34456546d52e5";
const SECOND: Duration = Duration::from_secs(1);

/// A raw HTTP/1.1 client connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        Conn {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, path: &str, body: &str, headers: &[(&str, &str)]) {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.stream.write_all(req.as_bytes()).await.unwrap();
    }

    /// Reads more bytes; errors on EOF.
    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 65536];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn read_head(&mut self) -> io::Result<(u16, Vec<(String, String)>)> {
        let end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            self.fill().await?;
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        Ok((status, headers))
    }

    async fn read_response(&mut self) -> io::Result<Resp> {
        let (status, headers) = self.read_head().await?;
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = resp
            .header("content-length")
            .map_or(0, |v| v.parse().unwrap());
        while self.buf.len() < len {
            self.fill().await?;
        }
        resp.body = self.buf.drain(..len).collect();
        Ok(resp)
    }

    async fn roundtrip(&mut self, path: &str, body: &str) -> Resp {
        self.send(path, body, &[]).await;
        self.read_response().await.unwrap()
    }
}

fn event(id: &str) -> String {
    format!(r#"{{"id":"{id}","eventType":"user.created","data":{{}}}}"#)
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn h1_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn post(url: &str, body: &str) -> http::Request<Full<Bytes>> {
    http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

#[tokio::test]
async fn status_records_request_and_keeps_alive() {
    let rx = Receiver::start(Behavior::Status(503)).await.unwrap();
    assert!(rx.url("/hook").starts_with("http://127.0.0.1:"));
    let mut conn = Conn::open(rx.addr()).await;
    let resp = conn.roundtrip("/hook?x=1", &event("evt_a")).await;
    assert_eq!(resp.status, 503);
    assert!(!resp.body.is_empty());
    // Same connection, second request.
    let resp = conn.roundtrip("/hook", &event("evt_b")).await;
    assert_eq!(resp.status, 503);

    let got = rx.wait_for(2, SECOND).await.unwrap();
    assert_eq!(rx.count(), 2);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, "/hook?x=1");
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert_eq!(got[0].event_id().as_deref(), Some("evt_a"));
    assert_eq!(got[1].json()["id"], "evt_b");
    assert_eq!(got[1].body, Bytes::from(event("evt_b")));
    assert!(got[0].received_unix_ms > 1_600_000_000_000);
    assert!(got[0].received_at <= got[1].received_at);
    assert_eq!(got[0].version, http::Version::HTTP_11);
}

#[tokio::test]
async fn wait_for_reports_how_many_arrived() {
    let rx = Receiver::start(Behavior::default()).await.unwrap();
    let mut conn = Conn::open(rx.addr()).await;
    assert_eq!(conn.roundtrip("/", &event("e1")).await.status, 200);
    let err = rx.wait_for(3, Duration::from_millis(50)).await.unwrap_err();
    assert!(err.contains("but 1 arrived"), "{err}");
}

#[tokio::test]
async fn status_with_headers_retry_after_and_redirect() {
    let rx = Receiver::start(Behavior::StatusWithHeaders(
        418,
        vec![("X-Custom".into(), "yes".into())],
    ))
    .await
    .unwrap();
    let mut conn = Conn::open(rx.addr()).await;
    let resp = conn.roundtrip("/", &event("e1")).await;
    assert_eq!((resp.status, resp.header("x-custom")), (418, Some("yes")));

    rx.set_behavior(Behavior::RetryAfter {
        status: 429,
        seconds: 120,
    });
    let resp = conn.roundtrip("/", &event("e2")).await;
    assert_eq!(
        (resp.status, resp.header("retry-after")),
        (429, Some("120"))
    );

    rx.set_behavior(Behavior::Redirect {
        status: 307,
        location: "http://example.invalid/elsewhere".into(),
    });
    let resp = conn.roundtrip("/", &event("e3")).await;
    assert_eq!(
        (resp.status, resp.header("location")),
        (307, Some("http://example.invalid/elsewhere"))
    );
    assert_eq!(rx.count(), 3);
}

#[tokio::test]
async fn hang_never_answers_until_shutdown() {
    let rx = Receiver::start(Behavior::Hang).await.unwrap();
    let mut conn = Conn::open(rx.addr()).await;
    conn.send("/", &event("e1"), &[]).await;
    let waited = tokio::time::timeout(Duration::from_millis(300), conn.read_response()).await;
    assert!(waited.is_err(), "expected no answer, got {waited:?}");
    assert_eq!(
        rx.count(),
        1,
        "the request is recorded even though never answered"
    );

    // A real HTTP client times out too.
    let client = h1_client();
    let res = tokio::time::timeout(
        Duration::from_millis(300),
        client.request(post(&rx.url("/"), "{}")),
    )
    .await;
    assert!(res.is_err());
    rx.wait_for(2, SECOND).await.unwrap();

    // Shutdown closes the hanging connection.
    rx.shutdown();
    let closed = tokio::time::timeout(SECOND, conn.read_response())
        .await
        .unwrap();
    assert!(closed.is_err());
    assert!(
        TcpStream::connect(rx.addr()).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn reset_closes_without_response() {
    let rx = Receiver::start(Behavior::Reset).await.unwrap();
    let mut conn = Conn::open(rx.addr()).await;
    conn.send("/", &event("e1"), &[]).await;
    let err = tokio::time::timeout(SECOND, conn.read_response())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    assert!(conn.buf.is_empty(), "no response bytes at all");
    assert_eq!(rx.count(), 1);

    let client = h1_client();
    let res = tokio::time::timeout(SECOND, client.request(post(&rx.url("/"), "{}")))
        .await
        .unwrap();
    assert!(res.is_err());
    assert_eq!(rx.count(), 2);
}

#[tokio::test]
async fn trickle_sends_headers_then_body_slowly() {
    let rx = Receiver::start(Behavior::Trickle {
        status: 200,
        bytes: 5,
        interval: Duration::from_millis(60),
    })
    .await
    .unwrap();
    let mut conn = Conn::open(rx.addr()).await;
    let start = Instant::now();
    conn.send("/", &event("e1"), &[]).await;
    let (status, headers) = conn.read_head().await.unwrap();
    let head_at = start.elapsed();
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(n, v)| n == "content-length" && v == "5")
    );
    assert!(
        head_at < Duration::from_millis(200),
        "headers took {head_at:?}"
    );
    while conn.buf.len() < 5 {
        conn.fill().await.unwrap();
    }
    let body_at = start.elapsed();
    assert!(
        body_at >= Duration::from_millis(290),
        "body took only {body_at:?}"
    );
    assert_eq!(conn.buf, b"xxxxx");
}

#[tokio::test]
async fn delay_and_big_body() {
    let rx = Receiver::start(Behavior::Delay(Duration::from_millis(200), 202))
        .await
        .unwrap();
    let mut conn = Conn::open(rx.addr()).await;
    let start = Instant::now();
    assert_eq!(conn.roundtrip("/", &event("e1")).await.status, 202);
    assert!(start.elapsed() >= Duration::from_millis(190));

    rx.set_behavior(Behavior::BigBody {
        status: 200,
        bytes: 3 * 1024 * 1024 + 7,
    });
    let resp = conn.roundtrip("/", &event("e2")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), 3 * 1024 * 1024 + 7);
}

#[tokio::test]
async fn sequence_then_last_repeats_and_set_behavior_restarts_it() {
    let seq = Behavior::Sequence(vec![
        Behavior::Status(500),
        Behavior::RetryAfter {
            status: 503,
            seconds: 1,
        },
        Behavior::Status(200),
    ]);
    let rx = Receiver::start(seq.clone()).await.unwrap();
    let mut conn = Conn::open(rx.addr()).await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        statuses.push(conn.roundtrip("/", &event(&format!("e{i}"))).await.status);
    }
    assert_eq!(statuses, [500, 503, 200, 200, 200]);

    rx.set_behavior(Behavior::Status(410));
    assert_eq!(conn.roundtrip("/", &event("x")).await.status, 410);
    rx.set_behavior(seq);
    assert_eq!(conn.roundtrip("/", &event("y")).await.status, 500);
    assert_eq!(rx.count(), 7);
}

#[tokio::test]
async fn chunked_request_bodies_are_decoded() {
    let rx = Receiver::start(Behavior::default()).await.unwrap();
    let mut conn = Conn::open(rx.addr()).await;
    conn.stream
        .write_all(b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"id\r\na\r\n\":\"evt_c\"}\r\n0\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(conn.read_response().await.unwrap().status, 200);
    let got = rx.wait_for(1, SECOND).await.unwrap();
    assert_eq!(got[0].event_id().as_deref(), Some("evt_c"));
}

#[tokio::test]
async fn works_with_a_hyper_client_over_http1_and_http2() {
    let rx = Receiver::start(Behavior::RetryAfter {
        status: 429,
        seconds: 7,
    })
    .await
    .unwrap();
    let h1 = h1_client();
    let res = h1
        .request(post(&rx.url("/one"), &event("e1")))
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "7");

    let h2: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let res = h2
        .request(post(&rx.url("/two"), &event("e2")))
        .await
        .unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "7");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(!body.is_empty());

    rx.set_behavior(Behavior::Trickle {
        status: 200,
        bytes: 3,
        interval: Duration::from_millis(20),
    });
    let res = h2
        .request(post(&rx.url("/three"), &event("e3")))
        .await
        .unwrap();
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "xxx");

    rx.set_behavior(Behavior::Reset);
    assert!(
        h2.request(post(&rx.url("/four"), &event("e4")))
            .await
            .is_err()
    );

    let got = rx.wait_for(4, SECOND).await.unwrap();
    assert_eq!(got[1].version, http::Version::HTTP_2);
    assert_eq!(got[1].path, "/two");
    assert_eq!(got[1].event_id().as_deref(), Some("e2"));
}

#[tokio::test]
async fn verifies_both_signature_schemes_with_the_spec_vectors() {
    let rx = Receiver::start(Behavior::default()).await.unwrap();
    let mut conn = Conn::open(rx.addr()).await;

    // Scheme 1 from the spec; scheme 2 signed now with the same secret.
    let ts = now_unix().to_string();
    let std_sig = sign_standard(
        &standard_key(SECRET),
        "evt_1",
        now_unix(),
        VECTOR_BODY.as_bytes(),
    );
    let std_sig = format!("v1,bm90IGEgbWF0Y2g= {std_sig}"); // a rotated-out entry first
    conn.send(
        "/",
        VECTOR_BODY,
        &[
            ("X-Webhook-Signature", VECTOR_HEADER),
            ("webhook-id", "evt_1"),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &std_sig),
        ],
    )
    .await;
    conn.read_response().await.unwrap();

    // Scheme 2 with a whsec_ secret from the spec's vectors.
    let whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert_eq!(
        sign_standard(
            &standard_key(whsec),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#
        ),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
    let body = r#"{"test": 2432232314}"#;
    let fresh = sign_standard(
        &standard_key(whsec),
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        now_unix(),
        body.as_bytes(),
    );
    let legacy = sign_legacy(whsec, body.as_bytes());
    conn.send(
        "/",
        body,
        &[
            ("X-Webhook-Signature", &legacy),
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &fresh),
        ],
    )
    .await;
    conn.read_response().await.unwrap();

    // The spec vector verbatim: right signature, but its 2021 timestamp is stale.
    conn.send(
        "/",
        body,
        &[
            ("X-Webhook-Signature", &legacy),
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ],
    )
    .await;
    conn.read_response().await.unwrap();

    // Tampered body.
    let tampered = VECTOR_BODY.replace("u1", "u2");
    conn.send(
        "/",
        &tampered,
        &[
            ("X-Webhook-Signature", VECTOR_HEADER),
            ("webhook-id", "evt_1"),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &std_sig),
        ],
    )
    .await;
    conn.read_response().await.unwrap();

    let got = rx.wait_for(4, SECOND).await.unwrap();
    got[0].verify_signatures(SECRET).unwrap();
    assert_eq!(got[0].event_id().as_deref(), Some("evt_1"));
    assert!(got[0].verify_signatures("wrong_secret").is_err());
    got[1].verify_signatures(whsec).unwrap();
    got[2].verify_legacy_signature(whsec).unwrap();
    let err = got[2].verify_signatures(whsec).unwrap_err();
    assert!(err.contains("tolerance"), "{err}");
    let err = got[3].verify_signatures(SECRET).unwrap_err();
    assert!(
        err.contains("X-Webhook-Signature") && err.contains("Standard Webhooks"),
        "{err}"
    );

    // Missing headers are reported.
    let mut conn = Conn::open(rx.addr()).await;
    conn.roundtrip("/", VECTOR_BODY).await;
    let got = rx.wait_for(5, SECOND).await.unwrap();
    let err = got[4].verify_signatures(SECRET).unwrap_err();
    assert!(err.contains("missing"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counting_receiver_counts_and_records_ids() {
    let rx = CountingReceiver::start().await.unwrap();
    let mut conn = Conn::open(rx.addr()).await;
    for i in 0..50 {
        let resp = conn.roundtrip("/bench", &event(&format!("evt_{i}"))).await;
        assert_eq!((resp.status, resp.body.len()), (200, 0));
    }
    // Pipelined requests in one write are all answered.
    let mut batch = String::new();
    for i in 50..60 {
        let body = event(&format!("evt_{i}"));
        batch.push_str(&format!(
            "POST /bench HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    }
    conn.stream.write_all(batch.as_bytes()).await.unwrap();
    for _ in 50..60 {
        assert_eq!(conn.read_response().await.unwrap().status, 200);
    }
    // A real client, over HTTP/2 as well.
    let res = h1_client()
        .request(post(&rx.url("/"), &event("evt_h1")))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let h2: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let res = h2
        .request(post(&rx.url("/"), &event("evt_h2")))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    assert_eq!(rx.count(), 62);
    let records = rx.take_records();
    assert_eq!(records.len(), 62);
    let ids: Vec<&str> = records.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids[0], "evt_0");
    assert_eq!(ids[59], "evt_59");
    assert!(ids.contains(&"evt_h1") && ids.contains(&"evt_h2"));
    assert!(records.windows(2).all(|w| w[0].1 <= w[1].1));
    assert!(rx.take_records().is_empty());
    assert_eq!(rx.count(), 62);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counting_receiver_goes_down_and_comes_back_on_the_same_port() {
    let rx = CountingReceiver::start().await.unwrap();
    let addr = rx.addr();
    let mut conn = Conn::open(addr).await;
    assert_eq!(conn.roundtrip("/", &event("before")).await.status, 200);

    rx.set_down(true).await.unwrap();
    // The open keep-alive connection is dropped...
    let closed = tokio::time::timeout(SECOND, conn.fill()).await.unwrap();
    assert!(closed.is_err());
    // ...and new connections are refused.
    let err = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    let client = h1_client();
    assert!(
        client
            .request(post(&rx.url("/"), &event("down")))
            .await
            .is_err()
    );

    rx.set_down(false).await.unwrap();
    assert_eq!(rx.addr(), addr);
    let mut conn = Conn::open(addr).await;
    assert_eq!(conn.roundtrip("/", &event("after")).await.status, 200);
    let res = client
        .request(post(&rx.url("/"), &event("after2")))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Down/up again, repeatedly.
    for _ in 0..3 {
        rx.set_down(true).await.unwrap();
        assert!(TcpStream::connect(addr).await.is_err());
        rx.set_down(false).await.unwrap();
        assert_eq!(
            Conn::open(addr)
                .await
                .roundtrip("/", &event("again"))
                .await
                .status,
            200
        );
    }

    let ids: Vec<String> = rx.take_records().into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids,
        ["before", "after", "after2", "again", "again", "again"]
    );
    rx.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn receiver_drop_closes_the_port() {
    let rx = Receiver::start(Behavior::default()).await.unwrap();
    let addr = rx.addr();
    drop(rx);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(TcpStream::connect(addr).await.is_err());
}
