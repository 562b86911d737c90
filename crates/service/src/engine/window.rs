//! The bounded window of deliveries held in memory.
//!
//! A delivery occupies a slot from the moment it is claimed (at ingest or by
//! the scheduler) until its attempt is recorded in the store. With a global
//! and a per-webhook cap, a million pending deliveries cost disk, not memory,
//! and one webhook's backlog cannot take the slots of the others: when a
//! webhook's share is full, its new deliveries stay unclaimed in the store
//! and the scheduler brings them in as slots free up.
//!
//! A rate-limited webhook gets a smaller share (see [`Window::set_shares`]):
//! a paced backlog waits in the store, not in memory, so that it does not
//! hold slots the other webhooks could use.

use std::sync::Mutex;

use webhook_domain::ids::WebhookId;

/// Seconds of a rate-limited webhook's sending held in memory at most.
pub const PACED_SHARE_SECS: usize = 10;
/// The smallest share of a rate-limited webhook.
pub const MIN_PACED_SHARE: usize = 16;

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_webhook: crate::FastMap<WebhookId, usize>,
    /// Shares other than the default (rate-limited webhooks).
    shares: crate::FastMap<WebhookId, usize>,
}

impl Counts {
    fn share_of(&self, webhook: &WebhookId, default: usize) -> usize {
        // Most services have no rate-limited webhook: no lookup then.
        if self.shares.is_empty() {
            return default;
        }
        self.shares.get(webhook).copied().unwrap_or(default)
    }
}

/// Slot accounting shared by ingest, the scheduler and the recorder.
#[derive(Debug)]
pub struct Window {
    capacity: usize,
    per_webhook: usize,
    counts: Mutex<Counts>,
}

impl Window {
    /// A window of `capacity` slots, at most `per_webhook` of them for one webhook.
    pub fn new(capacity: usize, per_webhook: usize) -> Self {
        Window {
            capacity,
            per_webhook,
            counts: Mutex::new(Counts::default()),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts stay consistent even if a holder panicked mid-way (plain integer updates).
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for `webhook` if both caps allow it.
    pub fn try_reserve(&self, webhook: &WebhookId) -> bool {
        let mut c = self.counts();
        if c.total >= self.capacity {
            return false;
        }
        let n = c.per_webhook.get(webhook).copied().unwrap_or(0);
        if n >= c.share_of(webhook, self.per_webhook) {
            return false;
        }
        c.total += 1;
        c.per_webhook.insert(webhook.clone(), n + 1);
        true
    }

    /// Takes a slot unconditionally (work already claimed from the store).
    pub fn force_reserve(&self, webhook: &WebhookId) {
        let mut c = self.counts();
        c.total += 1;
        *c.per_webhook.entry(webhook.clone()).or_default() += 1;
    }

    /// Frees a slot of `webhook`. Answers `true` when the window should be
    /// refilled from the store now: the webhook's share, or the whole window,
    /// just fell below half. Waiting for the scheduler's next tick instead
    /// capped one webhook at its share per tick (10,000 per 250 ms), and a
    /// drained share sat idle until then.
    pub fn release(&self, webhook: &WebhookId) -> bool {
        let mut c = self.counts();
        let total_crossed = c.total == self.capacity.div_ceil(2);
        c.total = c.total.saturating_sub(1);
        let mut share_crossed = false;
        let share = c.share_of(webhook, self.per_webhook);
        if let Some(n) = c.per_webhook.get_mut(webhook) {
            share_crossed = *n == share.div_ceil(2);
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_webhook.remove(webhook);
            }
        }
        total_crossed || share_crossed
    }

    /// Free slots in all.
    pub fn available(&self) -> usize {
        self.capacity.saturating_sub(self.counts().total)
    }

    /// Slots in use.
    pub fn used(&self) -> usize {
        self.counts().total
    }

    /// Webhooks whose share is full (the scheduler skips their due work).
    pub fn saturated(&self) -> Vec<WebhookId> {
        let c = self.counts();
        c.per_webhook
            .iter()
            .filter(|(id, n)| **n >= c.share_of(id, self.per_webhook))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Gives these webhooks their own (smaller) shares, replacing the
    /// previous ones; the others keep the default share. A share is capped
    /// at the default.
    pub fn set_shares(&self, shares: impl IntoIterator<Item = (WebhookId, usize)>) {
        let shares = shares
            .into_iter()
            .map(|(id, n)| (id, n.clamp(1, self.per_webhook)))
            .collect();
        self.counts().shares = shares;
    }

    /// The share of a webhook limited to `per_second` deliveries a second:
    /// [`PACED_SHARE_SECS`] of its sending, at least [`MIN_PACED_SHARE`].
    pub fn paced_share(per_second: u32) -> usize {
        (per_second as usize)
            .saturating_mul(PACED_SHARE_SECS)
            .max(MIN_PACED_SHARE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_global_and_per_webhook() {
        let w = Window::new(3, 2);
        let a = WebhookId::parse("wh_a").unwrap();
        let b = WebhookId::parse("wh_b").unwrap();
        assert!(w.try_reserve(&a));
        assert!(w.try_reserve(&a));
        assert!(!w.try_reserve(&a), "per-webhook cap");
        assert_eq!(w.saturated(), vec![a.clone()]);
        assert!(w.try_reserve(&b));
        assert!(!w.try_reserve(&b), "global cap");
        assert!(!w.release(&a), "a's share stays at or above half");
        assert_eq!(w.available(), 1);
        assert!(w.saturated().is_empty());
        assert!(w.try_reserve(&b));
        assert_eq!(w.used(), 3);
    }

    #[test]
    fn a_rate_limited_webhook_has_its_own_smaller_share() {
        let w = Window::new(100, 50);
        let (paced, other) = (
            WebhookId::parse("wh_paced").unwrap(),
            WebhookId::parse("wh_other").unwrap(),
        );
        w.set_shares([(paced.clone(), 4)]);
        for _ in 0..4 {
            assert!(w.try_reserve(&paced));
        }
        assert!(!w.try_reserve(&paced), "its own share");
        assert_eq!(w.saturated(), vec![paced.clone()]);
        for _ in 0..50 {
            assert!(w.try_reserve(&other), "the default share");
        }
        assert!(!w.release(&paced), "4 -> 3 of 4");
        assert!(!w.release(&paced), "3 -> 2: half, not below");
        assert!(w.release(&paced), "2 -> 1: below half of its share");
        // Lifted: the default share again.
        w.set_shares([]);
        assert!(w.try_reserve(&paced));
        assert_eq!(Window::paced_share(50), 500);
        assert_eq!(Window::paced_share(1), MIN_PACED_SHARE);
    }

    #[test]
    fn release_asks_for_a_refill_when_a_share_or_the_window_falls_below_half() {
        let w = Window::new(100, 4);
        let a = WebhookId::parse("wh_a").unwrap();
        for _ in 0..4 {
            assert!(w.try_reserve(&a));
        }
        assert!(!w.release(&a), "4 -> 3 of a share of 4");
        assert!(!w.release(&a), "3 -> 2: half, not below");
        assert!(w.release(&a), "2 -> 1: below half");
        assert!(!w.release(&a), "already below half");
        let small = Window::new(4, 10);
        let b = WebhookId::parse("wh_b").unwrap();
        for _ in 0..4 {
            assert!(small.try_reserve(&b));
        }
        assert!(!small.release(&b), "4 -> 3 of 4 in all");
        assert!(!small.release(&b), "3 -> 2 of 4 in all");
        assert!(small.release(&b), "2 -> 1 of 4 in all");
    }
}
