//! A fuzzing harness for the outbound client's response reading.
//!
//! Receivers are untrusted servers, so the client's HTTP/1.1 response reader
//! (status line, headers, interim responses, `Content-Length`, chunked and
//! close-delimited bodies) must survive any bytes. [`ResponseFuzzer`] turns
//! one input into a response, serves it from a raw socket on 127.0.0.1 (in up
//! to three writes, then closes), lets the real [`OutboundClient`] fetch it,
//! and panics if the outcome breaks one of the client's promises. The same
//! entry point serves `fuzz/fuzz_targets/outbound_response.rs` (libFuzzer)
//! and the stable-toolchain smoke test, so the target cannot rot.
//!
//! An input's first byte picks the mode:
//! * well-formed (`0`, `1`): the rest of the input is entropy for a valid
//!   response (1xx interims, up to 130 headers, long and non-UTF-8 values,
//!   any of the three body framings, bodies larger than the kept excerpt),
//!   cut short a quarter of the time. The outcome must match it exactly
//!   (status, headers, `Retry-After`, `Location`, body excerpt), or be a
//!   prefix of it when the response was cut in its body;
//! * raw (`2`): the rest of the input is the response;
//! * mutated (`3`): a well-formed response with a few bytes flipped,
//!   inserted or deleted.
//!
//! Every mode checks the promises that hold for any bytes: no panic, no
//! wait past a closed connection, at most 32 headers of at most 512
//! characters, an excerpt within the limit, and a status whenever no error
//! is reported.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use url::Url;
use webhook_domain::address::AddressPolicy;
use webhook_outbound::{ErrorKind, OutboundClient, OutboundConfig, Outcome};

use generate::{Entropy, mutate, split, well_formed};

mod generate;

/// Body bytes the client keeps: small, so that oversized bodies are common.
pub const MAX_EXCERPT: usize = 256;
/// Headers the client keeps per attempt.
const KEPT_HEADERS: usize = 32;
/// Longest header value the client keeps, in bytes.
const KEPT_VALUE: usize = 512;
/// Longest `Location` the client keeps, in bytes.
const KEPT_LOCATION: usize = 2048;
/// The client's header slots: a response with more headers is invalid.
const HEADER_SLOTS: usize = 128;
/// The client's response head limit.
const MAX_HEAD: usize = 64 * 1024;
/// Far longer than any served response takes: the server always closes, so
/// reaching it means the client waited on a closed connection.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

/// Which checks an input's outcome went through, beyond the promises every
/// outcome keeps (for the smoke test's tally).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Checked {
    /// A whole well-formed response, read exactly.
    Exact,
    /// A well-formed response cut short in its body: read as a prefix.
    Prefix,
    /// A well-formed response cut short in its head, or with more headers
    /// than the client reads: refused with no status.
    Refused,
    /// Raw or mutated bytes, or an oversized head: the promises only.
    PromisesOnly,
}

/// A raw responder on 127.0.0.1 and an outbound client pointed at it.
pub struct ResponseFuzzer {
    client: OutboundClient,
    url: Url,
    scripts: mpsc::UnboundedSender<Vec<Vec<u8>>>,
    accept: JoinHandle<()>,
}

