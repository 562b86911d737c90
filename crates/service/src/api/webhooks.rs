//! `/api/v1/webhooks`: register, list, change, remove, toggle and rotate.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use webhook_domain::endpoint::{EndpointAuth, EndpointOptions};
use webhook_domain::event_type::{Subscription, catalogue};
use webhook_domain::ids::WebhookId;
use webhook_domain::timefmt::{format_rfc3339_millis, now_ms};
use webhook_domain::webhook::{Description, HostKind, WebhookSecret, WebhookUrl};

use super::AppState;
use super::controls::{ControlsBody, ControlsView};
use super::endpoint::{self, EndpointBody, EndpointView};
use super::error::{ApiError, FieldProblem, ok};
use super::extract::{
    KnownFields, MAX_ACTION_BODY, NoFields, OptionalJson, Pagination, StrictJson,
};
use crate::auth::Principal;
use crate::engine::circuit::CircuitView;
use crate::store::{
    ControlsPatch, DeliveryControls, NewWebhook, Owner, VisibleWebhook, WebhookPatch, WebhookRecord,
};

/// A webhook as the API shows it. `secret` is the full secret only on
/// create, rotate and the secret route; a masked preview everywhere else.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    /// Webhook id (`wh_...`).
    pub id: String,
    /// Owner's user id.
    pub user_id: String,
    /// Destination URL.
    pub url: String,
    /// Subscribed event types and patterns.
    pub event_types: Vec<String>,
    /// Free text.
    pub description: Option<String>,
    /// Receives deliveries.
    pub is_active: bool,
    /// `user` (the owner's events) or `all` (every user's, admin only).
    pub scope: &'static str,
    /// Full secret or masked preview (see `secretMasked`).
    pub secret: String,
    /// Whether `secret` is masked.
    pub secret_masked: bool,
    /// End of the previous secret's grace period, during a rotation.
    pub previous_secret_expires_at: Option<String>,
    /// Why the service disabled it.
    pub disabled_reason: Option<String>,
    /// When the service disabled it.
    pub disabled_at: Option<String>,
    /// Start of the current run of failures.
    pub failing_since: Option<String>,
    /// Created.
    pub created_at: String,
    /// Last changed.
    pub updated_at: String,
    /// This instance's circuit breaker of the webhook's endpoint.
    pub circuit: CircuitBody,
    /// Payload filter, rate limit, retry schedule and timeout.
    #[serde(flatten)]
    pub controls: ControlsView,
    /// Custom headers and endpoint authentication, masked.
    #[serde(flatten)]
    pub endpoint: EndpointView,
}

/// A webhook's circuit breaker, as this instance sees it. Each instance
/// keeps its own (on PostgreSQL, every instance judges the endpoint by its
/// own attempts), so another instance may answer differently.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBody {
    /// `closed` (deliveries flow), `open` (held until `nextProbeAt`) or
    /// `probing` (one delivery is testing the endpoint; the rest wait for it).
    pub state: &'static str,
    /// When an open circuit sends its probe: the next delivery due goes
    /// then, and the others follow if it succeeds.
    pub next_probe_at: Option<String>,
    /// Failed attempts (timeouts, connection failures, 5xx, 429) since the
    /// last success; five in a row open the circuit.
    pub failures_in_a_row: u32,
}

impl From<CircuitView> for CircuitBody {
    fn from(c: CircuitView) -> Self {
        CircuitBody {
            state: c.state.as_str(),
            next_probe_at: c.next_probe_at.map(format_rfc3339_millis),
            failures_in_a_row: c.failures_in_a_row,
        }
    }
}

