//! Black-box tests of the outbound client against real receivers on
//! 127.0.0.1 ephemeral ports. The receivers are hand-written HTTP/1.1 so each
//! can misbehave in exactly one way. No test contacts anything outside
//! 127.0.0.0/8 and ::1.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;
use webhook_domain::address::{AddressClass, AddressPolicy};
use webhook_outbound::{ErrorKind, OutboundClient, OutboundConfig, Outcome};

/// What the receiver does with each request it reads.
#[derive(Clone)]
enum Behaviour {
    /// Answers with these raw bytes and keeps the connection open.
    Respond(Vec<u8>),
    /// Never answers.
    Hang,
    /// Closes the connection without answering.
    Close,
    /// Resets the connection (RST) without answering.
    Reset,
    /// Sends a head announcing 1000 body bytes, then one byte every 100 ms.
    Trickle,
}

/// A receiver on 127.0.0.1 that counts connections and keeps requests.
struct Receiver {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }

    fn localhost_url(&self) -> Url {
        Url::parse(&format!("http://localhost:{}/hook", self.addr.port())).unwrap()
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

async fn spawn_receiver(behaviour: Behaviour) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (count, seen) = (accepts.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_connection(stream, behaviour.clone(), seen.clone()));
        }
    });
    Receiver {
        addr,
        accepts,
        requests,
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    behaviour: Behaviour,
    seen: Arc<Mutex<Vec<String>>>,
) {
    let mut buf = Vec::new();
    while let Some(request) = read_request(&mut stream, &mut buf).await {
        seen.lock().unwrap().push(request);
        match &behaviour {
            Behaviour::Respond(bytes) => {
                if stream.write_all(bytes).await.is_err() {
                    return;
                }
            }
            Behaviour::Hang => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            Behaviour::Close => return,
            Behaviour::Reset => {
                stream.set_zero_linger().unwrap();
                return;
            }
            Behaviour::Trickle => {
                let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
                if stream.write_all(head).await.is_err() {
                    return;
                }
                for _ in 0..1000 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if stream.write_all(b"x").await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Reads one request (head and Content-Length body); `None` at end of stream.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let body_len = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + body_len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let request = String::from_utf8_lossy(&buf[..head_end + body_len]).into_owned();
    buf.drain(..head_end + body_len);
    Some(request)
}

fn response(status_line: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status_line}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn loopback_policy() -> Arc<AddressPolicy> {
    Arc::new(AddressPolicy::new(
        vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        false,
    ))
}

fn client_with(policy: Arc<AddressPolicy>, timeout: Duration) -> OutboundClient {
    OutboundClient::new(OutboundConfig {
        timeout,
        max_response_body: 64 * 1024,
        user_agent: "SmartAIHub-Webhooks/test".to_string(),
        policy,
        pool_idle_per_host: 8,
        pool_idle_timeout: Duration::from_secs(30),
        tls: Default::default(),
        proxy: None,
        limits: Default::default(),
    })
    .unwrap()
}

fn client() -> OutboundClient {
    client_with(loopback_policy(), Duration::from_secs(5))
}

async fn post(client: &OutboundClient, url: &Url) -> Outcome {
    let mut headers = HeaderMap::new();
    headers.insert("webhook-signature", HeaderValue::from_static("v1,abc"));
    client
        .post(url, headers, Bytes::from_static(br#"{"type":"ping"}"#))
        .await
}

fn error_kind(outcome: &Outcome) -> Option<ErrorKind> {
    outcome.error.as_ref().map(|e| e.kind)
}

#[tokio::test]
async fn ok_response_captures_status_headers_and_body() {
    let receiver = spawn_receiver(Behaviour::Respond(response(
        "200 OK",
        &[("X-Receiver", "yes"), ("Content-Type", "application/json")],
        br#"{"status":"ok"}"#,
    )))
    .await;
    let outcome = post(&client(), &receiver.url("/hook?a=1")).await;

    assert_eq!(outcome.status, Some(200));
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.body_excerpt, r#"{"status":"ok"}"#);
    assert!(
        outcome
            .response_headers
            .contains(&("x-receiver".to_string(), "yes".to_string()))
    );
    assert!(outcome.location.is_none() && outcome.retry_after.is_none());
    assert!(outcome.duration > Duration::ZERO);

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let request = requests[0].to_ascii_lowercase();
    assert!(
        request.starts_with("post /hook?a=1 http/1.1\r\n"),
        "{request}"
    );
    assert!(request.contains("user-agent: smartaihub-webhooks/test\r\n"));
    assert!(request.contains("content-type: application/json\r\n"));
    assert!(request.contains("content-length: 15\r\n"));
    assert!(request.contains("webhook-signature: v1,abc\r\n"));
    assert!(requests[0].ends_with("\r\n\r\n{\"type\":\"ping\"}"));
}

#[tokio::test]
async fn server_error_is_a_response_not_an_error() {
    let receiver = spawn_receiver(Behaviour::Respond(response(
        "500 Internal Server Error",
        &[],
        b"boom",
    )))
    .await;
    let outcome = post(&client(), &receiver.url("/")).await;
    assert_eq!(outcome.status, Some(500));
    assert!(outcome.error.is_none());
    assert_eq!(outcome.body_excerpt, "boom");
}

#[tokio::test]
async fn binary_body_is_kept_as_text_without_nul() {
    // PostgreSQL's text cannot hold NUL; invalid UTF-8 was already replaced.
    let receiver = spawn_receiver(Behaviour::Respond(response("200 OK", &[], b"a\0b\xffc"))).await;
    let outcome = post(&client(), &receiver.url("/")).await;
    assert_eq!(outcome.status, Some(200));
    assert!(outcome.error.is_none());
    assert_eq!(outcome.body_excerpt, "a\u{FFFD}b\u{FFFD}c");
}

#[tokio::test]
async fn redirect_is_reported_not_followed() {
    let receiver = spawn_receiver(Behaviour::Respond(response(
        "302 Found",
        &[("Location", "https://elsewhere.example/hook")],
        b"",
    )))
    .await;
    let outcome = post(&client(), &receiver.url("/")).await;
    assert_eq!(outcome.status, Some(302));
    assert_eq!(error_kind(&outcome), Some(ErrorKind::Redirect));
    assert_eq!(
        outcome.location.as_deref(),
        Some("https://elsewhere.example/hook")
    );
    let message = &outcome.error.as_ref().unwrap().message;
    assert!(
        message.contains("https://elsewhere.example/hook"),
        "{message}"
    );
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test]
async fn too_many_requests_keeps_retry_after() {
    let receiver = spawn_receiver(Behaviour::Respond(response(
        "429 Too Many Requests",
        &[("Retry-After", "120")],
        b"slow down",
    )))
    .await;
    let outcome = post(&client(), &receiver.url("/")).await;
    assert_eq!(outcome.status, Some(429));
    assert!(outcome.error.is_none());
    assert_eq!(outcome.retry_after.as_deref(), Some("120"));
}

#[tokio::test]
async fn hanging_receiver_times_out() {
    let receiver = spawn_receiver(Behaviour::Hang).await;
    let client = client_with(loopback_policy(), Duration::from_millis(300));
    let outcome = post(&client, &receiver.url("/")).await;
    assert_eq!(error_kind(&outcome), Some(ErrorKind::Timeout));
    assert_eq!(outcome.status, None);
    assert!(outcome.duration >= Duration::from_millis(300));
    assert!(
        outcome.duration < Duration::from_secs(2),
        "{:?}",
        outcome.duration
    );
}

#[tokio::test]
async fn a_timeout_of_its_own_replaces_the_clients() {
    let receiver = spawn_receiver(Behaviour::Hang).await;
    // The client waits 5 s; this one request 300 ms.
    let outcome = client()
        .post_with_timeout(
            &receiver.url("/"),
            HeaderMap::new(),
            Bytes::from_static(b"{}"),
            Duration::from_millis(300),
        )
        .await;
    assert_eq!(error_kind(&outcome), Some(ErrorKind::Timeout));
    assert!(outcome.duration >= Duration::from_millis(300));
    assert!(
        outcome.duration < Duration::from_secs(4),
        "{:?}",
        outcome.duration
    );
}

#[tokio::test]
async fn trickled_body_counts_against_the_timeout() {
    let receiver = spawn_receiver(Behaviour::Trickle).await;
    let client = client_with(loopback_policy(), Duration::from_millis(300));
    let outcome = post(&client, &receiver.url("/")).await;
    assert_eq!(error_kind(&outcome), Some(ErrorKind::Timeout));
    assert_eq!(outcome.status, Some(200));
    assert!(
        outcome.duration < Duration::from_secs(2),
        "{:?}",
        outcome.duration
    );
    // What trickled in before the deadline is kept.
    assert!(outcome.body_excerpt.len() < 10, "{}", outcome.body_excerpt);
}

#[tokio::test]
async fn closed_connection_is_a_connect_error() {
    let receiver = spawn_receiver(Behaviour::Close).await;
    let outcome = post(&client(), &receiver.url("/")).await;
    assert_eq!(error_kind(&outcome), Some(ErrorKind::Connect));
    assert_eq!(outcome.status, None);
    let message = &outcome.error.as_ref().unwrap().message;
    assert_eq!(message, "connection closed before a response");
}

#[tokio::test]
async fn reset_connection_is_a_connect_error() {
    let receiver = spawn_receiver(Behaviour::Reset).await;
    let outcome = post(&client(), &receiver.url("/")).await;
    assert_eq!(error_kind(&outcome), Some(ErrorKind::Connect));
    let message = &outcome.error.as_ref().unwrap().message;
    assert_eq!(message, "connection reset by peer");
}

#[tokio::test]
async fn refused_connection_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = Url::parse(&format!("http://{addr}/")).unwrap();
    let outcome = post(&client(), &url).await;
    assert_eq!(error_kind(&outcome), Some(ErrorKind::Connect));
    assert_eq!(
        outcome.error.as_ref().unwrap().message,
        "connection refused"
    );
}

#[tokio::test]
async fn big_body_is_cut_at_the_cap() {
    let body = vec![b'a'; 1024 * 1024];
    let receiver = spawn_receiver(Behaviour::Respond(response("200 OK", &[], &body))).await;
    let outcome = post(&client(), &receiver.url("/")).await;
    assert_eq!(outcome.status, Some(200));
    assert!(outcome.error.is_none());
    assert_eq!(outcome.body_excerpt.len(), 64 * 1024);
}

#[tokio::test]
async fn long_header_values_and_many_headers_are_bounded() {
    let long = "v".repeat(2000);
    let names: Vec<String> = (0..40).map(|i| format!("X-H{i}")).collect();
    let mut headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    headers.insert(0, ("X-Long", &long));
    let receiver = spawn_receiver(Behaviour::Respond(response("200 OK", &headers, b""))).await;
    let outcome = post(&client(), &receiver.url("/")).await;
    assert_eq!(outcome.response_headers.len(), 32);
    let (_, value) = outcome
        .response_headers
        .iter()
        .find(|(name, _)| name == "x-long")
        .unwrap();
    assert_eq!(value.len(), 512);
}

#[tokio::test]
async fn keep_alive_reuses_one_connection() {
    let receiver = spawn_receiver(Behaviour::Respond(response("200 OK", &[], b"ok"))).await;
    let client = client();
    for _ in 0..3 {
        let outcome = post(&client, &receiver.url("/")).await;
        assert_eq!(outcome.status, Some(200));
    }
    assert_eq!(receiver.requests().len(), 3);
    assert_eq!(receiver.accepts(), 1);
}

#[tokio::test]
async fn clones_share_the_pool() {
    let receiver = spawn_receiver(Behaviour::Respond(response("200 OK", &[], b"ok"))).await;
    let client = client();
    let other = client.clone();
    assert_eq!(post(&client, &receiver.url("/")).await.status, Some(200));
    assert_eq!(post(&other, &receiver.url("/")).await.status, Some(200));
    assert_eq!(receiver.accepts(), 1);
}

#[tokio::test]
async fn strict_policy_refuses_loopback_literals() {
    let receiver = spawn_receiver(Behaviour::Respond(response("200 OK", &[], b"ok"))).await;
    let strict = client_with(Arc::new(AddressPolicy::default()), Duration::from_secs(5));
    for url in [
        receiver.url("/"),
        Url::parse(&format!("http://[::1]:{}/", receiver.addr.port())).unwrap(),
        Url::parse(&format!(
            "http://[::ffff:127.0.0.1]:{}/",
            receiver.addr.port()
        ))
        .unwrap(),
        // The URL parser normalises this to 127.0.0.1, so it is a literal too.
        Url::parse(&format!("http://2130706433:{}/", receiver.addr.port())).unwrap(),
    ] {
        let outcome = post(&strict, &url).await;
        assert_eq!(
            error_kind(&outcome),
            Some(ErrorKind::BlockedAddress),
            "{url}"
        );
        let message = &outcome.error.as_ref().unwrap().message;
        assert!(
            message.contains(AddressClass::Loopback.describe()),
            "{message}"
        );
    }
    assert_eq!(receiver.accepts(), 0);
}

#[tokio::test]
async fn strict_policy_refuses_names_resolving_to_loopback() {
    let receiver = spawn_receiver(Behaviour::Respond(response("200 OK", &[], b"ok"))).await;
    let strict = client_with(Arc::new(AddressPolicy::default()), Duration::from_secs(5));
    let outcome = post(&strict, &receiver.localhost_url()).await;
    assert_eq!(error_kind(&outcome), Some(ErrorKind::BlockedAddress));
    let message = &outcome.error.as_ref().unwrap().message;
    assert!(
        message.starts_with("localhost resolves only to refused addresses"),
        "{message}"
    );
    assert!(message.contains("loopback"), "{message}");
    assert_eq!(receiver.accepts(), 0);
}

#[tokio::test]
async fn allow_listed_loopback_is_reached_by_name_and_literal() {
    let receiver = spawn_receiver(Behaviour::Respond(response("200 OK", &[], b"ok"))).await;
    let client = client();
    let by_name = post(&client, &receiver.localhost_url()).await;
    assert_eq!(by_name.status, Some(200), "{:?}", by_name.error);
    let by_literal = post(&client, &receiver.url("/")).await;
    assert_eq!(by_literal.status, Some(200), "{:?}", by_literal.error);
}

#[tokio::test]
async fn unresolvable_name_is_a_dns_error() {
    let url = Url::parse("http://nonexistent.invalid/hook").unwrap();
    let outcome = post(&client(), &url).await;
    assert_eq!(
        error_kind(&outcome),
        Some(ErrorKind::Dns),
        "{:?}",
        outcome.error
    );
    let message = &outcome.error.as_ref().unwrap().message;
    assert!(message.contains("nonexistent.invalid"), "{message}");
}

#[tokio::test]
async fn https_to_a_plain_http_receiver_is_a_tls_error() {
    // A plain HTTP server answers the ClientHello bytes with a 400, which
    // rustls cannot parse as a TLS record.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
    let url = Url::parse(&format!("https://{addr}/")).unwrap();
    let outcome = post(&client(), &url).await;
    assert_eq!(
        error_kind(&outcome),
        Some(ErrorKind::Tls),
        "{:?}",
        outcome.error
    );
    let message = &outcome.error.as_ref().unwrap().message;
    assert!(message.starts_with("TLS handshake failed"), "{message}");
}

#[tokio::test]
async fn https_to_a_receiver_that_hangs_up_is_a_tls_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let url = Url::parse(&format!("https://{addr}/")).unwrap();
    let outcome = post(&client(), &url).await;
    assert_eq!(
        error_kind(&outcome),
        Some(ErrorKind::Tls),
        "{:?}",
        outcome.error
    );
}

#[tokio::test]
async fn unsupported_scheme_is_refused_without_connecting() {
    let url = Url::parse("ftp://127.0.0.1/").unwrap();
    let outcome = post(&client(), &url).await;
    assert_eq!(error_kind(&outcome), Some(ErrorKind::Connect));
}

#[test]
fn error_kind_names_are_stable() {
    let names: Vec<&str> = [
        ErrorKind::Timeout,
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Dns,
        ErrorKind::BlockedAddress,
        ErrorKind::HttpStatus,
        ErrorKind::Redirect,
    ]
    .iter()
    .map(ErrorKind::as_str)
    .collect();
    assert_eq!(
        names,
        [
            "timeout",
            "connect",
            "tls",
            "dns",
            "blocked_address",
            "http_status",
            "redirect"
        ]
    );
}

#[test]
fn invalid_settings_are_refused() {
    let config = OutboundConfig {
        timeout: Duration::ZERO,
        max_response_body: 1024,
        user_agent: "ua".to_string(),
        policy: loopback_policy(),
        pool_idle_per_host: 1,
        pool_idle_timeout: Duration::from_secs(1),
        tls: Default::default(),
        proxy: None,
        limits: Default::default(),
    };
    assert!(OutboundClient::new(config.clone()).is_err());
    let bad_agent = OutboundConfig {
        timeout: Duration::from_secs(1),
        user_agent: "line\nbreak".to_string(),
        ..config.clone()
    };
    assert!(OutboundClient::new(bad_agent).is_err());
    let no_connections = OutboundConfig {
        timeout: Duration::from_secs(1),
        limits: webhook_outbound::ConnectionLimits {
            max_open: 0,
            ..Default::default()
        },
        ..config
    };
    assert!(matches!(
        OutboundClient::new(no_connections),
        Err(webhook_outbound::OutboundInitError::ZeroConnections)
    ));
}

/// A receiver that answers each request with the next of `answers` (raw
/// bytes; empty: no answer), and closes the connection after those marked
/// `close`.
async fn spawn_scripted(answers: Vec<(Vec<u8>, bool)>) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (count, seen) = (accepts.clone(), requests.clone());
    let answers = Arc::new(Mutex::new(answers.into_iter()));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let (seen, answers) = (seen.clone(), answers.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(request) = read_request(&mut stream, &mut buf).await {
                    seen.lock().unwrap().push(request);
                    let Some((bytes, close)) = answers.lock().unwrap().next() else {
                        return;
                    };
                    if stream.write_all(&bytes).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    Receiver {
        addr,
        accepts,
        requests,
    }
}

#[tokio::test]
async fn chunked_body_is_decoded_and_the_connection_kept() {
    let chunked =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
            .to_vec();
    let receiver = spawn_scripted(vec![
        (chunked, false),
        (response("200 OK", &[], b"ok"), false),
    ])
    .await;
    let client = client();
    let first = post(&client, &receiver.url("/")).await;
    assert!(first.error.is_none(), "{:?}", first.error);
    assert_eq!(first.body_excerpt, "hello world");
    let second = post(&client, &receiver.url("/")).await;
    assert_eq!(second.body_excerpt, "ok");
    assert_eq!(
        receiver.accepts(),
        1,
        "a complete chunked body keeps the connection"
    );
}

#[tokio::test]
async fn body_without_length_is_read_to_the_end_of_the_stream() {
    let receiver = spawn_scripted(vec![
        (b"HTTP/1.1 200 OK\r\n\r\nall of it".to_vec(), true),
        (response("200 OK", &[], b"next"), false),
    ])
    .await;
    let client = client();
    let first = post(&client, &receiver.url("/")).await;
    assert!(first.error.is_none(), "{:?}", first.error);
    assert_eq!(first.body_excerpt, "all of it");
    let second = post(&client, &receiver.url("/")).await;
    assert_eq!(second.body_excerpt, "next");
    assert_eq!(receiver.accepts(), 2);
}

#[tokio::test]
async fn interim_responses_are_skipped() {
    let answer = [
        b"HTTP/1.1 100 Continue\r\n\r\n".as_slice(),
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
        &response("201 Created", &[], b"made"),
    ]
    .concat();
    let receiver = spawn_scripted(vec![(answer, false)]).await;
    let outcome = post(&client(), &receiver.url("/")).await;
    assert_eq!(outcome.status, Some(201));
    assert_eq!(outcome.body_excerpt, "made");
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
}

#[tokio::test]
async fn connection_close_and_http_1_0_answers_are_not_reused() {
    let receiver = spawn_scripted(vec![
        (response("200 OK", &[("Connection", "close")], b"a"), false),
        (
            b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nb".to_vec(),
            false,
        ),
        (response("200 OK", &[], b"c"), false),
    ])
    .await;
    let client = client();
    for expected in ["a", "b", "c"] {
        let outcome = post(&client, &receiver.url("/")).await;
        assert_eq!(outcome.body_excerpt, expected, "{:?}", outcome.error);
    }
    assert_eq!(receiver.accepts(), 3);
}

#[tokio::test]
async fn a_pooled_connection_closed_by_the_receiver_is_replaced() {
    // The receiver answers keep-alive, then drops the connection while idle;
    // after a second idle the client checks a pooled connection before use.
    let receiver = spawn_scripted(vec![
        (response("200 OK", &[], b"one"), true),
        (response("200 OK", &[], b"two"), false),
    ])
    .await;
    let client = client();
    assert_eq!(post(&client, &receiver.url("/")).await.body_excerpt, "one");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = post(&client, &receiver.url("/")).await;
    assert!(second.error.is_none(), "{:?}", second.error);
    assert_eq!(second.body_excerpt, "two");
    assert_eq!(receiver.accepts(), 2);
    assert_eq!(
        receiver.requests().len(),
        2,
        "the closed connection got no request"
    );
}

#[tokio::test]
async fn a_response_that_is_not_http_is_a_connect_error() {
    let receiver = spawn_scripted(vec![(b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec(), false)]).await;
    let outcome = post(&client(), &receiver.url("/")).await;
    assert_eq!(error_kind(&outcome), Some(ErrorKind::Connect));
    let message = &outcome.error.as_ref().unwrap().message;
    assert!(message.starts_with("invalid HTTP response"), "{message}");
}

/// Found by the `outbound_response` fuzz target: httparse reads any three
/// digits, and `000` was recorded as the receiver's status.
#[tokio::test]
async fn a_status_outside_100_to_999_is_an_invalid_response() {
    for status_line in ["000 Zero", "099 Low"] {
        let receiver = spawn_receiver(Behaviour::Respond(response(status_line, &[], b""))).await;
        let outcome = post(&client(), &receiver.url("/")).await;
        assert_eq!(outcome.status, None, "{status_line}");
        assert_eq!(
            error_kind(&outcome),
            Some(ErrorKind::Connect),
            "{status_line}"
        );
        let message = &outcome.error.as_ref().unwrap().message;
        assert!(message.contains("status"), "{message}");
    }
}

#[tokio::test]
async fn the_client_owns_host_length_and_type_headers() {
    let receiver = spawn_receiver(Behaviour::Respond(response("200 OK", &[], b""))).await;
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("evil.example"));
    headers.insert("content-length", HeaderValue::from_static("999"));
    headers.insert("x-webhook-id", HeaderValue::from_static("evt_1"));
    let outcome = client()
        .post(&receiver.url("/p"), headers, Bytes::from_static(b"{}"))
        .await;
    assert_eq!(outcome.status, Some(200), "{:?}", outcome.error);
    let request = receiver.requests()[0].to_ascii_lowercase();
    assert!(
        request.contains(&format!("\r\nhost: {}\r\n", receiver.addr)),
        "{request}"
    );
    assert_eq!(request.matches("\r\nhost:").count(), 1, "{request}");
    assert_eq!(
        request.matches("\r\ncontent-length:").count(),
        1,
        "{request}"
    );
    assert!(request.contains("\r\ncontent-length: 2\r\n"), "{request}");
    assert!(request.contains("\r\nx-webhook-id: evt_1\r\n"), "{request}");
}

#[tokio::test]
async fn a_kept_alive_connection_that_breaks_before_an_answer_is_retried_once() {
    // The second request is read on the kept-alive connection, which is then
    // closed without an answer (the race of a receiver's idle timeout).
    let receiver = spawn_scripted(vec![
        (response("200 OK", &[], b"one"), false),
        (Vec::new(), true),
        (response("200 OK", &[], b"two"), false),
    ])
    .await;
    let client = client();
    assert_eq!(post(&client, &receiver.url("/")).await.body_excerpt, "one");
    let second = post(&client, &receiver.url("/")).await;
    assert!(second.error.is_none(), "{:?}", second.error);
    assert_eq!(second.body_excerpt, "two");
    assert_eq!(receiver.accepts(), 2);
    assert_eq!(receiver.requests().len(), 3);
}

#[tokio::test]
async fn a_new_connection_that_breaks_before_an_answer_is_not_retried() {
    let receiver = spawn_scripted(vec![
        (Vec::new(), true),
        (response("200 OK", &[], b"never"), false),
    ])
    .await;
    let outcome = post(&client(), &receiver.url("/")).await;
    assert_eq!(error_kind(&outcome), Some(ErrorKind::Connect));
    assert_eq!(receiver.accepts(), 1);
    assert_eq!(receiver.requests().len(), 1);
}
