//! Access proven by a type: the webhook a caller was shown to be allowed to
//! see, which every query of its deliveries takes.

use std::ops::Deref;

use webhook_domain::ids::{UserId, WebhookId};

use super::{Owner, WebhookRecord};

/// A webhook that the caller may see, as read by the ownership check
/// ([`super::Store::visible_webhook`]), the only place one is made.
///
/// The delivery queries (log, detail, retry, replay, statistics) take one
/// instead of a bare [`WebhookId`], so a handler that forgets the check does
/// not compile, rather than showing another user's deliveries. Outside the
/// store none can be made from a record:
///
/// ```compile_fail
/// use webhook_service::store::{VisibleWebhook, WebhookRecord};
/// fn forge(record: WebhookRecord) -> VisibleWebhook {
///     VisibleWebhook { record }
/// }
/// ```
///
/// ```compile_fail
/// use webhook_service::store::{VisibleWebhook, WebhookRecord};
/// fn forge(record: WebhookRecord) -> VisibleWebhook {
///     VisibleWebhook::checked(record)
/// }
/// ```
#[derive(Debug, Clone)]
pub struct VisibleWebhook {
    record: WebhookRecord,
}

impl VisibleWebhook {
    /// Vouches for `record`: called only with a webhook the store read under
    /// the caller's [`Owner`].
    pub(super) fn checked(record: WebhookRecord) -> Self {
        VisibleWebhook { record }
    }

    /// The webhook as stored.
    pub fn record(&self) -> &WebhookRecord {
        &self.record
    }

    /// The webhook as stored, giving the proof up.
    pub fn into_record(self) -> WebhookRecord {
        self.record
    }
}

impl Deref for VisibleWebhook {
    type Target = WebhookRecord;

    fn deref(&self) -> &WebhookRecord {
        &self.record
    }
}

/// Which deliveries a statistic covers.
#[derive(Debug, Clone, Copy)]
pub enum StatsScope<'a> {
    /// One webhook's, which the caller was shown to see.
    Webhook(&'a VisibleWebhook),
    /// Those of every webhook of the owner ([`Owner::Any`]: of all webhooks).
    Owner(Owner<'a>),
}

impl StatsScope<'_> {
    /// The webhook and the owner the statistics queries filter on.
    pub(crate) fn filters(&self) -> (Option<&WebhookId>, Option<&UserId>) {
        match self {
            StatsScope::Webhook(webhook) => (Some(&webhook.id), Some(&webhook.owner_id)),
            StatsScope::Owner(owner) => (None, owner.user()),
        }
    }
}
