//! Fixed-window rate limits per key (a user on `/api/v1`, a caller on
//! `/internal`), and the limit on failed authentications per address.
//!
//! Windows are fixed and aligned to the epoch, as GitHub's API does: a
//! client may send up to twice the limit across a window's end (the
//! headers say so truthfully: `X-RateLimit-Reset` is the window's end).
//! Limits are per instance: each process counts its own requests.

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

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

/// The counts of one limiter.
#[derive(Debug, Default)]
struct Windows {
    /// Per key: the window it was counted in, and its count there.
    counts: crate::FastMap<String, (i64, u32)>,
    /// The window the map was last swept in. Sweeping keeps the keys of
    /// the current window, so a second sweep in the same window frees
    /// nothing: with more active keys than [`SWEEP_AT`], every request
    /// scanned the whole map under the lock.
    swept_in: i64,
    /// Sweeps made (for the tests).
    sweeps: u64,
}

/// A fixed-window counter per key.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    windows: Mutex<Windows>,
}

impl RateLimiter {
    /// A limiter enforcing `limit`.
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            windows: Mutex::new(Windows::default()),
        }
    }

    /// Counts a request of `key`; `None` when limiting is disabled.
    pub fn check(&self, key: &str) -> Option<Decision> {
        self.decide(key, true)
    }

    /// The decision a request of `key` would get now, without counting it.
    pub fn peek(&self, key: &str) -> Option<Decision> {
        self.decide(key, false)
    }

    fn decide(&self, key: &str, count: bool) -> Option<Decision> {
        if self.limit.max_requests == 0 {
            return None;
        }
        let window_ms = (self.limit.window.as_millis() as i64).max(1);
        let now = now_ms();
        let index = now.div_euclid(window_ms);
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.counts.len() >= SWEEP_AT && windows.swept_in != index {
            windows.counts.retain(|_, (i, _)| *i == index);
            windows.swept_in = index;
            windows.sweeps += 1;
        }
        let used = if count {
            // A known key (the usual case) is found without allocating its copy.
            let entry = match windows.counts.get_mut(key) {
                Some(entry) => entry,
                None => windows.counts.entry(key.to_string()).or_insert((index, 0)),
            };
            if entry.0 != index {
                *entry = (index, 0);
            }
            if entry.1 < self.limit.max_requests {
                entry.1 += 1;
                // Allowed: `used` includes this request.
                Ok(entry.1)
            } else {
                Err(entry.1)
            }
        } else {
            let used = match windows.counts.get(key) {
                Some((i, n)) if *i == index => *n,
                _ => 0,
            };
            if used < self.limit.max_requests {
                Ok(used)
            } else {
                Err(used)
            }
        };
        let (allowed, used) = match used {
            Ok(n) => (true, n),
            Err(n) => (false, n),
        };
        let reset_ms = (index + 1) * window_ms;
        Some(Decision {
            allowed,
            limit: self.limit.max_requests,
            remaining: self.limit.max_requests.saturating_sub(used),
            reset_unix: (reset_ms + 999).div_euclid(1000) as u64,
            reset_after: ((reset_ms - now + 999) / 1000).max(1) as u64,
        })
    }
}

/// The key a calling address is counted under: the address itself, or for
/// IPv6 its /64 (one subscriber's network: anyone holding one has 2^64
/// addresses to rotate through).
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// Failed authentications per calling address: once an address has used
/// them up, its requests are refused before any credential is checked,
/// until the window ends, so that a secret or token cannot be guessed at
/// line rate (a right guess would be refused as well).
#[derive(Debug)]
pub struct FailureLimiter {
    failures: RateLimiter,
    /// The latest window end (unix ms) by which some address is refused;
    /// 0 when none is. Read on every authenticated request, so that the
    /// usual case (nobody refused) costs one atomic load, no lock.
    refusing_until: AtomicI64,
}

impl FailureLimiter {
    /// A limiter allowing `limit.max_requests` failures per window (0 disables it).
    pub fn new(limit: RateLimit) -> Self {
        FailureLimiter {
            failures: RateLimiter::new(limit),
            refusing_until: AtomicI64::new(0),
        }
    }

    /// The refusal of the address whose key `key` makes, if it has used up
    /// its failures in this window (`Retry-After` says until when).
    pub fn refused(&self, key: impl FnOnce() -> String) -> Option<Decision> {
        let until = self.refusing_until.load(Relaxed);
        if until == 0 {
            return None;
        }
        if until <= now_ms() {
            // Every refusal ended: back to the lock-free check.
            let _ = self
                .refusing_until
                .compare_exchange(until, 0, Relaxed, Relaxed);
            return None;
        }
        self.failures.peek(&key()).filter(|d| !d.allowed)
    }

    /// Counts a failed authentication from the address keyed `key`.
    pub fn failed(&self, key: &str) {
        if let Some(d) = self.failures.check(key)
            && d.remaining == 0
        {
            let until = i64::try_from(d.reset_unix.saturating_mul(1000)).unwrap_or(i64::MAX);
            self.refusing_until.fetch_max(until, Relaxed);
        }
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
    fn a_full_map_is_swept_once_per_window() {
        let limiter = RateLimiter::new(RateLimit {
            max_requests: 5,
            window: Duration::from_secs(3600),
        });
        for i in 0..SWEEP_AT + 100 {
            limiter.check(&format!("key-{i}"));
        }
        for _ in 0..100 {
            limiter.check("key-0");
        }
        let windows = limiter.windows.lock().unwrap();
        assert!(windows.sweeps <= 2, "swept {} times", windows.sweeps);
        assert_eq!(
            windows.counts.len(),
            SWEEP_AT + 100,
            "current keys are kept"
        );
    }

    #[test]
    fn peeking_does_not_count() {
        let limiter = RateLimiter::new(RateLimit {
            max_requests: 1,
            window: Duration::from_secs(3600),
        });
        assert!(limiter.peek("a").unwrap().allowed);
        assert!(limiter.peek("a").unwrap().allowed);
        assert_eq!(limiter.check("a").unwrap().remaining, 0);
        assert!(!limiter.peek("a").unwrap().allowed);
    }

    #[test]
    fn an_address_is_refused_once_its_failures_are_used_up() {
        let limiter = FailureLimiter::new(RateLimit {
            max_requests: 3,
            window: Duration::from_secs(3600),
        });
        let key = || "192.0.2.1".to_string();
        for _ in 0..3 {
            assert!(limiter.refused(key).is_none());
            limiter.failed("192.0.2.1");
        }
        let refused = limiter.refused(key).expect("refused");
        assert!(refused.reset_after >= 1);
        assert!(limiter.refused(|| "192.0.2.2".to_string()).is_none());
    }

    #[test]
    fn ipv6_callers_are_counted_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7");
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
