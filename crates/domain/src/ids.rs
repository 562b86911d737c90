//! Identifiers of events, webhooks, deliveries and users.
//!
//! Generated ids are a type prefix plus a ULID (48-bit unix-millisecond
//! timestamp, then 80 random bits, in Crockford base32), so they sort by
//! creation time and can be used directly as store keys. Ids received from
//! outside (producers may supply their own event ids) only have to be short
//! and made of URL-, header- and log-safe characters.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::{Generator, ULID_LEN, Ulid};

/// Longest accepted id, in characters.
pub const MAX_ID_LEN: usize = 128;

/// How much of a rejected value an error message repeats.
const PREVIEW_CHARS: usize = 64;

/// A value that is not a valid id of some kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} '{value}' is not a valid id: {reason}")]
pub struct InvalidId {
    /// Which kind of id was expected, such as `event id` or `userId`.
    pub kind: &'static str,
    /// The rejected value, shortened to 64 characters and with control
    /// characters escaped so it is safe to echo back and log.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl InvalidId {
    fn new(kind: &'static str, value: &str, reason: &'static str) -> Self {
        let mut preview: String = value
            .chars()
            .take(PREVIEW_CHARS)
            .flat_map(char::escape_debug)
            .collect();
        if value.chars().nth(PREVIEW_CHARS).is_some() {
            preview.push('…');
        }
        InvalidId {
            kind,
            value: preview,
            reason,
        }
    }
}

/// Checks the common id syntax: 1..=128 characters of `[A-Za-z0-9_.:-]`.
fn check_id_syntax(kind: &'static str, s: &str) -> Result<(), InvalidId> {
    if s.is_empty() {
        return Err(InvalidId::new(kind, s, "it is empty"));
    }
    // Allowed characters are ASCII, so bytes == characters once they pass.
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
    {
        return Err(InvalidId::new(
            kind,
            s,
            "it may contain only letters, digits, '_', '.', ':' and '-'",
        ));
    }
    if s.len() > MAX_ID_LEN {
        return Err(InvalidId::new(kind, s, "it is longer than 128 characters"));
    }
    Ok(())
}

/// The ULID of a timestamp and random part, encoded (26 characters).
///
/// Negative timestamps (a clock before 1970) count as 0; bits above the
/// 48-bit timestamp and 80-bit random part are dropped.
fn ulid(ms: i64, random: u128) -> [u8; ULID_LEN] {
    encode(Ulid::from_parts(u64::try_from(ms).unwrap_or(0), random))
}

/// Crockford base32 of a ULID.
fn encode(id: Ulid) -> [u8; ULID_LEN] {
    let mut out = [0_u8; ULID_LEN];
    id.array_to_str(&mut out);
    out
}

/// The process's ULID generator, shared so ids are ordered across threads.
static GENERATOR: Mutex<Generator> = Mutex::new(Generator::new());

/// The next ULID of this process: strictly greater than the previous one.
///
/// Within one millisecond (or when the clock steps back) the generator counts
/// the last id up instead of drawing a new random part (the specification's
/// monotonic mode). Ids therefore list in creation order, and the store's
/// primary keys grow at their right edge only: inserts append to the last
/// page instead of splitting pages all over the most recent part of each
/// index, which roughly halved the pages written per group commit.
fn next_ulid(now: SystemTime) -> Ulid {
    // A poisoned lock only means another thread panicked mid-update of one integer.
    let mut generator = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    match generator.generate_from_datetime(now) {
        Ok(id) => id,
        // The random part ran out within the last id's millisecond: carry on in
        // the next millisecond from a fresh random part, still above every id before.
        Err(overflow) => overflow.commit_overflow_random(),
    }
}

/// Prefix + ULID.
fn generate_with_prefix(prefix: &str) -> String {
    with_prefix(prefix, encode(next_ulid(SystemTime::now())))
}

/// Prefix + an encoded ULID.
fn with_prefix(prefix: &str, encoded: [u8; ULID_LEN]) -> String {
    let mut out = String::with_capacity(prefix.len() + encoded.len());
    out.push_str(prefix);
    // Every byte comes from the ASCII Crockford alphabet.
    out.extend(encoded.iter().map(|&b| char::from(b)));
    out
}