impl WebhookView {
    /// Shapes a record; `reveal` shows the full secret.
    pub fn new(r: &WebhookRecord, reveal: bool) -> Self {
        let now = now_ms();
        WebhookView {
            id: r.id.to_string(),
            user_id: r.owner_id.to_string(),
            url: r.url.clone(),
            event_types: r.event_types.clone(),
            description: r.description.clone(),
            is_active: r.is_active,
            scope: if r.scope_all { "all" } else { "user" },
            secret: if reveal {
                r.secret.expose().to_string()
            } else {
                r.secret.preview()
            },
            secret_masked: !reveal,
            previous_secret_expires_at: r
                .previous_secret
                .as_ref()
                .filter(|(_, until)| *until > now)
                .map(|(_, until)| format_rfc3339_millis(*until)),
            disabled_reason: r.disabled_reason.clone(),
            disabled_at: r.disabled_at.map(format_rfc3339_millis),
            failing_since: r.failing_since.map(format_rfc3339_millis),
            created_at: format_rfc3339_millis(r.created_at),
            updated_at: format_rfc3339_millis(r.updated_at),
            circuit: CircuitView::CLOSED.into(),
            controls: (&r.controls).into(),
            endpoint: EndpointView::new(&r.endpoint),
        }
    }

    /// Shapes a record with this instance's circuit breaker of it.
    pub async fn with_circuit(state: &AppState, r: &WebhookRecord, reveal: bool) -> Self {
        let mut view = WebhookView::new(r, reveal);
        if let Some(circuit) = state.engine.circuits(vec![r.id.clone()]).await.pop() {
            view.circuit = circuit.into();
        }
        view
    }
}

/// Fields of a create or update request; absent fields are left as they are on update.
///
/// Every field keeps an explicit `null` as `Some(Value::Null)` (serde would
/// otherwise read it as absent), so that `"description": null` can clear it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct WebhookBody {
    /// Destination URL (https; http only in --dev or for allow-listed destinations).
    #[schema(value_type = Option<String>)]
    #[serde(deserialize_with = "present")]
    pub url: Option<Value>,
    /// Event types, `category.*` or `*`.
    #[schema(value_type = Option<Vec<String>>)]
    #[serde(deserialize_with = "present")]
    pub event_types: Option<Value>,
    /// Alias of `eventTypes`.
    #[schema(value_type = Option<Vec<String>>)]
    #[serde(deserialize_with = "present")]
    pub events: Option<Value>,
    /// 16-128 printable characters; generated (`whsec_...`) when absent on create.
    #[schema(value_type = Option<String>)]
    #[serde(deserialize_with = "present")]
    pub secret: Option<Value>,
    /// At most 500 characters; null clears it.
    #[schema(value_type = Option<String>)]
    #[serde(deserialize_with = "present")]
    pub description: Option<Value>,
    /// Receives deliveries (default true).
    #[schema(value_type = Option<bool>)]
    #[serde(deserialize_with = "present")]
    pub is_active: Option<Value>,
    /// `user` (default) or `all` (admin only: every user's events); an
    /// update may repeat the webhook's scope but not change it.
    #[schema(value_type = Option<String>)]
    #[serde(deserialize_with = "present")]
    pub scope: Option<Value>,
    // Delivery controls (see `controls.rs`); null clears one.
    /// Payload filter matched against the event envelope; only matching
    /// events are delivered. Operators: `$eq`, `$neq`, `$gt`, `$gte`, `$lt`,
    /// `$lte`, `$in`, `$nin`, `$startsWith`, `$endsWith`, `$contains`,
    /// `$exist`, `$and`, `$or`, `$not`; at most 4 KiB and 16 levels.
    #[schema(value_type = Option<Object>)]
    #[serde(deserialize_with = "present")]
    pub filter: Option<Value>,
    /// Most deliveries started per second (1-10000; null: unlimited).
    /// Answers 429, 502, 503 and 504 slow it down further for a while.
    #[schema(value_type = Option<u32>, example = 50)]
    #[serde(deserialize_with = "present")]
    pub rate_limit_per_second: Option<Value>,
    /// Waits before each retry, overriding `WEBHOOK_RETRY_SCHEDULE` (same
    /// syntax and bounds: 1-50 waits of at most 30d each).
    #[schema(value_type = Option<Vec<String>>, example = json!(["5s", "1m", "10m"]))]
    #[serde(deserialize_with = "present")]
    pub retry_schedule: Option<Value>,
    /// Whole-attempt timeout in ms, overriding `WEBHOOK_TIMEOUT` (at most
    /// `WEBHOOK_MAX_ENDPOINT_TIMEOUT`, default 60000).
    #[schema(value_type = Option<u64>, example = 5000)]
    #[serde(deserialize_with = "present")]
    pub timeout_ms: Option<Value>,
    /// `"fifo"`: deliveries go one at a time, each only after every earlier
    /// one (in acknowledgement order) has been delivered or failed for
    /// good; a failing one holds back those behind it. Null: no ordering.
    #[schema(value_type = Option<String>, example = "fifo")]
    #[serde(deserialize_with = "present")]
    pub ordering: Option<Value>,
    /// With `"ordering": "fifo"` only: `"webhook"` (default, one order for
    /// the whole webhook) or `"userId"` (one order per user, for
    /// `scope: "all"` webhooks: one user's failing delivery holds back only
    /// that user's).
    #[schema(value_type = Option<String>, example = "userId")]
    #[serde(deserialize_with = "present")]
    pub ordering_key: Option<Value>,
    /// Custom headers and endpoint authentication.
    #[serde(flatten)]
    pub endpoint: EndpointBody,
}

