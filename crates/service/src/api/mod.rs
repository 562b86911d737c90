//! The HTTP API: routes, authentication and rate-limit layers, request ids.
//!
//! Handlers are thin: they parse the request into domain types, call the
//! store or the engine, and shape the answer. This is the only layer that
//! knows about status codes and JSON envelopes.

pub(crate) mod controls;
mod deliveries;
mod endpoint;
pub mod error;
mod events;
pub mod extract;
pub mod openapi;
mod ops;
mod ordering;
pub(crate) mod webhooks;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::ServiceExt as _;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;
use webhook_domain::address::AddressPolicy;

use crate::auth::{AuthError, Authenticator, Principal};
use crate::config::Config;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::ratelimit::{FailureLimiter, RateLimiter, address_key};
use crate::store::Store;
use error::ApiError;

/// Everything the handlers share, behind one `Arc`: axum clones the state
/// for every request, and one reference count is cheaper than ten.
#[derive(Clone)]
pub struct AppState(Arc<AppContext>);

impl AppState {
    /// Wraps the shared context.
    pub fn new(context: AppContext) -> Self {
        AppState(Arc::new(context))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppContext;

    fn deref(&self) -> &AppContext {
        &self.0
    }
}

/// The contents of [`AppState`].
pub struct AppContext {
    /// Effective configuration.
    pub config: Arc<Config>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The delivery engine.
    pub engine: Engine,
    /// Token verification.
    pub auth: Arc<Authenticator>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Which destinations webhooks may have.
    pub policy: Arc<AddressPolicy>,
    /// Per-user limiter of `/api/v1`.
    pub api_limiter: Arc<RateLimiter>,
    /// Per-caller limiter of `/internal`.
    pub internal_limiter: Arc<RateLimiter>,
    /// Failed authentications per calling address.
    pub auth_failures: Arc<FailureLimiter>,
}

/// The caller of `POST /api/v1/events`: an admin user or a platform service.
#[derive(Debug, Clone)]
pub enum Producer {
    /// A user with admin scope.
    Admin(Principal),
    /// A platform service holding the internal secret.
    Internal,
}

/// Builds the application router.
pub fn router(state: AppState) -> Router {
    let user_routes = Router::new()
        .route(
            "/api/v1/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route("/api/v1/webhooks/stats", get(deliveries::overall_stats))
        .route("/api/v1/webhooks/filter-test", post(controls::filter_test))
        .route(
            "/api/v1/webhooks/{id}",
            get(webhooks::get_one)
                .put(webhooks::update)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/api/v1/webhooks/{id}/toggle", post(webhooks::toggle))
        .route(
            "/api/v1/webhooks/{id}/rotate-secret",
            post(webhooks::rotate_secret),
        )
        .route(
            "/api/v1/webhooks/{id}/regenerate-secret",
            post(webhooks::rotate_secret),
        )
        .route("/api/v1/webhooks/{id}/secret", get(webhooks::reveal_secret))
        .route("/api/v1/webhooks/{id}/test", post(deliveries::test_send))
        .route("/api/v1/webhooks/{id}/logs", get(deliveries::list))
        .route("/api/v1/webhooks/{id}/deliveries", get(deliveries::list))
        .route(
            "/api/v1/webhooks/{id}/deliveries/{delivery_id}",
            get(deliveries::get_one),
        )
        .route(
            "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
            post(deliveries::retry),
        )
        .route("/api/v1/webhooks/{id}/replay", post(deliveries::replay))
        .route(
            "/api/v1/webhooks/{id}/ordering",
            get(ordering::get_ordering),
        )
        .route(
            "/api/v1/webhooks/{id}/stats",
            get(deliveries::webhook_stats),
        )
        .route(
            "/api/v1/webhooks/{id}/stats/hourly",
            get(crate::portal::hourly_stats),
        )
        .route(
            "/api/v1/admin/stats/hourly",
            get(crate::portal::platform_hourly_stats),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), user_auth));

    let producer_routes = Router::new()
        .route("/api/v1/events", post(events::create_event))
        .route_layer(middleware::from_fn_with_state(state.clone(), producer_auth));

    let public_routes = Router::new()
        .route("/api/v1/event-types", get(webhooks::event_types))
        .route("/api/v1/webhooks/event-types", get(webhooks::event_types))
        .route("/api/v1/openapi.json", get(ops::openapi_json));

    let internal_routes = Router::new()
        .route("/internal/webhooks/trigger", post(events::trigger))
        .route("/internal/events/batch", post(events::batch))
        .route_layer(middleware::from_fn_with_state(state.clone(), internal_auth));

    // Full paths and `merge`, not `nest`: a nested router strips its prefix
    // into a new URI and re-boxes the request for every call.
    let mut app = Router::new()
        .merge(public_routes)
        .merge(producer_routes)
        .merge(user_routes)
        .merge(internal_routes)
        .merge(crate::portal::routes(state.clone()))
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { ApiError::not_found("Route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "This route does not accept that method",
            )
        });
    if let Some(cors) = cors(&state.config) {
        app = app.layer(cors);
    }
    app.layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The HTTP application: the router, and beside it the producers' two
/// ingest routes served without going through it.
///
/// Every event crosses one of those two routes. Through the router's layers
/// (request timeout, [`observe`], [`internal_auth`]: each a boxed service
/// with a boxed future) a request cost about 19,000 instructions before its
/// handler ran, some 11 % of a delivery's. The hot routes run the same
/// functions in the same order (timeout outermost, then `observed`, then
/// `internal_authenticated`, then the handler with its extractors), composed
/// directly. Everything else, other methods on these paths included, goes to
/// the router.
#[derive(Clone)]
pub struct App {
    router: Router,
    hot: Option<HotRoutes>,
}

#[derive(Clone)]
struct HotRoutes {
    state: AppState,
    timeout: Duration,
}

#[derive(Clone, Copy)]
enum HotRoute {
    Trigger,
    Batch,
}

impl App {
    /// The router of [`router`] with a `timeout` per request (answered 408),
    /// and the hot routes with the same timeout.
    pub fn new(state: AppState, timeout: Duration) -> App {
        // CORS headers come from a router layer: with CORS configured every
        // request goes through the router.
        let hot = cors(&state.config).is_none().then(|| HotRoutes {
            state: state.clone(),
            timeout,
        });
        let router = router(state).layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ));
        App { router, hot }
    }

    fn hot_route<B>(&self, req: &axum::http::Request<B>) -> Option<HotRoute> {
        if req.method() != Method::POST {
            return None;
        }
        match req.uri().path() {
            "/internal/webhooks/trigger" => Some(HotRoute::Trigger),
            "/internal/events/batch" => Some(HotRoute::Batch),
            _ => None,
        }
    }
}

