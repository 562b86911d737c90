//! The kept aggregate of finished deliveries, shared by both backends.
//!
//! Table `delivery_hourly` holds, per webhook and hour of the deliveries'
//! creation, one counter per *slot*: a latency bucket of the delivered ones
//! (see [`webhook_domain::latency`]), the failed ones, and the delivered ones
//! whose duration is unknown. The change that makes a delivery final adds
//! one to its slot in the same transaction; the one that makes it pending
//! again takes it away. Statistics then read a few hundred counters per
//! webhook and day instead of every delivery of the window.
//!
//! The embedded store also counts its waiting deliveries here (slots
//! [`PENDING`] and [`RETRYING`], from its migration 8): its single writer
//! adds each ingest transaction's new deliveries in one change per webhook
//! and hour, which costs less than the index entry every delivery wrote and
//! removed before. PostgreSQL keeps counting them live through an index:
//! there, concurrent ingest transactions would all wait on the same
//! counter row until each one commits.

use std::collections::BTreeMap;

use webhook_domain::delivery::DeliveryStatus;
use webhook_domain::latency::bucket_of;

use super::DeliveryStats;

/// One hour in ms: the aggregate's granularity.
pub(crate) const HOUR_MS: i64 = 3_600_000;
/// The slot of failed deliveries.
pub(crate) const FAILED: i64 = -1;
/// The slot of delivered deliveries without a recorded duration.
pub(crate) const DELIVERED_UNTIMED: i64 = -2;
/// The slot of pending deliveries (embedded store only).
pub(crate) const PENDING: i64 = -3;
/// The slot of retrying deliveries (embedded store only).
pub(crate) const RETRYING: i64 = -4;

/// The hour (since the epoch) of a creation time.
pub(crate) fn hour_of(created_at: i64) -> i64 {
    created_at.div_euclid(HOUR_MS)
}

/// The first whole hour at or after `at`.
pub(crate) fn hour_at_or_after(at: i64) -> i64 {
    hour_of(at) + i64::from(at.rem_euclid(HOUR_MS) != 0)
}

/// The slot a delivery counts in, if its status is final.
pub(crate) fn slot(status: DeliveryStatus, duration_ms: Option<u32>) -> Option<i64> {
    match status {
        DeliveryStatus::Delivered => {
            Some(duration_ms.map_or(DELIVERED_UNTIMED, |d| i64::from(bucket_of(d))))
        }
        DeliveryStatus::Failed => Some(FAILED),
        DeliveryStatus::Pending | DeliveryStatus::Retrying => None,
    }
}

/// The slot a delivery counts in whatever its status, where waiting
/// deliveries are counted too (the embedded store).
pub(crate) fn any_slot(status: DeliveryStatus, duration_ms: Option<u32>) -> i64 {
    match status {
        DeliveryStatus::Pending => PENDING,
        DeliveryStatus::Retrying => RETRYING,
        DeliveryStatus::Delivered => {
            duration_ms.map_or(DELIVERED_UNTIMED, |d| i64::from(bucket_of(d)))
        }
        DeliveryStatus::Failed => FAILED,
    }
}

/// Adds `n` deliveries of a stored slot to `stats`.
pub(crate) fn add_slot(stats: &mut DeliveryStats, slot: i64, n: i64) {
    let n = u64::try_from(n).unwrap_or(0);
    match slot {
        FAILED => stats.failed += n,
        DELIVERED_UNTIMED => stats.delivered += n,
        PENDING => stats.pending += n,
        RETRYING => stats.retrying += n,
        bucket => {
            stats.delivered += n;
            // A slot this release does not know is left out of the latency.
            if let Ok(bucket) = u16::try_from(bucket) {
                stats.latency.add(bucket, n);
            }
        }
    }
}

/// Consecutive spans of whole hours, the buckets of a chart: which one an
/// hour falls in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spans {
    /// The first hour of the first span (hours since the epoch).
    pub(crate) first_hour: i64,
    /// Hours per span, at least one.
    bucket_hours: i64,
    /// How many spans.
    pub(crate) buckets: u32,
}

impl Spans {
    /// `buckets` spans of `bucket_hours` (at least one) from `first_hour`.
    pub(crate) fn new(first_hour: i64, bucket_hours: u32, buckets: u32) -> Self {
        Spans {
            first_hour,
            bucket_hours: i64::from(bucket_hours.max(1)),
            buckets,
        }
    }

    /// The hour just after the last span.
    pub(crate) fn end_hour(&self) -> i64 {
        self.first_hour + self.bucket_hours * i64::from(self.buckets)
    }