impl KnownFields for WebhookBody {
    const FIELDS: &'static [&'static str] = &[
        "url",
        "eventTypes",
        "events",
        "secret",
        "description",
        "isActive",
        "scope",
        "filter",
        "rateLimitPerSecond",
        "retrySchedule",
        "timeoutMs",
        "ordering",
        "orderingKey",
        endpoint::FIELDS[0],
        endpoint::FIELDS[1],
        endpoint::FIELDS[2],
    ];
}

/// Body of a toggle: none (or `{}`) flips `isActive`; `isActive` sets it,
/// so that a repeated request cannot flip it back.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToggleBody {
    /// The state wanted; absent: the opposite of the current one.
    is_active: Option<bool>,
}

impl KnownFields for ToggleBody {
    const FIELDS: &'static [&'static str] = &["isActive"];
}

/// Reads a field that is in the body, `null` included, as `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// The validated fields of a [`WebhookBody`].
#[derive(Default)]
struct ParsedBody {
    url: Option<String>,
    event_types: Option<Vec<String>>,
    secret: Option<WebhookSecret>,
    description: Option<Option<String>>,
    is_active: Option<bool>,
    scope_all: Option<bool>,
    controls: ControlsPatch,
    /// The whole new endpoint options; `None`: unchanged.
    endpoint: Option<EndpointOptions>,
}

fn problem(field: &str, message: impl Into<String>) -> FieldProblem {
    FieldProblem {
        field: field.into(),
        message: message.into(),
    }
}

/// Resolves a host name and applies the address policy to every answer.
async fn check_destination(state: &AppState, url: &WebhookUrl) -> Result<(), FieldProblem> {
    let HostKind::Domain(host) = url.host_kind() else {
        return Ok(()); // IP literals were checked by WebhookUrl::parse
    };
    let lookup = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::lookup_host((host.as_str(), url.port_or_default())),
    )
    .await;
    let addrs: Vec<_> = match lookup {
        Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
        // A name that does not resolve yet is accepted: every delivery checks
        // the addresses again at connect time.
        _ if !url.requires_allow_listed_resolution() => return Ok(()),
        _ => {
            return Err(problem(
                "url",
                format!("url must use https: {host} cannot be resolved to an allow-listed address"),
            ));
        }
    };
    for ip in &addrs {
        if let Err(blocked) = state.policy.check(*ip) {
            return Err(problem(
                "url",
                format!(
                    "url host {host} resolves to {}, which is {} and is not in WEBHOOK_ALLOWED_CIDRS",
                    blocked.ip,
                    blocked.class.describe()
                ),
            ));
        }
    }
    if url.requires_allow_listed_resolution()
        && !addrs.iter().all(|ip| state.policy.is_allow_listed(*ip))
    {
        return Err(problem(
            "url",
            "url must use https (http is allowed only in --dev or for allow-listed destinations)",
        ));
    }
    Ok(())
}