/// Defines an id newtype with the shared traits and parsing.
macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $check:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            #[doc = concat!("Parses text as a ", $kind, ", rejecting anything outside the accepted syntax.")]
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                ($check)(s).map($name)
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Defines a generated, time-ordered id type with a fixed prefix.
macro_rules! generated_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        string_id!($(#[$meta])* $name, $kind, |s: &str| {
            check_id_syntax($kind, s).map(|()| s.to_owned())
        });

        impl $name {
            #[doc = concat!("The prefix of generated ", $kind, "s.")]
            pub const PREFIX: &'static str = $prefix;

            #[doc = concat!("A new ", $kind, ": `", $prefix, "` + a ULID, so later ids sort after earlier ones.")]
            pub fn generate() -> Self {
                $name(generate_with_prefix($prefix))
            }

            #[doc = concat!("The least ", $kind, " generated at `ms` (unix milliseconds) or later: every one generated earlier sorts before it, so the rows made before a time are a range of their key.")]
            pub fn first_at(ms: i64) -> Self {
                $name(with_prefix($prefix, ulid(ms, 0)))
            }

            #[doc = concat!("A new ", $kind, " as if generated at `ms` (unix milliseconds), for rows that keep an earlier time (tests, imports). Unlike [`generate`](Self::generate), not ordered after the last one.")]
            pub fn generate_at(ms: i64) -> Self {
                $name(with_prefix($prefix, ulid(ms, fastrand::u128(..))))
            }
        }
    };
}

generated_id!(
    /// The id of an event; receivers deduplicate on it, so retries reuse it.
    EventId,
    "evt_",
    "event id"
);
generated_id!(
    /// The id of a registered webhook.
    WebhookId,
    "wh_",
    "webhook id"
);
generated_id!(
    /// The id of one event's delivery to one webhook (all its attempts).
    DeliveryId,
    "dlv_",
    "delivery id"
);

string_id!(
    /// The platform user an event concerns and a webhook belongs to
    /// (a UUID in practice, but any short printable text is accepted).
    UserId,
    "user id",
    check_user_id
);

