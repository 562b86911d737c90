//! Event types, the patterns webhooks subscribe with, and subscriptions.
//!
//! Only catalogue types exist: an [`EventType`] cannot hold a name the
//! catalogue does not list, so producers cannot invent types receivers were
//! never told about, and a subscription cannot name a type that will never
//! be sent.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod catalogue;
mod subscription;

use catalogue::CATALOGUE;
pub use subscription::{InvalidSubscription, MAX_SUBSCRIPTION_PATTERNS, Subscription};

/// One entry of the event-type catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTypeInfo {
    /// The type name, such as `user.created`.
    pub name: &'static str,
    /// The part before the dot, such as `user`.
    pub category: &'static str,
    /// When the event is emitted.
    pub description: &'static str,
    /// The platform service that emits it, written to `metadata.service`.
    pub service: &'static str,
    /// JSON text of an example envelope.
    pub example: &'static str,
}

/// The full catalogue of event types, grouped by category.
pub fn catalogue() -> &'static [EventTypeInfo] {
    &CATALOGUE
}

/// The categories of the catalogue with their `category.*` patterns, in catalogue order.
const CATEGORIES: [(&str, &str); 4] = [
    ("user", "user.*"),
    ("credit", "credit.*"),
    ("service", "service.*"),
    ("webhook", "webhook.*"),
];

/// The names of every known type, comma separated, for error messages.
fn known_types() -> String {
    let mut out = String::new();
    for (i, info) in CATALOGUE.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(info.name);
    }
    out
}

/// The `category.*` patterns, comma separated, for error messages.
fn known_categories() -> String {
    CATEGORIES.map(|(_, pattern)| pattern).join(", ")
}

/// A name that is not in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "eventType '{value}' is not a known event type; known types are: {}",
    known_types()
)]
pub struct UnknownEventType {
    /// The rejected name.
    pub value: String,
}

/// A type from the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType {
    /// Index into [`CATALOGUE`]; only ever set to a valid index.
    index: u8,
}

impl EventType {
    /// `webhook.disabled`, emitted by the service itself when it disables a webhook.
    pub const WEBHOOK_DISABLED: EventType = EventType { index: 16 };

    /// Looks a name up in the catalogue (exact, case-sensitive match).
    pub fn parse(s: &str) -> Result<EventType, UnknownEventType> {
        CATALOGUE
            .iter()
            .position(|info| info.name == s)
            .and_then(|index| u8::try_from(index).ok())
            .map(|index| EventType { index })
            .ok_or_else(|| UnknownEventType {
                value: s.chars().take(100).collect(),
            })
    }

    /// Every known type, in catalogue order.
    pub fn all() -> impl Iterator<Item = EventType> {
        (0..CATALOGUE.len())
            .filter_map(|index| u8::try_from(index).ok().map(|index| EventType { index }))
    }

    /// The type name, such as `credit.low`.
    pub fn as_str(&self) -> &'static str {
        self.info().name
    }

    /// The catalogue entry of this type.
    pub fn info(&self) -> &'static EventTypeInfo {
        // `index` is only ever built from a position in CATALOGUE, so it is in bounds.
        &CATALOGUE[usize::from(self.index)]
    }

    /// The category, such as `credit`.
    pub fn category(&self) -> &'static str {
        self.info().category
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = UnknownEventType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An entry a webhook subscribes with that matches no event type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPattern {
    /// The entry is empty or blank.
    #[error(
        "an event type entry is empty; use '*', a category such as 'credit.*', or an event type name"
    )]
    Empty,
    /// `something.*` where `something` is not a category.
    #[error(
        "'{value}' names no known category; known categories are: {}",
        known_categories()
    )]
    UnknownCategory {
        /// The rejected entry.
        value: String,
    },
    /// Not `*`, not a category pattern, and not a known type.
    #[error(
        "'{value}' is not a known event type; use '*', a category ({}), or one of: {}",
        known_categories(),
        known_types()
    )]
    UnknownType {
        /// The rejected entry.
        value: String,
    },
}

/// What a webhook subscribes to: one type, a whole category, or everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventPattern {
    /// Exactly this type.
    Exact(EventType),
    /// Every type of this category (written `category.*`).
    Category(&'static str),
    /// Every type (written `*`).
    All,
}

impl EventPattern {
    /// Parses `*`, `category.*` for a catalogue category, or a known type
    /// name; surrounding whitespace is ignored.
    pub fn parse(s: &str) -> Result<Self, InvalidPattern> {
        let s = s.trim();
        if s.is_empty() {
            return Err(InvalidPattern::Empty);
        }
        if s == "*" {
            return Ok(EventPattern::All);
        }
        if let Some(category) = s.strip_suffix(".*") {
            return CATEGORIES
                .iter()
                .find(|(name, _)| *name == category)
                .map(|(name, _)| EventPattern::Category(name))
                .ok_or_else(|| InvalidPattern::UnknownCategory {
                    value: s.chars().take(100).collect(),
                });
        }
        EventType::parse(s)
            .map(EventPattern::Exact)
            .map_err(|err| InvalidPattern::UnknownType { value: err.value })
    }

