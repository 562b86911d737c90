//! The list of patterns a webhook subscribes with.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{EventPattern, EventType, InvalidPattern, known_categories, known_types};

/// Most patterns one webhook may subscribe with.
pub const MAX_SUBSCRIPTION_PATTERNS: usize = 50;

/// A webhook's list of event types that is unusable as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSubscription {
    /// No entries at all.
    #[error(
        "eventTypes must list at least one event type, category pattern such as 'credit.*', or '*'"
    )]
    Empty,
    /// More entries than allowed.
    #[error(
        "eventTypes has {count} entries; at most {MAX_SUBSCRIPTION_PATTERNS} are allowed (use a category pattern such as 'credit.*' or '*' instead)"
    )]
    TooMany {
        /// How many entries were given.
        count: usize,
    },
    /// Some entries match no event type; every bad entry is listed.
    #[error("eventTypes has invalid entries: {}", describe_invalid(.0))]
    InvalidEntries(Vec<InvalidPattern>),
}

/// Names every bad entry once, then says what is accepted.
fn describe_invalid(errors: &[InvalidPattern]) -> String {
    let mut names = Vec::with_capacity(errors.len());
    let mut empty = false;
    for err in errors {
        match err {
            InvalidPattern::Empty => empty = true,
            InvalidPattern::UnknownCategory { value } | InvalidPattern::UnknownType { value } => {
                names.push(format!("'{value}'"));
            }
        }
    }
    if empty {
        names.push("an empty entry".to_owned());
    }
    format!(
        "{}; use '*', a category ({}), or known event types: {}",
        names.join(", "),
        known_categories(),
        known_types()
    )
}

/// The non-empty, duplicate-free list of patterns a webhook subscribes with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription(Vec<EventPattern>);

impl Subscription {
    /// Parses 1 to 50 entries, dropping duplicates but keeping the first
    /// occurrence's position. The error names every bad entry.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Subscription, InvalidSubscription> {
        if entries.is_empty() {
            return Err(InvalidSubscription::Empty);
        }
        if entries.len() > MAX_SUBSCRIPTION_PATTERNS {
            return Err(InvalidSubscription::TooMany {
                count: entries.len(),
            });
        }
        let mut patterns = Vec::with_capacity(entries.len());
        let mut errors = Vec::new();
        for entry in entries {
            match EventPattern::parse(entry.as_ref()) {
                Ok(pattern) if !patterns.contains(&pattern) => patterns.push(pattern),
                Ok(_) => {}
                Err(err) => errors.push(err),
            }
        }
        if errors.is_empty() {
            Ok(Subscription(patterns))
        } else {
            Err(InvalidSubscription::InvalidEntries(errors))
        }
    }

    /// Whether an event of `event_type` goes to a webhook with this subscription.
    pub fn matches(&self, event_type: &EventType) -> bool {
        self.0.iter().any(|pattern| pattern.matches(event_type))
    }

    /// The patterns, in the order given.
    pub fn patterns(&self) -> &[EventPattern] {
        &self.0
    }

    /// The patterns as written, for storage and API responses.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|p| p.as_str().to_owned()).collect()
    }
}

impl Serialize for Subscription {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for Subscription {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(deserializer)?;
        Self::parse(&entries).map_err(serde::de::Error::custom)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> EventType {
        EventType::parse(name).unwrap()
    }

    #[test]
    fn subscription_dedups_in_order() {
        let sub = Subscription::parse(&["credit.low", "user.*", "credit.low", " user.* "]).unwrap();
        assert_eq!(sub.to_strings(), ["credit.low", "user.*"]);
        assert_eq!(sub.patterns().len(), 2);
        assert!(sub.matches(&t("user.logout")));
        assert!(sub.matches(&t("credit.low")));
        assert!(!sub.matches(&t("credit.depleted")));
        let json = serde_json::to_string(&sub).unwrap();
        assert_eq!(json, r#"["credit.low","user.*"]"#);
        let back: Subscription = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sub);
    }

    #[test]
    fn subscription_errors_name_every_bad_entry() {
        let empty: [&str; 0] = [];
        assert_eq!(Subscription::parse(&empty), Err(InvalidSubscription::Empty));
        let many: Vec<String> = (0..51).map(|_| "*".to_owned()).collect();
        let err = Subscription::parse(&many).unwrap_err();
        assert!(err.to_string().contains("51 entries; at most 50"), "{err}");
        let err =
            Subscription::parse(&["user.created", "user.deleted", "billing.*", ""]).unwrap_err();
        let InvalidSubscription::InvalidEntries(list) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(list.len(), 3);
        let msg = err.to_string();
        assert!(msg.contains("'user.deleted'"), "{msg}");
        assert!(msg.contains("'billing.*'"), "{msg}");
        assert!(msg.contains("an empty entry"), "{msg}");
        assert!(!msg.contains("'user.created'"), "{msg}");
    }
}
