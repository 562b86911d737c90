//! The failure tracking of webhooks, shared by every backend.
//!
//! Recording a batch of attempts folds them, per webhook, into a
//! [`HealthDelta`]; the backend reads each touched webhook's stored state and
//! [`HealthDelta::apply`] says what to write back and whether to disable it.
//! Keeping this pure means every backend disables webhooks by exactly the
//! same rules, and the rules are tested once.

use std::collections::BTreeMap;

use webhook_domain::delivery::DeliveryStatus;
use webhook_domain::ids::WebhookId;

use super::{AttemptReport, FailurePolicy};

/// What one batch of attempts says about one webhook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthDelta {
    /// A delivery succeeded: the stored failure run is over.
    pub reset: bool,
    /// Start of the failures seen after the last success in the batch (unix ms).
    pub failing_since: Option<i64>,
    /// Deliveries that exhausted their schedule after the last success in the batch.
    pub exhausted: u32,
    /// The receiver said it is gone (410): disable with this reason.
    pub gone: Option<String>,
}

/// A webhook's failure state as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredHealth {
    /// Whether it currently receives deliveries.
    pub is_active: bool,
    /// Start of the current run of failures (unix ms).
    pub failing_since: Option<i64>,
    /// Deliveries that exhausted their schedule in a row.
    pub consecutive_exhausted: i64,
}

/// What to write back for one webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthUpdate {
    /// New start of the failure run.
    pub failing_since: Option<i64>,
    /// New count of exhausted deliveries in a row.
    pub consecutive_exhausted: i64,
    /// Whether the two values above differ from the stored ones.
    pub changed: bool,
    /// Disable the webhook with this reason.
    pub disable: Option<String>,
}

/// Folds a batch of attempt reports per webhook, in report order; sorted by
/// webhook id so backends that lock rows take the locks in one order. Test
/// sends are left out: an owner probing a broken endpoint must not disable it.
pub fn fold<'a>(
    reports: impl IntoIterator<Item = &'a AttemptReport>,
) -> BTreeMap<WebhookId, HealthDelta> {
    let mut health: BTreeMap<WebhookId, HealthDelta> = BTreeMap::new();
    for report in reports.into_iter().filter(|r| !r.test_send) {
        let h = health.entry(report.webhook_id.clone()).or_default();
        match report.status {
            DeliveryStatus::Delivered => {
                // A success ends the run of failures, but a 410 seen earlier in the batch still disables.
                *h = HealthDelta {
                    reset: true,
                    gone: h.gone.take(),
                    ..HealthDelta::default()
                };
            }
            DeliveryStatus::Failed | DeliveryStatus::Retrying | DeliveryStatus::Pending => {
                h.failing_since.get_or_insert(report.attempt.started_at);
                if report.status == DeliveryStatus::Failed {
                    h.exhausted += 1;
                }
            }
        }
        if let Some(reason) = &report.disable_webhook {
            h.gone = Some(reason.clone());
        }
    }
    health
}

impl HealthDelta {
    /// Combines this batch's delta with the stored state under `policy` at `now` (unix ms).
    pub fn apply(&self, stored: &StoredHealth, policy: FailurePolicy, now: i64) -> HealthUpdate {
        let (since, exhausted) = if self.reset {
            (self.failing_since, i64::from(self.exhausted))
        } else {
            (
                stored.failing_since.or(self.failing_since),
                stored.consecutive_exhausted + i64::from(self.exhausted),
            )
        };
        let changed = since != stored.failing_since || exhausted != stored.consecutive_exhausted;
        let disable = if !stored.is_active {
            None
        } else if let Some(gone) = &self.gone {
            Some(gone.clone())
        } else if policy.exhausted_in_a_row > 0 && exhausted >= i64::from(policy.exhausted_in_a_row)
        {
            Some(format!(
                "{exhausted} deliveries in a row exhausted every retry"
            ))
        } else {
            since.filter(|s| now - s >= policy.failing_for_ms).map(|s| {
                format!(
                    "every delivery has failed since {}",
                    webhook_domain::timefmt::format_rfc3339_millis(s)
                )
            })
        };
        HealthUpdate {
            failing_since: since,
            consecutive_exhausted: exhausted,
            changed,
            disable,
        }
    }
}