impl HotRoutes {
    async fn serve(self, route: HotRoute, req: Request) -> Response {
        let state = &self.state;
        let handled = observed(state, req, |req| {
            internal_authenticated(state, req, |req| {
                // The handler as the router calls it: extractors, then the
                // handler, then the answer.
                let state = state.clone();
                match route {
                    HotRoute::Trigger => Handler::call(events::trigger, req, state),
                    HotRoute::Batch => Handler::call(events::batch, req, state),
                }
            })
        });
        match tokio::time::timeout(self.timeout, handled).await {
            Ok(response) => response,
            // What the router's `TimeoutLayer` answers.
            Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
        }
    }
}

impl<B> tower::Service<axum::http::Request<B>> for App
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        if let (Some(hot), Some(route)) = (&self.hot, self.hot_route(&req)) {
            let hot = hot.clone();
            let req = req.map(axum::body::Body::new);
            return Box::pin(async move { Ok(hot.serve(route, req).await) });
        }
        Box::pin(self.router.clone().oneshot(req))
    }
}

fn cors(config: &Config) -> Option<CorsLayer> {
    if config.allowed_origins.is_empty() {
        return None;
    }
    let origin = if config.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            config
                .allowed_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods(tower_http::cors::Any)
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            // The front end's scripts can read only what is exposed: both
            // rate-limit header families and Retry-After, not just the legacy one.
            .expose_headers([
                header::HeaderName::from_static("x-ratelimit-limit"),
                header::HeaderName::from_static("x-ratelimit-remaining"),
                header::HeaderName::from_static("x-ratelimit-reset"),
                header::HeaderName::from_static("ratelimit-limit"),
                header::HeaderName::from_static("ratelimit-remaining"),
                header::HeaderName::from_static("ratelimit-reset"),
                header::RETRY_AFTER,
                header::HeaderName::from_static("x-request-id"),
            ]),
    )
}

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(0);

/// Request id, span, metrics and one debug line per request (never headers or bodies).
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    observed(&state, req, |req| next.run(req)).await
}

/// What [`observe`] does around `inner`, shared with the hot routes.
async fn observed<F, Fut>(state: &AppState, req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let incoming = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(String::from);
    let request_id =
        incoming.unwrap_or_else(|| format!("req_{:x}", REQUEST_SEQ.fetch_add(1, Relaxed)));
    let started = Instant::now();
    // The path only: query strings can carry anything a client put there.
    // Built only when the span is recorded (a copy per request otherwise).
    let span = if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug_span!("request", request_id = %request_id, method = %req.method(), path = %req.uri().path())
    } else {
        tracing::Span::none()
    };
    let mut response = {
        let _guard = span.enter();
        inner(req)
    }
    .await;
    let status = response.status().as_u16();
    state.metrics.observe_response(status);
    let _guard = span.enter();
    tracing::debug!(
        status,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request finished"
    );
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

