//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::{deliveries, events, webhooks};

/// The API description served at `/api/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Smart AI Hub webhook service",
        description = "Register webhook endpoints, publish events, read delivery logs. Errors are `{success: false, error: {code, message, details?}, message}`.",
    ),
    paths(
        webhooks::create, webhooks::list, webhooks::get_one, webhooks::update, webhooks::delete,
        webhooks::toggle, webhooks::rotate_secret, webhooks::reveal_secret, webhooks::event_types,
        deliveries::list, deliveries::get_one, deliveries::retry, deliveries::replay,
        deliveries::webhook_stats, deliveries::overall_stats, deliveries::test_send,
        events::trigger, events::create_event, events::batch,
    ),
    components(schemas(webhooks::WebhookView, webhooks::WebhookBody, deliveries::ReplayBody, deliveries::TestBody, super::error::FieldProblem)),
    modifiers(&Security),
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "internal",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