async fn parse_body(
    state: &AppState,
    body: WebhookBody,
    current: Option<&WebhookRecord>,
) -> Result<ParsedBody, ApiError> {
    let creating = current.is_none();
    let mut problems = Vec::new();
    let mut parsed = ParsedBody {
        endpoint: endpoint::parse(body.endpoint, current.map(|c| &c.endpoint), &mut problems),
        ..ParsedBody::default()
    };
    if let Some(EndpointAuth::OAuth2 { token_url, .. }) =
        parsed.endpoint.as_ref().and_then(EndpointOptions::auth)
    {
        // The token URL is a destination like the endpoint: the same policy.
        let checked = match WebhookUrl::parse(token_url, &state.policy, state.config.dev) {
            Ok(url) => check_destination(state, &url).await,
            Err(e) => Err(problem("url", e.to_string())),
        };
        if let Err(p) = checked {
            problems.push(problem(
                "auth",
                format!(
                    "auth.tokenUrl: {}",
                    p.message.replacen("url", "tokenUrl", 1)
                ),
            ));
        }
    }
    match body.url {
        None | Some(Value::Null) if creating => problems.push(problem("url", "url is required")),
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => {
            match WebhookUrl::parse(&text, &state.policy, state.config.dev) {
                Ok(url) => match check_destination(state, &url).await {
                    Ok(()) => parsed.url = Some(url.as_str().to_string()),
                    Err(p) => problems.push(p),
                },
                Err(e) => problems.push(problem("url", e.to_string())),
            }
        }
        Some(_) => problems.push(problem("url", "url must be a string")),
    }
    let present = |v: Option<Value>| v.filter(|v| !v.is_null());
    let (field, types) = match (present(body.event_types), present(body.events)) {
        // The same list under both names is one list; two different ones
        // cannot both be honoured, and dropping one would be silent.
        (Some(types), Some(events)) if types != events => {
            problems.push(problem(
                "events",
                "events is another name for eventTypes; send one of them, or the same list in both",
            ));
            ("eventTypes", Some(types))
        }
        (Some(v), _) => ("eventTypes", Some(v)),
        (None, Some(v)) => ("events", Some(v)),
        (None, None) => ("eventTypes", None),
    };
    match types {
        None | Some(Value::Null) if creating => problems.push(problem(
            "eventTypes",
            "eventTypes is required (a non-empty array of event types)",
        )),
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            let strings: Option<Vec<String>> =
                items.iter().map(|v| v.as_str().map(String::from)).collect();
            match strings {
                None => problems.push(problem(
                    field,
                    format!("{field} must be an array of strings"),
                )),
                Some(strings) => match Subscription::parse(&strings) {
                    Ok(sub) => parsed.event_types = Some(sub.to_strings()),
                    Err(e) => problems.push(problem(field, e.to_string())),
                },
            }
        }
        Some(_) => problems.push(problem(
            field,
            format!("{field} must be an array of event types"),
        )),
    }
    match body.secret {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => match WebhookSecret::parse(&text) {
            Ok(secret) => parsed.secret = Some(secret),
            Err(e) => problems.push(problem("secret", e.to_string())),
        },
        Some(_) => problems.push(problem("secret", "secret must be a string")),
    }
    match body.description {
        None => {}
        Some(Value::Null) => parsed.description = Some(None),
        Some(Value::String(text)) => match Description::parse(&text) {
            Ok(d) => parsed.description = Some(Some(d.into_string())),
            Err(e) => problems.push(problem("description", e.to_string())),
        },
        Some(_) => problems.push(problem("description", "description must be a string")),
    }
    match body.is_active {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => parsed.is_active = Some(b),
        Some(_) => problems.push(problem("isActive", "isActive must be true or false")),
    }
    match body.scope {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "user" => parsed.scope_all = Some(false),
        Some(Value::String(s)) if s == "all" => parsed.scope_all = Some(true),
        Some(_) => problems.push(problem("scope", "scope must be \"user\" or \"all\"")),
    }
    parsed.controls = ControlsBody {
        filter: body.filter,
        rate_limit_per_second: body.rate_limit_per_second,
        retry_schedule: body.retry_schedule,
        timeout_ms: body.timeout_ms,
        ordering: body.ordering,
        ordering_key: body.ordering_key,
    }
    .parse(state.config.delivery.max_endpoint_timeout, &mut problems);
    if problems.is_empty() {
        Ok(parsed)
    } else {
        Err(ApiError::validation(problems))
    }
}

