//! The API's error type and JSON envelopes. Only the API layer knows about
//! status codes and envelopes; everything below returns typed errors.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use crate::auth::AuthError;
use crate::store::StoreError;

/// One invalid field: the only shape of `error.details`, on every route.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldProblem {
    /// The field: a dotted path for nested ones, with the index of an
    /// array's entry (`events[3].eventType` in a batch).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldProblem {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldProblem {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An error answer: status, machine-readable code, message, optional details.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code, e.g. `VALIDATION_ERROR`.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// The fields at fault, if the error is about fields (`error.details`,
    /// left out when empty).
    pub details: Vec<FieldProblem>,
    /// Extra response headers (rate limiting).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// An error with no details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// 400 naming each bad field.
    pub fn validation(problems: Vec<FieldProblem>) -> Self {
        let message = problems
            .iter()
            .map(|p| p.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        ApiError::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message).with_details(problems)
    }

    /// 400 for one bad field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        ApiError::validation(vec![FieldProblem::new(field, message)])
    }

    /// 404 for a resource that is missing or not the caller's (the same answer for both).
    pub fn not_found(what: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("{what} not found"),
        )
    }

    /// 403 for a caller that lacks a scope.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    /// Names the fields at fault.
    pub fn with_details(mut self, details: Vec<FieldProblem>) -> Self {
        self.details = details;
        self
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let code = match e {
            AuthError::Missing | AuthError::NotBearer => "AUTH_MISSING",
            AuthError::Malformed(_)
            | AuthError::Algorithm(_)
            | AuthError::NoUserId
            | AuthError::UnusableUserId(_) => "AUTH_MALFORMED",
            AuthError::Expired => "AUTH_EXPIRED",
            AuthError::NotYetValid => "AUTH_NOT_YET_VALID",
            AuthError::BadSignature => "AUTH_INVALID_SIGNATURE",
            AuthError::BadInternalSecret | AuthError::UserTokenOnInternal => {
                "AUTH_INVALID_CREDENTIALS"
            }
        };
        let mut err = ApiError::new(StatusCode::UNAUTHORIZED, code, e.to_string());
        err.headers.push(("www-authenticate", "Bearer".into()));
        err
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::WebhookLimit { limit } => ApiError::new(
                StatusCode::CONFLICT,
                "WEBHOOK_LIMIT_REACHED",
                format!(
                    "You already have the maximum of {limit} webhooks; delete one before creating another"
                ),
            ),
            StoreError::Unavailable(detail) => {
                // The detail can name files and SQL: logs only, never the client.
                tracing::error!(error = %detail, "store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "STORE_UNAVAILABLE",
                    "The webhook store is unavailable; nothing was stored. Try again shortly.",
                )
            }
            StoreError::OutcomeUnknown(detail) => {
                tracing::error!(error = %detail, "store connection lost during a commit");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "STORE_UNAVAILABLE",
                    "The connection to the webhook store was lost while storing this request; \
                     it may have been stored. Retry it (with the same event id to avoid a duplicate).",
                )
            }
            StoreError::DiskFull(detail) => {
                tracing::error!(error = %detail, "the disk holding the store is full");
                let mut err = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "STORE_DISK_FULL",
                    "The disk holding the webhook store is full; nothing was stored. \
                     Try again later: the service resumes by itself once there is space.",
                );
                // A full disk is not cleared in a second: a polite client waits a while.
                err.headers.push(("retry-after", "30".into()));
                err
            }
            StoreError::Corrupt(detail) => {
                tracing::error!(error = %detail, "stored data cannot be read");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "STORE_CORRUPT",
                    "The webhook store's data cannot be read (it is damaged); nothing was changed. \
                     The operator has to repair or restore it.",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if !self.details.is_empty() {
            error["details"] = json!(self.details);
        }
        let body = json!({"success": false, "error": error, "message": self.message});
        let mut response = (self.status, Json(body)).into_response();
        for (name, value) in self.headers {
            if let Ok(value) = value.parse() {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// The success envelope, serialized straight from the handler's data (no
/// intermediate `Value` tree: on the ingest path that tree was a tenth of all
/// allocations).
#[derive(Serialize)]
struct OkBody<'a, T> {
    success: bool,
    data: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<Value>,
}

/// `{"success": true, "data": ...}` with an optional message and meta.
pub fn ok<T: Serialize>(
    status: StatusCode,
    data: T,
    message: Option<&str>,
    meta: Option<Value>,
) -> Response {
    let body = OkBody {
        success: true,
        data,
        message,
        meta,
    };
    (status, Json(body)).into_response()
}