impl Drop for ResponseFuzzer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl ResponseFuzzer {
    /// Starts the responder and the client; must be called inside a Tokio runtime.
    pub async fn start() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let (scripts, mut next_script) = mpsc::unbounded_channel::<Vec<Vec<u8>>>();
        // Inputs run one at a time and each attempt opens one connection (no
        // pooling), so the n-th connection serves the n-th script.
        let accept = tokio::spawn(async move {
            while let Some(pieces) = next_script.recv().await {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(stream, pieces));
            }
        });
        let policy = Arc::new(AddressPolicy::new(Vec::new(), true));
        let client = OutboundClient::new(OutboundConfig {
            timeout: ATTEMPT_TIMEOUT,
            max_response_body: MAX_EXCERPT,
            user_agent: "SmartAIHub-Webhooks/fuzz".to_string(),
            policy,
            pool_idle_per_host: 0,
            pool_idle_timeout: Duration::from_secs(1),
            tls: Default::default(),
            proxy: None,
            limits: Default::default(),
        })
        .map_err(io::Error::other)?;
        let url = Url::parse(&format!("http://{addr}/hook")).map_err(io::Error::other)?;
        Ok(ResponseFuzzer {
            client,
            url,
            scripts,
            accept,
        })
    }

    /// Serves the response `data` describes and checks the client's outcome.
    ///
    /// # Panics
    ///
    /// When the outcome breaks a promise of the client (see the module docs).
    pub async fn run(&self, data: &[u8]) -> Checked {
        let mut entropy = Entropy(data);
        let mode = entropy.byte() % 4;
        let (response, expected) = match mode {
            0 | 1 => {
                let (bytes, expected) = well_formed(&mut entropy);
                (bytes, Some(expected))
            }
            2 => (entropy.rest().to_vec(), None),
            _ => {
                let (bytes, _) = well_formed(&mut entropy);
                (mutate(&mut entropy, bytes), None)
            }
        };
        let pieces = split(&mut entropy, response);
        assert!(
            self.scripts.send(pieces).is_ok(),
            "the responder stopped accepting"
        );
        let outcome = self
            .client
            .post(&self.url, HeaderMap::new(), Bytes::from_static(b"{}"))
            .await;
        check_promises(&outcome);
        match expected {
            Some(expected) => expected.check(&outcome),
            None => Checked::PromisesOnly,
        }
    }
}

/// Reads the request, writes the pieces, closes the sending side, and drains
/// until the client closes (closing with unread bytes would send a reset,
/// which could overtake the response).
async fn serve(mut stream: TcpStream, pieces: Vec<Vec<u8>>) {
    let mut request = Vec::new();
    let mut chunk = [0_u8; 4096];
    // The request is a head and the 2-byte body `{}`.
    while request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .is_none_or(|end| request.len() < end + 4 + 2)
    {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
    }
    for piece in pieces {
        if stream.write_all(&piece).await.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
    let _ = stream.shutdown().await;
    while let Ok(n) = stream.read(&mut chunk).await {
        if n == 0 {
            return;
        }
    }
}

/// The promises that hold whatever the server sent.
fn check_promises(outcome: &Outcome) {
    let kind = outcome.error.as_ref().map(|e| e.kind);
    assert_ne!(
        kind,
        Some(ErrorKind::Timeout),
        "the client waited past a closed connection: {outcome:?}"
    );
    assert!(
        outcome.response_headers.len() <= KEPT_HEADERS,
        "{outcome:?}"
    );
    for (_, value) in &outcome.response_headers {
        assert!(value.chars().count() <= KEPT_VALUE, "{outcome:?}");
    }
    // Lossy decoding turns each byte into at most one character.
    assert!(
        outcome.body_excerpt.chars().count() <= MAX_EXCERPT,
        "{outcome:?}"
    );
    assert!(!outcome.body_excerpt.contains('\0'), "{outcome:?}");
    match outcome.status {
        None => assert!(outcome.error.is_some(), "no status and no error"),
        Some(status) => {
            assert!((100..=999).contains(&status), "{status}");
            assert!(
                !(100..200).contains(&status) || status == 101,
                "an interim {status} reported as the answer"
            );
            if (300..400).contains(&status) {
                assert_eq!(kind, Some(ErrorKind::Redirect), "{outcome:?}");
            } else {
                assert_eq!(kind, None, "{outcome:?}");
            }
        }
    }
    if outcome.location.is_some() {
        assert!(
            outcome.status.is_some_and(|s| (300..400).contains(&s)),
            "{outcome:?}"
        );
    }
}
