//! Domain types of the Smart AI Hub webhook service.
//!
//! Everything here is pure: no network, no disk, no clock except through
//! [`timefmt::now_ms`]. Values are parsed once at the edge and valid by
//! construction afterwards, so the service never re-checks what a type
//! already guarantees.

pub mod address;
pub mod asymmetric;
pub mod delivery;
pub mod endpoint;
pub mod envelope;
pub mod event_type;
pub mod filter;
pub mod ids;
pub mod latency;
pub mod ordering;
pub mod pacing;
pub mod retry;
pub mod signing;
pub mod timefmt;
pub mod webhook;
