//! Pacing of one endpoint's deliveries: a token bucket, slowed down further
//! for a while after the endpoint says it is overloaded.
//!
//! A webhook limited to `N` deliveries a second gets a bucket of `N` tokens
//! refilled at `N` a second, so a burst is at most `N` and the long-run rate
//! at most `N`. An answer of 429, 502, 503 or 504 (Standard Webhooks'
//! throttling guidance) halves the rate for [`SLOWDOWN`], down to
//! [`MIN_RATE_FRACTION`] of it; the full rate returns once a slowdown ends
//! without another such answer.
//!
//! Pure arithmetic: the caller passes the time as a [`Duration`] since any
//! fixed origin (a monotonic clock), so it is tested without waiting.

use std::time::Duration;

/// How long one overload answer slows the endpoint down.
pub const SLOWDOWN: Duration = Duration::from_secs(30);
/// The slowest a slowed endpoint gets, as a fraction of its limit.
pub const MIN_RATE_FRACTION: f64 = 1.0 / 16.0;
/// The lowest rate ever used, in deliveries a second, so that a limit of 1
/// slowed down still makes progress.
const MIN_RATE: f64 = 0.1;

/// Whether an answer with this status asks the sender to slow down.
pub fn is_overload_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// One endpoint's token bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    limit: u32,
    tokens: f64,
    updated: Duration,
    /// Current rate as a fraction of `limit` (1 when not slowed down).
    fraction: f64,
    /// End of the current slowdown.
    slowed_until: Option<Duration>,
}

impl TokenBucket {
    /// A full bucket for `per_second` deliveries a second (at least 1).
    pub fn new(per_second: u32, now: Duration) -> TokenBucket {
        let limit = per_second.max(1);
        TokenBucket {
            limit,
            tokens: f64::from(limit),
            updated: now,
            fraction: 1.0,
            slowed_until: None,
        }
    }

    /// The limit, in deliveries a second.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Changes the limit, keeping the tokens (capped at the new burst).
    pub fn set_limit(&mut self, per_second: u32, now: Duration) {
        self.refill(now);
        self.limit = per_second.max(1);
        self.tokens = self.tokens.min(f64::from(self.limit));
    }

    /// The current rate, in deliveries a second.
    pub fn rate(&self) -> f64 {
        (f64::from(self.limit) * self.fraction).max(MIN_RATE)
    }

    fn refill(&mut self, now: Duration) {
        if let Some(until) = self.slowed_until
            && now >= until
        {
            // Tokens earned before the slowdown ended are earned at the slow
            // rate; the rest at the full one.
            self.add_tokens(until);
            self.fraction = 1.0;
            self.slowed_until = None;
        }
        self.add_tokens(now);
    }

    fn add_tokens(&mut self, now: Duration) {
        if now > self.updated {
            let earned = (now - self.updated).as_secs_f64() * self.rate();
            self.tokens = (self.tokens + earned).min(f64::from(self.limit));
            self.updated = now;
        }
    }

    /// Takes a token for one delivery at `now`, or says how long until one is there.
    pub fn try_take(&mut self, now: Duration) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let missing = 1.0 - self.tokens;
        let wait = Duration::from_secs_f64(missing / self.rate());
        // Never zero, so the caller's timer moves time forward.
        Err(wait.max(Duration::from_millis(1)))
    }

    /// The endpoint answered an overload status at `now`: halve the rate
    /// (down to [`MIN_RATE_FRACTION`]) until [`SLOWDOWN`] from now.
    pub fn slow_down(&mut self, now: Duration) {
        self.refill(now);
        self.fraction = (self.fraction / 2.0).max(MIN_RATE_FRACTION);
        self.slowed_until = Some(now + SLOWDOWN);
        // A slowed endpoint gets no burst: what it had saved is dropped.
        self.tokens = self.tokens.min(1.0);
    }

    /// Whether the bucket is full and not slowed down at `now`: forgetting it
    /// then changes nothing (a new one starts full).
    pub fn is_idle(&self, now: Duration) -> bool {
        let mut copy = self.clone();
        copy.refill(now);
        copy.slowed_until.is_none() && copy.tokens >= f64::from(copy.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// How many deliveries a bucket lets through in `span`, trying every ms.
    fn sent_in(bucket: &mut TokenBucket, from: Duration, span: Duration) -> u32 {
        let mut sent = 0;
        let mut t = from;
        while t < from + span {
            while bucket.try_take(t).is_ok() {
                sent += 1;
            }
            t += ms(1);
        }
        sent
    }

    #[test]
    fn a_burst_is_at_most_the_limit_then_the_rate_holds() {
        let mut bucket = TokenBucket::new(50, ms(0));
        let mut burst = 0;
        while bucket.try_take(ms(0)).is_ok() {
            burst += 1;
        }
        assert_eq!(burst, 50);
        let wait = bucket.try_take(ms(0)).unwrap_err();
        assert_eq!(wait, ms(20));
        // Twenty seconds later (the burst already spent): 50 a second.
        let sent = sent_in(&mut bucket, ms(0), Duration::from_secs(20));
        assert!((999..=1001).contains(&sent), "{sent}");
    }

    #[test]
    fn an_overload_answer_halves_the_rate_for_a_while() {
        let mut bucket = TokenBucket::new(10, ms(0));
        while bucket.try_take(ms(0)).is_ok() {}
        bucket.slow_down(ms(0));
        assert_eq!(bucket.rate(), 5.0);
        bucket.slow_down(ms(0));
        assert_eq!(bucket.rate(), 2.5);
        for _ in 0..10 {
            bucket.slow_down(ms(0));
        }
        assert_eq!(bucket.rate(), 10.0 * MIN_RATE_FRACTION);
        // After the slowdown, the full rate again.
        let after = SLOWDOWN + ms(1);
        bucket.try_take(after).ok();
        assert_eq!(bucket.rate(), 10.0);
        assert!(!bucket.is_idle(after));
        assert!(bucket.is_idle(after + Duration::from_secs(2)));
    }

    #[test]
    fn slowed_down_it_still_makes_progress() {
        let mut bucket = TokenBucket::new(1, ms(0));
        for _ in 0..10 {
            bucket.slow_down(ms(0));
        }
        assert!(bucket.rate() >= MIN_RATE);
        let sent = sent_in(&mut bucket, ms(0), Duration::from_secs(25));
        assert!(sent >= 2, "{sent}");
    }

    #[test]
    fn a_lower_limit_caps_the_saved_burst() {
        let mut bucket = TokenBucket::new(100, ms(0));
        bucket.set_limit(3, ms(0));
        let mut burst = 0;
        while bucket.try_take(ms(0)).is_ok() {
            burst += 1;
        }
        assert_eq!(burst, 3);
        assert!(is_overload_status(503) && !is_overload_status(500));
    }
}
