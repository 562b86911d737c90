//! The HTTP/1.1 exchange of one attempt, on a connection the attempt owns.
//!
//! A webhook attempt is one small POST and one response, so the client
//! writes the request in one write and reads the answer in the same task:
//! no connection task, no channel between them. Measured against
//! hyper-util's pooled client with the bench's `examples/client_cost.rs`:
//! 12.0 against 18.0 µs of CPU per exchange (client and receiver, medians
//! of five interleaved runs; performance log, 2026-12-06), and the service
//! about 15 % more CPU per delivery with hyper-util's. The response parser
//! faces untrusted servers: `fuzz/` has a target for it.

use std::io;

use bytes::Buf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::conn::Conn;
use crate::headers::RequestHeaders;

/// Longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Most response headers accepted (hyper's default was 100).
const MAX_RESPONSE_HEADERS: usize = 128;

/// The bytes of a POST of `body` to `target` (path and query) on `host`.
pub(crate) fn encode_request(
    target: &str,
    host: &str,
    user_agent: &str,
    content_type: &str,
    headers: &RequestHeaders,
    body: &[u8],
) -> Vec<u8> {
    let lines = headers.as_bytes();
    let mut out = Vec::with_capacity(160 + target.len() + host.len() + lines.len() + body.len());
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nuser-agent: ");
    out.extend_from_slice(user_agent.as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\ncontent-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    // Checked lines without the client's own headers (see `RequestHeaders`).
    out.extend_from_slice(lines);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// A final (non-1xx) response head.
#[derive(Debug)]
pub(crate) struct Head {
    pub status: u16,
    /// Every header in order, names lowercased.
    pub headers: Vec<(String, Vec<u8>)>,
    framing: Framing,
    /// The server allows another request on this connection.
    keep_alive: bool,
}

/// How the response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// At end of stream (no length given).
    Close,
}

/// Why no usable response head arrived.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The connection failed or closed; `any_bytes`: part of a response came.
    Io { error: io::Error, any_bytes: bool },
    /// The bytes are not an HTTP/1.x response.
    Invalid(String),
}

async fn read_more(conn: &mut Conn) -> io::Result<usize> {
    if conn.buf.capacity() - conn.buf.len() < 1024 {
        conn.buf.reserve(8 * 1024);
    }
    conn.io.read_buf(&mut conn.buf).await
}

/// Sends the request bytes (none left when the TLS handshake carried them).
pub(crate) async fn send(conn: &mut Conn, request: &[u8]) -> io::Result<()> {
    if request.is_empty() {
        return Ok(());
    }
    conn.io.write_all(request).await?;
    conn.io.flush().await
}

/// Reads the response head, skipping interim (1xx) responses.
pub(crate) async fn read_head(conn: &mut Conn) -> Result<Head, HeadError> {
    let mut any_bytes = false;
    loop {
        let parsed = {
            let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
            let mut response = httparse::Response::new(&mut slots);
            match response.parse(&conn.buf) {
                Ok(httparse::Status::Complete(len)) => Some((len, head_of(&response)?)),
                Ok(httparse::Status::Partial) => None,
                Err(e) => return Err(HeadError::Invalid(format!("invalid HTTP response: {e}"))),
            }
        };
        if let Some((len, head)) = parsed {
            conn.buf.advance(len);
            if (100..200).contains(&head.status) && head.status != 101 {
                continue; // 100 Continue, 103 Early Hints: the final answer follows
            }
            return Ok(head);
        }
        if conn.buf.len() > MAX_HEAD {
            return Err(HeadError::Invalid(format!(
                "response head larger than {} KiB",
                MAX_HEAD / 1024
            )));
        }
        match read_more(conn).await {
            Ok(0) => {
                return Err(HeadError::Io {
                    error: io::ErrorKind::UnexpectedEof.into(),
                    any_bytes: any_bytes || !conn.buf.is_empty(),
                });
            }
            Ok(_) => any_bytes = true,
            Err(error) => return Err(HeadError::Io { error, any_bytes }),
        }
    }
}