fn owner(p: &Principal) -> Owner<'_> {
    if p.is_admin {
        Owner::Any
    } else {
        Owner::User(&p.user_id)
    }
}

fn webhook_id(id: &str) -> Result<WebhookId, ApiError> {
    WebhookId::parse(id).map_err(|_| ApiError::not_found("Webhook"))
}

/// Stores a change and routes the next events by it.
async fn apply_patch(
    state: &AppState,
    p: &Principal,
    id: &WebhookId,
    patch: WebhookPatch,
) -> Result<WebhookRecord, ApiError> {
    let record = state
        .store
        .update_webhook(id, owner(p), patch)
        .await?
        .ok_or_else(|| ApiError::not_found("Webhook"))?;
    state.engine.webhook_changed(&record.id).await;
    Ok(record)
}

/// Fetches a webhook the caller may see, or 404: the proof of access the
/// queries of its deliveries take.
pub async fn visible_webhook(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> Result<VisibleWebhook, ApiError> {
    let id = webhook_id(id)?;
    state
        .store
        .visible_webhook(&id, owner(p))
        .await?
        .ok_or_else(|| ApiError::not_found("Webhook"))
}

/// `POST /api/v1/webhooks`
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = WebhookBody,
    responses((status = 201, description = "Created; `secret` is shown in full once here", body = WebhookView),
              (status = 400, description = "Validation error naming each bad field"),
              (status = 403, description = "`scope: all` needs an admin token"),
              (status = 409, description = "Per-user webhook limit reached")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    StrictJson(body): StrictJson<WebhookBody>,
) -> Result<Response, ApiError> {
    let parsed = parse_body(&state, body, None).await?;
    let scope_all = parsed.scope_all.unwrap_or(false);
    if scope_all && !p.is_admin {
        return Err(ApiError::forbidden(
            "Only admins may create webhooks with scope \"all\"",
        ));
    }
    let secret = match parsed.secret {
        Some(s) => s,
        None => WebhookSecret::generate().map_err(|e| {
            tracing::error!(error = %e, "cannot generate a webhook secret");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "Internal server error",
            )
        })?,
    };
    let (Some(url), Some(event_types)) = (parsed.url, parsed.event_types) else {
        return Err(ApiError::field("url", "url and eventTypes are required"));
    };
    let record = state
        .store
        .create_webhook(
            NewWebhook {
                id: WebhookId::generate(),
                owner_id: p.user_id.clone(),
                url,
                event_types,
                description: parsed.description.flatten(),
                is_active: parsed.is_active.unwrap_or(true),
                scope_all,
                secret,
                now: now_ms(),
                controls: DeliveryControls::default().patched(&parsed.controls),
                endpoint: parsed.endpoint.unwrap_or_default(),
            },
            state.config.max_webhooks_per_user,
        )
        .await?;
    // The change holds for the next event.
    state.engine.webhook_changed(&record.id).await;
    Ok(ok(
        StatusCode::CREATED,
        WebhookView::new(&record, true),
        Some(
            "Webhook created. Store the secret now: it is shown in full only on create and rotation.",
        ),
        None,
    ))
}

