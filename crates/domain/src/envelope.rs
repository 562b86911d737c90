//! The event accepted at ingest and the exact bytes sent to receivers.
//!
//! An [`EventInput`] is what a producer posted, loosely typed so that every
//! problem can be reported at once. [`EventInput::validate`] turns it into an
//! [`Event`], and [`Event::envelope_bytes`] renders the guide's envelope. The
//! service serializes those bytes once and signs and sends the same bytes on
//! every attempt, so a retry is byte-identical to the first try.

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::event_type::EventType;
use crate::ids::{EventId, UserId};
use crate::timefmt::format_rfc3339_millis;

/// `metadata.service` of events the webhook service emits itself.
pub const WEBHOOK_SERVICE: &str = "webhook-service";

/// An event as posted by a producer, before validation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventInput {
    /// The producer's own event id, if it sends one; generated otherwise.
    pub id: Option<String>,
    /// The catalogue name of the event type.
    pub event_type: Option<String>,
    /// The user the event concerns; must be a string.
    pub user_id: Option<Value>,
    /// The event payload; must be a JSON object. Kept as text: it is only
    /// checked to be an object and copied into the envelope, so building a
    /// map of it (and serializing that again) was wasted work on every event.
    pub data: Option<Box<RawValue>>,
    /// Extra context; must be a JSON object when present. An unpaired
    /// surrogate escape in it is refused while reading, naming `metadata`
    /// (serde_json's own refusal names no field).
    #[serde(default, deserialize_with = "metadata_value")]
    pub metadata: Option<Value>,
}

/// Reads `metadata` as written, refuses an unpaired surrogate escape in it
/// (naming the field, through the deserializer's error path), then builds the
/// value.
fn metadata_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    use serde::de::Error as _;
    let Some(raw) = Option::<Box<RawValue>>::deserialize(d)? else {
        return Ok(None);
    };
    check_surrogates(raw.get())
        .map_err(|problem| D::Error::custom(format!("metadata {problem}")))?;
    serde_json::from_str(raw.get())
        .map(Some)
        .map_err(D::Error::custom)
}

/// One problem with one field of a submitted event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The JSON field, such as `eventType`.
    pub field: String,
    /// What is wrong, in words the producer can act on.
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Every problem found in a submitted event (never empty when returned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}", join_messages(.0))]
#[serde(transparent)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    /// The individual problems, in field order.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }
}

fn join_messages(errors: &[FieldError]) -> String {
    let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    messages.join("; ")
}

/// Describes a JSON value's kind for error messages.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A validated event, ready to be stored and delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event id receivers deduplicate on.
    pub id: EventId,
    /// The catalogue type.
    pub event_type: EventType,
    /// The user the event concerns (and whose webhooks receive it).
    pub user_id: UserId,
    /// The payload as the producer wrote it (keys, order, numbers), compacted.
    pub data: JsonObject,
    /// Context; always holds `service` and `timestamp` after validation.
    pub metadata: Map<String, Value>,
    /// When the service accepted the event, in unix milliseconds.
    pub created_at_ms: i64,
    /// Whether the producer supplied `id` (rather than the service generating it).
    pub id_supplied: bool,
}