fn head_of(response: &httparse::Response<'_, '_>) -> Result<Head, HeadError> {
    let status = response.code.unwrap_or_default();
    // httparse reads any three digits; a status is 100-999 (as hyper and
    // `http::StatusCode` require), else `000` would be recorded as an answer.
    if !(100..=999).contains(&status) {
        return Err(HeadError::Invalid(format!(
            "invalid HTTP response: status {status:03} is not a status code"
        )));
    }
    let http11 = response.version == Some(1);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = !http11;
    let mut headers = Vec::with_capacity(response.headers.len());
    for header in response.headers.iter() {
        let name = header.name.to_ascii_lowercase();
        match name.as_str() {
            "content-length" => {
                let parsed = std::str::from_utf8(header.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| HeadError::Invalid("invalid Content-Length".to_string()))?;
                if length.is_some_and(|l| l != parsed) {
                    return Err(HeadError::Invalid(
                        "conflicting Content-Length headers".to_string(),
                    ));
                }
                length = Some(parsed);
            }
            "transfer-encoding" => {
                // Only the last coding decides the framing (RFC 9112 §6.3).
                chunked = header
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            "connection" => {
                for token in header.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && !http11 {
                        close = false;
                    }
                }
            }
            _ => {}
        }
        headers.push((name, header.value.to_vec()));
    }
    let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(length) = length {
        Framing::Length(length)
    } else {
        Framing::Close
    };
    Ok(Head {
        status,
        headers,
        keep_alive: !close && framing != Framing::Close && status != 101,
        framing,
    })
}

/// Reads the body into `excerpt` until it ends or `max` bytes are kept.
/// Returns whether the body was read to its end (so the connection may carry
/// another request). A broken-off body is not an error: the status stands.
pub(crate) async fn read_body(
    conn: &mut Conn,
    head: &Head,
    excerpt: &mut Vec<u8>,
    max: usize,
) -> bool {
    let complete = match head.framing {
        Framing::Empty => Ok(true),
        Framing::Length(length) => read_length(conn, length, excerpt, max).await,
        Framing::Chunked => read_chunked(conn, excerpt, max).await,
        Framing::Close => read_to_end(conn, excerpt, max).await.map(|()| false),
    };
    // Bytes beyond the response would be read as the next one's start.
    complete.unwrap_or(false) && head.keep_alive && conn.buf.is_empty()
}

/// Moves up to `n` buffered bytes into the excerpt (as far as `max` allows).
fn consume(conn: &mut Conn, n: usize, excerpt: &mut Vec<u8>, max: usize) {
    let keep = n.min(max.saturating_sub(excerpt.len()));
    excerpt.extend_from_slice(&conn.buf[..keep]);
    conn.buf.advance(n);
}

async fn read_length(
    conn: &mut Conn,
    length: u64,
    excerpt: &mut Vec<u8>,
    max: usize,
) -> io::Result<bool> {
    let mut remaining = length;
    loop {
        let n = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(conn.buf.len());
        consume(conn, n, excerpt, max);
        remaining -= n as u64;
        if remaining == 0 {
            return Ok(true);
        }
        if excerpt.len() >= max {
            return Ok(false); // the rest is not read: this connection is dropped
        }
        if read_more(conn).await? == 0 {
            return Ok(false);
        }
    }
}

async fn read_to_end(conn: &mut Conn, excerpt: &mut Vec<u8>, max: usize) -> io::Result<()> {
    loop {
        let n = conn.buf.len();
        consume(conn, n, excerpt, max);
        if excerpt.len() >= max || read_more(conn).await? == 0 {
            return Ok(());
        }
    }
}

/// Waits until a whole line (ending in CRLF) is buffered; returns its length
/// without the CRLF, or `None` at end of stream.
async fn buffered_line(conn: &mut Conn) -> io::Result<Option<usize>> {
    loop {
        if let Some(pos) = conn.buf.windows(2).position(|w| w == b"\r\n") {
            return Ok(Some(pos));
        }
        if conn.buf.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunk line too long",
            ));
        }
        if read_more(conn).await? == 0 {
            return Ok(None);
        }
    }
}

async fn read_chunked(conn: &mut Conn, excerpt: &mut Vec<u8>, max: usize) -> io::Result<bool> {
    loop {
        let Some(line) = buffered_line(conn).await? else {
            return Ok(false);
        };
        // The size, then optional extensions after ';'.
        let size_text = conn.buf[..line]
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        let size = std::str::from_utf8(size_text)
            .ok()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "invalid chunk size"))?;
        conn.buf.advance(line + 2);
        if size == 0 {
            // Trailer fields until an empty line.
            loop {
                let Some(line) = buffered_line(conn).await? else {
                    return Ok(false);
                };
                conn.buf.advance(line + 2);
                if line == 0 {
                    return Ok(true);
                }
            }
        }
        if !read_length(conn, size, excerpt, max).await? {
            return Ok(false);
        }
        // The CRLF after the chunk's data.
        let Some(line) = buffered_line(conn).await? else {
            return Ok(false);
        };
        if line != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunk longer than its size",
            ));
        }
        conn.buf.advance(2);
        if excerpt.len() >= max {
            return Ok(false);
        }
    }
}