/// `GET /api/v1/webhooks`
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", operation_id = "list_webhooks",
    params(("page" = Option<u32>, Query, description = "1-based page"), ("limit" = Option<u32>, Query, description = "1-100, default 20"),
           ("offset" = Option<u64>, Query, description = "Rows to skip (instead of page)")),
    responses((status = 200, description = "The caller's webhooks, newest first", body = [WebhookView])),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let page = Pagination::from_query(&query)?;
    let result = state
        .store
        .list_webhooks(owner(&p), page.limit, page.offset)
        .await?;
    let circuits = state
        .engine
        .circuits(result.items.iter().map(|r| r.id.clone()).collect())
        .await;
    let views: Vec<_> = result
        .items
        .iter()
        .zip(circuits)
        .map(|(r, circuit)| {
            let mut view = WebhookView::new(r, false);
            view.circuit = circuit.into();
            view
        })
        .collect();
    Ok(ok(
        StatusCode::OK,
        views,
        None,
        Some(page.meta(result.total)),
    ))
}

/// `GET /api/v1/webhooks/{id}`
#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", operation_id = "get_webhook", params(("id" = String, Path)),
    responses((status = 200, body = WebhookView), (status = 404, description = "Missing or not the caller's")),
    security(("bearer" = [])))]
pub async fn get_one(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = visible_webhook(&state, &p, &id).await?;
    Ok(ok(
        StatusCode::OK,
        WebhookView::with_circuit(&state, &record, false).await,
        None,
        None,
    ))
}

/// `PUT`/`PATCH /api/v1/webhooks/{id}`: changes the fields given.
#[utoipa::path(method(put, patch), path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)), request_body = WebhookBody,
    responses((status = 200, body = WebhookView), (status = 400), (status = 404)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    StrictJson(body): StrictJson<WebhookBody>,
) -> Result<Response, ApiError> {
    let current = visible_webhook(&state, &p, &id).await?;
    let parsed = parse_body(&state, body, Some(&current)).await?;
    if parsed.scope_all.is_some_and(|all| all != current.scope_all) {
        return Err(ApiError::field(
            "scope",
            "scope cannot be changed; create a new webhook instead",
        ));
    }
    let patch = WebhookPatch {
        url: parsed.url,
        event_types: parsed.event_types,
        description: parsed.description,
        is_active: parsed.is_active,
        secret: parsed.secret,
        now: now_ms(),
        controls: parsed.controls,
        endpoint: parsed.endpoint,
    };
    let record = apply_patch(&state, &p, &current.id, patch).await?;
    Ok(ok(
        StatusCode::OK,
        WebhookView::with_circuit(&state, &record, false).await,
        Some("Webhook updated"),
        None,
    ))
}

/// `DELETE /api/v1/webhooks/{id}`
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, description = "Deleted with its delivery logs"), (status = 404)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = webhook_id(&id)?;
    if !state.store.delete_webhook(&id, owner(&p)).await? {
        return Err(ApiError::not_found("Webhook"));
    }
    state.engine.webhook_changed(&id).await;
    Ok(ok(
        StatusCode::OK,
        json!({"id": id}),
        Some("Webhook deleted"),
        None,
    ))
}

/// `POST /api/v1/webhooks/{id}/toggle`: flips `isActive`, or sets it to the
/// body's `isActive` (enabling clears a disable reason).
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/toggle", tag = "webhooks", params(("id" = String, Path)),
    request_body(content = Option<ToggleBody>, description = "Optional: none or `{}` flips the state; `{\"isActive\": b}` sets it"),
    responses((status = 200, body = WebhookView), (status = 404)),
    security(("bearer" = [])))]
