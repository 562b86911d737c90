//! The webhook portal: a web application served from the binary at
//! `/portal`, for users (their endpoints, delivery log, event catalogue)
//! and operators.
//!
//! The server side is thin on purpose: it serves embedded files with a
//! strict Content-Security-Policy and mints portal links. The pages call the
//! ordinary `/api/v1` with the link's token, so the portal can do nothing
//! the API would refuse.

mod assets;
pub mod cli;
mod docs;
pub mod headers;
pub mod link;
pub mod stats;

use axum::Router;
use axum::routing::{get, post};

use crate::api::AppState;
use crate::config::{ConfigError, Settings};

pub use stats::{hourly_stats, platform_hourly_stats};

/// The portal's settings.
#[derive(Debug, Clone)]
pub struct PortalSettings {
    /// `WEBHOOK_PORTAL_FRAME_ANCESTORS`: who may embed the portal in a frame
    /// (CSP `frame-ancestors` sources; default `'self'`).
    pub frame_ancestors: Vec<String>,
    /// `WEBHOOK_PUBLIC_URL`: the service's address as browsers reach it, for
    /// the links minted; default: the `Host` the minting request named.
    pub public_url: Option<String>,
    /// `WEBHOOK_PORTAL_TITLE`: the title shown in the portal's header.
    pub title: String,
    /// `WEBHOOK_PORTAL_BRAND_COLOR`: the accent colour, `#rgb` or `#rrggbb`.
    pub brand_color: String,
}

impl PortalSettings {
    /// Reads and checks the portal's settings.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let frame_ancestors = match settings.get("WEBHOOK_PORTAL_FRAME_ANCESTORS") {
            None => vec!["'self'".to_string()],
            Some(text) => headers::parse_frame_ancestors(text).map_err(|message| ConfigError {
                var: "WEBHOOK_PORTAL_FRAME_ANCESTORS".into(),
                message,
            })?,
        };
        let public_url = match settings.get("WEBHOOK_PUBLIC_URL") {
            None => None,
            Some(text) => Some(link::parse_public_url(text).map_err(|message| ConfigError {
                var: "WEBHOOK_PUBLIC_URL".into(),
                message,
            })?),
        };
        let title = settings
            .get("WEBHOOK_PORTAL_TITLE")
            .unwrap_or("Webhooks")
            .chars()
            .take(80)
            .collect();
        let brand_color = match settings.get("WEBHOOK_PORTAL_BRAND_COLOR") {
            None => "#4f46e5".to_string(),
            Some(text) if is_hex_colour(text) => text.to_string(),
            Some(_) => {
                return Err(ConfigError {
                    var: "WEBHOOK_PORTAL_BRAND_COLOR".into(),
                    message: "must be a hex colour such as #4f46e5".into(),
                });
            }
        };
        Ok(PortalSettings {
            frame_ancestors,
            public_url,
            title,
            brand_color,
        })
    }
}

impl Default for PortalSettings {
    fn default() -> Self {
        PortalSettings {
            frame_ancestors: vec!["'self'".to_string()],
            public_url: None,
            title: "Webhooks".into(),
            brand_color: "#4f46e5".into(),
        }
    }
}

fn is_hex_colour(text: &str) -> bool {
    text.strip_prefix('#')
        .is_some_and(|hex| matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The portal's routes: the pages, their files, the API reference, and
/// link minting.
pub fn routes(state: AppState) -> Router<AppState> {
    let minting = Router::new()
        .route("/api/v1/portal/links", post(link::create_link))
        .route_layer(axum::middleware::from_fn_with_state(state, link::authorize));
    Router::new()
        .merge(minting)
        .route("/", get(assets::root))
        .route("/portal", get(assets::shell))
        .route("/portal/", get(assets::shell))
        .route("/portal/config.json", get(assets::config))
        .route("/portal/assets/{name}", get(assets::file))
        .route("/docs", get(docs::page))
        .route("/docs/assets/{name}", get(docs::file))
}