    /// The start and end of all spans in unix ms.
    pub(crate) fn range_ms(&self) -> (i64, i64) {
        (self.first_hour * HOUR_MS, self.end_hour() * HOUR_MS)
    }

    /// The span `hour` falls in, if any.
    pub(crate) fn index(&self, hour: i64) -> Option<usize> {
        if hour < self.first_hour || hour >= self.end_hour() {
            return None;
        }
        usize::try_from((hour - self.first_hour) / self.bucket_hours).ok()
    }

    /// The entry of `buckets` (one per span) that `hour` falls in, if any.
    pub(crate) fn of<'a, T>(&self, buckets: &'a mut [T], hour: i64) -> Option<&'a mut T> {
        self.index(hour).and_then(|i| buckets.get_mut(i))
    }
}

/// What `wider` (created since an earlier time) counts beyond `narrower`
/// (since a later one): the span between the two. A delivery created
/// between the two reads can make a count negative, so it is clamped at zero.
pub(crate) fn difference(wider: &DeliveryStats, narrower: &DeliveryStats) -> DeliveryStats {
    DeliveryStats {
        pending: wider.pending.saturating_sub(narrower.pending),
        retrying: wider.retrying.saturating_sub(narrower.retrying),
        delivered: wider.delivered.saturating_sub(narrower.delivered),
        failed: wider.failed.saturating_sub(narrower.failed),
        latency: wider.latency.minus(&narrower.latency),
    }
}

/// Changes to the aggregate gathered over one transaction, one per
/// (webhook, hour, slot), in key order: both backends write them sorted,
/// so two PostgreSQL instances lock the rows in the same order and never
/// deadlock.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Per webhook, the changes by (hour, slot): looked up by `&str`, so
    /// counting a delivery of a webhook already present allocates nothing.
    changes: BTreeMap<String, BTreeMap<(i64, i64), i64>>,
}

impl Tally {
    /// Counts a delivery of `webhook` created at `created_at` in `slot`
    /// (`delta` is 1 when it entered the slot, -1 when it left it).
    pub(crate) fn count(&mut self, webhook: &str, created_at: i64, slot: i64, delta: i64) {
        let key = (hour_of(created_at), slot);
        match self.changes.get_mut(webhook) {
            Some(hours) => *hours.entry(key).or_default() += delta,
            None => {
                self.changes
                    .insert(webhook.to_string(), BTreeMap::from([(key, delta)]));
            }
        }
    }

    /// The non-zero changes, sorted by (webhook, hour, slot).
    pub(crate) fn changes(&self) -> impl Iterator<Item = (&str, i64, i64, i64)> {
        self.changes.iter().flat_map(|(webhook, hours)| {
            hours
                .iter()
                .filter(|(_, n)| **n != 0)
                .map(|((hour, slot), n)| (webhook.as_str(), *hour, *slot, *n))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_round_the_right_way() {
        assert_eq!(hour_of(0), 0);
        assert_eq!(hour_of(HOUR_MS - 1), 0);
        assert_eq!(hour_of(HOUR_MS), 1);
        assert_eq!(hour_at_or_after(0), 0);
        assert_eq!(hour_at_or_after(1), 1);
        assert_eq!(hour_at_or_after(HOUR_MS), 1);
        assert_eq!(hour_at_or_after(-5), 0);
    }

    #[test]
    fn spans_place_hours_in_their_bucket_and_nothing_outside() {
        let spans = Spans::new(100, 6, 4);
        assert_eq!(spans.end_hour(), 124);
        assert_eq!(spans.index(99), None);
        assert_eq!(spans.index(100), Some(0));
        assert_eq!(spans.index(105), Some(0));
        assert_eq!(spans.index(106), Some(1));
        assert_eq!(spans.index(123), Some(3));
        assert_eq!(spans.index(124), None);
        assert_eq!(spans.range_ms(), (100 * HOUR_MS, 124 * HOUR_MS));
    }

    #[test]
    fn a_tally_nets_out_and_sorts_its_changes() {
        let mut tally = Tally::default();
        tally.count("wb", 10, FAILED, 1);
        tally.count("wa", HOUR_MS + 5, 3, 1);
        tally.count("wa", 20, 3, 1);
        tally.count("wb", 30, FAILED, -1);
        let changes: Vec<_> = tally.changes().collect();
        assert_eq!(changes, vec![("wa", 0, 3, 1), ("wa", 1, 3, 1)]);
    }
}
