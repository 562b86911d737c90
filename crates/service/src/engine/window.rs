//! The bounded window of deliveries held in memory.
//!
//! A delivery occupies a slot from the moment it is claimed (at ingest or by
//! the scheduler) until its attempt is recorded in the store. With a global
//! and a per-webhook cap, a million pending deliveries cost disk, not memory,
//! and one webhook's backlog cannot take the slots of the others: when a
//! webhook's share is full, its new deliveries stay unclaimed in the store
//! and the scheduler brings them in as slots free up.

use std::sync::Mutex;

use webhook_domain::ids::WebhookId;

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_webhook: crate::FastMap<WebhookId, usize>,
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
        if n >= self.per_webhook {
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
        if let Some(n) = c.per_webhook.get_mut(webhook) {
            share_crossed = *n == self.per_webhook.div_ceil(2);
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
        self.counts()
            .per_webhook
            .iter()
            .filter(|(_, n)| **n >= self.per_webhook)
            .map(|(id, _)| id.clone())
            .collect()
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