/// Trims and checks a user id: non-empty, at most 128 characters, no control characters.
fn check_user_id(s: &str) -> Result<String, InvalidId> {
    const KIND: &str = "userId";
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err(InvalidId::new(KIND, s, "it is empty"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(InvalidId::new(KIND, s, "it contains control characters"));
    }
    if trimmed.chars().nth(MAX_ID_LEN).is_some() {
        return Err(InvalidId::new(KIND, s, "it is longer than 128 characters"));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Crockford's base32 alphabet, as used by ULID.
    const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

    #[test]
    fn generated_ids_have_prefix_and_ulid() {
        let id = EventId::generate();
        let s = id.as_str();
        assert!(s.starts_with("evt_"));
        assert_eq!(s.len(), 4 + 26);
        assert!(s[4..].bytes().all(|b| CROCKFORD.contains(&b)));
        assert_eq!(EventId::parse(s).unwrap(), id);
        assert!(WebhookId::generate().as_str().starts_with("wh_"));
        assert!(DeliveryId::generate().as_str().starts_with("dlv_"));
        assert_ne!(EventId::generate(), EventId::generate());
    }

    #[test]
    fn ids_of_a_time_sort_between_that_times_bounds() {
        let early = DeliveryId::generate_at(1_000);
        let bound = DeliveryId::first_at(2_000);
        let late = DeliveryId::generate_at(2_000);
        assert!(early < bound, "{early:?} < {bound:?}");
        assert!(bound <= late, "{bound:?} <= {late:?}");
        assert!(DeliveryId::generate() > DeliveryId::first_at(1_700_000_000_000));
        assert!(DeliveryId::generate() < DeliveryId::first_at(crate::timefmt::now_ms() + 60_000));
        assert!(DeliveryId::parse(DeliveryId::first_at(0).as_str()).is_ok());
        assert_eq!(
            DeliveryId::first_at(0).as_str(),
            "dlv_00000000000000000000000000"
        );
    }

    #[test]
    fn generated_ids_strictly_increase() {
        // Thousands per millisecond: the counting-up path, not only fresh milliseconds.
        let ids: Vec<DeliveryId> = (0..20_000).map(|_| DeliveryId::generate()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
        }
        // A clock that stepped back (to the epoch) still moves forward.
        let before = next_ulid(SystemTime::now());
        let after = next_ulid(SystemTime::UNIX_EPOCH);
        assert!(after > before, "{before:?} then {after:?}");
        let later = EventId::generate();
        assert!(later.as_str().as_bytes()[4..] > encode(after)[..]);
    }

    #[test]
    fn ids_from_many_threads_are_unique() {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| (0..5_000).map(|_| EventId::generate()).collect::<Vec<_>>())
            })
            .collect();
        let mut all = std::collections::HashSet::new();
        for t in threads {
            let ids = t.join().unwrap();
            for pair in ids.windows(2) {
                assert!(pair[0] < pair[1]);
            }
            for id in ids {
                assert!(all.insert(id));
            }
        }
        assert_eq!(all.len(), 20_000);
    }

    #[test]
    fn ulid_encodes_timestamp_first() {
        // Reference value from the ULID specification's examples:
        // timestamp 1469918176385 encodes as 01ARYZ6S41.
        let encoded = ulid(1_469_918_176_385, 0);
        assert_eq!(&encoded[..10], b"01ARYZ6S41");
        assert_eq!(&encoded[10..], b"0000000000000000");
        let max = ulid(0xFFFF_FFFF_FFFF, u128::MAX);
        assert_eq!(&max, b"7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
    }

    #[test]
    fn lexicographic_order_is_time_order() {
        let mut previous = ulid(0, u128::MAX);
        for ms in [
            1_i64,
            999,
            1_000,
            1_735_689_600_000,
            1_735_689_600_001,
            0xFFFF_FFFF_FFFF,
        ] {
            let current = ulid(ms, 0);
            assert!(current > previous, "{ms}");
            previous = ulid(ms, u128::MAX);
        }
    }

    #[test]
    fn parse_accepts_user_supplied_forms() {
        for ok in [
            "evt_1",
            "a",
            "order:42",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            "x.y_z",
        ] {
            assert_eq!(EventId::parse(ok).unwrap().as_str(), ok);
        }
        assert!(EventId::parse(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn parse_rejects_with_reason() {
        let err = EventId::parse("").unwrap_err();
        assert_eq!(
            err.to_string(),
            "event id '' is not a valid id: it is empty"
        );
        let err = WebhookId::parse("has space").unwrap_err();
        assert!(err.to_string().contains("only letters, digits"), "{err}");
        assert_eq!(err.kind, "webhook id");
        let err = DeliveryId::parse(&"a".repeat(129)).unwrap_err();
        assert!(err.reason.contains("longer than 128"));
        assert!(err.value.ends_with('…'));
        let err = EventId::parse("bad\nline").unwrap_err();
        assert_eq!(err.value, "bad\\nline");
        assert!(EventId::parse("é").is_err());
    }

    #[test]
    fn user_ids_are_trimmed_and_checked() {
        let user = UserId::parse("  0f8fad5b-d9cb-469f-a165-70867728950e ").unwrap();
        assert_eq!(user.as_str(), "0f8fad5b-d9cb-469f-a165-70867728950e");
        assert!(UserId::parse("user@example.com").is_ok());
        assert!(UserId::parse("   ").unwrap_err().reason.contains("empty"));
        assert!(
            UserId::parse("a\u{7}b")
                .unwrap_err()
                .reason
                .contains("control")
        );
        assert!(UserId::parse(&"é".repeat(128)).is_ok());
        assert!(
            UserId::parse(&"é".repeat(129))
                .unwrap_err()
                .reason
                .contains("longer")
        );
    }

    #[test]
    fn serde_round_trips_and_validates() {
        let id = EventId::parse("evt_1").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"evt_1\"");
        let back: EventId = serde_json::from_str("\"evt_1\"").unwrap();
        assert_eq!(back, id);
        let err = serde_json::from_str::<EventId>("\"bad id\"").unwrap_err();
        assert!(err.to_string().contains("not a valid id"), "{err}");
        let user: UserId = serde_json::from_str("\"u1\"").unwrap();
        assert_eq!(user.to_string(), "u1");
        assert_eq!(user.as_ref(), "u1");
        assert_eq!(user.into_string(), "u1");
    }
}
