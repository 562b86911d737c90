//! Turning a response into the bounded record kept with an attempt.

use std::time::Duration;

use http::header::{LOCATION, RETRY_AFTER};
use http::{HeaderValue, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::{ErrorKind, OutboundError, Outcome};

/// Headers kept per attempt: enough to debug a receiver, bounded for storage.
const MAX_HEADERS: usize = 32;
/// Longest header value kept, in bytes.
const MAX_HEADER_VALUE: usize = 512;
/// Longest `Location` kept: URLs legitimately exceed a header excerpt.
const MAX_LOCATION: usize = 2048;

/// Records status, headers and a body excerpt of `response` into `outcome`;
/// fails on a redirect, or when the body is not read by `deadline`.
pub(crate) async fn record(
    response: Response<Incoming>,
    deadline: tokio::time::Instant,
    timeout: Duration,
    max_body: usize,
    outcome: &mut Outcome,
) -> Result<(), OutboundError> {
    let (parts, mut body) = response.into_parts();
    outcome.status = Some(parts.status.as_u16());
    outcome.response_headers = parts
        .headers
        .iter()
        .take(MAX_HEADERS)
        .map(|(name, value)| (name.as_str().to_string(), lossy(value, MAX_HEADER_VALUE)))
        .collect();
    outcome.retry_after = parts
        .headers
        .get(RETRY_AFTER)
        .map(|value| lossy(value, MAX_HEADER_VALUE));
    if parts.status.is_redirection() {
        outcome.location = parts
            .headers
            .get(LOCATION)
            .map(|value| lossy(value, MAX_LOCATION));
    }

    let mut excerpt = Vec::new();
    let read = tokio::time::timeout_at(deadline, read_limited(&mut body, &mut excerpt, max_body));
    let timed_out = read.await.is_err();
    // A body that breaks off mid-way still leaves a status the receiver chose
    // to send, so a read error only shortens the excerpt.
    outcome.body_excerpt = match String::from_utf8(excerpt) {
        Ok(text) => text,
        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
    };
    // Dropping an unfinished body closes its connection instead of pooling it,
    // which is what we want for a body we refuse to read further.
    drop(body);

    if timed_out {
        return Err(OutboundError::new(
            ErrorKind::Timeout,
            format!(
                "response body not complete within {} ms (status {})",
                timeout.as_millis(),
                parts.status.as_u16()
            ),
        ));
    }
    if parts.status.is_redirection() {
        let message = match &outcome.location {
            Some(location) => format!(
                "redirected ({}) to {location}; redirects are not followed",
                parts.status.as_u16()
            ),
            None => format!(
                "redirect status {} without a Location; redirects are not followed",
                parts.status.as_u16()
            ),
        };
        return Err(OutboundError::new(ErrorKind::Redirect, message));
    }
    Ok(())
}

/// Reads `body` into `excerpt` until it ends or `max` bytes are kept.
async fn read_limited(
    body: &mut Incoming,
    excerpt: &mut Vec<u8>,
    max: usize,
) -> Result<(), hyper::Error> {
    while excerpt.len() < max {
        match body.frame().await {
            None => break,
            Some(frame) => {
                // Trailers and other non-data frames carry nothing to keep.
                if let Ok(data) = frame?.into_data() {
                    let take = data.len().min(max - excerpt.len());
                    excerpt.extend_from_slice(&data[..take]);
                }
            }
        }
    }
    Ok(())
}

/// A header value as text, cut to at most `max` bytes.
fn lossy(value: &HeaderValue, max: usize) -> String {
    let bytes = value.as_bytes();
    String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned()
}
