//! A webhook's delivery controls (payload filter, rate limit, retry
//! schedule, timeout, ordering) and how both backends store them: one JSON object in
//! the `delivery_controls` column, absent (NULL) when none is set.
//!
//! One column rather than one per control: every control is optional and
//! read only as a whole (into the routing table), and a webhook that uses
//! none of them stores and reads nothing more than before.

use std::time::Duration;

use serde_json::{Map, Value};
use webhook_domain::filter::PayloadFilter;
use webhook_domain::ordering::DeliveryOrder;
use webhook_domain::retry::RetrySchedule;

use super::StoreError;

/// Keys of the stored object.
const FILTER: &str = "filter";
const RATE_LIMIT: &str = "rateLimitPerSecond";
const RETRY_SCHEDULE: &str = "retrySchedule";
const TIMEOUT_MS: &str = "timeoutMs";
const ORDERING: &str = "ordering";
const ORDERING_KEY: &str = "orderingKey";

/// A webhook's delivery controls; `None` everywhere means "as the service
/// is configured".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryControls {
    /// Only events matching it are delivered.
    pub filter: Option<PayloadFilter>,
    /// Most deliveries started per second.
    pub rate_limit_per_second: Option<u32>,
    /// Overrides `WEBHOOK_RETRY_SCHEDULE`.
    pub retry_schedule: Option<RetrySchedule>,
    /// Overrides `WEBHOOK_TIMEOUT`.
    pub timeout: Option<Duration>,
    /// Deliveries go one at a time, in acknowledgement order.
    pub ordering: Option<DeliveryOrder>,
}

/// A change to the controls; `None` leaves one as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ControlsPatch {
    /// New filter.
    pub filter: Option<Option<PayloadFilter>>,
    /// New rate limit.
    pub rate_limit_per_second: Option<Option<u32>>,
    /// New retry schedule.
    pub retry_schedule: Option<Option<RetrySchedule>>,
    /// New timeout.
    pub timeout: Option<Option<Duration>>,
    /// New ordering.
    pub ordering: Option<Option<DeliveryOrder>>,
}

impl DeliveryControls {
    /// Whether no control is set.
    pub fn is_empty(&self) -> bool {
        *self == DeliveryControls::default()
    }

    /// The controls after `patch`.
    pub fn patched(mut self, patch: &ControlsPatch) -> DeliveryControls {
        if let Some(filter) = &patch.filter {
            self.filter = filter.clone();
        }
        if let Some(limit) = patch.rate_limit_per_second {
            self.rate_limit_per_second = limit;
        }
        if let Some(schedule) = &patch.retry_schedule {
            self.retry_schedule = schedule.clone();
        }
        if let Some(timeout) = patch.timeout {
            self.timeout = timeout;
        }
        if let Some(ordering) = patch.ordering {
            self.ordering = ordering;
        }
        self
    }

    fn entries(&self) -> Map<String, Value> {
        let mut map = Map::new();
        if let Some(filter) = &self.filter {
            map.insert(FILTER.into(), filter.document().clone());
        }
        if let Some(limit) = self.rate_limit_per_second {
            map.insert(RATE_LIMIT.into(), limit.into());
        }
        if let Some(schedule) = &self.retry_schedule {
            map.insert(RETRY_SCHEDULE.into(), schedule.to_string().into());
        }
        if let Some(timeout) = self.timeout {
            map.insert(TIMEOUT_MS.into(), (timeout.as_millis() as u64).into());
        }
        // Both keys always together, so that a store merging per key (the
        // PostgreSQL one) never keeps a key of an ordering that was replaced.
        if let Some(ordering) = self.ordering {
            map.insert(ORDERING.into(), ordering.to_string().into());
            map.insert(ORDERING_KEY.into(), ordering.key().as_str().into());
        }
        map
    }

    /// The stored text, `None` when nothing is set.
    pub(crate) fn to_column(&self) -> Option<String> {
        let map = self.entries();
        (!map.is_empty()).then(|| Value::Object(map).to_string())
    }

