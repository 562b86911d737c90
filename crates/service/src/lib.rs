//! The Smart AI Hub webhook service: accepts events from the platform,
//! stores them durably, and delivers them signed to users' endpoints.
//!
//! See ARCHITECTURE.md for the bird's-eye view and the invariants.

pub mod api;
pub mod auth;
pub mod config;
pub mod crypto;
pub mod devmode;
pub mod engine;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod portal;
pub mod ratelimit;
pub mod server;
pub mod store;
pub mod telemetry;

/// A hash map with a fast seeded hasher (foldhash) for the maps the delivery
/// path reads several times per delivery, keyed by ids and user ids.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
