//! Fixed-window rate limits per key (a user on `/api/v1`, a caller on `/internal`).
//!
//! Limits are per instance: each process counts its own requests.

use std::sync::Mutex;

use http::{HeaderMap, HeaderValue};
use webhook_domain::timefmt::now_ms;

use crate::config::RateLimit;

/// Entries kept before stale windows are swept.
const SWEEP_AT: usize = 10_000;

/// The verdict on one request, with the values of the rate-limit headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Requests allowed per window.
    pub limit: u32,
    /// Requests left in this window.
    pub remaining: u32,
    /// End of the window (unix seconds).
    pub reset_unix: u64,
    /// Seconds until the window ends (at least 1).
    pub reset_after: u64,
}

impl Decision {
    /// The `X-RateLimit-*` and IETF `RateLimit-*` header values (and
    /// `Retry-After` when refused), as numbers.
    fn values(&self) -> impl Iterator<Item = (&'static str, u64)> {
        let limit = u64::from(self.limit);
        let remaining = u64::from(self.remaining);
        [
            ("x-ratelimit-limit", limit),
            ("x-ratelimit-remaining", remaining),
            ("x-ratelimit-reset", self.reset_unix),
            ("ratelimit-limit", limit),
            ("ratelimit-remaining", remaining),
            ("ratelimit-reset", self.reset_after),
        ]
        .into_iter()
        .chain((!self.allowed).then_some(("retry-after", self.reset_after)))
    }

    /// The headers as text (for an error answer's header list).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        self.values()
            .map(|(name, value)| (name, value.to_string()))
            .collect()
    }

    /// Adds the headers to a response.
    ///
    /// Values are built from the numbers directly: this runs on every
    /// request, and going through text cost two allocations and a
    /// validation per header.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in self.values() {
            headers.insert(name, HeaderValue::from(value));
        }
    }
}

/// A fixed-window counter per key.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    windows: Mutex<crate::FastMap<String, (i64, u32)>>,
}

impl RateLimiter {
    /// A limiter enforcing `limit`.
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            windows: Mutex::new(crate::FastMap::default()),
        }
    }

    /// Counts a request of `key`; `None` when limiting is disabled.
    pub fn check(&self, key: &str) -> Option<Decision> {
        if self.limit.max_requests == 0 {
            return None;
        }
        let window_ms = (self.limit.window.as_millis() as i64).max(1);
        let now = now_ms();
        let index = now.div_euclid(window_ms);
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= SWEEP_AT {
            windows.retain(|_, (i, _)| *i == index);
        }
        // A known key (the usual case) is found without allocating its copy.
        let entry = match windows.get_mut(key) {
            Some(entry) => entry,
            None => windows.entry(key.to_string()).or_insert((index, 0)),
        };
        if entry.0 != index {
            *entry = (index, 0);
        }
        let allowed = entry.1 < self.limit.max_requests;
        if allowed {
            entry.1 += 1;
        }
        let reset_ms = (index + 1) * window_ms;
        Some(Decision {
            allowed,
            limit: self.limit.max_requests,
            remaining: self.limit.max_requests - entry.1,
            reset_unix: (reset_ms + 999).div_euclid(1000) as u64,
            reset_after: ((reset_ms - now + 999) / 1000).max(1) as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_per_key_and_refuses_over_the_limit() {
        let limiter = RateLimiter::new(RateLimit {
            max_requests: 2,
            window: Duration::from_secs(3600),
        });
        let first = limiter.check("a").unwrap();
        assert!(first.allowed);
        assert_eq!(first.remaining, 1);
        assert!(limiter.check("a").unwrap().allowed);
        let refused = limiter.check("a").unwrap();
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert!(refused.headers().iter().any(|(n, _)| *n == "retry-after"));
        assert!(limiter.check("b").unwrap().allowed, "keys are independent");
    }

    #[test]
    fn applied_headers_are_the_listed_ones() {
        let limiter = RateLimiter::new(RateLimit {
            max_requests: 1,
            window: Duration::from_secs(60),
        });
        for decision in [limiter.check("a").unwrap(), limiter.check("a").unwrap()] {
            let mut applied = HeaderMap::new();
            decision.apply(&mut applied);
            let listed = decision.headers();
            assert_eq!(applied.len(), listed.len());
            for (name, value) in listed {
                assert_eq!(applied[name], value.as_str(), "{name}");
            }
        }
    }

    #[test]
    fn zero_disables() {
        let limiter = RateLimiter::new(RateLimit {
            max_requests: 0,
            window: Duration::from_secs(1),
        });
        assert!(limiter.check("a").is_none());
    }
}
