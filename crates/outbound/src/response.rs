//! Turning a response into the bounded record kept with an attempt.

use std::time::Duration;

use crate::http1::Head;
use crate::{ErrorKind, OutboundError, Outcome};

/// Headers kept per attempt: enough to debug a receiver, bounded for storage.
const MAX_HEADERS: usize = 32;
/// Longest header value kept, in bytes.
const MAX_HEADER_VALUE: usize = 512;
/// Longest `Location` kept: URLs legitimately exceed a header excerpt.
const MAX_LOCATION: usize = 2048;

/// Records status and headers of `head` into `outcome`.
pub(crate) fn record_head(head: &Head, outcome: &mut Outcome) {
    outcome.status = Some(head.status);
    outcome.response_headers = head
        .headers
        .iter()
        .take(MAX_HEADERS)
        .map(|(name, value)| (name.clone(), lossy(value, MAX_HEADER_VALUE)))
        .collect();
    let find = |wanted: &str| head.headers.iter().find(|(name, _)| name == wanted);
    outcome.retry_after = find("retry-after").map(|(_, value)| lossy(value, MAX_HEADER_VALUE));
    if is_redirection(head.status) {
        outcome.location = find("location").map(|(_, value)| lossy(value, MAX_LOCATION));
    }
}

fn is_redirection(status: u16) -> bool {
    (300..400).contains(&status)
}

/// Records the body excerpt and decides the attempt's error, if any: a
/// body not read by the deadline, or a redirect (reported, not followed).
pub(crate) fn finish(
    outcome: &mut Outcome,
    excerpt: Vec<u8>,
    timed_out: bool,
    timeout: Duration,
) -> Result<(), OutboundError> {
    outcome.body_excerpt = match String::from_utf8(excerpt) {
        Ok(text) => without_nul(text),
        Err(err) => without_nul(String::from_utf8_lossy(err.as_bytes()).into_owned()),
    };
    let Some(status) = outcome.status else {
        return Err(OutboundError::new(
            ErrorKind::Timeout,
            format!("no response within {} ms", timeout.as_millis()),
        ));
    };
    if timed_out {
        return Err(OutboundError::new(
            ErrorKind::Timeout,
            format!(
                "response body not complete within {} ms (status {status})",
                timeout.as_millis()
            ),
        ));
    }
    if is_redirection(status) {
        let message = match &outcome.location {
            Some(location) => {
                format!("redirected ({status}) to {location}; redirects are not followed")
            }
            None => {
                format!("redirect status {status} without a Location; redirects are not followed")
            }
        };
        return Err(OutboundError::new(ErrorKind::Redirect, message));
    }
    Ok(())
}

/// A header value as text, cut to at most `max` bytes.
fn lossy(value: &[u8], max: usize) -> String {
    without_nul(String::from_utf8_lossy(&value[..value.len().min(max)]).into_owned())
}

/// `text` with every NUL replaced by U+FFFD, as invalid UTF-8 already is.
///
/// A receiver may answer with any bytes (a binary or compressed body), and
/// PostgreSQL's `text` cannot hold a NUL: one such excerpt made every
/// attempt batch it was part of fail, so that no result was recorded at
/// all. The excerpt is for reading; the replacement keeps it the same on
/// every store.
fn without_nul(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}