impl EventInput {
    /// Checks every field and reports all problems at once.
    ///
    /// On success, `metadata.service` defaults to the emitting service of the
    /// catalogue and `metadata.timestamp` to `now_ms`; other metadata keys
    /// and the producer's key order are kept. A missing `id` is generated.
    pub fn validate(self, now_ms: i64) -> Result<Event, ValidationErrors> {
        let mut errors = Vec::new();

        let id = match self.id.as_deref() {
            None => None,
            Some(text) => match EventId::parse(text) {
                Ok(id) => Some(id),
                Err(err) => {
                    errors.push(FieldError::new("id", err.to_string()));
                    None
                }
            },
        };

        let event_type = match self.event_type.as_deref().map(str::trim) {
            None | Some("") => {
                errors.push(FieldError::new("eventType", "eventType is required"));
                None
            }
            Some(name) => match EventType::parse(name) {
                Ok(event_type) => Some(event_type),
                Err(err) => {
                    errors.push(FieldError::new("eventType", err.to_string()));
                    None
                }
            },
        };

        let user_id = match self.user_id {
            None | Some(Value::Null) => {
                errors.push(FieldError::new("userId", "userId is required"));
                None
            }
            Some(Value::String(text)) => match UserId::parse(&text) {
                Ok(user_id) => Some(user_id),
                Err(err) => {
                    errors.push(FieldError::new("userId", err.to_string()));
                    None
                }
            },
            Some(other) => {
                let kind = kind_of(&other);
                errors.push(FieldError::new(
                    "userId",
                    format!("userId must be a string, not {kind}"),
                ));
                None
            }
        };

        let data = match self.data {
            None => {
                errors.push(FieldError::new(
                    "data",
                    "data is required and must be a JSON object",
                ));
                None
            }
            Some(raw) => match JsonObject::from_raw(raw) {
                Ok(object) => Some(object),
                Err(problem) => {
                    errors.push(FieldError::new("data", format!("data {problem}")));
                    None
                }
            },
        };

        let metadata = match self.metadata {
            None | Some(Value::Null) => Some(Map::new()),
            Some(Value::Object(map)) => Some(map),
            Some(other) => {
                let kind = kind_of(&other);
                errors.push(FieldError::new(
                    "metadata",
                    format!("metadata must be a JSON object when present, not {kind}"),
                ));
                None
            }
        };

        match (event_type, user_id, data, metadata) {
            (Some(event_type), Some(user_id), Some(data), Some(mut metadata))
                if errors.is_empty() =>
            {
                if !metadata.contains_key("service") {
                    metadata.insert(
                        "service".to_owned(),
                        Value::String(event_type.info().service.to_owned()),
                    );
                }
                if !metadata.contains_key("timestamp") {
                    metadata.insert(
                        "timestamp".to_owned(),
                        Value::String(format_rfc3339_millis(now_ms)),
                    );
                }
                let id_supplied = id.is_some();
                Ok(Event {
                    id: id.unwrap_or_else(EventId::generate),
                    event_type,
                    user_id,
                    data,
                    metadata,
                    created_at_ms: now_ms,
                    id_supplied,
                })
            }
            _ => Err(ValidationErrors(errors)),
        }
    }
}

impl Event {
    /// A test event for `POST /webhooks/{id}/test`: emitted by `webhook-service`
    /// with `metadata.test = true` and a fresh id.
    pub fn test_event(
        event_type: EventType,
        user_id: UserId,
        data: &Map<String, Value>,
        now_ms: i64,
    ) -> Event {
        let mut metadata = Map::with_capacity(3);
        metadata.insert(
            "service".to_owned(),
            Value::String(WEBHOOK_SERVICE.to_owned()),
        );
        metadata.insert(
            "timestamp".to_owned(),
            Value::String(format_rfc3339_millis(now_ms)),
        );
        metadata.insert("test".to_owned(), Value::Bool(true));
        Event {
            id: EventId::generate(),
            event_type,
            user_id,
            data: JsonObject::from_map(data),
            metadata,
            created_at_ms: now_ms,
            id_supplied: false,
        }
    }

    /// The envelope as compact JSON with keys `id`, `eventType`, `userId`,
    /// `data`, `metadata` in that order; metadata lists `service` and
    /// `timestamp` first, then the producer's other keys in their order.
    pub fn envelope_bytes(&self) -> Vec<u8> {
        // 160 bytes covers the fixed part; the payload is usually a few hundred more.
        let mut out = Vec::with_capacity(512);
        // Cannot fail: writing into a Vec never errors, and a Value tree with
        // string keys always serializes.
        let _ = serde_json::to_writer(&mut out, &EnvelopeView(self));
        out
    }
}

/// A JSON object held as compact text, exactly as it goes into the envelope.
#[derive(Debug, Clone)]
pub struct JsonObject(Box<RawValue>);

/// Deepest nesting accepted in `data`, as serde_json's own limit for the
/// rest of a body (a receiver's parser may have a smaller stack than ours).
pub const MAX_DATA_DEPTH: usize = 128;