    /// Reads the stored text back (`None`: nothing set).
    pub(crate) fn from_column(text: Option<&str>) -> Result<DeliveryControls, StoreError> {
        let Some(text) = text else {
            return Ok(DeliveryControls::default());
        };
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Corrupt(format!("webhook delivery controls ({what}): {e}"))
        };
        let Value::Object(map) = serde_json::from_str(text).map_err(|e| bad("json", &e))? else {
            return Err(bad("json", &"not an object"));
        };
        let mut controls = DeliveryControls::default();
        if let Some(doc) = map.get(FILTER) {
            controls.filter = Some(PayloadFilter::parse(doc.clone()).map_err(|e| bad(FILTER, &e))?);
        }
        if let Some(limit) = map.get(RATE_LIMIT) {
            let limit = limit
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad(RATE_LIMIT, &limit))?;
            controls.rate_limit_per_second = Some(limit);
        }
        if let Some(schedule) = map.get(RETRY_SCHEDULE) {
            let text = schedule
                .as_str()
                .ok_or_else(|| bad(RETRY_SCHEDULE, schedule))?;
            controls.retry_schedule =
                Some(RetrySchedule::parse(text).map_err(|e| bad(RETRY_SCHEDULE, &e))?);
        }
        if let Some(ms) = map.get(TIMEOUT_MS) {
            let ms = ms.as_u64().ok_or_else(|| bad(TIMEOUT_MS, ms))?;
            controls.timeout = Some(Duration::from_millis(ms));
        }
        if let Some(ordering) = map.get(ORDERING) {
            let text = ordering.as_str().ok_or_else(|| bad(ORDERING, ordering))?;
            let key = match map.get(ORDERING_KEY) {
                None => None,
                Some(key) => Some(key.as_str().ok_or_else(|| bad(ORDERING_KEY, key))?),
            };
            controls.ordering =
                Some(DeliveryOrder::parse(text, key).map_err(|e| bad(ORDERING, &e))?);
        }
        Ok(controls)
    }
}

impl ControlsPatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.filter.is_none()
            && self.rate_limit_per_second.is_none()
            && self.retry_schedule.is_none()
            && self.timeout.is_none()
            && self.ordering.is_none()
    }

    /// For a store that merges in SQL: the entries set (as a JSON object)
    /// and the keys cleared.
    pub(crate) fn set_and_cleared(&self) -> (String, Vec<String>) {
        let set = DeliveryControls::default().patched(self).entries();
        let mut cleared = Vec::new();
        let mut clear = |key: &str, cleared_here: bool| {
            if cleared_here {
                cleared.push(key.to_owned());
            }
        };
        clear(FILTER, matches!(self.filter, Some(None)));
        clear(RATE_LIMIT, matches!(self.rate_limit_per_second, Some(None)));
        clear(RETRY_SCHEDULE, matches!(self.retry_schedule, Some(None)));
        clear(TIMEOUT_MS, matches!(self.timeout, Some(None)));
        clear(ORDERING, matches!(self.ordering, Some(None)));
        clear(ORDERING_KEY, matches!(self.ordering, Some(None)));
        (Value::Object(set).to_string(), cleared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use webhook_domain::ordering::OrderingKey;

    #[test]
    fn controls_survive_the_column_and_patches_merge() {
        assert_eq!(DeliveryControls::default().to_column(), None);
        let controls = DeliveryControls {
            filter: Some(PayloadFilter::parse(json!({"data": {"a": {"$gt": 1}}})).unwrap()),
            rate_limit_per_second: Some(50),
            retry_schedule: Some(RetrySchedule::parse("5s,1m").unwrap()),
            timeout: Some(Duration::from_millis(2500)),
            ordering: Some(DeliveryOrder::Fifo(OrderingKey::UserId)),
        };
        let text = controls.to_column().unwrap();
        assert_eq!(
            DeliveryControls::from_column(Some(&text)).unwrap(),
            controls
        );
        let patch = ControlsPatch {
            rate_limit_per_second: Some(None),
            timeout: Some(Some(Duration::from_secs(1))),
            ..ControlsPatch::default()
        };
        let patched = controls.clone().patched(&patch);
        assert_eq!(patched.rate_limit_per_second, None);
        assert_eq!(patched.timeout, Some(Duration::from_secs(1)));
        assert_eq!(patched.filter, controls.filter);
        assert_eq!(patched.ordering, controls.ordering);
        let (set, cleared) = patch.set_and_cleared();
        assert_eq!(set, r#"{"timeoutMs":1000}"#);
        assert_eq!(cleared, [RATE_LIMIT]);
        assert!(DeliveryControls::from_column(Some("[1]")).is_err());
        let unordered = ControlsPatch {
            ordering: Some(None),
            ..ControlsPatch::default()
        };
        assert_eq!(unordered.set_and_cleared().1, [ORDERING, ORDERING_KEY]);
        assert_eq!(
            DeliveryControls::from_column(Some(r#"{"ordering":"fifo"}"#))
                .unwrap()
                .ordering,
            Some(DeliveryOrder::Fifo(OrderingKey::Webhook))
        );
    }
}
