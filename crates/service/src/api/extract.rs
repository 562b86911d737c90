//! Request parsing shared by the handlers: JSON bodies with clear 400/413/415
//! answers, and pagination.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::{ApiError, FieldProblem};

/// Largest body accepted on API and single-event routes (the platform's 1 MB).
pub const MAX_BODY: usize = 1024 * 1024;
/// Largest body accepted on the batch route (up to 1000 events).
pub const MAX_BATCH_BODY: usize = 16 * 1024 * 1024;

/// A JSON body of at most `LIMIT` bytes, parsed into `T`.
pub struct ApiJson<T, const LIMIT: usize = MAX_BODY>(pub T);

impl<S, T, const LIMIT: usize> FromRequest<S> for ApiJson<T, LIMIT>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        require_json(req.headers())?;
        let bytes = read_body(req.into_body(), LIMIT).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Largest body accepted on actions that take no fields or one or two small
/// ones (toggle, rotate, retry): room for `{}` and a flag, not for a payload.
pub const MAX_ACTION_BODY: usize = 1024;

/// A request body whose fields are all known: any other field is refused,
/// naming it, instead of being ignored (a misspelt `evnetTypes` next to
/// `eventTypes` would otherwise be dropped silently).
pub trait KnownFields {
    /// Every top-level field the body may carry, aliases included.
    const FIELDS: &'static [&'static str];
}

/// Like [`ApiJson`], refusing fields that `T` does not know.
pub struct StrictJson<T>(pub T);

impl<S, T> FromRequest<S> for StrictJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + KnownFields,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        require_json(req.headers())?;
        let bytes = read_body(req.into_body(), MAX_BODY).await?;
        parse_known(&bytes).map(StrictJson)
    }
}

/// Like [`StrictJson`], for routes whose fields are all optional: an empty
/// body, with or without a content type, reads as `T::default()`; so do
/// `{}`, which is what a front end sends for "no fields", and `null`. Bodies over
/// `LIMIT` bytes are refused (413).
pub struct OptionalJson<T, const LIMIT: usize = MAX_BODY>(pub T);

impl<S, T, const LIMIT: usize> FromRequest<S> for OptionalJson<T, LIMIT>
where
    S: Send + Sync,
    T: DeserializeOwned + Default + KnownFields,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = read_body(body, LIMIT).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        // `null` says "nothing" as well (some clients send it for no body),
        // but only as JSON: it too needs the content type.
        require_json(&parts.headers)?;
        if bytes.trim_ascii() == b"null" {
            return Ok(OptionalJson(T::default()));
        }
        parse_known(&bytes).map(OptionalJson)
    }
}

/// The body of an action that takes no fields: nothing, or `{}`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct NoFields {}

impl KnownFields for NoFields {
    const FIELDS: &'static [&'static str] = &[];
}

/// Parses a JSON object body into `T`, first refusing every field `T` does
/// not know (all named at once).
fn parse_known<T: DeserializeOwned + KnownFields>(bytes: &[u8]) -> Result<T, ApiError> {
    // Only the keys are kept; a body that is not an object, or not JSON at
    // all, is reported by `parse_json` below with its own words.
    if let Ok(fields) = serde_json::from_slice::<serde_json::Map<String, Value>>(bytes) {
        let problems: Vec<FieldProblem> = fields
            .keys()
            .filter(|k| !T::FIELDS.contains(&k.as_str()))
            .map(|k| FieldProblem::new(k.as_str(), unknown_field_message::<T>(k)))
            .collect();
        if !problems.is_empty() {
            return Err(ApiError::validation(problems));
        }
    }
    parse_json(bytes)
}

fn unknown_field_message<T: KnownFields>(field: &str) -> String {
    let name: String = field.chars().take(64).collect();
    if T::FIELDS.is_empty() {
        return format!("{name} is not a field of this request, which takes no body (or {{}})");
    }
    let hint = T::FIELDS
        .iter()
        .map(|known| (edit_distance(field, known), known))
        .filter(|(distance, known)| *distance <= known.len() / 3)
        .min()
        .map(|(_, known)| format!(" (did you mean {known}?)"))
        .unwrap_or_default();
    format!(
        "{name} is not a field of this request{hint}; the fields are: {}",
        T::FIELDS.join(", ")
    )
}

/// Levenshtein distance, for a "did you mean" on a misspelt field name.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// 415 unless the content type is JSON (`application/json` or `*/*+json`).
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || mime.ends_with("+json") {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
        if content_type.is_empty() {
            "Content-Type must be application/json (it is missing)".to_string()
        } else {
            format!("Content-Type must be application/json, not '{content_type}'")
        },
    ))
}