impl JsonObject {
    /// Accepts `raw` if it is an object nested at most [`MAX_DATA_DEPTH`]
    /// deep; otherwise says what is wrong, as the end of a sentence starting
    /// "data ". Whitespace outside strings is removed; everything else (key
    /// order, duplicate keys, number spelling, escapes) stays as written.
    pub fn from_raw(raw: Box<RawValue>) -> Result<JsonObject, String> {
        // serde_json has checked the syntax, and a raw value starts at its
        // first significant byte.
        let kind = match raw.get().as_bytes().first() {
            Some(b'{') => None,
            Some(b'[') => Some("an array"),
            Some(b'"') => Some("a string"),
            Some(b't' | b'f') => Some("a boolean"),
            Some(b'n') => Some("null"),
            _ => Some("a number"),
        };
        if let Some(kind) = kind {
            return Err(format!("must be a JSON object, not {kind}"));
        }
        // serde_json skips over a raw value without its recursion limit.
        let shape = scan(raw.get());
        if shape.depth > MAX_DATA_DEPTH {
            return Err(format!(
                "is nested too deeply (more than {MAX_DATA_DEPTH} levels)"
            ));
        }
        if let Some(unit) = shape.lone_surrogate {
            return Err(lone_surrogate_message(unit));
        }
        if !shape.has_space {
            return Ok(JsonObject(raw));
        }
        // Removing insignificant whitespace from valid JSON leaves valid JSON.
        RawValue::from_string(compact(raw.get()))
            .map(JsonObject)
            .map_err(|e| format!("could not be compacted: {e}"))
    }

    /// The object of a map (the service's own events).
    pub fn from_map(map: &Map<String, Value>) -> JsonObject {
        // A map with string keys always serializes; the fallback is never taken.
        JsonObject(serde_json::value::to_raw_value(map).unwrap_or_default())
    }

    /// The compact JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

/// What one pass over valid JSON text finds.
struct Shape {
    /// Whitespace outside strings.
    has_space: bool,
    /// Deepest nesting of arrays and objects.
    depth: usize,
    /// The first `\u` escape of a UTF-16 surrogate without its partner.
    lone_surrogate: Option<u16>,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Each byte of valid JSON `text`, and whether it lies outside every string
/// (quotes count as inside): where whitespace and brackets are structure.
fn outside_strings(text: &str) -> impl Iterator<Item = (u8, bool)> + '_ {
    let (mut in_string, mut escaped) = (false, false);
    text.bytes().map(move |b| {
        let outside = !in_string && b != b'"';
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        }
        (b, outside)
    })
}

/// The value of the four hex digits of a `\u` escape (valid JSON has them).
fn hex4(digits: &[u8]) -> u16 {
    digits.iter().fold(0u16, |value, &d| {
        let nibble = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => 0,
        };
        (value << 4) | u16::from(nibble)
    })
}

/// Follows the `\u` escapes of JSON strings: a high surrogate must be
/// followed at once by an escaped low one, and a low one must follow a high
/// one. serde_json skips over a raw value without decoding its escapes, so
/// `"\ud800"` would reach receivers whose strict parsers refuse it.
#[derive(Default)]
struct Surrogates {
    /// A high surrogate waiting for its low half.
    pending_high: Option<u16>,
    /// The first unpaired one found.
    lone: Option<u16>,
}

impl Surrogates {
    /// Anything but a `\u` escape inside or at the end of a string.
    fn other(&mut self) {
        if let Some(high) = self.pending_high.take() {
            self.lone.get_or_insert(high);
        }
    }

    /// An escaped UTF-16 code unit.
    fn unit(&mut self, unit: u16) {
        match unit {
            0xD800..=0xDBFF => {
                self.other();
                self.pending_high = Some(unit);
            }
            0xDC00..=0xDFFF => {
                if self.pending_high.take().is_none() {
                    self.lone.get_or_insert(unit);
                }
            }
            _ => self.other(),
        }
    }
}

fn scan(text: &str) -> Shape {
    let bytes = text.as_bytes();
    let (mut depth, mut deepest, mut has_space) = (0usize, 0usize, false);
    let mut surrogates = Surrogates::default();
    let (mut i, mut in_string) = (0, false);
    while let Some(&b) = bytes.get(i) {
        i += 1;
        if in_string {
            match b {
                b'\\' if bytes.get(i) == Some(&b'u') => {
                    let digits = bytes.get(i + 1..i + 5).unwrap_or_default();
                    surrogates.unit(hex4(digits));
                    i += 5;
                }
                b'\\' => {
                    surrogates.other();
                    i += 1;
                }
                b'"' => {
                    surrogates.other();
                    in_string = false;
                }
                _ => surrogates.other(),
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b if is_space(b) => has_space = true,
            _ => {}
        }
    }
    Shape {
        has_space,
        depth: deepest,
        lone_surrogate: surrogates.lone,
    }
}

/// Says where valid JSON `text` holds an unpaired surrogate escape, as the
/// end of a sentence starting with the field's name.
pub fn check_surrogates(text: &str) -> Result<(), String> {
    match scan(text).lone_surrogate {
        None => Ok(()),
        Some(unit) => Err(lone_surrogate_message(unit)),
    }
}

fn lone_surrogate_message(unit: u16) -> String {
    format!(
        "contains the escape \\u{unit:04x}, half of a UTF-16 surrogate pair without its other half; \
         it is not valid Unicode and strict JSON parsers refuse it"
    )
}

/// Valid JSON `text` without whitespace outside strings.
fn compact(text: &str) -> String {
    let out: Vec<u8> = outside_strings(text)
        .filter(|&(b, outside)| !(outside && is_space(b)))
        .map(|(b, _)| b)
        .collect();
    // Only ASCII whitespace bytes were dropped, so the rest is still UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl PartialEq for JsonObject {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Serialize for JsonObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// Serializes an [`Event`] as the guide's envelope without building a `Value` tree.
struct EnvelopeView<'a>(&'a Event);

impl Serialize for EnvelopeView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let event = self.0;
        let mut envelope = serializer.serialize_struct("Envelope", 5)?;
        envelope.serialize_field("id", event.id.as_str())?;
        envelope.serialize_field("eventType", event.event_type.as_str())?;
        envelope.serialize_field("userId", event.user_id.as_str())?;
        envelope.serialize_field("data", &event.data)?;
        envelope.serialize_field("metadata", &MetadataView(&event.metadata))?;
        envelope.end()
    }
}

