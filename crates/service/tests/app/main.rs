//! The service's black-box tests that need nothing from outside the
//! repository: each starts the real `webhook-service` on an ephemeral port
//! and talks to it over HTTP, with real local receivers (plain, TLS, slow,
//! failing, resetting) from `webhook-testkit`.
//!
//! One binary, one module per part of the product (the zero2prod shape):
//! one link instead of one per file, and one set of helpers. The tests that
//! need a tool from outside (PostgreSQL, node, python3, Chromium, a tmpfs
//! mount) are in `tests/tools`, whose harness reports a missing tool as
//! ignored with the reason.

#[path = "../api_support/mod.rs"]
mod api_support;
#[path = "../common/mod.rs"]
mod common;
#[path = "../delivery_support/mod.rs"]
mod delivery_support;

mod api_auth;
mod api_hardening;
mod api_isolation;
mod api_limits;
mod api_ops;
mod api_secrets;
mod api_tokens;
mod api_validation;
mod api_webhooks;
mod cli_commands;
mod delivery_actions;
mod delivery_breaker;
mod delivery_controls;
mod delivery_crash;
mod delivery_fanout;
mod delivery_fifo;
mod delivery_ingest;
mod delivery_isolation;
mod delivery_outcomes;
mod delivery_smoke;
mod delivery_visibility;
mod endpoint_oauth;
mod endpoint_proxy;
mod endpoint_reach;
mod endpoint_signing;
mod endpoint_tls;
mod portal_links;
mod reliability_chaos;
mod reliability_limits;
mod reliability_receiver_faults;
mod reliability_soak;
mod reliability_ssrf;
mod reliability_store_file;