fn too_large(limit: usize) -> ApiError {
    let mut err = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        format!("Request body is larger than the {} KiB limit", limit / 1024),
    );
    // The rest of the body is never read, so the connection cannot carry
    // another request; saying so stops clients from reusing it (they would
    // see it reset under their next request).
    err.headers.push(("connection", "close".into()));
    err
}

async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let source = e.into_inner();
        if source
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            too_large(limit)
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!("Could not read the request body: {source}"),
            )
        }
    })
}

/// serde_json's nesting limit: a document deeper than this fails to parse
/// (its recursion budget of 128 runs out on the 128th level).
const SERDE_JSON_DEPTH_LIMIT: usize = 127;

/// Whether `bytes` nests arrays and objects deeper than serde_json reads.
///
/// serde_json reports its recursion limit only as a syntax error, so this
/// tells the two apart after a failed parse (never on the hot path).
fn nested_too_deeply(bytes: &[u8]) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > SERDE_JSON_DEPTH_LIMIT {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Parses a JSON object body, naming where it is malformed or what does not fit.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Serde's derived structs also take an array, field by position: a
    // `["https://...", ["*"]]` would have been stored as a webhook.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "The request body must be a JSON object, not an array",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        let (code, message) = match e.classify() {
            Category::Syntax | Category::Eof if nested_too_deeply(bytes) => (
                "INVALID_JSON",
                format!(
                    "JSON is nested too deeply (line {} column {})",
                    e.line(),
                    e.column()
                ),
            ),
            Category::Syntax | Category::Eof | Category::Io => (
                "INVALID_JSON",
                format!(
                    "Malformed JSON at line {} column {}: {e}",
                    e.line(),
                    e.column()
                ),
            ),
            Category::Data => {
                if let Some((field, problem)) = bad_field::<T>(bytes) {
                    return ApiError::field(&field, format!("{field}: {problem}"));
                }
                ("VALIDATION_ERROR", format!("Invalid request body: {e}"))
            }
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    })
}

/// The field a body of the wrong shape failed on (`eventType`,
/// `events[3].id`) and serde's words for it.
///
/// Serde's message says what was expected and where, not which field;
/// parsing again with the path tracked names it. Only on this error path,
/// so the bodies that parse (every ingest) pay nothing for it.
pub fn bad_field<T: DeserializeOwned>(bytes: &[u8]) -> Option<(String, String)> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let err = serde_path_to_error::deserialize::<_, T>(&mut de).err()?;
    err.path().iter().next()?;
    Some((err.path().to_string(), err.inner().to_string()))
}

/// Most rows a page holds (`limit`).
pub const MAX_LIMIT: u64 = 100;
/// Highest `page` number accepted.
pub const MAX_PAGE: u64 = 1_000_000;

/// A page request: `page`/`limit` or `limit`/`offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pagination {
    /// Rows per page (1..=100).
    pub limit: u32,
    /// Rows skipped.
    pub offset: u64,
}

