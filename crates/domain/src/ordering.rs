//! Ordered (FIFO) delivery: a webhook whose deliveries go out one at a
//! time, each only after every earlier one of the same order has finished
//! (delivered, or failed for good).
//!
//! "Earlier" is the order of acknowledgement: the store numbers a FIFO
//! webhook's deliveries as their ingest commits, so what a producer saw
//! acknowledged first is sent first. An order covers the whole webhook, or
//! one user of it (`orderingKey: "userId"`, for `scope: "all"` webhooks
//! that carry many users' events, where one user's failing endpoint state
//! should not hold back the others).

use std::fmt;

use crate::ids::UserId;

/// How a webhook orders its deliveries, when it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOrder {
    /// One delivery at a time per [`OrderingKey`], in acknowledgement order.
    Fifo(OrderingKey),
}

/// What one order covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrderingKey {
    /// Every delivery of the webhook is in one order.
    #[default]
    Webhook,
    /// One order per user the events are about.
    UserId,
}

/// The name of the only ordering there is, as the API and the store spell it.
pub const FIFO: &str = "fifo";

/// A value of `ordering` or `orderingKey` that is not one of the allowed ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderingError {
    /// `ordering` is not `"fifo"`.
    #[error("ordering must be \"fifo\" or null, not {0:?}")]
    UnknownOrdering(String),
    /// `orderingKey` is not `"webhook"` or `"userId"`.
    #[error("orderingKey must be \"webhook\" or \"userId\", not {0:?}")]
    UnknownKey(String),
}

impl OrderingKey {
    /// Parses the API's and the store's spelling.
    pub fn parse(text: &str) -> Result<OrderingKey, OrderingError> {
        match text {
            "webhook" => Ok(OrderingKey::Webhook),
            "userId" => Ok(OrderingKey::UserId),
            other => Err(OrderingError::UnknownKey(other.to_owned())),
        }
    }

    /// The spelling of [`OrderingKey::parse`].
    pub fn as_str(&self) -> &'static str {
        match self {
            OrderingKey::Webhook => "webhook",
            OrderingKey::UserId => "userId",
        }
    }

    /// The order a delivery of an event about `user` joins, as stored
    /// beside the delivery. A user id is never empty, so the webhook-wide
    /// order (the empty string) cannot be mistaken for a user's.
    pub fn key_of<'a>(&self, user: &'a UserId) -> &'a str {
        match self {
            OrderingKey::Webhook => "",
            OrderingKey::UserId => user.as_str(),
        }
    }
}

impl DeliveryOrder {
    /// Parses `ordering` (only `"fifo"`) with its optional `orderingKey`
    /// (default: the whole webhook).
    pub fn parse(ordering: &str, key: Option<&str>) -> Result<DeliveryOrder, OrderingError> {
        if ordering != FIFO {
            return Err(OrderingError::UnknownOrdering(ordering.to_owned()));
        }
        let key = key.map(OrderingKey::parse).transpose()?.unwrap_or_default();
        Ok(DeliveryOrder::Fifo(key))
    }

    /// What one order covers.
    pub fn key(&self) -> OrderingKey {
        match self {
            DeliveryOrder::Fifo(key) => *key,
        }
    }
}

impl fmt::Display for DeliveryOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryOrder::Fifo(_) => f.write_str(FIFO),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_defaults_to_one_order_per_webhook() {
        assert_eq!(
            DeliveryOrder::parse("fifo", None),
            Ok(DeliveryOrder::Fifo(OrderingKey::Webhook))
        );
        assert_eq!(
            DeliveryOrder::parse("fifo", Some("userId")),
            Ok(DeliveryOrder::Fifo(OrderingKey::UserId))
        );
        assert_eq!(
            DeliveryOrder::parse("lifo", None),
            Err(OrderingError::UnknownOrdering("lifo".into()))
        );
        assert!(
            DeliveryOrder::parse("fifo", Some("user_id"))
                .unwrap_err()
                .to_string()
                .contains("\"webhook\" or \"userId\"")
        );
    }

    #[test]
    fn a_users_order_never_equals_the_webhooks() {
        let user = UserId::parse("u1").unwrap();
        assert_eq!(OrderingKey::Webhook.key_of(&user), "");
        assert_eq!(OrderingKey::UserId.key_of(&user), "u1");
        for key in [OrderingKey::Webhook, OrderingKey::UserId] {
            assert_eq!(OrderingKey::parse(key.as_str()), Ok(key));
        }
    }
}