fn authorization(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

fn rate_limited(decision: crate::ratelimit::Decision) -> Response {
    let mut err = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        format!(
            "Rate limit of {} requests exceeded; retry in {} s",
            decision.limit, decision.reset_after
        ),
    );
    err.headers = decision.headers();
    err.into_response()
}

/// The refusal of a caller whose address has used up its failed
/// authentications, before any credential of it is checked.
fn refused_address(state: &AppState, req: &Request) -> Option<Response> {
    let decision = state.auth_failures.refused(|| caller_key(req))?;
    let mut err = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_AUTH_FAILURES",
        format!(
            "Too many failed authentications from this address; retry in {} s",
            decision.reset_after
        ),
    );
    err.headers = vec![("retry-after", decision.reset_after.to_string())];
    Some(err.into_response())
}

/// The answer to a failed authentication, counted against the caller's
/// address when the credential may have been a guess.
fn auth_failed(state: &AppState, req: &Request, e: AuthError) -> Response {
    if e.may_be_a_guess() {
        state.auth_failures.failed(&caller_key(req));
    }
    ApiError::from(e).into_response()
}

/// A read-only portal link may read, but neither change anything nor reveal
/// a webhook's secret.
fn read_only_refusal(principal: &Principal, req: &Request) -> Option<Response> {
    let read_only = principal.portal.is_some_and(|access| access.read_only);
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    if !read_only || (reads && !req.uri().path().ends_with("/secret")) {
        return None;
    }
    Some(
        ApiError::forbidden(
            "This portal link is read-only: it can view, not change or reveal secrets",
        )
        .into_response(),
    )
}

/// Authenticates a user and applies the per-user limit.
async fn user_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Some(refused) = refused_address(&state, &req) {
        return refused;
    }
    let principal = match state.auth.user(authorization(&req)) {
        Ok(p) => p,
        Err(e) => return auth_failed(&state, &req, e),
    };
    if let Some(refusal) = read_only_refusal(&principal, &req) {
        return refusal;
    }
    let decision = state.api_limiter.check(principal.user_id.as_str());
    if let Some(d) = decision.filter(|d| !d.allowed) {
        return rate_limited(d);
    }
    req.extensions_mut().insert(principal);
    let mut response = next.run(req).await;
    if let Some(d) = decision {
        d.apply(response.headers_mut());
    }
    response
}

pub(crate) fn caller_key(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| address_key(addr.ip()))
        .unwrap_or_else(|| "unknown".into())
}

/// Authenticates a platform service and applies the per-caller limit.
async fn internal_auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    internal_authenticated(&state, req, |req| next.run(req)).await
}

/// What [`internal_auth`] does around `inner`, shared with the hot routes.
async fn internal_authenticated<F, Fut>(state: &AppState, req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    if let Some(refused) = refused_address(state, &req) {
        return refused;
    }
    if let Err(e) = state.auth.internal(authorization(&req)) {
        return auth_failed(state, &req, e);
    }
    let key = caller_key(&req);
    limited(&state.internal_limiter, key, req, inner).await
}

pub(crate) async fn limited<F, Fut>(
    limiter: &RateLimiter,
    key: String,
    req: Request,
    inner: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let decision = limiter.check(&key);
    if let Some(d) = decision.filter(|d| !d.allowed) {
        return rate_limited(d);
    }
    let mut response = inner(req).await;
    if let Some(d) = decision {
        d.apply(response.headers_mut());
    }
    response
}

/// `POST /api/v1/events`: an admin token or the internal secret.
async fn producer_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Some(refused) = refused_address(&state, &req) {
        return refused;
    }
    if state.auth.internal(authorization(&req)).is_ok() {
        req.extensions_mut().insert(Producer::Internal);
        let key = caller_key(&req);
        return limited(&state.internal_limiter, key, req, |req| next.run(req)).await;
    }
    match state.auth.user(authorization(&req)) {
        Ok(p) if p.portal.is_some_and(|a| a.read_only) => read_only_refusal(&p, &req)
            .unwrap_or_else(|| {
                ApiError::forbidden("A read-only portal link cannot publish events").into_response()
            }),
        Ok(p) if p.is_admin => {
            let key = p.user_id.as_str().to_string();
            req.extensions_mut().insert(Producer::Admin(p));
            limited(&state.api_limiter, key, req, |req| next.run(req)).await
        }
        Ok(_) => ApiError::forbidden(
            "Publishing events requires an admin token or the internal service secret",
        )
        .into_response(),
        Err(e) => auth_failed(&state, &req, e),
    }
}
