//! Sealing a webhook's endpoint options (custom headers, authentication)
//! for the store, the same way as its signing secret: both backends keep
//! one sealed column, `endpoint_enc`, NULL when the webhook has none, so a
//! webhook without options costs no decryption when it is read.

use webhook_domain::endpoint::EndpointOptions;
use webhook_domain::ids::WebhookId;

use super::StoreError;
use crate::crypto::SecretCipher;

/// The associated data the options are sealed with: the webhook id, marked
/// so that the sealed options and the sealed secret of one row cannot be
/// swapped for each other.
fn context(webhook_id: &str) -> String {
    format!("{webhook_id}/endpoint")
}

/// The column's value for `options`: NULL when there are none.
pub(crate) fn seal_endpoint(
    cipher: &SecretCipher,
    options: &EndpointOptions,
    id: &WebhookId,
) -> Result<Option<String>, StoreError> {
    if options.is_empty() {
        return Ok(None);
    }
    cipher
        .seal(&options.to_stored(), &context(id.as_str()))
        .map(Some)
        .map_err(|e| StoreError::Unavailable(e.to_string()))
}

/// The options a column holds.
pub(crate) fn open_endpoint(
    cipher: &SecretCipher,
    sealed: Option<&str>,
    webhook_id: &str,
) -> Result<EndpointOptions, StoreError> {
    let Some(sealed) = sealed else {
        return Ok(EndpointOptions::default());
    };
    let corrupt = |e: &dyn std::fmt::Display| {
        StoreError::Corrupt(format!("endpoint options of webhook {webhook_id}: {e}"))
    };
    let text = cipher
        .open(sealed, &context(webhook_id))
        .map_err(|e| corrupt(&e))?;
    EndpointOptions::from_stored(&text).map_err(|e| corrupt(&e))
}
