//! Delivery states, attempt failures, and how a receiver's answer is read.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A name that is not one of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{value}' is not a valid {what}; expected one of: {expected}")]
pub struct UnknownVariant {
    /// What was being parsed, such as `delivery status`.
    pub what: &'static str,
    /// The rejected text (shortened to 64 characters).
    pub value: String,
    /// The accepted values, comma separated.
    pub expected: &'static str,
}

/// Defines a fieldless enum with a fixed text form, `as_str`, `parse`, `Display` and `FromStr`.
macro_rules! named_enum {
    (
        $(#[$meta:meta])* $name:ident, $what:literal, $expected:literal,
        { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// The stored and serialized form.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            #[doc = concat!("Parses the text form (", $expected, ").")]
            pub fn parse(s: &str) -> Result<Self, UnknownVariant> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownVariant {
                        what: $what,
                        value: s.chars().take(64).collect(),
                        expected: $expected,
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

named_enum!(
    /// Where one event's delivery to one webhook stands.
    DeliveryStatus, "delivery status", "pending, retrying, delivered, failed",
    {
        /// Not attempted yet.
        Pending => "pending",
        /// Attempted and failed; another attempt is scheduled.
        Retrying => "retrying",
        /// The receiver answered 2xx.
        Delivered => "delivered",
        /// Given up: attempts exhausted, receiver gone, or webhook removed.
        Failed => "failed",
    }
);

impl DeliveryStatus {
    /// Whether no further attempt will be made.
    pub fn is_final(self) -> bool {
        matches!(self, DeliveryStatus::Delivered | DeliveryStatus::Failed)
    }
}

named_enum!(
    /// Why one delivery attempt failed.
    AttemptErrorKind, "attempt error kind",
    "timeout, connect, tls, dns, blocked_address, http_status, redirect, auth",
    {
        /// No complete response within the timeout.
        Timeout => "timeout",
        /// The TCP connection could not be made or broke.
        Connect => "connect",
        /// The TLS handshake or certificate check failed.
        Tls => "tls",
        /// The host name did not resolve.
        Dns => "dns",
        /// The host resolved to an address the policy refuses.
        BlockedAddress => "blocked_address",
        /// The receiver answered with a non-2xx status.
        HttpStatus => "http_status",
        /// The receiver answered with a redirect, which is never followed.
        Redirect => "redirect",
        /// The endpoint's credentials could not be obtained (an OAuth2
        /// token request failed), so nothing was sent.
        Auth => "auth",
    }
);

/// What a receiver's HTTP status means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseClass {
    /// 2xx: done.
    Delivered,
    /// 410: the receiver says the endpoint is gone; stop retrying.
    Gone,
    /// 429 or 503: retry, honouring `Retry-After` when sent.
    Throttled,
    /// 3xx: redirects are not followed (they could lead anywhere); retry.
    Redirect,
    /// Anything else: retry.
    Failed,
}

/// Classifies a receiver's HTTP status code.
pub fn classify_status(status: u16) -> ResponseClass {
    match status {
        200..=299 => ResponseClass::Delivered,
        410 => ResponseClass::Gone,
        429 | 503 => ResponseClass::Throttled,
        300..=399 => ResponseClass::Redirect,
        _ => ResponseClass::Failed,
    }
}

/// How long a `Retry-After` header asks to wait, from `now_unix_secs`.
///
/// Accepts delta-seconds (`120`) or an HTTP-date in IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850 or asctime form. A date in the
/// past means no wait. Returns `None` for anything else.
pub fn parse_retry_after(value: &str, now_unix_secs: i64) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = parse_http_date(value)?;
    let wait = at.saturating_sub(now_unix_secs);
    Some(Duration::from_secs(u64::try_from(wait).unwrap_or(0)))
}

/// Parses an HTTP-date (RFC 9110 §5.6.7: IMF-fixdate, RFC 850 or asctime)
/// into unix seconds.
///
/// `httpdate` also rejects a weekday that does not match the date, and years
/// outside 1970–9999.
fn parse_http_date(s: &str) -> Option<i64> {
    let at = httpdate::parse_http_date(s).ok()?;
    let secs = at.duration_since(UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_forms() {
        for status in [
            DeliveryStatus::Pending,
            DeliveryStatus::Retrying,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
        ] {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Ok(status));
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{}\"", status.as_str())
            );
            assert_eq!(status.to_string(), status.as_str());
        }
        assert_eq!(DeliveryStatus::Retrying.as_str(), "retrying");
        assert!(DeliveryStatus::Delivered.is_final());
        assert!(DeliveryStatus::Failed.is_final());
        assert!(!DeliveryStatus::Pending.is_final());
        assert!(!DeliveryStatus::Retrying.is_final());
        let err = DeliveryStatus::parse("Done").unwrap_err();
        assert_eq!(
            err.to_string(),
            "'Done' is not a valid delivery status; expected one of: pending, retrying, delivered, failed"
        );
        let back: DeliveryStatus = serde_json::from_str("\"failed\"").unwrap();
        assert_eq!(back, DeliveryStatus::Failed);
    }

    #[test]
    fn attempt_error_kinds_are_snake_case() {
        let all = [
            (AttemptErrorKind::Timeout, "timeout"),
            (AttemptErrorKind::Connect, "connect"),
            (AttemptErrorKind::Tls, "tls"),
            (AttemptErrorKind::Dns, "dns"),
            (AttemptErrorKind::BlockedAddress, "blocked_address"),
            (AttemptErrorKind::HttpStatus, "http_status"),
            (AttemptErrorKind::Redirect, "redirect"),
            (AttemptErrorKind::Auth, "auth"),
        ];
        for (kind, text) in all {
            assert_eq!(kind.as_str(), text);
            assert_eq!(AttemptErrorKind::parse(text), Ok(kind));
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{text}\""));
            assert_eq!(text.parse::<AttemptErrorKind>(), Ok(kind));
        }
        assert!(AttemptErrorKind::parse("BlockedAddress").is_err());
    }

    #[test]
    fn classifies_statuses() {
        assert_eq!(classify_status(200), ResponseClass::Delivered);
        assert_eq!(classify_status(204), ResponseClass::Delivered);
        assert_eq!(classify_status(299), ResponseClass::Delivered);
        assert_eq!(classify_status(410), ResponseClass::Gone);
        assert_eq!(classify_status(429), ResponseClass::Throttled);
        assert_eq!(classify_status(503), ResponseClass::Throttled);
        assert_eq!(classify_status(301), ResponseClass::Redirect);
        assert_eq!(classify_status(308), ResponseClass::Redirect);
        for failed in [100, 400, 401, 404, 500, 502, 504, 999] {
            assert_eq!(classify_status(failed), ResponseClass::Failed, "{failed}");
        }
    }

    #[test]
    fn retry_after_delta_seconds() {
        assert_eq!(parse_retry_after("120", 0), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", 0), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-5", 0), None);
        assert_eq!(parse_retry_after("1.5", 0), None);
        assert_eq!(parse_retry_after("", 0), None);
        assert_eq!(parse_retry_after("soon", 0), None);
    }

    #[test]
    fn retry_after_http_dates() {
        // Sun, 06 Nov 1994 08:49:37 GMT = 784111777
        let at = 784_111_777;
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(at));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(at));
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(at));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at - 30),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at + 30),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_http_date("Wed, 01 Jan 2025 00:00:00 GMT"),
            Some(1_735_689_600)
        );
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 23:59:59 GMT"),
            Some(1_709_251_199)
        );
        for bad in [
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 2023 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            // The weekday must match the date (6 Nov 1994 was a Sunday).
            "Mon, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT trailing",
            "2025-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_retry_after(bad, 0), None, "{bad}");
        }
    }
}