    /// Whether events of `event_type` are sent to a webhook with this pattern.
    pub fn matches(&self, event_type: &EventType) -> bool {
        match self {
            EventPattern::Exact(exact) => exact == event_type,
            EventPattern::Category(category) => event_type.category() == *category,
            EventPattern::All => true,
        }
    }

    /// The pattern as written: `*`, `credit.*` or `credit.low`.
    pub fn as_str(&self) -> &'static str {
        match self {
            EventPattern::Exact(exact) => exact.as_str(),
            EventPattern::Category(category) => CATEGORIES
                .iter()
                .find(|(name, _)| name == category)
                .map_or("*", |(_, pattern)| pattern),
            EventPattern::All => "*",
        }
    }
}

impl fmt::Display for EventPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventPattern {
    type Err = InvalidPattern;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for EventPattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> EventType {
        EventType::parse(name).unwrap()
    }

    #[test]
    fn catalogue_has_the_guide_and_platform_types() {
        let names: Vec<_> = catalogue().iter().map(|i| i.name).collect();
        for name in [
            "user.created",
            "user.updated",
            "user.login",
            "user.logout",
            "user.verified",
            "user.password_changed",
            "user.profile_updated",
            "user.roles_assigned",
            "credit.depleted",
            "credit.low",
            "credit.purchased",
            "credit.refunded",
            "credit.promo_redeemed",
            "service.completed",
            "service.failed",
            "service.started",
            "webhook.disabled",
        ] {
            assert!(names.contains(&name), "{name} missing");
        }
        assert_eq!(names.len(), 17);
    }

    #[test]
    fn every_example_is_a_consistent_envelope() {
        for info in catalogue() {
            let example: serde_json::Value =
                serde_json::from_str(info.example).unwrap_or_else(|e| panic!("{}: {e}", info.name));
            assert_eq!(example["eventType"], info.name);
            assert_eq!(
                example["metadata"]["service"], info.service,
                "{}",
                info.name
            );
            assert!(example["data"].is_object(), "{}", info.name);
            let keys: Vec<_> = example.as_object().unwrap().keys().cloned().collect();
            assert_eq!(keys, ["id", "eventType", "userId", "data", "metadata"]);
            assert_eq!(info.name.split('.').next(), Some(info.category));
            assert!(!info.description.is_empty());
        }
    }

    #[test]
    fn categories_table_matches_the_catalogue() {
        for info in catalogue() {
            assert!(CATEGORIES.iter().any(|(c, _)| *c == info.category));
        }
        for (category, pattern) in CATEGORIES {
            assert_eq!(pattern, format!("{category}.*"));
            assert!(catalogue().iter().any(|i| i.category == category));
        }
        assert_eq!(EventType::WEBHOOK_DISABLED.as_str(), "webhook.disabled");
        assert_eq!(
            EventType::WEBHOOK_DISABLED.info().service,
            "webhook-service"
        );
        assert_eq!(EventType::all().count(), catalogue().len());
    }

    #[test]
    fn event_type_parses_known_names_only() {
        let low = t("credit.low");
        assert_eq!(low.as_str(), "credit.low");
        assert_eq!(low.category(), "credit");
        assert_eq!(low.info().service, "core-service");
        assert_eq!(low.to_string(), "credit.low");
        let err = EventType::parse("credit.stolen").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("eventType 'credit.stolen' is not a known event type"));
        assert!(msg.contains("user.created") && msg.contains("webhook.disabled"));
        assert!(EventType::parse("User.Created").is_err());
        assert_eq!(serde_json::to_string(&low).unwrap(), "\"credit.low\"");
        assert_eq!(
            serde_json::from_str::<EventType>("\"credit.low\"").unwrap(),
            low
        );
        assert!(serde_json::from_str::<EventType>("\"nope\"").is_err());
    }

    #[test]
    fn patterns_parse_and_match() {
        assert_eq!(EventPattern::parse("*").unwrap(), EventPattern::All);
        assert_eq!(
            EventPattern::parse(" credit.* ").unwrap(),
            EventPattern::Category("credit")
        );
        assert_eq!(
            EventPattern::parse("user.login").unwrap(),
            EventPattern::Exact(t("user.login"))
        );
        assert!(matches!(
            EventPattern::parse("billing.*"),
            Err(InvalidPattern::UnknownCategory { .. })
        ));
        assert!(matches!(
            EventPattern::parse("user.deleted"),
            Err(InvalidPattern::UnknownType { .. })
        ));
        assert_eq!(EventPattern::parse("  "), Err(InvalidPattern::Empty));
        assert!(EventPattern::parse("user*").is_err());

        let credit = EventPattern::Category("credit");
        assert!(credit.matches(&t("credit.low")));
        assert!(!credit.matches(&t("user.created")));
        assert!(EventPattern::All.matches(&t("service.failed")));
        assert!(EventPattern::Exact(t("user.created")).matches(&t("user.created")));
        assert!(!EventPattern::Exact(t("user.created")).matches(&t("user.updated")));
        for text in ["*", "credit.*", "webhook.*", "user.created"] {
            let p = EventPattern::parse(text).unwrap();
            assert_eq!(p.as_str(), text);
            assert_eq!(p.to_string(), text);
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{text}\""));
        }
    }
}