impl Pagination {
    /// Reads `page`, `limit` and `offset` from the query string.
    pub fn from_query(query: &HashMap<String, String>) -> Result<Pagination, ApiError> {
        let number = |name: &str, min: u64, max: u64| -> Result<Option<u64>, ApiError> {
            match query.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(text) => text
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .map(Some)
                    .ok_or_else(|| {
                        ApiError::field(
                            name,
                            format!("{name} must be a whole number from {min} to {max}"),
                        )
                    }),
            }
        };
        let limit = number("limit", 1, MAX_LIMIT)?.unwrap_or(20) as u32;
        let offset = match (
            number("offset", 0, u64::MAX / 2)?,
            number("page", 1, MAX_PAGE)?,
        ) {
            (Some(offset), _) => offset,
            (None, Some(page)) => (page - 1) * u64::from(limit),
            (None, None) => 0,
        };
        Ok(Pagination { limit, offset })
    }

    /// The `meta` object of a page.
    pub fn meta(&self, total: u64) -> Value {
        json!({
            "total": total,
            "page": self.offset / u64::from(self.limit) + 1,
            "limit": self.limit,
            "offset": self.offset,
            "hasMore": self.offset + u64::from(self.limit) < total,
        })
    }

    /// [`Pagination::meta`] of a total counted only up to `cap`: at the
    /// cap, `total` means "at least", and `totalExact` says so.
    pub fn meta_counted_up_to(&self, total: u64, cap: u64) -> Value {
        let mut meta = self.meta(total);
        meta["totalExact"] = json!(total < cap);
        meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_total_counted_up_to_its_cap_says_when_it_means_at_least() {
        let page = Pagination {
            limit: 20,
            offset: 0,
        };
        let below = page.meta_counted_up_to(9_999, 10_000);
        assert_eq!(below["totalExact"], true);
        assert_eq!(below["hasMore"], true);
        let at_cap = page.meta_counted_up_to(10_000, 10_000);
        assert_eq!(at_cap["totalExact"], false);
        assert_eq!(at_cap["total"], 10_000);
        assert_eq!(at_cap["hasMore"], true);
        let few = page.meta_counted_up_to(3, 10_000);
        assert_eq!(
            (few["totalExact"].clone(), few["hasMore"].clone()),
            (json!(true), json!(false))
        );
    }

    #[test]
    fn pagination_forms() {
        assert_eq!(
            Pagination::from_query(&q(&[])).unwrap(),
            Pagination {
                limit: 20,
                offset: 0
            }
        );
        assert_eq!(
            Pagination::from_query(&q(&[("page", "3"), ("limit", "10")])).unwrap(),
            Pagination {
                limit: 10,
                offset: 20
            }
        );
        assert_eq!(
            Pagination::from_query(&q(&[("offset", "5"), ("limit", "10")])).unwrap(),
            Pagination {
                limit: 10,
                offset: 5
            }
        );
        assert!(Pagination::from_query(&q(&[("limit", "0")])).is_err());
        assert!(Pagination::from_query(&q(&[("page", "x")])).is_err());
        let meta = Pagination {
            limit: 10,
            offset: 20,
        }
        .meta(31);
        assert_eq!(meta["page"], 3);
        assert_eq!(meta["hasMore"], true);
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Known {
        event_types: Option<Value>,
        events: Option<Value>,
        url: Option<String>,
    }

    impl KnownFields for Known {
        const FIELDS: &'static [&'static str] = &["url", "eventTypes", "events"];
    }

    #[test]
    fn unknown_fields_are_named_with_a_suggestion() {
        let err =
            parse_known::<Known>(br#"{"url": "x", "evnetTypes": [], "colour": 1}"#).unwrap_err();
        assert_eq!(err.code, "VALIDATION_ERROR");
        let fields: Vec<&str> = err.details.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["evnetTypes", "colour"]);
        assert_eq!(
            err.details[0].message,
            "evnetTypes is not a field of this request (did you mean eventTypes?); the fields are: url, eventTypes, events"
        );
        assert!(!err.details[1].message.contains("did you mean"));
        assert!(parse_known::<Known>(br#"{"url": "x", "events": []}"#).is_ok());
        let err = parse_known::<NoFields>(b"{\"a\": 1}").unwrap_err();
        assert_eq!(
            err.details[0].message,
            "a is not a field of this request, which takes no body (or {})"
        );
        assert!(parse_known::<NoFields>(b" { } ").is_ok());
        assert_eq!(
            parse_known::<NoFields>(b"aaaa").unwrap_err().code,
            "INVALID_JSON"
        );
        assert_eq!(edit_distance("evnetTypes", "eventTypes"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn json_errors_say_where() {
        let err = parse_json::<Value>(b"{\"a\": }").unwrap_err();
        assert!(err.message.contains("line 1 column"), "{}", err.message);
        let deep = "{\"a\":".repeat(1000) + "1" + &"}".repeat(1000);
        let err = parse_json::<Value>(deep.as_bytes()).unwrap_err();
        assert!(err.message.contains("nested too deeply"), "{}", err.message);
        // Exactly at serde_json's limit parses; brackets inside strings do
        // not count, so a malformed shallow document is called malformed.
        let nested = |levels: usize| "{\"a\":".repeat(levels) + "1" + &"}".repeat(levels);
        let at_limit = nested(127);
        assert!(parse_json::<Value>(at_limit.as_bytes()).is_ok());
        let over_limit = nested(128);
        let err = parse_json::<Value>(over_limit.as_bytes()).unwrap_err();
        assert!(err.message.contains("nested too deeply"), "{}", err.message);
        let quoted = format!("{{\"a\": \"{}\",}}", "[".repeat(500));
        let err = parse_json::<Value>(quoted.as_bytes()).unwrap_err();
        assert!(err.message.starts_with("Malformed JSON"), "{}", err.message);
        #[derive(Debug, serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        #[allow(dead_code)]
        struct Body {
            event_type: Option<String>,
        }
        let err = parse_json::<Body>(b"{\"eventType\": 123}").unwrap_err();
        assert_eq!(err.code, "VALIDATION_ERROR");
        assert!(
            err.message
                .starts_with("eventType: invalid type: integer `123`, expected a string"),
            "{}",
            err.message
        );
        let err = parse_json::<Value>(b" [\"https://example.com\"]").unwrap_err();
        assert_eq!(
            err.message,
            "The request body must be a JSON object, not an array"
        );
    }
}
