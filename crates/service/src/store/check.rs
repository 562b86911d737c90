//! What `webhook-service check` reports about a store, whichever the backend.

/// The store part of `webhook-service check`: migrations and stored secrets.
#[derive(Debug)]
pub struct StoreCheck {
    /// Migrations recorded in the store.
    pub applied: usize,
    /// Migrations this release knows.
    pub known: usize,
    /// Webhooks whose secret was opened with the key.
    pub secrets_opened: usize,
    /// Webhook ids whose secret the key does not open.
    pub secrets_failed: Vec<String>,
}