pub async fn toggle(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<ToggleBody, MAX_ACTION_BODY>,
) -> Result<Response, ApiError> {
    let current = visible_webhook(&state, &p, &id).await?;
    let patch = WebhookPatch {
        is_active: Some(body.is_active.unwrap_or(!current.is_active)),
        now: now_ms(),
        ..WebhookPatch::default()
    };
    let record = apply_patch(&state, &p, &current.id, patch).await?;
    let message = if record.is_active {
        "Webhook enabled"
    } else {
        "Webhook disabled"
    };
    Ok(ok(
        StatusCode::OK,
        WebhookView::with_circuit(&state, &record, false).await,
        Some(message),
        None,
    ))
}

/// `POST /api/v1/webhooks/{id}/rotate-secret` (alias `regenerate-secret`).
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/rotate-secret", tag = "webhooks", params(("id" = String, Path)),
    request_body(content = Option<Object>, description = "None, or `{}`"),
    responses((status = 200, description = "The new secret in full; the previous one keeps signing during the grace period", body = WebhookView), (status = 404)),
    security(("bearer" = [])))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    _: OptionalJson<NoFields, MAX_ACTION_BODY>,
) -> Result<Response, ApiError> {
    let current = visible_webhook(&state, &p, &id).await?;
    let secret = WebhookSecret::generate().map_err(|e| {
        tracing::error!(error = %e, "cannot generate a webhook secret");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "Internal server error",
        )
    })?;
    let now = now_ms();
    let grace_until = now + state.config.secret_grace.as_millis() as i64;
    let mut record = state
        .store
        .rotate_secret(&current.id, owner(&p), secret, grace_until, now)
        .await?
        .ok_or_else(|| ApiError::not_found("Webhook"))?;
    // An Ed25519 webhook rotates its key too, with the same grace period.
    if let Some(keys) = record.endpoint.signing() {
        let rotated = keys.rotated(grace_until).map_err(|e| {
            tracing::error!(error = %e, "cannot generate an Ed25519 key");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "Internal server error",
            )
        })?;
        let patch = WebhookPatch {
            endpoint: Some(record.endpoint.clone().with_signing(Some(rotated))),
            now,
            ..WebhookPatch::default()
        };
        record = state
            .store
            .update_webhook(&record.id, owner(&p), patch)
            .await?
            .ok_or_else(|| ApiError::not_found("Webhook"))?;
    }
    // The change holds for the next event.
    state.engine.webhook_changed(&record.id).await;
    Ok(ok(
        StatusCode::OK,
        WebhookView::with_circuit(&state, &record, true).await,
        Some("Secret rotated; the previous secret keeps signing until previousSecretExpiresAt"),
        None,
    ))
}

/// `GET /api/v1/webhooks/{id}/secret`
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/secret", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, description = "`{id, secret}` in full"), (status = 404)),
    security(("bearer" = [])))]
pub async fn reveal_secret(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = visible_webhook(&state, &p, &id).await?;
    Ok(ok(
        StatusCode::OK,
        json!({"id": record.id, "secret": record.secret.expose()}),
        None,
        None,
    ))
}

/// `GET /api/v1/event-types` (alias `/api/v1/webhooks/event-types`)
#[utoipa::path(get, path = "/api/v1/event-types", tag = "event types",
    responses((status = 200, description = "The event catalogue with descriptions, emitting services and example payloads")))]
pub async fn event_types() -> Response {
    let types: Vec<Value> = catalogue()
        .iter()
        .map(|t| {
            json!({
                "type": t.name,
                "name": t.name,
                "category": t.category,
                "description": t.description,
                "service": t.service,
                "example": serde_json::from_str::<Value>(t.example).unwrap_or(Value::Null),
            })
        })
        .collect();
    let mut categories: Vec<&str> = catalogue().iter().map(|t| t.category).collect();
    categories.dedup();
    let patterns: Vec<String> = categories
        .iter()
        .map(|c| format!("{c}.*"))
        .chain(std::iter::once("*".to_string()))
        .collect();
    ok(
        StatusCode::OK,
        types,
        None,
        Some(json!({"total": catalogue().len(), "patterns": patterns})),
    )
}