#[cfg(test)]
mod tests {
    use webhook_domain::ids::DeliveryId;

    use super::*;
    use crate::store::AttemptRecord;

    fn report(webhook: &WebhookId, status: DeliveryStatus, at: i64) -> AttemptReport {
        AttemptReport {
            delivery_id: DeliveryId::generate(),
            webhook_id: webhook.clone(),
            claimed: crate::store::Claimed::new_delivery(at),
            attempt: AttemptRecord {
                attempt: 1,
                started_at: at,
                duration_ms: 1,
                request_headers: Vec::new(),
                status_code: Some(500),
                response_headers: Vec::new(),
                response_body: String::new(),
                error_kind: None,
                error_message: None,
            },
            status,
            next_attempt_at: None,
            disable_webhook: None,
            test_send: false,
        }
    }

    const POLICY: FailurePolicy = FailurePolicy {
        failing_for_ms: 1000,
        exhausted_in_a_row: 3,
    };
    const ACTIVE: StoredHealth = StoredHealth {
        is_active: true,
        failing_since: None,
        consecutive_exhausted: 0,
    };

    #[test]
    fn failures_accumulate_and_a_success_resets() {
        let wh = WebhookId::generate();
        let fold1 = fold(&[
            report(&wh, DeliveryStatus::Retrying, 10),
            report(&wh, DeliveryStatus::Failed, 20),
        ]);
        let update = fold1[&wh].apply(&ACTIVE, POLICY, 30);
        assert_eq!(update.failing_since, Some(10));
        assert_eq!(update.consecutive_exhausted, 1);
        assert!(update.changed);
        assert_eq!(update.disable, None);

        let stored = StoredHealth {
            is_active: true,
            failing_since: Some(5),
            consecutive_exhausted: 2,
        };
        let fold2 = fold(&[
            report(&wh, DeliveryStatus::Failed, 40),
            report(&wh, DeliveryStatus::Delivered, 50),
        ]);
        let update = fold2[&wh].apply(&stored, POLICY, 60);
        assert_eq!(
            (update.failing_since, update.consecutive_exhausted),
            (None, 0)
        );
        assert!(update.changed);
        assert_eq!(update.disable, None);
    }

    #[test]
    fn test_sends_say_nothing_about_health() {
        let wh = WebhookId::generate();
        let test = |status, disable: Option<&str>| AttemptReport {
            test_send: true,
            disable_webhook: disable.map(String::from),
            ..report(&wh, status, 10)
        };
        let folded = fold(&[
            test(DeliveryStatus::Failed, None),
            test(
                DeliveryStatus::Failed,
                Some("the endpoint answered 410 Gone"),
            ),
            test(DeliveryStatus::Delivered, None),
        ]);
        assert!(folded.is_empty(), "{folded:?}");
    }

    #[test]
    fn thresholds_and_gone_disable_only_active_webhooks() {
        let wh = WebhookId::generate();
        let stored = StoredHealth {
            is_active: true,
            failing_since: Some(0),
            consecutive_exhausted: 2,
        };
        let exhausted = fold(&[report(&wh, DeliveryStatus::Failed, 10)]);
        let update = exhausted[&wh].apply(&stored, POLICY, 20);
        assert_eq!(
            update.disable.as_deref(),
            Some("3 deliveries in a row exhausted every retry")
        );

        let long_failing = fold(&[report(&wh, DeliveryStatus::Retrying, 10)]);
        let update = long_failing[&wh].apply(&ACTIVE, POLICY, 5000);
        assert!(
            update
                .disable
                .unwrap()
                .starts_with("every delivery has failed since")
        );

        let mut gone = report(&wh, DeliveryStatus::Failed, 10);
        gone.disable_webhook = Some("410 Gone".into());
        let gone = fold(&[gone, report(&wh, DeliveryStatus::Delivered, 20)]);
        assert_eq!(
            gone[&wh].apply(&ACTIVE, POLICY, 30).disable.as_deref(),
            Some("410 Gone")
        );
        let inactive = StoredHealth {
            is_active: false,
            ..ACTIVE
        };
        assert_eq!(gone[&wh].apply(&inactive, POLICY, 30).disable, None);
    }
}