/// Metadata with `service` and `timestamp` first, then every other key in order.
struct MetadataView<'a>(&'a Map<String, Value>);

impl Serialize for MetadataView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        const LEADING: [&str; 2] = ["service", "timestamp"];
        let metadata = self.0;
        let mut map = serializer.serialize_map(Some(metadata.len()))?;
        for key in LEADING {
            if let Some(value) = metadata.get(key) {
                map.serialize_entry(key, value)?;
            }
        }
        for (key, value) in metadata {
            if !LEADING.contains(&key.as_str()) {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00.000Z

    fn input(value: Value) -> EventInput {
        serde_json::from_str(&value.to_string()).unwrap()
    }

    #[test]
    fn envelope_matches_the_signature_vector_byte_for_byte() {
        let event = input(json!({
            "id": "evt_1",
            "eventType": "user.created",
            "userId": "u1",
            "data": {"userId": "u1"},
            "metadata": {"timestamp": "2025-01-01T00:00:00.000Z", "service": "auth-service"},
        }))
        .validate(NOW)
        .unwrap();
        let body = event.envelope_bytes();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"id":"evt_1","eventType":"user.created","userId":"u1","data":{"userId":"u1"},"metadata":{"service":"auth-service","timestamp":"2025-01-01T00:00:00.000Z"}}"#
        );
        assert_eq!(
            webhook_verify::sign_legacy("your_webhook_secret", &body),
            "sha256=c33e21c9201c59d4052d39da193e87ff7df983b2f8c88a7056c34456546d52e5"
        );
    }

    #[test]
    fn validation_fills_metadata_and_keeps_extra_keys_in_order() {
        let event = input(json!({
            "eventType": "credit.low",
            "userId": "0f8fad5b-d9cb-469f-a165-70867728950e",
            "data": {"userId": "0f8fad5b-d9cb-469f-a165-70867728950e", "balance": 8, "threshold": 10},
            "metadata": {"source": "billing", "ipAddress": "10.0.0.1"},
        }))
        .validate(NOW)
        .unwrap();
        assert!(!event.id_supplied);
        assert!(event.id.as_str().starts_with("evt_"));
        assert_eq!(event.created_at_ms, NOW);
        assert_eq!(event.metadata["service"], "core-service");
        assert_eq!(event.metadata["timestamp"], "2025-01-01T00:00:00.000Z");
        let body = String::from_utf8(event.envelope_bytes()).unwrap();
        let expected = format!(
            r#"{{"id":"{}","eventType":"credit.low","userId":"0f8fad5b-d9cb-469f-a165-70867728950e","data":{{"userId":"0f8fad5b-d9cb-469f-a165-70867728950e","balance":8,"threshold":10}},"metadata":{{"service":"core-service","timestamp":"2025-01-01T00:00:00.000Z","source":"billing","ipAddress":"10.0.0.1"}}}}"#,
            event.id
        );
        assert_eq!(body, expected);
    }

    #[test]
    fn producer_metadata_values_win() {
        let event = input(json!({
            "id": "order:42",
            "eventType": "service.completed",
            "userId": "u1",
            "data": {},
            "metadata": {"service": "custom", "timestamp": "2024-06-01T00:00:00Z"},
        }))
        .validate(NOW)
        .unwrap();
        assert!(event.id_supplied);
        assert_eq!(event.id.as_str(), "order:42");
        assert_eq!(event.metadata["service"], "custom");
        assert_eq!(event.metadata["timestamp"], "2024-06-01T00:00:00Z");
    }

    #[test]
    fn validation_reports_every_problem() {
        let err = input(json!({
            "id": "not valid!",
            "eventType": "user.exploded",
            "userId": 42,
            "data": [1, 2],
            "metadata": "x",
        }))
        .validate(NOW)
        .unwrap_err();
        let fields: Vec<_> = err.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["id", "eventType", "userId", "data", "metadata"]);
        let msg = err.to_string();
        assert!(
            msg.contains("not a known event type; known types are: user.created"),
            "{msg}"
        );
        assert!(
            msg.contains("userId must be a string, not a number"),
            "{msg}"
        );
        assert!(
            msg.contains("data must be a JSON object, not an array"),
            "{msg}"
        );
        assert!(msg.contains("metadata must be a JSON object"), "{msg}");
        assert!(
            msg.contains("event id 'not valid!' is not a valid id"),
            "{msg}"
        );

        let err = input(json!({})).validate(NOW).unwrap_err();
        let messages: Vec<_> = err.errors().iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "eventType is required",
                "userId is required",
                "data is required and must be a JSON object"
            ]
        );
        let err = input(json!({"eventType": "user.created", "userId": "  ", "data": {}}))
            .validate(NOW)
            .unwrap_err();
        assert_eq!(err.errors()[0].field, "userId");
        assert!(err.errors()[0].message.contains("empty"));
        let json = serde_json::to_value(&err).unwrap();
        assert_eq!(json[0]["field"], "userId");
    }

    #[test]
    fn unknown_input_fields_are_ignored_and_null_metadata_is_absent() {
        let event = input(json!({
            "eventType": "user.login",
            "userId": "u1",
            "data": {"a": 1},
            "metadata": null,
            "extra": true,
        }))
        .validate(NOW)
        .unwrap();
        assert_eq!(event.metadata.len(), 2);
    }

    #[test]
    fn test_events_are_marked() {
        let event = Event::test_event(
            EventType::parse("user.created").unwrap(),
            UserId::parse("u1").unwrap(),
            json!({"test": true}).as_object().unwrap(),
            NOW,
        );
        assert!(!event.id_supplied);
        let body: Value = serde_json::from_slice(&event.envelope_bytes()).unwrap();
        assert_eq!(
            body["metadata"],
            json!({"service": "webhook-service", "timestamp": "2025-01-01T00:00:00.000Z", "test": true})
        );
        assert_eq!(body["data"], json!({"test": true}));
        assert_eq!(body["eventType"], "user.created");
    }

    #[test]
    fn envelope_escapes_strings() {
        let event = input(json!({
            "eventType": "user.updated",
            "userId": "u\"1",
            "data": {"text": "line\nbreak \u{1F600}"},
        }))
        .validate(NOW)
        .unwrap();
        let body: Value = serde_json::from_slice(&event.envelope_bytes()).unwrap();
        assert_eq!(body["userId"], "u\"1");
        assert_eq!(body["data"]["text"], "line\nbreak \u{1F600}");
    }

    fn event_from_text(text: &str) -> Event {
        serde_json::from_str::<EventInput>(text)
            .unwrap()
            .validate(NOW)
            .unwrap()
    }

    #[test]
    fn data_is_compacted_but_otherwise_kept_as_written() {
        let event = event_from_text(
            "{\"eventType\": \"user.created\", \"userId\": \"u1\", \"data\": {\n  \"b\" : 1 ,\t\"a\": [ 1.50, 2e3 ],\r\n \"s\": \"keep  these \\\" spaces\", \"big\": 12345678901234567890123, \"u\": \"\\u00e9\" } }",
        );
        assert_eq!(
            event.data.as_str(),
            r#"{"b":1,"a":[1.50,2e3],"s":"keep  these \" spaces","big":12345678901234567890123,"u":"\u00e9"}"#
        );
        let body: Value = serde_json::from_slice(&event.envelope_bytes()).unwrap();
        assert_eq!(body["data"]["s"], "keep  these \" spaces");
        assert_eq!(body["data"]["u"], "\u{e9}");
    }

    #[test]
    fn scanning_finds_whitespace_and_depth_outside_strings() {
        let shape = scan(r#"{"k":"a b [[[","n":[1,{"x":null}]}"#);
        assert!(!shape.has_space);
        assert_eq!(shape.depth, 3);
        assert!(scan("{ }").has_space);
        assert_eq!(compact(r#"{ "a" : "b \" c" }"#), r#"{"a":"b \" c"}"#);
    }

    #[test]
    fn data_nested_deeper_than_the_limit_is_refused() {
        let nested = |levels: usize| {
            format!(
                r#"{{"eventType":"user.created","userId":"u1","data":{}{}}}"#,
                "{\"a\":".repeat(levels - 1) + "{",
                "}".repeat(levels)
            )
        };
        let ok = serde_json::from_str::<EventInput>(&nested(MAX_DATA_DEPTH)).unwrap();
        assert!(ok.validate(NOW).is_ok());
        let deep = serde_json::from_str::<EventInput>(&nested(MAX_DATA_DEPTH + 1)).unwrap();
        let err = deep.validate(NOW).unwrap_err();
        assert_eq!(
            err.errors()[0].message,
            "data is nested too deeply (more than 128 levels)"
        );
    }

    #[test]
    fn unpaired_surrogate_escapes_are_refused_in_data() {
        let with_data = |data: &str| {
            let text = format!(r#"{{"eventType":"user.created","userId":"u1","data":{data}}}"#);
            serde_json::from_str::<EventInput>(&text)
                .unwrap()
                .validate(NOW)
        };
        for (data, unit) in [
            (r#"{"a":"\ud800"}"#, "d800"),
            (r#"{"a":"x\uDBFFy"}"#, "dbff"),
            (r#"{"a":"\udc00"}"#, "dc00"),
            (r#"{"a":"\ud800\ud800\udc00"}"#, "d800"),
            (r#"{"a":"\ud800\n"}"#, "d800"),
            (r#"{"\ud800":1}"#, "d800"),
            (r#"{"a":["ok","\ud83d"]}"#, "d83d"),
        ] {
            let err = with_data(data).unwrap_err();
            assert_eq!(err.errors()[0].field, "data", "{data}");
            assert!(
                err.errors()[0].message.starts_with(&format!(
                    "data contains the escape \\u{unit}, half of a UTF-16 surrogate pair"
                )),
                "{data}: {}",
                err.errors()[0].message
            );
        }
        // Pairs, escaped backslashes before a 'u' and ordinary escapes pass.
        for data in [
            r#"{"a":"\ud83d\ude00"}"#,
            r#"{"a":"\\ud800"}"#,
            r#"{"a":"\u00e9\n\"\\"}"#,
            r#"{"a":"😀"}"#,
        ] {
            assert!(with_data(data).is_ok(), "{data}");
        }
    }

    #[test]
    fn unpaired_surrogate_escapes_are_refused_in_metadata_naming_it() {
        let text = r#"{"eventType":"user.created","userId":"u1","data":{},"metadata":{"source":"\udfff"}}"#;
        let err = serde_json::from_str::<EventInput>(text).unwrap_err();
        assert!(err.is_data(), "{err}");
        assert!(
            err.to_string()
                .starts_with("metadata contains the escape \\udfff"),
            "{err}"
        );
        let ok = r#"{"eventType":"user.created","userId":"u1","data":{},"metadata":{"s":"\ud83d\ude00"}}"#;
        let event = serde_json::from_str::<EventInput>(ok)
            .unwrap()
            .validate(NOW)
            .unwrap();
        assert_eq!(event.metadata["s"], "\u{1F600}");
    }

    #[test]
    fn data_of_every_other_kind_is_named() {
        for (data, kind) in [
            ("[1]", "an array"),
            ("\"x\"", "a string"),
            ("true", "a boolean"),
            ("false", "a boolean"),
            ("-1.5", "a number"),
            ("7", "a number"),
        ] {
            let text = format!(r#"{{"eventType":"user.created","userId":"u1","data":{data}}}"#);
            let err = serde_json::from_str::<EventInput>(&text)
                .unwrap()
                .validate(NOW)
                .unwrap_err();
            assert_eq!(
                err.errors()[0].message,
                format!("data must be a JSON object, not {kind}"),
                "{data}"
            );
        }
        let null = r#"{"eventType":"user.created","userId":"u1","data":null}"#;
        let err = serde_json::from_str::<EventInput>(null)
            .unwrap()
            .validate(NOW)
            .unwrap_err();
        assert_eq!(
            err.errors()[0].message,
            "data is required and must be a JSON object"
        );
    }
}
