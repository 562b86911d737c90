//! Latency histograms with fixed, log-spaced buckets.
//!
//! The store keeps, per webhook and hour, how many successful deliveries
//! took how long, as counts per bucket: a percentile over any number of
//! hours is then read from a few hundred counters instead of sorting every
//! duration of the window.
//!
//! Precision: durations below [`EXACT_BELOW`] ms have a bucket each and are
//! exact. Above, every power of two is split into [`SUB_BUCKETS`] equal
//! buckets, so a bucket is at most 1/16 of its values wide (6.25 %). A
//! percentile is reported as the largest duration its bucket holds: the
//! true value is at most that, and more than 15/16 of it.

use std::collections::BTreeMap;

/// Durations below this (ms) are counted exactly.
pub const EXACT_BELOW: u32 = 32;
/// Buckets per power of two above [`EXACT_BELOW`].
pub const SUB_BUCKETS: u32 = 16;
/// `log2(EXACT_BELOW)`.
const EXACT_BITS: u32 = 5;
/// `log2(SUB_BUCKETS)`.
const SUB_BITS: u32 = 4;

/// The bucket of a duration (ms); buckets are ordered like durations.
pub fn bucket_of(duration_ms: u32) -> u16 {
    if duration_ms < EXACT_BELOW {
        return duration_ms as u16;
    }
    // `duration_ms >= 32`, so its highest set bit is at least 5.
    let exponent = 31 - duration_ms.leading_zeros();
    let sub = (duration_ms >> (exponent - SUB_BITS)) & (SUB_BUCKETS - 1);
    (EXACT_BELOW + (exponent - EXACT_BITS) * SUB_BUCKETS + sub) as u16
}

/// The largest duration (ms) that falls into `bucket`.
pub fn bucket_max(bucket: u16) -> u32 {
    let bucket = u32::from(bucket);
    if bucket < EXACT_BELOW {
        return bucket;
    }
    let above = bucket - EXACT_BELOW;
    let exponent = EXACT_BITS + above / SUB_BUCKETS;
    if exponent > 31 {
        return u32::MAX;
    }
    let sub = above % SUB_BUCKETS;
    let width = 1u64 << (exponent - SUB_BITS);
    let low = u64::from(SUB_BUCKETS + sub) * width;
    u32::try_from(low + width - 1).unwrap_or(u32::MAX)
}

/// Counts of durations per bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: BTreeMap<u16, u64>,
}

impl LatencyHistogram {
    /// Counts one duration.
    pub fn record(&mut self, duration_ms: u32) {
        self.add(bucket_of(duration_ms), 1);
    }

    /// Adds `n` durations of `bucket` (a row of a stored histogram).
    pub fn add(&mut self, bucket: u16, n: u64) {
        if n > 0 {
            *self.counts.entry(bucket).or_default() += n;
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (bucket, n) in &other.counts {
            self.add(*bucket, *n);
        }
    }

    /// What `self` counts beyond `earlier` (a count it lacks is left out,
    /// not negative): the durations of a span, from two cumulative reads.
    pub fn minus(&self, earlier: &LatencyHistogram) -> LatencyHistogram {
        let mut rest = LatencyHistogram::default();
        for (bucket, n) in &self.counts {
            let before = earlier.counts.get(bucket).copied().unwrap_or(0);
            rest.add(*bucket, n.saturating_sub(before));
        }
        rest
    }

    /// Durations counted.
    pub fn len(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `q` quantile (0 < q <= 1) by nearest rank, as the largest
    /// duration of its bucket; `None` when nothing was counted.
    pub fn percentile(&self, q: f64) -> Option<u32> {
        let total = self.len();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64 * q).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (bucket, n) in &self.counts {
            seen += n;
            if seen >= rank {
                return Some(bucket_max(*bucket));
            }
        }
        self.counts.keys().next_back().map(|b| bucket_max(*b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_durations_are_exact() {
        for d in 0..EXACT_BELOW {
            assert_eq!(bucket_max(bucket_of(d)), d);
        }
    }

    #[test]
    fn every_duration_lies_in_a_bucket_at_most_a_sixteenth_wide() {
        let mut previous_bucket = 0;
        for d in (0..200_000u32).chain([u32::MAX / 2, u32::MAX - 1, u32::MAX]) {
            let b = bucket_of(d);
            let max = bucket_max(b);
            assert!(max >= d, "{d} above its bucket's max {max}");
            assert!(
                u64::from(max - d) * 16 <= u64::from(max),
                "{d} reported as {max}"
            );
            assert!(b >= previous_bucket, "buckets ordered like durations");
            previous_bucket = b;
        }
        assert_eq!(bucket_max(bucket_of(u32::MAX)), u32::MAX);
        assert_eq!(bucket_max(bucket_of(99)), 99);
        assert_eq!(bucket_max(bucket_of(100)), 103);
    }

    #[test]
    fn percentiles_read_by_nearest_rank() {
        let mut h = LatencyHistogram::default();
        assert_eq!(h.percentile(0.5), None);
        for d in [12, 12, 99] {
            h.record(d);
        }
        assert_eq!(h.percentile(0.50), Some(12));
        assert_eq!(h.percentile(0.95), Some(99));
        let mut wide = LatencyHistogram::default();
        for d in 1..=1000 {
            wide.record(d);
        }
        let p50 = wide.percentile(0.50).unwrap();
        assert!((500..=500 + 500 / 16).contains(&p50), "{p50}");
        let p95 = wide.percentile(0.95).unwrap();
        assert!((950..=950 + 950 / 16).contains(&p95), "{p95}");
    }
}
